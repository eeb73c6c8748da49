"""UEFI, Secure Boot and vTPM servers through Nova's API: what the guest
gets, what is refused (with a sentence), and that the UEFI variables and
the vTPM state survive resize, cold and live migration in a pool and
across pools (a marker written into each before the move, read after)."""

import base64
import json

import os_traits

from tests.functional import base
from tests.functional.test_boot import pattern

MIB = 1024 * 1024
UEFI_SB = {'hw_firmware_type': 'uefi', 'os_secure_boot': 'required'}
VTPM = {'hw:tpm_version': '2.0', 'hw:tpm_model': 'tpm-crb',
        'hw:tpm_secret_security': 'host'}


def b64(data):
    return base64.b64encode(data).decode()


class _FirmwareBase(base.XenAPIFunctionalTestCase):
    def _setup_compute_service(self):
        # the operator installed the pool's certificates before the
        # compute started: it reports Secure Boot from its first update
        self.xapi.control.secureboot_certs()
        return super(_FirmwareBase, self)._setup_compute_service()

    def setUp(self):
        super(_FirmwareBase, self).setUp()
        self.x = self.xapi.x
        self.vtpm_flavor = self._create_flavor(
            name='fw.vtpm', memory_mb=512, vcpu=1, disk=1, ephemeral=0,
            extra_spec=VTPM)
        self.vtpm_big = self._create_flavor(
            name='fw.vtpm.big', memory_mb=1024, vcpu=2, disk=2,
            ephemeral=0, extra_spec=VTPM)

    def boot_uefi(self, properties=UEFI_SB, flavor='fw.vtpm',
                  expected_state='ACTIVE'):
        image = self.image_with(pattern(MIB, seed=b'uefi'),
                                properties=dict(properties))
        return self.boot(image, flavor=flavor,
                         expected_state=expected_state)

    def vm(self, server, x=None):
        x = x or self.x
        for ref, record in x.VM.get_all_records().items():
            if record['other_config'].get('nova_uuid') == server['id']:
                return ref, record
        raise AssertionError('no VM for server %s' % server['id'])

    def mark(self, server, x=None, control=None):
        """The guest writes a UEFI variable and its TPM state."""
        _, record = self.vm(server, x)
        (control or self.xapi.control).guest_firmware(
            record['uuid'], efi_variables={'BootOrder': '0003,0001'},
            tpm=b'bitlocker-key:' + server['id'].encode())

    def assertMarked(self, server, x=None):
        x = x or self.x
        vm, record = self.vm(server, x)
        variables = json.loads(base64.b64decode(
            record['NVRAM']['EFI-variables']))['variables']
        self.assertEqual('0003,0001', variables['BootOrder'])
        self.assertIn('PK', variables)
        (vtpm,) = record['VTPMs']
        self.assertEqual(b64(b'bitlocker-key:' + server['id'].encode()),
                         x.VTPM.get_contents(vtpm))
        self.assertEqual('ready', x.VM.get_secureboot_readiness(vm))


class FirmwareBootTest(_FirmwareBase):

    def traits(self):
        rp = self._get_provider_uuid_by_host(self.compute.host)
        return set(self._get_provider_traits(rp))

    def test_uefi_secure_boot_vtpm_server_and_its_snapshot(self):
        traits = self.traits()
        for on in ('TPM_2_0', 'TPM_CRB', 'TPM_SECRET_SECURITY_HOST',
                   'UEFI_SECURE_BOOT', 'STATELESS_FIRMWARE'):
            self.assertIn('COMPUTE_SECURITY_' + on, traits)
        for off in ('TPM_1_2', 'TPM_TIS', 'TPM_SECRET_SECURITY_USER',
                    'TPM_SECRET_SECURITY_DEPLOYMENT'):
            self.assertNotIn('COMPUTE_SECURITY_' + off, traits)
        secrets = len(self.x.secret.get_all())
        server = self.boot_uefi()
        vm, record = self.vm(server)
        self.assertEqual('uefi', record['HVM_boot_params']['firmware'])
        self.assertEqual('true', record['platform']['secureboot'])
        self.assertEqual('persist',
                         record['NVRAM']['EFI-variables-on-boot'])
        (vtpm,) = record['VTPMs']
        # not unique: a clone (a resize to another pool) keeps the state
        self.assertFalse(self.x.VTPM.get_is_unique(vtpm))
        self.mark(server)
        # a hard reboot builds a new domain: the state stays
        self.api.post_server_action(server['id'],
                                    {'reboot': {'type': 'HARD'}})
        self._wait_for_state_change(server, 'ACTIVE')
        self.assertMarked(server)
        # the snapshot's image boots the same way
        self._snapshot_server(server, 'uefi-snap')
        image = self.poll(lambda: [
            i for i in self.glance.detail(None)
            if i['name'] == 'uefi-snap' and i['status'] == 'active'],
            'the snapshot image')[0]
        self.assertEqual('uefi', image['properties']['hw_firmware_type'])
        self.assertEqual('required', image['properties']['os_secure_boot'])
        # deleting the server removes its vTPM and the vTPM's secret
        self._delete_server(server)
        self.assertEqual([], self.x.VTPM.get_all())
        self.assertEqual(secrets, len(self.x.secret.get_all()))

    def test_stateless_uefi_without_secure_boot(self):
        server = self.boot_uefi({'hw_firmware_type': 'uefi',
                                 'hw_firmware_stateless': 'true'},
                                flavor='m1.tiny')
        _, record = self.vm(server)
        self.assertEqual('uefi', record['HVM_boot_params']['firmware'])
        self.assertEqual('false', record['platform']['secureboot'])
        self.assertEqual({'EFI-variables-on-boot': 'reset'}, record['NVRAM'])
        self.assertEqual([], record['VTPMs'])

    def assertRefused(self, server, sentence):
        server = self._wait_for_state_change(server, 'ERROR')
        self.assertIn(sentence, server['fault']['message'])
        self.assertIsNone(self.xapi.vm_of(server['id']))
        self.assertEqual({'VM': [], 'VDI': [], 'VBD': [], 'VIF': []},
                         self.xapi.objects_of(server['id']))
        self.assertEqual([], self.x.VTPM.get_all())

    def test_what_xapi_cannot_honour_is_refused_before_anything_is_made(self):
        # a vTPM on a BIOS image: the scheduler cannot tell, the driver can
        server = self.boot_uefi({}, expected_state='ERROR')
        self.assertRefused(server, 'xapi does not boot a BIOS guest with a '
                           'vTPM: the image needs hw_firmware_type=uefi')
        # Nova's default model (TIS): no compute has the trait
        tis = self._create_flavor(name='fw.tis', memory_mb=512, vcpu=1,
                                  disk=1, ephemeral=0,
                                  extra_spec={'hw:tpm_version': '2.0'})
        self.assertNotIn(os_traits.COMPUTE_SECURITY_TPM_TIS, self.traits())
        server = self._create_server(
            image_uuid=self.image_with(pattern(MIB), properties=UEFI_SB),
            flavor_id=tis, networks=[{'uuid': self.neutron.network_1['id']}],
            expected_state='ERROR')
        self.assertIn('No valid host', server['fault']['message'])
        # the pool lost its certificates since the compute reported them
        self.assertIn(os_traits.COMPUTE_SECURITY_UEFI_SECURE_BOOT,
                      self.traits())
        self.assertEqual('not_ready', self.xapi.control.secureboot_certs(()))
        server = self.boot_uefi(expected_state='ERROR')
        self.assertRefused(server, '"secureboot-certs install"')


class _InPool(_FirmwareBase):
    xapisim_options = dict(base.XenAPIFunctionalTestCase.xapisim_options,
                           hosts=2)

    def setUp(self):
        super(_InPool, self).setUp()
        self.flags(host_uuid=self.xapi.pool['hosts'][1]['uuid'],
                   group='xenserver')
        self.second = self._start_compute(
            self.xapi.pool['hosts'][1]['name_label'])


class InPoolMovesTest(_InPool):

    def test_resize_then_live_migration_keep_variables_and_vtpm(self):
        server = self.boot_uefi()
        source = server['OS-EXT-SRV-ATTR:host']
        self.mark(server)
        # resize to the other host (a new VM from copies of the disks)
        self.flags(allow_resize_to_same_host=False)
        server = self._resize_server(server, self.vtpm_big)
        self.assertNotEqual(source, server['OS-EXT-SRV-ATTR:host'])
        server = self._confirm_resize(server)
        self.assertMarked(server)
        self.assertEqual(1, len(self.x.VTPM.get_all()))
        # live migration back (the VM moves, xapi keeps its state)
        server = self._live_migrate(server)
        self.assertEqual(source, server['OS-EXT-SRV-ATTR:host'])
        self.assertMarked(server)
        self._delete_server(server)
        self.assertEqual([], self.x.VTPM.get_all())


class CrossPoolMovesTest(_FirmwareBase):
    xapisim_options = dict(base.XenAPIFunctionalTestCase.xapisim_options,
                           pools=2)

    def setUp(self):
        super(CrossPoolMovesTest, self).setUp()
        # booted in the first pool before the second pool's compute starts
        self.server = self.boot_uefi()
        other = self.xapi.world['pools'][1]
        self.y_session = self.xapi.login(other['master'])
        self.y = self.y_session.xenapi
        from xapisim.client import Control
        self.y_control = Control(other['master'], self.xapi.username,
                                 self.xapi.password,
                                 ca_file=self.xapi.ca_file)
        self.y_control.secureboot_certs()
        self.flags(connection_url=other['master'],
                   host_uuid=other['hosts'][0]['uuid'], group='xenserver')
        self.second = self._start_compute(other['hosts'][0]['name_label'])

    def test_cold_migration_and_live_migration_across_pools(self):
        server = self.server
        source = server['OS-EXT-SRV-ATTR:host']
        self.mark(server)
        # cold: the stopped VM's clone travels (VM.migrate_send)
        server = self._migrate_server(server)
        server = self._confirm_resize(server)
        self.assertNotEqual(source, server['OS-EXT-SRV-ATTR:host'])
        self.assertMarked(server, self.y)
        self.assertEqual([], self.x.VTPM.get_all())
        # live, back to the first pool (storage XenMotion)
        server = self._live_migrate(server)
        self.assertEqual(source, server['OS-EXT-SRV-ATTR:host'])
        self.assertMarked(server)
        self.assertEqual([], self.y.VTPM.get_all())
        self._delete_server(server)
        self.assertEqual([], self.x.VTPM.get_all())
