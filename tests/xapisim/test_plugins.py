"""host.call_plugin: plugin files run as processes, the way xapi runs them."""

import json
import os
import re
import shutil
import tempfile
import unittest

import XenAPI

from tests.xapisim.base import SimTestCase

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PLUGINS = os.path.join(HERE, 'plugins')
PLUGIN = 'xapisim_probe.py'
# dom0's Python (XCP-ng 8.x runs plugins with 3.6)
PY36 = os.environ.get('XAPISIM_PY36',
                      '/root/.pyenv/versions/3.6.15/bin/python3.6')


class PluginTestCase(SimTestCase):
    pools = 1
    hosts = 2
    sim_options = {'plugins_dir': PLUGINS, 'guest_delay': 0.01}

    def host(self, index):
        uuid = self.world['pools'][0]['hosts'][index]['uuid']
        return self.x.host.get_by_uuid(uuid)

    def call(self, fn, args=None, host=0, plugin=PLUGIN):
        return self.x.host.call_plugin(self.host(host), plugin, fn,
                                       args or {})

    def running_vm(self, host, name):
        vm = self.new_vm(name=name)
        self.x.VM.start_on(vm, self.host(host), False, False)
        return vm


class PluginResultTest(PluginTestCase):

    def test_success_returns_the_plugin_string(self):
        result = json.loads(self.call('echo', {'colour': 'blue', 'n': '7'}))
        self.assertEqual({'colour': 'blue', 'n': '7'}, result['args'])

    def test_plugin_is_given_the_callers_session(self):
        result = json.loads(self.call('echo'))
        self.assertEqual(self.session._session, result['session'])

    def test_plugin_failure_reaches_caller_verbatim(self):
        self.assertFailure(['MY_CODE', 'a', 'b'], self.call, 'fail_with_code')

    def test_generic_exception(self):
        self.assertFailure(
            ['XENAPI_PLUGIN_FAILURE', 'boom', 'ValueError', 'kaput: disk'],
            self.call, 'boom', {'why': 'disk'})

    def test_unknown_function(self):
        self.assertFailure(['UNKNOWN_XENAPI_PLUGIN_FUNCTION', 'no_such_fn'],
                           self.call, 'no_such_fn')

    def test_non_zero_exit_inside_dispatch(self):
        self.assertFailure(['XENAPI_PLUGIN_FAILURE', 'non-zero exit',
                            'half a reply', 'something broke\n'],
                           self.call, 'exit_badly')

    def test_non_zero_exit_before_dispatch(self):
        self.assertFailure(['XENAPI_PLUGIN_FAILURE', 'non-zero exit',
                            'starting\n', 'Traceback: no such module\n'],
                           self.call, 'anything', {}, 0, 'xapisim_crash')

    def test_missing_plugin(self):
        self.assertFailure(['XENAPI_MISSING_PLUGIN', 'no_such_plugin.py'],
                           self.call, 'echo', {}, 0, 'no_such_plugin.py')

    def test_plugin_name_is_the_exact_file_name(self):
        # xapi does not add ".py": "xapisim_probe" is another plugin
        self.assertFailure(['XENAPI_MISSING_PLUGIN', 'xapisim_probe'],
                           self.call, 'echo', {}, 0, 'xapisim_probe')

    def test_args_must_be_a_string_map(self):
        details = self.assertFailure('INTERNAL_ERROR', self.x.host.call_plugin,
                                     self.host(0), PLUGIN, 'echo', {'n': 7})
        self.assertEqual(2, len(details), details)

    def test_invalid_host(self):
        self.assertFailure(['HANDLE_INVALID', 'host', 'OpaqueRef:NULL'],
                           self.x.host.call_plugin, 'OpaqueRef:NULL', PLUGIN,
                           'echo', {})


class PluginModeTest(PluginTestCase):
    """xapi execs the plugin file: one without an execute bit cannot run
    (forkexecd's execve fails, its child exits 126 and says nothing)."""

    hosts = 1

    @classmethod
    def setUpClass(cls):
        cls.plugins = tempfile.mkdtemp(prefix='xapisim-plugin-modes-')
        source = os.path.join(PLUGINS, PLUGIN)
        # copy2 keeps the mode (0755), as a test copying plugins must
        shutil.copy2(source, os.path.join(cls.plugins, 'runs.py'))
        shutil.copy2(source, os.path.join(cls.plugins, 'library.py'))
        os.chmod(os.path.join(cls.plugins, 'library.py'), 0o644)
        os.mkdir(os.path.join(cls.plugins, 'a_directory'))
        cls.sim_options = dict(PluginTestCase.sim_options,
                               plugins_dir=cls.plugins)
        super(PluginModeTest, cls).setUpClass()

    @classmethod
    def tearDownClass(cls):
        super(PluginModeTest, cls).tearDownClass()
        shutil.rmtree(cls.plugins, ignore_errors=True)

    def test_an_executable_plugin_runs(self):
        self.assertEqual({'x': '1'}, json.loads(
            self.call('echo', {'x': '1'}, plugin='runs.py'))['args'])

    def test_a_file_without_execute_bit_fails(self):
        for name in ('library.py', 'a_directory'):
            self.assertFailure(['XENAPI_PLUGIN_FAILURE', 'non-zero exit', '',
                                ''], self.call, 'echo', {}, 0, name)

    def test_it_runs_once_made_executable(self):
        path = os.path.join(self.plugins, 'later.py')
        shutil.copy(os.path.join(PLUGINS, PLUGIN), path)
        os.chmod(path, 0o600)
        self.assertFailure('XENAPI_PLUGIN_FAILURE', self.call, 'echo', {}, 0,
                           'later.py')
        os.chmod(path, 0o700)
        json.loads(self.call('echo', {}, plugin='later.py'))


class CheckoutPluginModesTest(unittest.TestCase):
    """The checkout's plugins the driver calls are executable files."""

    def test_the_drivers_plugins_are_executable(self):
        from xapisim.plugins import default_plugins_dir
        plugins = default_plugins_dir()
        driver = os.path.join(ROOT, 'nova_xen')
        if plugins is None or not os.path.isdir(driver):
            self.skipTest('not a checkout with the driver')
        called = set()
        for name in os.listdir(driver):
            if name.endswith('.py'):
                with open(os.path.join(driver, name)) as fh:
                    called.update(re.findall(
                        r"PLUGIN\s*=\s*'([A-Za-z0-9_.]+)'", fh.read()))
        self.assertTrue(called)
        for name in sorted(called):
            path = os.path.join(plugins, name)
            self.assertTrue(os.path.isfile(path), path)
            self.assertTrue(os.stat(path).st_mode & 0o111,
                            '%s is called as a plugin but is not '
                            'executable' % path)


class PluginCallbackTest(PluginTestCase):

    def test_plugin_calls_back_with_its_session(self):
        self.new_vm(name='seen-by-plugin')
        names = json.loads(self.call('vm_names'))
        self.assertIn('seen-by-plugin', names)
        self.assertIn('Control domain on host: %s'
                      % self.world['pools'][0]['hosts'][1]['name_label'],
                      names)

    def test_plugin_on_slave_calls_back_through_its_socket(self):
        # xapi forwards calls arriving on a slave's Unix socket to the master
        described = self.world['pools'][0]['hosts'][1]
        record = json.loads(self.call('host_record',
                                      {'host_uuid': described['uuid']}, 1))
        self.assertEqual({'name_label': described['name_label'],
                          'address': described['address']}, record)

    def test_plugin_reads_console_log_of_its_host(self):
        vm = self.running_vm(0, 'console-on-host-0')
        domid = self.x.VM.get_domid(vm)
        log = self.call('console_log', {'dom_id': domid}, 0)
        self.assertIn('console-on-host-0 login:', log)

    def test_plugin_runs_on_the_named_host(self):
        vm = self.running_vm(1, 'console-on-host-1')
        domid = self.x.VM.get_domid(vm)
        self.assertEqual(self.host(1), self.x.VM.get_resident_on(vm))
        log = self.call('console_log', {'dom_id': domid}, 1)
        self.assertIn('console-on-host-1 login:', log)
        env0 = json.loads(self.call('environment', {}, 0))
        env1 = json.loads(self.call('environment', {}, 1))
        self.assertNotEqual(env0['dom0_root'], env1['dom0_root'])
        # host 0's dom0 holds no console log of host 1's domain
        try:
            other = self.call('console_log', {'dom_id': domid}, 0)
        except XenAPI.Failure as exc:
            self.assertEqual(['XENAPI_PLUGIN_FAILURE', 'console_log',
                              'FileNotFoundError'], exc.details[:3])
        else:
            self.assertNotIn('console-on-host-1', other)


@unittest.skipUnless(os.path.exists(PY36) or
                     os.environ.get('XAPISIM_REQUIRE_PY36') == '1',
                     'no Python 3.6 interpreter (dom0\'s version)')
class Python36PluginTest(PluginTestCase):
    sim_options = dict(PluginTestCase.sim_options, plugin_python=PY36)

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(PY36):
            raise AssertionError('XAPISIM_REQUIRE_PY36=1 but %s is missing'
                                 % PY36)
        super(Python36PluginTest, cls).setUpClass()

    def test_plugins_run_under_dom0_python(self):
        env = json.loads(self.call('environment'))
        self.assertEqual([3, 6], env['python'][:2])
        self.assertFailure(['MY_CODE', 'a', 'b'], self.call, 'fail_with_code')
        self.new_vm(name='seen-by-py36')
        self.assertIn('seen-by-py36', json.loads(self.call('vm_names')))
        self.assertFailure(
            ['XENAPI_PLUGIN_FAILURE', 'boom', 'ValueError', 'kaput: '],
            self.call, 'boom')


if __name__ == '__main__':
    unittest.main()
