"""The VHD format, as /import_raw_vdi and /export_raw_vdi speak it.

Reading is streaming: a dynamic (or differencing) VHD is consumed front to
back -- footer copy, dynamic header, block allocation table, then the
blocks in file order -- and every sector the VHD marks present is handed
to a writer.  Anything malformed (bad cookie or checksum, blocks outside
the disk, overlapping blocks, a truncated stream) raises ``VhdError``
before or while writing, never silently.  Writing produces a dynamic VHD
holding the data regions of a sparse file.
"""

import struct
import time
import uuid as uuidlib

SECTOR = 512
FOOTER_COOKIE = b'conectix'
HEADER_COOKIE = b'cxsparse'
BLOCK_SIZE = 2 * 1024 * 1024
TYPE_FIXED = 2
TYPE_DYNAMIC = 3
TYPE_DIFFERENCING = 4
UNUSED = 0xFFFFFFFF
VHD_EPOCH = 946684800   # 2000-01-01T00:00:00Z
MAX_BAT_ENTRIES = 1 << 20  # 2 TiB of 2 MiB blocks

_FOOTER = struct.Struct('>8sIIQI4sI4sQQHBBII16sB427x')
_HEADER = struct.Struct('>8sQQIIII16sI4x512s192s256x')


class VhdError(Exception):
    pass


def checksum(data, skip_at):
    total = sum(data[:skip_at]) + sum(data[skip_at + 4:])
    return (~total) & 0xFFFFFFFF


def geometry(size):
    """CHS geometry as the VHD specification computes it."""
    sectors = min(size // SECTOR, 65535 * 16 * 255)
    if sectors >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cth = sectors // spt
    else:
        spt = 17
        cth = sectors // spt
        heads = max((cth + 1023) // 1024, 4)
        if cth >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cth = sectors // spt
        if cth >= heads * 1024:
            spt, heads = 63, 16
            cth = sectors // spt
    return cth // heads, heads, spt


def make_footer(size, disk_type, data_offset):
    cyl, heads, spt = geometry(size)
    fields = [FOOTER_COOKIE, 2, 0x00010000, data_offset,
              int(time.time()) - VHD_EPOCH, b'tap\0', 0x00010003, b'Lnux',
              size, size, cyl, heads, spt, disk_type, 0,
              uuidlib.uuid4().bytes, 0]
    raw = bytearray(_FOOTER.pack(*fields))
    struct.pack_into('>I', raw, 64, checksum(raw, 64))
    return bytes(raw)


def make_header(table_offset, entries):
    fields = [HEADER_COOKIE, 0xFFFFFFFFFFFFFFFF, table_offset, 0x00010000,
              entries, BLOCK_SIZE, 0, b'\0' * 16, 0, b'\0' * 512, b'\0' * 192]
    raw = bytearray(_HEADER.pack(*fields))
    struct.pack_into('>I', raw, 36, checksum(raw, 36))
    return bytes(raw)


def parse_footer(raw):
    if len(raw) != SECTOR:
        raise VhdError('truncated VHD footer')
    f = _FOOTER.unpack(raw)
    if f[0] != FOOTER_COOKIE:
        raise VhdError('not a VHD: bad footer cookie')
    if f[14] != checksum(raw, 64):
        raise VhdError('VHD footer checksum mismatch')
    return {'data_offset': f[3], 'size': f[9], 'disk_type': f[13],
            'uuid': f[15]}


def parse_header(raw):
    if len(raw) != 1024:
        raise VhdError('truncated VHD dynamic header')
    h = _HEADER.unpack(raw)
    if h[0] != HEADER_COOKIE:
        raise VhdError('bad VHD dynamic header cookie')
    if h[6] != checksum(raw, 36):
        raise VhdError('VHD dynamic header checksum mismatch')
    block = h[5]
    if block < SECTOR or block & (block - 1) or block > 256 * 1024 * 1024:
        raise VhdError('unsupported VHD block size %d' % block)
    return {'table_offset': h[2], 'entries': h[4], 'block_size': block}


class _Stream(object):
    """Sequential reads with a position, failing loudly on truncation."""

    def __init__(self, read, move=None):
        self._read = read
        self._move = move
        self.pos = 0

    def read(self, n):
        # the source usually hands the n bytes in one piece: no join then
        chunk = self._read(n) if n else b''
        if len(chunk) == n:
            self.pos += n
            return chunk
        chunks = [chunk]
        left = n - len(chunk)
        while chunk and left:
            chunk = self._read(left)
            chunks.append(chunk)
            left -= len(chunk)
        if left:
            raise VhdError('truncated VHD stream at byte %d'
                           % (self.pos + n - left))
        self.pos += n
        return b''.join(chunks)

    def move(self, offset, n):
        """The next n bytes go to the disk at ``offset`` by ``_move``."""
        if self._move(offset, n) != n:
            raise VhdError('truncated VHD stream at byte %d' % self.pos)
        self.pos += n

    def skip_to(self, offset):
        if offset < self.pos:
            raise VhdError('VHD structure at %d overlaps earlier data' % offset)
        while self.pos < offset:
            self.read(min(offset - self.pos, 4 * 1024 * 1024))


def read_vhd(read, max_size, write, move=None):
    """Stream a dynamic/differencing VHD; ``write(offset, data)`` per run.

    With ``move``, a block whose sectors are all present is not read:
    ``move(offset, n)`` takes its n bytes from the stream to the disk at
    ``offset`` and returns how many it found.

    Returns the VHD's virtual size.  Raises VhdError on anything malformed
    or on a virtual size above ``max_size``.
    """
    stream = _Stream(read, move)
    footer = parse_footer(stream.read(SECTOR))
    if footer['disk_type'] not in (TYPE_DYNAMIC, TYPE_DIFFERENCING):
        raise VhdError('unsupported VHD disk type %d' % footer['disk_type'])
    size = footer['size']
    if size > max_size:
        raise VhdError('VHD virtual size %d exceeds the VDI size %d'
                       % (size, max_size))
    stream.skip_to(footer['data_offset'])
    header = parse_header(stream.read(1024))
    block = header['block_size']
    entries = header['entries']
    if entries > MAX_BAT_ENTRIES or entries * block < size:
        raise VhdError('VHD block table does not match its size')
    stream.skip_to(header['table_offset'])
    bat = struct.unpack('>%dI' % entries, stream.read(entries * 4))
    bitmap_bytes = (block // SECTOR // 8 + SECTOR - 1) // SECTOR * SECTOR
    full = b'\xff' * (block // SECTOR // 8)       # every sector present
    blocks = sorted((off * SECTOR, idx) for idx, off in enumerate(bat)
                    if off != UNUSED)
    for offset, idx in blocks:
        if idx * block >= size:
            raise VhdError('VHD block %d lies beyond the disk' % idx)
        stream.skip_to(offset)
        bitmap = stream.read(bitmap_bytes)
        if move is not None and (idx + 1) * block <= size and \
                bitmap[:len(full)] == full:
            stream.move(idx * block, block)
            continue
        data = stream.read(block)
        _write_present(write, idx * block, bitmap, data, size)
    # the footer copy at the end must match
    trailer = _read_trailer(stream)
    if trailer is not None and parse_footer(trailer)['size'] != size:
        raise VhdError('VHD trailing footer does not match')
    return size


def _read_trailer(stream):
    # Everything after the last block is padding up to the footer copy.
    tail = b''
    while True:
        chunk = stream._read(1024 * 1024)
        if not chunk:
            break
        tail += chunk
        if len(tail) > 64 * 1024 * 1024:
            raise VhdError('unexpected data after the VHD blocks')
    if len(tail) < SECTOR:
        raise VhdError('truncated VHD stream: missing footer')
    return tail[-SECTOR:]


def _write_present(write, base, bitmap, data, size):
    """Write the runs of sectors whose bitmap bit is set."""
    sectors = len(data) // SECTOR
    if bitmap[:sectors // 8] == b'\xff' * (sectors // 8):
        write(base, data[:max(0, min(len(data), size - base))])
        return
    run_start = None
    for s in range(sectors + 1):
        present = s < sectors and bitmap[s >> 3] & (0x80 >> (s & 7))
        if present and run_start is None:
            run_start = s
        elif not present and run_start is not None:
            start = base + run_start * SECTOR
            end = min(base + s * SECTOR, size)
            if end > start:
                write(start, data[run_start * SECTOR:run_start * SECTOR
                                  + (end - start)])
            run_start = None


def write_vhd(size, blocks, read_block):
    """Yield a dynamic VHD: ``blocks`` are the indices holding data.

    ``read_block(index)`` returns that block's bytes (BLOCK_SIZE long, or
    shorter at the end of the disk).
    """
    entries = (size + BLOCK_SIZE - 1) // BLOCK_SIZE
    footer = make_footer(size, TYPE_DYNAMIC, SECTOR)
    table_offset = SECTOR + 1024
    bat_bytes = (entries * 4 + SECTOR - 1) // SECTOR * SECTOR
    bitmap_bytes = (BLOCK_SIZE // SECTOR // 8 + SECTOR - 1) // SECTOR * SECTOR
    bat = [UNUSED] * entries
    offset = table_offset + bat_bytes
    for idx in blocks:
        bat[idx] = offset // SECTOR
        offset += bitmap_bytes + BLOCK_SIZE
    yield footer
    yield make_header(table_offset, entries)
    table = struct.pack('>%dI' % entries, *bat)
    yield table + b'\xff' * (bat_bytes - len(table))
    full_bitmap = b'\xff' * bitmap_bytes
    for idx in blocks:
        data = read_block(idx)
        if len(data) < BLOCK_SIZE:
            data += b'\0' * (BLOCK_SIZE - len(data))
        yield full_bitmap
        yield data
    yield footer
