"""Storage repositories whose VDIs hold real bytes.

Each VDI is a sparse file of its virtual size under the pool's state
directory (``sr-<uuid>/<vdi-uuid>.img``) holding every byte a reader of
that VDI sees.  Copies skip holes, so cloning a mostly empty disk is
cheap.  SR usage is accounted from the VDIs' virtual sizes: a VDI that
does not fit fails with ``SR_FULL``.

On the SRs whose VDIs are VHD trees (``TREE_SR_TYPES``, see vhdtree.py) a
VDI's own layer -- the 2 MiB blocks written into it since it became what
it is -- is kept apart from its bytes (``layer``): it is what sm's
snapshot and garbage collector look at, and what the VDI's
``physical_utilisation`` counts.  Whatever writes bytes into a VDI
(an import, a copy, the control interface's write) marks their blocks.
"""

import errno
import os
import threading

from xapisim import rawiscsi
from xapisim.errors import XapiError
from xapisim.schema import NULL_REF

# VHD-based SRs round a VDI's size up to the VHD block size.
VHD_BLOCK = 2 * 1024 * 1024
COPY_CHUNK = 4 * 1024 * 1024
# sm's file-based SRs (FileSR, NFSSR): VDIs are VHD files in a tree
TREE_SR_TYPES = ('ext', 'nfs')


def round_size(size):
    return (size + VHD_BLOCK - 1) // VHD_BLOCK * VHD_BLOCK


class Storage(object):
    def __init__(self, pool):
        self.pool = pool
        self.db = pool.db
        self.root = os.path.join(pool.state_dir, 'storage')
        os.makedirs(self.root, exist_ok=True)
        self.lock = threading.RLock()
        # VDI ref -> the VHD blocks its own layer holds (tree SRs)
        self.layers = {}

    # -- SRs -----------------------------------------------------------

    def create_sr(self, name_label, sr_type, shared, size, hosts,
                  device_config, content_type='user', other_config=None,
                  name_description=''):
        sr = self.db.create('SR', {
            'name_label': name_label, 'name_description': name_description,
            'type': sr_type, 'content_type': content_type, 'shared': shared,
            'physical_size': size, 'physical_utilisation': 0,
            'virtual_allocation': 0, 'other_config': other_config or {},
            'sm_config': {'devserial': 'xapisim'} if sr_type == 'ext' else {},
            'allowed_operations': _sr_operations(sr_type),
            'tags': [], 'blobs': {}, 'local_cache_enabled': False,
            'introduced_by': NULL_REF, 'clustered': False,
            'is_tools_sr': sr_type == 'iso'})
        os.makedirs(self.sr_dir(sr), exist_ok=True)
        for host in hosts:
            self.db.create('PBD', {'host': host.ref, 'SR': sr,
                                   'device_config': dict(device_config),
                                   'currently_attached': True,
                                   'other_config': {}})
        return sr

    def sr_dir(self, sr):
        return os.path.join(self.root, 'sr-' + self.db.get('SR', sr, 'uuid'))

    def hosts_seeing(self, sr):
        """Host refs with an attached PBD for this SR."""
        return [self.db.get('PBD', pbd, 'host')
                for pbd in self.db.get('SR', sr, 'PBDs')
                if self.db.get('PBD', pbd, 'currently_attached')]

    def assert_attached(self, sr):
        """xapi finds no plugged PBD to run the SR operation through."""
        if not self.hosts_seeing(sr):
            raise XapiError('SR_HAS_NO_PBDS', sr)

    def assert_space(self, sr, extra):
        row = self.db.row('SR', sr)
        if row['type'] == 'iso':
            return
        wanted = row['virtual_allocation'] + extra
        if wanted > row['physical_size']:
            raise XapiError('SR_FULL', wanted, row['physical_size'])

    def update_usage(self, sr):
        with self.db.lock:
            virtual = 0
            physical = 0
            for vdi in self.db.get('SR', sr, 'VDIs'):
                row = self.db.row('VDI', vdi)
                virtual += row['virtual_size']
                physical += row['physical_utilisation']
            self.db.set('SR', sr, virtual_allocation=virtual,
                        physical_utilisation=physical)

    # -- VDI files -----------------------------------------------------

    def path(self, vdi):
        row = self.db.row('VDI', vdi)
        return os.path.join(self.sr_dir(row['SR']), row['location'] + '.img')

    def new_file(self, sr, location, size):
        path = os.path.join(self.sr_dir(sr), location + '.img')
        with open(path, 'wb') as fh:
            fh.truncate(size)
        return path

    def remove_file(self, vdi):
        self.forget_layer(vdi)
        try:
            os.unlink(self.path(vdi))
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise

    def take_file(self, vdi, other):
        """``vdi``'s bytes become ``other``'s (whose file goes)."""
        os.replace(self.path(other), self.path(vdi))

    def resize_file(self, vdi, size):
        with open(self.path(vdi), 'r+b') as fh:
            fh.truncate(size)

    def allocated(self, vdi):
        try:
            return os.stat(self.path(vdi)).st_blocks * 512
        except OSError:
            return 0

    def is_tree(self, sr):
        return self.db.get('SR', sr, 'type') in TREE_SR_TYPES

    # -- VDI layers ----------------------------------------------------

    def layer(self, vdi):
        """The blocks ``vdi``'s own layer holds (a copy)."""
        return set(self.layers.get(vdi, ()))

    def set_layer(self, vdi, blocks):
        self.layers[vdi] = set(blocks)

    def forget_layer(self, vdi):
        """``vdi``'s record goes (its file may stay: VDI.forget)."""
        self.layers.pop(vdi, None)

    def mark_written(self, vdi, blocks):
        """Bytes were written into these blocks of ``vdi``."""
        if blocks:
            self.layers.setdefault(vdi, set()).update(blocks)

    def refresh_utilisation(self, vdi):
        with self.db.lock:
            if self.db.get('SR', self.db.get('VDI', vdi, 'SR'),
                           'type') == rawiscsi.SR_TYPE:
                return      # a LUN: all of it, as SM's scan says
            if self.is_tree(self.db.get('VDI', vdi, 'SR')):
                used = len(self.layers.get(vdi, ())) * VHD_BLOCK
            else:
                used = self.allocated(vdi)
            self.db.set('VDI', vdi, physical_utilisation=used)
            self.update_usage(self.db.get('VDI', vdi, 'SR'))

    # -- bytes ---------------------------------------------------------

    def copy_data(self, src_vdi, dst_vdi, progress=None, written=True):
        """Copy a VDI's bytes, skipping holes; the destination keeps its
        size.  ``written``: the blocks copied become the destination's
        own (False for a VHD child, which only reads them through its
        parent)."""
        self.receive(self.path(src_vdi), dst_vdi, progress, written)

    def receive(self, src_path, dst_vdi, progress=None, written=True):
        """Copy the data of file ``src_path`` into ``dst_vdi``."""
        blocks = copy_file_data(src_path, self.path(dst_vdi), progress)
        if written:
            self.mark_written(dst_vdi, blocks)
        self.refresh_utilisation(dst_vdi)

    def write(self, vdi, offset, data):
        """Bytes written into a VDI as its VM would."""
        with open(self.path(vdi), 'r+b') as fh:
            fh.seek(offset)
            fh.write(data)
        self.mark_written(vdi, blocks_of(offset, len(data)))
        self.refresh_utilisation(vdi)

    def read(self, vdi, offset, length):
        with open(self.path(vdi), 'rb') as fh:
            fh.seek(offset)
            return fh.read(length)


def vdi_record(uuid, sr, size):
    """A new VDI's record, as SM introduces it (the caller adds the
    fields it chooses)."""
    return {
        'uuid': uuid, 'SR': sr, 'virtual_size': size, 'location': uuid,
        'managed': True, 'missing': False, 'storage_lock': False,
        'physical_utilisation': 0, 'sm_config': {}, 'xenstore_data': {},
        'allowed_operations': ['clone', 'copy', 'destroy', 'resize',
                               'snapshot', 'update', 'forget',
                               'generate_config', 'mirror'],
        'is_a_snapshot': False, 'snapshot_of': NULL_REF,
        'snapshot_time': '19700101T00:00:00Z',
        'name_label': '', 'name_description': '', 'other_config': {},
        'type': 'user', 'sharable': False, 'read_only': False,
    }


def blocks_of(offset, length):
    """The VHD blocks bytes [offset, offset + length) fall in."""
    if length <= 0:
        return set()
    return set(range(offset // VHD_BLOCK,
                     (offset + length - 1) // VHD_BLOCK + 1))


def data_blocks(fh, size):
    """The VHD blocks of sparse file ``fh`` that hold data."""
    found = set()
    for start, length in data_extents(fh, size):
        found |= blocks_of(start, length)
    return found


def copy_file_data(src, dst, progress=None):
    """Copy the data regions of sparse file ``src`` into ``dst``; the VHD
    blocks copied."""
    size = min(os.path.getsize(src), os.path.getsize(dst))
    reported = 0.0
    copied = set()
    with open(src, 'rb') as fin, open(dst, 'r+b') as fout:
        for offset, length in data_extents(fin, size):
            copied |= blocks_of(offset, length)
            done = 0
            while done < length:
                n = min(COPY_CHUNK, length - done)
                fin.seek(offset + done)
                chunk = fin.read(n)
                fout.seek(offset + done)
                fout.write(chunk)
                done += n
                # how far through the disk, in steps of 1% at least; 1.0
                # is for the task's end
                at = min(float(offset + done) / max(size, 1), 0.99)
                if progress and at - reported >= 0.01:
                    reported = at
                    progress(at)
    return copied


def data_extents(fh, size):
    """(offset, length) of the regions of a sparse file that hold data."""
    fd = fh.fileno()
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                return
            raise
        if start >= size:
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        end = min(end, size)
        yield start, end - start
        offset = end


def _sr_operations(sr_type):
    ops = ['scan', 'update', 'vdi_create', 'vdi_destroy', 'vdi_clone',
           'vdi_snapshot', 'vdi_resize', 'vdi_introduce', 'vdi_mirror',
           'pbd_create', 'pbd_destroy', 'plug', 'unplug', 'forget']
    if sr_type == 'iso':
        ops = ['scan', 'vdi_introduce', 'pbd_create', 'pbd_destroy',
               'plug', 'unplug', 'forget']
    return ops
