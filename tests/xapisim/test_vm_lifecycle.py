"""The VM lifecycle follows xapi's rules: power states, devices, operations."""

import time

from tests.xapisim.base import MIB, SimTestCase
from tests.xapisim.test_storage import VdiBytes, pattern

NULL = 'OpaqueRef:NULL'
EPOCH = '19700101T00:00:00Z'


def wait_for(fn, timeout=60):
    deadline = time.time() + timeout
    while True:
        value = fn()
        if value or time.time() > deadline:
            return value
        time.sleep(0.02)


class LifecycleCase(SimTestCase):
    def vm_with_devices(self, name='test-vm', memory_mib=256, vcpus=2):
        vm = self.new_vm(name=name, memory_mib=memory_mib, vcpus=vcpus)
        vdi = self.new_vdi()
        vbd = self.new_vbd(vm, vdi)
        vif = self.new_vif(vm)
        return vm, vbd, vif

    def running_vm(self, **kwargs):
        vm, vbd, vif = self.vm_with_devices(**kwargs)
        self.x.VM.start(vm, False, False)
        return vm

    def assertHalted(self, vm):
        record = self.x.VM.get_record(vm)
        self.assertEqual('Halted', record['power_state'])
        self.assertEqual('-1', record['domid'])
        self.assertEqual(NULL, record['resident_on'])
        self.assertEqual([], record['consoles'])
        for vbd in record['VBDs']:
            self.assertFalse(self.x.VBD.get_currently_attached(vbd))
        for vif in record['VIFs']:
            self.assertFalse(self.x.VIF.get_currently_attached(vif))

    def bad_power(self, vm, expected, actual, fn, *args):
        self.assertFailure(['VM_BAD_POWER_STATE', vm, expected, actual],
                           fn, vm, *args)


class StartAndStopTests(LifecycleCase):
    hosts = 2

    def test_start_on_a_chosen_host(self):
        vm, vbd, vif = self.vm_with_devices(memory_mib=256, vcpus=2)
        hosts = self.x.host.get_all()
        target = [h for h in hosts
                  if h != self.x.pool.get_master(self.pool_ref())][0]
        self.x.VM.start_on(vm, target, False, False)
        record = self.x.VM.get_record(vm)
        self.assertEqual('Running', record['power_state'])
        self.assertEqual(target, record['resident_on'])
        self.assertGreater(int(record['domid']), 0)
        self.assertIn(vm, self.x.host.get_resident_VMs(target))
        metrics = self.x.VM_metrics.get_record(record['metrics'])
        self.assertNotEqual(EPOCH, str(metrics['start_time']))
        self.assertEqual('2', metrics['VCPUs_number'])
        self.assertEqual(str(256 * MIB), metrics['memory_actual'])
        guest = self.x.VM_guest_metrics.get_record(record['guest_metrics'])
        self.assertTrue(guest['PV_drivers_detected'])
        self.assertIn('major', guest['PV_drivers_version'])
        self.assertTrue(self.x.VBD.get_currently_attached(vbd))
        self.assertEqual('xvda', self.x.VBD.get_device(vbd))
        self.assertTrue(self.x.VIF.get_currently_attached(vif))
        consoles = [self.x.console.get_record(c) for c in record['consoles']]
        self.assertEqual({'rfb', 'vt100'}, {c['protocol'] for c in consoles})
        address = self.x.host.get_address(target)
        for console in consoles:
            self.assertEqual(vm, console['VM'])
            self.assertIn(address, console['location'])
            self.assertIn(console['uuid'], console['location'])

    def test_start_places_the_vm_on_a_host(self):
        vm = self.running_vm()
        self.assertIn(self.x.VM.get_resident_on(vm), self.x.host.get_all())
        self.bad_power(vm, 'halted', 'running', self.x.VM.start, False, False)

    def test_start_paused(self):
        vm, vbd, vif = self.vm_with_devices()
        self.x.VM.start(vm, True, False)
        self.assertEqual('Paused', self.x.VM.get_power_state(vm))
        self.assertGreater(int(self.x.VM.get_domid(vm)), 0)
        self.x.VM.unpause(vm)
        self.assertEqual('Running', self.x.VM.get_power_state(vm))

    def test_clean_shutdown(self):
        vm = self.running_vm()
        consoles = self.x.VM.get_consoles(vm)
        self.x.VM.clean_shutdown(vm)
        self.assertHalted(vm)
        for console in consoles:
            self.assertFailure(['HANDLE_INVALID', 'console', console],
                               self.x.console.get_record, console)
        self.bad_power(vm, 'running', 'halted', self.x.VM.clean_shutdown)

    def test_hard_shutdown_of_a_paused_vm(self):
        vm = self.running_vm()
        self.x.VM.pause(vm)
        self.x.VM.hard_shutdown(vm)
        self.assertHalted(vm)
        self.bad_power(vm, 'paused, suspended, running', 'halted',
                       self.x.VM.hard_shutdown)

    def test_reboots_give_a_new_domain(self):
        vm = self.running_vm()
        host = self.x.VM.get_resident_on(vm)
        domids = {self.x.VM.get_domid(vm)}
        for reboot in (self.x.VM.clean_reboot, self.x.VM.hard_reboot):
            reboot(vm)
            self.assertEqual('Running', self.x.VM.get_power_state(vm))
            self.assertEqual(host, self.x.VM.get_resident_on(vm))
            domids.add(self.x.VM.get_domid(vm))
        self.assertEqual(3, len(domids))
        self.x.VM.hard_shutdown(vm)
        self.bad_power(vm, 'running', 'halted', self.x.VM.clean_reboot)
        self.bad_power(vm, 'paused, running', 'halted', self.x.VM.hard_reboot)

    def test_pause_and_unpause(self):
        vm = self.running_vm()
        domid = self.x.VM.get_domid(vm)
        self.x.VM.pause(vm)
        self.assertEqual('Paused', self.x.VM.get_power_state(vm))
        self.assertEqual(domid, self.x.VM.get_domid(vm))
        self.bad_power(vm, 'running', 'paused', self.x.VM.pause)
        self.bad_power(vm, 'running', 'paused', self.x.VM.clean_shutdown)
        self.x.VM.unpause(vm)
        self.assertEqual('Running', self.x.VM.get_power_state(vm))
        self.assertEqual(domid, self.x.VM.get_domid(vm))
        self.bad_power(vm, 'paused', 'running', self.x.VM.unpause)

    def test_suspend_and_resume(self):
        vm = self.running_vm()
        suspend_sr = self.x.pool.get_suspend_image_SR(self.pool_ref())
        before = set(self.x.SR.get_VDIs(suspend_sr))
        self.x.VM.suspend(vm)
        record = self.x.VM.get_record(vm)
        self.assertEqual('Suspended', record['power_state'])
        self.assertEqual('-1', record['domid'])
        self.assertEqual(NULL, record['resident_on'])
        image = record['suspend_VDI']
        self.assertEqual({image}, set(self.x.SR.get_VDIs(suspend_sr)) - before)
        self.assertEqual('suspend', self.x.VDI.get_type(image))
        self.bad_power(vm, 'halted', 'suspended', self.x.VM.start,
                       False, False)
        self.bad_power(vm, 'running', 'suspended', self.x.VM.suspend)
        self.x.VM.resume(vm, False, False)
        record = self.x.VM.get_record(vm)
        self.assertEqual('Running', record['power_state'])
        self.assertGreater(int(record['domid']), 0)
        self.assertEqual(NULL, record['suspend_VDI'])
        self.assertFailure(['HANDLE_INVALID', 'VDI', image],
                           self.x.VDI.get_record, image)
        self.assertEqual(before, set(self.x.SR.get_VDIs(suspend_sr)))
        self.bad_power(vm, 'suspended', 'running', self.x.VM.resume,
                       False, False)

    def test_hard_shutdown_of_a_suspended_vm_drops_its_image(self):
        vm = self.running_vm()
        self.x.VM.suspend(vm)
        image = self.x.VM.get_suspend_VDI(vm)
        self.x.VM.hard_shutdown(vm)
        self.assertHalted(vm)
        self.assertEqual(NULL, self.x.VM.get_suspend_VDI(vm))
        self.assertFailure(['HANDLE_INVALID', 'VDI', image],
                           self.x.VDI.get_record, image)

    def test_power_state_reset(self):
        vm = self.running_vm()
        master = self.x.pool.get_master(self.pool_ref())
        other = [h for h in self.x.host.get_all() if h != master][0]
        self.x.VM.hard_shutdown(vm)
        self.x.VM.start_on(vm, master, False, False)
        # xapi refuses while the domain exists or its host is alive
        self.assertFailure(['DOMAIN_EXISTS', vm],
                           self.x.VM.power_state_reset, vm)
        self.x.VM.hard_shutdown(vm)
        self.x.VM.start_on(vm, other, False, False)
        self.assertFailure(['HOST_IS_LIVE', other],
                           self.x.VM.power_state_reset, vm)
        self.assertEqual('Running', self.x.VM.get_power_state(vm))
        self.x.VM.suspend(vm)
        self.x.VM.power_state_reset(vm)
        self.assertHalted(vm)
        self.x.VM.power_state_reset(vm)
        self.assertHalted(vm)

    def test_allowed_operations_follow_the_power_state(self):
        vm, vbd, vif = self.vm_with_devices()

        def allowed():
            return set(self.x.VM.get_allowed_operations(vm))
        halted = allowed()
        self.assertTrue({'start', 'start_on', 'clone', 'copy', 'destroy',
                         'snapshot', 'export'} <= halted, halted)
        self.assertFalse({'clean_shutdown', 'hard_shutdown', 'pause',
                          'unpause', 'suspend', 'resume'} & halted, halted)
        self.x.VM.start(vm, False, False)
        running = allowed()
        self.assertTrue({'clean_shutdown', 'hard_shutdown', 'clean_reboot',
                         'hard_reboot', 'pause', 'suspend', 'snapshot',
                         'pool_migrate'} <= running, running)
        self.assertFalse({'start', 'destroy', 'clone', 'unpause',
                          'resume'} & running, running)
        self.x.VM.pause(vm)
        paused = allowed()
        self.assertTrue({'unpause', 'hard_shutdown', 'hard_reboot'} <= paused)
        self.assertFalse({'pause', 'clean_shutdown', 'start'} & paused)
        self.x.VM.unpause(vm)
        self.x.VM.suspend(vm)
        suspended = allowed()
        self.assertTrue({'resume', 'resume_on', 'hard_shutdown',
                         'destroy'} <= suspended, suspended)
        self.assertFalse({'start', 'clean_shutdown', 'unpause'} & suspended)
        self.x.VM.hard_shutdown(vm)
        self.assertEqual(halted, allowed())


class OperationRulesTests(LifecycleCase):

    def stuck_clean_shutdown(self, vm):
        """An Async.VM.clean_shutdown that the guest ignores."""
        self.control().guest(self.x.VM.get_uuid(vm), clean_shutdown='ignore')
        task = self.x.Async.VM.clean_shutdown(vm)
        self.addCleanup(self._cancel_task, task)
        self.assertTrue(wait_for(
            lambda: self.x.VM.get_current_operations(vm)))
        return task

    def _cancel_task(self, task):
        x = self.login().xenapi
        if x.task.get_status(task) == 'pending':
            x.task.cancel(task)

    def test_a_long_operation_blocks_others(self):
        vm = self.running_vm()
        task = self.stuck_clean_shutdown(vm)
        self.assertEqual({task: 'clean_shutdown'},
                         self.x.VM.get_current_operations(vm))
        busy = ['OTHER_OPERATION_IN_PROGRESS', 'VM', vm, 'clean_shutdown',
                task]
        for fn in (self.x.VM.clean_reboot, self.x.VM.pause,
                   self.x.VM.suspend, self.x.VM.clean_shutdown):
            self.assertFailure(busy, fn, vm)
        # the power state is checked first
        self.bad_power(vm, 'halted', 'running', self.x.VM.start, False, False)
        allowed = self.x.VM.get_allowed_operations(vm)
        self.assertIn('hard_shutdown', allowed)
        self.assertNotIn('clean_reboot', allowed)
        self.assertNotIn('pause', allowed)
        self.assertEqual('pending', self.x.task.get_status(task))
        self.x.task.cancel(task)
        record = self.wait_task(task)
        self.assertEqual('cancelled', record['status'])
        self.assertEqual(['TASK_CANCELLED', task], record['error_info'])
        self.assertEqual({}, self.x.VM.get_current_operations(vm))
        self.assertEqual('Running', self.x.VM.get_power_state(vm))
        self.assertIn('clean_reboot', self.x.VM.get_allowed_operations(vm))

    def test_hard_shutdown_cuts_a_stuck_clean_shutdown_short(self):
        vm = self.running_vm()
        task = self.stuck_clean_shutdown(vm)
        self.x.VM.hard_shutdown(vm)
        self.assertHalted(vm)
        record = self.wait_task(task)
        self.assertEqual('cancelled', record['status'])
        self.assertEqual({}, self.x.VM.get_current_operations(vm))

    def test_templates_do_not_start(self):
        vm = self.new_vm(is_a_template=True)
        self.assertFailure(['VM_IS_TEMPLATE', vm, 'start'],
                           self.x.VM.start, vm, False, False)
        allowed = self.x.VM.get_allowed_operations(vm)
        self.assertIn('clone', allowed)
        self.assertNotIn('start', allowed)
        clone = self.x.VM.clone(vm, 'from template')
        self.addCleanup(self._remove_vm, clone)
        self.assertTrue(self.x.VM.get_is_a_template(clone))

    def test_blocked_operations(self):
        vm = self.new_vm()
        self.x.VM.set_blocked_operations(vm, {'start': 'nova says no'})
        self.assertFailure(['OPERATION_BLOCKED', vm, 'nova says no'],
                           self.x.VM.start, vm, False, False)
        # blocking comes before the power state check
        self.x.VM.add_to_blocked_operations(vm, 'clean_shutdown', 'later')
        self.assertFailure(['OPERATION_BLOCKED', vm, 'later'],
                           self.x.VM.clean_shutdown, vm)
        self.x.VM.remove_from_blocked_operations(vm, 'start')
        self.x.VM.start(vm, False, False)
        self.assertEqual('Running', self.x.VM.get_power_state(vm))

    def test_xenstore_data(self):
        vm = self.new_vm()
        self.x.VM.add_to_xenstore_data(vm, 'vm-data/hostname', 'guest1')
        self.x.VM.add_to_xenstore_data(vm, 'vm-data/user', 'alice')
        self.assertFailure(['MAP_DUPLICATE_KEY', 'VM', 'xenstore_data', vm,
                            'vm-data/user'],
                           self.x.VM.add_to_xenstore_data, vm,
                           'vm-data/user', 'bob')
        self.x.VM.remove_from_xenstore_data(vm, 'vm-data/user')
        self.x.VM.remove_from_xenstore_data(vm, 'vm-data/absent')
        self.assertEqual({'vm-data/hostname': 'guest1'},
                         self.x.VM.get_xenstore_data(vm))
        self.x.VM.start(vm, False, False)
        self.x.VM.add_to_xenstore_data(vm, 'vm-data/live', 'yes')
        self.assertEqual('yes', self.x.VM.get_xenstore_data(vm)['vm-data/live'])
        self.x.VM.set_xenstore_data(vm, {})
        self.assertEqual({}, self.x.VM.get_xenstore_data(vm))

    def test_destroy_keeps_the_disks(self):
        vm, vbd, vif = self.vm_with_devices()
        vdi = self.x.VBD.get_VDI(vbd)
        metrics = self.x.VM.get_metrics(vm)
        vbd_metrics = self.x.VBD.get_metrics(vbd)
        self.x.VM.start(vm, False, False)
        self.bad_power(vm, 'halted, suspended', 'running', self.x.VM.destroy)
        self.x.VM.hard_shutdown(vm)
        self.x.VM.destroy(vm)
        for cls, ref in (('VM', vm), ('VBD', vbd), ('VIF', vif),
                         ('VM_metrics', metrics),
                         ('VBD_metrics', vbd_metrics)):
            self.assertFailure(['HANDLE_INVALID', cls, ref],
                               getattr(self.x, cls).get_record, ref)
        self.assertEqual([], self.x.VDI.get_VBDs(vdi))
        self.assertNotIn(vif, self.x.network.get_VIFs(self.pool_network()))

    def test_guest_shuts_down_reboots_and_crashes(self):
        vm = self.running_vm()
        uuid = self.x.VM.get_uuid(vm)
        control = self.control()
        domid = self.x.VM.get_domid(vm)
        control.guest_action(uuid, 'reboot')
        self.assertEqual('Running', self.x.VM.get_power_state(vm))
        self.assertNotEqual(domid, self.x.VM.get_domid(vm))
        control.guest_action(uuid, 'shutdown')
        self.assertHalted(vm)
        self.x.VM.set_actions_after_crash(vm, 'restart')
        self.x.VM.start(vm, False, False)
        domid = self.x.VM.get_domid(vm)
        control.guest_action(uuid, 'crash')
        self.assertEqual('Running', self.x.VM.get_power_state(vm))
        self.assertNotEqual(domid, self.x.VM.get_domid(vm))
        self.x.VM.set_actions_after_crash(vm, 'destroy')
        control.guest_action(uuid, 'crash')
        self.assertHalted(vm)


class HostMemoryTests(LifecycleCase):
    sim_options = {'vm_memory_mib': 1024}

    def host(self):
        return self.x.host.get_all()[0]

    def free(self):
        return int(self.x.host.compute_free_memory(self.host()))

    def test_a_running_vm_uses_its_memory(self):
        before = self.free()
        vm = self.new_vm(memory_mib=256)
        self.x.VM.start_on(vm, self.host(), False, False)
        used = before - self.free()
        self.assertGreaterEqual(used, 256 * MIB)
        self.assertLess(used, 256 * MIB * 1.1)
        self.x.VM.hard_shutdown(vm)
        self.assertEqual(before, self.free())

    def test_a_vm_too_big_for_the_host(self):
        available = self.free()
        self.assertLessEqual(available, 1024 * MIB)
        vm = self.new_vm(memory_mib=2048)
        details = self.assertFailure('HOST_NOT_ENOUGH_FREE_MEMORY',
                                     self.x.VM.start_on, vm, self.host(),
                                     False, False)
        self.assertGreaterEqual(int(details[1]), 2048 * MIB)
        self.assertEqual(str(available), details[2])
        self.assertEqual('Halted', self.x.VM.get_power_state(vm))
        self.assertEqual(available, self.free())
        self.assertFailure(details, self.x.VM.assert_can_boot_here, vm,
                           self.host())


class CopyTests(VdiBytes, LifecycleCase):

    def vm_with_bytes(self, data):
        vm, vbd, vif = self.vm_with_devices()
        vdi = self.x.VBD.get_VDI(vbd)
        self.write_vdi(vdi, data)
        return vm, vdi

    def disk_of(self, vm):
        vbds = self.x.VM.get_VBDs(vm)
        self.assertEqual(1, len(vbds))
        vdi = self.x.VBD.get_VDI(vbds[0])
        self.destroy_later('VDI', vdi)
        return vdi

    def assertOwnCopy(self, new, vdi, data):
        disk = self.disk_of(new)
        self.assertNotEqual(vdi, disk)
        self.assertEqual(data, self.read_vdi(disk, len(data)))
        self.assertEqual('Halted', self.x.VM.get_power_state(new))
        self.assertEqual(1, len(self.x.VM.get_VIFs(new)))
        return disk

    def test_clone(self):
        data = pattern('vm-clone')
        vm, vdi = self.vm_with_bytes(data)
        clone = self.x.VM.clone(vm, 'the clone')
        self.addCleanup(self._remove_vm, clone)
        self.assertEqual('the clone', self.x.VM.get_name_label(clone))
        disk = self.assertOwnCopy(clone, vdi, data)
        self.write_vdi(disk, pattern('changed'))
        self.assertEqual(data, self.read_vdi(vdi, len(data)))
        self.x.VM.start(vm, False, False)
        self.bad_power(vm, 'halted', 'running', self.x.VM.clone, 'again')

    def test_snapshot_of_a_running_vm(self):
        data = pattern('vm-snap')
        vm, vdi = self.vm_with_bytes(data)
        self.x.VM.start(vm, False, False)
        snap = self.x.VM.snapshot(vm, 'the snapshot', [])
        self.addCleanup(self._remove_vm, snap)
        record = self.x.VM.get_record(snap)
        self.assertTrue(record['is_a_snapshot'])
        self.assertTrue(record['is_a_template'])
        self.assertEqual(vm, record['snapshot_of'])
        self.assertIn(snap, self.x.VM.get_snapshots(vm))
        disk = self.assertOwnCopy(snap, vdi, data)
        self.assertEqual(vdi, self.x.VDI.get_snapshot_of(disk))
        self.assertEqual('Running', self.x.VM.get_power_state(vm))
        self.assertFailure(['VM_IS_SNAPSHOT', snap, 'start'],
                           self.x.VM.start, snap, False, False)

    def test_copy_to_another_sr(self):
        data = pattern('vm-copy')
        vm, vdi = self.vm_with_bytes(data)
        local = [sr for sr, r in self.x.SR.get_all_records().items()
                 if r['type'] == 'ext'][0]
        copy = self.x.VM.copy(vm, 'the copy', local)
        self.addCleanup(self._remove_vm, copy)
        disk = self.assertOwnCopy(copy, vdi, data)
        self.assertEqual(local, self.x.VDI.get_SR(disk))

    def test_copy_within_the_same_sr_is_a_full_copy(self):
        data = pattern('vm-copy-same')
        vm, vdi = self.vm_with_bytes(data)
        copy = self.x.VM.copy(vm, 'same sr', NULL)
        self.addCleanup(self._remove_vm, copy)
        disk = self.assertOwnCopy(copy, vdi, data)
        self.assertEqual(self.x.VDI.get_SR(vdi), self.x.VDI.get_SR(disk))
        self.assertNotIn('vhd-parent', self.x.VDI.get_sm_config(disk))

    def test_copy_to_an_iso_sr_is_refused(self):
        vm, vbd, vif = self.vm_with_devices()
        iso = [sr for sr, r in self.x.SR.get_all_records().items()
               if r['content_type'] == 'iso'][0]
        self.assertFailure('OPERATION_NOT_ALLOWED',
                           self.x.VM.copy, vm, 'iso copy', iso)
