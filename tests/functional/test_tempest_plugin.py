"""The nova_xen tempest plugin loads, and its tests skip, saying why, where
tempest.conf does not say how to reach xapi.

Its tests proper need a cloud (tools/minicloud.sh); test_tempest_clients
runs their xapi-side helpers against xapisim.
"""

import json
import os
import subprocess
import sys

import fixtures
from oslo_config import cfg
import testtools

from nova_xen_tempest import plugin

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

# runs the plugin's tests in a tempest process of their own: tempest.config
# takes over the global oslo.config object
RUNNER = '''
import json, sys, unittest
from tempest import config
from nova_xen_tempest import plugin
plugin.NovaXenTempestPlugin().register_opts(config._CONF)
test_dir, top = plugin.NovaXenTempestPlugin().load_tests()
suite = unittest.TestLoader().discover(test_dir, top_level_dir=top)
result = unittest.TestResult()
suite.run(result)
json.dump({'run': result.testsRun,
           'skipped': [(str(t), r) for t, r in result.skipped],
           'errors': [(str(t), e) for t, e in result.errors + result.failures]},
          sys.stdout)
'''


class PluginTest(testtools.TestCase):

    def test_the_xenapi_group(self):
        conf = cfg.ConfigOpts()
        the_plugin = plugin.NovaXenTempestPlugin()
        the_plugin.register_opts(conf)
        conf([])
        self.assertIsNone(conf.xenapi.connection_url)
        self.assertEqual('root', conf.xenapi.connection_username)
        self.assertIsNone(conf.xenapi.ca_file)
        self.assertFalse(conf.xenapi.insecure)
        opts = dict(the_plugin.get_opt_lists())['xenapi']
        self.assertEqual(['connection_url', 'connection_username',
                          'connection_password', 'ca_file', 'insecure'],
                         [o.name for o in opts])
        self.assertTrue([o for o in opts
                         if o.name == 'connection_password'][0].secret)
        test_dir, top = the_plugin.load_tests()
        self.assertEqual(ROOT, top)
        self.assertTrue(os.path.isdir(os.path.join(test_dir, 'api')))

    def test_without_connection_url_every_test_skips_saying_why(self):
        tmp = self.useFixture(fixtures.TempDir()).path
        with open(os.path.join(tmp, 'tempest.conf'), 'w') as f:
            f.write('[DEFAULT]\nlog_dir = %s\n[oslo_concurrency]\n'
                    'lock_path = %s\n' % (tmp, tmp))
        env = dict(os.environ, TEMPEST_CONFIG_DIR=tmp,
                   TEMPEST_CONFIG='tempest.conf',
                   PYTHONPATH=os.pathsep.join(
                       [ROOT] + os.environ.get('PYTHONPATH', '').split(
                           os.pathsep)).rstrip(os.pathsep))
        proc = subprocess.run([sys.executable, '-c', RUNNER], cwd=tmp,
                              env=env, capture_output=True, text=True,
                              timeout=120)
        self.assertEqual(0, proc.returncode, proc.stderr)
        result = json.loads(proc.stdout)
        self.assertEqual([], result['errors'])
        classes = {test.split('.')[-1].rstrip(')') for test, _
                   in result['skipped']}
        self.assertEqual({'ServerVMTest', 'SnapshotTest',
                          'LegacyDiagnosticsTest', 'DiagnosticsTest',
                          'ConsoleOutputTest'}, classes)
        for test, reason in result['skipped']:
            self.assertIn('[xenapi]connection_url is not set', reason, test)
