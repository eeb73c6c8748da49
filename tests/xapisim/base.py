"""Shared fixtures for the xapisim conformance tests.

Each test class gets its own simulated world, served from threads of the
test process over real HTTP on loopback, and talks to it through the
official ``XenAPI`` client (or raw XML-RPC where the wire itself is under
test).
"""

import http.client
import threading
import time
import unittest
import urllib.parse
import xmlrpc.client

import XenAPI

import xapisim
from xapisim.client import Control
from xapisim import rpc

from tests import polling
from tests import records

MIB = 1024 * 1024


class SimTestCase(unittest.TestCase):
    pools = 1
    hosts = 1
    sim_options = {}

    @classmethod
    def setUpClass(cls):
        super(SimTestCase, cls).setUpClass()
        cls.sim = xapisim.Simulator(pools=cls.pools, hosts=cls.hosts,
                                    **cls.sim_options)
        cls.world = cls.sim.describe()
        cls.master_url = cls.world['pools'][0]['master']

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()
        super(SimTestCase, cls).tearDownClass()

    def setUp(self):
        super(SimTestCase, self).setUp()
        self.session = self.login()
        self.x = self.session.xenapi
        self.addCleanup(self.control().clear_faults)

    # -- sessions and clients --------------------------------------------

    def login(self, url=None, password=None):
        session = XenAPI.Session(url or self.master_url)
        session.login_with_password(self.world['username'],
                                    password or self.world['password'],
                                    '2.21', 'xapisim-tests')
        self.addCleanup(_quiet_logout, session)
        return session

    def control(self, url=None):
        return Control(url or self.master_url, self.world['username'],
                       self.world['password'])

    def raw_call(self, method, *params, url=None, path='/'):
        """One XML-RPC call without the XenAPI client: the raw response."""
        body = xmlrpc.client.dumps(params, method).encode()
        status, data = self.http('POST', path, body, url=url,
                                 headers={'Content-Type': 'text/xml'})
        self.assertEqual(200, status, data)
        (result,), _ = xmlrpc.client.loads(data)
        return result

    def http(self, method, path, body=None, url=None, headers=None):
        parts = urllib.parse.urlsplit(url or self.master_url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port,
                                          timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    # -- objects ---------------------------------------------------------

    def pool_ref(self):
        return self.x.pool.get_all()[0]

    def default_sr(self):
        return self.x.pool.get_default_SR(self.pool_ref())

    def pool_network(self):
        for net in self.x.network.get_all():
            if self.x.network.get_bridge(net) == 'xenbr0':
                return net
        raise AssertionError('no xenbr0 network')

    def new_vm(self, name='test-vm', memory_mib=256, vcpus=1, **extra):
        record = records.vm_record(name, memory_mib, vcpus, **extra)
        vm = self.x.VM.create(record)
        self.addCleanup(self._remove_vm, vm)
        return vm

    def _remove_vm(self, vm):
        self.remove_vm_in(self.login().xenapi, vm)

    @staticmethod
    def remove_vm_in(x, vm):
        """Shut down and destroy ``vm`` through ``x`` (gone already: so be
        it)."""
        try:
            if x.VM.get_power_state(vm) != 'Halted':
                x.VM.hard_shutdown(vm)
            x.VM.destroy(vm)
        except XenAPI.Failure:
            pass

    def destroy_later(self, cls, ref):
        """At clean-up, ``<cls>.destroy(ref)`` on a fresh session (the
        test may have restarted xapi); an object already gone is fine."""
        def destroy():
            try:
                getattr(self.login().xenapi, cls).destroy(ref)
            except Exception:
                pass
        self.addCleanup(destroy)
        return ref

    def new_vdi(self, size=8 * MIB, sr=None, **extra):
        record = {'SR': sr or self.default_sr(), 'virtual_size': str(size),
                  'type': 'user', 'sharable': False, 'read_only': False,
                  'other_config': {}, 'name_label': 'test-vdi'}
        record.update(extra)
        return self.destroy_later('VDI', self.x.VDI.create(record))

    def new_vbd(self, vm, vdi, userdevice='0', **extra):
        record = {'VM': vm, 'VDI': vdi, 'userdevice': userdevice,
                  'bootable': True, 'mode': 'RW', 'type': 'Disk',
                  'empty': False, 'other_config': {},
                  'qos_algorithm_type': '', 'qos_algorithm_params': {}}
        record.update(extra)
        return self.x.VBD.create(record)

    def new_vif(self, vm, network=None, device='0', mac='', **extra):
        record = {'VM': vm, 'network': network or self.pool_network(),
                  'device': device, 'MAC': mac, 'MTU': '1500',
                  'other_config': {}, 'qos_algorithm_type': '',
                  'qos_algorithm_params': {}}
        record.update(extra)
        return self.x.VIF.create(record)

    def hold(self, message, held=True):
        """The calls of ``message`` from now on, served by this process's
        threads: their threads (Work.join), and, with ``held``, each waits
        in the call until Work.release() (what a test needs in progress
        stays so for as long as it needs, not for a guessed time)."""
        work = Work(held)
        key = tuple(message.split('.'))
        real = rpc.HANDLERS[key]

        def watched(ctx, *args):
            work.enter()
            return real(ctx, *args)
        rpc.HANDLERS[key] = watched
        self.addCleanup(rpc.HANDLERS.__setitem__, key, real)
        self.addCleanup(work.release)
        return work

    def until(self, check, what, seconds=60):
        """Poll ``check()`` until true; ``seconds`` is a safety net."""
        return polling.until(check, what, seconds)

    def wait_task(self, task, timeout=60):
        deadline = time.time() + timeout
        while self.x.task.get_status(task) in ('pending', 'cancelling'):
            if time.time() > deadline:
                raise AssertionError('task %s still pending' % task)
            time.sleep(0.02)
        return self.x.task.get_record(task)

    def assertFailure(self, expected, fn, *args):
        """``fn(*args)`` fails with ErrorDescription ``expected``.

        ``expected`` is the full description, or just its code.
        """
        with self.assertRaises(XenAPI.Failure) as ctx:
            fn(*args)
        details = ctx.exception.details
        if isinstance(expected, str):
            self.assertEqual(expected, details[0], details)
        else:
            self.assertEqual(list(expected), details)
        return details


class Work(object):
    """Calls of one message in progress (SimTestCase.hold)."""

    def __init__(self, held):
        self.held = held
        self.entered = threading.Event()
        self.threads = []
        self._released = threading.Event()

    def enter(self):
        self.threads.append(threading.current_thread())
        self.entered.set()
        if self.held:
            self._released.wait(120)

    def release(self):
        self._released.set()

    def join(self, seconds=60):
        """Until every thread that ran the message has ended (its work
        done, or dead with the xapi that ran it)."""
        for thread in self.threads:
            thread.join(seconds)
            if thread.is_alive():
                raise AssertionError('%s still runs after %d s'
                                     % (thread.name, seconds))


def read_until_close(sock):
    """Everything a server sends on ``sock`` until it closes."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b''.join(chunks)


def _quiet_logout(session):
    try:
        session.xenapi.session.logout()
    except Exception:
        pass
    session('close')()
