"""VHD trees as XCP-ng's sm builds them on file SRs: clones of an
unwritten leaf are siblings under one base, the base a clone did not need
is deleted, a chain 30 deep is refused, and the garbage collector
coalesces what no longer has siblings."""

import base64
import uuid as uuidlib
import zlib

from tests.xapisim.base import MIB, SimTestCase
from tests.xapisim.test_storage import VdiBytes, pattern

BLOCK = 2 * MIB
TOO_LONG = ['SR_BACKEND_FAILURE_109', '', 'The snapshot chain is too long',
            '']


class TreeTestCase(VdiBytes, SimTestCase):

    def parent_uuid(self, vdi):
        return self.x.VDI.get_sm_config(vdi).get('vhd-parent')

    def chain(self, vdi):
        """The uuids of ``vdi``'s parents, nearest first, as a client
        reads them (sm_config vhd-parent)."""
        found = []
        uuid = self.parent_uuid(vdi)
        while uuid:
            found.append(uuid)
            uuid = self.parent_uuid(self.x.VDI.get_by_uuid(uuid))
        return found

    def depth(self, vdi):
        """sm's depth: the VDI and each parent."""
        return len(self.chain(vdi)) + 1

    def guest_writes(self, vdi, data, offset=0):
        self.control().write_vdi(self.x.VDI.get_uuid(vdi), data, offset)

    def clone(self, vdi):
        return self.destroy_later('VDI', self.x.VDI.clone(vdi, {}))

    def sr_vdis(self):
        return set(self.x.SR.get_VDIs(self.default_sr()))

    def used(self, vdi):
        return int(self.x.VDI.get_physical_utilisation(vdi))


class CloneTest(TreeTestCase):

    def test_clones_of_an_unwritten_leaf_are_siblings_under_one_base(self):
        data = pattern('golden')
        leaf = self.vdi_with_bytes(data)
        before = self.sr_vdis()
        clones = [self.clone(leaf) for _ in range(6)]
        (base_uuid,) = {self.parent_uuid(v) for v in clones + [leaf]}
        base = self.x.VDI.get_by_uuid(base_uuid)
        # six clones, one base: the leaf's data, read-only and hidden
        self.assertEqual(set(clones) | {base}, self.sr_vdis() - before)
        record = self.x.VDI.get_record(base)
        self.assertEqual(('base copy', True, False, False, {}),
                         (record['name_label'], record['read_only'],
                          record['managed'], record['is_a_snapshot'],
                          record['other_config']))
        self.assertNotIn('vhd-parent', record['sm_config'])
        for vdi in clones + [leaf]:
            self.assertEqual(2, self.depth(vdi))
            self.assertEqual(data, self.read_vdi(vdi, len(data)))

    def test_the_base_a_clone_does_not_need_is_deleted(self):
        leaf = self.vdi_with_bytes(pattern('once'))
        first = self.clone(leaf)
        base = self.parent_uuid(leaf)
        before = self.sr_vdis()
        second = self.clone(leaf)
        # the leaf's empty layer became no base: only the clone is new
        self.assertEqual({second}, self.sr_vdis() - before)
        self.assertEqual([base], self.chain(leaf))
        self.assertEqual([base], self.chain(second))
        self.assertEqual([base], self.chain(first))

    def test_a_written_leaf_adds_a_level_at_its_next_clone(self):
        old = pattern('old')
        leaf = self.vdi_with_bytes(old)
        first = self.clone(leaf)
        (bottom,) = self.chain(leaf)
        new = pattern('new', 1024)
        self.guest_writes(leaf, new, offset=3 * BLOCK)
        second = self.clone(leaf)
        middle = self.parent_uuid(leaf)
        self.assertEqual([middle, bottom], self.chain(leaf))
        self.assertEqual([middle, bottom], self.chain(second))
        self.assertEqual([bottom], self.chain(first))
        # the new base holds the one block written since the first clone
        bitmap = zlib.decompress(base64.b64decode(self.x.VDI.get_sm_config(
            self.x.VDI.get_by_uuid(middle))['vhd-blocks']))
        self.assertEqual(b'\x10', bitmap[:1])
        self.assertEqual(BLOCK, self.used(self.x.VDI.get_by_uuid(middle)))
        for vdi in (leaf, second):
            self.assertEqual(new, self.read_vdi(vdi)[3 * BLOCK:
                                                     3 * BLOCK + 1024])
        self.assertEqual(bytes(1024), self.read_vdi(first)[3 * BLOCK:
                                                           3 * BLOCK + 1024])
        # written once: the clones after it stay at that depth
        third = self.clone(leaf)
        self.assertEqual([middle, bottom], self.chain(third))

    def test_a_chain_30_deep_is_neither_cloned_nor_snapshot(self):
        leaf = self.vdi_with_bytes(b'level 1')
        for level in range(2, 31):
            self.clone(leaf)
            self.assertEqual(level, self.depth(leaf))
            self.guest_writes(leaf, b'level %d' % level)
        before = self.sr_vdis()
        self.assertFailure(TOO_LONG, self.x.VDI.clone, leaf, {})
        self.assertFailure(TOO_LONG, self.x.VDI.snapshot, leaf, {})
        self.assertEqual(before, self.sr_vdis())
        self.assertEqual(30, self.depth(leaf))
        self.assertEqual(b'level 30', self.read_vdi(leaf, 8))

    def test_a_clone_holds_no_blocks_of_its_own(self):
        leaf = self.vdi_with_bytes(pattern('space', 5 * MIB), size=16 * MIB)
        held = self.used(leaf)
        self.assertEqual(3 * BLOCK, held)
        sr = self.default_sr()
        sr_used = int(self.x.SR.get_physical_utilisation(sr))
        clone = self.clone(leaf)
        self.assertEqual((0, 0), (self.used(leaf), self.used(clone)))
        base = self.x.VDI.get_by_uuid(self.parent_uuid(clone))
        self.assertEqual(held, self.used(base))
        # the data is on the SR once, whatever reads it
        self.assertEqual(sr_used, int(self.x.SR.get_physical_utilisation(sr)))


class Qcow2Test(TreeTestCase):

    def test_every_clone_of_a_qcow2_vdi_adds_a_level(self):
        leaf = self.new_vdi(sm_config={'image-format': 'qcow2'})
        self.write_vdi(leaf, b'qcow2')
        for depth in (2, 3, 4):
            clone = self.clone(leaf)
            self.assertEqual(depth, self.depth(leaf))
            self.assertEqual(depth, self.depth(clone))
            self.assertEqual('qcow2',
                             self.x.VDI.get_sm_config(clone)['image-format'])
            self.assertEqual(b'qcow2', self.read_vdi(clone, 5))

    def test_an_sr_that_prefers_qcow2_makes_qcow2_vdis(self):
        sr = self.x.SR.introduce(str(uuidlib.uuid4()), 'qcow2 NFS', '',
                                 'nfs', 'user', True, {})
        pbd = self.x.PBD.create({
            'host': self.x.host.get_all()[0], 'SR': sr, 'other_config': {},
            'device_config': {'server': 'nfs.example.com',
                              'preferred-image-formats': 'QCOW2,VHD'}})
        self.x.PBD.plug(pbd)
        vdi = self.new_vdi(sr=sr)
        self.assertEqual('qcow2',
                         self.x.VDI.get_sm_config(vdi)['image-format'])
        self.assertEqual(2, self.depth(self.clone(vdi)))
        self.assertEqual(3, self.depth(self.clone(vdi)))
        explicit = self.new_vdi(sr=sr, sm_config={'image-format': 'vhd'})
        self.assertNotIn('qcow2', self.x.VDI.get_sm_config(explicit).values())
        self.x.VDI.destroy(explicit)
        # the GC removes the bases once no VDI reads through them
        while self.x.SR.get_VDIs(sr):
            visible = [vdi for vdi, record in self.x.VDI.get_all_records(
                ).items() if record['SR'] == sr and record['managed']]
            self.x.VDI.destroy(visible[0])
        self.x.PBD.unplug(pbd)
        self.x.SR.forget(sr)


class CoalesceTest(TreeTestCase):
    """cleanup.py's rules, applied when a VDI goes."""

    def test_a_leaf_left_alone_under_its_base_takes_its_blocks(self):
        data = pattern('fold')
        leaf = self.vdi_with_bytes(data)
        snap = self.x.VDI.snapshot(leaf, {})
        base_uuid = self.parent_uuid(leaf)
        self.x.VDI.destroy(snap)
        self.assertFailure(['UUID_INVALID', 'VDI', base_uuid],
                           self.x.VDI.get_by_uuid, base_uuid)
        self.assertEqual(1, self.depth(leaf))
        self.assertEqual(BLOCK, self.used(leaf))
        self.assertEqual(data, self.read_vdi(leaf, len(data)))

    def test_a_base_with_one_child_left_coalesces_into_its_parent(self):
        leaf = self.vdi_with_bytes(pattern('bottom'))
        first = self.x.VDI.clone(leaf, {})
        (bottom,) = self.chain(leaf)
        top = pattern('top', 4096)
        self.guest_writes(leaf, top, offset=BLOCK)
        second = self.clone(leaf)
        middle = self.parent_uuid(leaf)
        self.x.VDI.destroy(first)
        # the middle base was the bottom's only child: merged into it
        self.assertFailure(['UUID_INVALID', 'VDI', middle],
                           self.x.VDI.get_by_uuid, middle)
        for vdi in (leaf, second):
            self.assertEqual([bottom], self.chain(vdi))
            self.assertEqual(top, self.read_vdi(vdi)[BLOCK:BLOCK + 4096])
            self.assertEqual(pattern('bottom'),
                             self.read_vdi(vdi, len(pattern('bottom'))))
        self.assertEqual(2 * BLOCK,
                         self.used(self.x.VDI.get_by_uuid(bottom)))

    def test_nothing_with_siblings_coalesces(self):
        leaf = self.vdi_with_bytes(pattern('siblings'))
        clones = [self.clone(leaf) for _ in range(3)]
        base = self.parent_uuid(leaf)
        self.x.VDI.destroy(clones[0])
        self.assertEqual([base], self.chain(leaf))
        self.x.VDI.destroy(clones[1])
        self.assertEqual([base], self.chain(leaf))
        self.assertEqual([base], self.chain(clones[2]))
        # the last one left alone takes its base's place
        self.x.VDI.destroy(leaf)
        self.assertEqual(1, self.depth(clones[2]))
        self.assertFailure(['UUID_INVALID', 'VDI', base],
                           self.x.VDI.get_by_uuid, base)
        self.assertEqual(pattern('siblings'),
                         self.read_vdi(clones[2], len(pattern('siblings'))))

    def test_leaf_coalesce_switched_off_keeps_the_base(self):
        kept = self.vdi_with_bytes(pattern('keep'),
                                   other_config={'leaf-coalesce': 'false'})
        folded = self.vdi_with_bytes(pattern('fold'))
        for leaf in (kept, folded):
            self.x.VDI.destroy(self.x.VDI.snapshot(leaf, {}))
        self.assertEqual(2, self.depth(kept))
        self.assertEqual(1, self.depth(folded))
