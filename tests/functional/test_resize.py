"""Resize, cold migration and their confirm/revert through Nova's API, with
xapi moving the disks: on one host, between hosts of one pool (shared SR:
clones; local SRs: copies), across pools (VM.migrate_send of a clone);
each checked on the xapi side, and failures injected at XenAPI steps."""


from xapisim.client import Control

from tests.functional import base
from tests.functional import fixtures as xen_fixtures
from tests.functional import test_leftovers
from tests.functional.test_boot import pattern

MIB = 1024 * 1024
GIB = 1024 * MIB
KEYS = ('nova_uuid', 'nova_resize_of', 'nova_resize_transfer')


def tagged(x, instance_uuid, keys=KEYS):
    """{'VM': [...], 'VDI': [...]}: objects any of ``keys`` ties to the
    instance (the instance itself, a kept original, a clone)."""
    found = {}
    for cls in ('VM', 'VDI'):
        found[cls] = sorted(
            ref for ref, r in getattr(x, cls).get_all_records().items()
            if any(r['other_config'].get(k) == instance_uuid for k in keys)
            and r.get('managed', True))
    return found


def disks(x, vm):
    """{role: (VDI ref, virtual size)} of a VM."""
    found = {}
    for vbd in x.VM.get_VBDs(vm):
        record = x.VBD.get_record(vbd)
        if record['type'] == 'Disk':
            found[record['other_config']['nova_role']] = (
                record['VDI'], int(x.VDI.get_virtual_size(record['VDI'])))
    return found


class _ResizeBase(base.XenAPIFunctionalTestCase):
    # casts stay casts, as between real services: a refusal on the source
    # must not travel back into the destination's prep_resize
    CAST_AS_CALL = False

    def setUp(self):
        super(_ResizeBase, self).setUp()
        self.flags(allow_resize_to_same_host=True)
        self.x = self.xapi.x
        self._create_flavor(name='rs.small', memory_mb=512, vcpu=1, disk=1,
                            ephemeral=1, swap=32)
        self.big = self._create_flavor(name='rs.big', memory_mb=1024,
                                       vcpu=2, disk=2, ephemeral=2, swap=64)
        self.no_eph = self._create_flavor(name='rs.noeph', memory_mb=1024,
                                          vcpu=2, disk=2, ephemeral=0,
                                          swap=0)

    def boot_small(self):
        server = self.boot(self.image_with(pattern(MIB, seed=b'resize')),
                           flavor='rs.small')
        vm, record = self.xapi.vm_of(server['id'])
        return server, vm, record

    def resize(self, server, flavor_id, state='VERIFY_RESIZE'):
        self.api.post_server_action(server['id'],
                                    {'resize': {'flavorRef': flavor_id}})
        return self._wait_for_state_change(server, state)

    def originals(self, server, x=None):
        return tagged(x or self.x, server['id'], ('nova_resize_of',))


class SameHostResizeTest(_ResizeBase):
    """One host: the resized VM is built next to the kept original."""

    def test_resize_confirm(self):
        server, old_vm, record = self.boot_small()
        old = disks(self.x, old_vm)
        data = self.xapi.vdi_bytes(old['root'][0], MIB)
        server = self.resize(server, self.big)
        vm, record = self.xapi.vm_of(server['id'])
        self.assertNotEqual(old_vm, vm)
        self.assertEqual('Running', record['power_state'])
        self.assertEqual('2', record['VCPUs_max'])
        self.assertEqual(str(1024 * MIB), record['memory_static_max'])
        new = disks(self.x, vm)
        self.assertEqual(2 * GIB, new['root'][1])
        self.assertEqual(2 * GIB, new['ephemeral'][1])
        self.assertEqual(64 * MIB, new['swap'][1])
        self.assertEqual(data, self.xapi.vdi_bytes(new['root'][0], MIB))
        # the original is kept, stopped and hidden, for a revert
        self.assertEqual([old_vm], self.originals(server)['VM'])
        self.assertEqual('Halted', self.x.VM.get_power_state(old_vm))
        self.assertTrue(self.x.VM.get_name_label(old_vm).endswith('-orig'))
        self.assertEqual([server['id']], self.compute.manager.driver
                         .list_instance_uuids())
        vif = self.x.VIF.get_uuid(record['VIFs'][0])
        self.assertIn(vif, self.xapi.isolation_rules())
        server = self._confirm_resize(server)
        self.assertEqual({'VM': [], 'VDI': []}, self.originals(server))
        self.assertFalse(self.x.VM.get_all_records_where(
            'field "uuid" = "%s"' % self.x.VM.get_uuid(vm)) == {})
        self.assertEqual('Running', self.x.VM.get_power_state(vm))
        self.assertEqual(sorted(v for v, _ in new.values()),
                         tagged(self.x, server['id'])['VDI'])

    def test_resize_revert_brings_the_original_back(self):
        server, old_vm, record = self.boot_small()
        before = tagged(self.x, server['id'])
        vif = self.x.VIF.get_uuid(record['VIFs'][0])
        server = self.resize(server, self.big)
        self.api.post_server_action(server['id'], {'revertResize': None})
        server = self._wait_for_state_change(server, 'ACTIVE')
        self._wait_for_migration_status(server, ['reverted'])
        self.assertEqual('rs.small', server['flavor']['original_name'])
        vm, record = self.xapi.vm_of(server['id'])
        self.assertEqual(old_vm, vm)
        self.assertEqual('Running', record['power_state'])
        self.assertEqual('1', record['VCPUs_max'])
        self.assertEqual(server['OS-EXT-SRV-ATTR:instance_name'],
                         record['name_label'])
        self.assertEqual(before, tagged(self.x, server['id']))
        self.assertEqual([vif], list(self.xapi.isolation_rules()))

    def test_a_cold_migration_never_lands_on_the_same_host(self):
        """A compute is one XenServer host: a cold migration is a move to
        another one, even where resizes may stay (Tempest's cold migration
        test checks that the host changed); with no other host, Nova finds
        none and the server keeps running where it was."""
        server, vm, record = self.boot_small()
        node = self._get_provider_uuid_by_host(self.compute.host)
        self.assertNotIn('COMPUTE_SAME_HOST_COLD_MIGRATE',
                         self._get_provider_traits(node))
        domid = record['domid']
        self.api.post_server_action(server['id'], {'migrate': None})
        self._wait_for_migration_status(server, ['error'])
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual(self.compute.host, server['OS-EXT-SRV-ATTR:host'])
        event = self._wait_for_instance_action_event(
            server, 'migrate', 'conductor_migrate_server', 'Error')
        self.assertIn('NoValidHost', event['traceback'] or '')
        vm_now, record = self.xapi.vm_of(server['id'])
        self.assertEqual((vm, 'Running', domid),
                         (vm_now, record['power_state'], record['domid']))
        self.assertEqual({'VM': [], 'VDI': []}, self.originals(server))

    def test_delete_while_verifying_leaves_nothing(self):
        server, _, _ = self.boot_small()
        server = self.resize(server, self.big)
        self._delete_server(server)
        self.assertEqual({'VM': [], 'VDI': []}, tagged(self.x, server['id']))
        self.assertEqual({}, self.xapi.isolation_rules())
        # the confirm Nova does first clears the task state: the VM's halt
        # is still no "shutdown by itself" (a stop racing the delete)
        self.assertNotIn('Instance shutdown by itself',
                         self.stdlog.logger.output)

    def test_a_stopped_server_stays_stopped(self):
        server, _, _ = self.boot_small()
        server = self._stop_server(server)
        server = self.resize(server, self.big)
        vm, record = self.xapi.vm_of(server['id'])
        self.assertEqual('Halted', record['power_state'])
        self.assertEqual('2', record['VCPUs_max'])
        self.api.post_server_action(server['id'], {'confirmResize': None})
        server = self._wait_for_state_change(server, 'SHUTOFF')
        self.assertEqual('Halted', self.x.VM.get_power_state(vm))

    def test_a_smaller_disk_is_refused_before_anything_changes(self):
        server, vm, _ = self.boot_small()
        before = tagged(self.x, server['id'])
        self.api.post_server_action(server['id'],
                                    {'resize': {'flavorRef': self.no_eph}})
        self._wait_for_migration_status(server, ['error'])
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assertIn('xapi cannot shrink a disk', self.stdlog.logger.output)
        self.assertEqual('Running', self.x.VM.get_power_state(vm))
        self.assertEqual(before, tagged(self.x, server['id']))
        self.assertEqual(0, self.xapi.control.calls().get(
            'VM.clean_shutdown', 0))

    def test_a_failure_on_the_source_puts_everything_back(self):
        server, vm, record = self.boot_small()
        before = tagged(self.x, server['id'])
        vif = self.x.VIF.get_uuid(record['VIFs'][0])
        # the VM's new name: after its disks were retagged
        self.xapi.control.fail('VM.set_name_label',
                               ['INTERNAL_ERROR', 'db locked'])
        self.api.post_server_action(server['id'],
                                    {'resize': {'flavorRef': self.big}})
        self._wait_for_migration_status(server, ['error'])
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assertIn('resize failed at step "keep the original for a '
                      'revert"', self.stdlog.logger.output)
        record = self.x.VM.get_record(vm)
        self.assertEqual('Running', record['power_state'])
        self.assertEqual(server['id'], record['other_config']['nova_uuid'])
        self.assertEqual(before, tagged(self.x, server['id']))
        self.assertEqual({'VM': [], 'VDI': []}, self.originals(server))
        self.assertEqual([vif], list(self.xapi.isolation_rules()))

    def test_a_failed_copy_leaves_only_the_original(self):
        server, vm, _ = self.boot_small()
        before = tagged(self.x, server['id'])
        self.xapi.control.fail('VDI.clone', [
            'SR_BACKEND_FAILURE_44', '', 'no space left on the SR', ''],
            nth=2)
        self.api.post_server_action(server['id'],
                                    {'resize': {'flavorRef': self.big}})
        server = self._wait_for_state_change(server, 'ERROR')
        self.assertIn('copy the ephemeral disk', server['fault']['message'])
        self.assertIn('SR_BACKEND_FAILURE_44', server['fault']['message'])
        # nothing the destination made is left; the original is kept
        self.assertEqual({'VM': [], 'VDI': []},
                         tagged(self.x, server['id'], ('nova_uuid',)))
        self.assertEqual(before, self.originals(server))
        # deleting the instance removes the original too
        self._delete_server(server)
        self.assertEqual({'VM': [], 'VDI': []}, tagged(self.x, server['id']))


class DestinationFailureTest(_ResizeBase):
    """A failure at each XenAPI step of the destination: the server goes
    to ERROR with the step and xapi's reason; what the destination made is
    gone, the original is kept (hidden) until the server is deleted."""

    def _fail_at(self, message, step, nth=1):
        server, vm, _ = self.boot_small()
        kept = tagged(self.x, server['id'])
        self.xapi.control.fail(message, ['INTERNAL_ERROR', 'injected'],
                               nth=nth)
        self.api.post_server_action(server['id'],
                                    {'resize': {'flavorRef': self.big}})
        server = self._wait_for_state_change(server, 'ERROR')
        self.assertIn('at step "%s"' % step, server['fault']['message'])
        self.assertIn('INTERNAL_ERROR', server['fault']['message'])
        self.assertEqual({'VM': [], 'VDI': []},
                         tagged(self.x, server['id'], ('nova_uuid',)))
        self.assertEqual(kept, self.originals(server))
        self.assertEqual({}, self.xapi.isolation_rules())
        self._delete_server(server)
        self.assertEqual({'VM': [], 'VDI': []}, tagged(self.x, server['id']))

    def test_growing_the_root_disk(self):
        self._fail_at('VDI.resize', 'grow the root disk')

    def test_creating_the_swap_disk(self):
        # the VDI.create of the new swap: the first one of the resize
        self._fail_at('VDI.create', 'create the swap disk')

    def test_creating_the_vm(self):
        self._fail_at('VM.create', 'create the VM')

    def test_starting_the_vm(self):
        self._fail_at('VM.start_on', 'start the VM')


class _TwoHostResize(_ResizeBase):
    xapisim_options = dict(_ResizeBase.xapisim_options, hosts=2)
    local_srs = False

    def _setup_compute_service(self):
        if self.local_srs:
            self.use_local_srs()
        return super(_TwoHostResize, self)._setup_compute_service()

    def setUp(self):
        super(_TwoHostResize, self).setUp()
        hosts = self.xapi.pool['hosts']
        self.flags(host_uuid=hosts[1]['uuid'], group='xenserver')
        self.second = self._start_compute(hosts[1]['name_label'])
        self.names = [h['name_label'] for h in hosts]
        self.refs = [self.x.host.get_by_uuid(h['uuid']) for h in hosts]

    def migrate(self):
        server, vm, record = self.boot_small()
        source = server['OS-EXT-SRV-ATTR:host']
        target = [n for n in self.names if n != source][0]
        root = disks(self.x, vm)['root'][0]
        data = self.xapi.vdi_bytes(root, MIB)
        self.xapi.control.reset_calls()
        server = self._migrate_server(server, host=target)
        self.assertEqual(target, server['OS-EXT-SRV-ATTR:host'])
        new_vm, record = self.xapi.vm_of(server['id'])
        ref = self.refs[self.names.index(target)]
        self.assertEqual('Running', record['power_state'])
        self.assertEqual(ref, record['resident_on'])
        new_root = disks(self.x, new_vm)['root'][0]
        self.assertEqual(data, self.xapi.vdi_bytes(new_root, MIB))
        return server, vm, new_vm, ref, root, new_root


class SharedSRMigrationTest(_TwoHostResize):
    def test_cold_migration_clones_on_the_shared_sr(self):
        server, vm, new_vm, ref, root, new_root = self.migrate()
        calls = self.xapi.control.calls()
        self.assertGreaterEqual(calls.get('VDI.clone', 0), 1)
        self.assertEqual(0, calls.get('VDI.copy', 0))
        self.assertEqual(self.x.VDI.get_SR(root), self.x.VDI.get_SR(new_root))
        vif = self.x.VIF.get_uuid(self.x.VM.get_VIFs(new_vm)[0])
        self.assertEqual([vif], list(self.xapi.isolation_rules(ref)))
        server = self._confirm_resize(server)
        self.assertEqual({'VM': [], 'VDI': []}, self.originals(server))
        self.assertEqual([new_vm], tagged(self.x, server['id'])['VM'])


class LocalSRMigrationTest(_TwoHostResize):
    local_srs = True

    def test_cold_migration_copies_between_local_srs(self):
        server, vm, new_vm, ref, root, new_root = self.migrate()
        calls = self.xapi.control.calls()
        self.assertGreaterEqual(calls.get('VDI.copy', 0), 1)
        self.assertEqual(0, calls.get('VDI.clone', 0))
        sr = self.x.VDI.get_SR(new_root)
        self.assertNotEqual(self.x.VDI.get_SR(root), sr)
        self.assertFalse(self.x.SR.get_shared(sr))
        self.assertIn(ref, [self.x.PBD.get_host(p)
                            for p in self.x.SR.get_PBDs(sr)])
        self.assertEqual(new_vm, self.xapi.vm_of(server['id'])[0])

    def test_revert_removes_the_copies(self):
        server, vm, new_vm, ref, root, new_root = self.migrate()
        source_ref = self.x.VM.get_affinity(vm)
        self.api.post_server_action(server['id'], {'revertResize': None})
        server = self._wait_for_state_change(server, 'ACTIVE')
        self._wait_for_migration_status(server, ['reverted'])
        self.assertEqual(vm, self.xapi.vm_of(server['id'])[0])
        record = self.x.VM.get_record(vm)
        self.assertEqual('Running', record['power_state'])
        self.assertEqual(source_ref, record['resident_on'])
        self.assertNotIn(new_root, self.x.VDI.get_all())
        self.assertEqual({}, self.xapi.isolation_rules(ref))


class _CrossPool(_ResizeBase):
    """Two pools of one host each: the disks go with VM.migrate_send of a
    clone, sent by the destination with a session the source handed it."""
    xapisim_options = dict(_ResizeBase.xapisim_options, pools=2)

    def setUp(self):
        super(_CrossPool, self).setUp()
        self.server, self.vm, _ = self.boot_small()
        self.source = self.server['OS-EXT-SRV-ATTR:host']
        other = self.xapi.world['pools'][1]
        self.flags(connection_url=other['master'],
                   host_uuid=other['hosts'][0]['uuid'], group='xenserver')
        self.target = other['hosts'][0]['name_label']
        self.second = self._start_compute(self.target)
        self.y = self.xapi.login(other['master']).xenapi
        self.root = disks(self.x, self.vm)['root'][0]
        self.data = self.xapi.vdi_bytes(self.root, MIB)

    def rules_in(self, x):
        return xen_fixtures.rules_in(x)


class CrossPoolResizeTest(_CrossPool):

    def test_cold_migration_to_the_other_pool_then_confirm(self):
        server = self._migrate_server(self.server, host=self.target)
        self.assertEqual(self.target, server['OS-EXT-SRV-ATTR:host'])
        there = tagged(self.y, server['id'])
        (vm,) = there['VM']
        record = self.y.VM.get_record(vm)
        self.assertEqual('Running', record['power_state'])
        # a cold migration keeps the flavor
        self.assertEqual('1', record['VCPUs_max'])
        root, size = disks(self.y, vm)['root']
        self.assertEqual(1 * GIB, size)
        self.assertEqual(32 * MIB, disks(self.y, vm)['swap'][1])
        self.assertEqual(self.data, self.xapi.vdi_bytes_in(
            self.xapi.login(self.xapi.world['pools'][1]['master']), root,
            MIB))
        vif = self.y.VIF.get_uuid(record['VIFs'][0])
        self.assertEqual([vif], list(self.rules_in(self.y)))
        # the source pool keeps only the original, no clone
        self.assertEqual([self.vm], tagged(self.x, server['id'])['VM'])
        self.assertEqual({'VM': [], 'VDI': []}, tagged(
            self.x, server['id'], ('nova_resize_transfer',)))
        self._confirm_resize(server)
        self.assertEqual({'VM': [], 'VDI': []}, tagged(self.x, server['id']))
        self.assertEqual({}, self.rules_in(self.x))

    def test_resize_to_the_other_pool(self):
        # the source's compute disabled: the scheduler picks the other pool
        service = self.api.get_services(binary='nova-compute',
                                        host=self.source)[0]
        self.api.put_service(service['id'], {'status': 'disabled'})
        server = self.resize(self.server, self.big)
        self.assertEqual(self.target, server['OS-EXT-SRV-ATTR:host'])
        (vm,) = tagged(self.y, server['id'])['VM']
        record = self.y.VM.get_record(vm)
        self.assertEqual('Running', record['power_state'])
        self.assertEqual('2', record['VCPUs_max'])
        self.assertEqual(str(1024 * MIB), record['memory_static_max'])
        found = disks(self.y, vm)
        self.assertEqual(2 * GIB, found['root'][1])
        self.assertEqual(2 * GIB, found['ephemeral'][1])
        # swap is made anew at its new size, never sent
        self.assertEqual(64 * MIB, found['swap'][1])
        self.assertEqual(self.data, self.xapi.vdi_bytes_in(
            self.xapi.login(self.xapi.world['pools'][1]['master']),
            found['root'][0], MIB))
        self._confirm_resize(server)
        self.assertEqual({'VM': [], 'VDI': []}, tagged(self.x, server['id']))

    def test_revert_from_the_other_pool(self):
        server = self._migrate_server(self.server, host=self.target)
        self.api.post_server_action(server['id'], {'revertResize': None})
        server = self._wait_for_state_change(server, 'ACTIVE')
        self._wait_for_migration_status(server, ['reverted'])
        self.assertEqual(self.source, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual({'VM': [], 'VDI': []}, tagged(self.y, server['id']))
        self.assertEqual({}, self.rules_in(self.y))
        record = self.x.VM.get_record(self.vm)
        self.assertEqual('Running', record['power_state'])
        self.assertEqual(self.data, self.xapi.vdi_bytes(self.root, MIB))

    def test_delete_while_verifying_leaves_nothing_in_either_pool(self):
        server = self._migrate_server(self.server, host=self.target)
        self._delete_server(server)
        self.assertEqual({'VM': [], 'VDI': []}, tagged(self.x, server['id']))
        self.assertEqual({'VM': [], 'VDI': []}, tagged(self.y, server['id']))
        self.assertEqual({}, self.rules_in(self.x))
        self.assertEqual({}, self.rules_in(self.y))

    def test_a_failed_clone_on_the_source_keeps_the_server_there(self):
        self.xapi.control.fail('VM.clone', ['SR_BACKEND_FAILURE_44', '',
                                            'no space left', ''])
        self.api.post_server_action(self.server['id'],
                                    {'migrate': {'host': self.target}})
        self._wait_for_migration_status(self.server, ['error'])
        server = self._wait_for_state_change(self.server, 'ACTIVE')
        self.assertEqual(self.source, server['OS-EXT-SRV-ATTR:host'])
        self.assertIn('clone the stopped VM for the other pool',
                      self.stdlog.logger.output)
        record = self.x.VM.get_record(self.vm)
        self.assertEqual('Running', record['power_state'])
        self.assertEqual(server['id'], record['other_config']['nova_uuid'])
        self.assertEqual({'VM': [], 'VDI': []}, tagged(
            self.x, server['id'], ('nova_resize_of', 'nova_resize_transfer')))
        self.assertEqual({'VM': [], 'VDI': []}, tagged(self.y, server['id']))

    def test_an_original_left_is_removed_at_start_up(self):
        self.xapi.control.fail('VM.migrate_send/copy', [
            'SR_BACKEND_FAILURE_44', '', 'no space left', ''])
        self.api.post_server_action(self.server['id'],
                                    {'migrate': {'host': self.target}})
        server = self._wait_for_state_change(self.server, 'ERROR')
        self._delete_server(server)
        self.assertEqual([self.vm], self.originals(server)['VM'])
        # the source's nova-compute restarts (with its own settings): it
        # finds the original and its instance deleted
        self.flags(connection_url=self.xapi.url,
                   host_uuid=self.xapi.pool['hosts'][0]['uuid'],
                   group='xenserver')
        self.restart_compute_service(self.compute)
        self.assertEqual({'VM': [], 'VDI': []}, tagged(self.x, server['id']))

    def test_a_failed_send_leaves_nothing_in_either_pool(self):
        self.xapi.control.fail('VM.migrate_send/copy', [
            'SR_BACKEND_FAILURE_44', '', 'no space left', ''])
        self.api.post_server_action(self.server['id'],
                                    {'migrate': {'host': self.target}})
        server = self._wait_for_state_change(self.server, 'ERROR')
        self.assertIn('send the disks over', server['fault']['message'])
        self.assertEqual({'VM': [], 'VDI': []}, tagged(self.y, server['id']))
        # the source pool: the original alone, no clone
        self.assertEqual({'VM': [], 'VDI': []}, tagged(
            self.x, server['id'], ('nova_resize_transfer', 'nova_uuid')))
        self.assertEqual([self.vm], self.originals(server)['VM'])
        # deleted at the destination: no call reaches the source, whose
        # reclaimer removes the original on its next pass
        self._delete_server(server)
        self.assertEqual([self.vm], self.originals(server)['VM'])
        self.compute.manager.driver._reclaimer.run_once()
        self.assertEqual({'VM': [], 'VDI': []}, tagged(self.x, server['id']))


class CrossPoolSourceFailureTest(test_leftovers.Reclaiming, _CrossPool):
    """A failure while the source prepares the clone it sends to the other
    pool: the server stays on the source, running, and nothing of the
    clone is left (at once, or once the reclaimer has passed)."""

    def _fail_while_preparing(self, step, *failures):
        before = tagged(self.x, self.server['id'])
        for message, nth in failures:
            self.xapi.control.fail(message, ['INTERNAL_ERROR', 'injected'],
                                   nth=nth)
        self.api.post_server_action(self.server['id'],
                                    {'migrate': {'host': self.target}})
        base.wait_for_migrations(self, self.server['id'], ['error'])
        server = self._wait_for_state_change(self.server, 'ACTIVE')
        self.assertEqual(self.source, server['OS-EXT-SRV-ATTR:host'])
        self.assertIn('resize failed at step "%s"' % step,
                      self.stdlog.logger.output)
        record = self.x.VM.get_record(self.vm)
        self.assertEqual('Running', record['power_state'])
        self.assertEqual(server['id'], record['other_config']['nova_uuid'])
        base.reclaimer_passes(self, self.compute.manager.driver)
        self.assertEqual({'VM': [], 'VDI': []}, tagged(
            self.x, server['id'], ('nova_resize_of', 'nova_resize_transfer')))
        self.assertEqual(before, tagged(self.x, server['id']))
        self.assertEqual({'VM': [], 'VDI': []}, tagged(self.y, server['id']))
        self._delete_server(server)
        self.assertEqual({'VM': [], 'VDI': []}, tagged(self.x, server['id']))

    def test_a_failed_removal_of_the_clone_s_swap(self):
        # after the clone's root and ephemeral disks were re-tagged for
        # the transfer
        self._fail_while_preparing(
            'clone the stopped VM for the other pool', ('VBD.destroy', 1))

    def test_a_failed_retag_of_the_clone_s_second_disk(self):
        # three for the original's disks, then the clone's root disk
        self._fail_while_preparing(
            'clone the stopped VM for the other pool',
            ('VDI.set_other_config', 5))

    def test_a_clone_the_undo_cannot_destroy_is_reclaimed(self):
        # the session for the destination cannot be opened; the clone's
        # removal is refused once
        self._fail_while_preparing(
            'open a session for the destination',
            ('session.login_with_password', 1), ('VM.destroy', 1))


class CrossPoolReceiveFailureTest(test_leftovers.Reclaiming, _CrossPool):
    """A failure once the clone has reached the destination's pool: the
    server goes to ERROR, nothing of the clone stays in either pool."""

    def test_a_failure_taking_the_disks_of_the_clone(self):
        other = self.xapi.world['pools'][1]
        dest = Control(other['master'], self.xapi.username,
                       self.xapi.password)
        # the clone's record, once its disks are taken
        dest.fail('VM.destroy', ['INTERNAL_ERROR', 'injected'])
        self.api.post_server_action(self.server['id'],
                                    {'migrate': {'host': self.target}})
        server = self._wait_for_state_change(self.server, 'ERROR')
        self.assertIn('take the disks of the clone',
                      server['fault']['message'])
        base.reclaimer_passes(self, self.computes[self.target].manager.driver)
        self.assertEqual({'VM': [], 'VDI': []}, tagged(self.y, server['id']))
        # the source pool: the original alone
        self.assertEqual([self.vm], self.originals(server)['VM'])
        self.assertEqual({'VM': [], 'VDI': []}, tagged(
            self.x, server['id'], ('nova_resize_transfer', 'nova_uuid')))
        self._delete_server(server)
        self.assertEqual({'VM': [], 'VDI': []}, tagged(self.y, server['id']))


class SourceUndoFailureTest(test_leftovers.Reclaiming, _ResizeBase):
    """The undo of a failed resize on the source cannot give the original
    back at once: the reclaimer does, and the server works on."""

    def test_an_original_xapi_would_not_give_back_at_once(self):
        server, vm, record = self.boot_small()
        before = tagged(self.x, server['id'])
        vif = self.x.VIF.get_uuid(record['VIFs'][0])
        # the VM's new name fails; so does the undo's first try to tag
        # the VM as the instance again
        self.xapi.control.fail('VM.set_name_label',
                               ['INTERNAL_ERROR', 'db locked'])
        self.xapi.control.fail('VM.set_other_config',
                               ['INTERNAL_ERROR', 'db locked'], nth=2)
        self.api.post_server_action(server['id'],
                                    {'resize': {'flavorRef': self.big}})
        base.wait_for_migrations(self, server['id'], ['error'])
        base.reclaimer_passes(self, self.compute.manager.driver)
        record = self.x.VM.get_record(vm)
        self.assertEqual('Running', record['power_state'])
        self.assertEqual(server['id'], record['other_config']['nova_uuid'])
        self.assertEqual(server['OS-EXT-SRV-ATTR:instance_name'],
                         record['name_label'])
        self.assertEqual(before, tagged(self.x, server['id']))
        self.assertEqual([vif], list(self.xapi.isolation_rules()))
        server = self._wait_for_state_change(server, 'ACTIVE')
        self._stop_server(server)
        self.assertEqual('Halted', self.x.VM.get_power_state(vm))
