"""Moving VMs: inside a pool (VM.pool_migrate) and across pools (migrate_send).

Across pools the destination hands out a receive token
(``host.migrate_receive``); the source checks it, copies every disk's
bytes into the SRs named by ``vdi_map``, recreates the VM in the
destination pool with its interfaces mapped by ``vif_map``, starts it
there if it was running, and removes the VM and its disks at the source.
"""

import os
from urllib.parse import urlparse

from xapisim import guest
from xapisim.api import common
from xapisim.api import host as host_api
from xapisim.api.session import open_session
from xapisim.api.storage import new_vdi, vdi_destroy
from xapisim.api.vm import assert_can_boot_here, vm_destroy
from xapisim.errors import XapiError
from xapisim.rpc import Context, handler
from xapisim.schema import NULL_REF
from xapisim.storage import copy_file_data


def move_running_vm(ctx, vm, host):
    """Live-move a running VM to another host of the same pool."""
    db = ctx.db
    with db.lock:
        source = db.get('VM', vm, 'resident_on')
        db.set('VM', vm, scheduled_to_be_resident_on=host)
    common.pause(ctx, ctx.pool.options.guest_delay * 4)
    with db.lock:
        old_domid = db.get('VM', vm, 'domid')
        domid = guest.next_domid(ctx.pool, host)
        if domid == old_domid:
            # a new domain: make the change visible even when the
            # destination's counter happens to match the source's
            domid = guest.next_domid(ctx.pool, host)
        guest.vif_devices(ctx.pool, vm, source, old_domid, present=False)
        db.set('VM', vm, resident_on=host, domid=domid,
               scheduled_to_be_resident_on=NULL_REF)
        guest.vif_devices(ctx.pool, vm, host, domid)
        for console in db.get('VM', vm, 'consoles'):
            location = db.get('console', console, 'location')
            target = ctx.pool.host_by_ref(host)
            parsed = urlparse(location)
            db.set('console', console, location=parsed._replace(
                netloc='%s:%d' % (target.address, target.port)).geturl())
        host_api.refresh_metrics(db, source)
        host_api.refresh_metrics(db, host)
    _move_console_log(ctx.pool, source, old_domid, host, domid)


def _move_console_log(pool, source, old_domid, host, domid):
    """xenconsoled on the destination logs the new domain's console."""
    old = guest.console_log_path(pool, source, old_domid)
    new = guest.console_log_path(pool, host, domid)
    try:
        with open(old, 'rb') as fh:
            text = fh.read()
    except OSError:
        return
    with open(new, 'wb') as fh:
        fh.write(text)
    os.unlink(old)


def _forced(options):
    """options:force=true: xapi drops the checks that need the guest's
    help (check_op_for_feature with strict = not force)."""
    return options.get('force', '').lower() == 'true'


@handler('VM', 'pool_migrate')
def vm_pool_migrate(ctx, vm, host, options):
    db = ctx.db
    with common.vm_operation(ctx, vm, 'pool_migrate',
                             strict=not _forced(options)):
        with db.lock:
            if db.get('VM', vm, 'resident_on') != host:
                assert_can_boot_here(ctx, vm, host)
        move_running_vm(ctx, vm, host)


@handler('host', 'migrate_receive')
def host_migrate_receive(ctx, host, network, options):
    db = ctx.db
    pif = None
    for p in db.get('network', network, 'PIFs'):
        if db.get('PIF', p, 'host') == host:
            pif = p
    if pif is None:
        raise XapiError('HOST_CANNOT_ATTACH_NETWORK', host, network)
    address = db.get('PIF', pif, 'IP')
    if not address:
        raise XapiError('INTERFACE_HAS_NO_IP', db.get('PIF', pif, 'device'))
    target = ctx.pool.host_by_ref(host)
    session = open_session(ctx, ctx.pool.options.username, 'migrate_receive')
    base = 'http://%s:%d' % (address, target.port)
    return {'SM': '%s/services/SM?session_id=%s' % (base, session),
            'host': host,
            'xenops': '%s/services/xenops?session_id=%s' % (base, session),
            'session_id': session,
            'master': 'http://%s:%d/' % (ctx.pool.master.address,
                                         ctx.pool.master.port)}


def _destination(ctx, dest):
    """The destination pool, host and session named by a receive token."""
    try:
        netloc = urlparse(dest['master']).netloc
        session = dest['session_id']
        host_ref = dest['host']
    except (KeyError, ValueError):
        raise XapiError('VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED')
    address = netloc.split(':')[0]
    target = ctx.pool.world.host_by_address(address)
    if target is None:
        raise XapiError('VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED')
    pool = target.pool
    if not pool.db.exists('session', session):
        raise XapiError('VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED')
    host = pool.host_by_ref(host_ref)
    if host is None:
        raise XapiError('VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED')
    return pool, host, session


def _check_migrate(ctx, vm, dest, live, vdi_map, vif_map, options):
    db = ctx.db
    common.check_vm_operation(db, vm, 'migrate_send',
                              strict=not _forced(options))
    state = db.get('VM', vm, 'power_state')
    if live and state != common.RUNNING:
        raise common.power_error(vm, (common.RUNNING,), state)
    pool, host, session = _destination(ctx, dest)
    for vbd in db.get('VM', vm, 'VBDs'):
        row = db.row('VBD', vbd)
        if row['empty'] or row['VDI'] == NULL_REF or row['type'] == 'CD':
            continue
        sr = vdi_map.get(row['VDI'])
        if sr is None:
            if pool is ctx.pool:
                continue
            raise XapiError('VDI_NOT_IN_MAP', row['VDI'])
        if not pool.db.exists('SR', sr):
            raise XapiError('HANDLE_INVALID', 'SR', sr)
    for vif in db.get('VM', vm, 'VIFs'):
        network = vif_map.get(vif)
        if network is None and pool is not ctx.pool:
            raise XapiError('VIF_NOT_IN_MAP', vif)
        if network is not None and not pool.db.exists('network', network):
            raise XapiError('HANDLE_INVALID', 'network', network)
    row = db.row('VM', vm)
    needed = host_api.vm_footprint(row)
    available = host_api.free_memory(pool.db, host.ref)
    if state == common.RUNNING and needed > available:
        raise XapiError('HOST_NOT_ENOUGH_FREE_MEMORY', needed, available)
    return pool, host, session


@handler('VM', 'assert_can_migrate')
def vm_assert_can_migrate(ctx, vm, dest, live, vdi_map, vif_map, options,
                          vgpu_map):
    _check_migrate(ctx, vm, dest, live, vdi_map, vif_map, options)


@handler('VM', 'migrate_send')
def vm_migrate_send(ctx, vm, dest, live, vdi_map, vif_map, options,
                    vgpu_map):
    db = ctx.db
    with db.lock:
        pool, host, session = _check_migrate(ctx, vm, dest, live, vdi_map,
                                             vif_map, options)
    with common.vm_operation(ctx, vm, 'migrate_send',
                             strict=not _forced(options)):
        dctx = Context(pool, host, session)
        new_vm = _recreate(ctx, dctx, vm, vdi_map, vif_map)
        was_running = db.get('VM', vm, 'power_state') == common.RUNNING
        if was_running:
            guest.create_domain(pool, new_vm, host.ref)
            guest.destroy_domain(ctx.pool, vm)
    _remove_source(ctx, vm, vdi_map)
    return new_vm


def _recreate(ctx, dctx, vm, vdi_map, vif_map):
    """The VM, its disks (bytes included) and VIFs, in the destination."""
    src = ctx.db.record('VM', vm)
    ddb = dctx.db
    copy = {k: v for k, v in src.items()
            if k in ddb.schema.classes['VM'].fields and k not in (
                'uuid', 'VBDs', 'VIFs', 'consoles', 'snapshots', 'children',
                'crash_dumps', 'VTPMs', 'VGPUs', 'VUSBs', 'attached_PCIs',
                'metrics', 'guest_metrics', 'resident_on', 'domid',
                'allowed_operations', 'current_operations', 'affinity',
                'suspend_VDI', 'scheduled_to_be_resident_on', 'parent',
                'snapshot_of', 'appliance', 'suspend_SR',
                'protection_policy', 'snapshot_schedule')}
    # the uuid follows the VM to its new pool, as xapi does
    copy.update(uuid=src['uuid'], power_state=common.HALTED, domid=-1,
                metrics=ddb.create('VM_metrics', {'other_config': {},
                                                  'state': []}))
    new_vm = ddb.create('VM', copy)
    for i, vbd in enumerate(src['VBDs']):
        row = ctx.db.record('VBD', vbd)
        vdi = NULL_REF
        if not row['empty'] and row['VDI'] != NULL_REF and row['type'] != 'CD':
            vdi = _copy_vdi_across(ctx, dctx, row['VDI'],
                                   vdi_map[row['VDI']])
            dctx.progress(float(i + 1) / max(len(src['VBDs']), 1))
        fields = {k: row[k] for k in (
            'userdevice', 'bootable', 'mode', 'type', 'unpluggable',
            'empty', 'other_config', 'qos_algorithm_type',
            'qos_algorithm_params')}
        if vdi == NULL_REF:
            fields.update(empty=True, type='CD', mode='RO')
        fields.update(VM=new_vm, VDI=vdi, currently_attached=False,
                      metrics=ddb.create('VBD_metrics', {'other_config': {}}))
        ddb.create('VBD', fields)
    for vif in src['VIFs']:
        row = ctx.db.record('VIF', vif)
        fields = {k: row[k] for k in (
            'device', 'MAC', 'MTU', 'other_config', 'qos_algorithm_type',
            'qos_algorithm_params', 'locking_mode', 'ipv4_allowed',
            'ipv6_allowed', 'MAC_autogenerated')}
        fields.update(VM=new_vm, network=vif_map[vif],
                      currently_attached=False,
                      metrics=ddb.create('VIF_metrics', {'other_config': {}}))
        ddb.create('VIF', fields)
    common.refresh_vm_allowed(ddb, new_vm)
    return new_vm


def _copy_vdi_across(ctx, dctx, vdi, sr):
    src = ctx.db.record('VDI', vdi)
    fields = {k: src[k] for k in ('name_label', 'name_description', 'type',
                                  'sharable', 'read_only', 'other_config',
                                  'xenstore_data')}
    new = new_vdi(dctx, sr, src['virtual_size'], fields)
    copy_file_data(ctx.pool.storage.path(vdi), dctx.pool.storage.path(new))
    dctx.pool.storage.refresh_utilisation(new)
    return new


def _remove_source(ctx, vm, vdi_map):
    db = ctx.db
    vdis = [db.get('VBD', vbd, 'VDI') for vbd in db.get('VM', vm, 'VBDs')
            if db.get('VBD', vbd, 'VDI') in vdi_map]
    vm_destroy(ctx, vm)
    for vdi in vdis:
        if db.exists('VDI', vdi):
            vdi_destroy(ctx, vdi)
