"""Guests without PV drivers, by xapi's rules.

xapi_vm_lifecycle.check_op_for_feature: a running HVM guest that has no
PV drivers (no guest agent reporting a driver version) can do only what
its agent says it can, so clean shutdown and reboot, suspend and
migration are refused with VM_LACKS_FEATURE and left out of
allowed_operations (migration passes when forced).  xapi_vif_helpers and
xapi_vbd_helpers: its VIFs and VBDs cannot be hot-plugged or unplugged
(VM_MISSING_PV_DRIVERS).  A guest started in xapisim has PV drivers
unless the control interface says otherwise.
"""

from tests.xapisim.base import SimTestCase

NULL = 'OpaqueRef:NULL'
GUEST_OPERATIONS = ('clean_shutdown', 'clean_reboot', 'suspend',
                    'pool_migrate', 'migrate_send')


class PvDriversCase(SimTestCase):
    hosts = 2
    sim_options = {'guest_delay': 0.01}

    def host(self, index):
        return self.x.host.get_by_uuid(
            self.world['pools'][0]['hosts'][index]['uuid'])

    def started(self, pv_drivers=True, pv=False, vcpus=1):
        """A VM with a disk and a VIF, started on host 0."""
        extra = {'HVM_boot_policy': '', 'domain_type': 'pv'} if pv else {}
        vm = self.new_vm(name='guest', vcpus=vcpus, **extra)
        self.new_vbd(vm, self.new_vdi())
        self.new_vif(vm)
        if not pv_drivers:
            self.control().guest(self.x.VM.get_uuid(vm), pv_drivers=False)
        self.x.VM.start_on(vm, self.host(0), False, False)
        return vm


class LifecycleWithoutDriversTest(PvDriversCase):

    def assertGuestAnswers(self, vm):
        """Every guest operation is allowed, and clean ones succeed."""
        allowed = self.x.VM.get_allowed_operations(vm)
        for op in GUEST_OPERATIONS:
            self.assertIn(op, allowed)
        self.x.VM.clean_reboot(vm)
        self.x.VM.clean_shutdown(vm)
        self.assertEqual('Halted', self.x.VM.get_power_state(vm))

    def test_a_started_guest_has_pv_drivers_by_default(self):
        vm = self.started()
        gm = self.x.VM.get_guest_metrics(vm)
        self.assertNotEqual(NULL, gm)
        record = self.x.VM_guest_metrics.get_record(gm)
        self.assertTrue(record['PV_drivers_detected'])
        self.assertEqual('9', record['PV_drivers_version']['major'])
        self.assertGuestAnswers(vm)

    def test_allowed_operations_leave_out_what_needs_the_guest(self):
        vm = self.started(pv_drivers=False)
        self.assertEqual(NULL, self.x.VM.get_guest_metrics(vm))
        allowed = self.x.VM.get_allowed_operations(vm)
        for op in GUEST_OPERATIONS:
            self.assertNotIn(op, allowed)
        for op in ('hard_shutdown', 'hard_reboot', 'pause', 'snapshot'):
            self.assertIn(op, allowed)

    def test_clean_shutdown_and_reboot_are_refused(self):
        vm = self.started(pv_drivers=False)
        domid = self.x.VM.get_domid(vm)
        for fn in (self.x.VM.clean_shutdown, self.x.VM.clean_reboot,
                   self.x.VM.suspend):
            self.assertFailure(['VM_LACKS_FEATURE', vm], fn, vm)
        self.assertFailure(['VM_LACKS_FEATURE', vm],
                           self.x.VM.assert_operation_valid, vm,
                           'clean_shutdown')
        record = self.x.VM.get_record(vm)
        self.assertEqual('Running', record['power_state'])
        self.assertEqual(domid, record['domid'])
        self.assertEqual({}, record['current_operations'])
        # what a guest without drivers can do
        self.x.VM.hard_reboot(vm)
        self.assertNotEqual(domid, self.x.VM.get_domid(vm))
        self.x.VM.hard_shutdown(vm)
        self.assertEqual('Halted', self.x.VM.get_power_state(vm))

    def test_an_async_clean_shutdown_fails_its_task(self):
        vm = self.started(pv_drivers=False)
        record = self.wait_task(self.x.Async.VM.clean_shutdown(vm))
        self.assertEqual('failure', record['status'])
        self.assertEqual(['VM_LACKS_FEATURE', vm], record['error_info'])

    def test_shutdown_falls_back_to_a_hard_shutdown(self):
        vm = self.started(pv_drivers=False)
        self.x.VM.shutdown(vm)
        self.assertEqual('Halted', self.x.VM.get_power_state(vm))

    def test_migration_needs_force(self):
        vm = self.started(pv_drivers=False)
        self.assertFailure(['VM_LACKS_FEATURE', vm], self.x.VM.pool_migrate,
                           vm, self.host(1), {})
        self.assertEqual(self.host(0), self.x.VM.get_resident_on(vm))
        self.x.VM.pool_migrate(vm, self.host(1), {'force': 'true'})
        self.assertEqual(self.host(1), self.x.VM.get_resident_on(vm))

    def test_a_pv_guest_needs_no_drivers(self):
        vm = self.started(pv_drivers=False, pv=True)
        metrics = self.x.VM.get_metrics(vm)
        self.assertFalse(self.x.VM_metrics.get_hvm(metrics))
        self.assertEqual('pv',
                         self.x.VM_metrics.get_current_domain_type(metrics))
        self.assertGuestAnswers(vm)

    def test_live_vcpu_changes_need_vcpu_hotplug(self):
        vm = self.started(pv_drivers=False, vcpus=1)
        self.assertNotIn('changing_VCPUs_live',
                         self.x.VM.get_allowed_operations(vm))
        self.assertFailure(['VM_LACKS_FEATURE', vm],
                           self.x.VM.set_VCPUs_number_live, vm, '1')
        with_tools = self.started()
        self.x.VM.set_VCPUs_number_live(with_tools, '1')

    def test_drivers_follow_the_guest_from_boot_to_boot(self):
        vm = self.new_vm(name='late-tools')
        self.control().guest(self.x.VM.get_uuid(vm), pv_drivers=False)
        self.x.VM.start(vm, False, False)
        self.assertNotIn('clean_shutdown', self.x.VM.get_allowed_operations(vm))
        # the tools get installed: after a reboot the agent reports them
        self.control().guest(self.x.VM.get_uuid(vm), pv_drivers=True)
        self.x.VM.hard_reboot(vm)
        self.assertIn('clean_shutdown', self.x.VM.get_allowed_operations(vm))
        self.x.VM.clean_shutdown(vm)


class HotplugWithoutDriversTest(PvDriversCase):

    def test_vifs_cannot_be_plugged_or_unplugged(self):
        vm = self.started(pv_drivers=False)
        [boot_vif] = self.x.VM.get_VIFs(vm)
        self.assertFailure(['VM_MISSING_PV_DRIVERS', vm],
                           self.x.VIF.unplug, boot_vif)
        self.assertFailure(['VM_MISSING_PV_DRIVERS', vm],
                           self.x.VIF.unplug_force, boot_vif)
        hot = self.new_vif(vm, device='1')
        self.assertFailure(['VM_MISSING_PV_DRIVERS', vm], self.x.VIF.plug, hot)
        self.assertFalse(self.x.VIF.get_currently_attached(hot))
        self.assertTrue(self.x.VIF.get_currently_attached(boot_vif))
        # the checks before it still come first
        self.assertFailure(['DEVICE_ALREADY_ATTACHED', boot_vif],
                           self.x.VIF.plug, boot_vif)
        self.assertFailure(['DEVICE_ALREADY_DETACHED', hot],
                           self.x.VIF.unplug, hot)

    def test_vbds_cannot_be_plugged_or_unplugged(self):
        vm = self.started(pv_drivers=False)
        [boot_vbd] = self.x.VM.get_VBDs(vm)
        for fn in (self.x.VBD.unplug, self.x.VBD.unplug_force):
            self.assertFailure(['VM_MISSING_PV_DRIVERS', vm], fn, boot_vbd)
        hot = self.new_vbd(vm, self.new_vdi(), userdevice='1')
        self.assertFailure(['VM_MISSING_PV_DRIVERS', vm], self.x.VBD.plug, hot)
        self.assertFalse(self.x.VBD.get_currently_attached(hot))
        self.assertTrue(self.x.VBD.get_currently_attached(boot_vbd))

    def test_with_drivers_devices_hot_plug(self):
        vm = self.started()
        vif = self.new_vif(vm, device='1')
        self.x.VIF.plug(vif)
        self.x.VIF.unplug(vif)
        vbd = self.new_vbd(vm, self.new_vdi(), userdevice='1')
        self.x.VBD.plug(vbd)
        self.x.VBD.unplug(vbd)
        self.assertFalse(self.x.VBD.get_currently_attached(vbd))

    def test_a_pv_guest_hot_plugs_without_drivers(self):
        vm = self.started(pv_drivers=False, pv=True)
        vif = self.new_vif(vm, device='1')
        self.x.VIF.plug(vif)
        self.assertTrue(self.x.VIF.get_currently_attached(vif))
        vbd = self.new_vbd(vm, self.new_vdi(), userdevice='1')
        self.x.VBD.plug(vbd)
        self.assertTrue(self.x.VBD.get_currently_attached(vbd))

    def test_hvm_cd_drives_are_not_hot_plugged(self):
        vm = self.started()
        cd = self.new_vbd(vm, NULL, userdevice='3', type='CD', mode='RO',
                          empty=True, bootable=False)
        self.assertFailure(['OPERATION_NOT_ALLOWED', 'HVM CDROMs cannot be '
                            'hotplugged/unplugged, only inserted or ejected'],
                           self.x.VBD.plug, cd)
