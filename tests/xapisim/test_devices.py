"""PCI passthrough and vGPU as xapi has them (xapisim ``--devices``).

Sources (github xapi-project/xen-api e2ee48d6883e): ocaml/xapi/xapi_pci.ml,
xapi_pci_helpers.ml, pciops.ml, xapi_host.ml (assert_bacon_mode),
xapi_vgpu.ml, vgpuops.ml, xapi_pgpu_helpers.ml, xapi_gpu_group.ml,
xapi_vm_lifecycle.ml (check_vgpu, VM_HAS_PCI_ATTACHED); the xenopsd error
of a PCI it cannot assign: ocaml/xenopsd/xc/device.ml Cannot_add.
"""

from tests import devices_world
from tests.xapisim.base import SimTestCase


class DevicesBase(SimTestCase):
    hosts = 2
    sim_options = {'devices': devices_world.SPEC}

    def host(self, name):
        return self.x.host.get_by_name_label(name)[0]

    def pci(self, host_name, pci_id):
        host = self.host(host_name)
        for pci in self.x.host.get_PCIs(host):
            if self.x.PCI.get_pci_id(pci) == pci_id:
                return pci
        raise AssertionError('no PCI %s on %s' % (pci_id, host_name))

    def vgpu_type(self, model):
        return [t for t in self.x.VGPU_type.get_all()
                if self.x.VGPU_type.get_model_name(t) == model][0]

    def group(self):
        return self.x.GPU_group.get_by_name_label('Tesla T4')[0]

    def pgpu_of(self, host_name, pci_id):
        pci = self.pci(host_name, pci_id)
        return [p for p in self.x.PGPU.get_all()
                if self.x.PGPU.get_PCI(p) == pci][0]

    def vm_with_pci(self, *addresses):
        return self.new_vm(other_config={
            'pci': ','.join('0/' + a for a in addresses)})


class PciInventoryTest(DevicesBase):
    def test_xapi_lists_storage_network_and_display_devices_only(self):
        host = self.host('xcp-ng-1-1')
        listed = {self.x.PCI.get_pci_id(p): self.x.PCI.get_record(p)
                  for p in self.x.host.get_PCIs(host)}
        self.assertEqual({'0000:00:1f.2', '0000:04:00.0', '0000:04:10.0',
                          '0000:06:00.0', '0000:81:00.0', '0000:82:00.0'},
                         set(listed))     # the USB controller is not there
        nic = listed['0000:04:00.0']
        self.assertEqual(('0200', '8086', '10fb', 'Ethernet controller',
                          host),
                         (nic['class_id'], nic['vendor_id'],
                          nic['device_id'], nic['class_name'], nic['host']))
        self.assertEqual([self.pci('xcp-ng-1-1', '0000:04:10.0')],
                         nic['dependencies'])
        self.assertEqual(2, len(self.x.host.get_PCIs(self.host('xcp-ng-1-2'))))

    def test_dom0_access_changes_only_at_a_reboot(self):
        nic = self.pci('xcp-ng-1-1', '0000:06:00.0')
        host = self.host('xcp-ng-1-1')
        self.assertEqual('enabled', self.x.PCI.get_dom0_access_status(nic))
        self.assertEqual('disable_on_reboot',
                         self.x.PCI.disable_dom0_access(nic))
        self.assertEqual('disable_on_reboot',
                         self.x.PCI.get_dom0_access_status(nic))
        # not yet assignable: the running dom0 still drives it
        vm = self.vm_with_pci('0000:06:00.0')
        details = self.assertFailure('INTERNAL_ERROR', self.x.VM.start_on,
                                     vm, host, False, False)
        self.assertIn('Device.PCI.Cannot_add(0000:06:00.0', details[1])
        self.assertEqual('Halted', self.x.VM.get_power_state(vm))
        # a reboot needs the host disabled and free of guests
        self.assertFailure(['HOST_NOT_DISABLED'], self.x.host.reboot, host)
        busy = self.new_vm('busy')
        self.x.VM.start_on(busy, host, False, False)
        self.x.host.disable(host)
        self.addCleanup(self.x.host.enable, host)
        self.assertFailure(['HOST_IN_USE', host, 'vm', busy],
                           self.x.host.reboot, host)
        self.x.VM.hard_shutdown(busy)
        self.x.host.reboot(host)
        self.assertEqual('disabled', self.x.PCI.get_dom0_access_status(nic))
        self.assertTrue(self.x.host.get_enabled(host))
        self.x.VM.start_on(vm, host, False, False)
        self.assertEqual([nic], self.x.VM.get_attached_PCIs(vm))
        self.x.VM.hard_shutdown(vm)
        # and back
        self.assertEqual('enable_on_reboot',
                         self.x.PCI.enable_dom0_access(nic))
        self.x.host.disable(host)
        self.x.host.reboot(host)
        self.assertEqual('enabled', self.x.PCI.get_dom0_access_status(nic))

    def test_the_boot_device_stays_with_dom0(self):
        sata = self.pci('xcp-ng-1-1', '0000:00:1f.2')
        details = self.assertFailure('BOOT_DEVICE_PASSTHROUGH_DISALLOWED',
                                     self.x.PCI.disable_dom0_access, sata)
        self.assertIn('0000:00:1f.2', details[1])
        self.assertEqual('enabled', self.x.PCI.get_dom0_access_status(sata))


class PciPassthroughTest(DevicesBase):
    def test_a_started_vm_has_its_devices_attached_until_it_stops(self):
        host = self.host('xcp-ng-1-1')
        vm = self.vm_with_pci('0000:04:00.0', '0000:04:10.0')
        self.x.VM.start_on(vm, host, False, False)
        self.assertEqual({self.pci('xcp-ng-1-1', '0000:04:00.0'),
                          self.pci('xcp-ng-1-1', '0000:04:10.0')},
                         set(self.x.VM.get_attached_PCIs(vm)))
        self.x.VM.hard_shutdown(vm)
        self.assertEqual([], self.x.VM.get_attached_PCIs(vm))

    def test_a_device_in_use_is_refused_and_the_vm_stays_halted(self):
        host = self.host('xcp-ng-1-1')
        first = self.vm_with_pci('0000:04:00.0')
        self.x.VM.start_on(first, host, False, False)
        second = self.vm_with_pci('0000:04:00.0')
        details = self.assertFailure('INTERNAL_ERROR', self.x.VM.start_on,
                                     second, host, False, False)
        self.assertIn('Cannot_add(0000:04:00.0', details[1])
        self.assertEqual(('Halted', [], 'OpaqueRef:NULL'),
                         (self.x.VM.get_power_state(second),
                          self.x.VM.get_attached_PCIs(second),
                          self.x.VM.get_resident_on(second)))
        self.x.VM.hard_shutdown(first)
        self.x.VM.start_on(second, host, False, False)
        self.assertEqual('Running', self.x.VM.get_power_state(second))

    def test_a_device_xapi_does_not_list_is_assigned_but_not_recorded(self):
        # the USB controller (class 0c): xenopsd assigns it like any
        # pciback function; xapi has no PCI object to record it on
        # (xapi_xenops.ml update_pci finds none among host.PCIs)
        host = self.host('xcp-ng-1-1')
        first = self.vm_with_pci('0000:07:00.0')
        self.x.VM.start_on(first, host, False, False)
        self.assertEqual(('Running', []),
                         (self.x.VM.get_power_state(first),
                          self.x.VM.get_attached_PCIs(first)))
        second = self.vm_with_pci('0000:07:00.0')
        details = self.assertFailure('INTERNAL_ERROR', self.x.VM.start_on,
                                     second, host, False, False)
        self.assertIn('Cannot_add(0000:07:00.0', details[1])
        self.x.VM.hard_shutdown(first)
        self.x.VM.start_on(second, host, False, False)
        self.assertEqual('Running', self.x.VM.get_power_state(second))
        self.x.VM.hard_shutdown(second)

    def test_a_device_of_another_host_is_refused(self):
        vm = self.vm_with_pci('0000:82:00.0')
        details = self.assertFailure('INTERNAL_ERROR', self.x.VM.start_on,
                                     vm, self.host('xcp-ng-1-2'), False,
                                     False)
        self.assertIn('Cannot_add(0000:82:00.0', details[1])
        self.assertEqual('Halted', self.x.VM.get_power_state(vm))

    def test_malformed_entries_are_ignored_as_xapi_does(self):
        vm = self.new_vm(other_config={'pci': 'junk,0/0000:04:10.0,4:10.0'})
        self.x.VM.start_on(vm, self.host('xcp-ng-1-1'), False, False)
        self.assertEqual([self.pci('xcp-ng-1-1', '0000:04:10.0')],
                         self.x.VM.get_attached_PCIs(vm))

    def test_suspend_and_migration_are_refused_with_nothing_changed(self):
        host = self.host('xcp-ng-1-1')
        vm = self.vm_with_pci('0000:04:00.0')
        self.x.VM.start_on(vm, host, False, False)
        self.assertNotIn('suspend', self.x.VM.get_allowed_operations(vm))
        self.assertNotIn('pool_migrate',
                         self.x.VM.get_allowed_operations(vm))
        self.assertFailure(['VM_HAS_PCI_ATTACHED', vm], self.x.VM.suspend, vm)
        self.assertFailure(['VM_HAS_PCI_ATTACHED', vm],
                           self.x.VM.pool_migrate, vm,
                           self.host('xcp-ng-1-2'), {'live': 'true'})
        self.assertEqual(('Running', host),
                         (self.x.VM.get_power_state(vm),
                          self.x.VM.get_resident_on(vm)))


class GpuInventoryTest(DevicesBase):
    def test_pgpus_groups_and_types(self):
        group = self.group()
        pgpus = self.x.GPU_group.get_PGPUs(group)
        self.assertEqual(3, len(pgpus))           # the group spans the pool
        self.assertEqual(2, len(self.x.host.get_PGPUs(
            self.host('xcp-ng-1-1'))))
        t4q, t8q = self.vgpu_type('GRID T4-4Q'), self.vgpu_type('GRID T4-8Q')
        whole = self.vgpu_type('passthrough')
        self.assertEqual('passthrough',
                         self.x.VGPU_type.get_implementation(whole))
        pgpu = self.pgpu_of('xcp-ng-1-1', '0000:81:00.0')
        self.assertEqual({whole: '1', t4q: '4', t8q: '2'},
                         self.x.PGPU.get_supported_VGPU_max_capacities(pgpu))
        self.assertEqual('disabled', self.x.PGPU.get_dom0_access(pgpu))
        self.assertEqual('4', self.x.PGPU.get_remaining_capacity(pgpu, t4q))
        # GPU_group's figure is the whole pool's
        self.assertEqual('12', self.x.GPU_group.get_remaining_capacity(
            group, t4q))
        self.assertEqual('depth_first',
                         self.x.GPU_group.get_allocation_algorithm(group))


class VgpuTest(DevicesBase):
    def vm_with_vgpu(self, model='GRID T4-4Q', name='gpu-vm'):
        vm = self.new_vm(name)
        vgpu = self.x.VGPU.create(vm, self.group(), '0', {},
                                  self.vgpu_type(model))
        return vm, vgpu

    def set_algorithm(self, algorithm):
        group = self.group()
        self.x.GPU_group.set_allocation_algorithm(group, algorithm)
        self.addCleanup(self.x.GPU_group.set_allocation_algorithm, group,
                        'depth_first')

    def test_create_checks_what_xapi_checks(self):
        vm, vgpu = self.vm_with_vgpu()
        self.assertEqual(('0', 'OpaqueRef:NULL', False),
                         (self.x.VGPU.get_device(vgpu),
                          self.x.VGPU.get_resident_on(vgpu),
                          self.x.VGPU.get_currently_attached(vgpu)))
        self.assertFailure(['VGPU_TYPE_NOT_COMPATIBLE',
                            self.vgpu_type('GRID T4-8Q')],
                           self.x.VGPU.create, vm, self.group(), '0', {},
                           self.vgpu_type('GRID T4-8Q'))
        other = self.new_vm('other')
        self.assertFailure(['INVALID_DEVICE', '21'], self.x.VGPU.create,
                           other, self.group(), '21', {},
                           self.vgpu_type('GRID T4-4Q'))
        self.x.VM.start_on(other, self.host('xcp-ng-1-1'), False, False)
        self.assertFailure('VM_BAD_POWER_STATE', self.x.VGPU.create, other,
                           self.group(), '0', {},
                           self.vgpu_type('GRID T4-4Q'))

    def test_a_clone_has_copies_of_the_vgpus_not_placed(self):
        vm, vgpu = self.vm_with_vgpu(model='GRID T4-8Q')
        self.x.VM.start_on(vm, self.host('xcp-ng-1-1'), False, False)
        self.x.VM.hard_shutdown(vm)
        clone = self.x.VM.clone(vm, 'gpu-clone')
        (copied,) = self.x.VM.get_VGPUs(clone)
        self.assertNotEqual(vgpu, copied)
        record = self.x.VGPU.get_record(copied)
        self.assertEqual((self.group(), self.vgpu_type('GRID T4-8Q'),
                          'OpaqueRef:NULL', False),
                         (record['GPU_group'], record['type'],
                          record['resident_on'],
                          record['currently_attached']))
        self.assertEqual([vgpu], self.x.VM.get_VGPUs(vm))

    def test_depth_first_fills_one_gpu_before_the_next(self):
        host = self.host('xcp-ng-1-1')
        placed = []
        for i in range(3):
            vm, vgpu = self.vm_with_vgpu(name='d%d' % i)
            self.x.VM.start_on(vm, host, False, False)
            placed.append(self.x.VGPU.get_resident_on(vgpu))
        self.assertEqual(placed[0], placed[1])
        self.assertEqual(placed[0], placed[2])
        self.assertEqual('1', self.x.PGPU.get_remaining_capacity(
            placed[0], self.vgpu_type('GRID T4-4Q')))
        self.assertTrue(self.x.VGPU.get_currently_attached(vgpu))

    def test_breadth_first_spreads(self):
        self.set_algorithm('breadth_first')
        host = self.host('xcp-ng-1-1')
        placed = set()
        for i in range(2):
            vm, vgpu = self.vm_with_vgpu(name='b%d' % i)
            self.x.VM.start_on(vm, host, False, False)
            placed.add(self.x.VGPU.get_resident_on(vgpu))
        self.assertEqual({self.pgpu_of('xcp-ng-1-1', '0000:81:00.0'),
                          self.pgpu_of('xcp-ng-1-1', '0000:82:00.0')},
                         placed)

    def test_no_capacity_on_the_host_refuses_the_start(self):
        host = self.host('xcp-ng-1-2')          # one T4: two 8Q vGPUs
        for i in range(2):
            vm, _ = self.vm_with_vgpu('GRID T4-8Q', name='full%d' % i)
            self.x.VM.start_on(vm, host, False, False)
        vm, vgpu = self.vm_with_vgpu('GRID T4-8Q', name='one-too-many')
        self.assertFailure(['VM_REQUIRES_VGPU', vm, self.group(),
                            self.vgpu_type('GRID T4-8Q')],
                           self.x.VM.start_on, vm, host, False, False)
        self.assertEqual(('Halted', 'OpaqueRef:NULL'),
                         (self.x.VM.get_power_state(vm),
                          self.x.VGPU.get_scheduled_to_be_resident_on(vgpu)))
        # a 4Q does not share a pGPU running 8Qs either
        vm4, _ = self.vm_with_vgpu('GRID T4-4Q', name='mixed')
        self.assertFailure('VM_REQUIRES_VGPU', self.x.VM.start_on, vm4, host,
                           False, False)

    def test_a_whole_gpu_passthrough_takes_the_gpu(self):
        host = self.host('xcp-ng-1-2')
        vm, vgpu = self.vm_with_vgpu('passthrough', name='whole')
        self.x.VM.start_on(vm, host, False, False)
        pgpu = self.x.VGPU.get_resident_on(vgpu)
        self.assertEqual([self.x.PGPU.get_PCI(pgpu)],
                         self.x.VM.get_attached_PCIs(vm))
        self.assertEqual('0', self.x.PGPU.get_remaining_capacity(
            pgpu, self.vgpu_type('GRID T4-4Q')))
        other, _ = self.vm_with_vgpu('passthrough', name='whole2')
        self.assertFailure(['VM_REQUIRES_GPU', other, self.group()],
                           self.x.VM.start_on, other, host, False, False)

    def test_running_vgpus_block_suspend_migration_and_destroy(self):
        host = self.host('xcp-ng-1-1')
        vm, vgpu = self.vm_with_vgpu()
        self.x.VM.start_on(vm, host, False, False)
        self.assertFailure(['VM_HAS_VGPU', vm], self.x.VM.suspend, vm)
        self.assertFailure(['VM_HAS_VGPU', vm], self.x.VM.pool_migrate, vm,
                           self.host('xcp-ng-1-2'), {'live': 'true'})
        self.assertFailure(['OPERATION_NOT_ALLOWED',
                            'vGPU currently attached to a running VM'],
                           self.x.VGPU.destroy, vgpu)
        self.x.VM.hard_shutdown(vm)
        self.assertEqual((False, 'OpaqueRef:NULL'),
                         (self.x.VGPU.get_currently_attached(vgpu),
                          self.x.VGPU.get_resident_on(vgpu)))
        self.x.VM.destroy(vm)
        self.assertNotIn(vgpu, self.x.VGPU.get_all())


class DevicesOptionTest(SimTestCase):
    def test_a_world_without_devices_has_none(self):
        self.assertEqual([], self.x.PCI.get_all())
        self.assertEqual([], self.x.PGPU.get_all())

    def test_a_bad_description_says_what_is_wrong(self):
        from xapisim.devices import DeviceError, read_spec
        import xapisim
        with self.assertRaises(DeviceError) as ctx:
            read_spec('{not json')
        self.assertIn('--devices', str(ctx.exception))
        bad = devices_world.spec()
        del bad['hosts']['xcp-ng-1-1']['pci'][1]['vendor_id']
        with self.assertRaises(DeviceError) as ctx:
            xapisim.Simulator(devices=bad)
        self.assertIn('0000:04:00.0', str(ctx.exception))
        self.assertIn('vendor_id', str(ctx.exception))
