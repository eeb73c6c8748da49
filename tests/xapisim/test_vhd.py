"""The VHD codec behind /import_raw_vdi and /export_raw_vdi (xapisim.vhd).

The VHDs fed to the reader here are built by ``build_vhd`` below, written
from the VHD specification (Microsoft, "Virtual Hard Disk Image Format
Specification" 1.0) rather than from the simulator's writer, so the two
check each other.
"""

import io
import os
import struct
import unittest

from xapisim import vhd

SECTOR = 512
BLOCK = 2 * 1024 * 1024
MIB = 1024 * 1024


def spec_checksum(raw, at):
    """One's complement of the byte sum, the checksum field counted as 0."""
    raw = bytearray(raw)
    raw[at:at + 4] = b'\0\0\0\0'
    return (~sum(raw)) & 0xFFFFFFFF


def footer_bytes(size, disk_type=3, data_offset=SECTOR, cookie=b'conectix',
                 corrupt=False):
    raw = bytearray(SECTOR)
    raw[0:8] = cookie
    struct.pack_into('>II', raw, 8, 2, 0x00010000)       # features, version
    struct.pack_into('>Q', raw, 16, data_offset)
    raw[28:32] = b'test'
    struct.pack_into('>QQ', raw, 40, size, size)          # original, current
    struct.pack_into('>HBB', raw, 56, 16, 4, 17)          # any geometry
    struct.pack_into('>I', raw, 60, disk_type)
    raw[68:84] = os.urandom(16)
    struct.pack_into('>I', raw, 64, spec_checksum(raw, 64) ^ (1 if corrupt
                                                              else 0))
    return bytes(raw)


def header_bytes(table_offset, entries, block=BLOCK, corrupt=False):
    raw = bytearray(1024)
    raw[0:8] = b'cxsparse'
    struct.pack_into('>QQIII', raw, 8, 0xFFFFFFFFFFFFFFFF, table_offset,
                     0x00010000, entries, block)
    struct.pack_into('>I', raw, 36, spec_checksum(raw, 36) ^ (1 if corrupt
                                                              else 0))
    return bytes(raw)


def build_vhd(size, blocks, entries=None, offsets=None, corrupt_footer=False,
              corrupt_header=False):
    """A dynamic VHD by hand.

    ``blocks``: {block index: (bitmap bytes, block data)}; blocks are laid
    out in index order right after the BAT unless ``offsets`` (index ->
    byte offset) says otherwise.
    """
    entries = entries or (size + BLOCK - 1) // BLOCK
    bitmap_len = BLOCK // SECTOR // 8
    table_offset = SECTOR + 1024
    bat_len = (entries * 4 + SECTOR - 1) // SECTOR * SECTOR
    bat = [0xFFFFFFFF] * entries
    layout = []
    pos = table_offset + bat_len
    for idx in sorted(blocks):
        at = (offsets or {}).get(idx, pos)
        bat[idx] = at // SECTOR
        layout.append((at, idx))
        pos = max(pos, at + bitmap_len + BLOCK)
    image = bytearray(footer_bytes(size, corrupt=corrupt_footer))
    image += header_bytes(table_offset, entries, corrupt=corrupt_header)
    table = struct.pack('>%dI' % entries, *bat)
    image += table + b'\xff' * (bat_len - len(table))
    image += b'\0' * (pos - len(image))
    for at, idx in layout:
        bitmap, data = blocks[idx]
        image[at:at + bitmap_len] = bitmap.ljust(bitmap_len, b'\0')
        image[at + bitmap_len:at + bitmap_len + BLOCK] = data.ljust(BLOCK,
                                                                    b'\0')
    image += footer_bytes(size)
    return bytes(image)


def full_bitmap():
    return b'\xff' * (BLOCK // SECTOR // 8)


def sector_bitmap(sectors):
    bits = bytearray(BLOCK // SECTOR // 8)
    for s in sectors:
        bits[s >> 3] |= 0x80 >> (s & 7)
    return bytes(bits)


def pattern(n, seed):
    unit = bytes((seed * 31 + i * 7) & 0xFF for i in range(251))
    return (unit * (n // len(unit) + 1))[:n]


def decode(image, max_size):
    """(virtual size, {offset: bytes}) written by read_vhd."""
    writes = {}

    def write(offset, data):
        writes[offset] = bytes(data)
    stream = io.BytesIO(image)
    return vhd.read_vhd(stream.read, max_size, write), writes


def apply(writes, size):
    disk = bytearray(size)
    for offset, data in writes.items():
        disk[offset:offset + len(data)] = data
    return bytes(disk)


class Geometry(unittest.TestCase):
    def test_known_geometries(self):
        # values any VHD tool (qemu-img, vhd-util) gives for these sizes
        self.assertEqual((2080, 16, 63), vhd.geometry(1024 * MIB))
        self.assertEqual((963 // 4, 4, 17), vhd.geometry(8 * MIB))
        self.assertEqual((65535, 16, 255), vhd.geometry(2 * 1024 ** 4))

    def test_geometry_never_exceeds_the_disk(self):
        for size in (1 * MIB, 100 * MIB, 4096 * MIB, 60 * 1024 * MIB,
                     127 * 1024 * MIB):
            cyl, heads, spt = vhd.geometry(size)
            self.assertLessEqual(cyl * heads * spt, size // SECTOR, size)
            self.assertLessEqual(heads, 16)
            self.assertLessEqual(spt, 255)
            self.assertLessEqual(cyl, 65535)

    def test_footer_carries_size_geometry_and_type(self):
        size = 1024 * MIB
        raw = vhd.make_footer(size, vhd.TYPE_DYNAMIC, SECTOR)
        self.assertEqual(SECTOR, len(raw))
        self.assertEqual(b'conectix', raw[:8])
        self.assertEqual((SECTOR, ), struct.unpack_from('>Q', raw, 16))
        self.assertEqual((size, size), struct.unpack_from('>QQ', raw, 40))
        self.assertEqual((2080, 16, 63), struct.unpack_from('>HBB', raw, 56))
        self.assertEqual((3, ), struct.unpack_from('>I', raw, 60))


class Checksums(unittest.TestCase):
    def test_footer_and_header_checksums_follow_the_spec(self):
        footer = vhd.make_footer(10 * MIB, vhd.TYPE_DYNAMIC, SECTOR)
        self.assertEqual(spec_checksum(footer, 64),
                         struct.unpack_from('>I', footer, 64)[0])
        header = vhd.make_header(1536, 5)
        self.assertEqual(spec_checksum(header, 36),
                         struct.unpack_from('>I', header, 36)[0])
        self.assertEqual(spec_checksum(footer, 64),
                         vhd.checksum(footer, 64))

    def test_bad_footer_checksum_refused(self):
        image = build_vhd(4 * MIB, {}, corrupt_footer=True)
        with self.assertRaisesRegex(vhd.VhdError, 'checksum'):
            decode(image, 4 * MIB)

    def test_bad_header_checksum_refused(self):
        image = build_vhd(4 * MIB, {}, corrupt_header=True)
        with self.assertRaisesRegex(vhd.VhdError, 'checksum'):
            decode(image, 4 * MIB)

    def test_not_a_vhd_refused(self):
        with self.assertRaises(vhd.VhdError):
            decode(b'\x42' * 4096, 4 * MIB)
        with self.assertRaises(vhd.VhdError):
            decode(footer_bytes(4 * MIB, cookie=b'notavhd!'), 4 * MIB)

    def test_fixed_vhd_refused(self):
        image = footer_bytes(4 * MIB, disk_type=2, data_offset=2 ** 64 - 1)
        with self.assertRaisesRegex(vhd.VhdError, 'type'):
            decode(image, 4 * MIB)


class RoundTrip(unittest.TestCase):
    def _write(self, size, disk):
        blocks = [i for i in range((size + BLOCK - 1) // BLOCK)
                  if disk[i * BLOCK:(i + 1) * BLOCK].strip(b'\0')]
        image = b''.join(vhd.write_vhd(
            size, blocks, lambda i: disk[i * BLOCK:min((i + 1) * BLOCK, size)]))
        return blocks, image

    def test_round_trip(self):
        size = 7 * MIB + 3 * SECTOR          # last block is partial
        disk = bytearray(size)
        disk[100:4196] = pattern(4096, 1)
        disk[5 * MIB:5 * MIB + 1000] = pattern(1000, 2)
        disk[size - 700:] = pattern(700, 3)
        blocks, image = self._write(size, bytes(disk))
        self.assertEqual([0, 2, 3], blocks)
        got_size, writes = decode(image, size)
        self.assertEqual(size, got_size)
        self.assertEqual(bytes(disk), apply(writes, size))
        # only allocated blocks are stored: 3 blocks + metadata, not 4
        self.assertLess(len(image), 4 * BLOCK)
        self.assertGreater(len(image), 3 * BLOCK)

    def test_image_layout_follows_the_spec(self):
        size = 6 * MIB
        disk = bytes(2 * MIB) + pattern(2 * MIB, 4) + bytes(2 * MIB)
        _, image = self._write(size, disk)
        self.assertEqual(image[:SECTOR], image[-SECTOR:])   # footer copy
        data_offset = struct.unpack_from('>Q', image, 16)[0]
        header = image[data_offset:data_offset + 1024]
        self.assertEqual(b'cxsparse', header[:8])
        table_offset, _, entries, block = struct.unpack_from('>QIII',
                                                             header, 16)
        self.assertEqual((3, BLOCK), (entries, block))
        bat = struct.unpack_from('>3I', image, table_offset)
        self.assertEqual(0xFFFFFFFF, bat[0])
        self.assertEqual(0xFFFFFFFF, bat[2])
        start = bat[1] * SECTOR + SECTOR      # after a one-sector bitmap
        self.assertEqual(b'\xff' * SECTOR, image[bat[1] * SECTOR:start])
        self.assertEqual(disk[2 * MIB:4 * MIB], image[start:start + BLOCK])

    def test_empty_disk(self):
        blocks, image = self._write(4 * MIB, bytes(4 * MIB))
        self.assertEqual([], blocks)
        size, writes = decode(image, 4 * MIB)
        self.assertEqual((4 * MIB, {}), (size, writes))

    def test_partial_sector_bitmap_writes_only_present_sectors(self):
        data = pattern(BLOCK, 5)
        present = [0, 1, 2, 9, 4095]
        image = build_vhd(4 * MIB, {1: (sector_bitmap(present), data)})
        _, writes = decode(image, 4 * MIB)
        disk = apply(writes, 4 * MIB)
        expected = bytearray(4 * MIB)
        for s in present:
            at = BLOCK + s * SECTOR
            expected[at:at + SECTOR] = data[s * SECTOR:(s + 1) * SECTOR]
        self.assertEqual(bytes(expected), disk)
        # absent sectors are left alone, not written as zeros
        covered = sum(len(d) for d in writes.values())
        self.assertEqual(len(present) * SECTOR, covered)

    def test_smaller_vhd_into_bigger_disk(self):
        image = build_vhd(2 * MIB, {0: (full_bitmap(), pattern(BLOCK, 6))})
        size, writes = decode(image, 8 * MIB)
        self.assertEqual(2 * MIB, size)
        self.assertEqual(pattern(BLOCK, 6), apply(writes, 2 * MIB))

    def test_whole_blocks_are_moved_the_rest_written(self):
        # with ``move``, a block whose every sector is present goes to the
        # disk by move (xapisim's import splices it); a partial bitmap and
        # a block that reaches past the disk's end are written by runs
        size = 5 * MIB                       # block 2 is half past the end
        present = [3, 4, 4000]
        image = build_vhd(size, {0: (full_bitmap(), pattern(BLOCK, 11)),
                                 1: (sector_bitmap(present),
                                     pattern(BLOCK, 12)),
                                 2: (full_bitmap(), pattern(BLOCK, 13))})
        stream = io.BytesIO(image)
        disk, moves, writes = bytearray(size), [], []

        def write(offset, data):
            writes.append((offset, len(data)))
            disk[offset:offset + len(data)] = data

        def move(offset, n):
            moves.append((offset, n))
            data = stream.read(n)
            disk[offset:offset + len(data)] = data
            return len(data)
        self.assertEqual(size, vhd.read_vhd(stream.read, size, write, move))
        self.assertEqual([(0, BLOCK)], moves)
        self.assertEqual(len(present) - 1 + 1, len(writes))   # 2 runs + 1
        self.assertEqual((2 * BLOCK, MIB), writes[-1])
        _, plain = decode(image, size)
        self.assertEqual(apply(plain, size), bytes(disk))
        # a move that finds fewer bytes than the block is a truncation
        cut = io.BytesIO(image[:len(image) - 3 * BLOCK])
        with self.assertRaisesRegex(vhd.VhdError, 'truncated'):
            vhd.read_vhd(cut.read, size, write,
                         lambda offset, n: len(cut.read(n)))


class Refusals(unittest.TestCase):
    def test_oversize_refused_before_writing(self):
        image = build_vhd(8 * MIB, {0: (full_bitmap(), pattern(BLOCK, 7))})
        with self.assertRaisesRegex(vhd.VhdError, 'exceeds'):
            decode(image, 8 * MIB - SECTOR)

    def test_truncated_stream_refused(self):
        image = build_vhd(4 * MIB, {0: (full_bitmap(), pattern(BLOCK, 8))})
        for cut in (100, SECTOR + 500, 1536 + 2, 2048 + 4096,
                    len(image) - SECTOR - 1):
            with self.assertRaises(vhd.VhdError, msg=cut):
                decode(image[:cut], 4 * MIB)

    def test_missing_trailing_footer_refused(self):
        image = build_vhd(4 * MIB, {0: (full_bitmap(), pattern(BLOCK, 8))})
        with self.assertRaisesRegex(vhd.VhdError, 'footer'):
            decode(image[:-SECTOR], 4 * MIB)

    def test_overlapping_blocks_refused(self):
        first = 2048 + 512            # right after a one-sector BAT
        image = build_vhd(6 * MIB, {0: (full_bitmap(), pattern(BLOCK, 9)),
                                    1: (full_bitmap(), pattern(BLOCK, 10))},
                          offsets={0: first, 1: first + MIB})
        with self.assertRaisesRegex(vhd.VhdError, 'overlap'):
            decode(image, 6 * MIB)

    def test_block_over_the_metadata_refused(self):
        image = build_vhd(4 * MIB, {0: (full_bitmap(), pattern(BLOCK, 11))},
                          offsets={0: 1024})
        with self.assertRaises(vhd.VhdError):
            decode(image, 4 * MIB)

    def test_block_beyond_the_disk_refused(self):
        image = build_vhd(2 * MIB, {1: (full_bitmap(), pattern(BLOCK, 12))},
                          entries=2)
        with self.assertRaisesRegex(vhd.VhdError, 'beyond'):
            decode(image, 8 * MIB)

    def test_block_table_too_small_refused(self):
        image = build_vhd(8 * MIB, {0: (full_bitmap(), pattern(BLOCK, 13))},
                          entries=2)
        with self.assertRaises(vhd.VhdError):
            decode(image, 8 * MIB)

    def test_mismatched_trailing_footer_refused(self):
        image = build_vhd(4 * MIB, {})
        image = image[:-SECTOR] + footer_bytes(2 * MIB)
        with self.assertRaisesRegex(vhd.VhdError, 'footer'):
            decode(image, 4 * MIB)


if __name__ == '__main__':
    unittest.main()
