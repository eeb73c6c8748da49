"""UEFI, Secure Boot, NVRAM and VTPMs follow xapi's rules."""

import base64
import json

from tests.xapisim.base import SimTestCase
from tests.xapisim.test_migration import MigrationTestCase

UEFI = {'firmware': 'uefi', 'order': 'dc'}


def varstore(nvram):
    """The UEFI variables in xapisim's NVRAM['EFI-variables'] blob."""
    return json.loads(base64.b64decode(nvram['EFI-variables']))['variables']


def b64(data):
    return base64.b64encode(data).decode()


class FirmwareCase(SimTestCase):
    hosts = 2

    def setUp(self):
        super(FirmwareCase, self).setUp()
        self.addCleanup(self.control().secureboot_certs, ())
        self.addCleanup(self.control().set_restrictions,
                        restrict_vtpm='false')

    def uefi_vm(self, platform=None, **extra):
        vm = self.new_vm(HVM_boot_params=dict(UEFI),
                         platform=dict(platform or {}), **extra)
        self.new_vbd(vm, self.new_vdi())
        return vm

    def uuid(self, vm):
        return self.x.VM.get_uuid(vm)


class FirmwareAtStartTest(FirmwareCase):
    def test_unknown_firmware_fails_the_start(self):
        vm = self.new_vm(HVM_boot_params={'firmware': 'coreboot'})
        self.assertFailure(['INVALID_VALUE', "HVM-boot-params['firmware']",
                            'coreboot'], self.x.VM.start, vm, False, False)
        self.assertEqual('Halted', self.x.VM.get_power_state(vm))

    def test_start_writes_the_default_device_model(self):
        bios = self.new_vm()
        uefi = self.uefi_vm()
        for vm in (bios, uefi):
            self.x.VM.start(vm, False, False)
        self.assertEqual('qemu-upstream-compat',
                         self.x.VM.get_platform(bios)['device-model'])
        self.assertEqual('qemu-upstream-uefi',
                         self.x.VM.get_platform(uefi)['device-model'])

    def test_device_model_must_fit_the_firmware(self):
        vm = self.uefi_vm({'device-model': 'qemu-trad'})
        details = self.assertFailure('INVALID_VALUE', self.x.VM.start, vm,
                                     False, False)
        self.assertEqual('platform:device-model', details[1])
        bios = self.new_vm(platform={'device-model': 'qemu-upstream-uefi'})
        self.assertFailure('INVALID_VALUE', self.x.VM.start, bios, False,
                           False)
        # the compat model runs both
        compat = self.uefi_vm({'device-model': 'qemu-upstream-compat'})
        self.x.VM.start(compat, False, False)

    def test_secureboot_auto_follows_the_pool_certificate_field(self):
        # the auth files make the pool ready, but 'auto' reads
        # pool.uefi_certificates, which an upgraded pool has empty
        self.assertEqual('ready', self.control().secureboot_certs())
        vm = self.uefi_vm({'secureboot': 'auto'})
        self.x.VM.start(vm, False, False)
        self.assertEqual('false', self.x.VM.get_platform(vm)['secureboot'])
        self.assertEqual('disabled', self.x.VM.get_secureboot_readiness(vm))

    def test_bad_nvram_on_boot_mode_fails_the_start(self):
        vm = self.uefi_vm(NVRAM={'EFI-variables-on-boot': 'sometimes'})
        self.assertFailure(['INVALID_VALUE',
                            "NVRAM['EFI-variables-on-boot']", 'sometimes'],
                           self.x.VM.start, vm, False, False)


class NvramTest(FirmwareCase):
    def test_nvram_changes_only_while_halted(self):
        vm = self.uefi_vm()
        self.x.VM.set_NVRAM(vm, {'EFI-variables-on-boot': 'persist'})
        self.x.VM.add_to_NVRAM(vm, 'EFI-variables-backend', 'xapidb')
        self.x.VM.remove_from_NVRAM(vm, 'EFI-variables-on-boot')
        self.assertEqual({'EFI-variables-backend': 'xapidb'},
                         self.x.VM.get_NVRAM(vm))
        self.x.VM.start(vm, False, False)
        for call, args in ((self.x.VM.set_NVRAM, ({},)),
                           (self.x.VM.add_to_NVRAM, ('k', 'v')),
                           (self.x.VM.remove_from_NVRAM, ('k',))):
            self.assertFailure(['VM_BAD_POWER_STATE', vm, 'halted',
                                'running'], call, vm, *args)

    def test_first_uefi_boot_writes_the_varstore_with_the_hosts_keys(self):
        self.control().secureboot_certs(('PK', 'KEK', 'db'))
        vm = self.uefi_vm({'secureboot': 'true'})
        self.assertNotIn('EFI-variables', self.x.VM.get_NVRAM(vm))
        self.assertEqual('first_boot', self.x.VM.get_secureboot_readiness(vm))
        self.x.VM.start(vm, False, False)
        self.assertEqual({'PK', 'KEK', 'db'},
                         set(varstore(self.x.VM.get_NVRAM(vm))))
        self.assertEqual('ready_no_dbx',
                         self.x.VM.get_secureboot_readiness(vm))
        # the guest's own variables are saved, and survive a restart
        self.control().guest_firmware(self.uuid(vm),
                                      efi_variables={'BootOrder': '0001'})
        self.x.VM.hard_shutdown(vm)
        self.x.VM.start(vm, False, False)
        self.assertEqual('0001', varstore(self.x.VM.get_NVRAM(vm))
                         ['BootOrder'])

    def test_a_bios_vm_gets_no_varstore(self):
        vm = self.new_vm()
        self.x.VM.start(vm, False, False)
        self.assertEqual({}, self.x.VM.get_NVRAM(vm))
        self.assertEqual('not_supported',
                         self.x.VM.get_secureboot_readiness(vm))

    def test_a_stateless_vm_keeps_no_variables(self):
        vm = self.uefi_vm(NVRAM={'EFI-variables-on-boot': 'reset'})
        self.x.VM.start(vm, False, False)
        self.control().guest_firmware(self.uuid(vm),
                                      efi_variables={'BootOrder': '0001'})
        self.assertEqual({'EFI-variables-on-boot': 'reset'},
                         self.x.VM.get_NVRAM(vm))

    def test_without_keys_the_vm_is_in_setup_mode_until_user_mode(self):
        vm = self.uefi_vm({'secureboot': 'true'})
        self.x.VM.start(vm, False, False)
        self.assertEqual('setup_mode', self.x.VM.get_secureboot_readiness(vm))
        self.x.VM.hard_shutdown(vm)
        self.control().secureboot_certs()
        self.x.VM.set_uefi_mode(vm, 'user')
        self.assertEqual('ready', self.x.VM.get_secureboot_readiness(vm))
        self.x.VM.set_uefi_mode(vm, 'setup')
        self.assertEqual('setup_mode', self.x.VM.get_secureboot_readiness(vm))


class PoolReadinessTest(FirmwareCase):
    def test_readiness_reads_the_masters_auth_files(self):
        control = self.control()
        pool = self.pool_ref()
        self.assertEqual('not_ready',
                         self.x.pool.get_guest_secureboot_readiness(pool))
        control.secureboot_certs(('PK', 'KEK', 'db'))
        self.assertEqual('ready_no_dbx',
                         self.x.pool.get_guest_secureboot_readiness(pool))
        control.secureboot_certs()
        self.assertEqual('ready',
                         self.x.pool.get_guest_secureboot_readiness(pool))
        # only the master's dom0 counts
        other = self.world['pools'][0]['hosts'][1]['uuid']
        master = self.world['pools'][0]['hosts'][0]['uuid']
        control.secureboot_certs((), host_uuids=[master])
        control.secureboot_certs(host_uuids=[other])
        self.assertEqual('not_ready',
                         self.x.pool.get_guest_secureboot_readiness(pool))


class VtpmTest(FirmwareCase):
    def test_create_on_a_halted_vm_once(self):
        vm = self.uefi_vm()
        vtpm = self.x.VTPM.create(vm, False)
        self.assertEqual([vtpm], self.x.VM.get_VTPMs(vm))
        record = self.x.VTPM.get_record(vtpm)
        self.assertEqual((vm, False, 'xapi'), (
            record['VM'], record['is_unique'], record['persistence_backend']))
        self.assertEqual('', self.x.VTPM.get_contents(vtpm))
        self.assertFailure(['VTPM_MAX_AMOUNT_REACHED', '1'],
                           self.x.VTPM.create, vm, True)

    def test_create_needs_a_halted_vm_and_the_feature(self):
        vm = self.uefi_vm()
        self.x.VM.start(vm, False, False)
        self.assertFailure(['VM_BAD_POWER_STATE', vm, 'halted', 'running'],
                           self.x.VTPM.create, vm, False)
        halted = self.uefi_vm()
        self.control().set_restrictions(restrict_vtpm='true')
        self.assertFailure(['FEATURE_RESTRICTED', 'restrict_vtpm'],
                           self.x.VTPM.create, halted, False)
        self.assertEqual([], self.x.VM.get_VTPMs(halted))

    def test_bios_vm_with_a_vtpm_does_not_start(self):
        vm = self.new_vm()
        self.x.VTPM.create(vm, False)
        self.assertFailure(['NOT_IMPLEMENTED',
                            'Booting BIOS VM with VTPMs attached'],
                           self.x.VM.start, vm, False, False)
        self.assertEqual('Halted', self.x.VM.get_power_state(vm))

    def test_platform_vtpm_makes_one_at_start(self):
        vm = self.uefi_vm({'vtpm': 'true'})
        self.x.VM.start(vm, False, False)
        (vtpm,) = self.x.VM.get_VTPMs(vm)
        self.assertFalse(self.x.VTPM.get_is_unique(vtpm))

    def test_contents_are_base64_and_go_with_the_vm(self):
        vm = self.uefi_vm()
        vtpm = self.x.VTPM.create(vm, True)
        self.assertFailure('INTERNAL_ERROR', self.x.VTPM.set_contents, vtpm,
                           'not base64!')
        self.x.VTPM.set_contents(vtpm, b64(b'marker'))
        self.assertEqual(b64(b'marker'), self.x.VTPM.get_contents(vtpm))
        secrets = len(self.x.secret.get_all())
        self.x.VM.start(vm, False, False)
        self.assertFailure(['VM_BAD_POWER_STATE', vm, 'halted, suspended',
                            'running'], self.x.VTPM.destroy, vtpm)
        self.control().guest_firmware(self.uuid(vm), tpm=b'state')
        self.assertEqual(b64(b'state'), self.x.VTPM.get_contents(vtpm))
        self.x.VM.hard_shutdown(vm)
        self.x.VM.destroy(vm)
        self.assertFailure('HANDLE_INVALID', self.x.VTPM.get_record, vtpm)
        self.assertEqual(secrets - 1, len(self.x.secret.get_all()))

    def test_copies_keep_contents_unless_unique(self):
        for unique in (False, True):
            vm = self.uefi_vm(NVRAM={'EFI-variables-on-boot': 'persist'})
            self.x.VTPM.set_contents(self.x.VTPM.create(vm, unique),
                                     b64(b'bitlocker'))
            for make in (self.x.VM.clone, self.x.VM.snapshot):
                copy = make(vm, 'copy-%s' % unique)
                self.addCleanup(self.remove_vm_in, self.x, copy)
                (vtpm,) = self.x.VM.get_VTPMs(copy)
                self.assertEqual(unique, self.x.VTPM.get_is_unique(vtpm))
                self.assertEqual('' if unique else b64(b'bitlocker'),
                                 self.x.VTPM.get_contents(vtpm), make)
                self.assertEqual({'EFI-variables-on-boot': 'persist'},
                                 self.x.VM.get_NVRAM(copy))


class CrossPoolVtpmTest(MigrationTestCase):
    def test_migrate_send_carries_vtpm_and_nvram(self):
        vm, vdi, vif = self.vm_with_disk('uefi-traveller')
        self.x.VM.set_HVM_boot_params(vm, dict(UEFI))
        self.x.VTPM.set_contents(self.x.VTPM.create(vm, True),
                                 b64(b'bitlocker-keys'))
        uuid = self.x.VM.get_uuid(vm)
        self.x.VM.start_on(vm, self.host(0), False, False)
        self.control().guest_firmware(uuid,
                                      efi_variables={'BootOrder': '0002'})
        secrets = len(self.x.secret.get_all())
        y, host, network, sr, token = self.dest()
        self.x.VM.migrate_send(vm, token, True, {vdi: sr}, {vif: network}, {})
        moved = y.VM.get_by_uuid(uuid)
        (vtpm,) = y.VM.get_VTPMs(moved)
        self.assertTrue(y.VTPM.get_is_unique(vtpm))
        self.assertEqual(b64(b'bitlocker-keys'), y.VTPM.get_contents(vtpm))
        self.assertEqual('0002', varstore(y.VM.get_NVRAM(moved))['BootOrder'])
        # the source's VTPM and its secret are gone
        self.assertEqual([], self.x.VTPM.get_all())
        self.assertEqual(secrets - 1, len(self.x.secret.get_all()))
