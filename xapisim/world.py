"""The simulated world: pools of hosts, each host serving on its own address.

A ``Pool`` owns one database (shared by its hosts, as a xapi pool shares
its master's database), its storage and its API.  Only the master answers
XenAPI calls; the others answer ``HOST_IS_SLAVE`` as xapi's slaves do,
but every host serves the HTTP handlers (VDI import/export, RRDs,
consoles) for what it holds.
"""

import os
import shutil
import socket
import tempfile
import threading

from xapisim import devices as devices_mod
from xapisim import inventory
from xapisim.api import common, memory
from xapisim.db import Database, new_uuid
from xapisim.faults import Faults
from xapisim.lunfile import LunFiles
from xapisim.rawiscsi import Initiators
from xapisim.rpc import Api
from xapisim.schema import NULL_REF
from xapisim.schema import load as load_schema
from xapisim.storage import Storage
from xapisim.tasks import Tasks

# Importing the handler modules registers them.
import xapisim.api.clones  # noqa: F401
import xapisim.api.devices  # noqa: F401
import xapisim.api.event  # noqa: F401
import xapisim.api.host  # noqa: F401
import xapisim.api.message  # noqa: F401
import xapisim.api.migration  # noqa: F401
import xapisim.api.sdn  # noqa: F401
import xapisim.api.network  # noqa: F401
import xapisim.api.session  # noqa: F401
import xapisim.api.storage  # noqa: F401
import xapisim.api.task  # noqa: F401
import xapisim.api.vbd  # noqa: F401
import xapisim.api.vm  # noqa: F401
import xapisim.api.vmcopy  # noqa: F401
import xapisim.api.firmware  # noqa: F401


class Options(object):
    """Sizes and behaviour of a simulated world (the command-line flags)."""

    def __init__(self, pools=1, hosts=1, username='root', password='xapisim',
                 state_dir=None, plugins_dir=None, latency_ms=0,
                 vm_memory_mib=16384, sr_size_gib=100, host_cpus=8,
                 port=0, first_address=2, plugin_python=None,
                 guest_delay=0.05, verbose=False, tls=False,
                 dom0_bridges='br-int', dom0_network=None, devices=None,
                 transfer_nice=0):
        self.pools = int(pools)
        self.hosts = int(hosts)
        self.username = username
        self.password = password
        self.state_dir = state_dir
        self.plugins_dir = plugins_dir
        self.latency_ms = float(latency_ms)
        self.vm_memory_mib = int(vm_memory_mib)
        self.sr_size_gib = int(sr_size_gib)
        self.host_cpus = int(host_cpus)
        self.port = int(port)
        self.first_address = int(first_address)
        self.plugin_python = plugin_python
        self.guest_delay = float(guest_delay)
        self.verbose = verbose
        self.tls = bool(tls)
        # the niceness of the threads that move VDI bytes over HTTP (a
        # benchmark's xapi, standing in for dom0's, yields the CPU to the
        # path it measures)
        self.transfer_nice = int(transfer_nice)
        # bridges each dom0 has that xapi did not make (ovn-controller's
        # integration bridge): the bridges of unmanaged networks
        self.dom0_bridges = [b for b in (dom0_bridges or '').split(',') if b]
        # the hosts' PCI devices and GPUs (xapisim.devices): JSON or a file
        self.devices = devices_mod.read_spec(devices)
        # None (or 'none'): no real networking; 'ovs': xapisim.dom0net
        self.dom0_network = None if dom0_network in (None, '', 'none') \
            else dom0_network
        if self.dom0_network is not None:
            from xapisim.dom0net import MODES
            if self.dom0_network not in MODES:
                raise ValueError('dom0_network is none or one of %s, not %r'
                                 % (', '.join(MODES), dom0_network))


class Host(object):
    def __init__(self, pool, index, address):
        self.pool = pool
        self.index = index
        self.address = address
        self.port = None
        self.ref = None
        self.uuid = new_uuid()
        self.name_label = 'xcp-ng-%s-%d' % (pool.index + 1, index + 1)
        self.server = None
        self.unix_server = None
        self.local_sr = None
        self.dom0 = None        # its dom0 network (xapisim.dom0host)
        self.dom0_root = os.path.join(pool.world.dom0_base,
                                      'p%dh%d' % (pool.index, index))
        for sub in (('var', 'log', 'xen', 'guest'), ('var', 'lib', 'xcp')):
            os.makedirs(os.path.join(self.dom0_root, *sub), exist_ok=True)
        if pool.options.dom0_network is None:
            # with real dom0 networking its Open vSwitch has them instead
            for bridge in pool.options.dom0_bridges:
                os.makedirs(os.path.join(self.dom0_root, 'sys', 'class',
                                         'net', bridge), exist_ok=True)
        self.socket_path = os.path.join(self.dom0_root, 'var', 'lib', 'xcp',
                                        'xapi')

    @property
    def url(self):
        scheme = 'https' if self.pool.options.tls else 'http'
        return '%s://%s:%d' % (scheme, self.address, self.port)

    def describe(self):
        described = {'uuid': self.uuid, 'name_label': self.name_label,
                     'address': self.address, 'url': self.url}
        if self.dom0 is not None:
            described['dom0'] = self.dom0.describe()
        return described


class Pool(object):
    def __init__(self, world, index, addresses):
        self.world = world
        self.index = index
        self.options = world.options
        self.schema = world.schema
        self.uuid = new_uuid()
        self.name_label = 'pool-%d' % (index + 1)
        self.state_dir = os.path.join(world.state_dir, 'pool-%s' % self.uuid)
        os.makedirs(self.state_dir)
        self.db = Database(self.schema)
        self.latency = self.options.latency_ms / 1000.0
        self.faults = Faults()
        self.api = Api(self)
        self.tasks = Tasks(self)
        self.storage = Storage(self)
        self.initiators = Initiators(self.options.verbose)
        self.hosts = [Host(self, i, addr) for i, addr in enumerate(addresses)]
        self.master = self.hosts[0]
        self.guest = {}     # VM uuid -> guest behaviour overrides
        self.vtpm_contents = {}   # VTPM ref -> secret ref (internal field)
        self.domids = {}    # host ref -> last domid given out
        self.message_times = {}   # message ref -> creation time (s)
        self.lock = threading.RLock()
        inventory.populate(self)
        self.devices = devices_mod.populate(self, self.options.devices)

    @property
    def ref(self):
        return self.db.refs('pool')[0]

    def host_by_ref(self, ref):
        for h in self.hosts:
            if h.ref == ref:
                return h
        return None

    def describe(self):
        return {'uuid': self.uuid, 'name_label': self.name_label,
                'master': self.master.url,
                'hosts': [h.describe() for h in self.hosts]}

    # -- what the control interface does -------------------------------

    def restart_xapi(self, keep=None):
        """All sessions and tasks die; clients must log in again.

        The work of the calls and tasks in progress dies too: from now on
        it can change nothing (``Database.epoch``).

        Every connection to the pool's hosts is dropped, except ``keep``
        (the control request asking for the restart, so it gets a reply).
        """
        with self.db.lock:
            for ref in self.db.refs('session'):
                self.db.destroy('session', ref)
            self.tasks.kill_all()
            # calls and tasks in progress die with the process: their
            # threads may change nothing from now on
            self.db.epoch += 1
            self._forget_operations()
        for h in self.hosts:
            for server in (h.server, h.unix_server):
                if server is None:
                    continue
                with server.connections_lock:
                    conns = [c for c in server.connections if c is not keep]
                for conn in conns:
                    try:
                        conn.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def _forget_operations(self):
        """What a restarted xapi finds: no operation in progress anywhere
        and no memory reserved for a VM being started or moved."""
        db = self.db
        for cls, schema in self.schema.classes.items():
            if 'current_operations' not in schema.fields or cls == 'task':
                continue
            for ref, row in list(db.table(cls).items()):
                if row['current_operations']:
                    db.set(cls, ref, current_operations={})
        for vm, row in list(db.table('VM').items()):
            if row['scheduled_to_be_resident_on'] != NULL_REF:
                db.set('VM', vm, scheduled_to_be_resident_on=NULL_REF)
            common.refresh_vm_allowed(db, vm)
        for h in self.hosts:
            memory.refresh_metrics(db, h.ref)
        common.forget_cancellations()

    def move_master(self, host, keep=None):
        with self.db.lock:
            self.master = host
            self.db.set('pool', self.ref, master=host.ref)
        self.restart_xapi(keep)


class World(object):
    def __init__(self, options):
        self.options = options
        self.schema = load_schema()
        self._own_state_dir = options.state_dir is None
        self.state_dir = os.path.abspath(
            options.state_dir or tempfile.mkdtemp(prefix='xapisim-'))
        os.makedirs(self.state_dir, exist_ok=True)
        # Unix socket paths are short (108 bytes): keep dom0 roots near /
        self.dom0_base = os.path.join(self.state_dir, 'dom0')
        if len(self.dom0_base) > 70:
            self.dom0_base = tempfile.mkdtemp(prefix='xapisim-dom0-')
            self._extra_dirs = [self.dom0_base]
        else:
            self._extra_dirs = []
        self.pools = []
        self.ca_file = None
        self.dom0net = None     # xapisim.dom0net.Dom0Network, when asked
        # the FUSE files of the LUNs running guests use
        self.lunfiles = LunFiles(self.state_dir)
        address = options.first_address
        for p in range(options.pools):
            addresses = []
            for _ in range(options.hosts):
                addresses.append('127.0.0.%d' % address)
                address += 1
            self.pools.append(Pool(self, p, addresses))

    def all_hosts(self):
        return [h for p in self.pools for h in p.hosts]

    def host_by_address(self, address):
        for h in self.all_hosts():
            if h.address == address:
                return h
        return None

    def describe(self):
        described = {'pools': [p.describe() for p in self.pools],
                     'username': self.options.username,
                     'password': self.options.password}
        if self.ca_file:
            described['ca_file'] = self.ca_file
        if self.dom0net is not None:
            described['dom0_network'] = self.dom0net.describe()
        return described

    def start(self):
        """Serve every host: own loopback address, one shared port."""
        from xapisim.http import serve_host, shutdown_host
        if self.options.dom0_network and self.dom0net is None:
            from xapisim.dom0net import Dom0Network
            dom0net = Dom0Network(self)
            dom0net.start()
            self.dom0net = dom0net
        try:
            self._serve(serve_host, shutdown_host)
        except BaseException:
            self._stop_dom0net()
            raise

    def _serve(self, serve_host, shutdown_host):
        tls = None
        if self.options.tls:
            from xapisim import tls as tls_mod
            self.ca_file, cert, key = tls_mod.make_certificates(
                self.state_dir, [h.address for h in self.all_hosts()])
            tls = tls_mod.server_context(cert, key)
        for _ in range(20):
            port = self.options.port
            started = []
            try:
                for host in self.all_hosts():
                    port = serve_host(host, port, tls)
                    started.append(host)
                return
            except OSError:
                for host in started:
                    shutdown_host(host)
                if self.options.port:
                    raise
        raise RuntimeError('no free port shared by all simulated hosts')

    def stop(self):
        from xapisim.http import shutdown_host
        for pool in self.pools:
            pool.initiators.close()
        for host in self.all_hosts():
            shutdown_host(host)
            if os.path.exists(host.socket_path):
                os.unlink(host.socket_path)
        self._stop_dom0net()
        self.lunfiles.close()
        if self._own_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        for path in self._extra_dirs:
            shutil.rmtree(path, ignore_errors=True)

    def _stop_dom0net(self):
        if self.dom0net is not None:
            self.dom0net.close()
            self.dom0net = None
