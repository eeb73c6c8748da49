"""Images for the image plugin tests: VHDs, chains, tarballs, and what a
VDI must hold once a chain is imported.

VHDs are built here byte by byte (with xapisim's footer and header
helpers), so that tests can give blocks partial sector bitmaps, put blocks
where they like or break the structure on purpose.
"""

import gzip
import io
import struct
import tarfile

from xapisim import vhd as simvhd

MIB = 1024 * 1024
BLOCK = 2 * MIB
SECTOR = 512
SECTORS = BLOCK // SECTOR
DYNAMIC, DIFFERENCING = 3, 4
FULL = b'\xff' * (SECTORS // 8)


def bitmap(*ranges):
    """A block's sector bitmap with the sectors of ``ranges`` present."""
    bits = bytearray(SECTORS // 8)
    for start, end in ranges:
        for s in range(start, end):
            bits[s >> 3] |= 0x80 >> (s & 7)
    return bytes(bits)


def make_vhd(size, blocks, disk_type=DYNAMIC, entries=None, bat=None):
    """A VHD of ``size`` bytes; ``blocks`` = {index: (bitmap, data)}.

    ``entries`` overrides the block table's length; ``bat`` maps indices
    to block-table entries written as given (to point blocks anywhere).
    """
    count = entries or (size + BLOCK - 1) // BLOCK
    table_bytes = (count * 4 + SECTOR - 1) // SECTOR * SECTOR
    table = [0xFFFFFFFF] * count
    offset = SECTOR + 1024 + table_bytes
    body = []
    for idx in sorted(blocks):
        table[idx] = offset // SECTOR
        bits, data = blocks[idx]
        body += [bits, data.ljust(BLOCK, b'\0')]
        offset += SECTOR + BLOCK
    for idx, value in (bat or {}).items():
        table[idx] = value
    footer = simvhd.make_footer(size, disk_type, SECTOR)
    packed = struct.pack('>%dI' % count, *table)
    return b''.join([footer, simvhd.make_header(SECTOR + 1024, count), packed,
                     b'\xff' * (table_bytes - len(packed))] + body + [footer])


def merge(initial, chain):
    """The disk a VHD chain (leaf first) describes, over ``initial``."""
    disk = bytearray(initial)
    for blocks in reversed(chain):
        for idx, (bits, data) in blocks.items():
            for s in range(SECTORS):
                if bits[s >> 3] & (0x80 >> (s & 7)):
                    at = idx * BLOCK + s * SECTOR
                    disk[at:at + SECTOR] = data[s * SECTOR:(s + 1) * SECTOR]
    return bytes(disk)


def tarball(members, compress=True):
    """A tar(.gz) of ``members``: (name, bytes) or a ready TarInfo."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.GNU_FORMAT) as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
                continue
            name, data = member
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue()) if compress else buf.getvalue()


def special(name, kind, linkname=''):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def vhd_contents(data, size):
    """The disk bytes a (dynamic) VHD stream describes."""
    disk = bytearray(size)

    def write(offset, chunk):
        disk[offset:offset + len(chunk)] = chunk
    simvhd.read_vhd(io.BytesIO(data).read, size, write)
    return bytes(disk)
