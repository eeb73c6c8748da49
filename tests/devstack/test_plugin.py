"""nova-xen's devstack plugin, run phase by phase as stack.sh runs it.

Each test stacks a scratch node (tests/devstack/harness.py) and looks at
what a devstack user would: the configuration files Nova, Glance and
Tempest read, what was installed and uploaded, and how a wrong local.conf
stops the stack.
"""

import shlex
import subprocess
import sys
import unittest

from tests.devstack import harness
from tests.devstack.harness import (
    ALL_IN_ONE, COMPUTE, CONTROLLER, FEATURES, HOST_UUID, PASSWORD, REPO,
    STACK, URL)

# nodes for ML2/OVN: no ovn-controller of devstack's next to nova-xen
OVN_COMPUTE = 'n-cpu,placement-client'
OVN_ALL_IN_ONE = ','.join(s for s in ALL_IN_ONE.split(',')
                          if s != 'ovn-controller')


class PluginTestCase(unittest.TestCase):

    def setUp(self):
        super().setUp()
        self.node = harness.Devstack(self)

    def stack(self, *phases, **localrc):
        """Run the phases; they must succeed."""
        result = self.node.run(*phases, **localrc)
        self.assertEqual(0, result.returncode, result)
        return result

    def stack_fails(self, *phases, **localrc):
        result = self.node.run(*phases, **localrc)
        self.assertNotEqual(0, result.returncode, result)
        self.assertIn('[ERROR]', result.stderr, result)
        return result

    def assertOptions(self, conf, section, expected):
        self.assertTrue(conf.has_section(section), section)
        self.assertEqual(expected, dict(conf.items(section)))


class TestDefaults(PluginTestCase):
    """override-defaults and settings, as stack.sh sources them."""

    def test_virt_driver_overrides_stackrc_default(self):
        self.assertEqual('xenserver', self.stack().vars['VIRT_DRIVER'])
        result = self.stack(VIRT_DRIVER='libvirt')
        self.assertEqual('xenserver', result.vars['VIRT_DRIVER'])

    def test_settings_defaults(self):
        result = self.stack(XENAPI_CONNECTION_URL=None, XENAPI_PASSWORD=None,
                            use_stub=False)
        self.assertEqual({
            'VIRT_DRIVER': 'xenserver',
            'XENAPI_CONNECTION_URL': '',
            'XENAPI_USER': 'root',
            'XENAPI_PASSWORD': '',
            'XENAPI_CA_FILE': '',
            'XENAPI_INSECURE': 'False',
            'XENAPI_HOST_UUID': '',
            'XENAPI_SR_FILTER': 'default-sr:true',
            'NOVA_XEN_DIR': str(REPO),
            'NOVA_XEN_PYTHON': '',
            'NOVA_XEN_INSTALL_DOM0_PLUGINS': 'False',
            'XENAPI_DOM0_SSH': '',
            'XENAPI_DOM0_SSH_OPTIONS': '',
            'NOVA_XEN_IMAGE_URL': '',
            'NOVA_XEN_IMAGE_DISK_FORMAT': 'vhd',
            'NOVA_XEN_IMAGE_NAME': '',
            'NOVA_XEN_IMAGE_SIZE_MB': '256',
        }, result.vars)

    def test_local_conf_values_win(self):
        values = {
            'XENAPI_USER': 'svc-nova', 'XENAPI_INSECURE': 'True',
            'XENAPI_HOST_UUID': HOST_UUID,
            'XENAPI_SR_FILTER': 'other-config:i18n-key=local-storage',
            'NOVA_XEN_IMAGE_DISK_FORMAT': 'raw',
            'NOVA_XEN_IMAGE_SIZE_MB': '64',
        }
        result = self.stack(**values)
        for name, value in values.items():
            self.assertEqual(value, result.vars[name], name)


class TestInstall(PluginTestCase):

    def test_nova_xen_installed_without_replacing_nova(self):
        calls = self.stack('stack pre-install', 'stack install').calls
        wanted = [line.strip() for line in
                  (REPO / 'requirements.txt').read_text().splitlines()
                  if line.strip() and not line.startswith('#') and
                  not line.lower().startswith('nova')]
        self.assertIn('XenAPI>=24.0.0', wanted)
        self.assertEqual([['pip_install'] + wanted,
                          ['pip_install', '--no-deps', '-e', str(REPO)]],
                         calls)

    def test_no_dom0_plugins_unless_asked(self):
        checkout = self.node.fake_checkout()
        calls = self.stack('stack install', NOVA_XEN_DIR=checkout).calls
        self.assertEqual([], [c for c in calls if c[0] == 'install.sh'])

    def test_dom0_plugins_on_the_url_host(self):
        checkout = self.node.fake_checkout()
        for url, target in [
                (URL, 'root@xcp-ng-1.example.com'),
                ('https://10.0.0.5:8443/', 'root@10.0.0.5'),
                ('http://[fd00::5]:80', 'root@fd00::5')]:
            with self.subTest(url=url):
                result = self.stack(
                    'stack pre-install', 'stack install',
                    NOVA_XEN_DIR=checkout, XENAPI_CONNECTION_URL=url,
                    NOVA_XEN_INSTALL_DOM0_PLUGINS='yes')
                self.assertEqual([[target]], result.calls_of('install.sh'))
                self.assertEqual(
                    ['pip_install', '--no-deps', '-e', str(checkout)],
                    result.calls[-2])
                self.assertEqual('True',
                                 result.vars['NOVA_XEN_INSTALL_DOM0_PLUGINS'])

    def test_dom0_ssh_target_and_options(self):
        result = self.stack(
            'stack install', NOVA_XEN_DIR=self.node.fake_checkout(),
            NOVA_XEN_INSTALL_DOM0_PLUGINS='True',
            XENAPI_DOM0_SSH='admin@xcp-ng-1-mgmt',
            XENAPI_DOM0_SSH_OPTIONS='Port=2222 IdentityFile=/opt/stack/.ssh/x')
        self.assertEqual([['--ssh-option', 'Port=2222',
                           '--ssh-option', 'IdentityFile=/opt/stack/.ssh/x',
                           'admin@xcp-ng-1-mgmt']],
                         result.calls_of('install.sh'))

    def test_unreachable_dom0_stops_the_stack(self):
        result = self.stack_fails(
            'stack install', 'stack post-config',
            NOVA_XEN_DIR=self.node.fake_checkout(install_status=255),
            NOVA_XEN_INSTALL_DOM0_PLUGINS='True')
        self.assertIn('could not ssh to root@xcp-ng-1.example.com',
                      result.stderr)
        self.assertIn('NOVA_XEN_INSTALL_DOM0_PLUGINS=False', result.stderr)
        self.assertFalse(result.path('nova').exists())

    def test_failed_dom0_install_stops_the_stack(self):
        result = self.stack_fails(
            'stack install',
            NOVA_XEN_DIR=self.node.fake_checkout(install_status=3),
            NOVA_XEN_INSTALL_DOM0_PLUGINS='True')
        self.assertIn('dom0_plugins/install.sh failed on '
                      'root@xcp-ng-1.example.com (exit status 3',
                      result.stderr)


class TestPostConfig(PluginTestCase):

    def expected_xenserver(self, **changes):
        options = {
            'connection_url': URL,
            'connection_username': 'root',
            'connection_password': PASSWORD,
            'insecure': 'False',
            'sr_matching_filter': 'default-sr:true',
        }
        options.update(changes)
        return options

    def test_nova_and_nova_cpu_conf(self):
        result = self.stack('stack post-config')
        for name in ('nova', 'nova-cpu'):
            with self.subTest(conf=name):
                conf = result.conf(name)
                self.assertEqual('xenapi.XenAPIDriver',
                                 conf.get('DEFAULT', 'compute_driver'))
                self.assertOptions(conf, 'xenserver',
                                   self.expected_xenserver())

    def test_optional_options(self):
        ca_file = self.node.write('pool-ca.pem', 'a CA bundle\n')
        result = self.stack(
            'stack post-config', XENAPI_USER='svc-nova',
            XENAPI_CA_FILE=ca_file, XENAPI_HOST_UUID=HOST_UUID,
            XENAPI_SR_FILTER='other-config:nova-sr=yes')
        for name in ('nova', 'nova-cpu'):
            self.assertOptions(result.conf(name), 'xenserver',
                               self.expected_xenserver(
                                   connection_username='svc-nova',
                                   ca_file=str(ca_file),
                                   host_uuid=HOST_UUID,
                                   sr_matching_filter='other-config:'
                                                      'nova-sr=yes'))

    def test_insecure_accepts_devstack_booleans(self):
        for word, value in [('yes', 'True'), ('1', 'True'), ('TRUE', 'True'),
                            ('no', 'False'), ('0', 'False'),
                            ('false', 'False')]:
            with self.subTest(word=word):
                result = self.stack('stack post-config',
                                    XENAPI_INSECURE=word)
                self.assertEqual(value, result.conf('nova').get(
                    'xenserver', 'insecure'))

    def test_existing_values_replaced_others_kept(self):
        self.node.write('etc/nova/nova.conf', (
            '[DEFAULT]\n'
            'debug = True\n'
            'compute_driver = libvirt.LibvirtDriver\n'
            '\n'
            '[xenserver]\n'
            'connection_url = https://old-master.example.com\n'
            '\n'
            '[vnc]\n'
            'enabled = True\n'))
        result = self.stack('stack post-config')
        text = result.path('nova').read_text()
        self.assertEqual(1, text.count('connection_url'))
        self.assertEqual(1, text.count('compute_driver'))
        conf = result.conf('nova')
        self.assertEqual('True', conf.get('DEFAULT', 'debug'))
        self.assertEqual('xenapi.XenAPIDriver',
                         conf.get('DEFAULT', 'compute_driver'))
        self.assertEqual(URL, conf.get('xenserver', 'connection_url'))
        self.assertEqual('True', conf.get('vnc', 'enabled'))

    def test_glance_formats_from_glance_defaults(self):
        conf = self.stack('stack post-config').conf('glance-api')
        disk = conf.get('image_format', 'disk_formats').split(',')
        container = conf.get('image_format', 'container_formats').split(',')
        for fmt in ('vhd', 'raw', 'qcow2', 'iso'):
            self.assertIn(fmt, disk)
        for fmt in ('bare', 'ovf', 'ami'):
            self.assertIn(fmt, container)
        self.assertEqual(len(disk), len(set(disk)))
        self.assertEqual(len(container), len(set(container)))

    def test_glance_formats_added_to_the_operators_lists(self):
        self.node.write('etc/glance/glance-api.conf', (
            '[DEFAULT]\nbind_port = 9292\n\n'
            '[image_format]\n'
            'disk_formats = qcow2,raw\n'
            'container_formats = bare\n'))
        conf = self.stack('stack post-config').conf('glance-api')
        self.assertEqual('qcow2,raw,vhd',
                         conf.get('image_format', 'disk_formats'))
        self.assertEqual('bare,ovf',
                         conf.get('image_format', 'container_formats'))
        self.assertEqual('9292', conf.get('DEFAULT', 'bind_port'))

    def test_post_config_twice_changes_nothing(self):
        first = self.stack('stack post-config')
        texts = {n: first.path(n).read_text()
                 for n in ('nova', 'nova-cpu', 'glance-api')}
        second = self.stack('stack post-config')
        for name, text in texts.items():
            self.assertEqual(text, second.path(name).read_text(), name)

    def test_controller_gets_glance_but_no_credentials(self):
        result = self.stack(*STACK, ENABLED_SERVICES=CONTROLLER,
                            XENAPI_CONNECTION_URL=None, XENAPI_PASSWORD=None)
        self.assertFalse(result.path('nova').exists())
        self.assertFalse(result.path('nova-cpu').exists())
        self.assertIn('vhd', result.conf('glance-api').get(
            'image_format', 'disk_formats'))

    def test_compute_node_leaves_glance_and_tempest_alone(self):
        result = self.stack(*STACK, ENABLED_SERVICES=COMPUTE,
                            XENAPI_HOST_UUID=HOST_UUID)
        self.assertEqual(HOST_UUID, result.conf('nova-cpu').get(
            'xenserver', 'host_uuid'))
        self.assertFalse(result.path('glance-api').exists())
        self.assertFalse(result.path('tempest').exists())
        self.assertEqual([], result.calls_of('openstack'))


class TestChecks(PluginTestCase):
    """A wrong local.conf stops the stack at once, naming what to set."""

    # (what is wrong, local.conf values, text the message must hold)
    CASES = [
        ('no URL', {'XENAPI_CONNECTION_URL': None},
         'XENAPI_CONNECTION_URL is not set'),
        ('empty URL', {'XENAPI_CONNECTION_URL': ''},
         'XENAPI_CONNECTION_URL is not set'),
        ('no password', {'XENAPI_PASSWORD': None},
         'XENAPI_PASSWORD is not set'),
        ('URL without scheme', {'XENAPI_CONNECTION_URL': 'xcp-ng-1'},
         'XENAPI_CONNECTION_URL=xcp-ng-1 is not an http:// or https:// URL'),
        ('ftp URL', {'XENAPI_CONNECTION_URL': 'ftp://xcp-ng-1'},
         'XENAPI_CONNECTION_URL=ftp://xcp-ng-1 is not an http://'),
        ('URL without host', {'XENAPI_CONNECTION_URL': 'https://'},
         'XENAPI_CONNECTION_URL=https:// is not an http://'),
        ('bad XENAPI_INSECURE', {'XENAPI_INSECURE': 'maybe'},
         'XENAPI_INSECURE=maybe is not a boolean: set XENAPI_INSECURE to '
         'True or False'),
        ('bad NOVA_XEN_INSTALL_DOM0_PLUGINS',
         {'NOVA_XEN_INSTALL_DOM0_PLUGINS': 'sure'},
         'NOVA_XEN_INSTALL_DOM0_PLUGINS=sure is not a boolean'),
        ('missing CA file', {'XENAPI_CA_FILE': '/nonexistent/ca.pem'},
         'XENAPI_CA_FILE=/nonexistent/ca.pem is not a readable file'),
        ('CA file and insecure', {'XENAPI_CA_FILE': '/etc/hostname',
                                  'XENAPI_INSECURE': 'True'},
         'XENAPI_CA_FILE and XENAPI_INSECURE=True contradict each other'),
        ('bad host UUID', {'XENAPI_HOST_UUID': 'xcp-ng-1'},
         'XENAPI_HOST_UUID=xcp-ng-1 is not a UUID'),
        ('bad SR filter', {'XENAPI_SR_FILTER': 'local-storage'},
         'XENAPI_SR_FILTER=local-storage is not understood: set it to '
         'default-sr:true or other-config:KEY=VALUE'),
        ('bad image format', {'NOVA_XEN_IMAGE_DISK_FORMAT': 'qcow2'},
         'NOVA_XEN_IMAGE_DISK_FORMAT=qcow2 is not a format nova-xen can '
         'boot: set it to vhd or raw'),
        ('bad image size', {'NOVA_XEN_IMAGE_SIZE_MB': '1G'},
         'NOVA_XEN_IMAGE_SIZE_MB=1G is not a size in MiB'),
        ('not a checkout', {'NOVA_XEN_DIR': '/nonexistent/nova-xen'},
         'NOVA_XEN_DIR=/nonexistent/nova-xen is not a nova-xen checkout'),
        ('a chassis of the domU', {'Q_AGENT': 'ovn'},
         'ovn-controller is enabled on this nova-xen compute node: its '
         'chassis would be this domU\'s own Open vSwitch'),
        ('bad Neutron backend', {'NOVA_XEN_NEUTRON_BACKEND': 'ovs'},
         'NOVA_XEN_NEUTRON_BACKEND=ovs is not understood: set it to ovn '
         '(Neutron\'s ML2/OVN) or other, or leave it empty'),
        ('bad NOVA_XEN_ISOLATION_RULES', {'NOVA_XEN_ISOLATION_RULES': 'off'},
         'NOVA_XEN_ISOLATION_RULES=off is not a boolean'),
        ('OVN set-up without OVN', {'NOVA_XEN_OVN_SETUP': 'True',
                                    'Q_AGENT': 'openvswitch'},
         'NOVA_XEN_OVN_SETUP=True sets dom0 up for ML2/OVN, but Neutron '
         'does not use it here (NOVA_XEN_NEUTRON_BACKEND=unset, '
         'Q_AGENT=openvswitch)'),
        ('bad OVN mode', {'NOVA_XEN_OVN_SETUP': 'True', 'Q_AGENT': 'ovn',
                          'ENABLED_SERVICES': OVN_COMPUTE,
                          'NOVA_XEN_OVN_MODE': 'domU'},
         'NOVA_XEN_OVN_MODE=domU is not understood: set it to remote'),
        ('missing OVSDB CA', {'NOVA_XEN_OVN_SETUP': 'True', 'Q_AGENT': 'ovn',
                              'ENABLED_SERVICES': OVN_COMPUTE,
                              'NOVA_XEN_OVN_OVSDB_CA': '/nonexistent/ca'},
         'NOVA_XEN_OVN_OVSDB_CA=/nonexistent/ca is not a readable file'),
    ]

    def test_wrong_settings_stop_the_stack_before_installing(self):
        for what, values, message in self.CASES:
            with self.subTest(what):
                self.node = harness.Devstack(self)
                result = self.stack_fails(*STACK, **values)
                self.assertIn(message, result.stderr)
                # stopped at pre-install: nothing installed or written
                self.assertEqual([], result.calls)
                self.assertFalse(result.path('nova').exists())
                self.assertNotIn('SUMMARY', result.stdout)

    def test_every_stack_phase_checks(self):
        for phase in STACK:
            with self.subTest(phase):
                result = self.stack_fails(phase, XENAPI_PASSWORD='')
                self.assertIn('XENAPI_PASSWORD is not set', result.stderr)

    def test_credentials_in_url_are_refused_not_echoed(self):
        url = 'https://root:%s@xcp-ng-1.example.com' % PASSWORD
        for services in (ALL_IN_ONE, CONTROLLER):
            with self.subTest(services=services):
                result = self.stack_fails(
                    'stack pre-install', XENAPI_CONNECTION_URL=url,
                    ENABLED_SERVICES=services, xtrace=True)
                self.assertIn('XENAPI_CONNECTION_URL must not carry '
                              'credentials', result.stderr)
                self.assertEqual(
                    [], [line for line in result.output.splitlines()
                         if PASSWORD in line])

    def test_url_checked_on_a_controller_too(self):
        result = self.stack_fails(
            'stack pre-install', ENABLED_SERVICES=CONTROLLER,
            XENAPI_PASSWORD=None, XENAPI_CONNECTION_URL='xcp-ng-1:443')
        self.assertIn('XENAPI_CONNECTION_URL=xcp-ng-1:443 is not an http',
                      result.stderr)

    def test_dom0_plugins_need_a_target(self):
        result = self.stack_fails(
            'stack pre-install', ENABLED_SERVICES=CONTROLLER,
            XENAPI_CONNECTION_URL=None, XENAPI_PASSWORD=None,
            NOVA_XEN_INSTALL_DOM0_PLUGINS='True')
        self.assertIn('NOVA_XEN_INSTALL_DOM0_PLUGINS=True needs '
                      'XENAPI_DOM0_SSH', result.stderr)

    def test_unstack_and_clean_need_no_credentials(self):
        result = self.stack('unstack', 'clean', XENAPI_CONNECTION_URL=None,
                            XENAPI_PASSWORD=None)
        self.assertEqual([], result.calls)

    def test_password_never_traced(self):
        # stack.sh runs with xtrace on; the password reaches the files
        # that need it and no log line
        result = self.stack(*STACK, 'unstack', 'clean', xtrace=True)
        self.assertIn('+ run_plugin stack test-config', result.stderr)
        self.assertEqual([], [line for line in result.output.splitlines()
                              if PASSWORD in line])
        self.assertEqual(PASSWORD, result.conf('nova-cpu').get(
            'xenserver', 'connection_password'))
        self.assertEqual(PASSWORD, result.conf('tempest').get(
            'xenapi', 'connection_password'))


class TestImage(PluginTestCase):
    """stack extra: the test image in Glance."""

    def created(self, result):
        return [c for c in result.calls_of('openstack')
                if c[:2] == ['image', 'create']]

    def test_generated_blank_vhd(self):
        from xapisim import vhd

        result = self.stack('stack extra')
        path = result.files() / 'nova-xen-blank.vhd'
        self.assertEqual([['image', 'create', 'nova-xen-blank', '--public',
                           '--disk-format', 'vhd', '--container-format',
                           'bare', '--file', str(path)]],
                         self.created(result))
        written = []
        with open(path, 'rb') as f:
            size = vhd.read_vhd(f.read, 1 << 40,
                                lambda offset, data: written.append(offset))
        self.assertEqual(256 * 1024 * 1024, size)
        self.assertEqual([], written)
        self.assertLess(path.stat().st_size, 64 * 1024)

    def test_generated_raw(self):
        result = self.stack('stack extra', NOVA_XEN_IMAGE_DISK_FORMAT='raw',
                            NOVA_XEN_IMAGE_SIZE_MB='8',
                            NOVA_XEN_IMAGE_NAME='blank-raw')
        path = result.files() / 'blank-raw.raw'
        self.assertEqual(8 * 1024 * 1024, path.stat().st_size)
        self.assertEqual([['image', 'create', 'blank-raw', '--public',
                           '--disk-format', 'raw', '--container-format',
                           'bare', '--file', str(path)]],
                         self.created(result))

    def test_image_from_url(self):
        url = 'http://images.example.com/guests/debian-12.vhd?v=2'
        result = self.stack('stack extra', NOVA_XEN_IMAGE_URL=url)
        self.assertEqual([[url]], result.calls_of('get_extra_file'))
        self.assertEqual(
            [['image', 'create', 'debian-12', '--public', '--disk-format',
              'vhd', '--container-format', 'bare', '--file',
              str(result.files() / 'debian-12.vhd?v=2')]],
            self.created(result))

    def test_image_from_file_url(self):
        disk = self.node.write('images/guest.vhd', 'a guest disk')
        result = self.stack('stack extra',
                            NOVA_XEN_IMAGE_URL='file://%s' % disk,
                            NOVA_XEN_IMAGE_NAME='my-guest')
        self.assertEqual(['image', 'create', 'my-guest'],
                         self.created(result)[0][:3])
        self.assertEqual(str(disk), self.created(result)[0][-1])

    def test_uploaded_once(self):
        first = self.stack('stack extra')
        second = self.stack('stack extra')
        self.assertEqual(1, len(self.created(first)))
        self.assertEqual([], self.created(second))
        self.assertIn('image nova-xen-blank is already in Glance',
                      second.stdout)

    def test_clean_removes_only_a_generated_image(self):
        generated = self.stack('stack extra').files() / 'nova-xen-blank.vhd'
        self.assertTrue(generated.exists())
        self.stack('unstack', 'clean')
        self.assertFalse(generated.exists())

        url = 'http://images.example.com/debian-12.vhd'
        downloaded = self.stack('stack extra', NOVA_XEN_IMAGE_URL=url)
        self.stack('clean', NOVA_XEN_IMAGE_URL=url)
        self.assertTrue((downloaded.files() / 'debian-12.vhd').exists())


class TestTempest(PluginTestCase):
    """stack test-config: tempest.conf tells the truth about the driver."""

    def flags(self, result):
        return dict(result.conf('tempest').items('compute-feature-enabled'))

    def test_flags_follow_the_driver(self):
        self.node.features.update(pause=True, snapshot=True,
                                  console_output=True)
        flags = self.flags(self.stack('stack extra', 'stack test-config'))
        for feature in FEATURES:
            expected = str(feature in ('pause', 'snapshot', 'console_output'))
            self.assertEqual(expected, flags[feature], feature)
        self.assertEqual('False', flags['xenapi_apis'])
        self.assertEqual('False', flags['block_migration_for_live_migration'])
        self.assertEqual('False', flags['live_migrate_back_and_forth'])

    def test_flags_where_the_deployment_must_agree(self):
        self.node.features = dict.fromkeys(FEATURES, True)
        flags = self.flags(self.stack('stack extra', 'stack test-config'))
        # n-novnc runs; no second compute, no spice or serial proxy
        self.assertEqual('True', flags['vnc_console'])
        self.assertEqual('True', flags['pause'])
        for flag in ('live_migration', 'spice_console', 'serial_console',
                     'block_migration_for_live_migration',
                     'live_migrate_back_and_forth'):
            self.assertEqual('False', flags[flag], flag)

        flags = self.flags(self.stack(
            'stack test-config', LIVE_MIGRATION_AVAILABLE='True',
            USE_BLOCK_MIGRATION_FOR_LIVE_MIGRATION='True',
            ENABLED_SERVICES=ALL_IN_ONE.replace('n-novnc', 'n-spice')))
        self.assertEqual('True', flags['live_migration'])
        self.assertEqual('True', flags['block_migration_for_live_migration'])
        self.assertEqual('False', flags['live_migrate_back_and_forth'])
        self.assertEqual('False', flags['vnc_console'])
        self.assertEqual('True', flags['spice_console'])

    def test_live_migration_needs_the_driver(self):
        flags = self.flags(self.stack(
            'stack extra', 'stack test-config',
            LIVE_MIGRATION_AVAILABLE='True', LIVE_MIGRATE_BACK_AND_FORTH='1'))
        self.assertEqual('False', flags['live_migration'])
        self.assertEqual('False', flags['live_migrate_back_and_forth'])

    def test_devstacks_own_values_replaced(self):
        # what devstack's lib/tempest wrote before the plugin's phase
        self.node.write('opt/stack/tempest/etc/tempest.conf', (
            '[compute]\n'
            'image_ref = cirros-qcow2-id\n'
            'image_ref_alt = cirros-qcow2-id\n'
            'flavor_ref = 42\n\n'
            '[compute-feature-enabled]\n'
            'vnc_console = True\n'
            'resize = True\n'
            'attach_encrypted_volume = True\n\n'
            '[validation]\n'
            'run_validation = True\n\n'
            '[scenario]\n'
            'img_file = /opt/stack/devstack/files/cirros.img\n'
            'img_disk_format = qcow2\n'))
        result = self.stack('stack extra', 'stack test-config')
        conf = result.conf('tempest')
        image = str(result.files() / 'nova-xen-blank.vhd')
        self.assertEqual({
            'image_ref': 'image-id-of-nova-xen-blank',
            'image_ref_alt': 'image-id-of-nova-xen-blank',
            'flavor_ref': '42',
            'volume_device_name': 'xvdb',
        }, dict(conf.items('compute')))
        self.assertEqual({
            'img_file': image, 'img_disk_format': 'vhd',
            'img_container_format': 'bare',
        }, dict(conf.items('scenario')))
        self.assertEqual('False', conf.get('validation', 'run_validation'))
        for flag in ('vnc_console', 'resize', 'attach_encrypted_volume'):
            self.assertEqual('False', conf.get('compute-feature-enabled',
                                               flag))

    def test_real_image_keeps_validation(self):
        # an image that boots an OS answers Tempest's SSH: devstack's
        # run_validation stays, with the image's login user
        self.node.write('opt/stack/tempest/etc/tempest.conf', (
            '[validation]\n'
            'run_validation = True\n'
            'image_ssh_user = cirros\n'))
        url = 'http://images.example.com/guests/debian-12.vhd'
        conf = self.stack('stack extra', 'stack test-config',
                          NOVA_XEN_IMAGE_URL=url,
                          NOVA_XEN_IMAGE_SSH_USER='debian').conf('tempest')
        self.assertEqual({
            'run_validation': 'True', 'image_ssh_user': 'debian',
            'image_alt_ssh_user': 'debian',
        }, dict(conf.items('validation')))
        self.assertEqual('image-id-of-debian-12',
                         conf.get('compute', 'image_ref'))

        # without a user: devstack's
        conf = self.stack('stack test-config',
                          NOVA_XEN_IMAGE_URL=url).conf('tempest')
        self.assertEqual('True', conf.get('validation', 'run_validation'))

    def test_xenapi_group(self):
        ca_file = self.node.write('pool-ca.pem', 'a CA bundle\n')
        conf = self.stack('stack extra', 'stack test-config',
                          XENAPI_CA_FILE=ca_file).conf('tempest')
        self.assertOptions(conf, 'xenapi', {
            'connection_url': URL, 'connection_username': 'root',
            'connection_password': PASSWORD, 'ca_file': str(ca_file),
            'insecure': 'False'})

    def test_controller_without_url_has_no_xenapi_group(self):
        result = self.stack(*STACK, ENABLED_SERVICES=CONTROLLER,
                            XENAPI_CONNECTION_URL=None,
                            XENAPI_PASSWORD=None)
        conf = result.conf('tempest')
        self.assertFalse(conf.has_section('xenapi'))
        self.assertEqual('image-id-of-nova-xen-blank',
                         conf.get('compute', 'image_ref'))

    def test_nothing_without_tempest(self):
        result = self.stack(*STACK, ENABLED_SERVICES=ALL_IN_ONE.replace(
            ',tempest', ''))
        self.assertFalse(result.path('tempest').exists())
        self.assertFalse((self.node.root / 'probe.log').exists())

    def test_missing_image_stops_the_stack(self):
        result = self.stack_fails('stack test-config')
        self.assertIn('image nova-xen-blank is not in Glance', result.stderr)

    def test_driver_that_cannot_be_imported_stops_the_stack(self):
        broken = self.node.write('bin/broken-python',
                                 '#!/bin/bash\necho "no nova" >&2\nexit 1\n',
                                 mode=0o755)
        result = self.stack_fails('stack test-config',
                                  NOVA_XEN_PYTHON=broken)
        self.assertIn('%s could not import nova and nova_xen' % broken,
                      result.stderr)
        self.assertIn('set NOVA_XEN_PYTHON', result.stderr)

    def test_python_of_devstacks_environment(self):
        prefix = self.node.root / 'venv' / 'bin'
        prefix.mkdir(parents=True)
        (prefix / 'python3').symlink_to(self.node.python_stub)
        self.stack('stack extra', 'stack test-config', use_stub=False,
                   SHIM_PYTHON_PREFIX=prefix)
        self.assertTrue((self.node.root / 'probe.log').exists())

    def test_python_falls_back_to_devstacks_python(self):
        self.stack('stack extra', 'stack test-config', use_stub=False,
                   SHIM_PYTHON_PREFIX=self.node.root / 'nowhere',
                   PYTHON=self.node.python_stub)
        self.assertTrue((self.node.root / 'probe.log').exists())

    def test_the_real_driver(self):
        """The probe, run against the installed nova_xen driver."""
        from nova.virt import driver as base
        from nova_xen import driver

        result = self.stack('stack extra', 'stack test-config',
                            NOVA_XEN_PYTHON=sys.executable)
        flags = self.flags(result)
        self.assertEqual(set(FEATURES) | {
            'xenapi_apis', 'block_migration_for_live_migration',
            'live_migrate_back_and_forth'}, set(flags))

        def has(*methods):
            return str(all(getattr(driver.XenAPIDriver, m) is not
                           getattr(base.ComputeDriver, m) for m in methods))

        self.assertEqual(has('pause', 'unpause'), flags['pause'])
        self.assertEqual(has('suspend', 'resume'), flags['suspend'])
        self.assertEqual(has('rescue', 'unrescue'), flags['rescue'])
        self.assertEqual(has('snapshot'), flags['snapshot'])
        self.assertEqual(has('get_console_output'), flags['console_output'])
        self.assertEqual(has('set_admin_password'), flags['change_password'])
        if not driver.XenAPIDriver.capabilities['supports_attach_interface']:
            self.assertEqual('False', flags['interface_attach'])
        # no second compute in this deployment
        self.assertEqual('False', flags['live_migration'])


class TestNeutron(PluginTestCase):
    """A compute node for ML2/OVN (devstack's default Neutron)."""

    def stack(self, *phases, **localrc):
        # an all-in-one node without devstack's own chassis
        localrc.setdefault('ENABLED_SERVICES', OVN_ALL_IN_ONE)
        return super().stack(*phases, **localrc)

    def stack_fails(self, *phases, **localrc):
        localrc.setdefault('ENABLED_SERVICES', OVN_ALL_IN_ONE)
        return super().stack_fails(*phases, **localrc)

    ML2 = 'etc/neutron/plugins/ml2/ml2_conf.ini'

    def test_an_ovn_compute(self):
        result = self.stack(*STACK, ENABLED_SERVICES=OVN_COMPUTE, Q_AGENT='ovn',
                            XENAPI_HOST_UUID=HOST_UUID)
        for name in ('nova', 'nova-cpu'):
            conf = result.conf(name)
            self.assertEqual('ovn', conf.get('xenserver', 'neutron_backend'))
            # metadata from a config drive: no metadata agent in dom0
            self.assertEqual('True', conf.get('DEFAULT',
                                              'force_config_drive'))
            self.assertEqual('False', conf.get(
                'compute', 'live_migration_wait_for_vif_plug'))
            self.assertFalse(conf.has_option('xenserver', 'isolation_rules'))
            # no Neutron service on the node: Nova's [neutron] from us
            self.assertOptions(conf, 'neutron', {
                'region_name': 'RegionOne', 'auth_type': 'password',
                'auth_url': 'http://203.0.113.10/identity',
                'username': 'nova', 'password': 'service-pw',
                'user_domain_name': 'Default', 'project_name': 'service',
                'project_domain_name': 'Default'})
        # dom0 is left alone unless asked
        self.assertEqual([], result.calls_of('nova-xen-manage'))

    def test_novas_neutron_section_is_kept(self):
        self.node.write('etc/nova/nova-cpu.conf', (
            '[neutron]\nauth_type = v3password\nusername = neutron\n'))
        conf = self.stack('stack post-config', ENABLED_SERVICES=OVN_COMPUTE,
                          Q_AGENT='ovn').conf('nova-cpu')
        self.assertEqual({'auth_type': 'v3password', 'username': 'neutron'},
                         dict(conf.items('neutron')))

    def test_nothing_for_another_neutron(self):
        for values in ({}, {'Q_AGENT': 'openvswitch'}):
            with self.subTest(**values):
                self.node = harness.Devstack(self)
                conf = self.stack('stack post-config', **values).conf(
                    'nova-cpu')
                self.assertFalse(conf.has_option('xenserver',
                                                 'neutron_backend'))
                self.assertFalse(conf.has_option('DEFAULT',
                                                 'force_config_drive'))
        conf = self.stack('stack post-config', Q_AGENT='ovn',
                          NOVA_XEN_NEUTRON_BACKEND='other').conf('nova-cpu')
        self.assertEqual('other', conf.get('xenserver', 'neutron_backend'))
        self.assertFalse(conf.has_option('DEFAULT', 'force_config_drive'))

    def test_isolation_rules(self):
        conf = self.stack('stack post-config', Q_AGENT='ovn',
                          NOVA_XEN_ISOLATION_RULES='no').conf('nova-cpu')
        self.assertEqual('False', conf.get('xenserver', 'isolation_rules'))

    def test_neutron_server_lets_a_migrated_port_through(self):
        ml2 = self.node.write(self.ML2, '[ovn]\novn_metadata_enabled = True\n')
        result = self.stack('stack post-config', Q_AGENT='ovn',
                            Q_PLUGIN_CONF_FILE=str(ml2).lstrip('/'))
        self.assertIn("SUMMARY: Configuring Neutron's ML2/OVN for Xen guests",
                      result.stdout)
        text = ml2.read_text()
        self.assertIn('live_migration_activation_strategy = \n', text)
        self.assertIn('ovn_metadata_enabled = True\n', text)
        # not on a compute node, nor without OVN
        for values in ({'ENABLED_SERVICES': OVN_COMPUTE, 'Q_AGENT': 'ovn'},
                       {'Q_AGENT': 'openvswitch'}):
            node = harness.Devstack(self)
            ml2 = node.write(self.ML2, '[ovn]\n')
            node.run('stack post-config', Q_PLUGIN_CONF_FILE=str(ml2).lstrip(
                '/'), **values)
            self.assertEqual('[ovn]\n', ml2.read_text(), values)

    def test_ovn_setup_of_the_compute_host(self):
        ca = self.node.write('ovn-ca.pem', 'a CA\n')
        result = self.stack(
            *STACK, ENABLED_SERVICES=OVN_COMPUTE, Q_AGENT='ovn',
            XENAPI_HOST_UUID=HOST_UUID, NOVA_XEN_OVN_SETUP='True',
            OVN_SB_REMOTE='ssl:192.0.2.10:6642',
            NOVA_XEN_OVN_BRIDGE_MAPPINGS='physnet1:xenbr1',
            NOVA_XEN_OVN_OVSDB_CA=str(ca))
        self.assertEqual([[
            'ovn-setup', '--config-file', str(result.path('nova-cpu')),
            '--sb-remote', 'ssl:192.0.2.10:6642', '--mode', 'remote',
            '--bridge-mappings', 'physnet1:xenbr1', '--ovsdb-ca', str(ca)]],
            result.calls_of('nova-xen-manage'))
        self.assertIn("SUMMARY: Setting up dom0's Open vSwitch for ML2/OVN",
                      result.stdout)

    def test_the_default_southbound_and_mode(self):
        result = self.stack('stack extra', ENABLED_SERVICES=OVN_COMPUTE,
                            Q_AGENT='ovn', NOVA_XEN_OVN_SETUP='True',
                            NOVA_XEN_OVN_MODE='in-dom0',
                            SERVICE_HOST='192.0.2.10')
        self.assertEqual([[
            'ovn-setup', '--config-file', str(result.path('nova-cpu')),
            '--sb-remote', 'tcp:192.0.2.10:6642', '--mode', 'in-dom0']],
            result.calls_of('nova-xen-manage'))

    def test_a_failed_ovn_setup_stops_the_stack(self):
        self.node.manage_output = ('CANNOT map physnet1 onto xenbr9: ...\n'
                                   'nothing changed: 1 problem above\n')
        self.node.manage_status = 1
        result = self.stack_fails('stack extra',
                                  ENABLED_SERVICES=OVN_COMPUTE,
                                  Q_AGENT='ovn', NOVA_XEN_OVN_SETUP='True')
        self.assertIn('CANNOT map physnet1 onto xenbr9', result.stdout)
        self.assertIn('nova-xen-manage ovn-setup failed (the CANNOT lines '
                      'above say why)', result.stderr)


class TestWholeRuns(PluginTestCase):

    def test_all_in_one(self):
        result = self.stack(*STACK, 'unstack', 'clean')
        self.assertEqual([
            'SUMMARY: Installing nova-xen',
            'SUMMARY: Configuring nova-compute for XenServer',
            'SUMMARY: Configuring Glance for XenServer images',
            "SUMMARY: Uploading nova-xen's test image",
            'SUMMARY: Syncing Nova host aggregates with XenAPI pools',
            'SUMMARY: Configuring Tempest for nova-xen',
        ], [line for line in result.stdout.splitlines()
            if line.startswith('SUMMARY')])
        for name in ('nova', 'nova-cpu', 'glance-api', 'tempest'):
            self.assertTrue(result.path(name).exists(), name)

    def test_multinode(self):
        controller = self.stack(*STACK, ENABLED_SERVICES=CONTROLLER,
                                LIVE_MIGRATION_AVAILABLE='True')
        self.assertEqual(URL, controller.conf('tempest').get(
            'xenapi', 'connection_url'))
        for uuid in (HOST_UUID, HOST_UUID.replace('8a3f', '0c1d')):
            compute = harness.Devstack(self).run(
                *STACK, ENABLED_SERVICES=COMPUTE, XENAPI_HOST_UUID=uuid)
            self.assertEqual(0, compute.returncode, compute)
            self.assertEqual(uuid, compute.conf('nova-cpu').get(
                'xenserver', 'host_uuid'))

    def test_plugin_files_parse(self):
        for name in ('plugin.sh', 'settings', 'override-defaults'):
            path = harness.PLUGIN_DIR / name
            with self.subTest(name):
                self.assertTrue(path.read_text().startswith('#!/bin/bash\n'))
                subprocess.run(['bash', '-n', str(path)], check=True)

    def test_samples_enable_the_plugin(self):
        for name in ('local.conf.sample', 'local.conf.multinode.sample'):
            text = (harness.PLUGIN_DIR / name).read_text()
            with self.subTest(name):
                self.assertIn('enable_plugin nova-xen ', text)
                self.assertIn('XENAPI_CONNECTION_URL=', text)
                self.assertIn('XENAPI_PASSWORD=', text)
                for line in text.splitlines():
                    if line.startswith('enable_plugin'):
                        # enable_plugin NAME GITURL [GITREF]
                        self.assertIn(len(shlex.split(line)), (3, 4), line)


if __name__ == '__main__':
    unittest.main()


class TestPools(PluginTestCase):
    """stack test-config: one Nova host aggregate per XenAPI pool."""

    SYNC = ['pools', 'sync', '--os-cloud', 'devstack-admin', '--wait', '60']

    def synced(self, result):
        return result.calls_of('nova-xen-manage')

    def test_synced_once_the_compute_hosts_are_discovered(self):
        # stack.sh runs tools/discover_hosts.sh after the extra phase and
        # before test-config, the first phase that can see the hosts
        for phase in STACK[:-1]:
            with self.subTest(phase):
                self.assertEqual([], self.synced(self.stack(phase)))
        self.node = harness.Devstack(self)
        result = self.stack('stack extra', 'stack test-config')
        self.assertEqual([self.SYNC], self.synced(result))
        self.assertIn('SUMMARY: Syncing Nova host aggregates with XenAPI '
                      'pools\nnothing to change: 1 pool, 1 nova-xen compute '
                      'host\n', result.stdout)
        # after the image upload (extra), before Tempest is configured
        self.assertEqual([
            ['openstack', 'image', 'show'], ['openstack', 'image', 'create'],
            ['nova-xen-manage', 'pools', 'sync'],
            ['openstack', 'image', 'show']],
            [call[:3] for call in result.calls])

    def test_once_in_a_whole_stack(self):
        result = self.stack(*STACK)
        self.assertEqual([self.SYNC], self.synced(result))

    def test_as_the_cloud_stack_sh_chose(self):
        result = self.stack('stack test-config', OS_CLOUD='devstack-system',
                            ENABLED_SERVICES='n-api,n-cpu')
        self.assertEqual([['pools', 'sync', '--os-cloud', 'devstack-system',
                           '--wait', '60']], self.synced(result))

    def test_only_where_novas_api_runs(self):
        self.assertEqual([], self.synced(self.stack(
            *STACK, ENABLED_SERVICES=COMPUTE, XENAPI_HOST_UUID=HOST_UUID)))
        self.assertEqual([self.SYNC], self.synced(self.stack(
            *STACK, ENABLED_SERVICES=CONTROLLER, XENAPI_CONNECTION_URL=None,
            XENAPI_PASSWORD=None)))

    def test_a_failed_sync_does_not_stop_the_stack(self):
        self.node.manage_output = ('nova-xen-manage: Cloud devstack-admin '
                                   'was not found.\n')
        self.node.manage_status = 1
        result = self.stack('stack extra', 'stack test-config')
        self.assertIn('nova-xen-manage: Cloud devstack-admin was not found.',
                      result.stdout)
        self.assertIn('[WARNING]', result.stderr)
        self.assertIn('nova-xen-manage pools sync failed (reason above): the '
                      'XenAPI pools have no host aggregates; run it again '
                      'once the cloud is up', result.stderr)
        # the phase went on
        self.assertEqual('image-id-of-nova-xen-blank', result.conf(
            'tempest').get('compute', 'image_ref'))

    def test_the_real_command(self):
        """nova-xen-manage itself, with a clouds.yaml that has no
        devstack-admin (found first: in the working directory)."""
        self.node.write('clouds.yaml', 'clouds: {}\n')
        result = self.stack('stack test-config', ENABLED_SERVICES='n-api',
                            NOVA_XEN_PYTHON=sys.executable)
        self.assertIn('nova-xen-manage: Cloud devstack-admin was not found.',
                      result.stderr)
        self.assertIn('nova-xen-manage pools sync failed', result.stderr)
