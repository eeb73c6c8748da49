"""``python -m xapisim``: the command line, its JSON line and its lifetime."""

import http.client
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

import XenAPI

import xapisim

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
MIB = 1024 * 1024


def _free_port(address='127.0.0.2'):
    sock = socket.socket()
    try:
        sock.bind((address, 0))
        return sock.getsockname()[1]
    finally:
        sock.close()


class CliTestCase(unittest.TestCase):

    def start(self, *args, env=None):
        """Run the simulator; (process, the JSON line it printed)."""
        full_env = dict(os.environ, PYTHONPATH=ROOT)
        full_env.update(env or {})
        proc = subprocess.Popen([sys.executable, '-m', 'xapisim'] +
                                list(args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=full_env,
                                cwd=tempfile.gettempdir())
        self.addCleanup(self._reap, proc)
        line = self._read_line(proc, 30)
        return proc, json.loads(line.decode())

    def _read_line(self, proc, timeout):
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        data = b''
        try:
            while not data.endswith(b'\n'):
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self.fail('no JSON line within %d s' % timeout)
                chunk = os.read(proc.stdout.fileno(), 1)
                if not chunk:
                    self.fail('xapisim exited (%s) before describing itself: '
                              '%s' % (proc.wait(), proc.stderr.read()))
                data += chunk
        finally:
            sel.close()
        return data

    def _reap(self, proc):
        if proc.poll() is None:
            proc.kill()
        proc.communicate()

    def stop(self, proc, sig=signal.SIGTERM):
        """Signal the simulator; (exit status, rest of stdout, stderr)."""
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
        return proc.returncode, out, err

    def login(self, url, username='root', password='xapisim'):
        session = XenAPI.Session(url)
        session.login_with_password(username, password, '2.21', 'cli-test')
        self.addCleanup(_close, session)
        return session.xenapi


def _close(session):
    try:
        session.xenapi.session.logout()
    except Exception:
        pass


class DescriptionTest(CliTestCase):

    def test_one_json_line_describing_two_pools(self):
        proc, world = self.start('--pools', '2', '--hosts', '2')
        self.assertEqual({'pools', 'username', 'password'}, set(world))
        self.assertEqual(('root', 'xapisim'),
                         (world['username'], world['password']))
        self.assertEqual(2, len(world['pools']))
        hosts = []
        for pool in world['pools']:
            self.assertEqual({'uuid', 'name_label', 'master', 'hosts'},
                             set(pool))
            self.assertEqual(2, len(pool['hosts']))
            self.assertEqual(pool['hosts'][0]['url'], pool['master'])
            for host in pool['hosts']:
                self.assertEqual({'uuid', 'name_label', 'address', 'url'},
                                 set(host))
                hosts.append(host)
        self.assertEqual(['127.0.0.%d' % n for n in range(2, 6)],
                         [h['address'] for h in hosts])
        ports = set(urllib.parse.urlsplit(h['url']).port for h in hosts)
        self.assertEqual(1, len(ports))
        port = ports.pop()
        for h in hosts:
            self.assertEqual('http://%s:%d' % (h['address'], port), h['url'])

        # what it describes is what it serves
        for pool in world['pools']:
            x = self.login(pool['master'])
            self.assertEqual(pool['uuid'], x.pool.get_uuid(x.pool.get_all()[0]))
            self.assertEqual(sorted(h['uuid'] for h in pool['hosts']),
                             sorted(x.host.get_uuid(h) for h in x.host.get_all()))
            for h in pool['hosts']:
                ref = x.host.get_by_uuid(h['uuid'])
                self.assertEqual(h['name_label'], x.host.get_name_label(ref))
                self.assertEqual(h['address'], x.host.get_address(ref))

        status, out, err = self.stop(proc)
        self.assertEqual(0, status, err)
        self.assertEqual(b'', out)          # exactly one line on stdout
        self.assertTrue(err.strip())        # diagnostics go to stderr

    def test_port_and_credentials_are_honoured(self):
        port = _free_port()
        proc, world = self.start('--port', str(port), '--username', 'admin',
                                 '--password', 's3cret')
        self.assertEqual(('admin', 's3cret'),
                         (world['username'], world['password']))
        self.assertEqual('http://127.0.0.2:%d' % port,
                         world['pools'][0]['master'])
        x = self.login(world['pools'][0]['master'], 'admin', 's3cret')
        self.assertEqual(1, len(x.pool.get_all()))
        session = XenAPI.Session(world['pools'][0]['master'])
        with self.assertRaises(XenAPI.Failure) as ctx:
            session.login_with_password('root', 'xapisim')
        self.assertEqual('SESSION_AUTHENTICATION_FAILED',
                         ctx.exception.details[0])
        self.assertEqual(0, self.stop(proc)[0])

    def test_port_in_use(self):
        port = _free_port()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(('127.0.0.2', port))
        sock.listen(1)
        self.addCleanup(sock.close)
        env = dict(os.environ, PYTHONPATH=ROOT)
        proc = subprocess.run([sys.executable, '-m', 'xapisim', '--port',
                               str(port)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env, timeout=30)
        self.assertNotEqual(0, proc.returncode)
        self.assertEqual(b'', proc.stdout)
        self.assertIn(b'xapisim', proc.stderr)

    def test_devices_from_a_file(self):
        from tests import devices_world
        path = os.path.join(tempfile.mkdtemp(), 'devices.json')
        self.addCleanup(shutil.rmtree, os.path.dirname(path))
        with open(path, 'w') as fh:
            json.dump(devices_world.SPEC, fh)
        proc, world = self.start('--devices', path)
        x = self.login(world['pools'][0]['master'])
        self.assertEqual(['0000:00:1f.2', '0000:04:00.0', '0000:04:10.0',
                          '0000:06:00.0', '0000:81:00.0', '0000:82:00.0'],
                         sorted(x.PCI.get_pci_id(p) for p in x.PCI.get_all()))
        self.assertEqual(0, self.stop(proc)[0])

    def test_a_bad_devices_description_stops_it_with_the_reason(self):
        env = dict(os.environ, PYTHONPATH=ROOT)
        proc = subprocess.run([sys.executable, '-m', 'xapisim', '--devices',
                               '{"hosts": {"xcp-ng-1-1": {"pci": [{}]}}}'],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env, timeout=30)
        self.assertEqual(1, proc.returncode)
        self.assertEqual(b'', proc.stdout)
        self.assertIn(b'xapisim: cannot serve: host xcp-ng-1-1 PCI None: '
                      b'"pci_id" (a string) is required', proc.stderr)

    def test_bad_arguments(self):
        env = dict(os.environ, PYTHONPATH=ROOT)
        proc = subprocess.run([sys.executable, '-m', 'xapisim', '--pools',
                               '0'], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env, timeout=30)
        self.assertEqual(2, proc.returncode)
        self.assertEqual(b'', proc.stdout)
        self.assertIn(b'usage', proc.stderr)


class OptionsTest(CliTestCase):

    def timed(self, fn, *args):
        start = time.monotonic()
        fn(*args)
        return time.monotonic() - start

    def test_latency_ms_delays_every_call(self):
        proc, world = self.start('--latency-ms', '200')
        x = self.login(world['pools'][0]['master'])
        for fn, args in ((x.pool.get_all, ()), (x.VM.get_all, ()),
                         (x.host.get_all, ())):
            self.assertGreaterEqual(self.timed(fn, *args), 0.2)
        self.assertEqual(0, self.stop(proc)[0])

    def test_no_latency_by_default(self):
        # what the command builds from no options (its world, in this
        # process): calls are not delayed (no bound on how long one takes)
        from xapisim import __main__ as command
        sim = xapisim.Simulator(**vars(command.parse([])))
        self.addCleanup(sim.stop)
        self.assertEqual([0], [pool.latency for pool in sim.world.pools])

    def test_plugins_dir_defaults_to_the_checkouts(self):
        plugins = os.path.join(ROOT, 'dom0_plugins', 'etc', 'xapi.d',
                               'plugins')
        if not os.path.isdir(plugins):
            self.skipTest('not run from a checkout')
        executable = sorted(
            name for name in os.listdir(plugins)
            if os.path.isfile(os.path.join(plugins, name)) and
            os.stat(os.path.join(plugins, name)).st_mode & 0o111)
        self.assertTrue(executable)
        # run from elsewhere (start() uses the temporary directory)
        proc, world = self.start()
        x = self.login(world['pools'][0]['master'])
        host = x.host.get_all()[0]
        # each plugin of the checkout runs: XenAPIPlugin's dispatch says
        # it has no such function
        for name in executable:
            with self.assertRaises(XenAPI.Failure) as ctx:
                x.host.call_plugin(host, name, 'no_such_function', {})
            self.assertEqual(['UNKNOWN_XENAPI_PLUGIN_FUNCTION',
                              'no_such_function'], ctx.exception.details,
                             name)
        with self.assertRaises(XenAPI.Failure) as ctx:
            x.host.call_plugin(host, 'not_in_the_checkout.py', 'f', {})
        self.assertEqual(['XENAPI_MISSING_PLUGIN', 'not_in_the_checkout.py'],
                         ctx.exception.details)
        self.assertEqual(0, self.stop(proc)[0])


class LifetimeTest(CliTestCase):

    def test_sigint_exits_zero_and_removes_temp_state(self):
        tmp = tempfile.mkdtemp(prefix='xapisim-cli-test-')
        self.addCleanup(shutil.rmtree, tmp, True)
        proc, world = self.start('--hosts', '2', env={'TMPDIR': tmp})
        x = self.login(world['pools'][0]['master'])
        dom0 = x.host.get_other_config(x.host.get_all()[0])
        self.assertTrue(dom0['xapisim_dom0_root'].startswith(tmp))
        self.assertTrue(os.listdir(tmp))
        status, out, err = self.stop(proc, signal.SIGINT)
        self.assertEqual(0, status, err)
        self.assertEqual(b'', out)
        self.assertEqual([], os.listdir(tmp))
        with self.assertRaises(ConnectionError):
            XenAPI.Session(world['pools'][0]['master']).login_with_password(
                'root', 'xapisim')

    def test_state_dir_keeps_vdi_bytes(self):
        state = tempfile.mkdtemp(prefix='xapisim-cli-state-')
        self.addCleanup(shutil.rmtree, state, True)
        proc, world = self.start('--state-dir', state)
        master = world['pools'][0]['master']
        session = XenAPI.Session(master)
        session.login_with_password('root', 'xapisim')
        self.addCleanup(_close, session)
        x = session.xenapi
        sr = x.pool.get_default_SR(x.pool.get_all()[0])
        vdi = x.VDI.create({'SR': sr, 'virtual_size': str(MIB),
                            'type': 'user', 'sharable': False,
                            'read_only': False, 'other_config': {},
                            'name_label': 'kept'})
        data = b'bytes that outlive the simulator ' * 100
        task = x.task.create('upload', '')
        parts = urllib.parse.urlsplit(master)
        conn = http.client.HTTPConnection(parts.hostname, parts.port,
                                          timeout=30)
        conn.request('PUT', '/import_raw_vdi?session_id=%s&vdi=%s&task_id=%s'
                     % (session._session, vdi, task), body=data)
        resp = conn.getresponse()
        resp.read()
        conn.close()
        self.assertEqual(200, resp.status)
        deadline = time.monotonic() + 60
        while x.task.get_status(task) == 'pending':
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.02)
        self.assertEqual('success', x.task.get_status(task))
        size = int(x.VDI.get_virtual_size(vdi))     # the SM may round up
        status, _, err = self.stop(proc)
        self.assertEqual(0, status, err)
        holders = []
        for dirpath, _, files in os.walk(state):
            for name in files:
                path = os.path.join(dirpath, name)
                self.assertTrue(os.path.isfile(path), path)
                with open(path, 'rb') as fh:
                    content = fh.read()
                if content.startswith(data):
                    holders.append((name, content))
        self.assertEqual(1, len(holders), holders)
        self.assertEqual(b'\0' * (size - len(data)),
                         holders[0][1][len(data):])

    def test_running_yields_the_description(self):
        with xapisim.running(pools=1, hosts=2, username='op',
                             password='pw') as world:
            self.assertEqual({'pools', 'username', 'password'}, set(world))
            self.assertEqual(('op', 'pw'),
                             (world['username'], world['password']))
            [pool] = world['pools']
            self.assertEqual(['127.0.0.2', '127.0.0.3'],
                             [h['address'] for h in pool['hosts']])
            x = self.login(pool['master'], 'op', 'pw')
            self.assertEqual(pool['uuid'],
                             x.pool.get_uuid(x.pool.get_all()[0]))
            master = pool['master']
        # the process is gone with the block
        with self.assertRaises(ConnectionError):
            XenAPI.Session(master).login_with_password('op', 'pw')


if __name__ == '__main__':
    unittest.main()
