"""Moving VMs: VM.pool_migrate inside a pool, VM.migrate_send inside a
pool (storage XenMotion) and across pools; progress, failures half-way,
cancellation and refusals."""

import os
import threading
import time
import unittest
import urllib.parse

import XenAPI

from tests import dom0_bridges
from tests import records
from tests.xapisim.base import MIB, SimTestCase
from xapisim.client import ControlError
from xapisim import rpc

NULL = 'OpaqueRef:NULL'
INJECTED = ['INTERNAL_ERROR', 'injected by the test']
# seconds a stalled move waits at a fault point: more than any test takes,
# so that only a cancel ends it
STALL = 600
# what a move may leave behind in a pool
COUNTED = ('VM', 'VM_metrics', 'VBD', 'VBD_metrics', 'VIF', 'VIF_metrics',
           'VDI')


class MigrationTestCase(SimTestCase):
    pools = 2
    hosts = 2
    sim_options = {'guest_delay': 0.01}

    def host(self, index, x=None):
        pool = 1 if x is not None else 0
        uuid = self.world['pools'][pool]['hosts'][index]['uuid']
        return (x or self.x).host.get_by_uuid(uuid)

    def local_sr(self, host):
        for pbd in self.x.host.get_PBDs(host):
            sr = self.x.PBD.get_SR(pbd)
            if not self.x.SR.get_shared(sr) and \
                    self.x.SR.get_type(sr) != 'iso':
                return sr
        raise AssertionError('no local SR on %s' % host)

    def vm_with_disk(self, name, sr=None, vif=True):
        vm = self.new_vm(name=name, memory_mib=128)
        vdi = self.new_vdi(size=4 * MIB, sr=sr)
        self.new_vbd(vm, vdi)
        vif_ref = self.new_vif(vm) if vif else None
        return vm, vdi, vif_ref

    def dest(self):
        """A session on pool 2 and its migrate_receive token for host 2."""
        other = self.login(self.world['pools'][1]['master'])
        y = other.xenapi
        network = [n for n in y.network.get_all()
                   if y.network.get_bridge(n) == 'xenbr0'][0]
        host = self.host(1, y)
        token = y.host.migrate_receive(host, network, {})
        sr = y.pool.get_default_SR(y.pool.get_all()[0])
        self.dest_session = other
        return y, host, network, sr, token

    def local_token(self, index=1):
        """A migrate_receive token for host ``index`` of pool 1."""
        return self.x.host.migrate_receive(self.host(index),
                                           self.pool_network(), {})

    def cancel(self, task):
        """Cancel ``task`` (stalled for STALL seconds): it ends cancelled
        (TASK_CANCELLED), long before the stall would have ended."""
        self.x.task.cancel(task)
        record = self.wait_task(task)
        self.assertEqual('cancelled', record['status'])
        self.assertEqual(['TASK_CANCELLED', task], record['error_info'])

    def counts(self, x=None):
        x = x or self.x
        return {cls: len(getattr(x, cls).get_all()) for cls in COUNTED}

    def write_vdi(self, vdi, data):
        task = self.x.task.create('upload', '')
        path = '/import_raw_vdi?session_id=%s&vdi=%s&task_id=%s' % (
            self.session._session, vdi, task)
        status, _ = self.http('PUT', path, data,
                              headers={'Content-Length': str(len(data))})
        self.assertEqual(200, status)
        self.assertEqual('success', self.wait_task(task)['status'])

    def read_vdi(self, vdi, session=None, url=None):
        status, body = self.http(
            'GET', '/export_raw_vdi?session_id=%s&vdi=%s&format=raw'
            % ((session or self.session)._session, vdi), url=url)
        self.assertEqual(200, status)
        return body

    def disk(self, vm, sr=None, userdevice='0', size=4 * MIB):
        """A disk for ``vm`` holding random bytes; (VDI, its bytes)."""
        vdi = self.new_vdi(size=size, sr=sr,
                           other_config={'disk': userdevice})
        self.new_vbd(vm, vdi, userdevice=userdevice)
        data = os.urandom(64 * 1024) + b'xapisim' * 1000
        self.write_vdi(vdi, data)
        return vdi, data

    def fill_host(self, host, x=None, leave_mib=16):
        """Start a VM on ``host`` that leaves it ``leave_mib`` or so free."""
        x = x or self.x
        free_mib = int(x.host.compute_free_memory(host)) // MIB
        # a VM's footprint: its memory, 1 MiB per 128 MiB, VCPUs + 1 MiB
        mib = (free_mib - leave_mib - 2) * 128 // 129
        filler = x.VM.create(records.vm_record('filler', mib))
        self.addCleanup(self._quiet_remove, x, filler)
        x.VM.start_on(filler, host, False, False)
        return filler

    def _quiet_remove(self, x, vm):
        try:
            x.VM.hard_shutdown(vm)
        except XenAPI.Failure:
            pass
        try:
            x.VM.destroy(vm)
        except XenAPI.Failure:
            pass

    def disable_host(self, host, x=None):
        x = x or self.x
        x.host.disable(host)
        self.addCleanup(x.host.enable, host)

    def wait_fired(self, message, timeout=60):
        """Until the fault rule for ``message`` has fired."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(r['message'] == message and r['fired']
                   for r in self.control().faults()):
                return
            time.sleep(0.02)
        raise AssertionError('the fault rule for %s never fired' % message)

    def assert_intact(self, vm, before, host=None):
        """``vm`` is as ``before`` (its record then) and idle."""
        after = self.x.VM.get_record(vm)
        for field in ('power_state', 'resident_on', 'domid', 'VBDs', 'VIFs',
                      'consoles', 'affinity', 'uuid'):
            self.assertEqual(before[field], after[field], field)
        self.assertEqual({}, after['current_operations'])
        self.assertEqual(NULL, after['scheduled_to_be_resident_on'])
        self.assertIn('migrate_send', after['allowed_operations'])
        for vbd in after['VBDs']:
            self.assertEqual(before['_vdis'][vbd], self.x.VBD.get_VDI(vbd))
            if after['power_state'] == 'Running':
                self.assertTrue(self.x.VBD.get_currently_attached(vbd))

    def snapshot(self, vm):
        record = self.x.VM.get_record(vm)
        record['_vdis'] = {vbd: self.x.VBD.get_VDI(vbd)
                           for vbd in record['VBDs']}
        return record


class PoolMigrateTest(MigrationTestCase):

    def test_running_vm_moves_to_the_other_host(self):
        vm, _, _ = self.vm_with_disk('mover')
        self.x.VM.start_on(vm, self.host(0), False, False)
        before = self.x.VM.get_record(vm)
        self.x.VM.pool_migrate(vm, self.host(1), {'live': 'true'})
        after = self.x.VM.get_record(vm)
        self.assertEqual(self.host(0), before['resident_on'])
        self.assertEqual(self.host(1), after['resident_on'])
        self.assertEqual('Running', after['power_state'])
        self.assertNotEqual(before['domid'], after['domid'])
        self.assertNotEqual('-1', after['domid'])
        self.assertEqual(before['uuid'], after['uuid'])
        self.assertTrue(after['consoles'])
        new_address = self.world['pools'][0]['hosts'][1]['address']
        for console in after['consoles']:
            location = self.x.console.get_location(console)
            self.assertEqual(new_address,
                             urllib.parse.urlsplit(location).hostname)
        for vbd in after['VBDs']:
            self.assertTrue(self.x.VBD.get_currently_attached(vbd))

    def test_console_log_follows_the_domain(self):
        vm, _, _ = self.vm_with_disk('logger')
        self.x.VM.start_on(vm, self.host(0), False, False)
        self.x.VM.pool_migrate(vm, self.host(1), {})
        domid = int(self.x.VM.get_domid(vm))
        dom0 = self.x.host.get_other_config(
            self.host(1))['xapisim_dom0_root']
        path = os.path.join(dom0, 'var', 'log', 'xen', 'guest',
                            'console.%d' % domid)
        with open(path) as fh:
            self.assertIn('logger login:', fh.read())

    def test_free_memory_moves_with_the_vm(self):
        vm, _, _ = self.vm_with_disk('memory-mover')
        src, dst = self.host(0), self.host(1)
        self.x.VM.start_on(vm, src, False, False)
        src_before = int(self.x.host.compute_free_memory(src))
        dst_before = int(self.x.host.compute_free_memory(dst))
        self.x.VM.pool_migrate(vm, dst, {})
        gained = int(self.x.host.compute_free_memory(src)) - src_before
        lost = dst_before - int(self.x.host.compute_free_memory(dst))
        self.assertGreaterEqual(gained, 128 * MIB)
        self.assertEqual(gained, lost)

    def test_disk_on_local_sr_requires_sr(self):
        sr = self.local_sr(self.host(0))
        vm, _, _ = self.vm_with_disk('pinned', sr=sr)
        self.x.VM.start_on(vm, self.host(0), False, False)
        self.assertFailure(['VM_REQUIRES_SR', vm, sr],
                           self.x.VM.pool_migrate, vm, self.host(1), {})
        self.assertEqual(self.host(0), self.x.VM.get_resident_on(vm))
        self.assertEqual('Running', self.x.VM.get_power_state(vm))

    def test_halted_vm_cannot_pool_migrate(self):
        vm, _, _ = self.vm_with_disk('halted')
        self.assertFailure(['VM_BAD_POWER_STATE', vm, 'running', 'halted'],
                           self.x.VM.pool_migrate, vm, self.host(1), {})

    def test_disabled_host_refuses_the_vm(self):
        vm, _, _ = self.vm_with_disk('to-disabled')
        self.x.VM.start_on(vm, self.host(0), False, False)
        before = self.snapshot(vm)
        self.disable_host(self.host(1))
        self.assertFailure(['HOST_DISABLED', self.host(1)],
                           self.x.VM.pool_migrate, vm, self.host(1), {})
        self.assert_intact(vm, before)

    def test_failure_during_the_memory_copy_leaves_the_vm_at_home(self):
        vm, _, _ = self.vm_with_disk('fails-half-way')
        src, dst = self.host(0), self.host(1)
        self.x.VM.start_on(vm, src, False, False)
        before = self.snapshot(vm)
        free = int(self.x.host.compute_free_memory(dst))
        counts = self.counts()
        self.control().fail('VM.pool_migrate/memory', INJECTED)
        task = self.x.Async.VM.pool_migrate(vm, dst, {'live': 'true'})
        record = self.wait_task(task)
        self.assertEqual('failure', record['status'])
        self.assertEqual(INJECTED, record['error_info'])
        self.assert_intact(vm, before)
        self.assertEqual(free, int(self.x.host.compute_free_memory(dst)))
        self.assertEqual(counts, self.counts())
        # and the next try goes through
        self.x.VM.pool_migrate(vm, dst, {'live': 'true'})
        self.assertEqual(dst, self.x.VM.get_resident_on(vm))

    def test_cancel_during_the_memory_copy(self):
        vm, _, _ = self.vm_with_disk('cancelled')
        src, dst = self.host(0), self.host(1)
        self.x.VM.start_on(vm, src, False, False)
        before = self.snapshot(vm)
        free = int(self.x.host.compute_free_memory(dst))
        self.control().delay('VM.pool_migrate/memory', STALL)
        task = self.x.Async.VM.pool_migrate(vm, dst, {'live': 'true'})
        self.wait_fired('VM.pool_migrate/memory')
        # the memory is reserved on the destination meanwhile
        self.assertEqual(dst, self.x.VM.get_scheduled_to_be_resident_on(vm))
        self.assertLess(int(self.x.host.compute_free_memory(dst)), free)
        self.cancel(task)
        self.assert_intact(vm, before)
        self.assertEqual(free, int(self.x.host.compute_free_memory(dst)))

    def test_evacuate_passes_the_same_fault_point(self):
        vm, _, _ = self.vm_with_disk('evacuee')
        self.x.VM.start_on(vm, self.host(0), False, False)
        before = self.snapshot(vm)
        self.control().fail('VM.pool_migrate/memory', INJECTED)
        self.assertFailure(INJECTED, self.x.host.evacuate, self.host(0),
                           NULL, '1')
        self.assert_intact(vm, before)


class UnmanagedBridgeMigrationTest(MigrationTestCase):
    """Without real dom0 networking too, a VM on an unmanaged network
    moves only to a host whose dom0 has the network's bridge."""

    def test_pool_migrate_needs_the_bridge_at_the_destination(self):
        net = self.destroy_later('network', self.x.network.create({
            'name_label': 'ovn', 'name_description': '', 'MTU': '1500',
            'other_config': {}, 'bridge': 'br-mig', 'managed': False}))
        vm, _, _ = self.vm_with_disk('mover', vif=False)
        self.new_vif(vm, network=net)
        dom0_bridges.set_present(self, self.x, 'br-mig', host=self.host(0))
        self.x.VM.start_on(vm, self.host(0), False, False)
        self.assertFailure(['BRIDGE_NOT_AVAILABLE', 'br-mig'],
                           self.x.VM.pool_migrate, vm, self.host(1),
                           {'live': 'true'})
        self.assertEqual(self.host(0), self.x.VM.get_resident_on(vm))
        self.assertEqual('Running', self.x.VM.get_power_state(vm))
        dom0_bridges.set_present(self, self.x, 'br-mig', host=self.host(1))
        self.x.VM.pool_migrate(vm, self.host(1), {'live': 'true'})
        self.assertEqual(self.host(1), self.x.VM.get_resident_on(vm))


class IntraPoolStorageMotionTest(MigrationTestCase):
    """VM.migrate_send with a token of the VM's own pool: the VM moves in
    place, its disks to the SRs of vdi_map."""

    def running_vm_on_local_sr(self, name, disks=1):
        vm = self.new_vm(name=name, memory_mib=128)
        sr = self.local_sr(self.host(0))
        data = {}
        for i in range(disks):
            vdi, content = self.disk(vm, sr=sr, userdevice=str(i))
            data[vdi] = content
        vif = self.new_vif(vm)
        self.x.VM.start_on(vm, self.host(0), False, False)
        return vm, data, vif

    def test_running_vm_moves_with_its_disk_to_another_local_sr(self):
        vm, data, vif = self.running_vm_on_local_sr('sxm')
        [(vdi, content)] = data.items()
        src_sr, dst_sr = self.local_sr(self.host(0)), self.local_sr(
            self.host(1))
        before = self.x.VM.get_record(vm)
        old_uuid = self.x.VDI.get_uuid(vdi)
        network = self.x.VIF.get_network(vif)
        vms = len(self.x.VM.get_all())
        task = self.x.Async.VM.migrate_send(
            vm, self.local_token(1), True, {vdi: dst_sr}, {}, {})
        record = self.wait_task(task)
        self.assertEqual('success', record['status'], record['error_info'])
        self.assertIn(vm, record['result'])

        after = self.x.VM.get_record(vm)
        self.assertEqual(before['uuid'], after['uuid'])
        self.assertEqual(vms, len(self.x.VM.get_all()))
        self.assertEqual('Running', after['power_state'])
        self.assertEqual(self.host(1), after['resident_on'])
        self.assertNotEqual(before['domid'], after['domid'])
        self.assertEqual(before['affinity'], after['affinity'])
        self.assertEqual(NULL, after['scheduled_to_be_resident_on'])
        self.assertEqual({}, after['current_operations'])
        new_address = self.world['pools'][0]['hosts'][1]['address']
        for console in after['consoles']:
            self.assertEqual(new_address, urllib.parse.urlsplit(
                self.x.console.get_location(console)).hostname)
        # the disk: a new VDI on the other host's SR, the same bytes
        self.assertEqual(before['VBDs'], after['VBDs'])
        vbd = after['VBDs'][0]
        new_vdi = self.x.VBD.get_VDI(vbd)
        self.assertNotEqual(vdi, new_vdi)
        self.assertNotEqual(old_uuid, self.x.VDI.get_uuid(new_vdi))
        self.assertEqual(dst_sr, self.x.VDI.get_SR(new_vdi))
        self.assertEqual('test-vdi', self.x.VDI.get_name_label(new_vdi))
        self.assertEqual({'disk': '0'},
                         self.x.VDI.get_other_config(new_vdi))
        self.assertTrue(self.x.VBD.get_currently_attached(vbd))
        body = self.read_vdi(new_vdi)
        self.assertEqual(4 * MIB, len(body))
        self.assertEqual(content, body[:len(content)])
        self.assertEqual(b'\0' * (4 * MIB - len(content)),
                         body[len(content):])
        # the old one is gone, its SR's accounting with it
        self.assertFailure(['HANDLE_INVALID', 'VDI', vdi],
                           self.x.VDI.get_record, vdi)
        self.assertFailure(['UUID_INVALID', 'VDI', old_uuid],
                           self.x.VDI.get_by_uuid, old_uuid)
        self.assertNotIn(vdi, self.x.SR.get_VDIs(src_sr))
        # the VIF stays on its network
        self.assertEqual([vif], after['VIFs'])
        self.assertEqual(network, self.x.VIF.get_network(vif))
        self.assertTrue(self.x.VIF.get_currently_attached(vif))

    def test_halted_vm_moves_its_disks_only(self):
        vm = self.new_vm(name='sxm-halted', memory_mib=128)
        vdi, content = self.disk(vm, sr=self.local_sr(self.host(0)))
        dst_sr = self.local_sr(self.host(1))
        self.x.VM.migrate_send(vm, self.local_token(1), False,
                               {vdi: dst_sr}, {}, {})
        record = self.x.VM.get_record(vm)
        self.assertEqual('Halted', record['power_state'])
        self.assertEqual(NULL, record['resident_on'])
        new_vdi = self.x.VBD.get_VDI(record['VBDs'][0])
        self.assertEqual(dst_sr, self.x.VDI.get_SR(new_vdi))
        self.assertEqual(content, self.read_vdi(new_vdi)[:len(content)])
        self.assertEqual(record['VBDs'], self.x.VDI.get_VBDs(new_vdi))
        self.assertFailure(['HANDLE_INVALID', 'VDI', vdi],
                           self.x.VDI.get_record, vdi)

    def test_disk_mapped_to_its_own_sr_stays(self):
        vm = self.new_vm(name='sxm-mixed', memory_mib=128)
        shared, _ = self.disk(vm, userdevice='0')       # the shared SR
        local, _ = self.disk(vm, sr=self.local_sr(self.host(0)),
                             userdevice='1')
        self.x.VM.start_on(vm, self.host(0), False, False)
        dst_sr = self.local_sr(self.host(1))
        self.x.VM.migrate_send(
            vm, self.local_token(1), True,
            {shared: self.default_sr(), local: dst_sr}, {}, {})
        vdis = {self.x.VBD.get_userdevice(vbd): self.x.VBD.get_VDI(vbd)
                for vbd in self.x.VM.get_VBDs(vm)}
        self.assertEqual(shared, vdis['0'])
        self.assertNotEqual(local, vdis['1'])
        self.assertEqual(dst_sr, self.x.VDI.get_SR(vdis['1']))
        self.assertEqual(self.host(1), self.x.VM.get_resident_on(vm))

    def test_storage_only_move_on_the_same_host(self):
        vm = self.new_vm(name='sxm-same-host', memory_mib=128)
        vdi, content = self.disk(vm)                 # the shared SR
        self.x.VM.start_on(vm, self.host(0), False, False)
        domid = self.x.VM.get_domid(vm)
        local = self.local_sr(self.host(0))
        self.x.VM.migrate_send(vm, self.local_token(0), True, {vdi: local},
                               {}, {})
        self.assertEqual(self.host(0), self.x.VM.get_resident_on(vm))
        self.assertNotEqual(domid, self.x.VM.get_domid(vm))
        new_vdi = self.x.VBD.get_VDI(self.x.VM.get_VBDs(vm)[0])
        self.assertEqual(local, self.x.VDI.get_SR(new_vdi))
        self.assertEqual(content, self.read_vdi(new_vdi)[:len(content)])

    def test_every_disk_must_be_in_the_map(self):
        vm, data, _ = self.running_vm_on_local_sr('sxm-unmapped')
        [vdi] = data
        for call in (self.x.VM.assert_can_migrate, self.x.VM.migrate_send):
            self.assertFailure(['VDI_NOT_IN_MAP', vdi], call, vm,
                               self.local_token(1), True, {}, {}, {})

    def test_vif_map_is_refused_inside_a_pool(self):
        vm, data, vif = self.running_vm_on_local_sr('sxm-vif-map')
        [vdi] = data
        vdi_map = {vdi: self.local_sr(self.host(1))}
        for call in (self.x.VM.assert_can_migrate, self.x.VM.migrate_send):
            self.assertFailure(
                ['OPERATION_NOT_ALLOWED', 'VIF mapping is not allowed for '
                 'intra-pool migration -all VIFs must be on the same '
                 'network'], call, vm, self.local_token(1), True, vdi_map,
                {vif: self.pool_network()}, {})

    def test_disk_left_where_the_destination_cannot_see_it(self):
        vm, data, _ = self.running_vm_on_local_sr('sxm-unseen', disks=2)
        first, second = sorted(
            data, key=lambda v: self.x.VDI.get_other_config(v)['disk'])
        src_sr = self.local_sr(self.host(0))
        vdi_map = {first: self.local_sr(self.host(1)), second: src_sr}
        # xapi's assert_can_migrate does not check SRs inside a pool...
        self.assertEqual('', self.x.VM.assert_can_migrate(
            vm, self.local_token(1), True, vdi_map, {}, {}))
        # ... the move fails when the domain would need the disk there
        before = self.snapshot(vm)
        counts = self.counts()
        self.assertFailure(['VM_REQUIRES_SR', vm, src_sr],
                           self.x.VM.migrate_send, vm, self.local_token(1),
                           True, vdi_map, {}, {})
        self.assert_intact(vm, before)
        self.assertEqual(counts, self.counts())

    def test_not_enough_memory_on_the_destination(self):
        vm, data, _ = self.running_vm_on_local_sr('sxm-no-room')
        [vdi] = data
        self.fill_host(self.host(1))
        vdi_map = {vdi: self.local_sr(self.host(1))}
        for call in (self.x.VM.assert_can_migrate, self.x.VM.migrate_send):
            details = self.assertFailure(
                'HOST_NOT_ENOUGH_FREE_MEMORY', call, vm,
                self.local_token(1), True, vdi_map, {}, {})
            self.assertGreater(int(details[1]), int(details[2]))

    def test_disabled_destination(self):
        vm, data, _ = self.running_vm_on_local_sr('sxm-disabled')
        [vdi] = data
        self.disable_host(self.host(1))
        self.assertFailure(['HOST_DISABLED', self.host(1)],
                           self.x.VM.migrate_send, vm, self.local_token(1),
                           True, {vdi: self.local_sr(self.host(1))}, {}, {})

    def test_failure_after_the_second_disk_removes_the_copies(self):
        vm, data, _ = self.running_vm_on_local_sr('sxm-fails', disks=2)
        dst_sr = self.local_sr(self.host(1))
        before = self.snapshot(vm)
        counts = self.counts()
        dst_vdis = self.x.SR.get_VDIs(dst_sr)
        usage = self.x.SR.get_virtual_allocation(dst_sr)
        self.control().fail('VM.migrate_send/copy', INJECTED, nth=2)
        task = self.x.Async.VM.migrate_send(
            vm, self.local_token(1), True, {v: dst_sr for v in data}, {},
            {})
        record = self.wait_task(task)
        self.assertEqual('failure', record['status'])
        self.assertEqual(INJECTED, record['error_info'])
        self.assertEqual(2, self.control().faults()[0]['seen'])
        self.assert_intact(vm, before)
        self.assertEqual(counts, self.counts())
        self.assertEqual(sorted(dst_vdis), sorted(self.x.SR.get_VDIs(dst_sr)))
        self.assertEqual(usage, self.x.SR.get_virtual_allocation(dst_sr))
        for vdi, content in data.items():
            self.assertEqual(content, self.read_vdi(vdi)[:len(content)])

    def test_failure_during_the_memory_copy_removes_the_copies(self):
        vm, data, _ = self.running_vm_on_local_sr('sxm-fails-late')
        dst_sr = self.local_sr(self.host(1))
        before = self.snapshot(vm)
        counts = self.counts()
        free = int(self.x.host.compute_free_memory(self.host(1)))
        self.control().fail('VM.migrate_send/memory', INJECTED)
        self.assertFailure(INJECTED, self.x.VM.migrate_send, vm,
                           self.local_token(1), True,
                           {v: dst_sr for v in data}, {}, {})
        self.assert_intact(vm, before)
        self.assertEqual(counts, self.counts())
        self.assertEqual(free,
                         int(self.x.host.compute_free_memory(self.host(1))))

    def test_cancel_during_the_copy(self):
        vm, data, _ = self.running_vm_on_local_sr('sxm-cancel', disks=2)
        dst_sr = self.local_sr(self.host(1))
        before = self.snapshot(vm)
        counts = self.counts()
        self.control().delay('VM.migrate_send/copy', STALL)
        task = self.x.Async.VM.migrate_send(
            vm, self.local_token(1), True, {v: dst_sr for v in data}, {},
            {})
        self.wait_fired('VM.migrate_send/copy')
        # the first copy exists meanwhile
        self.assertEqual(counts['VDI'] + 1, len(self.x.VDI.get_all()))
        self.cancel(task)
        self.assert_intact(vm, before)
        self.assertEqual(counts, self.counts())


class MigrationProgressTest(MigrationTestCase):
    """Slow guests: a memory copy takes 4 rounds of 0.3 s."""
    sim_options = {'guest_delay': 0.3}

    def read_by_test(self):
        """Every progress between 0 and 1 a task reports from now on waits
        until the test has read it (the function returned: call it with
        each value read): what the test sees does not depend on how fast
        it reads, on a busy machine."""
        cond = threading.Condition()
        read = set()
        real = rpc.Context.progress

        def progress(ctx, fraction):
            real(ctx, fraction)
            value = float(fraction)
            if ctx.task and 0.0 < value < 1.0:
                with cond:
                    cond.wait_for(lambda: value in read, 60)

        def seen(value):
            with cond:
                read.add(float(value))
                cond.notify_all()
        rpc.Context.progress = progress
        self.addCleanup(setattr, rpc.Context, 'progress', real)
        return seen

    def test_pool_migrate_reports_its_memory_copy(self):
        vm, _, _ = self.vm_with_disk('watched')
        self.x.VM.start_on(vm, self.host(0), False, False)
        event_from = getattr(self.x.event, 'from')
        token = event_from(['task'], '', 0.0)['token']
        read = self.read_by_test()
        task = self.x.Async.VM.pool_migrate(vm, self.host(1), {})
        seen = []
        deadline = time.time() + 60
        while time.time() < deadline:
            batch = event_from(['task'], token, 5.0)
            token = batch['token']
            snaps = [e['snapshot'] for e in batch['events']
                     if e['ref'] == task and e['operation'] != 'del']
            for snap in snaps:
                seen.append(float(snap['progress']))
                read(snap['progress'])
            if any(snap['status'] != 'pending' for snap in snaps):
                break
        self.assertEqual('success', self.x.task.get_status(task))
        self.assertEqual(sorted(seen), seen)
        between = [p for p in seen if 0 < p < 1]
        self.assertGreaterEqual(len(between), 2, seen)
        self.assertEqual(1.0, seen[-1])
        self.assertEqual(self.host(1), self.x.VM.get_resident_on(vm))

    def test_migrate_send_reports_the_bytes_then_the_memory(self):
        vm = self.new_vm(name='watched-traveller', memory_mib=128)
        data = {}
        for i in range(2):
            vdi, content = self.disk(vm, userdevice=str(i))
            data[vdi] = content
        vif = self.new_vif(vm)
        self.x.VM.start_on(vm, self.host(0), False, False)
        y, _, network, sr, token = self.dest()
        read = self.read_by_test()
        task = self.x.Async.VM.migrate_send(
            vm, token, True, {v: sr for v in data}, {vif: network}, {})
        seen = []
        while self.x.task.get_status(task) == 'pending':
            seen.append(float(self.x.task.get_progress(task)))
            read(seen[-1])
            time.sleep(0.02)
        self.assertEqual('success', self.x.task.get_status(task))
        seen.append(float(self.x.task.get_progress(task)))
        self.assertEqual(sorted(seen), seen)
        # two disks of the same size take 0.9 of the task, the memory the
        # rest
        self.assertIn(0.45, seen)
        self.assertIn(0.9, seen)
        self.assertTrue([p for p in seen if 0.9 < p < 1], seen)
        self.assertEqual(1.0, seen[-1])


class FaultPointTest(SimTestCase):
    """The control interface knows the points inside operations."""

    def test_an_unknown_point_is_refused(self):
        with self.assertRaises(ControlError) as ctx:
            self.control().fail('VM.migrate_send/nowhere', INJECTED)
        self.assertIn('HTTP 400', str(ctx.exception))
        self.assertIn('VM.migrate_send/copy', str(ctx.exception))
        self.assertEqual([], self.control().faults())

    def test_the_points_are_listed_rules(self):
        for point in ('VM.pool_migrate/memory', 'VM.migrate_send/copy',
                      'VM.migrate_send/memory'):
            self.control().fail(point, INJECTED, nth=2, times=0)
        self.assertEqual(3, len(self.control().faults()))


class MigrateReceiveTest(MigrationTestCase):

    def test_token_names_the_receiving_host(self):
        y, host, _, _, token = self.dest()
        self.assertEqual({'SM', 'host', 'xenops', 'session_id', 'master'},
                         set(token))
        self.assertEqual(host, token['host'])
        address = self.world['pools'][1]['hosts'][1]['address']
        for key in ('SM', 'xenops'):
            parts = urllib.parse.urlsplit(token[key])
            self.assertEqual(address, parts.hostname)
            self.assertEqual({'session_id': [token['session_id']]},
                             urllib.parse.parse_qs(parts.query))
        self.assertEqual('/services/SM',
                         urllib.parse.urlsplit(token['SM']).path)
        self.assertEqual('/services/xenops',
                         urllib.parse.urlsplit(token['xenops']).path)
        self.assertEqual(self.world['pools'][1]['master'] + '/',
                         token['master'])

    def test_token_session_is_a_new_session_of_the_destination(self):
        token = self.dest()[4]
        self.assertNotEqual(self.dest_session._session, token['session_id'])
        session = XenAPI.Session(self.world['pools'][1]['master'])
        session._session = token['session_id']
        pools = session.xenapi.pool.get_all()
        self.assertEqual(self.world['pools'][1]['uuid'],
                         session.xenapi.pool.get_uuid(pools[0]))

    def test_network_without_pif_on_host(self):
        y = self.login(self.world['pools'][1]['master']).xenapi
        network = y.network.create({'name_label': 'private',
                                    'name_description': '', 'MTU': '1500',
                                    'other_config': {}})
        host = self.host(1, y)
        self.assertFailure(['HOST_CANNOT_ATTACH_NETWORK', host, network],
                           y.host.migrate_receive, host, network, {})


class CrossPoolMigrateTest(MigrationTestCase):

    def test_assert_can_migrate_with_full_maps(self):
        vm, vdi, vif = self.vm_with_disk('checked')
        self.x.VM.start_on(vm, self.host(0), False, False)
        y, _, network, sr, token = self.dest()
        self.assertEqual('', self.x.VM.assert_can_migrate(
            vm, token, True, {vdi: sr}, {vif: network}, {}))

    def test_assert_can_migrate_needs_every_vdi(self):
        vm, vdi, vif = self.vm_with_disk('no-vdi-map')
        self.x.VM.start_on(vm, self.host(0), False, False)
        y, _, network, sr, token = self.dest()
        self.assertFailure(['VDI_NOT_IN_MAP', vdi],
                           self.x.VM.assert_can_migrate, vm, token, True, {},
                           {vif: network}, {})

    def test_assert_can_migrate_needs_every_vif(self):
        vm, vdi, vif = self.vm_with_disk('no-vif-map')
        self.x.VM.start_on(vm, self.host(0), False, False)
        y, _, network, sr, token = self.dest()
        self.assertFailure(['VIF_NOT_IN_MAP', vif],
                           self.x.VM.assert_can_migrate, vm, token, True,
                           {vdi: sr}, {}, {})

    def test_migrate_send_moves_vm_and_bytes(self):
        vm, vdi, vif = self.vm_with_disk('traveller')
        data = os.urandom(64 * 1024) + b'xapisim' * 1000
        self.write_vdi(vdi, data)
        uuid = self.x.VM.get_uuid(vm)
        vdi_uuid = self.x.VDI.get_uuid(vdi)
        mac = self.x.VIF.get_MAC(vif)
        self.x.VM.start_on(vm, self.host(0), False, False)
        y, host, network, sr, token = self.dest()
        task = self.x.Async.VM.migrate_send(vm, token, True, {vdi: sr},
                                            {vif: network}, {})
        record = self.wait_task(task)
        self.assertEqual('success', record['status'], record['error_info'])

        # the destination: the same VM, running on the named host
        new_vm = y.VM.get_by_uuid(uuid)
        self.assertIn(new_vm, record['result'])
        moved = y.VM.get_record(new_vm)
        self.assertEqual('Running', moved['power_state'])
        self.assertEqual(host, moved['resident_on'])
        self.assertEqual('traveller', moved['name_label'])
        self.assertEqual(1, len(moved['VBDs']))
        self.assertEqual(1, len(moved['VIFs']))
        self.assertEqual(network, y.VIF.get_network(moved['VIFs'][0]))
        self.assertEqual(mac, y.VIF.get_MAC(moved['VIFs'][0]))
        new_vdi = y.VBD.get_VDI(moved['VBDs'][0])
        self.assertEqual(sr, y.VDI.get_SR(new_vdi))
        self.assertEqual(str(4 * MIB), y.VDI.get_virtual_size(new_vdi))
        status, body = self.http(
            'GET', '/export_raw_vdi?session_id=%s&vdi=%s&format=raw'
            % (self.dest_session._session, new_vdi),
            url=self.world['pools'][1]['master'])
        self.assertEqual(200, status)
        self.assertEqual(4 * MIB, len(body))
        self.assertEqual(data, body[:len(data)])
        self.assertEqual(b'\0' * (4 * MIB - len(data)), body[len(data):])

        # the source: the VM and its disk are gone
        self.assertFailure(['UUID_INVALID', 'VM', uuid],
                           self.x.VM.get_by_uuid, uuid)
        self.assertFailure(['UUID_INVALID', 'VDI', vdi_uuid],
                           self.x.VDI.get_by_uuid, vdi_uuid)
        self.assertFailure(['HANDLE_INVALID', 'VM', vm],
                           self.x.VM.get_record, vm)

    def vm_with_two_disks(self, name):
        vm = self.new_vm(name=name, memory_mib=128)
        data = {}
        for i in range(2):
            vdi, content = self.disk(vm, userdevice=str(i))
            data[vdi] = content
        vif = self.new_vif(vm)
        self.x.VM.start_on(vm, self.host(0), False, False)
        return vm, data, vif

    def test_failure_after_the_first_disk_leaves_both_pools_as_they_were(
            self):
        vm, data, vif = self.vm_with_two_disks('fails-after-one-disk')
        y, _, network, sr, token = self.dest()
        before = self.snapshot(vm)
        here, there = self.counts(), self.counts(y)
        self.control().fail('VM.migrate_send/copy', INJECTED)
        task = self.x.Async.VM.migrate_send(
            vm, token, True, {v: sr for v in data}, {vif: network}, {})
        record = self.wait_task(task)
        self.assertEqual('failure', record['status'])
        self.assertEqual(INJECTED, record['error_info'])
        self.assertEqual(1, self.control().faults()[0]['seen'])
        self.assert_intact(vm, before)
        self.assertEqual(here, self.counts())
        self.assertEqual(there, self.counts(y))
        uuid = self.x.VM.get_uuid(vm)
        self.assertFailure(['UUID_INVALID', 'VM', uuid], y.VM.get_by_uuid,
                           uuid)
        for vdi, content in data.items():
            self.assertEqual(content, self.read_vdi(vdi)[:len(content)])
        # the token is still good: the next try goes through
        self.x.VM.migrate_send(vm, token, True, {v: sr for v in data},
                               {vif: network}, {})
        self.assertEqual('Running', y.VM.get_power_state(
            y.VM.get_by_uuid(uuid)))

    def test_failure_during_the_memory_copy_removes_the_vm_made_there(self):
        vm, data, vif = self.vm_with_two_disks('fails-in-memory-copy')
        y, host, network, sr, token = self.dest()
        before = self.snapshot(vm)
        here, there = self.counts(), self.counts(y)
        free = int(y.host.compute_free_memory(host))
        self.control().fail('VM.migrate_send/memory', INJECTED)
        self.assertFailure(INJECTED, self.x.VM.migrate_send, vm, token, True,
                           {v: sr for v in data}, {vif: network}, {})
        self.assert_intact(vm, before)
        self.assertEqual(here, self.counts())
        self.assertEqual(there, self.counts(y))
        self.assertEqual(free, int(y.host.compute_free_memory(host)))

    def test_cancel_during_the_copy(self):
        vm, data, vif = self.vm_with_two_disks('cancelled-traveller')
        y, _, network, sr, token = self.dest()
        before = self.snapshot(vm)
        here, there = self.counts(), self.counts(y)
        self.control().delay('VM.migrate_send/copy', STALL)
        task = self.x.Async.VM.migrate_send(
            vm, token, True, {v: sr for v in data}, {vif: network}, {})
        self.wait_fired('VM.migrate_send/copy')
        self.assertEqual(there['VDI'] + 1, len(y.VDI.get_all()))
        self.cancel(task)
        self.assert_intact(vm, before)
        self.assertEqual(here, self.counts())
        self.assertEqual(there, self.counts(y))

    def test_logged_out_token(self):
        vm, vdi, vif = self.vm_with_disk('token-gone')
        self.x.VM.start_on(vm, self.host(0), False, False)
        y, _, network, sr, token = self.dest()
        self.raw_call('session.logout', token['session_id'],
                      url=self.world['pools'][1]['master'])
        for call in (self.x.VM.assert_can_migrate, self.x.VM.migrate_send):
            self.assertFailure(['VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED'],
                               call, vm, token, True, {vdi: sr},
                               {vif: network}, {})
        self.assertEqual(self.host(0), self.x.VM.get_resident_on(vm))

    def test_disabled_destination(self):
        vm, vdi, vif = self.vm_with_disk('to-disabled-pool-host')
        self.x.VM.start_on(vm, self.host(0), False, False)
        y, host, network, sr, token = self.dest()
        self.disable_host(host, y)
        for call in (self.x.VM.assert_can_migrate, self.x.VM.migrate_send):
            self.assertFailure(['HOST_DISABLED', host], call, vm, token,
                               True, {vdi: sr}, {vif: network}, {})

    def test_not_enough_memory_on_the_destination(self):
        vm, vdi, vif = self.vm_with_disk('too-big-for-there')
        self.x.VM.start_on(vm, self.host(0), False, False)
        y, host, network, sr, token = self.dest()
        self.fill_host(host, y)
        there = self.counts(y)
        for call in (self.x.VM.assert_can_migrate, self.x.VM.migrate_send):
            details = self.assertFailure(
                'HOST_NOT_ENOUGH_FREE_MEMORY', call, vm, token, True,
                {vdi: sr}, {vif: network}, {})
            self.assertGreater(int(details[1]), int(details[2]))
        self.assertEqual(there, self.counts(y))
        self.assertEqual(self.host(0), self.x.VM.get_resident_on(vm))

    def test_vif_inferred_from_a_mapped_vif_with_the_same_mac(self):
        vm, vdi, vif = self.vm_with_disk('twin-macs')
        mac = self.x.VIF.get_MAC(vif)
        twin = self.new_vif(vm, device='1', mac=mac)
        y, _, network, sr, token = self.dest()
        for vif_map in ({vif: network}, {twin: network}):
            self.assertEqual('', self.x.VM.assert_can_migrate(
                vm, token, False, {vdi: sr}, vif_map, {}))

    def test_migrate_send_with_missing_map_changes_nothing(self):
        vm, vdi, vif = self.vm_with_disk('stays-home')
        self.x.VM.start_on(vm, self.host(0), False, False)
        y, _, network, sr, token = self.dest()
        self.assertFailure(['VDI_NOT_IN_MAP', vdi], self.x.VM.migrate_send,
                           vm, token, True, {}, {vif: network}, {})
        uuid = self.x.VM.get_uuid(vm)
        self.assertEqual('Running', self.x.VM.get_power_state(vm))
        self.assertFailure(['UUID_INVALID', 'VM', uuid], y.VM.get_by_uuid,
                           uuid)


if __name__ == '__main__':
    unittest.main()
