"""The minicloud's Cinder without a cloud: cinder.conf (the backend's
options in the backend's section), the tgt wrappers, Nova's service
tokens, the catalog, the service list, tempest.conf with and without
MINICLOUD_VOLUME_TESTS; and the devstack plugin's ``[cinder]`` and
``[service_user]`` for a devstack with Cinder.
"""

import os
import re

from tests.devstack.harness import ALL_IN_ONE
from tests.devstack.harness import REPO
from tests.devstack.test_minicloud_computes import CLOUD_STUBS
from tests.devstack.test_minicloud_computes import ini
from tests.devstack.test_minicloud_computes import MinicloudTestCase
from tests.devstack.test_minicloud_computes import PASSWORD
from tests.devstack.test_plugin import PluginTestCase

TOOLS = REPO / 'tools'
BACKEND_OPTIONS = ('volume_driver', 'volume_backend_name',
                   'filetgt_directory', 'target_helper', 'target_protocol',
                   'target_ip_address', 'target_port', 'volumes_dir')


class CinderTestCase(MinicloudTestCase):

    def setUp(self):
        super().setUp()
        # what the venv's packages ship, as mc_configure_* copies them
        for name in ('cinder', 'nova'):
            paste = self.dir / 'venv' / 'etc' / name / 'api-paste.ini'
            paste.parent.mkdir(parents=True)
            paste.write_text('[composite:%s]\n' % name)

    def ok(self, script):
        result = self.bash(script)
        self.assertEqual(0, result.returncode, result.stdout + result.stderr)
        return result

    def etc(self, *path):
        return self.dir.joinpath('etc', *path)


class CinderConfTest(CinderTestCase):

    def test_backend_options_in_the_backend_section(self):
        self.ok('mc_configure_cinder\n')
        conf = ini(self.etc('cinder', 'cinder.conf'))
        self.assertEqual('filetgt', conf.get('DEFAULT', 'enabled_backends'))
        backend = dict(conf.items('filetgt'))
        self.assertEqual(sorted(BACKEND_OPTIONS), sorted(backend))
        self.assertEqual('nova_xen_filetgt.FileTgtDriver',
                         backend['volume_driver'])
        self.assertEqual('tgtadm', backend['target_helper'])
        self.assertEqual('127.0.0.1', backend['target_ip_address'])
        self.assertEqual('3260', backend['target_port'])
        self.assertEqual(str(self.dir / 'data' / 'cinder' / 'targets'),
                         backend['volumes_dir'])
        self.assertEqual(str(self.dir / 'data' / 'cinder' / 'volumes'),
                         backend['filetgt_directory'])
        # Cinder reads none of them from [DEFAULT] for a backend
        for option in BACKEND_OPTIONS:
            self.assertFalse(conf.has_option('DEFAULT', option), option)

    def test_services(self):
        self.ok('mc_configure_cinder\n')
        conf = ini(self.etc('cinder', 'cinder.conf'))
        self.assertTrue(conf.get('database', 'connection').startswith(
            'mysql+pymysql://openstack:%s@127.0.0.1:3306/cinder' % PASSWORD))
        self.assertEqual('rabbit://guest:guest@127.0.0.1:5672/',
                         conf.get('DEFAULT', 'transport_url'))
        self.assertEqual('8776', conf.get('DEFAULT',
                                          'osapi_volume_listen_port'))
        # Nova's service token makes its requests a service's
        self.assertEqual('keystone', conf.get('DEFAULT', 'auth_strategy'))
        self.assertEqual('True', conf.get('keystone_authtoken',
                                          'service_token_roles_required'))
        self.assertEqual('service', conf.get('keystone_authtoken',
                                             'service_token_roles'))
        self.assertEqual('cinder', conf.get('nova', 'username'))
        # privileged calls without sudo
        for section in ('cinder_sys_admin', 'privsep_osbrick'):
            self.assertEqual(
                '%s --config-file %s' % (
                    self.dir / 'venv' / 'bin' / 'privsep-helper',
                    self.etc('cinder', 'cinder.conf')),
                conf.get(section, 'helper_command'))

    def test_tgt_of_its_own(self):
        self.env['MINICLOUD_TGT_CONTROL_PORT'] = '17'
        self.env['MINICLOUD_PORT_ISCSI'] = '3270'
        self.ok('mc_configure_cinder\n'
                'function mc_spawn { echo "$*" > "$SHIM_ROOT/spawned"; }\n'
                'mc_start_tgtd\n')
        spawned = (self.root / 'spawned').read_text().split()
        self.assertEqual(['c-tgt', str(self.dir / 'data' / 'cinder'),
                          'tgtd', '-f', '-C', '17', '--iscsi',
                          'portal=127.0.0.1:3270'], spawned)
        targets = self.etc('tgt', 'targets.conf').read_text()
        self.assertIn('include %s/*' % (self.dir / 'data' / 'cinder' /
                                        'targets'), targets)
        # tgt-admin refuses a control port given twice
        self.assertNotRegex(targets, r'(?m)^control-port')
        tgtadm = self.etc('tgt', 'bin', 'tgtadm').read_text()
        self.assertIn('exec /usr/sbin/tgtadm -C 17 "$@"', tgtadm)
        admin = self.etc('tgt', 'bin', 'tgt-admin').read_text()
        self.assertIn('exec /usr/sbin/tgt-admin -C 17 -c %s "$@"'
                      % self.etc('tgt', 'targets.conf'), admin)
        self.assertTrue(os.access(self.etc('tgt', 'bin', 'tgt-admin'),
                                  os.X_OK))

    def test_cinder_volume_finds_the_wrappers_first(self):
        self.ok('function mc_spawn { echo "$*" >> "$SHIM_ROOT/spawned"; }\n'
                'mc_start_cinder\n')
        spawned = (self.root / 'spawned').read_text().splitlines()
        self.assertEqual(['c-api', 'c-sch', 'c-vol'],
                         [line.split()[0] for line in spawned])
        self.assertIn('env PATH=%s:' % self.etc('tgt', 'bin'), spawned[2])

    def test_catalog(self):
        result = self.ok('mc_catalog_ports\n')
        ports = dict(item.split('=')
                     for item in result.stdout.strip().split(','))
        self.assertEqual('8776', ports['block-storage'])
        self.assertEqual('8776', ports['volumev3'])
        self.env['MINICLOUD_CINDER'] = 'False'
        result = self.ok('mc_catalog_ports\n')
        self.assertNotIn('volume', result.stdout)


class NovaTest(CinderTestCase):

    def test_service_tokens(self):
        self.ok('mc_configure_nova\n')
        conf = ini(self.etc('nova', 'nova.conf'))
        self.assertEqual('True', conf.get('service_user',
                                          'send_service_user_token'))
        self.assertEqual('nova', conf.get('service_user', 'username'))
        self.assertEqual(PASSWORD, conf.get('service_user', 'password'))
        self.assertEqual('password', conf.get('cinder', 'auth_type'))
        self.assertEqual('nova', conf.get('cinder', 'username'))
        self.assertEqual('RegionOne', conf.get('cinder', 'os_region_name'))

    def test_the_computes_have_them(self):
        self.configure(more='mc_configure_nova\nmc_configure_nova_compute\n')
        conf = self.conf('nova-cpu.conf')
        self.assertEqual('True', conf.get('service_user',
                                          'send_service_user_token'))
        self.assertEqual('nova', conf.get('cinder', 'username'))

    def test_without_cinder(self):
        self.env['MINICLOUD_CINDER'] = 'False'
        self.ok('mc_configure_nova\n')
        conf = ini(self.etc('nova', 'nova.conf'))
        self.assertFalse(conf.has_section('cinder'))

    def test_plugin_keeps_the_minicloud_values(self):
        # the controller's post-config phase, Cinder enabled: what
        # mc_configure_nova wrote stays
        self.ok('mc_localrc\n'
                'mkdir -p "$MC_ETC/glance"\n'
                'mc_configure_nova\n'
                'cp "$NOVA_CONF" "$SHIM_ROOT/before.conf"\n'
                'run_plugin stack post-config >> "$MC_LOG/plugin.log"\n')
        before = ini(self.root / 'before.conf')
        after = ini(self.etc('nova', 'nova.conf'))
        for section in ('cinder', 'service_user'):
            self.assertEqual(dict(before.items(section)),
                             dict(after.items(section)))


class ServicesTest(CinderTestCase):

    def services(self):
        return self.ok('echo "${MC_SERVICES[*]}"\n').stdout.split()

    def test_started_and_stopped(self):
        services = self.services()
        self.assertLess(services.index('c-tgt'), services.index('keystone'))
        for name in ('c-api', 'c-sch', 'c-vol'):
            self.assertLess(services.index('n-sch'), services.index(name))
        self.env['MINICLOUD_CINDER'] = 'False'
        self.assertNotIn('c-vol', self.services())

    def test_down_stops_what_up_started(self):
        # up ran with Cinder; MINICLOUD_CINDER says False now
        (self.dir / 'run').mkdir()
        (self.dir / 'run' / 'c-vol.pid').write_text('1 1\n')
        self.env['MINICLOUD_CINDER'] = 'False'
        self.assertIn('c-vol', self.services())
        self.assertIn('c-tgt', self.services())


class TempestTest(CinderTestCase):

    def tempest_conf(self, more=''):
        result = self.configure(
            more=CLOUD_STUBS + more + 'mc_tempest_configure\n'
            'mc_tempest_exclude_file > "$SHIM_ROOT/exclude-file"\n')
        self.output = result.stdout + result.stderr
        self.exclude = (self.root / 'exclude-file').read_text().strip()
        return ini(self.dir / 'tempest' / 'etc' / 'tempest.conf')

    def calls(self):
        path = self.root / 'calls'
        return path.read_text().splitlines() if path.exists() else []

    def test_no_volume_tests_when_turned_off(self):
        self.env['MINICLOUD_VOLUME_TESTS'] = '0'
        conf = self.tempest_conf()
        self.assertEqual('False', conf.get('service_available', 'cinder'))
        self.assertEqual('False', conf.get('volume-feature-enabled',
                                           'snapshot'))
        self.assertFalse(conf.has_option('volume', 'volume_type_multiattach'))
        self.assertEqual(str(TOOLS / 'minicloud' / 'tempest-exclude.txt'),
                         self.exclude)
        self.assertFalse([c for c in self.calls() if 'volume type' in c])

    def test_volume_tests(self):
        # on by default
        conf = self.tempest_conf(
            more='function mc_pid { [[ $1 == c-api ]] && echo 42; }\n'
            'function _mc_tempest_value { [[ $1 != volume ]] '
            '&& echo "id-of-$3"; }\n')
        self.assertEqual('True', conf.get('service_available', 'cinder'))
        self.assertEqual('True', conf.get('volume-feature-enabled',
                                          'snapshot'))
        self.assertEqual('True', conf.get('volume-feature-enabled', 'clone'))
        self.assertEqual('False', conf.get('volume-feature-enabled',
                                           'backup'))
        self.assertEqual('multiattach',
                         conf.get('volume', 'volume_type_multiattach'))
        self.assertEqual('filetgt', conf.get('volume', 'backend_names'))
        self.assertIn("openstack volume type create multiattach --property "
                      "multiattach=<is> True", self.calls())
        # both exclude lists
        excluded = open(self.exclude).read()
        with open(TOOLS / 'minicloud' / 'tempest-exclude.txt') as f:
            self.assertIn(f.read(), excluded)
        with open(TOOLS / 'minicloud' / 'tempest-exclude-volumes.txt') as f:
            self.assertIn(f.read(), excluded)

    def test_volume_tests_need_cinder(self):
        self.env['MINICLOUD_VOLUME_TESTS'] = 'True'
        result = self.bash(
            'mc_localrc\n'
            'mkdir -p "$MC_ETC/nova" "$MC_ETC/glance"\n'
            'printf "[DEFAULT]\\ndebug = True\\n" > "$NOVA_CONF"\n'
            'mc_compute_table\n' + CLOUD_STUBS + 'mc_tempest_configure\n')
        self.assertEqual(1, result.returncode)
        self.assertIn('the minicloud runs no Cinder', result.stderr)

    def test_volume_exclude_list(self):
        with open(TOOLS / 'minicloud' / 'tempest-exclude-volumes.txt') as f:
            lines = [line for line in f
                     if line.strip() and not line.startswith('#')]
        self.assertTrue(lines)
        for line in lines:
            regex, _, reason = line.partition('#')
            re.compile(regex.strip())
            self.assertTrue(reason.strip(), line)


class PluginCinderTest(PluginTestCase):
    """A devstack with Cinder: Nova sends it service tokens."""

    def test_all_in_one_with_cinder(self):
        result = self.stack('stack post-config',
                            ENABLED_SERVICES=ALL_IN_ONE + ',c-api,c-sch,c-vol')
        for name in ('nova', 'nova-cpu'):
            conf = result.conf(name)
            self.assertOptions(conf, 'cinder', {
                'os_region_name': 'RegionOne', 'auth_type': 'password',
                'auth_url': 'http://203.0.113.10/identity',
                'username': 'nova', 'password': 'service-pw',
                'user_domain_name': 'Default', 'project_name': 'service',
                'project_domain_name': 'Default'})
            self.assertEqual('True', conf.get('service_user',
                                              'send_service_user_token'))
            self.assertEqual('nova', conf.get('service_user', 'username'))
        self.assertNotIn('service-pw', result.output)

    def test_lib_nova_values_kept(self):
        self.node.write('etc/nova/nova.conf', (
            '[cinder]\nauth_type = v3password\nusername = other\n'
            '[service_user]\nsend_service_user_token = true\n'
            'auth_type = password\nusername = nova-svc\n'))
        result = self.stack('stack post-config',
                            ENABLED_SERVICES=ALL_IN_ONE + ',c-vol')
        conf = result.conf('nova')
        self.assertOptions(conf, 'cinder', {'auth_type': 'v3password',
                                            'username': 'other'})
        self.assertEqual('nova-svc', conf.get('service_user', 'username'))
        self.assertEqual('true', conf.get('service_user',
                                          'send_service_user_token'))
        self.assertEqual('', result.stderr)

    def test_service_token_turned_on(self):
        self.node.write('etc/nova/nova.conf', (
            '[service_user]\nsend_service_user_token = False\n'))
        conf = self.stack('stack post-config',
                          ENABLED_SERVICES=ALL_IN_ONE + ',c-api').conf('nova')
        self.assertEqual('True', conf.get('service_user',
                                          'send_service_user_token'))
        self.assertEqual('password', conf.get('service_user', 'auth_type'))

    def test_without_cinder(self):
        result = self.stack('stack post-config')
        for name in ('nova', 'nova-cpu'):
            conf = result.conf(name)
            self.assertFalse(conf.has_section('cinder'))
            self.assertFalse(conf.has_section('service_user'))
