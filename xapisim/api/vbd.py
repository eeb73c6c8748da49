"""VBD messages: a VM's disk and CD devices, their names, plugging and
the sharing rules of the VDIs behind them."""

import re

from xapisim.api import common
from xapisim.api.implicit import constructor_values
from xapisim.api.storage import assert_lun_present
from xapisim.errors import XapiError
from xapisim.rpc import handler
from xapisim.schema import NULL_REF

VBD_DEVICE_LIMIT = 16   # devices 0..15 for an HVM guest

# xapi's valid device names: a number, or sd/xvd/hd a..p and a partition
_DEVICE_RE = re.compile(r'^(?:(-?\d+)|(?:xvd|sd|hd)([a-p])(\d*))$')


def valid_vbd_device(name):
    return name == 'autodetect' or _DEVICE_RE.match(name) is not None


def device_number(name):
    m = _DEVICE_RE.match(name)
    if not m:
        return None
    if m.group(1) is not None:
        return int(m.group(1))
    return ord(m.group(2)) - ord('a')


def used_vbd_devices(db, vm):
    used = set()
    for vbd in db.get('VM', vm, 'VBDs'):
        n = device_number(db.get('VBD', vbd, 'userdevice'))
        if n is not None:
            used.add(n)
    return used


def device_name(number):
    """Linux's name for disk ``number``: xvda .. xvdz, xvdaa ..."""
    letters = ''
    number += 1
    while number > 0:
        number, rest = divmod(number - 1, 26)
        letters = chr(ord('a') + rest) + letters
    return 'xvd' + letters


@handler('VBD', 'create')
def vbd_create(ctx, args):
    db = ctx.db
    values = constructor_values(ctx, 'VBD', args)
    with db.lock:
        vm = values['VM']
        vdi = values['VDI']
        userdevice = values['userdevice']
        # xapi's order: media rules first, then the device name
        if values['type'] == 'CD' and values['mode'] != 'RO':
            raise XapiError('VBD_CDS_MUST_BE_READONLY')
        if values['empty'] and values['type'] != 'CD':
            raise XapiError('VBD_NOT_REMOVABLE_MEDIA', 'in constructor')
        if not values['empty']:
            if vdi == NULL_REF:
                raise XapiError('HANDLE_INVALID', 'VDI', vdi)
            if values['mode'] == 'RW' and db.get('VDI', vdi, 'read_only'):
                raise XapiError('VDI_READONLY', vdi)
        used = used_vbd_devices(db, vm)
        free = [n for n in range(VBD_DEVICE_LIMIT) if n not in used]
        if not valid_vbd_device(userdevice) or \
                (userdevice == 'autodetect' and not free):
            raise XapiError('INVALID_DEVICE', userdevice)
        if userdevice == 'autodetect':
            userdevice = str(free[0])
        if device_number(userdevice) in used:
            raise XapiError('DEVICE_ALREADY_EXISTS', userdevice)
        metrics = db.create('VBD_metrics', {'other_config': {}})
        values.update(userdevice=userdevice, currently_attached=False,
                      device='', metrics=metrics, status_code=0,
                      allowed_operations=['attach', 'plug', 'unplug',
                                          'unplug_force'],
                      unpluggable=values.get('unpluggable', True))
        return db.create('VBD', values)


def _assert_vm_running_for(db, cls, ref):
    vm = db.get(cls, ref, 'VM')
    common.assert_power(db, vm, (common.RUNNING,))
    return vm


@handler('VBD', 'plug')
def vbd_plug(ctx, vbd):
    db = ctx.db
    with db.lock:
        vm = _assert_vm_running_for(db, 'VBD', vbd)
        row = db.row('VBD', vbd)
        if row['currently_attached']:
            raise XapiError('DEVICE_ALREADY_ATTACHED', vbd)
        common.assert_hotplug(db, 'VBD', vbd, vm, 'plug')
        assert_vdi_attachable(db, vbd)
    assert_lun_present(ctx, vbd)
    with common.object_operation(ctx, 'VBD', vbd, 'plug'):
        common.pause(ctx, ctx.pool.options.guest_delay)
        attach_vbd(db, vbd)
    _guest_sees_disks(ctx, vm)


def _guest_sees_disks(ctx, vm):
    """With real dom0 networking the guest's disks follow hot-plug."""
    net = ctx.pool.world.dom0net
    if net is not None:
        net.disks_changed(ctx.pool, vm)


def assert_vdi_attachable(db, vbd):
    """A non-sharable VDI is attached read-write by one running VM at most."""
    row = db.row('VBD', vbd)
    if row['empty'] or row['VDI'] == NULL_REF:
        return
    vdi = db.row('VDI', row['VDI'])
    if vdi['sharable']:
        return
    for other in vdi['VBDs']:
        if other != vbd and db.get('VBD', other, 'currently_attached') and \
                (row['mode'] == 'RW' or db.get('VBD', other, 'mode') == 'RW'):
            raise XapiError('VDI_IN_USE', row['VDI'])


def attach_vbd(db, vbd):
    number = device_number(db.get('VBD', vbd, 'userdevice'))
    db.set('VBD', vbd, currently_attached=True,
           device=device_name(number) if number is not None and number >= 0
           else '')


@handler('VBD', 'unplug')
def vbd_unplug(ctx, vbd):
    _unplug(ctx, vbd, force=False)


@handler('VBD', 'unplug_force')
def vbd_unplug_force(ctx, vbd):
    _unplug(ctx, vbd, force=True)


def _unplug(ctx, vbd, force):
    db = ctx.db
    with db.lock:
        vm = _assert_vm_running_for(db, 'VBD', vbd)
        row = db.row('VBD', vbd)
        if not row['currently_attached']:
            raise XapiError('DEVICE_ALREADY_DETACHED', vbd)
        if not force and not row['unpluggable']:
            raise XapiError('VBD_NOT_UNPLUGGABLE', vbd)
        common.assert_hotplug(db, 'VBD', vbd, vm,
                              'unplug_force' if force else 'unplug')
    with common.object_operation(ctx, 'VBD', vbd, 'unplug'):
        if not force:
            common.pause(ctx, ctx.pool.options.guest_delay)
        db.set('VBD', vbd, currently_attached=False, device='')
    _guest_sees_disks(ctx, vm)


@handler('VBD', 'destroy')
def vbd_destroy(ctx, vbd):
    db = ctx.db
    with db.lock:
        row = db.row('VBD', vbd)
        if row['currently_attached']:
            raise XapiError('OPERATION_NOT_ALLOWED',
                            "VBD '%s' still attached to '%s'"
                            % (row['uuid'], db.get('VM', row['VM'], 'uuid')))
        common.busy(db, 'VBD', vbd)
        metrics = row['metrics']
        db.destroy('VBD', vbd)
        if db.exists('VBD_metrics', metrics):
            db.destroy('VBD_metrics', metrics)


@handler('VBD', 'eject')
def vbd_eject(ctx, vbd):
    db = ctx.db
    with db.lock:
        row = db.row('VBD', vbd)
        if row['type'] != 'CD':
            raise XapiError('VBD_NOT_REMOVABLE_MEDIA', vbd)
        if row['empty']:
            raise XapiError('VBD_IS_EMPTY', vbd)
        db.set('VBD', vbd, empty=True, VDI=NULL_REF)


@handler('VBD', 'insert')
def vbd_insert(ctx, vbd, vdi):
    db = ctx.db
    with db.lock:
        row = db.row('VBD', vbd)
        if row['type'] != 'CD':
            raise XapiError('VBD_NOT_REMOVABLE_MEDIA', vbd)
        if not row['empty']:
            raise XapiError('VBD_NOT_EMPTY', vbd)
        db.set('VBD', vbd, empty=False, VDI=vdi)


@handler('VBD', 'set_mode')
def vbd_set_mode(ctx, vbd, value):
    db = ctx.db
    with db.lock:
        common.assert_power(db, db.get('VBD', vbd, 'VM'), (common.HALTED,))
        db.set('VBD', vbd, mode=value)
