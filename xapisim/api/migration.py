"""Moving VMs: VM.pool_migrate, host.evacuate and VM.migrate_send.

VM.pool_migrate moves a running VM to another host of its pool: its
memory is copied in ``MEMORY_ROUNDS`` rounds of ``--guest-delay`` (each
raising the task's progress), then the domain switches hosts (a new
domid, its VIF devices and console log in the destination's dom0, its
consoles served there, the memory accounted there).  As in xapi, the
networks are attached at the destination before the copy, and the
destination's VIF devices are plugged before the source's go.

VM.migrate_send takes the receive token of ``host.migrate_receive``.  It
copies each disk that ``vdi_map`` sends to another SR (the task's
progress follows the bytes), then:

- inside the pool (the token names one of the pool's hosts: storage
  XenMotion), the VM stays the same object: its VBDs are re-pointed to
  the copies, the originals are destroyed, and a running VM's domain
  moves as for VM.pool_migrate;
- across pools, the VM is recreated at the destination with its uuid,
  its VIFs on the networks ``vif_map`` names, started there if it was
  running, and the VM and its disks are removed at the source.

Until the domain switches, a failure (an error, a rule for one of the
points of ``xapisim.faults.POINTS``, task.cancel) undoes what the move
made at the destination and leaves the source as it was, as xapi does.
"""

import os
from urllib.parse import urlparse

from xapisim import guest
from xapisim.api import common, firmware, memory
from xapisim.api.session import open_session
from xapisim.api.storage import new_vdi, vdi_destroy
from xapisim.api.vm import assert_can_boot_here, pick_host, remove_vm
from xapisim.db import Killed
from xapisim.errors import XapiError
from xapisim.rpc import Context, handler
from xapisim.schema import NULL_REF

# A memory copy takes this many rounds of guest_delay.
MEMORY_ROUNDS = 4
# The task's progress when a memory copy ends (the task's end makes it 1),
# and the share of a migrate_send's progress its disks take when a running
# VM's memory follows them.
MEMORY_END = 0.95
DISK_SHARE = 0.9

# The fault points (xapisim.faults.POINTS) these operations pass.
POOL_MIGRATE_MEMORY = 'VM.pool_migrate/memory'
MIGRATE_SEND_COPY = 'VM.migrate_send/copy'
MIGRATE_SEND_MEMORY = 'VM.migrate_send/memory'

_INTRA_POOL_VIF_MAP = ('VIF mapping is not allowed for intra-pool migration '
                       '-all VIFs must be on the same network')


def _point(ctx, name):
    """The operation passes the fault point ``name``: a rule for it
    fails the operation here, or stalls it (task.cancel interrupts)."""
    common.check_cancelled(ctx)
    ctx.pool.faults.before(name, sleep=lambda seconds: common.pause(ctx,
                                                                    seconds))


def _copy_memory(ctx, point, start):
    """A running VM's memory goes to its destination: progress from
    ``start`` to MEMORY_END, the fault point ``point`` half-way."""
    delay = ctx.pool.options.guest_delay
    for i in range(MEMORY_ROUNDS):
        if i == MEMORY_ROUNDS // 2:
            _point(ctx, point)
        common.pause(ctx, delay)
        ctx.progress(start + (MEMORY_END - start) * (i + 1) / MEMORY_ROUNDS)


def _reserve(db, vm, host):
    """Memory reserved on ``host`` while the VM moves there (xapi's
    allocate_vm_to_host)."""
    with db.lock:
        db.set('VM', vm, scheduled_to_be_resident_on=host)


def _release(db, vm):
    with db.lock:
        if not db.exists('VM', vm):
            return
        host = db.get('VM', vm, 'scheduled_to_be_resident_on')
        db.set('VM', vm, scheduled_to_be_resident_on=NULL_REF)
        if db.exists('host', host):
            memory.refresh_metrics(db, host)


# ---------------------------------------------------------------- in a pool


def move_running_vm(ctx, vm, host):
    """Live-move a running VM to another host of the same pool."""
    db = ctx.db
    _reserve(db, vm, host)
    try:
        guest.attach_networks(ctx.pool, vm, host)
        _copy_memory(ctx, POOL_MIGRATE_MEMORY, 0.0)
        domid = guest.receive_domain(ctx.pool, vm, host)
    except Killed:
        raise        # a xapi restart: it forgets the reservation itself
    except Exception:
        _release(db, vm)
        raise
    with db.lock:
        moved = _switch_domain(ctx, vm, host, domid)
    _move_console_log(ctx.pool, *moved)


def _switch_domain(ctx, vm, host, domid):
    """The domain ``domid`` that guest.receive_domain built on ``host``
    now runs the VM, the source's goes (call with the lock held); what
    _move_console_log needs."""
    db = ctx.db
    source = db.get('VM', vm, 'resident_on')
    old_domid = db.get('VM', vm, 'domid')
    db.set('VM', vm, resident_on=host, domid=domid,
           scheduled_to_be_resident_on=NULL_REF)
    guest.leave_domain(ctx.pool, vm, source, old_domid)
    target = ctx.pool.host_by_ref(host)
    for console in db.get('VM', vm, 'consoles'):
        location = db.get('console', console, 'location')
        parsed = urlparse(location)
        db.set('console', console, location=parsed._replace(
            netloc='%s:%d' % (target.address, target.port)).geturl())
    memory.refresh_metrics(db, source)
    memory.refresh_metrics(db, host)
    return source, old_domid, host, domid


def _move_console_log(pool, source, old_domid, host, domid):
    """xenconsoled on the destination logs the new domain's console."""
    old = guest.console_log_path(pool, source, old_domid)
    new = guest.console_log_path(pool, host, domid)
    if os.path.islink(new):
        # a booted guest's log (guestboot): it follows its domain already
        if os.path.islink(old):
            os.unlink(old)
        return
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


@handler('host', 'get_vms_which_prevent_evacuation')
def vms_preventing_evacuation(ctx, host):
    db = ctx.db
    blockers = {}
    for vm in db.get('host', host, 'resident_VMs'):
        row = db.row('VM', vm)
        if row['is_control_domain']:
            continue
        others = [h for h in ctx.pool.hosts
                  if h.ref != host and db.get('host', h.ref, 'enabled')]
        if not others:
            blockers[vm] = ['NO_HOSTS_AVAILABLE']
    return blockers


@handler('host', 'assert_can_evacuate')
def assert_can_evacuate(ctx, host):
    for vm, error in vms_preventing_evacuation(ctx, host).items():
        raise XapiError(*error)


@handler('host', 'evacuate')
def host_evacuate(ctx, host, network=NULL_REF, evacuate_batch_size=0):
    db = ctx.db
    assert_can_evacuate(ctx, host)
    for vm in list(db.get('host', host, 'resident_VMs')):
        if db.get('VM', vm, 'is_control_domain'):
            continue
        move_running_vm(ctx, vm, pick_host(ctx, vm, exclude=host))


# ---------------------------------------------------------------- tokens


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


# ---------------------------------------------------------------- migrate_send


class _Plan(object):
    """What a VM.migrate_send will do, as its checks worked it out."""

    def __init__(self, pool, host, session, intra, running):
        self.pool = pool            # the destination pool
        self.host = host            # its Host receiving the VM
        self.session = session      # the token's session there
        self.intra = intra          # a storage migration inside the pool
        self.running = running      # the domain moves too
        self.copies = []            # [(VDI, SR)]: the disks to copy
        self.vif_map = {}           # across pools: VIF -> network there


def _disks(db, vm):
    """The VDIs a migration moves: those of the VM's non-empty disks
    (xapi's vdi_filter leaves CDs out)."""
    vdis = []
    for vbd in db.get('VM', vm, 'VBDs'):
        row = db.row('VBD', vbd)
        if row['empty'] or row['VDI'] == NULL_REF or row['type'] == 'CD':
            continue
        if row['VDI'] not in vdis:
            vdis.append(row['VDI'])
    return vdis


def _infer_vif_map(db, vm, vif_map):
    """xapi's infer_vif_map: each VIF's network at the destination, named
    in the map or inferred from a mapped VIF with the same MAC."""
    by_mac = {}
    for vif, network in vif_map.items():
        if db.exists('VIF', vif):
            by_mac.setdefault(db.get('VIF', vif, 'MAC'), network)
    inferred = {}
    for vif in db.get('VM', vm, 'VIFs'):
        if vif in vif_map:
            inferred[vif] = vif_map[vif]
        elif db.get('VIF', vif, 'MAC') in by_mac:
            inferred[vif] = by_mac[db.get('VIF', vif, 'MAC')]
        else:
            raise XapiError('VIF_NOT_IN_MAP', vif)
    return inferred


def _check_migrate(ctx, vm, dest, live, vdi_map, vif_map, options):
    """VM.assert_can_migrate's checks, in xapi's order; the plan."""
    db = ctx.db
    common.check_vm_operation(db, vm, 'migrate_send',
                              strict=not _forced(options))
    state = db.get('VM', vm, 'power_state')
    if live and state != common.RUNNING:
        raise common.power_error(vm, (common.RUNNING,), state)
    pool, host, session = _destination(ctx, dest)
    plan = _Plan(pool, host, session, intra=pool is ctx.pool,
                 running=state == common.RUNNING)
    disks = _disks(db, vm)
    for vdi in disks:
        # every disk is in the map, inside a pool too (check_vdi_map)
        if vdi not in vdi_map:
            raise XapiError('VDI_NOT_IN_MAP', vdi)
    for vdi in disks:
        sr = vdi_map[vdi]
        if not pool.db.exists('SR', sr):
            raise XapiError('HANDLE_INVALID', 'SR', sr)
        # inside a pool a disk mapped to its own SR stays where it is
        if not plan.intra or db.get('VDI', vdi, 'SR') != sr:
            plan.copies.append((vdi, sr))
    if plan.intra:
        # xapi's assert_can_boot_here without its SR check (a disk the
        # destination cannot see fails the move itself); its memory check
        # leaves out the VM itself, which counts only if it runs there
        here = db.get('VM', vm, 'resident_on') == host.ref
        assert_can_boot_here(ctx, vm, host.ref, sr_check=False,
                             memory_check=not here)
        if vif_map:
            raise XapiError('OPERATION_NOT_ALLOWED', _INTRA_POOL_VIF_MAP)
        return plan
    if not pool.db.get('host', host.ref, 'enabled'):
        raise XapiError('HOST_DISABLED', host.ref)
    plan.vif_map = _infer_vif_map(db, vm, vif_map)
    for network in plan.vif_map.values():
        if not pool.db.exists('network', network):
            raise XapiError('HANDLE_INVALID', 'network', network)
    if plan.running:
        needed = memory.vm_footprint(db.row('VM', vm))
        available = memory.free_memory(pool.db, host.ref)
        if needed > available:
            raise XapiError('HOST_NOT_ENOUGH_FREE_MEMORY', needed, available)
    return plan


@handler('VM', 'assert_can_migrate')
def vm_assert_can_migrate(ctx, vm, dest, live, vdi_map, vif_map, options,
                          vgpu_map):
    with ctx.db.lock:
        _check_migrate(ctx, vm, dest, live, vdi_map, vif_map, options)


@handler('VM', 'migrate_send')
def vm_migrate_send(ctx, vm, dest, live, vdi_map, vif_map, options,
                    vgpu_map):
    with ctx.db.lock:
        plan = _check_migrate(ctx, vm, dest, live, vdi_map, vif_map, options)
    with common.vm_operation(ctx, vm, 'migrate_send',
                             strict=not _forced(options)):
        if plan.intra:
            _move_within_pool(ctx, vm, plan)
            return vm
        return _move_across_pools(ctx, vm, plan)


def _copy_disks(ctx, dctx, plan, copied):
    """Copy the plan's disks into their SRs at the destination.  Each
    copy goes into ``copied`` (source VDI -> copy) as soon as it exists,
    for the undo; the task's progress follows the bytes."""
    end = DISK_SHARE if plan.running else MEMORY_END
    sizes = [ctx.db.get('VDI', vdi, 'virtual_size') for vdi, _ in plan.copies]
    total = float(max(sum(sizes), 1))
    done = 0
    for (vdi, sr), size in zip(plan.copies, sizes):
        common.check_cancelled(ctx)
        src = ctx.db.record('VDI', vdi)
        fields = {k: src[k] for k in (
            'name_label', 'name_description', 'type', 'sharable',
            'read_only', 'other_config', 'xenstore_data', 'on_boot',
            'allow_caching')}
        new = new_vdi(dctx, sr, size, fields)
        copied[vdi] = new

        def progress(at, base=done, size=size):
            common.check_cancelled(ctx)
            ctx.progress(end * (base + at * size) / total)
        # the copy is a whole disk of its own there (no VHD parent)
        dctx.pool.storage.receive(ctx.pool.storage.path(vdi), new, progress)
        done += size
        ctx.progress(end * done / total)
        _point(ctx, MIGRATE_SEND_COPY)


def _drop_vdis(ctx, vdis):
    """Destroy what a move no longer needs: the copies it made (undo) or
    the originals it replaced."""
    for vdi in list(vdis):
        if ctx.db.exists('VDI', vdi):
            vdi_destroy(ctx, vdi)


def _assert_disks_seen(ctx, vm, host, copied):
    """The destination host must reach every disk the VM will use: those
    copied and those staying on their SR."""
    db = ctx.db
    for vdi in _disks(db, vm):
        sr = db.get('VDI', copied.get(vdi, vdi), 'SR')
        if host not in ctx.pool.storage.hosts_seeing(sr):
            raise XapiError('VM_REQUIRES_SR', vm, sr)


def _move_within_pool(ctx, vm, plan):
    """Storage XenMotion: the disks move to their new SRs, the VM (the
    same object) to its new host."""
    db = ctx.db
    host = plan.host.ref
    copied = {}
    if plan.running:
        _reserve(db, vm, host)
    try:
        _copy_disks(ctx, ctx, plan, copied)
        if plan.running:
            _assert_disks_seen(ctx, vm, host, copied)
            guest.attach_networks(ctx.pool, vm, host)
            _copy_memory(ctx, MIGRATE_SEND_MEMORY,
                         DISK_SHARE if plan.copies else 0.0)
            domid = guest.receive_domain(ctx.pool, vm, host)
    except Killed:
        raise
    except Exception:
        if plan.running:
            _release(db, vm)
        _drop_vdis(ctx, copied.values())
        raise
    moved = None
    with db.lock:
        for vbd in db.get('VM', vm, 'VBDs'):
            vdi = db.get('VBD', vbd, 'VDI')
            if vdi in copied:
                db.set('VBD', vbd, VDI=copied[vdi])
        if plan.running:
            moved = _switch_domain(ctx, vm, host, domid)
    if moved is not None:
        _move_console_log(ctx.pool, *moved)
        net = ctx.pool.world.dom0net
        if net is not None:
            # the guest's disks are the copies now
            net.disks_changed(ctx.pool, vm)
    _drop_vdis(ctx, copied)


def _move_across_pools(ctx, vm, plan):
    """Cross-pool XenMotion: the disks, then the VM's record, then its
    domain go to the destination pool; the source forgets the VM."""
    pool, host = plan.pool, plan.host
    dctx = Context(pool, host, plan.session)
    copied = {}
    new_vm = None
    try:
        _copy_disks(ctx, dctx, plan, copied)
        new_vm = _recreate(ctx, dctx, vm, copied, plan.vif_map)
        if plan.running:
            _reserve(pool.db, new_vm, host.ref)
            guest.attach_networks(pool, new_vm, host.ref)
            _copy_memory(ctx, MIGRATE_SEND_MEMORY,
                         DISK_SHARE if plan.copies else 0.0)
            # the destination's devices first, then the source's domain
            # goes (a device that cannot be plugged: the VM stays here)
            guest.create_domain(pool, new_vm, host.ref,
                                arriving_from=(ctx.pool, vm))
    except Killed:
        raise
    except Exception:
        if new_vm is not None and pool.db.exists('VM', new_vm):
            remove_vm(dctx, new_vm)
        _drop_vdis(dctx, copied.values())
        raise
    if plan.running:
        guest.destroy_domain(ctx.pool, vm)
    remove_vm(ctx, vm)
    _drop_vdis(ctx, copied)
    return new_vm


def _recreate(ctx, dctx, vm, copied, vif_map):
    """The VM's record, its VBDs (on the copies) and VIFs (on the mapped
    networks), in the destination pool."""
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
    with ddb.lock:
        copy.update(uuid=src['uuid'], power_state=common.HALTED, domid=-1,
                    metrics=ddb.create('VM_metrics', {'other_config': {},
                                                      'state': []}))
        new_vm = ddb.create('VM', copy)
    for vbd in src['VBDs']:
        row = ctx.db.record('VBD', vbd)
        vdi = copied.get(row['VDI'], NULL_REF)
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
    # exported with its contents, unique or not (xapi export.ml)
    firmware.copy_vtpms(ctx.pool, vm, dctx, new_vm, carry_contents=True)
    common.refresh_vm_allowed(ddb, new_vm)
    return new_vm
