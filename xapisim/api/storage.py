"""SR, PBD and VDI messages (VDI.clone, snapshot and copy: clones.py;
VBDs: vbd.py)."""

import os
import re

from xapisim import rawiscsi, vhdtree
from xapisim.api import common
from xapisim.api.implicit import constructor_values
from xapisim.db import new_uuid
from xapisim.errors import XapiError, sm_error
from xapisim.rpc import handler
from xapisim.schema import NULL_REF
from xapisim.storage import round_size, vdi_record

# ---------------------------------------------------------------- VDI


def vdi_in_use(db, vdi):
    """A VDI is in use while a VBD is attached or its VM is suspended."""
    for vbd in db.get('VDI', vdi, 'VBDs'):
        row = db.row('VBD', vbd)
        if row['currently_attached']:
            return True
        vm = row['VM']
        paused = (common.SUSPENDED, common.PAUSED)
        if db.exists('VM', vm) and db.get('VM', vm, 'power_state') in paused:
            return True
    return False


def new_vdi(ctx, sr, size, fields):
    """Create a VDI record and its backing file."""
    db = ctx.db
    storage = ctx.pool.storage
    with db.lock:
        row = db.row('SR', sr)
        if row['content_type'] == 'iso' or row['type'] == 'iso':
            raise XapiError('SR_OPERATION_NOT_SUPPORTED', sr)
        storage.assert_attached(sr)
        if row['type'] == rawiscsi.SR_TYPE:
            # SM hands out an unmanaged LUN at least that large; every
            # LUN a scan finds is managed already
            raise sm_error('SRNoSpace')
        size = round_size(size)
        storage.assert_space(sr, size)
        uuid = new_uuid()
        record = vdi_record(uuid, sr, size)
        record.update(fields)
        record['virtual_size'] = size
        storage.new_file(sr, uuid, size)
        vdi = db.create('VDI', record)
        storage.update_usage(sr)
        return vdi


@handler('VDI', 'create')
def vdi_create(ctx, args):
    values = constructor_values(ctx, 'VDI', args)
    if values.get('type') == 'unknown':
        raise XapiError('FIELD_TYPE_ERROR', 'type')
    if values.get('type') == 'cbt_metadata':
        raise XapiError('VDI_INCOMPATIBLE_TYPE', '', 'cbt_metadata')
    if values['virtual_size'] < 0:
        raise XapiError('INVALID_VALUE', 'virtual_size',
                        values['virtual_size'])
    values.pop('location', None)
    values['sm_config'] = vhdtree.new_sm_config(
        ctx.db, values['SR'], values.get('sm_config') or {})
    return new_vdi(ctx, values.pop('SR'), values.pop('virtual_size'), values)


def _destroy_vdi(ctx, vdi, op='destroy'):
    db = ctx.db
    storage = ctx.pool.storage
    with db.lock:
        if vdi_in_use(db, vdi):
            raise XapiError('VDI_IN_USE', vdi, op)
        common.busy(db, 'VDI', vdi)
        sr = db.get('VDI', vdi, 'SR')
        for vbd in list(db.get('VDI', vdi, 'VBDs')):
            db.destroy('VBD', vbd)
        for vm in db.find('VM', suspend_VDI=vdi):
            db.set('VM', vm, suspend_VDI=NULL_REF)
        if op == 'destroy':
            storage.remove_file(vdi)
        storage.forget_layer(vdi)
        db.destroy('VDI', vdi)
        if op == 'destroy':
            # what the VDI's parents held for it alone goes too
            vhdtree.collect(ctx.pool, sr)
        storage.update_usage(sr)


@handler('VDI', 'destroy')
def vdi_destroy(ctx, vdi):
    _destroy_vdi(ctx, vdi)


@handler('VDI', 'forget')
def vdi_forget(ctx, vdi):
    _destroy_vdi(ctx, vdi, op='forget')


def assert_sm_can(db, sr):
    """RawISCSISR has no VDI_CLONE, VDI_SNAPSHOT nor VDI_RESIZE."""
    if db.get('SR', sr, 'type') == rawiscsi.SR_TYPE:
        raise XapiError('SR_OPERATION_NOT_SUPPORTED', sr)


def _resize(ctx, vdi, size, online):
    db = ctx.db
    storage = ctx.pool.storage
    with db.lock:
        row = db.row('VDI', vdi)
        assert_sm_can(db, row['SR'])
        if not online and vdi_in_use(db, vdi):
            raise XapiError('VDI_IN_USE', vdi, 'resize')
        new_size = round_size(size)
        if new_size < row['virtual_size']:
            raise XapiError('SR_BACKEND_FAILURE_79', '',
                            'VDI Invalid size [opterr=shrinking not allowed]',
                            '')
        storage.assert_space(row['SR'], new_size - row['virtual_size'])
        storage.resize_file(vdi, new_size)
        db.set('VDI', vdi, virtual_size=new_size)
        storage.update_usage(row['SR'])


@handler('VDI', 'resize')
def vdi_resize(ctx, vdi, size):
    _resize(ctx, vdi, size, online=False)


@handler('VDI', 'resize_online')
def vdi_resize_online(ctx, vdi, size):
    _resize(ctx, vdi, size, online=True)


def _vdi_flag(field):
    def set_flag(ctx, vdi, value):
        ctx.db.set('VDI', vdi, **{field: value})
    return set_flag


for _name in ('name_label', 'name_description', 'read_only', 'sharable',
              'on_boot', 'allow_caching'):
    handler('VDI', 'set_' + _name)(_vdi_flag(_name))


@handler('VDI', 'update')
def vdi_update(ctx, vdi):
    ctx.pool.storage.refresh_utilisation(vdi)


# ---------------------------------------------------------------- SR / PBD


@handler('SR', 'scan')
def sr_scan(ctx, sr):
    ctx.pool.storage.assert_attached(sr)
    if ctx.db.get('SR', sr, 'type') == rawiscsi.SR_TYPE:
        _scan_luns(ctx, sr)
        return
    for vdi in ctx.db.get('SR', sr, 'VDIs'):
        ctx.pool.storage.refresh_utilisation(vdi)
    vhdtree.collect(ctx.pool, sr)
    ctx.pool.storage.update_usage(sr)


@handler('SR', 'update')
def sr_update(ctx, sr):
    sr_scan(ctx, sr)


@handler('SR', 'introduce')
def sr_introduce(ctx, uuid, name_label, name_description, type_,
                 content_type, shared, sm_config):
    db = ctx.db
    if uuid in db.by_uuid['SR']:
        raise XapiError('SR_UUID_EXISTS', uuid)
    if not re.match(r'^[0-9a-f-]{36}$', uuid):
        raise XapiError('UUID_INVALID', 'SR', uuid)
    sr = db.create('SR', {
        'uuid': uuid, 'name_label': name_label,
        'name_description': name_description, 'type': type_,
        'content_type': content_type, 'shared': shared,
        'sm_config': sm_config, 'physical_size': 0,
        'physical_utilisation': 0, 'virtual_allocation': 0,
        'allowed_operations': (
            # what RawISCSISR's capabilities allow
            ['scan', 'plug', 'unplug', 'forget', 'vdi_create',
             'vdi_destroy', 'vdi_introduce', 'pbd_create', 'pbd_destroy']
            if type_ == rawiscsi.SR_TYPE else
            ['scan', 'plug', 'unplug', 'forget', 'vdi_create',
             'vdi_destroy', 'vdi_clone', 'vdi_snapshot', 'vdi_resize',
             'pbd_create', 'pbd_destroy']),
        'other_config': {}})
    os.makedirs(ctx.pool.storage.sr_dir(sr), exist_ok=True)
    return sr


@handler('SR', 'forget')
def sr_forget(ctx, sr):
    db = ctx.db
    with db.lock:
        for pbd in db.get('SR', sr, 'PBDs'):
            if db.get('PBD', pbd, 'currently_attached'):
                raise XapiError('SR_HAS_PBD', sr)
        for vdi in list(db.get('SR', sr, 'VDIs')):
            _destroy_vdi(ctx, vdi, op='forget')
        for pbd in list(db.get('SR', sr, 'PBDs')):
            db.destroy('PBD', pbd)
        db.destroy('SR', sr)


@handler('PBD', 'create')
def pbd_create(ctx, args):
    db = ctx.db
    values = constructor_values(ctx, 'PBD', args)
    with db.lock:
        for pbd in db.get('SR', values['SR'], 'PBDs'):
            if db.get('PBD', pbd, 'host') == values['host']:
                raise XapiError('PBD_EXISTS', values['SR'], values['host'], pbd)
        values['currently_attached'] = False
        return db.create('PBD', values)


@handler('PBD', 'plug')
def pbd_plug(ctx, pbd):
    db = ctx.db
    with db.lock:
        row = db.row('PBD', pbd)
        if row['currently_attached']:
            return
        if db.get('SR', row['SR'], 'type') == rawiscsi.SR_TYPE:
            config = dict(row['device_config'])
            initiator = initiator_iqn(db, row['host'])
            if config.get('chappassword_secret'):
                # as sm's iSCSI SRs do: the secret object's value, so the
                # password need not be in device_config
                secret = db.ref_of_uuid('secret',
                                        config['chappassword_secret'])
                config['chappassword'] = db.get('secret', secret, 'value')
        else:
            config = None
    if config is not None:
        # a real login, outside the database lock: it may take seconds
        ctx.pool.initiators.attach(pbd, config, initiator)
        with db.lock:
            if not db.exists('PBD', pbd):
                ctx.pool.initiators.detach(pbd)
                raise XapiError('HANDLE_INVALID', 'PBD', pbd)
            db.set('PBD', pbd, currently_attached=True)
        return
    with db.lock:
        row = db.row('PBD', pbd)
        if row['currently_attached']:
            return
        db.set('PBD', pbd, currently_attached=True)
        sr = db.row('SR', row['SR'])
        if not sr['physical_size']:
            # an iSCSI-style LUN: its size comes from the device config
            gib = int(row['device_config'].get('xapisim_size_gib',
                                               ctx.pool.options.sr_size_gib))
            db.set('SR', row['SR'], physical_size=gib * 1024 ** 3)


@handler('PBD', 'unplug')
def pbd_unplug(ctx, pbd):
    db = ctx.db
    with db.lock:
        row = db.row('PBD', pbd)
        active = [vdi for vdi in db.get('SR', row['SR'], 'VDIs')
                  if _active_on(db, vdi, row['host'])]
        if active:
            raise XapiError('VDI_IN_USE', *active)
        db.set('PBD', pbd, currently_attached=False)
    ctx.pool.initiators.detach(pbd)


def _active_on(db, vdi, host):
    """The VDI is attached to a VM on ``host``."""
    for vbd in db.get('VDI', vdi, 'VBDs'):
        row = db.row('VBD', vbd)
        if row['currently_attached'] and \
                db.get('VM', row['VM'], 'resident_on') == host:
            return True
    return False


def initiator_iqn(db, host):
    """The host's initiator name, where SM looks for it."""
    return db.get('host', host, 'other_config').get('iscsi_iqn') or \
        db.get('host', host, 'iscsi_iqn')


def _plugged_pbds(db, sr, host=None):
    """The SR's plugged PBDs, the master's (or ``host``'s) first."""
    first = host or db.get('pool', db.refs('pool')[0], 'master')
    pbds = [p for p in db.get('SR', sr, 'PBDs')
            if db.get('PBD', p, 'currently_attached')]
    return sorted(pbds, key=lambda p: db.get('PBD', p, 'host') != first)


def _lun_sm_config(lun, base=None):
    sm = dict(base or {})
    sm.update({'LUNid': str(lun.lun), 'SCSIid': lun.scsi_id,
               'backend-kind': 'vbd'})
    return sm


def _lun_vdi(db, sr, lun, sm_config=None):
    """The VDI of ``lun`` in ``sr``, made or brought up to date; None
    if that LUN is a VDI of another SR (one target introduced twice)."""
    vdi = db.by_uuid['VDI'].get(lun.uuid)
    if vdi is not None and db.get('VDI', vdi, 'SR') != sr:
        return None
    if vdi is None:
        return db.create('VDI', {
            'uuid': lun.uuid, 'SR': sr, 'location': lun.uuid,
            'virtual_size': lun.size, 'physical_utilisation': lun.size,
            'managed': True, 'missing': False, 'storage_lock': False,
            'sm_config': _lun_sm_config(lun, sm_config),
            'xenstore_data': {}, 'other_config': {},
            'allowed_operations': ['destroy', 'forget', 'copy',
                                   'generate_config', 'update'],
            'is_a_snapshot': False, 'snapshot_of': NULL_REF,
            'snapshot_time': '19700101T00:00:00Z',
            'name_label': '', 'name_description': '', 'type': 'user',
            'sharable': False, 'read_only': False})
    base = db.get('VDI', vdi, 'sm_config') if sm_config is None \
        else sm_config
    db.set('VDI', vdi, virtual_size=lun.size, physical_utilisation=lun.size,
           missing=False, managed=True, sm_config=_lun_sm_config(lun, base))
    return vdi


def _scan_luns(ctx, sr):
    """SM's scan of a LUN-per-VDI SR: a VDI per disk LUN; the VDI of a
    LUN gone is forgotten (marked missing while a VM uses it)."""
    db = ctx.db
    luns = ctx.pool.initiators.luns(_plugged_pbds(db, sr))
    with db.lock:
        if not db.exists('SR', sr):
            raise XapiError('HANDLE_INVALID', 'SR', sr)
        seen = set()
        for lun in luns:
            seen.add(_lun_vdi(db, sr, lun))
        for vdi in list(db.get('SR', sr, 'VDIs')):
            if vdi in seen:
                continue
            if vdi_in_use(db, vdi):
                db.set('VDI', vdi, missing=True)
            else:
                _destroy_vdi(ctx, vdi, op='forget')
        db.set('SR', sr, physical_size=sum(lun.size for lun in luns))
        ctx.pool.storage.update_usage(sr)


@handler('VDI', 'introduce')
def vdi_introduce(ctx, uuid, name_label, name_description, sr, type_,
                  sharable, read_only, other_config, location,
                  xenstore_data, sm_config, managed, virtual_size,
                  physical_utilisation, metadata_of_pool, is_a_snapshot,
                  snapshot_time, snapshot_of):
    """xapi's VDI.introduce over SM's: on a LUN-per-VDI SR the LUN is
    found by ``sm_config['LUNid']`` and the VDI's uuid and location are
    SM's (from the LUN's SCSI id), whatever ``uuid`` says."""
    db = ctx.db
    ctx.pool.storage.assert_attached(sr)
    with db.lock:
        for vdi in db.get('SR', sr, 'VDIs'):
            row = db.row('VDI', vdi)
            if row['location'] == location and row['uuid'] != uuid:
                raise XapiError('LOCATION_NOT_UNIQUE', sr, location)
        if db.get('SR', sr, 'type') != rawiscsi.SR_TYPE:
            # xapisim's other SRs hold files it made itself
            raise XapiError('SR_OPERATION_NOT_SUPPORTED', sr)
    try:
        wanted = int(sm_config['LUNid'])
    except (KeyError, ValueError):
        raise sm_error('VDIUnavailable')
    luns = ctx.pool.initiators.luns(_plugged_pbds(db, sr))
    found = [lun for lun in luns if lun.lun == wanted]
    if not found:
        raise sm_error('VDIUnavailable')
    with db.lock:
        vdi = _lun_vdi(db, sr, found[0], sm_config)
        if vdi is None:
            raise sm_error('VDIUnavailable')
        db.set('VDI', vdi, other_config=other_config,
               xenstore_data=xenstore_data, sharable=sharable, type=type_)
        if name_label:
            db.set('VDI', vdi, name_label=name_label)
        if name_description:
            db.set('VDI', vdi, name_description=name_description)
        ctx.pool.storage.update_usage(sr)
    return vdi


def assert_lun_present(ctx, vbd):
    """SM's attach of a LUN VDI: the LUN must still be on the target."""
    db = ctx.db
    with db.lock:
        row = db.row('VBD', vbd)
        if row['empty'] or row['VDI'] == NULL_REF:
            return
        vdi = db.row('VDI', row['VDI'])
        if db.get('SR', vdi['SR'], 'type') != rawiscsi.SR_TYPE:
            return
        host = db.get('VM', row['VM'], 'resident_on')
        pbds = _plugged_pbds(db, vdi['SR'], host)
    luns = ctx.pool.initiators.luns(pbds)
    if vdi['uuid'] not in [lun.uuid for lun in luns]:
        raise sm_error('VDIUnavailable')


@handler('PBD', 'destroy')
def pbd_destroy(ctx, pbd):
    db = ctx.db
    with db.lock:
        if db.get('PBD', pbd, 'currently_attached'):
            raise XapiError('OPERATION_NOT_ALLOWED',
                            'PBD is currently attached')
        db.destroy('PBD', pbd)
