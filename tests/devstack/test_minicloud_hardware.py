"""The mini cloud's firmware and devices, without a cloud: the device host's
NIC and GPU as xapisim takes them (a world is started with the file ``up``
writes), nova.conf for them (Nova's PCI tracker and alias, the vGPU
type, PciPassthroughFilter), the Secure Boot certificates installed as an
operator would on the pools named, and tools/minicloud/hardware_check.py's
findings from what placement and the servers say.
"""

import json
import re
import sys

import XenAPI

import xapisim
from tests.devstack.test_minicloud_computes import MinicloudTestCase
from tests.devstack.test_minicloud_computes import TOOLS
from tests.devstack.test_minicloud_computes import tool_module

SPAWN_STUB = 'function mc_spawn { echo "$*" >> "$SHIM_ROOT/spawned"; }\n'
# curl as mc_secureboot_certs calls it: recorded, answering as xapisim's
# control interface does (CURL_ANSWER)
CURL_STUB = r'''
function curl {
    echo "curl $*" >> "$SHIM_ROOT/calls"
    echo "${CURL_ANSWER:-{\"readiness\": \"ready\"}}"
}
'''


def hardware_check():
    sys.path.insert(0, str(TOOLS / 'minicloud'))    # its checklog
    try:
        return tool_module('hardware_check')
    finally:
        sys.path.remove(str(TOOLS / 'minicloud'))


class HardwareTestCase(MinicloudTestCase):

    def ok(self, script, computes='1.1 1.2 2.1'):
        result = self.bash(script, computes)
        self.assertEqual(0, result.returncode, result.stdout + result.stderr)
        return result

    def configure_nova(self):
        """up's steps for nova.conf (mc_configure_nova, the plugin's
        post-config phase) and nova-cpu.conf."""
        paste = self.dir / 'venv' / 'etc' / 'nova' / 'api-paste.ini'
        paste.parent.mkdir(parents=True, exist_ok=True)
        paste.write_text('[composite:osapi_compute]\n')
        self.ok('mc_localrc\n'
                'mkdir -p "$MC_ETC/glance"\n'
                'mc_configure_nova\n'
                'run_plugin stack post-config >> "$MC_LOG/plugin.log"\n'
                'mc_configure_nova_compute\n')

    def spawned_xapisim(self):
        self.ok(SPAWN_STUB + 'mkdir -p "$MC_ETC"\nmc_start_xapisim\n')
        return (self.root / 'spawned').read_text().split()


class DevicesTest(HardwareTestCase):

    def test_xapisim_gives_the_device_host_a_nic_and_a_gpu(self):
        words = self.spawned_xapisim()
        path = words[words.index('--devices') + 1]
        with open(path) as f:
            spec = json.load(f)
        self.assertEqual(['xcp-ng-1-1'], list(spec['hosts']))
        # the world xapisim makes of it: on that host only, an 82599 and a
        # T4 hidden from dom0, the T4 holding four GRID T4-4Q vGPUs
        sim = xapisim.Simulator(pools=2, hosts=2, devices=spec)
        self.addCleanup(sim.stop)
        pool = sim.describe()['pools'][0]
        session = XenAPI.Session(pool['master'])
        session.xenapi.login_with_password('root', 'xapisim', '2.0', 'test')
        self.addCleanup(session.xenapi.session.logout)
        x = session.xenapi
        found = {}
        for host in pool['hosts']:
            ref = x.host.get_by_uuid(host['uuid'])
            found[host['name_label']] = sorted(
                (x.PCI.get_vendor_id(p), x.PCI.get_device_id(p),
                 x.PCI.get_dom0_access_status(p))
                for p in x.host.get_PCIs(ref))
        self.assertEqual({'xcp-ng-1-1': [('10de', '1eb8', 'disabled'),
                                         ('8086', '10fb', 'disabled')],
                          'xcp-ng-1-2': []}, found)
        (pgpu,) = x.PGPU.get_all()
        capacities = {x.VGPU_type.get_model_name(t): int(n) for t, n in
                      x.PGPU.get_supported_VGPU_max_capacities(pgpu).items()}
        self.assertEqual({'GRID T4-4Q': 4, 'passthrough': 1}, capacities)

    def test_the_device_host_can_be_another_compute_or_none(self):
        self.env['MINICLOUD_DEVICE_HOST'] = '2.1'
        words = self.spawned_xapisim()
        with open(words[words.index('--devices') + 1]) as f:
            self.assertEqual(['xcp-ng-2-1'], list(json.load(f)['hosts']))
        (self.root / 'spawned').unlink()
        self.env['MINICLOUD_DEVICE_HOST'] = ''
        self.assertNotIn('--devices', self.spawned_xapisim())

    def test_the_device_host_must_be_a_compute(self):
        self.env['MINICLOUD_DEVICE_HOST'] = '2.2'
        result = self.bash('mc_check_computes')
        self.assertEqual(1, result.returncode)
        self.assertIn('MINICLOUD_DEVICE_HOST: 2.2 is not one of the '
                      'computes\' hosts (1.1 1.2 2.1)', result.stderr)

    def test_nova_is_configured_for_them(self):
        self.configure_nova()
        self.ok('mc_xapi_devices xcp-ng-1-1 > "$SHIM_ROOT/dev"\n')
        devices = json.loads((self.root / 'dev').read_text())
        plain = self.bash('echo "$MC_NOVA_FILTERS"').stdout.strip()
        for name in ('nova.conf', 'nova-cpu.conf'):
            conf = self.conf(name)
            spec = json.loads(conf.get('pci', 'device_spec'))
            alias = json.loads(conf.get('pci', 'alias'))
            # the spec and the alias name the NIC of the device host,
            # and only it
            nics = [p['pci_id'] for p in devices['hosts']['xcp-ng-1-1']['pci']
                    if (p['vendor_id'], p['device_id']) ==
                    (spec['vendor_id'], spec['product_id'])
                    == (alias['vendor_id'], alias['product_id'])]
            self.assertEqual(['0000:04:00.0'], nics)
            self.assertEqual(('nic', 'type-PCI'),
                             (alias['name'], alias['device_type']))
            # Nova's vGPU type is xapi's model name of the GPU's type
            self.assertEqual('GRID T4-4Q',
                             conf.get('devices', 'enabled_mdev_types'))
            self.assertEqual([t['model_name'] for t in devices['vgpu_types']],
                             ['GRID T4-4Q'])
            # devstack's filters, and the one that places PCI requests
            self.assertEqual(plain + ',PciPassthroughFilter',
                             conf.get('filter_scheduler', 'enabled_filters'))

    def test_without_a_device_host_nova_is_as_devstack_has_it(self):
        self.env['MINICLOUD_DEVICE_HOST'] = ''
        self.configure_nova()
        conf = self.conf('nova.conf')
        self.assertFalse(conf.has_section('pci'))
        self.assertFalse(conf.has_section('devices'))
        self.assertNotIn('PciPassthroughFilter',
                         conf.get('filter_scheduler', 'enabled_filters'))


class SecureBootCertsTest(HardwareTestCase):

    def calls(self):
        return (self.root / 'calls').read_text().splitlines()

    def test_on_the_first_pool_by_default(self):
        result = self.ok(CURL_STUB + 'mc_secureboot_certs\n')
        (call,) = self.calls()
        self.assertIn('http://127.0.0.2:8080/_xapisim/secureboot_certs', call)
        self.assertIn('{"files": ["PK", "KEK", "db", "dbx"]}', call)
        self.assertIn('root:minicloud-pw', call)
        self.assertIn('pool 1 (http://127.0.0.2:8080): Secure Boot '
                      'certificates installed, the pool is ready',
                      result.stdout)

    def test_on_the_pools_named(self):
        self.env['MINICLOUD_SECUREBOOT_POOLS'] = '1 2'
        self.ok(CURL_STUB + 'mc_secureboot_certs\n')
        self.assertEqual(['http://127.0.0.2:8080', 'http://127.0.0.4:8080'],
                         [c.split()[-1].rsplit('/', 2)[0]
                          for c in self.calls()])
        self.env['MINICLOUD_SECUREBOOT_POOLS'] = ''
        (self.root / 'calls').unlink()
        self.ok(CURL_STUB + 'mc_secureboot_certs\n')
        self.assertFalse((self.root / 'calls').exists())

    def test_a_pool_that_is_not_there_or_not_ready_stops_up(self):
        self.env['MINICLOUD_SECUREBOOT_POOLS'] = '3'
        result = self.bash(CURL_STUB + 'mc_secureboot_certs\n')
        self.assertEqual(1, result.returncode)
        self.assertIn('MINICLOUD_SECUREBOOT_POOLS: xapisim has no pool 3',
                      result.stderr)
        self.env['MINICLOUD_SECUREBOOT_POOLS'] = '1'
        self.env['CURL_ANSWER'] = '{"readiness": "not_ready"}'
        result = self.bash(CURL_STUB + 'mc_secureboot_certs\n')
        self.assertEqual(1, result.returncode)
        self.assertIn('Secure Boot certificates for pool 1 '
                      '(http://127.0.0.2:8080): {"readiness": "not_ready"}',
                      result.stderr)


class FindingsTest(HardwareTestCase):
    """hardware_check.py's judgements of what the cloud answers."""

    GOOD = {'COMPUTE_SECURITY_TPM_2_0', 'COMPUTE_SECURITY_TPM_CRB',
            'COMPUTE_SECURITY_TPM_SECRET_SECURITY_HOST', 'HW_CPU_X86_AVX'}

    def setUp(self):
        super().setUp()
        self.check = hardware_check()

    def test_traits_of_a_ready_pool_and_of_one_that_is_not(self):
        problems = self.check.trait_problems
        sb = self.GOOD | {'COMPUTE_SECURITY_UEFI_SECURE_BOOT'}
        self.assertEqual([], problems(sb, 'ready'))
        self.assertEqual([], problems(sb, 'ready_no_dbx'))
        self.assertEqual([], problems(self.GOOD, 'not_ready'))
        self.assertEqual(['COMPUTE_SECURITY_UEFI_SECURE_BOOT missing while '
                          'the pool\'s readiness is ready'],
                         problems(self.GOOD, 'ready'))
        self.assertEqual(['COMPUTE_SECURITY_UEFI_SECURE_BOOT reported while '
                          'the pool\'s readiness is not_ready'],
                         problems(sb, 'not_ready'))

    def test_tpm_traits_xapi_cannot_honour(self):
        traits = (self.GOOD - {'COMPUTE_SECURITY_TPM_CRB'}) | {
            'COMPUTE_SECURITY_TPM_TIS', 'COMPUTE_SECURITY_TPM_1_2'}
        self.assertEqual(
            ['no COMPUTE_SECURITY_TPM_CRB',
             'COMPUTE_SECURITY_TPM_1_2 (xapi cannot honour it)',
             'COMPUTE_SECURITY_TPM_TIS (xapi cannot honour it)'],
            self.check.trait_problems(traits, 'not_ready'))

    def test_gpu_group_providers_of_one_compute(self):
        providers = [{'name': 'xcp-ng-1-1'},
                     {'name': 'xcp-ng-1-1_gpu_group_abc'},
                     {'name': 'xcp-ng-1-10_gpu_group_def'},
                     {'name': 'xcp-ng-1-2'}]
        self.assertEqual([{'name': 'xcp-ng-1-1_gpu_group_abc'}],
                         self.check.gpu_group_providers(providers,
                                                        'xcp-ng-1-1'))
        self.assertEqual([], self.check.gpu_group_providers(providers,
                                                            'xcp-ng-1-2'))

    def test_xapis_pci_field(self):
        self.assertEqual('0/0000:04:00.0',
                         self.check.pci_value(['0000:04:00.0']))
        self.assertEqual('0/0000:04:00.0,0/0000:81:00.0',
                         self.check.pci_value(['0000:04:00.0',
                                               '0000:81:00.0']))

    def test_a_refusal_must_say_why(self):
        refusal = self.check.refusal_problem
        sentence = 'xapi does not boot a BIOS guest with a vTPM'
        fault = {'message': sentence + ': the image needs '
                 'hw_firmware_type=uefi'}
        self.assertIsNone(refusal({'status': 'ERROR', 'fault': fault},
                                  sentence))
        self.assertEqual('it is ACTIVE, not refused',
                         refusal({'status': 'ACTIVE', 'fault': None},
                                 sentence))
        self.assertEqual(
            'its fault does not say "%s": \'Exceeded maximum number of '
            'retries.\'' % sentence,
            refusal({'status': 'ERROR', 'fault': {
                'message': 'Exceeded maximum number of retries.'}},
                sentence))


class TempestVtpmExclusionTest(HardwareTestCase):
    """Tempest's vTPM tests ask for TPM 1.2 with TIS: excluded, with the
    reason; the other live-migration tests still run."""

    def test_only_tempest_vtpm_tests_are_excluded_and_why(self):
        base = 'tempest.api.compute.admin.test_live_migration.'
        vtpm = [base + 'LiveMigrationWithVTPMTest.test_vtpm_live_migration_'
                'secret_security_host[id-f26e8307-d865-4382-85f9-0b1c0a0ad80c]',
                base + 'LiveMigrationWithVTPMTest.test_vtpm_live_migration_'
                'opt_in_via_resize_host[id-...]']
        others = [base + 'LiveMigrationTest.test_live_block_migration'
                  '[id-1dce86b8-eb04-4c03-a9d8-9c1dc3ee0c7b]',
                  base + 'LiveAutoBlockMigrationV225Test.test_live_block_'
                  'migration[id-1dce86b8-eb04-4c03-a9d8-9c1dc3ee0c7b]']
        with open(TOOLS / 'minicloud' / 'tempest-exclude.txt') as f:
            rules = [line.partition('#') for line in f
                     if line.strip() and not line.startswith('#')]
        catching = [(regex.strip(), reason) for regex, _, reason in rules
                    if any(re.search(regex.strip(), t) for t in vtpm)]
        self.assertEqual(1, len(catching))
        regex, reason = catching[0]
        self.assertTrue(all(re.search(regex, t) for t in vtpm))
        self.assertFalse(any(re.search(regex, t) for t in others))
        self.assertIn('TPM 1.2 with the TIS model', reason)
        self.assertIn('TPM 2.0 with the CRB interface only', reason)
