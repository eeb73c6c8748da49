"""nova_xen_host.py through xapisim and host.call_plugin, as the driver calls it.

The real plugin file runs as a process under dom0's Python (3.6 when this
machine has it), with DOM0_ROOT pointing at the simulated host's dom0.
"""

import base64
import json
import os
import re
import shutil
import sys
import tempfile
import time
import unittest
import zlib

import XenAPI

from tests.xapisim.base import SimTestCase

PLUGINS_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    'dom0_plugins', 'etc', 'xapi.d', 'plugins')
PLUGIN = 'nova_xen_host.py'
# dom0's Python: XCP-ng 8.3 runs plugins with 3.6
PY36 = os.environ.get('XAPISIM_PY36', '/root/.pyenv/versions/3.6.15/bin/python3.6')
PLUGIN_PYTHON = PY36 if os.path.exists(PY36) else sys.executable
UPTIME_LINE = re.compile(r'^ \d\d:\d\d:\d\d up (\d+ days?, )?( ?\d+:\d\d|\d+ min),  '
                         r'load average: \d+\.\d\d, \d+\.\d\d, \d+\.\d\d$')


def machine_uptime():
    with open('/proc/uptime') as fh:
        return float(fh.read().split()[0])


class HostPluginTestCase(SimTestCase):
    hosts = 2
    sim_options = {'plugins_dir': PLUGINS_DIR, 'plugin_python': PLUGIN_PYTHON,
                   'guest_delay': 0.01}

    def host(self, index=0):
        uuid = self.world['pools'][0]['hosts'][index]['uuid']
        return self.x.host.get_by_uuid(uuid)

    def dom0_root(self, index=0):
        return self.sim.world.pools[0].hosts[index].dom0_root

    def call(self, fn, params=None, host=0, raw=None):
        args = {'params': raw if raw is not None else json.dumps(params or {})}
        return json.loads(self.x.host.call_plugin(self.host(host), PLUGIN, fn, args))

    def invalid(self, fn, params, name, reason, host=0):
        self.assertFailure(['NOVA_XEN_INVALID_ARGUMENT', name, reason],
                           self.call, fn, params, host)


class ConsoleLogTest(HostPluginTestCase):

    def running_vm(self, host=0, console=None):
        vm = self.new_vm(name='console-vm')
        if console is not None:
            self.control().guest(self.x.VM.get_uuid(vm), console=console)
        self.x.VM.start_on(vm, self.host(host), False, False)
        return vm, int(self.x.VM.get_domid(vm))

    def log_bytes(self, domid, host=0):
        path = os.path.join(self.dom0_root(host), 'var', 'log', 'xen', 'guest',
                            'console.%d' % domid)
        with open(path, 'rb') as fh:
            return fh.read()

    def console_log(self, params, host=0):
        result = self.call('console_log', params, host)
        self.assertEqual({'data', 'size', 'truncated'}, set(result))
        return result, zlib.decompress(base64.b64decode(result['data']))

    def test_whole_log_of_a_running_vm(self):
        _, domid = self.running_vm(console='r\u00e9seau pr\u00eat\nlogin: \n')
        result, data = self.console_log({'domid': domid})
        log = self.log_bytes(domid)
        self.assertEqual(log, data)
        self.assertIn('r\u00e9seau pr\u00eat'.encode(), data)
        self.assertEqual(len(log), result['size'])
        self.assertFalse(result['truncated'])

    def test_default_returns_the_last_100_kib(self):
        lines = ''.join('line %06d of a chatty guest\n' % i for i in range(10000))
        _, domid = self.running_vm(console=lines + 'the very end\n')
        result, data = self.console_log({'domid': domid})
        log = self.log_bytes(domid)
        self.assertGreater(len(log), 102400)
        self.assertEqual(log[-102400:], data)
        self.assertTrue(data.endswith(b'the very end\n'))
        self.assertEqual(len(log), result['size'])
        self.assertTrue(result['truncated'])
        # compressed: a 100 KiB console does not cost 100 KiB on the wire
        self.assertLess(len(result['data']), 102400 // 2)

    def test_small_max_bytes_returns_the_tail(self):
        _, domid = self.running_vm(console='0123456789\n')
        log = self.log_bytes(domid)
        for max_bytes in (1, 11, len(log) - 1):
            result, data = self.console_log({'domid': domid, 'max_bytes': max_bytes})
            self.assertEqual(log[-max_bytes:], data)
            self.assertTrue(result['truncated'])
            self.assertEqual(len(log), result['size'])
        result, data = self.console_log({'domid': domid, 'max_bytes': len(log)})
        self.assertEqual(log, data)
        self.assertFalse(result['truncated'])
        result, data = self.console_log({'domid': domid, 'max_bytes': 1048576})
        self.assertEqual(log, data)

    def test_each_host_reads_its_own_dom0(self):
        _, domid = self.running_vm(host=1, console='only on host 2\n')
        _, data = self.console_log({'domid': domid}, host=1)
        self.assertIn(b'only on host 2', data)
        try:
            _, other = self.console_log({'domid': domid}, host=0)
        except XenAPI.Failure as exc:
            self.assertEqual(['NOVA_XEN_NO_CONSOLE_LOG', str(domid)], exc.details)
        else:
            self.assertNotIn(b'only on host 2', other)

    def test_a_huge_log_is_not_read_whole(self):
        # a guest that floods its console: 8 GiB (sparse), then the tail
        path = os.path.join(self.dom0_root(), 'var', 'log', 'xen', 'guest',
                            'console.31000')
        self.addCleanup(os.remove, path)
        with open(path, 'wb') as fh:
            fh.truncate(8 << 30)
            fh.seek(0, os.SEEK_END)
            fh.write(b'kernel panic\n')
        result, data = self.console_log({'domid': 31000, 'max_bytes': 4096})
        self.assertEqual(b'\0' * (4096 - 13) + b'kernel panic\n', data)
        self.assertEqual((8 << 30) + 13, result['size'])
        self.assertTrue(result['truncated'])

    def test_missing_log(self):
        self.assertFailure(['NOVA_XEN_NO_CONSOLE_LOG', '32000'],
                           self.call, 'console_log', {'domid': 32000})

    def test_domid_is_a_domu_number(self):
        self.invalid('console_log', {}, 'domid', 'is required')
        self.invalid('console_log', {'domid': None}, 'domid', 'is required')
        for bad in ('1', 1.0, True, [1], {'id': 1}, '../../../etc/passwd'):
            self.invalid('console_log', {'domid': bad}, 'domid', 'must be an integer')
        self.invalid('console_log', {'domid': 0}, 'domid', 'must be at least 1')
        self.invalid('console_log', {'domid': -3}, 'domid', 'must be at least 1')
        # 0x7ff0 and up are Xen's reserved domids
        self.invalid('console_log', {'domid': 32752}, 'domid', 'must be at most 32751')

    def test_max_bytes_is_bounded(self):
        _, domid = self.running_vm()
        self.invalid('console_log', {'domid': domid, 'max_bytes': 0}, 'max_bytes',
                     'must be at least 1')
        self.invalid('console_log', {'domid': domid, 'max_bytes': 1048577}, 'max_bytes',
                     'must be at most 1048576')
        self.invalid('console_log', {'domid': domid, 'max_bytes': '100'}, 'max_bytes',
                     'must be an integer')

    def test_unknown_parameters_are_refused(self):
        # the old os-xenapi console plugin's name
        self.invalid('console_log', {'dom_id': 1}, 'dom_id', 'is not a parameter')
        self.invalid('console_log', {'domid': 1, 'bytes': 1}, 'bytes',
                     'is not a parameter')

    def test_params_must_be_a_json_object(self):
        self.assertFailure(['NOVA_XEN_INVALID_ARGUMENT', 'params', 'is not JSON'],
                           self.call, 'console_log', None, 0, '{domid: 1')
        self.assertFailure(['NOVA_XEN_INVALID_ARGUMENT', 'params', 'must be a JSON object'],
                           self.call, 'console_log', None, 0, '[1]')


class HostFactsTest(HostPluginTestCase):
    """The simulated dom0 has no /proc: the machine's own figures are read."""

    def test_host_facts_are_this_machines(self):
        before = machine_uptime()
        facts = self.call('host_facts')
        after = machine_uptime()
        self.assertEqual({'uptime', 'loadavg', 'memory_total', 'memory_free',
                          'kernel_release', 'root_free', 'root_total'}, set(facts))
        self.assertTrue(before <= facts['uptime'] <= after, (before, facts, after))
        self.assertEqual(3, len(facts['loadavg']))
        for load in facts['loadavg']:
            self.assertGreaterEqual(load, 0.0)
        with open('/proc/meminfo') as fh:
            total = int(re.search(r'^MemTotal:\s+(\d+) kB$', fh.read(), re.M).group(1))
        self.assertEqual(total * 1024, facts['memory_total'])
        self.assertTrue(0 < facts['memory_free'] < facts['memory_total'], facts)
        self.assertEqual(os.uname().release, facts['kernel_release'])
        root = os.statvfs(self.dom0_root())
        self.assertEqual(root.f_blocks * root.f_frsize, facts['root_total'])
        self.assertTrue(0 < facts['root_free'] <= facts['root_total'], facts)

    def test_host_uptime(self):
        before = machine_uptime()
        result = self.call('host_uptime')
        after = machine_uptime()
        self.assertEqual({'uptime', 'text'}, set(result))
        self.assertTrue(before <= result['uptime'] <= after, (before, result, after))
        self.assertRegex(result['text'], UPTIME_LINE)

    def test_no_parameters(self):
        self.invalid('host_facts', {'verbose': True}, 'verbose', 'is not a parameter')
        self.invalid('host_uptime', {'x': 1}, 'x', 'is not a parameter')

    def test_plugin_api_version(self):
        self.assertEqual({'api_version': '1.2'}, self.call('plugin_api_version'))


class VmDataTest(HostPluginTestCase):
    """vm_data_write: into the running domain's xenstore (the simulated
    dom0 keeps nodes as files), with its arguments checked first."""

    def node(self, domid, key, host=0):
        path = os.path.join(self.dom0_root(host), 'var', 'lib', 'xapisim',
                            'xenstore', 'local', 'domain', str(domid),
                            'vm-data', *key.split('/'))
        with open(path) as fh:
            return fh.read()

    def test_writes_the_node(self):
        self.assertEqual({'path': '/local/domain/7/vm-data/admin_password'},
                         self.call('vm_data_write', {
                             'domid': 7, 'key': 'admin_password',
                             'value': 'pa ss "word"; $(x)'}))
        self.assertEqual('pa ss "word"; $(x)', self.node(7, 'admin_password'))
        self.call('vm_data_write', {'domid': 7, 'key': 'agent/a-b_c',
                                    'value': ''}, host=1)
        self.assertEqual('', self.node(7, 'agent/a-b_c', host=1))

    def test_bad_arguments(self):
        for key in ('../escape', '/abs', 'a//b', 'a/b/c/d/e', 'sp ace', '',
                    'a/..'):
            self.invalid('vm_data_write', {'domid': 7, 'key': key,
                                           'value': 'v'}, 'key',
                         'must be names of letters, digits, _ and - joined '
                         'by /, at most 4')
        self.invalid('vm_data_write', {'domid': 0, 'key': 'k', 'value': 'v'},
                     'domid', 'must be at least 1')
        self.invalid('vm_data_write', {'domid': 7, 'key': 'k',
                                       'value': 'v' * 4097},
                     'value', 'is too long')
        self.invalid('vm_data_write', {'domid': 7, 'key': 'k'},
                     'value', 'is required')


class Dom0ProcTest(HostPluginTestCase):
    """A dom0 with its own /proc (a real one) is read, not the machine's."""

    hosts = 1

    def write_proc(self, name, text):
        proc = os.path.join(self.dom0_root(), 'proc')
        if not os.path.isdir(proc):
            os.mkdir(proc)
            self.addCleanup(shutil.rmtree, proc)
        with open(os.path.join(proc, name), 'w') as fh:
            fh.write(text)

    def setUp(self):
        super(Dom0ProcTest, self).setUp()
        self.write_proc('loadavg', '0.52 1.07 2.50 3/412 31337\n')
        self.write_proc('meminfo', 'MemTotal:        4030552 kB\n'
                                   'MemFree:          812344 kB\n'
                                   'HugePages_Total:       0\n'
                                   'Hugepagesize:       2048 kB\n')

    def uptime(self, seconds):
        self.write_proc('uptime', '%.2f 1234.56\n' % seconds)
        result = self.call('host_uptime')
        self.assertEqual(seconds, result['uptime'])
        self.assertRegex(result['text'], UPTIME_LINE)
        return result['text'].split(' up ', 1)[1]

    def test_uptime_reads_like_procps(self):
        load = ',  load average: 0.52, 1.07, 2.50'
        self.assertEqual('0 min' + load, self.uptime(59.99))
        self.assertEqual('42 min' + load, self.uptime(42 * 60 + 5))
        self.assertEqual(' 5:07' + load, self.uptime(5 * 3600 + 7 * 60))
        self.assertEqual('1 day, 3 min' + load, self.uptime(86400 + 180))
        self.assertEqual('93 days, 18:25' + load,
                         self.uptime(93 * 86400 + 18 * 3600 + 25 * 60 + 0.5))

    def test_uptime_line_starts_with_local_time(self):
        before = time.time()
        text = self.call('host_uptime')['text']
        after = time.time()
        # any second between the two readings (however long the call took)
        stamps = {time.strftime('%H:%M:%S', time.localtime(t))
                  for t in range(int(before), int(after) + 1)}
        self.assertIn(text[1:9], stamps)

    def test_facts_come_from_dom0s_proc(self):
        self.write_proc('uptime', '8123.45 1.00\n')
        facts = self.call('host_facts')
        self.assertEqual(8123.45, facts['uptime'])
        self.assertEqual([0.52, 1.07, 2.5], facts['loadavg'])
        self.assertEqual(4030552 * 1024, facts['memory_total'])
        self.assertEqual(812344 * 1024, facts['memory_free'])


@unittest.skipUnless(os.path.exists(PY36) or os.environ.get('XAPISIM_REQUIRE_PY36') == '1',
                     "no Python 3.6 interpreter (dom0's version)")
class Python36Test(HostPluginTestCase):
    """When this machine has Python 3.6, the plugin really runs under it."""

    hosts = 1
    PROBE = ('#!/usr/bin/env python3\n'
             'import sys\n'
             'import nova_xen_dom0lib as lib\n'
             'lib.main({"python": lambda session, params: list(sys.version_info[:2])})\n')

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(PY36):
            raise AssertionError('XAPISIM_REQUIRE_PY36=1 but %s is missing' % PY36)
        # the real files, and a probe beside them that tells its Python
        cls.plugins = tempfile.mkdtemp(prefix='nova-xen-plugins-')
        for name in os.listdir(PLUGINS_DIR):
            if name.endswith('.py'):
                shutil.copy2(os.path.join(PLUGINS_DIR, name), cls.plugins)
        probe = os.path.join(cls.plugins, 'python_probe.py')
        with open(probe, 'w') as fh:
            fh.write(cls.PROBE)
        os.chmod(probe, 0o755)      # xapi execs plugins
        cls.sim_options = dict(HostPluginTestCase.sim_options, plugins_dir=cls.plugins)
        super(Python36Test, cls).setUpClass()

    @classmethod
    def tearDownClass(cls):
        super(Python36Test, cls).tearDownClass()
        shutil.rmtree(cls.plugins)

    def test_plugins_run_under_python_3_6(self):
        self.assertEqual(PY36, PLUGIN_PYTHON)
        version = json.loads(self.x.host.call_plugin(self.host(), 'python_probe.py',
                                                     'python', {'params': '{}'}))
        self.assertEqual([3, 6], version)
        self.assertRegex(self.call('host_uptime')['text'], UPTIME_LINE)
        self.assertFailure(['NOVA_XEN_NO_CONSOLE_LOG', '7'],
                           self.call, 'console_log', {'domid': 7})


if __name__ == '__main__':
    unittest.main()
