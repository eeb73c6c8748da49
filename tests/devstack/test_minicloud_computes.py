"""tools/minicloud.sh's nova-computes, without a cloud: one per xapisim
host of MINICLOUD_COMPUTES, each with its own overlay (the devstack
plugin's post-config phase with that compute node's localrc), and the
tempest.conf flags a cloud of several computes gets.

The minicloud's functions are sourced (tools/minicloud.sh does nothing
else when sourced) with a scratch MINICLOUD_DIR, a xapisim JSON line
written by hand, and stand-ins for what needs services: the feature probe
and nova-xen-manage (a Python stub, as tests/devstack/harness.py has
one), ``openstack`` and the Tempest values read from the cloud.
"""

import configparser
import importlib.util
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import tempfile
import unittest

from tests.devstack.harness import FEATURES
from tests.devstack.harness import REPO

TOOLS = REPO / 'tools'
PASSWORD = 'minicloud-pw'

POOLS = [
    {'uuid': '11111111-0000-4000-8000-000000000001', 'name_label': 'pool-1',
     'master': 'http://127.0.0.2:8080', 'hosts': [
         {'uuid': 'aaaaaaaa-0000-4000-8000-000000000011',
          'name_label': 'xcp-ng-1-1', 'address': '127.0.0.2',
          'url': 'http://127.0.0.2:8080'},
         {'uuid': 'aaaaaaaa-0000-4000-8000-000000000012',
          'name_label': 'xcp-ng-1-2', 'address': '127.0.0.3',
          'url': 'http://127.0.0.3:8080'}]},
    {'uuid': '22222222-0000-4000-8000-000000000002', 'name_label': 'pool-2',
     'master': 'http://127.0.0.4:8080', 'hosts': [
         {'uuid': 'bbbbbbbb-0000-4000-8000-000000000021',
          'name_label': 'xcp-ng-2-1', 'address': '127.0.0.4',
          'url': 'http://127.0.0.4:8080'},
         {'uuid': 'bbbbbbbb-0000-4000-8000-000000000022',
          'name_label': 'xcp-ng-2-2', 'address': '127.0.0.5',
          'url': 'http://127.0.0.5:8080'}]},
]
WORLD = {'pools': POOLS, 'username': 'root', 'password': PASSWORD}

# The Python of the plugin: the feature probe answers from
# $SHIM_ROOT/features, nova-xen-manage is recorded
PYTHON_STUB = r'''#!/bin/bash
if [[ "${1:-}" == */driver_features.py ]]; then
    exec cat "$SHIM_ROOT/features"
fi
if [[ "${1:-} ${2:-}" == "-m nova_xen.cmd.manage" ]]; then
    echo "nova-xen-manage ${*:3}" >> "$SHIM_ROOT/calls"
    exit 0
fi
exec %s "$@"
''' % shlex.quote(sys.executable)

# What a cloud would answer, for tempest.sh's configuration
CLOUD_STUBS = r'''
function openstack {
    echo "openstack $*" >> "$SHIM_ROOT/calls"
    echo "id-of-$3"
}
function _mc_tempest_value {
    echo "id-of-$3"
}
function _mc_cloud_auth {
    echo "$2-value"
}
'''


def tool_module(name):
    """tools/minicloud/NAME.py, loaded afresh."""
    spec = importlib.util.spec_from_file_location(
        name, TOOLS / 'minicloud' / ('%s.py' % name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def computes_module():
    return tool_module('computes')


def ini(path):
    parser = configparser.RawConfigParser(default_section='no-default',
                                          strict=False)
    parser.optionxform = str
    with open(path) as f:
        parser.read_file(f)
    return parser


class ComputeTableTest(unittest.TestCase):
    """tools/minicloud/computes.py: POOL.HOST specs to the compute table."""

    def setUp(self):
        super().setUp()
        self.table = computes_module().table

    def test_two_pools(self):
        self.assertEqual([
            'n-cpu-1 compute1 1.1 xcp-ng-1-1 '
            'aaaaaaaa-0000-4000-8000-000000000011 http://127.0.0.2:8080 '
            'pool-1',
            'n-cpu-2 compute2 1.2 xcp-ng-1-2 '
            'aaaaaaaa-0000-4000-8000-000000000012 http://127.0.0.2:8080 '
            'pool-1',
            'n-cpu-3 compute3 2.1 xcp-ng-2-1 '
            'bbbbbbbb-0000-4000-8000-000000000021 http://127.0.0.4:8080 '
            'pool-2',
        ], self.table(WORLD, ['1.1', '1.2', '2.1']))

    def test_no_such_host(self):
        for spec in ('3.1', '1.3', '0.1', '1', 'a.b'):
            with self.assertRaises(SystemExit) as caught:
                self.table(WORLD, ['1.1', spec])
            self.assertIn(spec, str(caught.exception))


class MinicloudTestCase(unittest.TestCase):
    """A scratch MINICLOUD_DIR and tools/minicloud.sh's functions."""

    def setUp(self):
        super().setUp()
        self.root = pathlib.Path(tempfile.mkdtemp(prefix='minicloud-cpu-'))
        self.addCleanup(shutil.rmtree, self.root, True)
        self.dir = self.root / 'minicloud'
        (self.dir / 'log').mkdir(parents=True)
        (self.dir / 'xapisim.json').write_text(json.dumps(WORLD) + '\n')
        stub = self.root / 'python-stub'
        stub.write_text(PYTHON_STUB)
        stub.chmod(0o755)
        self.stub = stub
        (self.root / 'features').write_text(''.join(
            '%s True\n' % name for name in FEATURES))
        # the test image, as if generated already
        files = self.dir / 'files'
        files.mkdir()
        (files / 'nova-xen-blank.vhd').write_text('vhd')
        self.env = {}     # more of the environment, for one test

    def bash(self, script, computes='1.1 1.2 2.1'):
        prologue = (
            'set -o errexit -o nounset -o pipefail\n'
            'source %s\n' % shlex.quote(str(TOOLS / 'minicloud.sh')))
        env = {
            'PATH': os.environ.get('PATH', '/usr/bin:/bin'),
            'HOME': str(self.root),
            'LC_ALL': 'C.UTF-8',
            'MINICLOUD_DIR': str(self.dir),
            'MINICLOUD_PASSWORD': PASSWORD,
            'MINICLOUD_PYTHON': sys.executable,
            'MINICLOUD_COMPUTES': computes,
            'NOVA_XEN_PYTHON': str(self.stub),
            'SHIM_ROOT': str(self.root),
        }
        env.update(self.env)
        return subprocess.run(['bash', '-c', prologue + script], env=env,
                              cwd=str(REPO), capture_output=True, text=True,
                              timeout=120)

    def configure(self, computes='1.1 1.2 2.1', more=''):
        """up's configuration steps: nova.conf and the plugin's
        post-config phase (the controller's), nova-cpu.conf, then the
        computes' overlays."""
        result = self.bash(
            'mc_localrc\n'
            'mkdir -p "$MC_ETC/nova" "$MC_ETC/glance"\n'
            'printf "[DEFAULT]\\ndebug = True\\n" > "$NOVA_CONF"\n'
            'run_plugin stack post-config >> "$MC_LOG/plugin.log"\n'
            'mc_configure_nova_compute\n'
            'mc_configure_computes\n' + more, computes)
        self.assertEqual(0, result.returncode, result.stdout + result.stderr)
        return result

    def conf(self, name):
        return ini(self.dir / 'etc' / 'nova' / name)


class ComputesTest(MinicloudTestCase):

    def test_three_overlays(self):
        self.configure()
        table = (self.dir / 'etc' / 'computes').read_text().splitlines()
        self.assertEqual(3, len(table))
        hosts = [(POOLS[0], POOLS[0]['hosts'][0]),
                 (POOLS[0], POOLS[0]['hosts'][1]),
                 (POOLS[1], POOLS[1]['hosts'][0])]
        seen = set()
        for n, (pool, host) in enumerate(hosts, 1):
            conf = self.conf('n-cpu-%d.conf' % n)
            self.assertEqual('compute%d' % n, conf.get('DEFAULT', 'host'))
            self.assertEqual(pool['master'],
                             conf.get('xenserver', 'connection_url'))
            self.assertEqual(host['uuid'], conf.get('xenserver', 'host_uuid'))
            self.assertEqual('xenapi.XenAPIDriver',
                             conf.get('DEFAULT', 'compute_driver'))
            self.assertEqual(PASSWORD,
                             conf.get('xenserver', 'connection_password'))
            self.assertEqual('False', conf.get(
                'compute', 'live_migration_wait_for_vif_plug'))
            paths = (conf.get('DEFAULT', 'state_path'),
                     conf.get('DEFAULT', 'instances_path'),
                     conf.get('oslo_concurrency', 'lock_path'))
            for path in paths:
                self.assertTrue(path.startswith(
                    str(self.dir / 'data' / ('n-cpu-%d' % n))), path)
                self.assertTrue(os.path.isdir(path), path)
            seen.update(paths)
        self.assertEqual(9, len(seen))

    def test_shared_conf_has_no_host(self):
        # nova-cpu.conf, read first by every nova-compute, names neither a
        # service host nor a XenServer host: the overlays do
        self.configure()
        conf = self.conf('nova-cpu.conf')
        self.assertFalse(conf.has_option('DEFAULT', 'host'))
        self.assertFalse(conf.has_option('xenserver', 'host_uuid'))
        self.assertFalse(conf.has_option('database', 'connection'))
        self.assertEqual('1', conf.get('scheduler', 'max_attempts'))

    def test_each_process_reads_its_overlay_last(self):
        # and each starts once the one before listens: Nova lists them in
        # their order
        self.configure(more=(
            'function mc_spawn { echo "$*" >> "$SHIM_ROOT/spawned"; }\n'
            'function mc_wait { echo "wait $*" >> "$SHIM_ROOT/spawned"; }\n'
            'mc_start_nova_computes\n'))
        spawned = (self.root / 'spawned').read_text().splitlines()
        etc = self.dir / 'etc' / 'nova'
        data = self.dir / 'data'
        venv = self.dir / 'venv' / 'bin'
        expected = []
        for n in (1, 2, 3):
            name = 'n-cpu-%d' % n
            expected += [
                '%s %s %s --config-file %s --config-file %s' % (
                    name, data / name, venv / 'nova-compute',
                    etc / 'nova-cpu.conf', etc / ('%s.conf' % name)),
                'wait %s RPC queue mc_rabbit_queue compute.compute%d' % (
                    name, n)]
        self.assertEqual(expected, spawned)

    def test_services_follow_the_compute_table(self):
        # up wrote the table: status and down know the computes it
        # started, whatever MINICLOUD_COMPUTES says now
        self.configure()
        result = self.bash('echo "${MC_SERVICES[*]}"', computes='2.2')
        self.assertEqual(0, result.returncode, result.stderr)
        # (ML2/OVN: OVN central, a chassis per compute)
        self.assertEqual(
            'mysql epmd rabbit memcached xapisim ovn-nb ovn-sb ovn-northd '
            'ovn-cpu-1 ovn-cpu-2 ovn-cpu-3 dom0-glance c-tgt keystone '
            'placement '
            'glance neutron q-ovn-maint n-api n-cond n-sch n-novnc c-api '
            'c-sch c-vol n-cpu-1 n-cpu-2 n-cpu-3',
            result.stdout.strip())
        self.env['MINICLOUD_NEUTRON'] = 'noagent'
        result = self.bash('echo "${MC_SERVICES[*]}"', computes='2.2')
        self.assertEqual(
            'mysql epmd rabbit memcached xapisim c-tgt keystone placement '
            'glance neutron n-api n-cond n-sch n-novnc c-api c-sch c-vol '
            'n-cpu-1 '
            'n-cpu-2 n-cpu-3',
            result.stdout.strip())
        result = self.bash('_mc_where n-cpu-3')
        self.assertEqual('compute3: xcp-ng-2-1 (pool-2)',
                         result.stdout.strip())

    def test_status_asks_nova(self):
        self.configure()
        # up or not is what counts: a disabled service still answers
        result = self.bash(
            'MC_NOVA_SERVICES="nova-compute compute1 enabled up\n'
            'nova-compute compute2 enabled down\n'
            'nova-compute compute3 disabled up"\n'
            'for s in n-cpu-1 n-cpu-2 n-cpu-3; do _mc_answer $s; done\n'
            'MC_NOVA_SERVICES="nova-compute compute1 enabled up"\n'
            '_mc_answer n-cpu-2\n')
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual(['ok (nova: enabled, up)',
                          'NO (nova: enabled, down)',
                          'ok (nova: disabled, up)',
                          'NO (nova: no service compute2)'],
                         result.stdout.splitlines())

    def test_xapisim_serves_every_pool(self):
        result = self.bash(
            'function mc_spawn { echo "$*" >> "$SHIM_ROOT/spawned"; }\n'
            'mc_start_xapisim\n'
            'mc_xapi_addresses\n')
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual(['127.0.0.2', '127.0.0.3', '127.0.0.4',
                          '127.0.0.5'], result.stdout.split())
        spawned = (self.root / 'spawned').read_text().split()
        self.assertEqual('2', spawned[spawned.index('--pools') + 1])
        self.assertEqual('2', spawned[spawned.index('--hosts') + 1])

    def test_bad_specs_stop_up_early(self):
        for computes, reason in (
                ('  ', 'MINICLOUD_COMPUTES is empty'),
                ('1.1 x', 'x is not POOL.HOST'),
                ('1.1 3.1', '3.1 is not a host of xapisim'),
                ('1.1 1.3', '1.3 is not a host of xapisim'),
                ('1.1 1.1', 'host 1.1 twice')):
            result = self.bash('mc_check_computes', computes)
            self.assertEqual(1, result.returncode, computes)
            self.assertIn(reason, result.stderr)


class TempestFlagsTest(MinicloudTestCase):
    """tempest.conf as tempest.sh writes it: the localrc's live-migration
    variables through the plugin's test-config phase, min_compute_nodes
    as a local.conf [[test-config]] would set it."""

    def tempest_conf(self, computes, more=''):
        # a minicloud without Cinder: the volume tests stay off
        result = self.configure(
            computes, more=CLOUD_STUBS + 'MINICLOUD_VOLUME_TESTS=0\n' + more
            + 'mc_tempest_configure\n')
        self.output = result.stdout + result.stderr
        return ini(self.dir / 'tempest' / 'etc' / 'tempest.conf')

    def test_three_computes(self):
        conf = self.tempest_conf('1.1 1.2 2.1')
        self.assertEqual('3', conf.get('compute', 'min_compute_nodes'))
        features = dict(conf.items('compute-feature-enabled'))
        self.assertEqual('True', features['live_migration'])
        self.assertEqual('True',
                         features['block_migration_for_live_migration'])
        self.assertEqual('True', features['live_migrate_back_and_forth'])
        # nova-novncproxy runs (n-novnc), as in devstack
        self.assertEqual('True', features['vnc_console'])
        # devstack's scheduler filters, for the affinity tests
        self.assertEqual(
            'ComputeFilter,ComputeCapabilitiesFilter,ImagePropertiesFilter,'
            'ServerGroupAntiAffinityFilter,ServerGroupAffinityFilter,'
            'SameHostFilter,DifferentHostFilter',
            features['scheduler_enabled_filters'])
        # no Cinder: neither volume-backed nor block migration with volumes
        self.assertNotEqual('True',
                            features.get('volume_backed_live_migration'))
        self.assertNotEqual('True', features.get('block_migrate_cinder_iscsi'))
        self.assertEqual('False', conf.get('service_available', 'cinder'))

    def test_the_pools_for_nova_xen_tempest(self):
        # a nova_xen_tempest that takes several pool masters gets both
        conf = self.tempest_conf(
            '1.1 1.2 2.1', more='function _mc_tempest_plugin_lists_pools '
            '{ return 0; }\n')
        self.assertEqual('http://127.0.0.2:8080,http://127.0.0.4:8080',
                         conf.get('xenapi', 'connection_url'))
        # one that takes one keeps the plugin's, the first pool's master
        conf = self.tempest_conf(
            '1.1 1.2 2.1', more='function _mc_tempest_plugin_lists_pools '
            '{ return 1; }\n')
        self.assertEqual('http://127.0.0.2:8080',
                         conf.get('xenapi', 'connection_url'))
        self.assertIn('its tests fail for servers outside', self.output)
        # one pool: nothing to add
        conf = self.tempest_conf(
            '1.2 1.1', more='function _mc_tempest_plugin_lists_pools '
            '{ return 0; }\n')
        self.assertEqual('http://127.0.0.2:8080',
                         conf.get('xenapi', 'connection_url'))

    def test_one_compute(self):
        conf = self.tempest_conf('2.2')
        self.assertEqual('1', conf.get('compute', 'min_compute_nodes'))
        features = dict(conf.items('compute-feature-enabled'))
        self.assertEqual('False', features['live_migration'])
        self.assertEqual('False',
                         features['block_migration_for_live_migration'])
        self.assertEqual('False', features['live_migrate_back_and_forth'])


if __name__ == '__main__':
    unittest.main()
