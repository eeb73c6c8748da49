"""Read files out of an ISO 9660 image (a config drive) without mounting it.

Nova's config drive builder runs ``genisoimage -J -r -V config-2``: a
primary volume descriptor whose directory records carry Rock Ridge names
(SUSP ``NM`` entries) and a Joliet supplementary descriptor whose names
are UCS-2.  Names are taken from Joliet when the image has it, else from
Rock Ridge, else the plain ISO 9660 name (upper case, ``;1`` cut off,
compared case-insensitively).  Enough for a guest's first boot: small
files, one extent each.
"""

import os
import struct
import sys

SECTOR = 2048
FIRST_DESCRIPTOR = 16
JOLIET_ESCAPES = (b'%/@', b'%/C', b'%/E')
MAX_DESCRIPTORS = 64
MAX_DEPTH = 16


class IsoError(ValueError):
    """The bytes are not an ISO 9660 image this reader understands."""


class Iso(object):
    """``read_at(offset, length)`` gives the image's bytes."""

    def __init__(self, read_at):
        self._read_at = read_at
        self.volume_id = None
        self._root = None
        self._names = 'iso'
        primary = joliet = None
        for index in range(FIRST_DESCRIPTOR, FIRST_DESCRIPTOR +
                           MAX_DESCRIPTORS):
            desc = self._read(index * SECTOR, SECTOR)
            if len(desc) < SECTOR or desc[1:6] != b'CD001':
                break
            kind = desc[0]
            if kind == 255:
                break
            if kind == 1 and primary is None:
                primary = desc
            elif kind == 2 and desc[88:91] in JOLIET_ESCAPES:
                joliet = desc
        if primary is None:
            raise IsoError('no ISO 9660 primary volume descriptor')
        self.volume_id = primary[40:72].decode('ascii', 'replace').strip()
        if joliet is not None:
            self._root, self._names = _record(joliet, 156), 'joliet'
        else:
            self._root = _record(primary, 156)
            self._names = 'rockridge'

    def _read(self, offset, length):
        return self._read_at(offset, length)

    def _entries(self, directory):
        """(name, record) of a directory's entries, '.' and '..' left out."""
        extent, size = directory['extent'], directory['size']
        data = self._read(extent * SECTOR, size)
        pos = 0
        while pos < len(data):
            length = data[pos]
            if length == 0:
                # records never cross a sector: the rest of it is padding
                pos = (pos // SECTOR + 1) * SECTOR
                continue
            rec = _record(data, pos)
            pos += length
            if rec['raw_name'] in (b'\x00', b'\x01'):
                continue
            yield self._name(rec), rec

    def _name(self, rec):
        raw = rec['raw_name']
        if self._names == 'joliet':
            name = raw.decode('utf-16-be', 'replace')
        else:
            name = _rock_ridge_name(rec['system_use'])
            if name is None:
                name = raw.decode('ascii', 'replace')
        if not rec['directory'] and ';' in name:
            name = name.rsplit(';', 1)[0]
        if name.endswith('.') and not rec['directory']:
            name = name[:-1]
        return name

    def read(self, path):
        """The bytes of the file at ``path`` ('openstack/latest/x.json');
        None if the image has no such file."""
        node = self._root
        parts = [p for p in path.split('/') if p]
        if len(parts) > MAX_DEPTH:
            return None
        for depth, part in enumerate(parts):
            if not node['directory']:
                return None
            found = None
            for name, rec in self._entries(node):
                if name == part or (self._names == 'iso' and
                                    name.lower() == part.lower()):
                    found = rec
                    break
                if found is None and name.lower() == part.lower():
                    found = rec
            if found is None:
                return None
            node = found
        if node['directory']:
            return None
        return self._read(node['extent'] * SECTOR, node['size'])

    def extract(self, target):
        """Every directory and file of the image, made under ``target``."""
        stack = [(self._root, target, 0)]
        while stack:
            node, path, depth = stack.pop()
            for name, rec in self._entries(node):
                if not name or name in ('.', '..') or '/' in name:
                    continue
                dest = os.path.join(path, name)
                if rec['directory']:
                    if depth < MAX_DEPTH:
                        os.makedirs(dest, exist_ok=True)
                        stack.append((rec, dest, depth + 1))
                else:
                    with open(dest, 'wb') as fh:
                        fh.write(self._read(rec['extent'] * SECTOR,
                                            rec['size']))


def _record(data, pos):
    length = data[pos]
    if length < 34 or pos + length > len(data):
        raise IsoError('a directory record runs past its sector')
    extent, = struct.unpack_from('<I', data, pos + 2)
    size, = struct.unpack_from('<I', data, pos + 10)
    flags = data[pos + 25]
    name_len = data[pos + 32]
    name = bytes(data[pos + 33:pos + 33 + name_len])
    su_start = pos + 33 + name_len + (0 if name_len % 2 else 1)
    return {'extent': extent, 'size': size, 'directory': bool(flags & 2),
            'raw_name': name,
            'system_use': bytes(data[su_start:pos + length])}


def _rock_ridge_name(system_use):
    """The name of the SUSP ``NM`` entries (None: there are none)."""
    pos, parts = 0, []
    while pos + 4 <= len(system_use):
        sig = system_use[pos:pos + 2]
        length = system_use[pos + 2]
        if length < 4:
            break
        if sig == b'NM' and length >= 5:
            flags = system_use[pos + 4]
            if not flags & 6:       # not "current" or "parent"
                parts.append(system_use[pos + 5:pos + length])
        pos += length
    if not parts:
        return None
    return b''.join(parts).decode('utf-8', 'replace')


def open_file(path, offset=0):
    """An ``Iso`` over the file at ``path`` (from byte ``offset``)."""
    def read_at(at, length):
        with open(path, 'rb') as fh:
            fh.seek(offset + at)
            return fh.read(length)
    return Iso(read_at)


def main(argv):
    """``isofs.py extract IMAGE DIRECTORY``: a guest's mount of a config
    drive where the kernel has no iso9660 (xapisim.guestboot)."""
    if len(argv) != 4 or argv[1] != 'extract':
        sys.stderr.write('usage: isofs.py extract IMAGE DIRECTORY\n')
        return 2
    try:
        open_file(argv[2]).extract(argv[3])
    except (IsoError, OSError) as exc:
        sys.stderr.write('%s: %s\n' % (argv[2], exc))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
