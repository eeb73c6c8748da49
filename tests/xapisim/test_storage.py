"""SRs, PBDs, VDIs and VBDs behave as xapi's do, down to the bytes."""

import os
import shutil
import tempfile
import unittest
import urllib.parse
import uuid as uuidlib

from tests.xapisim.base import MIB, SimTestCase

NULL = 'OpaqueRef:NULL'
GIB = 1024 * MIB


class VdiBytes(object):
    """Write and read a VDI's bytes over HTTP, as a client of xapi does."""

    def _transfer_path(self, handler, vdi, **extra):
        query = dict(session_id=self.session._session, vdi=vdi, format='raw')
        query.update(extra)
        return '/%s?%s' % (handler, urllib.parse.urlencode(query))

    def write_vdi(self, vdi, data):
        """PUT /import_raw_vdi: ``data`` lands at offset 0 of ``vdi``."""
        task = self.x.task.create('import', 'test upload')
        status, _ = self.http('PUT', self._transfer_path(
            'import_raw_vdi', vdi, task_id=task), body=data)
        self.assertEqual(200, status)
        record = self.wait_task(task)
        self.x.task.destroy(task)
        self.assertEqual('success', record['status'], record['error_info'])

    def read_vdi(self, vdi, length=None):
        """GET /export_raw_vdi: the VDI's bytes (all, or the first ``length``)."""
        status, body = self.http('GET', self._transfer_path('export_raw_vdi',
                                                            vdi))
        self.assertEqual(200, status)
        self.assertEqual(int(self.x.VDI.get_virtual_size(vdi)), len(body))
        return body if length is None else body[:length]

    def vdi_with_bytes(self, data, **extra):
        vdi = self.new_vdi(**extra)
        self.write_vdi(vdi, data)
        return vdi


def pattern(seed, size=64 * 1024):
    """Distinct, recognisable bytes."""
    block = ('%s:' % seed).encode() * 64
    return (block * (size // len(block) + 1))[:size]


class StorageLayoutTests(SimTestCase):
    hosts = 2

    def test_each_host_has_local_ext_storage(self):
        hosts = self.x.host.get_all()
        local = [sr for sr, r in self.x.SR.get_all_records().items()
                 if r['type'] == 'ext']
        self.assertEqual(len(hosts), len(local))
        seen_from = set()
        for sr in local:
            record = self.x.SR.get_record(sr)
            self.assertFalse(record['shared'])
            self.assertEqual('user', record['content_type'])
            self.assertEqual(1, len(record['PBDs']))
            pbd = self.x.PBD.get_record(record['PBDs'][0])
            self.assertTrue(pbd['currently_attached'])
            self.assertEqual(sr, pbd['SR'])
            seen_from.add(pbd['host'])
            self.assertGreater(int(record['physical_size']), 0)
        self.assertEqual(set(hosts), seen_from)

    def test_shared_nfs_sr_is_the_pool_default(self):
        sr = self.default_sr()
        record = self.x.SR.get_record(sr)
        self.assertEqual('nfs', record['type'])
        self.assertTrue(record['shared'])
        pbds = [self.x.PBD.get_record(p) for p in record['PBDs']]
        self.assertEqual(set(self.x.host.get_all()),
                         {p['host'] for p in pbds})
        self.assertTrue(all(p['currently_attached'] for p in pbds))
        self.assertEqual(sr, self.x.pool.get_suspend_image_SR(
            self.pool_ref()))

    def test_tools_iso_sr(self):
        isos = [r for r in self.x.SR.get_all_records().values()
                if r['type'] == 'iso']
        self.assertEqual(1, len(isos))
        self.assertEqual('iso', isos[0]['content_type'])
        self.assertTrue(isos[0]['shared'])
        self.assertTrue(isos[0]['is_tools_sr'])
        self.assertFailure(['SR_OPERATION_NOT_SUPPORTED',
                            self.x.SR.get_by_uuid(isos[0]['uuid'])],
                           self.new_vdi, MIB,
                           self.x.SR.get_by_uuid(isos[0]['uuid']))


class VdiTests(VdiBytes, SimTestCase):
    """VDIs on the pool's shared SR, their sizes and their bytes."""

    @classmethod
    def setUpClass(cls):
        cls.state_dir = tempfile.mkdtemp(prefix='xapisim-test-state-')
        cls.sim_options = {'state_dir': cls.state_dir}
        super(VdiTests, cls).setUpClass()

    @classmethod
    def tearDownClass(cls):
        super(VdiTests, cls).tearDownClass()
        shutil.rmtree(cls.state_dir, ignore_errors=True)

    def backing_file(self, vdi):
        """The file under the state directory that holds the VDI's bytes."""
        location = self.x.VDI.get_location(vdi)
        found = [os.path.join(d, f) for d, _, files in os.walk(self.state_dir)
                 for f in files if location in f]
        self.assertEqual(1, len(found), found)
        return found[0]

    def sr_usage(self, sr):
        record = self.x.SR.get_record(sr)
        return int(record['virtual_allocation']), \
            int(record['physical_utilisation'])

    def test_virtual_size_rounds_up_to_2_mib(self):
        for asked, expected in ((1, 2 * MIB), (2 * MIB, 2 * MIB),
                                (3 * MIB + 1, 4 * MIB)):
            vdi = self.new_vdi(size=asked)
            self.assertEqual(str(expected), self.x.VDI.get_virtual_size(vdi))

    def test_sr_accounts_virtual_and_physical_usage(self):
        sr = self.default_sr()
        virtual_before, physical_before = self.sr_usage(sr)
        vdi = self.new_vdi(size=64 * MIB)
        virtual, physical = self.sr_usage(sr)
        self.assertEqual(virtual_before + 64 * MIB, virtual)
        self.assertEqual(virtual, sum(
            int(self.x.VDI.get_virtual_size(v)) for v in self.x.SR.get_VDIs(sr)))
        self.write_vdi(vdi, b'\xab' * (4 * MIB))
        self.x.SR.scan(sr)
        used = int(self.x.VDI.get_physical_utilisation(vdi))
        self.assertGreaterEqual(used, 4 * MIB)
        self.assertLess(used, 64 * MIB)
        virtual, physical = self.sr_usage(sr)
        self.assertEqual(physical_before + used, physical)
        self.x.VDI.destroy(vdi)
        self.assertEqual((virtual_before, physical_before), self.sr_usage(sr))

    def test_vdi_that_does_not_fit_is_sr_full(self):
        sr = self.default_sr()
        size = int(self.x.SR.get_physical_size(sr))
        virtual, _ = self.sr_usage(sr)
        count = len(self.x.SR.get_VDIs(sr))
        # one byte too many rounds up to one 2 MiB block too many
        self.assertFailure(['SR_FULL', str(size + 2 * MIB), str(size)],
                           self.new_vdi, size - virtual + 1)
        self.assertEqual(count, len(self.x.SR.get_VDIs(sr)))
        self.assertEqual(virtual, self.sr_usage(sr)[0])

    def test_bytes_live_in_a_sparse_file_under_the_state_dir(self):
        vdi = self.new_vdi(size=32 * MIB)
        data = pattern('sparse')
        self.write_vdi(vdi, data)
        path = self.backing_file(vdi)
        self.assertTrue(path.startswith(self.state_dir))
        st = os.stat(path)
        self.assertEqual(32 * MIB, st.st_size)
        self.assertLess(st.st_blocks * 512, 8 * MIB)
        with open(path, 'rb') as fh:
            self.assertEqual(data, fh.read(len(data)))
        self.assertEqual(data, self.read_vdi(vdi, len(data)))
        self.assertEqual(b'\0' * 1024, self.read_vdi(vdi)[-1024:])
        self.x.VDI.destroy(vdi)
        self.assertFalse(os.path.exists(path))

    def test_clone_copies_bytes_and_builds_a_vhd_tree(self):
        data = pattern('clone')
        src = self.vdi_with_bytes(data, name_label='golden')
        clone = self.x.VDI.clone(src, {})
        self.destroy_later('VDI', clone)
        record = self.x.VDI.get_record(clone)
        self.assertFalse(record['is_a_snapshot'])
        self.assertEqual(NULL, record['snapshot_of'])
        self.assertEqual('golden', record['name_label'])
        self.assertEqual(self.x.VDI.get_virtual_size(src),
                         record['virtual_size'])
        self.assertEqual(data, self.read_vdi(clone, len(data)))
        self.assert_shared_hidden_parent(src, clone)

    def test_snapshot_keeps_the_bytes_of_its_time(self):
        before = pattern('before')
        src = self.vdi_with_bytes(before)
        snap = self.x.VDI.snapshot(src, {})
        self.destroy_later('VDI', snap)
        record = self.x.VDI.get_record(snap)
        self.assertTrue(record['is_a_snapshot'])
        self.assertEqual(src, record['snapshot_of'])
        self.assertIn(snap, self.x.VDI.get_snapshots(src))
        self.assertNotEqual('19700101T00:00:00Z', str(record['snapshot_time']))
        after = pattern('after')
        self.write_vdi(src, after)
        self.assertEqual(before, self.read_vdi(snap, len(before)))
        self.assertEqual(after, self.read_vdi(src, len(after)))
        self.assert_shared_hidden_parent(src, snap)

    def assert_shared_hidden_parent(self, src, child):
        parent_uuid = self.x.VDI.get_sm_config(child)['vhd-parent']
        self.assertEqual(parent_uuid, self.x.VDI.get_sm_config(src)['vhd-parent'])
        parent = self.x.VDI.get_by_uuid(parent_uuid)
        self.destroy_later('VDI', parent)
        self.assertFalse(self.x.VDI.get_managed(parent))
        self.assertTrue(self.x.VDI.get_read_only(parent))
        self.assertEqual(self.x.VDI.get_SR(src), self.x.VDI.get_SR(parent))

    def test_copy_into_another_sr(self):
        data = pattern('copy')
        src = self.vdi_with_bytes(data, size=6 * MIB)
        target = [sr for sr, r in self.x.SR.get_all_records().items()
                  if r['type'] == 'ext'][0]
        copy = self.x.VDI.copy(src, target, NULL, NULL)
        self.destroy_later('VDI', copy)
        record = self.x.VDI.get_record(copy)
        self.assertEqual(target, record['SR'])
        self.assertEqual(str(6 * MIB), record['virtual_size'])
        self.assertFalse(record['is_a_snapshot'])
        self.assertNotIn('vhd-parent', record['sm_config'])
        self.assertEqual(data, self.read_vdi(copy, len(data)))
        self.write_vdi(src, pattern('changed'))
        self.assertEqual(data, self.read_vdi(copy, len(data)))

    def test_copy_into_an_existing_vdi(self):
        data = pattern('into')
        src = self.vdi_with_bytes(data, size=4 * MIB)
        dst = self.vdi_with_bytes(pattern('old', 6 * MIB), size=6 * MIB)
        self.assertEqual(dst, self.x.VDI.copy(src, NULL, NULL, dst))
        self.assertEqual(data, self.read_vdi(dst, len(data)))
        self.assertEqual(str(6 * MIB), self.x.VDI.get_virtual_size(dst))

    def test_copy_into_a_smaller_vdi_is_too_small(self):
        src = self.new_vdi(size=8 * MIB)
        dst = self.new_vdi(size=4 * MIB)
        self.assertFailure(['VDI_TOO_SMALL', dst, str(8 * MIB)],
                           self.x.VDI.copy, src, NULL, NULL, dst)

    def test_copy_into_a_read_only_vdi(self):
        src = self.new_vdi(size=4 * MIB)
        dst = self.new_vdi(size=4 * MIB, read_only=True)
        self.assertFailure(['VDI_READONLY', dst],
                           self.x.VDI.copy, src, NULL, NULL, dst)

    def test_resize_grows_and_keeps_bytes(self):
        data = pattern('resize')
        vdi = self.vdi_with_bytes(data, size=4 * MIB)
        sr = self.default_sr()
        virtual, _ = self.sr_usage(sr)
        self.x.VDI.resize(vdi, str(9 * MIB))
        self.assertEqual(str(10 * MIB), self.x.VDI.get_virtual_size(vdi))
        self.assertEqual(virtual + 6 * MIB, self.sr_usage(sr)[0])
        body = self.read_vdi(vdi)
        self.assertEqual(10 * MIB, len(body))
        self.assertEqual(data, body[:len(data)])

    def test_resize_never_shrinks(self):
        vdi = self.new_vdi(size=8 * MIB)
        details = self.assertFailure('SR_BACKEND_FAILURE_79',
                                     self.x.VDI.resize, vdi, str(4 * MIB))
        self.assertIn('shrinking not allowed', details[2])
        self.assertEqual(str(8 * MIB), self.x.VDI.get_virtual_size(vdi))


class VdiInUseTests(VdiBytes, SimTestCase):

    def running_vm_with(self, vdi, mode='RW'):
        vm = self.new_vm()
        vbd = self.new_vbd(vm, vdi, mode=mode)
        self.x.VM.start(vm, False, False)
        return vm, vbd

    def test_destroying_an_attached_vdi_is_refused(self):
        vdi = self.new_vdi()
        vm, vbd = self.running_vm_with(vdi)
        self.assertFailure(['VDI_IN_USE', vdi, 'destroy'],
                           self.x.VDI.destroy, vdi)
        self.assertTrue(self.x.VBD.get_currently_attached(vbd))

    def test_destroying_a_detached_vdi_destroys_its_vbds(self):
        vdi = self.new_vdi()
        vm, vbd = self.running_vm_with(vdi)
        self.x.VM.hard_shutdown(vm)
        self.x.VDI.destroy(vdi)
        self.assertFailure(['HANDLE_INVALID', 'VBD', vbd],
                           self.x.VBD.get_record, vbd)
        self.assertEqual([], self.x.VM.get_VBDs(vm))
        self.assertFailure(['HANDLE_INVALID', 'VDI', vdi],
                           self.x.VDI.get_record, vdi)

    def test_non_sharable_vdi_is_attached_read_write_once(self):
        vdi = self.new_vdi()
        self.running_vm_with(vdi)
        other = self.new_vm(name='second')
        self.new_vbd(other, vdi)
        self.assertFailure(['VDI_IN_USE', vdi],
                           self.x.VM.start, other, False, False)
        self.assertEqual('Halted', self.x.VM.get_power_state(other))
        reader = self.new_vm(name='reader')
        self.new_vbd(reader, vdi, mode='RO')
        self.assertFailure(['VDI_IN_USE', vdi],
                           self.x.VM.start, reader, False, False)

    def test_hot_plug_of_a_vdi_in_use_is_refused(self):
        vdi = self.new_vdi()
        self.running_vm_with(vdi)
        other = self.new_vm(name='second')
        self.x.VM.start(other, False, False)
        vbd = self.new_vbd(other, vdi, userdevice='1')
        self.assertFailure(['VDI_IN_USE', vdi], self.x.VBD.plug, vbd)
        self.assertFalse(self.x.VBD.get_currently_attached(vbd))

    def test_sharable_vdi_attaches_to_two_running_vms(self):
        vdi = self.new_vdi(sharable=True)
        first, vbd1 = self.running_vm_with(vdi)
        second, vbd2 = self.running_vm_with(vdi)
        self.assertTrue(self.x.VBD.get_currently_attached(vbd1))
        self.assertTrue(self.x.VBD.get_currently_attached(vbd2))


class VbdTests(SimTestCase):

    def test_autodetect_takes_the_lowest_free_number(self):
        vm = self.new_vm()
        self.new_vbd(vm, self.new_vdi(), userdevice='0')
        self.new_vbd(vm, self.new_vdi(), userdevice='2')
        vbd = self.new_vbd(vm, self.new_vdi(), userdevice='autodetect')
        self.assertEqual('1', self.x.VBD.get_userdevice(vbd))
        vbd = self.new_vbd(vm, self.new_vdi(), userdevice='autodetect')
        self.assertEqual('3', self.x.VBD.get_userdevice(vbd))
        record = self.x.VBD.get_record(vbd)
        self.assertEqual('', record['device'])
        self.assertFalse(record['currently_attached'])
        self.x.VBD_metrics.get_record(record['metrics'])

    def test_device_clashes_whatever_its_spelling(self):
        vm = self.new_vm()
        self.new_vbd(vm, self.new_vdi(), userdevice='1')
        vdi = self.new_vdi()
        for name in ('1', 'xvdb', 'hdb', 'sdb'):
            self.assertFailure(['DEVICE_ALREADY_EXISTS', name],
                               self.new_vbd, vm, vdi, name)
        self.assertEqual(1, len(self.x.VM.get_VBDs(vm)))

    def test_invalid_device_names(self):
        vm = self.new_vm()
        vdi = self.new_vdi()
        for name in ('disk0', 'xvdz', '', 'auto'):
            self.assertFailure(['INVALID_DEVICE', name],
                               self.new_vbd, vm, vdi, name)
        self.assertEqual([], self.x.VM.get_VBDs(vm))

    def test_cds_must_be_read_only(self):
        vm = self.new_vm()
        self.assertFailure(['VBD_CDS_MUST_BE_READONLY'], lambda: self.new_vbd(
            vm, NULL, '3', type='CD', mode='RW', empty=True))
        cd = self.new_vbd(vm, NULL, '3', type='CD', mode='RO', empty=True)
        self.assertTrue(self.x.VBD.get_empty(cd))

    def test_only_cds_may_be_empty(self):
        vm = self.new_vm()
        self.assertFailure(['VBD_NOT_REMOVABLE_MEDIA', 'in constructor'],
                           lambda: self.new_vbd(vm, NULL, '1', empty=True))

    def test_read_only_vdi_needs_a_read_only_vbd(self):
        vm = self.new_vm()
        vdi = self.new_vdi(read_only=True)
        self.assertFailure(['VDI_READONLY', vdi], self.new_vbd, vm, vdi)
        vbd = self.new_vbd(vm, vdi, mode='RO')
        self.assertEqual('RO', self.x.VBD.get_mode(vbd))

    def test_plug_and_unplug_need_a_running_vm(self):
        vm = self.new_vm()
        vbd = self.new_vbd(vm, self.new_vdi())
        for fn in (self.x.VBD.plug, self.x.VBD.unplug):
            self.assertFailure(['VM_BAD_POWER_STATE', vm, 'running', 'halted'],
                               fn, vbd)
        self.x.VM.start(vm, True, False)
        self.assertFailure(['VM_BAD_POWER_STATE', vm, 'running', 'paused'],
                           self.x.VBD.unplug, vbd)

    def test_hot_plug_and_unplug(self):
        vm = self.new_vm()
        boot = self.new_vbd(vm, self.new_vdi())
        self.x.VM.start(vm, False, False)
        self.assertEqual('xvda', self.x.VBD.get_device(boot))
        vbd = self.new_vbd(vm, self.new_vdi(), userdevice='1')
        self.assertFalse(self.x.VBD.get_currently_attached(vbd))
        self.assertFailure(['DEVICE_ALREADY_DETACHED', vbd],
                           self.x.VBD.unplug, vbd)
        self.x.VBD.plug(vbd)
        record = self.x.VBD.get_record(vbd)
        self.assertTrue(record['currently_attached'])
        self.assertEqual('xvdb', record['device'])
        self.assertFailure(['DEVICE_ALREADY_ATTACHED', vbd],
                           self.x.VBD.plug, vbd)
        details = self.assertFailure('OPERATION_NOT_ALLOWED',
                                     self.x.VBD.destroy, vbd)
        self.assertIn(self.x.VBD.get_uuid(vbd), details[1])
        self.x.VBD.unplug(vbd)
        self.assertFalse(self.x.VBD.get_currently_attached(vbd))
        self.x.VBD.destroy(vbd)
        self.assertEqual([boot], self.x.VM.get_VBDs(vm))

    def test_unpluggable_false_blocks_unplug_but_not_force(self):
        vm = self.new_vm()
        vbd = self.new_vbd(vm, self.new_vdi(), unpluggable=False)
        self.x.VM.start(vm, False, False)
        self.assertFailure(['VBD_NOT_UNPLUGGABLE', vbd], self.x.VBD.unplug, vbd)
        self.x.VBD.unplug_force(vbd)
        self.assertFalse(self.x.VBD.get_currently_attached(vbd))


class IscsiSrTests(SimTestCase):
    hosts = 2

    def test_introduce_plug_scan_unplug_forget(self):
        sr_uuid = str(uuidlib.uuid4())
        sr = self.x.SR.introduce(sr_uuid, 'iSCSI LUN', 'a LUN', 'lvmoiscsi',
                                 'user', True, {})
        record = self.x.SR.get_record(sr)
        self.assertEqual('lvmoiscsi', record['type'])
        self.assertTrue(record['shared'])
        self.assertEqual([], record['PBDs'])
        self.assertFailure(['SR_UUID_EXISTS', sr_uuid], self.x.SR.introduce,
                           sr_uuid, 'again', '', 'lvmoiscsi', 'user', True, {})
        self.assertFailure(['SR_HAS_NO_PBDS', sr], self.new_vdi, MIB, sr)
        config = {'target': '127.0.0.1', 'port': '3260',
                  'targetIQN': 'iqn.2024-01.org.example:lun',
                  'SCSIid': '36001405abcdef'}
        pbds = [self.x.PBD.create({'host': h, 'SR': sr,
                                   'device_config': config,
                                   'other_config': {}})
                for h in self.x.host.get_all()]
        self.assertFailure('PBD_EXISTS', self.x.PBD.create, {
            'host': self.x.host.get_all()[0], 'SR': sr,
            'device_config': config, 'other_config': {}})
        for pbd in pbds:
            self.assertFalse(self.x.PBD.get_currently_attached(pbd))
            self.assertEqual(config, self.x.PBD.get_device_config(pbd))
            self.x.PBD.plug(pbd)
            self.assertTrue(self.x.PBD.get_currently_attached(pbd))
        self.assertEqual(set(pbds), set(self.x.SR.get_PBDs(sr)))
        self.assertGreater(int(self.x.SR.get_physical_size(sr)), 0)
        vdi = self.new_vdi(8 * MIB, sr)
        self.x.SR.scan(sr)
        self.assertIn(vdi, self.x.SR.get_VDIs(sr))
        self.assertEqual(str(8 * MIB), self.x.SR.get_virtual_allocation(sr))
        self.assertFailure(['SR_HAS_PBD', sr], self.x.SR.forget, sr)
        for pbd in pbds:
            self.x.PBD.unplug(pbd)
            self.assertFalse(self.x.PBD.get_currently_attached(pbd))
        self.assertFailure(['SR_HAS_NO_PBDS', sr], self.x.SR.scan, sr)
        self.x.SR.forget(sr)
        self.assertFailure(['HANDLE_INVALID', 'SR', sr],
                           self.x.SR.get_record, sr)
        for pbd in pbds:
            self.assertFailure(['HANDLE_INVALID', 'PBD', pbd],
                               self.x.PBD.get_record, pbd)
        self.assertFailure(['HANDLE_INVALID', 'VDI', vdi],
                           self.x.VDI.get_record, vdi)

    def test_unplug_refused_while_a_vm_uses_a_vdi(self):
        sr = self.x.SR.introduce(str(uuidlib.uuid4()), 'LUN', '',
                                 'lvmoiscsi', 'user', True, {})
        master = self.x.pool.get_master(self.pool_ref())
        pbd = self.x.PBD.create({'host': master, 'SR': sr,
                                 'device_config': {}, 'other_config': {}})
        self.x.PBD.plug(pbd)
        vdi = self.new_vdi(4 * MIB, sr)
        vm = self.new_vm()
        self.new_vbd(vm, vdi)
        self.x.VM.start_on(vm, master, False, False)
        self.assertFailure(['VDI_IN_USE', vdi], self.x.PBD.unplug, pbd)
        self.x.VM.hard_shutdown(vm)
        self.x.PBD.unplug(pbd)
        self.assertFalse(self.x.PBD.get_currently_attached(pbd))


class CopyProgressTest(unittest.TestCase):
    """A copy reports how far it is, chunk by chunk (VDI.copy's task)."""

    def test_progress_moves_between_0_and_1(self):
        from xapisim import storage
        tmp = tempfile.mkdtemp(prefix='xapisim-copy-')
        self.addCleanup(shutil.rmtree, tmp)
        src, dst = os.path.join(tmp, 'src'), os.path.join(tmp, 'dst')
        size = 64 * MIB
        with open(src, 'wb') as fh:
            fh.truncate(size)
            fh.write(pattern('start', 40 * MIB))     # one long data extent
            fh.seek(60 * MIB)
            fh.write(pattern('end', MIB))
        with open(dst, 'wb') as fh:
            fh.truncate(size)
        seen = []
        storage.copy_file_data(src, dst, seen.append)
        self.assertGreater(len(seen), 5, seen)
        self.assertEqual(sorted(seen), seen)
        self.assertTrue(all(0.0 < p < 1.0 for p in seen), seen)
        # within the first extent already, not only at its end
        self.assertLess(seen[0], 40.0 / 64)
        with open(src, 'rb') as a, open(dst, 'rb') as b:
            self.assertEqual(a.read(), b.read())
