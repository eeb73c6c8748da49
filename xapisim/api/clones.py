"""VDI.clone, VDI.snapshot and VDI.copy: new VDIs from another's bytes.

On the SRs whose VDIs are VHD trees a clone or snapshot is linked into
the tree as sm links it (xapisim/vhdtree.py); a copy is always a whole
disk of its own.
"""

from xapisim import vhdtree
from xapisim.api import common
from xapisim.api.storage import assert_sm_can, new_vdi
from xapisim.db import now_datetime
from xapisim.errors import XapiError
from xapisim.rpc import handler
from xapisim.schema import NULL_REF


def _derived_vdi(ctx, vdi, sr, snapshot, child=False):
    """A new VDI holding a copy of ``vdi``'s bytes (clone/snapshot/copy);
    ``child``: a VHD child, which holds none of them in its own layer."""
    db = ctx.db
    src = db.record('VDI', vdi)
    fields = {k: src[k] for k in ('name_label', 'name_description', 'type',
                                  'sharable', 'other_config',
                                  'xenstore_data', 'on_boot',
                                  'allow_caching')}
    fields['read_only'] = src['read_only'] if snapshot else False
    if snapshot:
        fields.update(is_a_snapshot=True, snapshot_of=vdi,
                      snapshot_time=now_datetime())
    new = new_vdi(ctx, sr, src['virtual_size'], fields)
    ctx.pool.storage.copy_data(vdi, new, progress=ctx.progress,
                               written=not child)
    return new


def _clone_or_snapshot(ctx, vdi, snapshot):
    db = ctx.db
    op = 'snapshot' if snapshot else 'clone'
    sr = db.get('VDI', vdi, 'SR')
    assert_sm_can(db, sr)
    tree = ctx.pool.storage.is_tree(sr)
    with common.object_operation(ctx, 'VDI', vdi, op):
        if tree:
            with db.lock:
                vhdtree.assert_can_snapshot(db, vdi)
        new = _derived_vdi(ctx, vdi, sr, snapshot, child=tree)
        if tree:
            vhdtree.link(ctx.pool, vdi, new)
    return new


@handler('VDI', 'clone')
def vdi_clone(ctx, vdi, driver_params):
    return _clone_or_snapshot(ctx, vdi, snapshot=False)


@handler('VDI', 'snapshot')
def vdi_snapshot(ctx, vdi, driver_params):
    return _clone_or_snapshot(ctx, vdi, snapshot=True)


@handler('VDI', 'copy')
def vdi_copy(ctx, vdi, sr, base_vdi, into_vdi):
    db = ctx.db
    with common.object_operation(ctx, 'VDI', vdi, 'copy'):
        if into_vdi == NULL_REF:
            if sr == NULL_REF:
                raise XapiError('HANDLE_INVALID', 'SR', sr)
            return _derived_vdi(ctx, vdi, sr, snapshot=False)
        src_size = db.get('VDI', vdi, 'virtual_size')
        dst = db.row('VDI', into_vdi)
        if dst['read_only']:
            raise XapiError('VDI_READONLY', into_vdi)
        if dst['virtual_size'] < src_size:
            raise XapiError('VDI_TOO_SMALL', into_vdi, src_size)
        ctx.pool.storage.copy_data(vdi, into_vdi, progress=ctx.progress)
        return into_vdi
