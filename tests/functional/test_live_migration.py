"""Live migration inside a XenAPI pool (XenMotion) through Nova's API: two
nova-computes, one for each host of a two-host simulated pool, checked on
the xapi side and in both dom0s (isolation rules)."""

import json
import logging
import os
import subprocess
import sys
import time

import fixtures
from nova import context as nova_context
from nova import objects
from nova.objects import base as obj_base
from nova.tests.functional.api import client

import XenAPI
from xapisim.client import Control

from nova_xen import errors

from tests.functional import base
from tests.functional import fixtures as xen_fixtures
from tests import records
from tests.functional.test_boot import pattern

MIB = 1024 * 1024


def _read_in_a_process_with_nova_objects_only(primitive):
    """What nova-conductor (which never loads this driver) makes of a
    serialized migrate data object: [class, block_migration,
    is_shared_block_storage, is_shared_instance_path]."""
    script = (
        'import json, sys\n'
        'from nova import objects\n'
        'from nova.objects import base\n'
        'objects.register_all()\n'
        'o = base.NovaObjectSerializer().deserialize_entity(None, '
        'json.load(sys.stdin))\n'
        'print(json.dumps([type(o).__name__, o.block_migration, '
        'o.is_shared_block_storage, o.is_shared_instance_path]))\n')
    return subprocess.run(
        [sys.executable, '-c', script], input=json.dumps(primitive).encode(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True,
        cwd=os.path.sep).stdout


def live_migrate(test, **body):
    """POST os-migrateLive (auto block migration, any host)."""
    body.setdefault('host', None)
    body.setdefault('block_migration', 'auto')
    try:
        test.api.post_server_action(test.server['id'],
                                    {'os-migrateLive': body})
    except client.OpenStackApiException as exc:
        # nova's test harness makes the casts calls: a refusal comes back
        # through the API call itself (a real nova-api has answered 202)
        return exc
    return None


class _TwoHosts(base.XenAPIFunctionalTestCase):
    xapisim_options = dict(base.XenAPIFunctionalTestCase.xapisim_options,
                           hosts=2)

    def setUp(self):
        super(_TwoHosts, self).setUp()
        self.hosts = self.xapi.pool['hosts']
        self.first = self.compute
        # each nova-compute reads [xenserver]host_uuid at start
        self.flags(host_uuid=self.hosts[1]['uuid'], group='xenserver')
        self.second = self._start_compute(self.hosts[1]['name_label'])
        self.x = self.xapi.x
        self.refs = [self.x.host.get_by_uuid(h['uuid']) for h in self.hosts]
        self.server = self.boot(self.image_with(pattern(MIB)))
        self.source = self.server['OS-EXT-SRV-ATTR:host']
        self.vm, record = self.xapi.vm_of(self.server['id'])
        self.src_ref = record['resident_on']
        self.dst_ref = [r for r in self.refs if r != self.src_ref][0]
        self.vif_uuid = self.x.VIF.get_uuid(record['VIFs'][0])

    def driver(self, service_host):
        return self.computes[service_host].manager.driver

    def rules(self, host_ref):
        return self.xapi.isolation_rules(host_ref)

    def live_migrate(self, **body):
        return live_migrate(self, **body)

    def assertStaysOnTheSource(self):
        server = self._wait_for_state_change(self.server, 'ACTIVE')
        self.assertEqual(self.source, server['OS-EXT-SRV-ATTR:host'])
        record = self.x.VM.get_record(self.vm)
        self.assertEqual('Running', record['power_state'])
        self.assertEqual(self.src_ref, record['resident_on'])
        self.assertIn(self.vif_uuid, self.rules(self.src_ref))
        self.assertEqual({}, self.rules(self.dst_ref))
        self.assertEqual(1, len(self.x.VM.get_all_records_where(
            'field "name__label" = "%s"' % record['name_label'])))
        return server


class LiveMigrationTest(_TwoHosts):

    def test_xenmotion_to_the_other_host_of_the_pool(self):
        self.assertIn(self.vif_uuid, self.rules(self.src_ref))
        vdis = set(self.xapi.objects_of(self.server['id'])['VDI'])
        self.xapi.control.reset_calls()
        server = self._live_migrate(self.server)
        dest = server['OS-EXT-SRV-ATTR:host']
        self.assertNotEqual(self.source, dest)
        record = self.x.VM.get_record(self.vm)
        # xapi moved the running VM, not its disks
        self.assertEqual('Running', record['power_state'])
        self.assertEqual(self.dst_ref, record['resident_on'])
        self.assertEqual(self.dst_ref, record['affinity'])
        self.assertEqual(vdis, set(self.xapi.objects_of(
            self.server['id'])['VDI']))
        calls = self.xapi.control.calls()
        self.assertEqual(1, calls.get('VM.pool_migrate'))
        self.assertNotIn('VM.migrate_send', calls)
        # neither compute told Nova the VM stopped while it moved
        self.assertNotIn('VM Stopped (Lifecycle Event)',
                         self.stdlog.logger.output)
        self.assertIn('isolation rules in place on the destination',
                      self.stdlog.logger.output)
        # the rules followed the VIF to the destination's dom0
        self.assertEqual([self.vif_uuid], list(self.rules(self.dst_ref)))
        self.assertEqual({}, self.rules(self.src_ref))
        domid = record['domid']
        self.assertEqual(sorted(['vif%s.0' % domid, 'tap%s.0' % domid]),
                         sorted(self.rules(self.dst_ref)[self.vif_uuid]))
        # each compute knows where the instance is
        self.assertTrue(self.driver(dest).instance_exists(
            self._instance()))
        self.assertFalse(self.driver(self.source).instance_exists(
            self._instance()))
        migration = self._wait_for_migration_status(self.server,
                                                    ['completed'])
        self.assertEqual(dest, migration['dest_compute'])
        # the destination drives it from now on, also when halted
        self.api.post_server_action(self.server['id'], {'os-stop': None})
        self._wait_for_state_change(self.server, 'SHUTOFF')
        self.api.post_server_action(self.server['id'], {'os-start': None})
        self._wait_for_state_change(self.server, 'ACTIVE')
        self.assertEqual(self.dst_ref, self.x.VM.get_resident_on(self.vm))
        self._delete_server(server)
        self.assertEqual({'VM': [], 'VDI': [], 'VBD': [], 'VIF': []},
                         self.xapi.objects_of(self.server['id']))
        self.assertEqual({}, self.rules(self.dst_ref))

    def test_and_back_again(self):
        server = self._live_migrate(self.server)
        self.assertNotEqual(self.source, server['OS-EXT-SRV-ATTR:host'])
        server = self._live_migrate(self.server)
        self.assertEqual(self.source, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual(self.src_ref, self.x.VM.get_resident_on(self.vm))
        self.assertEqual([self.vif_uuid], list(self.rules(self.src_ref)))
        self.assertEqual({}, self.rules(self.dst_ref))

    def test_a_failure_half_way_leaves_the_instance_on_the_source(self):
        # half-way through the memory copy
        self.xapi.control.fail('VM.pool_migrate/memory', ['INTERNAL_ERROR',
                                                          'migration broke'])
        self.live_migrate()
        self._wait_for_migration_status(self.server, ['error'])
        self.assertStaysOnTheSource()
        # the instance's newest fault (Nova's API shows faults of ERROR
        # servers only; this one is in its database, for the operator)
        faults = objects.InstanceFaultList.get_latest_by_instance_uuids(
            nova_context.get_admin_context(), [self.server['id']])
        self.assertEqual(1, len(faults))
        self.assertIn('Live migration failed at step "move the VM (VM.'
                      'pool_migrate)"', faults[0].message)
        self.assertIn('INTERNAL_ERROR [migration broke]', faults[0].message)
        self.assertEqual(500, faults[0].code)
        self.assertTrue(self.driver(self.source).instance_exists(
            self._instance()))

    def test_a_lost_answer_of_a_move_that_happened_finishes_it(self):
        # xapi moved the VM, but its answer never reached the source
        source = self.computes[self.source].manager.driver._session
        real = source.call_async

        def lost_answer(method, *args, **kwargs):
            result = real(method, *args, **kwargs)
            if method == 'VM.pool_migrate':
                raise errors.XenAPIConnectionError(url='x', reason='reset')
            return result
        self.useFixture(fixtures.MockPatchObject(source, 'call_async',
                                                 lost_answer))
        server = self._live_migrate(self.server)
        self.assertNotEqual(self.source, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual(self.dst_ref, self.x.VM.get_resident_on(self.vm))
        self.assertIn('but the VM has moved: finishing the migration',
                      self.stdlog.logger.output)

    def test_a_paused_server_is_refused_with_a_sentence(self):
        self.api.post_server_action(self.server['id'], {'pause': None})
        self._wait_for_state_change(self.server, 'PAUSED')
        self.live_migrate()
        self._wait_for_migration_status(self.server, ['error'])
        self.assertIn('xapi live-migrates only running VMs',
                      self.stdlog.logger.output)
        server = self._wait_for_state_change(self.server, 'PAUSED')
        self.assertEqual(self.source, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual(self.src_ref, self.x.VM.get_resident_on(self.vm))

    def test_a_guest_without_pv_drivers_is_refused(self):
        # from its next boot the guest has no PV drivers: xapi would not
        # XenMotion it
        self.x_guest(pv_drivers=False)
        self._reboot_server(self.server, hard=True)
        self.live_migrate()
        self._wait_for_migration_status(self.server, ['error'])
        self.assertIn('an HVM guest needs its PV drivers for XenMotion',
                      self.stdlog.logger.output)
        self.assertStaysOnTheSource()

    def test_a_destination_without_the_memory_is_refused(self):
        free = int(self.x.host.compute_free_memory(self.dst_ref))
        hog = self.x.VM.create(records.vm_record(
            name='not-nova', memory_mib=free // MIB - 256))
        self.x.VM.start_on(hog, self.dst_ref, False, False)
        self.addCleanup(self.x.VM.destroy, hog)
        self.addCleanup(self.x.VM.hard_shutdown, hog)
        left = int(self.x.host.compute_free_memory(self.dst_ref)) // MIB
        self.assertLess(left, 512)
        self.live_migrate()
        self._wait_for_migration_status(self.server, ['error'])
        self.assertIn('has %d MiB of memory free; the instance needs 512 '
                      'MiB' % left, self.stdlog.logger.output)
        self.assertStaysOnTheSource()

    def x_guest(self, **behaviour):
        self.xapi.control.guest(self.x.VM.get_uuid(self.vm), **behaviour)

    def test_disks_the_destination_cannot_see_are_refused(self):
        # a disk on the source host's local SR, attached behind Nova's back
        local = [sr for sr, rec in self.x.SR.get_all_records().items()
                 if not rec['shared'] and rec['type'] == 'ext' and any(
                     self.x.PBD.get_host(p) == self.src_ref
                     for p in rec['PBDs'])][0]
        vdi = self.x.VDI.create({
            'SR': local, 'virtual_size': str(MIB), 'type': 'user',
            'sharable': False, 'read_only': False, 'other_config': {},
            'name_label': 'local', 'name_description': '', 'sm_config': {},
            'xenstore_data': {}, 'tags': []})
        vbd = self.x.VBD.create({
            'VM': self.vm, 'VDI': vdi, 'userdevice': '5', 'bootable': False,
            'mode': 'RW', 'type': 'Disk', 'empty': False,
            'unpluggable': True, 'other_config': {},
            'qos_algorithm_type': '', 'qos_algorithm_params': {}})
        self.addCleanup(self.x.VDI.destroy, vdi)
        self.addCleanup(self.x.VBD.destroy, vbd)
        self.live_migrate(block_migration=False)
        self._wait_for_migration_status(self.server, ['error'])
        dest_name = self.x.host.get_hostname(self.dst_ref)
        self.assertIn('the disks of the instance are on SR %s, which host '
                      '%s does not see: only a block migration (or "auto") '
                      'can move them' % (self.x.SR.get_uuid(local),
                                         dest_name),
                      self.stdlog.logger.output)
        self.assertStaysOnTheSource()

    def test_a_block_migration_onto_a_shared_sr_copies_nothing(self):
        # the destination sees the disks' shared SR: XenMotion moves the
        # VM alone, whatever the request said
        vdis = set(self.xapi.objects_of(self.server['id'])['VDI'])
        self.xapi.control.reset_calls()
        self.live_migrate(block_migration=True)
        self._wait_for_migration_status(self.server, ['completed'])
        self.assertEqual(self.dst_ref, self.x.VM.get_resident_on(self.vm))
        self.assertEqual(vdis, set(self.xapi.objects_of(
            self.server['id'])['VDI']))
        calls = self.xapi.control.calls()
        self.assertEqual(1, calls.get('VM.pool_migrate'))
        self.assertNotIn('VM.migrate_send', calls)

    def _aggregates(self, rp_uuid):
        return set(self.placement.get(
            '/resource_providers/%s/aggregates' % rp_uuid,
            version='1.19').body['aggregates'])

    def test_both_hosts_are_in_their_pools_placement_aggregate(self):
        pool = self.xapi.pool['uuid']
        for host in self.hosts:
            self.assertEqual({pool}, self._aggregates(host['uuid']))
        # nova-api's own aggregates, mirrored into placement, stay
        agg = self.api.post_aggregate({'aggregate': {'name': 'rack-1'}})
        self.api.add_host_to_aggregate(agg['id'], self.source)
        for service in self.computes.values():
            service.manager.update_available_resource(
                nova_context.get_admin_context())
        src_uuid = [h['uuid'] for h in self.hosts
                    if self.x.host.get_by_uuid(h['uuid']) == self.src_ref][0]
        self.assertEqual({pool, agg['uuid']}, self._aggregates(src_uuid))

    def test_what_goes_to_the_conductor_is_nova_s_own(self):
        # nova-conductor never loads this driver: what the destination's
        # check returns must deserialize in a process with nova's objects
        # only
        dest = [h for h in self.computes if h != self.source][0]
        src_node = objects.ComputeNode.get_by_host_and_nodename(
            nova_context.get_admin_context(), self.source,
            self._instance().node)
        data = self.driver(dest).check_can_live_migrate_destination(
            nova_context.get_admin_context(), self._instance(),
            obj_base.obj_to_primitive(src_node), None, None, False)
        primitive = obj_base.NovaObjectSerializer().serialize_entity(
            nova_context.get_admin_context(), data)
        out = _read_in_a_process_with_nova_objects_only(primitive)
        self.assertEqual(['LibvirtLiveMigrateData', False, True, True],
                         json.loads(out))
        self.assertNotIn('nova_xen', json.dumps(primitive))

    def _instance(self):
        return objects.Instance.get_by_uuid(
            nova_context.get_admin_context(), self.server['id'])


class SlowMoveTest(_TwoHosts):
    # a XenMotion that takes a few seconds, to be aborted meanwhile
    xapisim_options = dict(_TwoHosts.xapisim_options, guest_delay=1.0)

    def test_abort_cancels_the_task_and_the_vm_stays(self):
        # the move stalls half-way until its task is cancelled (not a
        # guess of how long the abort takes to come)
        self.xapi.control.delay('VM.pool_migrate/memory', 600)
        self.live_migrate()
        migration = self._wait_for_migration_status(self.server,
                                                    ['running'])
        deadline = time.time() + base.WAIT
        while 'pool_migrate' not in self.x.VM.get_current_operations(
                self.vm).values():
            self.assertLess(time.time(), deadline)
            time.sleep(0.05)
        self.api.api_delete('/servers/%s/migrations/%s'
                            % (self.server['id'], migration['id']))
        self._wait_for_migration_status(self.server, ['cancelled'])
        self.assertStaysOnTheSource()
        self.assertIn('aborting the live migration (task.cancel)',
                      self.stdlog.logger.output)

    def test_progress_reaches_nova(self):
        # half-way, the move stalls 20 s: time to see its progress
        self.xapi.control.delay('VM.pool_migrate/memory', 20)
        self.live_migrate()
        migration = self._wait_for_migration_status(self.server,
                                                    ['running'])
        path = '/servers/%s/migrations/%s' % (self.server['id'],
                                              migration['id'])
        seen = []
        deadline = time.time() + base.WAIT
        while time.time() < deadline:
            try:
                record = self.api.api_get(path).body['migration']
            except client.OpenStackApiException as exc:
                # completed: no longer an in-progress one
                self.assertEqual(404, exc.response.status_code)
                break
            seen.append((record['memory_processed_bytes'],
                         record['memory_total_bytes']))
            time.sleep(0.2)
        self._wait_for_migration_status(self.server, ['completed'])
        processed = [p for p, total in seen if p]
        self.assertTrue(processed, seen)
        total = [t for _, t in seen if t][0]
        memory = self.x.VM.get_memory_static_max(self.vm)
        self.assertEqual(int(memory), total)
        self.assertLess(processed[0], total)
        self.assertEqual(sorted(processed), processed)


class LocalStorageTest(_TwoHosts):
    """Each compute keeps its disks on its own host's local SR: moving an
    instance inside the pool moves its disks too (storage XenMotion)."""

    def _setup_compute_service(self):
        self.use_local_srs()
        return super(LocalStorageTest, self)._setup_compute_service()

    def test_block_migration_between_local_srs(self):
        vdi = self.xapi.objects_of(self.server['id'])['VDI'][0]
        data = self.xapi.vdi_bytes(vdi, MIB)
        old_sr = self.x.VDI.get_SR(vdi)
        self.assertFalse(self.x.SR.get_shared(old_sr))
        server = self._live_migrate(self.server)
        self.assertNotEqual(self.source, server['OS-EXT-SRV-ATTR:host'])
        record = self.x.VM.get_record(self.vm)
        # the same VM, now on the other host, its disk on that host's SR
        self.assertEqual('Running', record['power_state'])
        self.assertEqual(self.dst_ref, record['resident_on'])
        self.assertEqual(self.dst_ref, record['affinity'])
        (new_vdi,) = self.xapi.objects_of(self.server['id'])['VDI']
        new_sr = self.x.VDI.get_SR(new_vdi)
        self.assertNotEqual(old_sr, new_sr)
        self.assertIn(self.dst_ref, [self.x.PBD.get_host(p)
                                     for p in self.x.SR.get_PBDs(new_sr)])
        self.assertEqual(data, self.xapi.vdi_bytes(new_vdi, MIB))
        self.assertEqual([self.vif_uuid], list(self.rules(self.dst_ref)))
        self.assertEqual({}, self.rules(self.src_ref))
        self.assertEqual(1, self.xapi.control.calls().get(
            'VM.migrate_send'))

    def test_without_block_migration_it_is_refused(self):
        self.live_migrate(block_migration=False)
        self._wait_for_migration_status(self.server, ['error'])
        self.assertIn('only a block migration (or "auto") can move them',
                      self.stdlog.logger.output)
        self.assertStaysOnTheSource()

    def test_a_failed_disk_copy_leaves_the_instance_where_it_was(self):
        vdis = self.xapi.objects_of(self.server['id'])['VDI']
        self.xapi.control.fail('VM.migrate_send/copy', [
            'SR_BACKEND_FAILURE_44', '', 'no space left', ''])
        self.live_migrate()
        self._wait_for_migration_status(self.server, ['error'])
        self.assertStaysOnTheSource()
        self.assertEqual(vdis, self.xapi.objects_of(self.server['id'])['VDI'])
        self.assertFalse(self.x.SR.get_shared(self.x.VDI.get_SR(vdis[0])))


class _TwoPools(base.XenAPIFunctionalTestCase):
    """Two pools of one host, a nova-compute for each: storage XenMotion."""
    xapisim_options = dict(base.XenAPIFunctionalTestCase.xapisim_options,
                           pools=2)

    def setUp(self):
        super(_TwoPools, self).setUp()
        # booted in the first pool before the second pool's compute starts
        self.server = self.boot(self.image_with(pattern(MIB, seed=b'far')))
        other = self.xapi.world['pools'][1]
        self.flags(connection_url=other['master'],
                   host_uuid=other['hosts'][0]['uuid'], group='xenserver')
        self.second = self._start_compute(other['hosts'][0]['name_label'])
        self.y_session = self.xapi.login(other['master'])
        self.y = self.y_session.xenapi
        self.vm, record = self.xapi.vm_of(self.server['id'])
        self.vif_uuid = self.xapi.x.VIF.get_uuid(
            record['VIFs'][0])
        self.source = self.server['OS-EXT-SRV-ATTR:host']

    def objects_in(self, x):
        left = {}
        for cls in ('VM', 'VDI', 'VIF'):
            left[cls] = sorted(
                ref for ref, r in getattr(x, cls).get_all_records().items()
                if r['other_config'].get('nova_uuid') == self.server['id'])
        return left

    def rules_in(self, x):
        return xen_fixtures.rules_in(x)


class CrossPoolTest(_TwoPools):

    def test_storage_xenmotion_to_the_other_pool(self):
        data = self.xapi.vdi_bytes(self.xapi.objects_of(
            self.server['id'])['VDI'][0], MIB)
        server = self._live_migrate(self.server)
        self.assertNotEqual(self.source, server['OS-EXT-SRV-ATTR:host'])
        # nothing of the instance is left in the first pool
        self.assertEqual({'VM': [], 'VDI': [], 'VIF': []},
                         self.objects_in(self.xapi.x))
        self.assertEqual({}, self.rules_in(self.xapi.x))
        # the VM vanished from the first pool: no stop, for Nova
        self.assertNotIn('VM Stopped (Lifecycle Event)',
                         self.stdlog.logger.output)
        # the second pool runs it, with its disk's bytes and its port
        there = self.objects_in(self.y)
        self.assertEqual(1, len(there['VM']))
        vm = there['VM'][0]
        record = self.y.VM.get_record(vm)
        self.assertEqual('Running', record['power_state'])
        host = self.y.host.get_all()[0]
        self.assertEqual(host, record['resident_on'])
        self.assertEqual(host, record['affinity'])
        vif = self.y.VIF.get_record(record['VIFs'][0])
        self.assertEqual(self.server['id'], self.y.VM.get_other_config(
            vm)['nova_uuid'])
        self.assertEqual('br-int', self.y.network.get_bridge(vif['network']))
        rules = self.rules_in(self.y)
        self.assertEqual([vif['uuid']], list(rules))
        self.assertEqual(data, self.xapi.vdi_bytes_in(
            self.y_session, there['VDI'][0], MIB))
        # the second compute drives it: stop, start, delete
        self.api.post_server_action(self.server['id'], {'os-stop': None})
        self._wait_for_state_change(self.server, 'SHUTOFF')
        self.api.post_server_action(self.server['id'], {'os-start': None})
        self._wait_for_state_change(self.server, 'ACTIVE')
        self._delete_server(server)
        self.assertEqual({'VM': [], 'VDI': [], 'VIF': []},
                         self.objects_in(self.y))

    def test_without_block_migration_it_is_refused(self):
        live_migrate(self, block_migration=False)
        self._wait_for_migration_status(self.server, ['error'])
        self.assertIn('is in another XenAPI pool', self.stdlog.logger.output)
        server = self._wait_for_state_change(self.server, 'ACTIVE')
        self.assertEqual(self.source, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual({'VM': [], 'VDI': [], 'VIF': []},
                         self.objects_in(self.y))

    def test_a_failed_move_leaves_the_instance_where_it_was(self):
        self.xapi.control.fail('VM.migrate_send', ['VDI_COPY_FAILED',
                                                   'no space'])
        before = self.objects_in(self.xapi.x)
        live_migrate(self)
        self._wait_for_migration_status(self.server, ['error'])
        server = self._wait_for_state_change(self.server, 'ACTIVE')
        self.assertEqual(self.source, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual(before, self.objects_in(self.xapi.x))
        self.assertEqual('Running', self.xapi.x.VM.get_power_state(self.vm))
        self.assertEqual([self.vif_uuid], list(self.rules_in(self.xapi.x)))
        self.assertEqual({'VM': [], 'VDI': [], 'VIF': []},
                         self.objects_in(self.y))
        faults = objects.InstanceFaultList.get_latest_by_instance_uuids(
            nova_context.get_admin_context(), [self.server['id']])
        self.assertIn('VM.migrate_send', faults[0].message)
        self.assertIn('VDI_COPY_FAILED [no space]', faults[0].message)

    def _receive_sessions(self):
        """The list the session of every receive token the destination
        makes from now on goes into."""
        migration = self.computes[self.second.host].manager.driver._migration
        refs = []
        real_fill = migration._fill

        def fill(data, network_info, create=True):
            refs.append(real_fill(data, network_info, create))
            return refs[-1]
        self.useFixture(fixtures.MockPatchObject(migration, '_fill', fill))
        return refs

    def test_the_receive_token_stays_secret_and_is_logged_out(self):
        # every log line at every level, Nova's DEBUG dumps of the
        # migrate data included
        lines = []

        class Keep(logging.Handler):
            def emit(self, record):
                lines.append(self.format(record))
        handler = Keep(level=logging.DEBUG)
        root = logging.getLogger()
        root.addHandler(handler)
        self.addCleanup(root.removeHandler, handler)
        old_level = root.level
        root.setLevel(logging.DEBUG)
        self.addCleanup(root.setLevel, old_level)
        refs = self._receive_sessions()
        self._live_migrate(self.server)
        # one token for the source's check, one for the move
        self.assertEqual(2, len(refs))
        text = '\n'.join(lines)
        self.assertIn('XenLiveMigrateData', text)    # nova did log it
        self.assertIn("xen_receive_token='<hidden>'", text)
        for ref in refs:
            self.assertNotIn(ref, text)
            # logged out: the destination pool no longer knows it
            self.assertRaises(XenAPI.Failure, self.y.session.get_uuid, ref)

    def test_failures_at_each_step_leave_nothing_behind(self):
        other = self.xapi.world['pools'][1]
        dest_control = Control(other['master'], self.xapi.username,
                               self.xapi.password)
        before = self.objects_in(self.xapi.x)
        refs = self._receive_sessions()
        cases = [
            # (pool, point, error): the destination's check, its receive
            # token for the move, xapi's precheck, the move at its start,
            # after the disk copy, half-way through the memory
            (dest_control, 'host.migrate_receive', 1,
             ['HOST_CANNOT_ATTACH_NETWORK', 'h', 'n']),
            (dest_control, 'host.migrate_receive', 2,
             ['HOST_CANNOT_ATTACH_NETWORK', 'h', 'n']),
            (self.xapi.control, 'VM.assert_can_migrate', 1,
             ['VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED']),
            (self.xapi.control, 'VM.migrate_send', 1,
             ['VM_MIGRATE_FAILED', 'vm', 'source', 'dest', 'refused']),
            (self.xapi.control, 'VM.migrate_send/copy', 1,
             ['SR_BACKEND_FAILURE_44', '', 'no space left', '']),
            (self.xapi.control, 'VM.migrate_send/memory', 1,
             ['VM_MIGRATE_FAILED', 'vm', 'source', 'dest', 'dirty pages']),
        ]
        for number, (control, point, nth, error) in enumerate(cases, 1):
            with self.subTest(point=point, nth=nth):
                control.clear_faults()
                control.fail(point, error, nth=nth)
                live_migrate(self)
                self._wait_for_nth_migration(number, ('error', 'failed'))
                server = self._wait_for_state_change(self.server, 'ACTIVE')
                self.assertEqual(self.source,
                                 server['OS-EXT-SRV-ATTR:host'])
                self.assertEqual(before, self.objects_in(self.xapi.x))
                self.assertEqual('Running',
                                 self.xapi.x.VM.get_power_state(self.vm))
                self.assertEqual([self.vif_uuid],
                                 list(self.rules_in(self.xapi.x)))
                self.assertEqual({'VM': [], 'VDI': [], 'VIF': []},
                                 self.objects_in(self.y))
                self.assertEqual({}, self.rules_in(self.y))
                control.clear_faults()
        # every receive session made on the way is logged out
        self.assertGreaterEqual(len(refs), 4)
        for ref in refs:
            self.assertRaises(XenAPI.Failure, self.y.session.get_uuid, ref)
        # and then it moves
        server = self._live_migrate(self.server)
        self.assertNotEqual(self.source, server['OS-EXT-SRV-ATTR:host'])

    def test_what_goes_to_the_conductor_is_nova_s_own(self):
        # the destination's check makes a XenLiveMigrateData (for the
        # source); what it hands back to the conductor is nova's class,
        # which a process with nova's objects only can read -- and ours
        # is not
        ctxt = nova_context.get_admin_context()
        instance = objects.Instance.get_by_uuid(ctxt, self.server['id'])
        src = objects.ComputeNode.get_by_host_and_nodename(
            ctxt, self.source, instance.node)
        dest = self.computes[self.second.host].manager.driver
        data = dest.check_can_live_migrate_destination(
            ctxt, instance, obj_base.obj_to_primitive(src), None, None,
            False)
        self.addCleanup(dest.cleanup_live_migration_destination_check,
                        ctxt, data)
        self.assertEqual('XenLiveMigrateData', type(data).__name__)
        to_conductor = dest.check_source_migrate_data_at_dest(
            ctxt, instance, data, None, None, None)
        serializer = obj_base.NovaObjectSerializer()
        out = _read_in_a_process_with_nova_objects_only(
            serializer.serialize_entity(ctxt, to_conductor))
        self.assertEqual(['LibvirtLiveMigrateData', True, False, False],
                         json.loads(out))
        self.assertNotIn('xen_', json.dumps(
            serializer.serialize_entity(ctxt, to_conductor)))
        with self.assertRaises(subprocess.CalledProcessError):
            _read_in_a_process_with_nova_objects_only(
                serializer.serialize_entity(ctxt, data))

    def test_a_destination_lacking_a_cpu_feature_is_refused(self):
        ctxt = nova_context.get_admin_context()
        node = objects.ComputeNode.get_by_host_and_nodename(
            ctxt, self.source, objects.Instance.get_by_uuid(
                ctxt, self.server['id']).node)
        cpu = json.loads(node.cpu_info)
        cpu['features'].append('avx512-imaginary')
        node.cpu_info = json.dumps(cpu)
        node.save()
        live_migrate(self)
        self._wait_for_migration_status(self.server, ['error'])
        self.assertIn('lacks CPU features the source offers its guests: '
                      'avx512-imaginary', self.stdlog.logger.output)
        server = self._wait_for_state_change(self.server, 'ACTIVE')
        self.assertEqual(self.source, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual({'VM': [], 'VDI': [], 'VIF': []},
                         self.objects_in(self.y))

    def _wait_for_nth_migration(self, number, statuses):
        deadline = time.time() + base.WAIT
        while time.time() < deadline:
            migrations = self.api.api_get(
                '/os-migrations?instance_uuid=%s' % self.server['id']
            ).body['migrations']
            ended = [m for m in migrations if m['status'] in statuses]
            if len(ended) >= number:
                return ended
            time.sleep(0.2)
        self.fail('migration %d did not end in %s' % (number, statuses))
