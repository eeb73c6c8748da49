"""VDI.clone, VDI.snapshot and VDI.copy: new VDIs from another's bytes."""

from xapisim.api import common
from xapisim.api.storage import assert_sm_can, new_vdi
from xapisim.db import now_datetime
from xapisim.errors import XapiError
from xapisim.rpc import handler
from xapisim.schema import NULL_REF


def _derived_vdi(ctx, vdi, sr, snapshot):
    """A new VDI holding a copy of ``vdi``'s bytes (clone/snapshot/copy)."""
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
    ctx.pool.storage.copy_data(vdi, new, progress=ctx.progress)
    ctx.pool.storage.refresh_utilisation(new)
    return new


def _chain(ctx, vdi, new):
    """Record the VHD tree a VHD-based SR builds on clone and snapshot.

    The source's current content becomes a hidden, read-only parent; the
    source and the new VDI both continue from it.
    """
    db = ctx.db
    src = db.record('VDI', vdi)
    if db.get('SR', src['SR'], 'type') not in ('ext', 'nfs'):
        return
    parent = _derived_vdi(ctx, vdi, src['SR'], snapshot=False)
    grand = src['sm_config'].get('vhd-parent')
    psm = {'vhd-blocks': 'eJz7/x8KAA==', 'vdi_type': 'vhd'}
    if grand:
        psm['vhd-parent'] = grand
    # SM introduces the base copy itself: none of xapi's other_config
    db.set('VDI', parent, managed=False, read_only=True,
           name_label='base copy', sm_config=psm, other_config={})
    for child in (vdi, new):
        sm = dict(db.get('VDI', child, 'sm_config'))
        sm['vhd-parent'] = db.get('VDI', parent, 'uuid')
        sm['vdi_type'] = 'vhd'
        db.set('VDI', child, sm_config=sm)


def _clone_or_snapshot(ctx, vdi, snapshot):
    db = ctx.db
    op = 'snapshot' if snapshot else 'clone'
    sr = db.get('VDI', vdi, 'SR')
    assert_sm_can(db, sr)
    with common.object_operation(ctx, 'VDI', vdi, op):
        new = _derived_vdi(ctx, vdi, sr, snapshot)
        _chain(ctx, vdi, new)
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
    storage = ctx.pool.storage
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
        storage.copy_data(vdi, into_vdi, progress=ctx.progress)
        storage.refresh_utilisation(into_vdi)
        return into_vdi
