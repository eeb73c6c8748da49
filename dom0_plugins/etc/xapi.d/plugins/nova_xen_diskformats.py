"""Disk image formats for nova-xen's image plugin, read as streams.

Runs in dom0 on Python 3.6 with the standard library only.  Nothing here
does I/O of its own: readers take a source with ``read(n)`` (up to n bytes,
b'' at the end) and never hold more than a VHD block (2 MiB) at a time.

- gzip (one or more members) and tar: regular files only; links, devices,
  FIFOs, subdirectories, absolute names and '..' are refused;
- VHD (dynamic and differencing, 2 MiB blocks): read front to back with
  every structure checked, and written back as a dynamic VHD, optionally
  with fewer blocks and sectors;
- VHD chains (0.vhd the leaf .. N.vhd the base): which sectors of each VHD
  no child overrides, so that importing each VHD with only those sectors,
  in any order, leaves the merged disk.

Anything malformed raises ``Invalid`` (a reason); a disk larger than
allowed raises ``TooLarge``.
"""

import array
import re
import struct
import sys
import time
import zlib

IO = 1 << 20
SECTOR = 512
BLOCK = 2 << 20
BITMAP = 512            # a 2 MiB block's sector bitmap, padded to a sector
FULL = b'\xff' * BITMAP
ALL = (1 << (BITMAP * 8)) - 1
UNUSED = 0xFFFFFFFF
DYNAMIC, DIFFERENCING = 3, 4
MAX_SIZE = 2 << 40
MAX_BAT = 1 << 20
MAX_TAR_META = 64 << 10
TAR_KINDS = {b'1': 'hard link', b'2': 'symbolic link', b'3': 'device node',
             b'4': 'device node', b'6': 'FIFO', b'S': 'sparse file'}


class Invalid(Exception):
    """The image is not what it claims to be."""


class TooLarge(Exception):
    def __init__(self, size, limit):
        Exception.__init__(self, size)
        self.size = size
        self.limit = limit


# -- streams ---------------------------------------------------------------

def exact(src, n):
    return b''.join(exact_parts(src, n, IO))


def exact_parts(src, n, most=BLOCK):
    """The next ``n`` bytes of ``src`` as the pieces it hands over (read
    ``most`` at a time): no copy to join them."""
    parts = []
    while n:
        piece = src.read(min(n, most))
        if not piece:
            raise Invalid('the image ends too early')
        parts.append(piece)
        n -= len(piece)
    return parts


def skip(src, n):
    while n:
        piece = src.read(min(n, IO))
        if not piece:
            raise Invalid('the image ends too early')
        n -= len(piece)


def iter_chunks(src):
    while True:
        piece = src.read(IO)
        if not piece:
            return
        yield piece


def drain(src):
    for _ in iter_chunks(src):
        pass


class Bounded(object):
    """The next ``size`` bytes of ``src``."""

    def __init__(self, src, size):
        self.src, self.left = src, size

    def read(self, n):
        n = min(n, self.left)
        if n <= 0:
            return b''
        data = self.src.read(n)
        if not data:
            raise Invalid('the image ends too early')
        self.left -= len(data)
        return data


class Gunzip(object):
    """Decompressed gzip (one or more members), output bounded per read."""

    def __init__(self, src):
        self.src, self.tail, self.done = src, b'', False
        self.z = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def read(self, n):
        try:
            while not self.done:
                if self.z.eof:
                    rest = self.z.unused_data or self.src.read(IO)
                    if not rest:
                        self.done = True
                        break
                    self.z = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    self.tail = rest
                if not self.tail:
                    self.tail = self.src.read(IO)
                    if not self.tail:
                        raise Invalid('the gzip stream ends too early')
                out = self.z.decompress(self.tail, n)
                self.tail = self.z.unconsumed_tail
                if out:
                    return out
        except zlib.error as exc:
            raise Invalid('bad gzip data: %s' % exc)
        return b''


# -- tar -------------------------------------------------------------------

def _octal(field):
    if field[:1] == b'\x80':
        return int.from_bytes(field[1:], 'big')
    text = field.replace(b'\0', b' ').strip()
    if not re.match(br'^[0-7]*$', text):
        raise Invalid('bad number in a tar header')
    return int(text or b'0', 8)


def _pax(data):
    found = {}
    while data:
        length = data.split(b' ', 1)[0]
        if not length.isdigit() or not len(length) < int(length) <= len(data):
            raise Invalid('bad pax header')
        record, data = data[len(length) + 1:int(length)], data[int(length):]
        key, _, value = record.rstrip(b'\n').partition(b'=')
        if key.startswith(b'GNU.sparse'):
            raise Invalid('sparse tar members are not supported')
        if key == b'path':
            found['path'] = value
        elif key == b'size':
            if not value.isdigit():
                raise Invalid('bad pax size')
            found['size'] = int(value)
    return found


def _member_name(raw):
    try:
        name = raw.decode('utf-8')
    except UnicodeDecodeError:
        raise Invalid('a tar member name is not UTF-8')
    if name.startswith('/'):
        raise Invalid('absolute path %r in the image' % name[:100])
    parts = [p for p in name.split('/') if p not in ('', '.')]
    if '..' in parts:
        raise Invalid("%r climbs out of the image with '..'" % name[:100])
    if len(parts) > 1:
        raise Invalid('%r lies in a subdirectory' % name[:100])
    return parts[0] if parts else ''


def tar_files(src):
    """(name, size, reader) of each regular file of a tar stream.

    Links, devices, FIFOs, subdirectories, absolute names and '..' are
    refused; the top directory ('.' or './') is skipped.
    """
    meta = {}
    while True:
        block = exact(src, SECTOR)
        if block.count(0) == SECTOR:
            for piece in iter_chunks(src):
                if bytes(piece).count(0) != len(piece):
                    raise Invalid('data after the end of the tar archive')
            return
        if _octal(block[148:156]) != sum(block) - sum(block[148:156]) + 256:
            raise Invalid('bad tar header checksum')
        kind, size = block[156:157], _octal(block[124:136])
        if kind in (b'x', b'g', b'L'):
            if size > MAX_TAR_META:
                raise Invalid('oversized tar extended header')
            data = exact(src, size + (-size % SECTOR))[:size]
            if kind == b'x':
                meta.update(_pax(data))
            elif kind == b'L':
                meta['path'] = data.rstrip(b'\0')
            continue
        name = block[:100].split(b'\0', 1)[0]
        prefix = block[345:500].split(b'\0', 1)[0]
        if block[257:262] == b'ustar' and prefix:
            name = prefix + b'/' + name
        name = _member_name(meta.get('path', name))
        size = meta.get('size', size)
        meta = {}
        if kind in TAR_KINDS:
            raise Invalid('%r is a %s' % (name, TAR_KINDS[kind]))
        if kind == b'5' and name == '':
            skip(src, size + (-size % SECTOR))
            continue
        if kind not in (b'0', b'\0', b'7') or not name:
            raise Invalid('unexpected tar entry %r of type %r' % (name, kind))
        reader = Bounded(src, size)
        yield name, size, reader
        skip(src, reader.left + (-size % SECTOR))


def tar_header(name, size):
    """A ustar header for a regular file (GNU base-256 size from 8 GiB)."""
    size_field = b'%011o\0' % size if size < 8 ** 11 else \
        b'\x80' + size.to_bytes(11, 'big')
    h = bytearray(name.ljust(100, b'\0') + b'0000644\0' + b'0000000\0' * 2
                  + size_field + b'%011o\0' % int(time.time()) + b' ' * 8
                  + b'0' + b'\0' * 100 + b'ustar\x0000')
    h += b'\0' * (SECTOR - len(h))
    h[148:156] = b'%06o\0 ' % sum(h)
    return bytes(h)


# -- VHD -------------------------------------------------------------------

def _vhd_checksum(raw, at):
    return ~(sum(raw) - sum(raw[at:at + 4])) & 0xFFFFFFFF


def _parse_footer(raw):
    if raw[:8] != b'conectix':
        raise Invalid('not a VHD: no footer cookie')
    if struct.unpack_from('>I', raw, 64)[0] != _vhd_checksum(raw, 64):
        raise Invalid('VHD footer checksum mismatch')
    return (struct.unpack_from('>Q', raw, 16)[0],
            struct.unpack_from('>Q', raw, 48)[0],
            struct.unpack_from('>I', raw, 60)[0])


def _bit(bits, idx):
    return bits[idx >> 3] & (0x80 >> (idx & 7))


def _set_bit(bits, idx):
    bits[idx >> 3] |= 0x80 >> (idx & 7)


class VhdReader(object):
    """A dynamic or differencing VHD read front to back from ``src``.

    The constructor reads and checks footer, header and block table;
    ``blocks()`` then yields (index, sector bitmap, data) in file order
    and checks the footer copy.  ``length`` None: up to the end of src.
    """

    def __init__(self, src, length, max_size):
        self.src, self.length, self.pos = src, length, 0
        self.footer = self._read(SECTOR)
        data_offset, self.size, self.disk_type = _parse_footer(self.footer)
        if self.disk_type not in (DYNAMIC, DIFFERENCING):
            raise Invalid('VHD disk type %d is not dynamic or differencing'
                          % self.disk_type)
        if not self.size or self.size % SECTOR:
            raise Invalid('VHD size %d is not whole sectors' % self.size)
        if self.size > max_size:
            raise TooLarge(self.size, max_size)
        self._skip_to(data_offset)
        header = self._read(1024)
        if header[:8] != b'cxsparse':
            raise Invalid('not a dynamic VHD: no header cookie')
        if struct.unpack_from('>I', header, 36)[0] != \
                _vhd_checksum(header, 36):
            raise Invalid('VHD header checksum mismatch')
        table, = struct.unpack_from('>Q', header, 16)
        entries, block = struct.unpack_from('>II', header, 28)
        if block != BLOCK:
            raise Invalid('VHD block size %d is not 2 MiB' % block)
        self.entries = (self.size + BLOCK - 1) // BLOCK
        if not self.entries <= entries <= MAX_BAT:
            raise Invalid('VHD block table does not match its size')
        self._skip_to(table)
        bat = self.bat = array.array('I')
        bat.frombytes(self._read(entries * 4))
        if sys.byteorder == 'little':
            bat.byteswap()
        self.order = array.array('I', (i for i in range(entries)
                                       if bat[i] != UNUSED))
        if self.order and self.order[-1] >= self.entries:
            raise Invalid('VHD block %d lies beyond the disk'
                          % self.order[-1])
        if any(bat[a] > bat[b] for a, b in zip(self.order, self.order[1:])):
            self.order = array.array('I', sorted(self.order,
                                                 key=bat.__getitem__))
        end = self.pos
        for idx in self.order:
            if bat[idx] * SECTOR < end:
                raise Invalid('VHD block %d overlaps other data' % idx)
            end = bat[idx] * SECTOR + BITMAP + BLOCK
        if length is not None and end > length - SECTOR:
            raise Invalid('VHD blocks extend past the end of the file')

    def _read(self, n):
        self.pos += n
        return exact(self.src, n)

    def _skip_to(self, offset):
        if offset < self.pos:
            raise Invalid('VHD structure at %d overlaps earlier data'
                          % offset)
        skip(self.src, offset - self.pos)
        self.pos = offset

    def blocks(self):
        """(index, sector bitmap, data) of each block in file order; data
        as the pieces the source handed over (a list: no copy)."""
        last_sectors = (self.size - (self.entries - 1) * BLOCK) // SECTOR
        for idx in self.order:
            self._skip_to(self.bat[idx] * SECTOR)
            bitmap = self._read(BITMAP)
            self.pos += BLOCK
            data = exact_parts(self.src, BLOCK)
            if idx == self.entries - 1 and last_sectors < BITMAP * 8:
                keep = ((1 << last_sectors) - 1) << (BITMAP * 8 - last_sectors)
                bitmap = (int.from_bytes(bitmap, 'big') & keep).to_bytes(
                    BITMAP, 'big')
            yield idx, bitmap, data
        if self.length is None:
            tail = b''
            for piece in iter_chunks(self.src):
                tail = (tail + bytes(piece[-SECTOR:]))[-SECTOR:]
        else:
            self._skip_to(self.length - SECTOR)
            tail = self._read(SECTOR)
        if tail != self.footer and (tail[:8] != b'conectix' or _parse_footer(
                tail)[1:] != (self.size, self.disk_type)):
            raise Invalid('the VHD footer copy does not match')


def vhd_image(vhd, keep=None, mask=None, note=None):
    """(length, pieces) of a dynamic VHD holding ``vhd``'s blocks.

    Only blocks in the bitset ``keep`` (all when None), their bitmaps
    cleared of ``mask(index)`` (an int, sector 0 the top bit).
    ``note(index, bitmap)`` is told every block as it passes.
    """
    entries = vhd.entries
    table_bytes = (entries * 4 + SECTOR - 1) // SECTOR * SECTOR
    bat = array.array('I', [UNUSED]) * entries
    sector = (SECTOR + 1024 + table_bytes) // SECTOR
    for idx in vhd.order:
        if keep is None or _bit(keep, idx):
            bat[idx] = sector
            sector += (BITMAP + BLOCK) // SECTOR
    if sys.byteorder == 'little':
        bat.byteswap()
    footer = bytearray(vhd.footer)
    struct.pack_into('>Q', footer, 16, SECTOR)
    struct.pack_into('>I', footer, 60, DYNAMIC)
    struct.pack_into('>I', footer, 64, _vhd_checksum(footer, 64))
    header = bytearray(1024)
    struct.pack_into('>8sQQIII', header, 0, b'cxsparse', 2 ** 64 - 1,
                     SECTOR + 1024, 0x00010000, entries, BLOCK)
    struct.pack_into('>I', header, 36, _vhd_checksum(header, 36))

    def pieces():
        yield bytes(footer)
        yield bytes(header)
        yield bat.tobytes() + b'\xff' * (table_bytes - entries * 4)
        for idx, bitmap, data in vhd.blocks():
            if note is not None:
                note(idx, bitmap)
            if keep is not None and not _bit(keep, idx):
                continue
            if mask is not None:
                bitmap = (int.from_bytes(bitmap, 'big') & ~mask(idx)
                          ).to_bytes(BITMAP, 'big')
            yield bitmap
            for piece in data:
                yield piece
        yield bytes(footer)
    return sector * SECTOR + SECTOR, pieces()


class Member(object):
    """One VHD of an image: which sectors each of its blocks holds."""

    def __init__(self, vhd, name='', rank=0):
        self.name, self.rank = name, rank
        self.size, self.disk_type = vhd.size, vhd.disk_type
        self.full = bytearray((vhd.entries + 7) // 8)
        self.partial = {}

    def note(self, idx, bitmap):
        if bitmap == FULL:
            _set_bit(self.full, idx)
        elif bitmap.count(0) != BITMAP:
            self.partial[idx] = bitmap

    def present(self, idx):
        if idx < len(self.full) * 8 and _bit(self.full, idx):
            return ALL
        bitmap = self.partial.get(idx)
        return int.from_bytes(bitmap, 'big') if bitmap else 0


def chain_mask(children):
    """mask(index): the sectors of a block that ``children`` hold."""
    def mask(idx):
        bits = 0
        for child in children:
            bits |= child.present(idx)
            if bits == ALL:
                break
        return bits
    return mask


def keep_blocks(vhd, mask):
    """The bitset of ``vhd``'s blocks that ``mask`` leaves a sector of."""
    keep = bytearray((vhd.entries + 7) // 8)
    for idx in vhd.order:
        if mask(idx) != ALL:
            _set_bit(keep, idx)
    return keep


LEGACY = ('snap.vhd', 'image.vhd', 'base.vhd')


def chain_rank(names, name):
    """The place of ``name`` in the chain (0 the leaf), given the names
    seen before it: all numbered 0.vhd..N.vhd, all legacy names, or one
    VHD of any name.  Gaps are told only by ``check_chain``."""
    everything = list(names) + [name]
    match = re.match(r'^(0|[1-9][0-9]{0,2})\.vhd$', name)
    if all(re.match(r'^(0|[1-9][0-9]{0,2})\.vhd$', n) for n in everything):
        return int(match.group(1))
    if all(n in LEGACY for n in everything):
        return LEGACY.index(name)
    if not names:
        return 0
    raise Invalid('unexpected VHD names: %s' % ', '.join(sorted(everything)))


def check_chain(members):
    """The chain's virtual size, once all its VHDs have been seen."""
    if not members:
        raise Invalid('the image holds no VHD')
    order = sorted(members, key=lambda m: m.rank)
    names = sorted(m.name for m in members)
    if all(re.match(r'^(0|[1-9][0-9]{0,2})\.vhd$', n) for n in names) and \
            [m.rank for m in order] != list(range(len(order))):
        raise Invalid('the VHD chain has gaps: %s' % ', '.join(names))
    if order[-1].disk_type != DYNAMIC:
        raise Invalid('the base VHD is a differencing disk')
    if any(m.size > order[0].size for m in order):
        raise Invalid('a parent VHD is larger than the leaf VHD')
    return order[0].size
