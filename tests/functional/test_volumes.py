"""Cinder volumes through Nova: iSCSI LUNs of a real target (tgtd) as xapi
``iscsi`` SRs, attached to and detached from servers, and booted from."""

import copy

import fixtures

from nova import context as nova_context
from nova import objects
from nova.tests.functional.api import client
from oslo_utils.fixture import uuidsentinel as uuids

from nova_xen import volumes

from tests.functional import base
from tests.functional import test_leftovers
from tests.functional.test_boot import pattern
from tests import iscsi_target

MIB = 1024 * 1024
NOTHING = {'VM': [], 'VDI': [], 'VBD': [], 'VIF': []}


class _VolumeTestCase(base.XenAPIFunctionalTestCase):
    # attach and detach are casts to the compute, as in a real cloud
    CAST_AS_CALL = False

    def setUp(self):
        super(_VolumeTestCase, self).setUp()
        self.tgt = self.useFixture(iscsi_target.TgtTarget())
        # this test's own table: connection_info by volume id
        self.cinder.VOLUME_CONNECTION_INFO = copy.deepcopy(
            self.cinder.VOLUME_CONNECTION_INFO)
        self.x = self.xapi.x

    def volume(self, volume_id, size=64 * MIB, chap=True):
        """A Cinder volume whose LUN is on a target of its own (as Cinder's
        tgt and LVM drivers export them)."""
        target = self.tgt.add_target(luns=[size], chap=chap)
        info = target.connection_info(lun=1, volume_id=volume_id)
        self.cinder.VOLUME_CONNECTION_INFO[volume_id] = info
        return target, info

    def sr_of(self, info):
        uuid = volumes.Target(info).sr_uuid
        found = [ref for ref, r in self.x.SR.get_all_records().items()
                 if r['uuid'] == uuid]
        return found[0] if found else None

    def volume_vbds(self, vm):
        return {self.x.VBD.get_other_config(vbd).get('nova_volume_id'): vbd
                for vbd in self.x.VM.get_VBDs(vm)
                if self.x.VBD.get_other_config(vbd).get('nova_role') ==
                'volume'}

    def _detach_volume(self, server, volume_id):
        self.api.delete_server_volume(server['id'], volume_id)
        self._wait_for_volume_detach(server['id'], volume_id)

    def boot_from_volume(self, volume_id):
        """POST a server whose boot disk is the volume (no image)."""
        server = self._build_server(networks=[
            {'uuid': self.neutron.network_1['id']}])
        server.pop('imageRef')
        server['block_device_mapping_v2'] = [{
            'source_type': 'volume', 'destination_type': 'volume',
            'boot_index': 0, 'uuid': volume_id}]
        return self.api.post_server({'server': server})

    def iscsi_srs(self):
        return [ref for ref, r in self.x.SR.get_all_records().items()
                if r['type'] == 'iscsi']


class AttachTest(_VolumeTestCase):

    def setUp(self):
        super(AttachTest, self).setUp()
        self.server = self.boot(self.image_with(pattern(MIB)))
        self.vm, _ = self.xapi.vm_of(self.server['id'])

    def test_attach_to_a_running_server_and_detach(self):
        target, info = self.volume(uuids.vol1, size=96 * MIB)
        self._attach_volume(self.server, uuids.vol1)
        vbd = self.volume_vbds(self.vm)[uuids.vol1]
        record = self.x.VBD.get_record(vbd)
        # hot-plugged, as the device Nova shows
        self.assertTrue(record['currently_attached'])
        attachment = self.api.get_server_volumes(self.server['id'])[0]
        self.assertEqual('/dev/xvd' + chr(ord('a') +
                                          int(record['userdevice'])),
                         attachment['device'])
        # the LUN's VDI, in the SR of its target, plugged on this host
        vdi = self.x.VDI.get_record(record['VDI'])
        self.assertEqual('1', vdi['sm_config']['LUNid'])
        self.assertEqual(str(96 * MIB), vdi['virtual_size'])
        sr = self.sr_of(info)
        self.assertEqual('iscsi', self.x.SR.get_type(sr))
        (pbd,) = self.x.SR.get_PBDs(sr)
        self.assertTrue(self.x.PBD.get_currently_attached(pbd))
        # the CHAP password is in a xapi secret, not in device_config
        config = self.x.PBD.get_device_config(pbd)
        self.assertNotIn('chappassword', config)
        self.assertNotIn(info['data']['auth_password'], str(config))
        secret = self.x.secret.get_by_uuid(config['chappassword_secret'])
        self.assertEqual(info['data']['auth_password'],
                         self.x.secret.get_value(secret))
        # dom0 is logged into the target, as the host's initiator
        iqn = self.x.host.get_iscsi_iqn(self.x.VM.get_resident_on(self.vm))
        self.assertIn(iqn, self.tgt.show())

        # nova-compute's log never shows the secret
        self.assertNotIn(info['data']['auth_password'],
                         self.stdlog.logger.output)

        self._detach_volume(self.server, uuids.vol1)
        self.assertEqual({}, self.volume_vbds(self.vm))
        self.assertIsNone(self.sr_of(info))
        self.assertEqual([], self.x.secret.get_all())
        self.assertNotIn(iqn, self.tgt.show())
        self.assertEqual('Running', self.x.VM.get_power_state(self.vm))

    def test_extend_shows_the_new_size_to_xapi(self):
        target, info = self.volume(uuids.vol11, size=64 * MIB)
        self._attach_volume(self.server, uuids.vol11)
        vdi = self.x.VBD.get_VDI(self.volume_vbds(self.vm)[uuids.vol11])
        self.assertEqual(str(64 * MIB), self.x.VDI.get_virtual_size(vdi))
        # Cinder grew the LUN; Nova tells the driver (volume-extended)
        self.tgt.grow_lun(target, 1, 160 * MIB)
        instance = objects.Instance.get_by_uuid(
            nova_context.get_admin_context(), self.server['id'])
        self.compute.driver.extend_volume(None, info, instance, 160 * MIB)
        self.assertEqual(str(160 * MIB), self.x.VDI.get_virtual_size(vdi))
        # asked for more than the LUN holds: said so
        wanted = 'still shows %d bytes, not %d' % (160 * MIB, 256 * MIB)
        self.assertRaisesRegex(
            Exception, wanted, self.compute.driver.extend_volume, None,
            info, instance, 256 * MIB)

    def test_attach_to_a_stopped_server_plugs_at_start(self):
        target, info = self.volume(uuids.vol2)
        self._stop_server(self.server)
        self._attach_volume(self.server, uuids.vol2)
        vbd = self.volume_vbds(self.vm)[uuids.vol2]
        self.assertFalse(self.x.VBD.get_currently_attached(vbd))
        self._start_server(self.server)
        self.assertTrue(self.x.VBD.get_currently_attached(vbd))
        # and it stays through reboots
        self._reboot_server(self.server, hard=True)
        self.assertTrue(self.x.VBD.get_currently_attached(
            self.volume_vbds(self.vm)[uuids.vol2]))

    def test_two_volumes_and_delete_keeps_their_data(self):
        t1, info1 = self.volume(uuids.vol3)
        t2, info2 = self.volume(uuids.vol4)
        with open(t1.luns[1], 'r+b') as fh:
            fh.write(b'volume data stays')
        self._attach_volume(self.server, uuids.vol3)
        self._attach_volume(self.server, uuids.vol4)
        self.notifier.wait_for_versioned_notifications(
            'instance.volume_attach.end', n_events=2)
        self.assertEqual({uuids.vol3, uuids.vol4},
                         set(self.volume_vbds(self.vm)))
        self.assertEqual(2, len(self.iscsi_srs()))
        self._delete_server(self.server)
        self.assertEqual([], self.iscsi_srs())
        with open(t1.luns[1], 'rb') as fh:
            self.assertEqual(b'volume data stays', fh.read(17))
        self.assertEqual(NOTHING, self.xapi.objects_of(self.server['id']))

    def test_a_wrong_chap_secret_names_the_target_not_the_secret(self):
        target, info = self.volume(uuids.vol5)
        secret = info['data']['auth_password']
        info['data']['auth_password'] = 'not-' + secret
        self.api.post_server_volume(
            self.server['id'], {'volumeAttachment': {'volumeId': uuids.vol5}})
        self.notifier.wait_for_versioned_notifications(
            'instance.volume_attach.error')
        self.assertEqual([], self.iscsi_srs())
        self.assertEqual([], self.x.secret.get_all())
        self.assertEqual({}, self.volume_vbds(self.vm))
        output = self.stdlog.logger.output
        self.assertIn(target.iqn, output)
        self.assertIn('SR_BACKEND_FAILURE_68', output)
        self.assertNotIn(secret, output)
        self.assertNotIn('not-' + secret, output)
        self.assertEqual([], self.api.get_server_volumes(self.server['id']))

    def test_an_unreachable_target_leaves_nothing(self):
        target, info = self.volume(uuids.vol6)
        info['data']['target_portal'] = '127.0.0.1:1'
        self.api.post_server_volume(
            self.server['id'], {'volumeAttachment': {'volumeId': uuids.vol6}})
        self.notifier.wait_for_versioned_notifications(
            'instance.volume_attach.error')
        self.assertEqual([], self.iscsi_srs())
        self.assertIn('SR_BACKEND_FAILURE_141', self.stdlog.logger.output)

    def test_a_lun_missing_from_its_target_leaves_nothing(self):
        target, info = self.volume(uuids.vol9)
        info['data']['target_lun'] = 5
        self.api.post_server_volume(
            self.server['id'], {'volumeAttachment': {'volumeId': uuids.vol9}})
        self.notifier.wait_for_versioned_notifications(
            'instance.volume_attach.error')
        self.assertIn('LUN 5 of target %s' % target.iqn,
                      self.stdlog.logger.output)
        self.assertEqual([], self.iscsi_srs())
        self.assertEqual([], self.x.secret.get_all())
        self.assertEqual([], [p for p, r in self.x.PBD.get_all_records(
        ).items() if r['other_config'].get('nova_role') == 'volume'])

    def test_volumes_stay_through_suspend_resume_and_rebuild(self):
        target, info = self.volume(uuids.vol10)
        self._attach_volume(self.server, uuids.vol10)
        self._suspend_server(self.server)
        self._resume_server(self.server)
        vbd = self.volume_vbds(self.vm)[uuids.vol10]
        self.assertTrue(self.x.VBD.get_currently_attached(vbd))
        # Nova's rebuild: the volume is detached, the VM made anew from
        # the image, the volume attached to the new VM
        self._rebuild_server(self.server, self.image_with(
            pattern(MIB, seed=b'rebuilt')))
        vm, _ = self.xapi.vm_of(self.server['id'])
        self.assertNotEqual(self.vm, vm)
        vbd = self.volume_vbds(vm)[uuids.vol10]
        self.assertTrue(self.x.VBD.get_currently_attached(vbd))
        self.assertEqual(1, len(self.iscsi_srs()))

    def test_rescue_and_unrescue_keep_the_volume(self):
        target, info = self.volume(uuids.vol11)
        self._attach_volume(self.server, uuids.vol11)
        with open(target.luns[1], 'r+b') as fh:
            fh.write(b'before the rescue')
        self._rescue_server(self.server)
        # the original is halted while the rescue VM runs: its volume VBD
        # stays on it, and the target stays connected
        self.assertEqual('Halted', self.x.VM.get_power_state(self.vm))
        self.assertIn(uuids.vol11, self.volume_vbds(self.vm))
        self.assertEqual(1, len(self.iscsi_srs()))
        self._unrescue_server(self.server)
        vm, record = self.xapi.vm_of(self.server['id'])
        self.assertEqual('Running', record['power_state'])
        vbd = self.volume_vbds(vm)[uuids.vol11]
        self.assertTrue(self.x.VBD.get_currently_attached(vbd))
        with open(target.luns[1], 'rb') as fh:
            self.assertEqual(b'before the rescue', fh.read(17))
        self._delete_server(self.server)
        self.assertEqual([], self.iscsi_srs())

    def test_a_volume_type_xapi_cannot_plug_is_refused(self):
        self.cinder.VOLUME_CONNECTION_INFO[uuids.vol7] = {
            'driver_volume_type': 'rbd', 'data': {'name': 'pool/vol'}}
        self.api.post_server_volume(
            self.server['id'], {'volumeAttachment': {'volumeId': uuids.vol7}})
        self.notifier.wait_for_versioned_notifications(
            'instance.volume_attach.error')
        self.assertIn('rbd', self.stdlog.logger.output)
        self.assertEqual([], self.iscsi_srs())

    def test_resize_keeps_the_volume_and_revert_gives_it_back(self):
        self.flags(allow_resize_to_same_host=True)
        target, info = self.volume(uuids.vol8)
        self._attach_volume(self.server, uuids.vol8)
        small = self.flavor('m1.small')['id']
        self._resize_server(self.server, small)
        vm, record = self.xapi.vm_of(self.server['id'])
        self.assertNotEqual(self.vm, vm)
        self.assertEqual('Running', record['power_state'])
        vbd = self.volume_vbds(vm)[uuids.vol8]
        self.assertTrue(self.x.VBD.get_currently_attached(vbd))
        # the kept original still has its VBD (halted), for a revert
        self.assertFalse(self.x.VBD.get_currently_attached(
            self.volume_vbds(self.vm)[uuids.vol8]))
        self._revert_resize(self.server)
        self.assertEqual(self.vm, self.xapi.vm_of(self.server['id'])[0])
        self.assertTrue(self.x.VBD.get_currently_attached(
            self.volume_vbds(self.vm)[uuids.vol8]))
        # the resized VM is gone
        self.assertEqual({}, self.x.VM.get_all_records_where(
            'field "uuid"="%s"' % record['uuid']))
        # resize again, confirm: one SR, the volume on the new VM only
        self._resize_server(self.server, small)
        self._confirm_resize(self.server)
        vm, _ = self.xapi.vm_of(self.server['id'])
        self.assertEqual([uuids.vol8], list(self.volume_vbds(vm)))
        self.assertEqual(1, len(self.iscsi_srs()))
        self.assertEqual(1, len(self.x.VDI.get_VBDs(self.x.VBD.get_VDI(
            self.volume_vbds(vm)[uuids.vol8]))))


class VolumeLeftoversTest(test_leftovers.Reclaiming, _VolumeTestCase):
    """What xapi refuses to remove when a volume goes (its SR, a CHAP
    secret) is reclaimed while nova-compute runs."""

    def setUp(self):
        super(VolumeLeftoversTest, self).setUp()
        self.server = self.boot(self.image_with(pattern(MIB)))
        self.vm, _ = self.xapi.vm_of(self.server['id'])

    def test_a_detach_xapi_would_not_forget_the_sr_of(self):
        target, info = self.volume(uuids.left1)
        self._attach_volume(self.server, uuids.left1)
        sr = self.sr_of(info)
        self.xapi.control.fail('SR.forget', ['INTERNAL_ERROR', 'busy'])
        # the volume leaves the guest and Nova at once; its SR follows
        self._detach_volume(self.server, uuids.left1)
        self.assertEqual([], self.api.get_server_volumes(self.server['id']))
        self.assertEqual({}, self.volume_vbds(self.vm))
        self.eventually(lambda: self.iscsi_srs() == [] and
                        self.x.secret.get_all() == [],
                        what='the SR and its secret reclaimed')
        self.assertEqual(1, len(self.log_lines(
            'could not remove the volume SR %s' % sr)))
        self.assertEqual(1, len(self.log_lines('reclaimed volume SR %s' % sr)))
        # dom0 logged out of the target
        iqn = self.x.host.get_iscsi_iqn(self.x.VM.get_resident_on(self.vm))
        self.assertNotIn(iqn, self.tgt.show())
        self.assertNotIn(info['data']['auth_password'],
                         self.stdlog.logger.output)

    def test_a_failed_attach_whose_sr_xapi_would_not_forget(self):
        target, info = self.volume(uuids.left2)
        info['data']['auth_password'] = 'wrong'
        self.xapi.control.fail('SR.forget', ['INTERNAL_ERROR', 'busy'])
        self.api.post_server_volume(
            self.server['id'],
            {'volumeAttachment': {'volumeId': uuids.left2}})
        self.notifier.wait_for_versioned_notifications(
            'instance.volume_attach.error')
        self.eventually(lambda: self.iscsi_srs() == [] and
                        self.x.secret.get_all() == [],
                        what='the SR and the secret reclaimed')
        self.assertEqual(1, len(self.log_lines('reclaimed volume SR')))

    def test_a_leftover_sr_attached_again_is_kept(self):
        target, info = self.volume(uuids.left3)
        self._attach_volume(self.server, uuids.left3)
        # the reclaimer's passes fail until the volume is back
        self.xapi.control.fail('SR.forget', ['INTERNAL_ERROR', 'busy'],
                               times=1000)
        self._detach_volume(self.server, uuids.left3)
        self.assertEqual(1, len(self.iscsi_srs()))
        self._attach_volume(self.server, uuids.left3)
        self.xapi.control.clear_faults()
        passes = self.driver_reclaimer().passes
        self.eventually(lambda: self.driver_reclaimer().passes >= passes + 2,
                        what='two passes of the reclaimer')
        vbd = self.volume_vbds(self.vm)[uuids.left3]
        self.assertTrue(self.x.VBD.get_currently_attached(vbd))
        self.assertEqual(1, len(self.iscsi_srs()))

    def driver_reclaimer(self):
        return self.computes[self.compute.host].manager.driver._reclaimer


class BootFromVolumeTest(_VolumeTestCase):

    def test_boot_from_volume_reboot_stop_start_delete(self):
        target, info = self.volume(uuids.boot, size=128 * MIB)
        self.xapi.control.reset_calls()
        server = self.boot_from_volume(uuids.boot)
        server = self._wait_for_state_change(server, 'ACTIVE')
        vm, record = self.xapi.vm_of(server['id'])
        self.assertEqual('Running', record['power_state'])
        (root,) = [vbd for vbd in record['VBDs']
                   if self.x.VBD.get_userdevice(vbd) == '0']
        vbd = self.x.VBD.get_record(root)
        self.assertTrue(vbd['bootable'])
        self.assertEqual(uuids.boot, vbd['other_config']['nova_volume_id'])
        self.assertEqual('1', self.x.VDI.get_sm_config(vbd['VDI'])['LUNid'])
        # no image import, no cached image
        self.assertNotIn('VDI.create', self.xapi.control.calls())
        self.assertEqual({}, self.xapi.image_cache())

        self._reboot_server(server, hard=True)
        self._stop_server(server)
        self._start_server(server)
        vm, record = self.xapi.vm_of(server['id'])
        self.assertEqual('Running', record['power_state'])
        with open(target.luns[1], 'r+b') as fh:
            fh.write(b'written by the guest')
        self._delete_server(server)
        self.assertEqual([], self.iscsi_srs())
        self.assertEqual(NOTHING, self.xapi.objects_of(server['id']))
        with open(target.luns[1], 'rb') as fh:
            self.assertEqual(b'written by the guest', fh.read(20))

    def test_snapshot_is_cinders_and_copies_no_disk(self):
        # Nova snapshots a volume-backed server in Cinder (a snapshot of
        # the volume, recorded in an image's block device mapping): the
        # driver neither copies nor uploads a disk
        self.volume(uuids.snap_boot, size=128 * MIB)
        # Cinder's volumes carry a description (nova's fixture leaves it
        # out, and Nova's snapshot reads it)
        fake_get = self.cinder.fake_get
        self.useFixture(fixtures.MockPatch(
            'nova.volume.cinder.API.get', autospec=False,
            side_effect=lambda *a, **kw: dict(
                {'display_description': None}, **fake_get(*a, **kw))))
        server = self._wait_for_state_change(
            self.boot_from_volume(uuids.snap_boot), 'ACTIVE')
        self.xapi.control.reset_calls()
        resp = self.api.post_server_action(
            server['id'], {'createImage': {'name': 'bfv-snap'}})
        image = self.glance.show(None, resp['image_id'])
        self.assertEqual(0, image['size'] or 0)
        mapping = image['properties']['block_device_mapping']
        self.assertEqual('snapshot', mapping[0]['source_type'])
        self.assertIn(mapping[0]['snapshot_id'], self.cinder.volume_snapshots)
        calls = self.xapi.control.calls()
        for call in ('VDI.snapshot', 'VM.snapshot', 'VDI.copy'):
            self.assertNotIn(call, calls)
        self.assertEqual('Running', self.xapi.vm_of(
            server['id'])[1]['power_state'])

    def test_rescue_is_refused_by_nova_with_its_reason(self):
        # Nova rescues a volume-backed server only on a driver that offers
        # stable device rescue of boot volumes (COMPUTE_RESCUE_BFV), which
        # nova-xen does not: the API refuses, the server keeps running
        self.volume(uuids.rescue_boot, size=128 * MIB)
        server = self._wait_for_state_change(
            self.boot_from_volume(uuids.rescue_boot), 'ACTIVE')
        caught = self.assertRaises(
            client.OpenStackApiException, self.api.post_server_action,
            server['id'], {'rescue': {'adminPass': 'MySecretPass'}})
        self.assertEqual(400, caught.response.status_code)
        self.assertIn('volume-backed', str(caught))
        self.assertEqual('ACTIVE', self.api.get_server(server['id'])['status'])
        self.assertEqual('Running', self.xapi.vm_of(
            server['id'])[1]['power_state'])

    def test_resize_of_a_volume_backed_server(self):
        self.flags(allow_resize_to_same_host=True)
        target, info = self.volume(uuids.boot2, size=128 * MIB)
        server = self.boot_from_volume(uuids.boot2)
        server = self._wait_for_state_change(server, 'ACTIVE')
        self._resize_server(server, self.flavor('m1.small')['id'])
        self._confirm_resize(server)
        vm, record = self.xapi.vm_of(server['id'])
        self.assertEqual('Running', record['power_state'])
        self.assertEqual(str(self.flavor('m1.small')['ram'] * MIB),
                         record['memory_static_max'])
        (root,) = [vbd for vbd in record['VBDs']
                   if self.x.VBD.get_userdevice(vbd) == '0']
        self.assertEqual(uuids.boot2,
                         self.x.VBD.get_other_config(root)['nova_volume_id'])
        # no local root disk was made for the new flavor
        self.assertEqual([], [v for v in self.xapi.objects_of(
            server['id'])['VDI'] if self.x.VDI.get_other_config(v).get(
                'nova_role') == 'root'])
        self._delete_server(server)
        self.assertEqual([], self.iscsi_srs())

    def test_a_boot_volume_that_cannot_connect_leaves_nothing(self):
        self.flags(max_attempts=1, group='scheduler')
        target, info = self.volume(uuids.bad_boot)
        info['data']['auth_password'] = 'wrong'
        server = self.boot_from_volume(uuids.bad_boot)
        server = self._wait_for_state_change(server, 'ERROR')
        self.assertEqual([], self.iscsi_srs())
        self.assertEqual(NOTHING, self.xapi.objects_of(server['id']))
        self.assertNotIn('wrong', self.api.get_server(
            server['id']).get('fault', {}).get('message', '').replace(
                'wrong CHAP', ''))


class LiveMigrationWithVolumeTest(_VolumeTestCase):
    xapisim_options = dict(base.XenAPIFunctionalTestCase.xapisim_options,
                           hosts=2)

    def test_xenmotion_takes_the_volume_along(self):
        hosts = self.xapi.pool['hosts']
        self.flags(host_uuid=hosts[1]['uuid'], group='xenserver')
        self._start_compute(hosts[1]['name_label'])
        server = self.boot(self.image_with(pattern(MIB)))
        target, info = self.volume(uuids.lm)
        self._attach_volume(server, uuids.lm)
        vm, record = self.xapi.vm_of(server['id'])
        source = record['resident_on']
        self.api.post_server_action(server['id'], {'os-migrateLive': {
            'host': None, 'block_migration': 'auto'}})
        self._wait_for_migration_status(server, ['completed'])
        record = self.x.VM.get_record(vm)
        self.assertNotEqual(source, record['resident_on'])
        self.assertEqual('Running', record['power_state'])
        vbd = self.volume_vbds(vm)[uuids.lm]
        self.assertTrue(self.x.VBD.get_currently_attached(vbd))
        # the target is plugged where the VM runs, no longer at the source
        sr = self.sr_of(info)
        plugged = {self.x.PBD.get_host(p) for p in self.x.SR.get_PBDs(sr)
                   if self.x.PBD.get_currently_attached(p)}
        self.assertEqual({record['resident_on']}, plugged)
        self.assertIn(self.x.host.get_iscsi_iqn(record['resident_on']),
                      self.tgt.show())
        self.assertNotIn(self.x.host.get_iscsi_iqn(source), self.tgt.show())
        self._delete_server(server)
        self.assertEqual([], self.iscsi_srs())


class _CrossPoolWithVolume(_VolumeTestCase):
    xapisim_options = dict(base.XenAPIFunctionalTestCase.xapisim_options,
                           pools=2)

    def setUp(self):
        super(_CrossPoolWithVolume, self).setUp()
        self.server = self.boot(self.image_with(pattern(MIB)))
        self.vm, _ = self.xapi.vm_of(self.server['id'])
        other = self.xapi.world['pools'][1]
        self.flags(connection_url=other['master'],
                   host_uuid=other['hosts'][0]['uuid'], group='xenserver')
        self.target = other['hosts'][0]['name_label']
        self._start_compute(self.target)
        self.y = self.xapi.login(other['master']).xenapi
        self.vol, self.info = self.volume(uuids.xpool)
        self._attach_volume(self.server, uuids.xpool)

    def vm_in(self, x):
        return [ref for ref, r in x.VM.get_all_records().items()
                if r['other_config'].get('nova_uuid') == self.server['id']]

    def srs_in(self, x):
        uuid = volumes.Target(self.info).sr_uuid
        return [ref for ref, r in x.SR.get_all_records().items()
                if r['uuid'] == uuid]


class CrossPoolWithVolumeTest(_CrossPoolWithVolume):

    def test_cold_migration_to_the_other_pool_takes_the_volume(self):
        server = self._migrate_server(self.server, host=self.target)
        (vm,) = self.vm_in(self.y)
        vbds = {self.y.VBD.get_other_config(v).get('nova_volume_id'): v
                for v in self.y.VM.get_VBDs(vm)}
        self.assertTrue(self.y.VBD.get_currently_attached(
            vbds[uuids.xpool]))
        self.assertEqual('1', self.y.VDI.get_sm_config(self.y.VBD.get_VDI(
            vbds[uuids.xpool]))['LUNid'])
        # the kept original still has its VBD, in its own pool
        self.assertIn(uuids.xpool, self.volume_vbds(self.vm))
        self._confirm_resize(server)
        self.assertEqual([], self.vm_in(self.x))
        self.assertEqual([], self.srs_in(self.x))
        self.assertEqual(1, len(self.srs_in(self.y)))
        self._delete_server(server)
        self.assertEqual([], self.srs_in(self.y))

    def test_revert_from_the_other_pool(self):
        server = self._migrate_server(self.server, host=self.target)
        self._revert_resize(server)
        self.assertEqual([self.vm], self.vm_in(self.x))
        self.assertTrue(self.x.VBD.get_currently_attached(
            self.volume_vbds(self.vm)[uuids.xpool]))
        self.assertEqual([], self.vm_in(self.y))
        self.assertEqual([], self.srs_in(self.y))


class LiveMigrationReleaseTest(test_leftovers.Reclaiming, _VolumeTestCase):
    """The source's hold on a volume's target, after XenMotion: a failure
    there does not fail the migration, and the reclaimer lets go later."""
    xapisim_options = dict(base.XenAPIFunctionalTestCase.xapisim_options,
                           hosts=2)

    def test_a_failed_release_at_the_source_finishes_the_move(self):
        hosts = self.xapi.pool['hosts']
        self.flags(host_uuid=hosts[1]['uuid'], group='xenserver')
        self._start_compute(hosts[1]['name_label'])
        server = self.boot(self.image_with(pattern(MIB)))
        target, info = self.volume(uuids.release)
        self._attach_volume(server, uuids.release)
        vm, _ = self.xapi.vm_of(server['id'])
        sr = self.sr_of(info)
        busy = ['INTERNAL_ERROR', 'xapi is busy']
        cases = [
            # the source's look for the SR (the destination's pre looks
            # first), its unplug of the target
            ('SR.get_by_uuid', 2),
            ('PBD.unplug', 1),
        ]
        for number, (what, nth) in enumerate(cases, 1):
            with self.subTest(what=what):
                source = self.x.VM.get_resident_on(vm)
                self.xapi.control.fail(what, busy, nth=nth)
                self.api.post_server_action(server['id'], {
                    'os-migrateLive': {'host': None,
                                       'block_migration': 'auto'}})
                migrations = base.wait_for_migrations(
                    self, server['id'], ['completed'] * number)
                self._wait_for_state_change(server, 'ACTIVE')
                base.wait_for_allocations_gone(self, migrations[-1]['uuid'])
                self.assertEqual({}, {
                    rc: n for rc, n in self._get_provider_usages(
                        self.x.host.get_uuid(source)).items() if n})
                dest = self.x.VM.get_resident_on(vm)
                self.assertNotEqual(source, dest)
                self.assertTrue(self.x.VBD.get_currently_attached(
                    self.volume_vbds(vm)[uuids.release]))
                # the target ends plugged where the VM runs only
                for service in self.computes.values():
                    base.reclaimer_passes(self, service.manager.driver)
                self.assertEqual({dest}, {
                    self.x.PBD.get_host(p) for p in self.x.SR.get_PBDs(sr)
                    if self.x.PBD.get_currently_attached(p)})
                self.assertNotIn(self.x.host.get_iscsi_iqn(source),
                                 self.tgt.show())
                self.xapi.control.clear_faults()
        self._delete_server(server)
        self.assertEqual([], self.iscsi_srs())
        self.assertEqual([], self.x.secret.get_all())


class CrossPoolLentVolumeTest(test_leftovers.Reclaiming,
                              _CrossPoolWithVolume):
    """The original lets go of its volume VBDs while the clone for the
    other pool is made: one xapi will not make again at once is made by
    the reclaimer, plugged into the original running again."""

    def test_a_volume_vbd_xapi_would_not_make_again_at_once(self):
        # the only VBD.create of the source pool during the move: the
        # original's volume VBD, made again after the clone
        self.xapi.control.fail('VBD.create', ['INTERNAL_ERROR', 'busy'])
        self.api.post_server_action(self.server['id'],
                                    {'migrate': {'host': self.target}})
        base.wait_for_migrations(self, self.server['id'], ['error'])
        server = self._wait_for_state_change(self.server, 'ACTIVE')
        self.assertNotEqual(self.target, server['OS-EXT-SRV-ATTR:host'])
        base.reclaimer_passes(self, self.compute.manager.driver)
        self.assertEqual('Running', self.x.VM.get_power_state(self.vm))
        vbd = self.volume_vbds(self.vm)[uuids.xpool]
        self.assertTrue(self.x.VBD.get_currently_attached(vbd))
        vif = self.x.VIF.get_uuid(self.x.VM.get_VIFs(self.vm)[0])
        self.assertEqual([vif], list(self.xapi.isolation_rules()))
        # no clone left; nothing in the other pool
        self.assertEqual([self.vm], self.vm_in(self.x))
        self.assertEqual([], [
            r for r in self.x.VM.get_all_records().values()
            if r['other_config'].get('nova_resize_of') == self.server['id']
            or r['other_config'].get('nova_resize_transfer') ==
            self.server['id']])
        self.assertEqual([], self.vm_in(self.y))
        self.assertEqual(1, len(self.log_lines(
            'done now: attach volume %s to the original VM again'
            % uuids.xpool)))
        self._delete_server(server)
        self.assertEqual([], self.srs_in(self.x))


class DetachLeftoverTest(test_leftovers.Reclaiming, _VolumeTestCase):
    """A detach whose VBD xapi will not destroy (it is unplugged already:
    the guest no longer sees the disk) is finished: Nova and Cinder show
    the volume detached, the reclaimer removes the VBD and then the SR,
    and the VBD is never plugged again."""

    def setUp(self):
        super(DetachLeftoverTest, self).setUp()
        self.server = self.boot(self.image_with(pattern(MIB)))
        self.vm, _ = self.xapi.vm_of(self.server['id'])
        self.driver = self.computes[self.compute.host].manager.driver

    def start_failed(self, server):
        """The event of Nova's start of the server, once it has ended in
        error; None before."""
        for action in self.api.get_instance_actions(server['id']):
            if action['action'] == 'start':
                for event in self.api.get_instance_action_details(
                        server['id'], action['request_id'])['events']:
                    if event['event'] == 'compute_start_instance' and \
                            (event['result'] or '').lower() == 'error':
                        return event
        return None

    def assertDetached(self, volume_id):
        """Nova and Cinder: the volume is off the server."""
        self.assertEqual([], self.api.get_server_volumes(self.server['id']))
        self.assertEqual({}, dict(
            self.cinder.volume_to_attachment.get(volume_id, {})))

    def test_a_detach_whose_vbd_xapi_would_not_destroy(self):
        target, info = self.volume(uuids.held1)
        self._attach_volume(self.server, uuids.held1)
        self.xapi.control.fail('VBD.destroy', ['INTERNAL_ERROR', 'busy'])
        self._detach_volume(self.server, uuids.held1)
        self.assertDetached(uuids.held1)
        base.reclaimer_passes(self, self.driver)
        self.assertEqual({}, self.volume_vbds(self.vm))
        self.assertEqual([], self.iscsi_srs())
        self.assertEqual([], self.x.secret.get_all())
        iqn = self.x.host.get_iscsi_iqn(self.x.VM.get_resident_on(self.vm))
        self.assertNotIn(iqn, self.tgt.show())
        self.assertEqual(1, len(self.log_lines('reclaimed VBD')))
        # the server stops and starts without the volume
        server = self._stop_server(self.server)
        self._start_server(server)
        self.assertEqual('Running', self.x.VM.get_power_state(self.vm))
        self.assertEqual({}, self.volume_vbds(self.vm))
        self.assertEqual([], self.iscsi_srs())

    def test_a_vbd_still_there_is_never_plugged_again(self):
        target, info = self.volume(uuids.held2)
        self._attach_volume(self.server, uuids.held2)
        # xapi refuses every VBD.destroy until the faults are cleared
        self.xapi.control.fail('VBD.destroy', ['INTERNAL_ERROR', 'busy'],
                               times=0)
        self._detach_volume(self.server, uuids.held2)
        self.assertDetached(uuids.held2)
        server = self._stop_server(self.server)
        # a start would plug every VBD of the VM: it is refused, saying why
        self.api.post_server_action(server['id'], {'os-start': None})
        self.eventually(lambda: self.start_failed(server), seconds=120,
                        what='the start refused')
        server = self._wait_for_state_change(server, 'SHUTOFF')
        self.assertEqual('Halted', self.x.VM.get_power_state(self.vm))
        # the instance fault (recorded before the start's event ends)
        (fault,) = objects.InstanceFaultList.get_latest_by_instance_uuids(
            nova_context.get_admin_context(), [server['id']])
        self.assertIn('a volume detached from this server is still there',
                      fault.message)
        self.assertEqual([uuids.held2], list(self.volume_vbds(self.vm)))
        self.xapi.control.clear_faults()
        base.reclaimer_passes(self, self.driver)
        self.assertEqual({}, self.volume_vbds(self.vm))
        self.assertEqual([], self.iscsi_srs())
        self._start_server(server)
        self.assertEqual('Running', self.x.VM.get_power_state(self.vm))
        self.assertEqual({}, self.volume_vbds(self.vm))
