"""PCI passthrough and vGPU: PCI dom0 access, VGPU objects, where xapi
puts a VM's vGPUs and passed-through devices at start, and what it
refuses with them.

The facts, from xapi (github xapi-project/xen-api e2ee48d6883e):

- ``PCI.disable_dom0_access`` / ``enable_dom0_access`` only edit the
  configured ``xen-pciback.hide`` (``pciops.ml`` l.62-150, "Takes affect
  after next boot"); ``get_dom0_access_status`` compares it with the
  running command line (``xapi_pci_helpers.ml`` l.209-222); hiding the
  dom0 boot device is refused (``xapi_pci.ml`` disable_dom0_access).
  The running state changes at ``host.reboot``, which needs the host
  disabled and no guest running on it (``xapi_host.ml``
  assert_bacon_mode l.174-198).
- ``VM.other_config:pci`` ("0/0000:04:01.0,...", ``pciops.ml``
  other_pcidevs_of_vm l.56-66; malformed entries dropped) is passed to
  xenopsd at start without any check by xapi; xenopsd's failure comes
  back as INTERNAL_ERROR "Device.PCI.Cannot_add(<addresses>, ...)"
  (``ocaml/xenopsd/xc/device.ml`` l.1126-1144, l.1396).  Once running,
  the devices are the VM's ``attached_PCIs``.
- ``VGPU.create`` (``xapi_vgpu.ml`` create' l.64-123) and ``destroy``
  (l.126-134); the pGPU is chosen at start by
  ``vgpuops.ml`` allocate_vgpu_to_gpu l.59-105: the group's pGPUs on that
  host with remaining capacity, fullest first (depth_first) or emptiest
  first (breadth_first); none: VM_REQUIRES_VGPU (VM_REQUIRES_GPU for a
  whole-GPU passthrough type); passthrough needs the host's IOMMU
  (``xapi_vm_helpers.ml`` l.469-481).
- A VM with an attached PCI cannot be suspended, checkpointed or
  migrated (VM_HAS_PCI_ATTACHED), nor one with vGPUs unless all are
  NVIDIA with compatibility metadata (VM_HAS_VGPU)
  (``xapi_vm_lifecycle.ml`` check_vgpu l.317-340, l.653-668).
"""

import re

from xapisim import sysfs
from xapisim.api import common
from xapisim.devices import PASSTHROUGH
from xapisim.errors import XapiError
from xapisim.rpc import handler
from xapisim.schema import NULL_REF

_PCI_ENTRY = re.compile(
    r'^(\d+)/([0-9a-fA-F]{4}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$')
VGPU_DEVICES = range(0, 21)


def _devices(ctx_or_pool):
    pool = getattr(ctx_or_pool, 'pool', ctx_or_pool)
    return pool.devices


def other_config_pcis(other_config):
    """The addresses in ``other_config:pci``, as xapi parses them."""
    found = []
    for item in other_config.get('pci', '').split(','):
        m = _PCI_ENTRY.match(item.strip())
        if m:
            found.append('%s:%s:%s.%s' % tuple(
                g.lower() for g in m.groups()[1:]))
    return found


# ------------------------------------------------------------ PCI


def _pci_state(ctx, pci):
    ctx.db.row('PCI', pci)
    return _devices(ctx).pci[pci]


def _sync_pgpu_access(ctx, pci, access):
    """xapi keeps the deprecated PGPU.dom0_access in step."""
    for pgpu in ctx.db.find('PGPU', PCI=pci):
        ctx.db.set('PGPU', pgpu, dom0_access=access)


@handler('PCI', 'disable_dom0_access')
def pci_disable_dom0_access(ctx, pci):
    state = _pci_state(ctx, pci)
    if state.boot_device:
        raise XapiError('BOOT_DEVICE_PASSTHROUGH_DISALLOWED',
                        '/dev/disk/by-id/' + ctx.db.get('PCI', pci, 'pci_id'))
    state.hidden_after_reboot = True
    _sync_pgpu_access(ctx, pci, state.dom0_access())
    return state.dom0_access()


@handler('PCI', 'enable_dom0_access')
def pci_enable_dom0_access(ctx, pci):
    state = _pci_state(ctx, pci)
    state.hidden_after_reboot = False
    _sync_pgpu_access(ctx, pci, state.dom0_access())
    return state.dom0_access()


@handler('PCI', 'get_dom0_access_status')
def pci_get_dom0_access_status(ctx, pci):
    return _pci_state(ctx, pci).dom0_access()


@handler('host', 'reboot')
def host_reboot(ctx, host):
    """The host restarts with its configured command line: what was to be
    hidden from dom0 (or given back) now is.  The simulated reboot is
    instant and leaves the host enabled, as xapi enables it at start."""
    db = ctx.db
    with db.lock:
        if db.get('host', host, 'enabled'):
            raise XapiError('HOST_NOT_DISABLED')
        for vm in db.get('host', host, 'resident_VMs'):
            if not db.get('VM', vm, 'is_control_domain') and \
                    db.get('VM', vm, 'power_state') == common.RUNNING:
                raise XapiError('HOST_IN_USE', host, 'vm', vm)
        for pci in db.get('host', host, 'PCIs'):
            state = _devices(ctx).pci[pci]
            state.hidden_now = state.hidden_after_reboot
            _sync_pgpu_access(ctx, pci, state.dom0_access())
        _rebind(ctx, host)
        db.set('host', host, enabled=True)


def _rebind(ctx, host):
    """dom0's sysfs after the reboot: pciback has what is hidden now."""
    devices = _devices(ctx)
    for sim_host in ctx.pool.hosts:
        if sim_host.ref != host:
            continue
        for spec in devices.all_functions.get(host, []):
            state = devices.functions[(host, spec['pci_id'])]
            sysfs.bind(sim_host.dom0_root, spec, state.hidden_now)


# ------------------------------------------------------------ GPUs


def remaining_capacity(db, devices, pgpu, vgpu_type, pending=()):
    """xapi_pgpu_helpers.get_remaining_capacity: 0 instead of a reason.

    ``pending``: (VGPU, PGPU) pairs chosen but not yet recorded.
    """
    row = db.row('PGPU', pgpu)
    if vgpu_type not in row['supported_VGPU_types'] or \
            vgpu_type not in row['enabled_VGPU_types']:
        return 0
    placed = [v for v in db.find('VGPU', resident_on=pgpu)]
    placed += [v for v in db.find('VGPU', scheduled_to_be_resident_on=pgpu)
               if v not in placed]
    placed += [v for v, p in pending if p == pgpu and v not in placed]
    # one running type per pGPU (the compatible_types_on_pgpu check)
    if any(db.get('VGPU', v, 'type') != vgpu_type for v in placed):
        return 0
    if devices.type_size[vgpu_type] == 0:
        pci = row['PCI']
        attached = devices.pci[pci].attached_vm != NULL_REF
        return 0 if (placed or attached) else 1
    used = sum(devices.type_size[db.get('VGPU', v, 'type')] for v in placed)
    return max(0, (devices.pgpu_size[pgpu] - used)
               // devices.type_size[vgpu_type])


@handler('PGPU', 'get_remaining_capacity')
def pgpu_get_remaining_capacity(ctx, pgpu, vgpu_type):
    db = ctx.db
    with db.lock:
        db.row('VGPU_type', vgpu_type)
        return remaining_capacity(db, _devices(ctx), pgpu, vgpu_type)


@handler('GPU_group', 'get_remaining_capacity')
def gpu_group_get_remaining_capacity(ctx, group, vgpu_type):
    """Pool-wide: the sum over every host's pGPUs of the group
    (xapi_gpu_group.ml l.118-180)."""
    db = ctx.db
    with db.lock:
        db.row('VGPU_type', vgpu_type)
        return sum(remaining_capacity(db, _devices(ctx), p, vgpu_type)
                   for p in db.get('GPU_group', group, 'PGPUs'))


def _restricted(db):
    pool = db.refs('pool')[0]
    return db.get('pool', pool, 'restrictions').get('restrict_gpu') == 'true'


@handler('VGPU', 'create')
def vgpu_create(ctx, vm, group, device, other_config, vgpu_type):
    db = ctx.db
    with db.lock:
        if _restricted(db):
            raise XapiError('FEATURE_RESTRICTED', 'restrict_gpu')
        row = db.row('VM', vm)
        db.row('GPU_group', group)
        if not row['is_a_snapshot']:
            common.assert_power(db, vm, (common.HALTED,))
        if vgpu_type == NULL_REF:
            vgpu_type = db.find_one('VGPU_type', model_name=PASSTHROUGH)
        elif not db.exists('VGPU_type', vgpu_type):
            raise XapiError('INVALID_VALUE', 'type', vgpu_type)
        for other in row['VGPUs']:
            existing = db.get('VGPU', other, 'type')
            if vgpu_type not in db.get('VGPU_type', existing,
                                       'compatible_types_in_vm'):
                raise XapiError('VGPU_TYPE_NOT_COMPATIBLE', vgpu_type)
        used = [int(db.get('VGPU', v, 'device')) for v in row['VGPUs']]
        try:
            wanted = int(device)
        except ValueError:
            raise XapiError('INVALID_DEVICE', device)
        if wanted == 0:
            free = [d for d in VGPU_DEVICES if d not in used]
            if not free:
                raise XapiError('VM_PCI_BUS_FULL', vm)
            device = str(free[0])
        elif wanted in used:
            raise XapiError('DEVICE_ALREADY_EXISTS', device)
        elif wanted not in VGPU_DEVICES:
            raise XapiError('INVALID_DEVICE', device)
        return db.create('VGPU', {
            'VM': vm, 'GPU_group': group, 'device': device,
            'other_config': dict(other_config), 'type': vgpu_type,
            'currently_attached': False, 'resident_on': NULL_REF,
            'scheduled_to_be_resident_on': NULL_REF, 'PCI': NULL_REF})


@handler('VGPU', 'destroy')
def vgpu_destroy(ctx, vgpu):
    db = ctx.db
    with db.lock:
        vm = db.get('VGPU', vgpu, 'VM')
        if db.exists('VM', vm) and \
                db.get('VM', vm, 'power_state') == common.RUNNING:
            raise XapiError('OPERATION_NOT_ALLOWED',
                            'vGPU currently attached to a running VM')
        db.destroy('VGPU', vgpu)


def _is_passthrough(db, vgpu):
    return db.get('VGPU_type', db.get('VGPU', vgpu, 'type'),
                  'implementation') == 'passthrough'


def _allocate(db, devices, vm, host, vgpu, pending):
    """allocate_vgpu_to_gpu: the pGPU this vGPU gets on ``host``."""
    row = db.row('VGPU', vgpu)
    candidates = []
    for pgpu in db.get('host', host, 'PGPUs'):
        if db.get('PGPU', pgpu, 'GPU_group') != row['GPU_group']:
            continue
        capacity = remaining_capacity(db, devices, pgpu, row['type'],
                                      pending)
        if capacity > 0:
            candidates.append((pgpu, capacity))
    if not candidates:
        if _is_passthrough(db, vgpu):
            raise XapiError('VM_REQUIRES_GPU', vm, row['GPU_group'])
        raise XapiError('VM_REQUIRES_VGPU', vm, row['GPU_group'],
                        row['type'])
    breadth = db.get('GPU_group', row['GPU_group'],
                     'allocation_algorithm') == 'breadth_first'
    # a stable sort, as xapi's: equal capacities keep the host's order
    candidates.sort(key=lambda c: c[1], reverse=breadth)
    return candidates[0][0]


def vgpu_placement(db, devices, vm, host):
    """[(VGPU, PGPU)] for the VM's vGPUs on ``host``, or xapi's error."""
    vgpus = db.get('VM', vm, 'VGPUs')
    if not vgpus:
        return []
    if any(_is_passthrough(db, v) for v in vgpus) and \
            db.get('host', host, 'chipset_info').get('iommu') != 'true':
        raise XapiError('VM_REQUIRES_IOMMU', host)
    pending = []
    for vgpu in vgpus:
        pending.append((vgpu, _allocate(db, devices, vm, host, vgpu,
                                        pending)))
    return pending


def assert_gpus_available(ctx, vm, host):
    """For VM.assert_can_boot_here and the choice of a host."""
    devices = _devices(ctx)
    if devices is not None:
        vgpu_placement(ctx.db, devices, vm, host)


def _cannot_add(addresses, reason):
    return XapiError('INTERNAL_ERROR',
                     'xenopsd internal error: Device.PCI.Cannot_add(%s, '
                     'Failure("%s"))' % (';'.join(addresses), reason))


def _check_pcis(db, devices, vm, host, addresses):
    """What xenopsd finds when it assigns other_config:pci devices."""
    for address in addresses:
        # xenopsd takes any function of the host, listed by xapi or not
        state = devices.functions.get((host, address)) if devices else None
        if state is None:
            return _cannot_add(addresses, '%s: no such device on this host'
                               % address)
        if not state.hidden_now:
            return _cannot_add(addresses, '%s: not assignable (dom0 uses '
                               'it; hide it and reboot)' % address)
        if state.attached_vm not in (NULL_REF, vm):
            return _cannot_add(addresses, '%s: already assigned to another '
                               'domain' % address)
    return None


def reserve_at_start(ctx, vm, host):
    """Under the database lock, before the domain is built: choose the
    vGPUs' pGPUs (scheduled_to_be_resident_on) and check the devices of
    other_config:pci; raise xapi's error with nothing changed."""
    db = ctx.db
    devices = _devices(ctx)
    placement = vgpu_placement(db, devices, vm, host) if devices else []
    addresses = other_config_pcis(db.get('VM', vm, 'other_config'))
    error = _check_pcis(db, devices, vm, host, addresses)
    if error is not None:
        raise error
    for vgpu, pgpu in placement:
        db.set('VGPU', vgpu, scheduled_to_be_resident_on=pgpu)


def release_reservation(db, vm):
    """A start that failed after ``reserve_at_start``."""
    for vgpu in db.get('VM', vm, 'VGPUs'):
        db.set('VGPU', vgpu, scheduled_to_be_resident_on=NULL_REF)


def domain_built(pool, vm, host):
    """The domain runs: its vGPUs are resident, its PCI devices attached."""
    db = pool.db
    devices = pool.devices
    if devices is None:
        return
    attached = []
    for address in other_config_pcis(db.get('VM', vm, 'other_config')):
        devices.functions[(host, address)].attached_vm = vm
        # xapi records the attachment only of functions it has a PCI
        # object for (xapi_xenops.ml update_pci: List.find on host.PCIs)
        pci = devices.by_address.get((host, address))
        if pci is not None:
            attached.append(pci)
    for vgpu in db.get('VM', vm, 'VGPUs'):
        pgpu = db.get('VGPU', vgpu, 'scheduled_to_be_resident_on')
        db.set('VGPU', vgpu, resident_on=pgpu, currently_attached=True,
               scheduled_to_be_resident_on=NULL_REF,
               PCI=db.get('PGPU', pgpu, 'PCI')
               if _is_passthrough(db, vgpu) else NULL_REF)
        if _is_passthrough(db, vgpu):
            pci = db.get('PGPU', pgpu, 'PCI')
            devices.pci[pci].attached_vm = vm
            attached.append(pci)
    db.set('VM', vm, attached_PCIs=attached)


def domain_gone(pool, vm):
    """The domain is destroyed: its devices are free again."""
    db = pool.db
    devices = pool.devices
    if devices is None:
        return
    for state in devices.functions.values():
        if state.attached_vm == vm:
            state.attached_vm = NULL_REF
    if db.get('VM', vm, 'attached_PCIs'):
        db.set('VM', vm, attached_PCIs=[])
    for vgpu in db.get('VM', vm, 'VGPUs'):
        db.set('VGPU', vgpu, resident_on=NULL_REF, currently_attached=False,
               scheduled_to_be_resident_on=NULL_REF, PCI=NULL_REF)
