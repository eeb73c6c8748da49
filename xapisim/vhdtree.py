"""sm's VHD trees on xapisim's file-based SRs (``ext``, ``nfs``).

XCP-ng's sm keeps each VDI of such an SR as a VHD file that may have a
parent; xapi shows the parent's uuid in the child's
``sm_config['vhd-parent']``.  What xapisim does, after sm (FileSR.py
``_snapshot``, blktap's ``vhd-util snapshot``, cleanup.py):

* ``VDI.clone`` and ``VDI.snapshot`` of a leaf: the leaf's own layer
  becomes a read-only, unmanaged "base copy", and the leaf and the new VDI
  go on from it as two empty children -- unless that layer is an empty
  differencing VHD (nothing was written into the leaf since it last became
  one): then both children are linked to the nearest ancestor holding data
  (or having no parent) and sm deletes the base it did not need.  So the
  clones of a never-written leaf are siblings under one base and the chain
  keeps its depth; one written block adds a level at the next clone.
* The depth counts the leaf and each parent; a leaf 30 deep
  (``vhdutil.MAX_CHAIN_SIZE``) is neither cloned nor snapshot:
  ``SR_BACKEND_FAILURE_109`` "The snapshot chain is too long".
* QCOW2 VDIs (``sm_config['image-format']`` ``qcow2``: asked for in
  ``VDI.create`` or the first of the PBD's ``preferred-image-formats``,
  as XCP-ng's QCOW2 sm) are linked to their own layer whatever it holds:
  every clone adds a level.  Same limit of 30.
* The garbage collector, run at once after each destroy and scan (sm runs
  it in the background): a hidden node no visible VDI descends from is
  deleted; a hidden node that is its parent's only child is coalesced into
  that parent (its children are relinked to the parent); a leaf that is
  its parent's only child is leaf-coalesced (the parent's blocks fold into
  the leaf, which keeps its uuid, and the parent goes) unless the VDI has
  ``other_config['leaf-coalesce']`` ``false``, ``on_boot`` ``reset`` or
  ``allow_caching``.  The SR's ``other_config`` ``coalesce`` /
  ``leaf-coalesce`` ``false`` turn either off.  Nodes with siblings are
  never merged, and an empty layer is never pruned on its own.

Every VDI file holds every byte a reader of that VDI sees; what a layer
holds itself is ``Storage.layer`` (see storage.py).
"""

import base64
import collections
import zlib

from xapisim.db import new_uuid
from xapisim.errors import sm_error
from xapisim.storage import TREE_SR_TYPES, VHD_BLOCK, vdi_record

PARENT = 'vhd-parent'
MAX_DEPTH = 30      # vhdutil.MAX_CHAIN_SIZE, qcow2util.MAX_QCOW_CHAIN_LENGTH
QCOW2 = 'qcow2'


def _is_qcow2(sm_config):
    return sm_config.get('image-format') == QCOW2


def new_sm_config(db, sr, sm_config):
    """The sm_config of a new VDI on ``sr``: QCOW2 when ``VDI.create``
    asks for it, or when it asks for nothing and the SR prefers it."""
    if db.get('SR', sr, 'type') not in TREE_SR_TYPES:
        return sm_config
    wanted = sm_config.get('image-format')
    if wanted is None:
        for pbd in db.get('SR', sr, 'PBDs'):
            formats = db.get('PBD', pbd, 'device_config').get(
                'preferred-image-formats', '')
            wanted = formats.split(',')[0].strip()
            if wanted:
                break
    sm_config = dict(sm_config)
    if (wanted or '').lower() == QCOW2:
        sm_config.update({'image-format': QCOW2, 'vdi_type': QCOW2})
    return sm_config


def parent(db, vdi):
    """The ref of ``vdi``'s parent, or None."""
    uuid = db.get('VDI', vdi, 'sm_config').get(PARENT)
    return db.by_uuid['VDI'].get(uuid) if uuid else None


def depth(db, vdi):
    """sm's chain depth: ``vdi`` and each of its parents."""
    seen = {vdi}
    node = parent(db, vdi)
    while node is not None and node not in seen:
        seen.add(node)
        node = parent(db, node)
    return len(seen)


def assert_can_snapshot(db, vdi):
    """FileSR._snapshot's check before a clone or snapshot."""
    if depth(db, vdi) >= MAX_DEPTH:
        raise sm_error('SnapshotChainTooLong')


def link(pool, vdi, new):
    """After ``new`` was made with ``vdi``'s bytes: the tree sm builds
    for that clone or snapshot.  Returns the base copy made, or None."""
    db = pool.db
    storage = pool.storage
    with db.lock:
        # one change under the lock: the GC never sees a base copy
        # without its children, nor a parent about to get one more child
        src = db.record('VDI', vdi)
        own = storage.layer(vdi)
        target = _snapshot_target(db, storage, vdi, src['sm_config'], own)
        base = None
        if target is None:
            base = target = _base_copy(pool, src, own)
        target_uuid = db.get('VDI', target, 'uuid')
        qcow2 = _is_qcow2(src['sm_config'])
        for child in (vdi, new):
            sm = dict(db.get('VDI', child, 'sm_config'))
            sm[PARENT] = target_uuid
            sm['vdi_type'] = QCOW2 if qcow2 else 'vhd'
            if qcow2:
                sm['image-format'] = QCOW2
            db.set('VDI', child, sm_config=sm)
            storage.set_layer(child, ())
            storage.refresh_utilisation(child)
    if base is not None:
        # the bytes the leaf held so far (the leaf is busy cloning: they
        # do not change meanwhile)
        storage.copy_data(vdi, base, written=False)
    return base


def _snapshot_target(db, storage, vdi, sm_config, own):
    """Where vhd-util snapshot links the new children: None for the
    leaf's own layer (then kept as the base copy), or the nearest
    ancestor that holds a block or has no parent, when the leaf's layer
    is an empty differencing VHD."""
    if own or _is_qcow2(sm_config) or not sm_config.get(PARENT):
        return None
    node = parent(db, vdi)
    while node is not None:
        if storage.layer(node) or not db.get('VDI', node,
                                             'sm_config').get(PARENT):
            return node
        node = parent(db, node)
    return None      # a parent already gone: keep the leaf's own layer


def _base_copy(pool, src, blocks):
    """The read-only, unmanaged node that takes over the layer of the
    leaf ``src`` (its record and an empty file: the caller copies)."""
    db = pool.db
    sm = {'vdi_type': 'vhd'}
    if _is_qcow2(src['sm_config']):
        sm.update({'image-format': QCOW2, 'vdi_type': QCOW2})
    else:
        sm['vhd-blocks'] = block_bitmap(blocks, src['virtual_size'])
    if src['sm_config'].get(PARENT):
        sm[PARENT] = src['sm_config'][PARENT]
    uuid = new_uuid()
    record = vdi_record(uuid, src['SR'], src['virtual_size'])
    # what sm introduces: none of xapi's fields of the leaf
    record.update(name_label='base copy', read_only=True, managed=False,
                  sm_config=sm)
    pool.storage.new_file(src['SR'], uuid, src['virtual_size'])
    base = db.create('VDI', record)
    pool.storage.set_layer(base, blocks)
    return base


def block_bitmap(blocks, size):
    """sm's ``vhd-blocks``: the allocated blocks as a bitmap (first block
    in the high bit), zlib-compressed, in base64."""
    bits = bytearray((size // VHD_BLOCK + 8) // 8)
    for block in blocks:
        bits[block // 8] |= 0x80 >> (block % 8)
    return base64.b64encode(zlib.compress(bytes(bits))).decode()


# ---------------------------------------------------------------- the GC


def collect(pool, sr):
    """cleanup.py's passes over ``sr`` until none has work left."""
    db = pool.db
    with db.lock:
        if not db.exists('SR', sr) or not pool.storage.is_tree(sr):
            return
        while _collect_once(pool, sr):
            pass
        pool.storage.update_usage(sr)


def _collect_once(pool, sr):
    """One change, in the GC's order: garbage, coalesce, leaf-coalesce."""
    db = pool.db
    rows = {ref: db.row('VDI', ref) for ref in db.get('SR', sr, 'VDIs')}
    by_uuid = {row['uuid']: ref for ref, row in rows.items()}
    up = {}
    children = collections.defaultdict(list)
    for ref, row in rows.items():
        above = by_uuid.get(row['sm_config'].get(PARENT))
        if above is not None:
            up[ref] = above
            children[above].append(ref)

    def hidden(ref):
        return not rows[ref]['managed']

    for ref in rows:
        if hidden(ref) and not children[ref]:
            _drop(pool, ref)
            return True
    switches = db.get('SR', sr, 'other_config')
    if switches.get('coalesce') == 'false':
        return False
    for ref, above in up.items():
        if hidden(ref) and children[ref] and len(children[above]) == 1:
            _coalesce(pool, ref, above, children[ref])
            return True
    if switches.get('leaf-coalesce') == 'false':
        return False
    for ref, above in up.items():
        if not hidden(ref) and not children[ref] and \
                len(children[above]) == 1 and _may_leaf_coalesce(rows[ref]):
            _leaf_coalesce(pool, ref, above)
            return True
    return False


def _may_leaf_coalesce(row):
    return row['other_config'].get('leaf-coalesce') != 'false' and \
        row['on_boot'] != 'reset' and not row['allow_caching']


def _coalesce(pool, node, into, children):
    """A hidden node merged into its parent: the parent holds both
    layers, the node's children hang off the parent."""
    db = pool.db
    storage = pool.storage
    # the node's bytes are its parent's plus what was written in between
    storage.take_file(into, node)
    blocks = storage.layer(into) | storage.layer(node)
    size = max(db.get('VDI', into, 'virtual_size'),
               db.get('VDI', node, 'virtual_size'))
    storage.resize_file(into, size)
    sm = dict(db.get('VDI', into, 'sm_config'))
    if 'vhd-blocks' in sm:
        sm['vhd-blocks'] = block_bitmap(blocks, size)
    db.set('VDI', into, virtual_size=size, sm_config=sm)
    storage.set_layer(into, blocks)
    into_uuid = db.get('VDI', into, 'uuid')
    for child in children:
        child_sm = dict(db.get('VDI', child, 'sm_config'))
        child_sm[PARENT] = into_uuid
        db.set('VDI', child, sm_config=child_sm)
    storage.forget_layer(node)
    db.destroy('VDI', node)
    storage.refresh_utilisation(into)


def _leaf_coalesce(pool, leaf, above):
    """The parent's blocks fold into its only child, a leaf, which keeps
    its uuid and takes the parent's place in the tree."""
    db = pool.db
    storage = pool.storage
    storage.set_layer(leaf, storage.layer(above) | storage.layer(leaf))
    sm = dict(db.get('VDI', leaf, 'sm_config'))
    grand = db.get('VDI', above, 'sm_config').get(PARENT)
    if grand:
        sm[PARENT] = grand
    else:
        sm.pop(PARENT, None)
    db.set('VDI', leaf, sm_config=sm)
    _drop(pool, above)
    storage.refresh_utilisation(leaf)


def _drop(pool, vdi):
    """A node the GC deletes (no VDI reads through it any more)."""
    db = pool.db
    for vbd in list(db.get('VDI', vdi, 'VBDs')):
        db.destroy('VBD', vbd)
    pool.storage.remove_file(vdi)
    db.destroy('VDI', vdi)
