"""VM messages: create/destroy, the power lifecycle, clone and snapshot."""

from xapisim import guest
from xapisim.api import common
from xapisim.api import devices
from xapisim.api import memory
from xapisim.api.common import HALTED, PAUSED, RUNNING, SUSPENDED
from xapisim.api.implicit import constructor_values
from xapisim.api import firmware
from xapisim.api.network import VIF_DEVICE_LIMIT, vif_device_number
from xapisim.api.storage import new_vdi
from xapisim.api.vbd import assert_vdi_attachable, used_vbd_devices
from xapisim.db import new_uuid, now_datetime
from xapisim.errors import XapiError
from xapisim.rpc import handler
from xapisim.schema import NULL_REF

# How long a clean shutdown waits for a guest that ignores it.
CLEAN_SHUTDOWN_TIMEOUT = 1200.0


def _check_memory_constraints(values):
    smin = values.get('memory_static_min', 0)
    dmin = values.get('memory_dynamic_min', 0)
    dmax = values.get('memory_dynamic_max', 0)
    smax = values.get('memory_static_max', 0)
    if not smin <= dmin <= dmax <= smax:
        raise XapiError('MEMORY_CONSTRAINT_VIOLATION',
                        'Memory limits must satisfy: static_min <= '
                        'dynamic_min <= dynamic_max <= static_max')


def _check_vcpus(vm, at_startup, maximum):
    if maximum < 1 or at_startup < 1:
        raise XapiError('VM_NO_VCPUS', vm)
    if at_startup > maximum:
        raise XapiError('INVALID_VALUE', 'VCPU values must satisfy: 0 < '
                        'VCPUs_at_startup <= VCPUs_max', at_startup)


@handler('VM', 'create')
def vm_create(ctx, args):
    db = ctx.db
    values = constructor_values(ctx, 'VM', args)
    _check_memory_constraints(values)
    _check_vcpus('', values['VCPUs_at_startup'], values['VCPUs_max'])
    state = values.get('power_state', HALTED)
    if state not in (HALTED, SUSPENDED) or \
            (state == SUSPENDED and values.get('suspend_VDI', NULL_REF)
             == NULL_REF):
        raise XapiError('VM_BAD_POWER_STATE', '', 'halted', state.lower())
    other = dict(values.get('other_config', {}))
    other.setdefault('mac_seed', new_uuid())
    values['other_config'] = other
    with db.lock:
        values['metrics'] = db.create('VM_metrics', {
            'memory_actual': 0, 'VCPUs_number': 0, 'install_time':
            now_datetime(), 'state': [], 'other_config': {}})
        values.update(domid=-1, resident_on=NULL_REF,
                      memory_target=values.get('memory_dynamic_max', 0))
        vm = db.create('VM', values)
        common.refresh_vm_allowed(db, vm)
        return vm


@handler('VM', 'destroy')
def vm_destroy(ctx, vm):
    db = ctx.db
    with db.lock:
        if db.get('VM', vm, 'is_control_domain'):
            raise XapiError('OPERATION_NOT_ALLOWED',
                            'Cannot destroy the control domain')
        common.check_vm_operation(db, vm, 'destroy')
        remove_vm(ctx, vm)


def remove_vm(ctx, vm):
    """The VM's record goes, with its devices and metrics (its disks
    stay)."""
    db = ctx.db
    with db.lock:
        row = db.row('VM', vm)
        for vtpm in list(row['VTPMs']):
            firmware.forget_vtpm(ctx.pool, vtpm)
        for cls, field in (('VBD', 'VBDs'), ('VIF', 'VIFs'),
                           ('console', 'consoles'), ('VGPU', 'VGPUs')):
            for ref in list(row[field]):
                if cls in ('VBD', 'VIF'):
                    metrics = db.get(cls, ref, 'metrics')
                    if db.exists(cls + '_metrics', metrics):
                        db.destroy(cls + '_metrics', metrics)
                db.destroy(cls, ref)
        for cls, field in (('VM_metrics', 'metrics'),
                           ('VM_guest_metrics', 'guest_metrics')):
            if row[field] != NULL_REF and db.exists(cls, row[field]):
                db.destroy(cls, row[field])
        db.destroy('VM', vm)
    ctx.pool.guest.pop(row['uuid'], None)


# ---------------------------------------------------------------- placement


def assert_can_boot_here(ctx, vm, host, sr_check=True, memory_check=True):
    """xapi's checks in its order: the host is enabled, sees the VM's
    SRs (unless ``sr_check`` is false, as for a storage migration) and
    networks, and has the memory."""
    db = ctx.db
    if not db.get('host_metrics', db.get('host', host, 'metrics'), 'live'):
        raise XapiError('HOST_OFFLINE', host)
    if not db.get('host', host, 'enabled'):
        raise XapiError('HOST_DISABLED', host)
    seen = ctx.pool.storage
    for vbd in db.get('VM', vm, 'VBDs') if sr_check else ():
        vdi = db.get('VBD', vbd, 'VDI')
        if db.get('VBD', vbd, 'empty') or vdi == NULL_REF:
            continue
        sr = db.get('VDI', vdi, 'SR')
        if host not in seen.hosts_seeing(sr):
            raise XapiError('VM_REQUIRES_SR', vm, sr)
    for vif in db.get('VM', vm, 'VIFs'):
        network = db.get('VIF', vif, 'network')
        pifs = db.get('network', network, 'PIFs')
        if pifs and not any(db.get('PIF', p, 'host') == host for p in pifs):
            raise XapiError('VM_REQUIRES_NETWORK', vm, network)
    devices.assert_gpus_available(ctx, vm, host)
    if memory_check:
        memory.assert_memory(db, host, vm)


def pick_host(ctx, vm, exclude=None):
    """Where xapi would start (or move) ``vm``: its affinity first."""
    db = ctx.db
    hosts = [h.ref for h in ctx.pool.hosts if h.ref != exclude]
    affinity = db.get('VM', vm, 'affinity')
    if affinity in hosts:
        hosts.remove(affinity)
        hosts.insert(0, affinity)
    first_error = None
    for host in hosts:
        try:
            assert_can_boot_here(ctx, vm, host)
            return host
        except XapiError as exc:
            first_error = first_error or exc
    if first_error is not None and first_error.code in (
            'HOST_NOT_ENOUGH_FREE_MEMORY', 'VM_REQUIRES_SR',
            'VM_REQUIRES_NETWORK', 'VM_REQUIRES_VGPU', 'VM_REQUIRES_GPU'):
        raise first_error
    raise XapiError('NO_HOSTS_AVAILABLE')


@handler('VM', 'assert_can_boot_here')
def vm_assert_can_boot_here(ctx, vm, host):
    assert_can_boot_here(ctx, vm, host)


@handler('VM', 'get_possible_hosts')
def vm_get_possible_hosts(ctx, vm):
    found = []
    for h in ctx.pool.hosts:
        try:
            assert_can_boot_here(ctx, vm, h.ref)
            found.append(h.ref)
        except XapiError:
            pass
    return found


# ---------------------------------------------------------------- power


def _start(ctx, vm, host, paused, op):
    db = ctx.db
    with common.vm_operation(ctx, vm, op):
        with db.lock:
            if host is None:
                host = pick_host(ctx, vm)
            else:
                assert_can_boot_here(ctx, vm, host)
            _check_vcpus(vm, db.get('VM', vm, 'VCPUs_at_startup'),
                         db.get('VM', vm, 'VCPUs_max'))
            for vbd in db.get('VM', vm, 'VBDs'):
                assert_vdi_attachable(db, vbd)
            firmware.prepare_start(ctx, vm)
            devices.reserve_at_start(ctx, vm, host)
            # reserve the memory while the domain is being built
            db.set('VM', vm, scheduled_to_be_resident_on=host)
        try:
            guest.attach_networks(ctx.pool, vm, host)
            common.pause(ctx, ctx.pool.options.guest_delay)
        except XapiError:
            db.set('VM', vm, scheduled_to_be_resident_on=NULL_REF)
            devices.release_reservation(db, vm)
            raise
        guest.create_domain(ctx.pool, vm, host, paused)
        firmware.first_boot(ctx.pool, vm, host)
        db.set('VM', vm, last_booted_record='', last_boot_CPU_flags={
            'vendor': 'GenuineIntel',
            'features': db.get('host', host, 'cpu_info').get('features_hvm',
                                                             '')})


@handler('VM', 'start')
def vm_start(ctx, vm, start_paused, force):
    _start(ctx, vm, None, start_paused, 'start')


@handler('VM', 'start_on')
def vm_start_on(ctx, vm, host, start_paused, force):
    _start(ctx, vm, host, start_paused, 'start_on')


def _guest_shutdown(ctx, vm):
    """Ask the guest to shut down; a guest that ignores it times out."""
    mode = guest.behaviour(ctx.pool, vm)['clean_shutdown']
    if mode == 'ignore':
        common.pause(ctx, CLEAN_SHUTDOWN_TIMEOUT)
        raise XapiError('VM_SHUTDOWN_TIMEOUT', vm, CLEAN_SHUTDOWN_TIMEOUT)
    if mode == 'refuse':
        raise XapiError('VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT', vm)
    common.pause(ctx, ctx.pool.options.guest_delay)


@handler('VM', 'clean_shutdown')
def vm_clean_shutdown(ctx, vm):
    with common.vm_operation(ctx, vm, 'clean_shutdown'):
        _guest_shutdown(ctx, vm)
        guest.destroy_domain(ctx.pool, vm)


# What a hard shutdown or reboot cancels, as xapi's message forwarding does.
_HARD_CANCELS = ('clean_shutdown', 'clean_reboot', 'pool_migrate',
                 'call_plugin', 'suspend')


@handler('VM', 'hard_shutdown')
def vm_hard_shutdown(ctx, vm):
    with common.vm_operation(ctx, vm, 'hard_shutdown'):
        common.cancel_vm_operations(ctx, vm, _HARD_CANCELS + ('hard_reboot',))
        suspend_vdi = ctx.db.get('VM', vm, 'suspend_VDI')
        guest.destroy_domain(ctx.pool, vm)
        _drop_suspend_image(ctx, vm, suspend_vdi)


@handler('VM', 'shutdown')
def vm_shutdown(ctx, vm):
    db = ctx.db
    if db.get('VM', vm, 'power_state') == RUNNING:
        try:
            return vm_clean_shutdown(ctx, vm)
        except XapiError as exc:
            if exc.code not in ('VM_SHUTDOWN_TIMEOUT',
                                'VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT',
                                'VM_LACKS_FEATURE'):
                raise
    vm_hard_shutdown(ctx, vm)


@handler('VM', 'clean_reboot')
def vm_clean_reboot(ctx, vm):
    with common.vm_operation(ctx, vm, 'clean_reboot'):
        _guest_shutdown(ctx, vm)
        guest.reboot_domain(ctx.pool, vm)


@handler('VM', 'hard_reboot')
def vm_hard_reboot(ctx, vm):
    with common.vm_operation(ctx, vm, 'hard_reboot'):
        common.cancel_vm_operations(ctx, vm, _HARD_CANCELS)
        common.pause(ctx, ctx.pool.options.guest_delay)
        guest.reboot_domain(ctx.pool, vm)


@handler('VM', 'pause')
def vm_pause(ctx, vm):
    with common.vm_operation(ctx, vm, 'pause'):
        guest.pause_domain(ctx.pool, vm)
        ctx.db.set('VM', vm, power_state=PAUSED)
        _metrics_state(ctx, vm, 'paused')


@handler('VM', 'unpause')
def vm_unpause(ctx, vm):
    with common.vm_operation(ctx, vm, 'unpause'):
        guest.unpause_domain(ctx.pool, vm)
        ctx.db.set('VM', vm, power_state=RUNNING)
        _metrics_state(ctx, vm, 'running')


def _metrics_state(ctx, vm, state):
    metrics = ctx.db.get('VM', vm, 'metrics')
    if ctx.db.exists('VM_metrics', metrics):
        ctx.db.set('VM_metrics', metrics, state=[state])


def _suspend_sr(ctx, vm):
    db = ctx.db
    sr = db.get('VM', vm, 'suspend_SR')
    if sr == NULL_REF or not db.exists('SR', sr):
        sr = db.get('pool', ctx.pool.ref, 'suspend_image_SR')
    if sr == NULL_REF:
        raise XapiError('VM_NO_SUSPEND_SR', vm)
    return sr


@handler('VM', 'suspend')
def vm_suspend(ctx, vm):
    db = ctx.db
    with common.vm_operation(ctx, vm, 'suspend'):
        row = db.row('VM', vm)
        image = new_vdi(ctx, _suspend_sr(ctx, vm), row['memory_static_max'],
                        {'name_label': 'Suspend image',
                         'name_description': 'Suspend image of %s'
                         % row['name_label'],
                         'type': 'suspend',
                         'other_config': {'xapisim_suspend_of': row['uuid']}})
        common.pause(ctx, ctx.pool.options.guest_delay)
        guest.destroy_domain(ctx.pool, vm, power_state=SUSPENDED)
        db.set('VM', vm, suspend_VDI=image)


def _resume(ctx, vm, host, paused, op):
    db = ctx.db
    with common.vm_operation(ctx, vm, op):
        with db.lock:
            host = host or pick_host(ctx, vm)
            assert_can_boot_here(ctx, vm, host)
        image = db.get('VM', vm, 'suspend_VDI')
        guest.attach_networks(ctx.pool, vm, host)
        common.pause(ctx, ctx.pool.options.guest_delay)
        guest.create_domain(ctx.pool, vm, host, paused)
        _drop_suspend_image(ctx, vm, image)


def _drop_suspend_image(ctx, vm, image):
    db = ctx.db
    with db.lock:
        if image != NULL_REF and db.exists('VDI', image):
            sr = db.get('VDI', image, 'SR')
            ctx.pool.storage.remove_file(image)
            db.destroy('VDI', image)
            ctx.pool.storage.update_usage(sr)
        if db.exists('VM', vm):
            db.set('VM', vm, suspend_VDI=NULL_REF)


@handler('VM', 'resume')
def vm_resume(ctx, vm, start_paused, force):
    _resume(ctx, vm, None, start_paused, 'resume')


@handler('VM', 'resume_on')
def vm_resume_on(ctx, vm, host, start_paused, force):
    _resume(ctx, vm, host, start_paused, 'resume_on')


@handler('VM', 'power_state_reset')
def vm_power_state_reset(ctx, vm):
    db = ctx.db
    if db.get('VM', vm, 'is_control_domain'):
        raise XapiError('CANNOT_RESET_CONTROL_DOMAIN', vm)
    with db.lock:
        row = db.row('VM', vm)
        if row['power_state'] in (RUNNING, PAUSED):
            # xapi refuses while the domain exists or its host is alive
            host = row['resident_on']
            if host == ctx.host.ref:
                raise XapiError('DOMAIN_EXISTS', vm)
            if db.exists('host', host) and db.get(
                    'host_metrics', db.get('host', host, 'metrics'), 'live'):
                raise XapiError('HOST_IS_LIVE', host)
        guest.destroy_domain(ctx.pool, vm)
        db.set('VM', vm, current_operations={})
        common.refresh_vm_allowed(db, vm)


# ---------------------------------------------------------------- settings


def _set_memory(ctx, vm, **limits):
    db = ctx.db
    with db.lock:
        row = db.row('VM', vm)
        values = {k: row[k] for k in ('memory_static_min',
                                      'memory_dynamic_min',
                                      'memory_dynamic_max',
                                      'memory_static_max')}
        values.update(limits)
        static_changed = any(k.startswith('memory_static') for k in limits)
        if static_changed or row['power_state'] not in (HALTED, RUNNING):
            common.assert_power(db, vm, (HALTED,))
        _check_memory_constraints(values)
        db.set('VM', vm, **values)


@handler('VM', 'set_memory_limits')
def vm_set_memory_limits(ctx, vm, static_min, static_max, dynamic_min,
                         dynamic_max):
    _set_memory(ctx, vm, memory_static_min=static_min,
                memory_static_max=static_max, memory_dynamic_min=dynamic_min,
                memory_dynamic_max=dynamic_max)


@handler('VM', 'set_memory')
def vm_set_memory(ctx, vm, value):
    _set_memory(ctx, vm, memory_static_max=value, memory_dynamic_min=value,
                memory_dynamic_max=value)


@handler('VM', 'set_memory_static_range')
def vm_set_memory_static_range(ctx, vm, min_, max_):
    _set_memory(ctx, vm, memory_static_min=min_, memory_static_max=max_)


@handler('VM', 'set_memory_dynamic_range')
def vm_set_memory_dynamic_range(ctx, vm, min_, max_):
    _set_memory(ctx, vm, memory_dynamic_min=min_, memory_dynamic_max=max_)


for _field in ('static_min', 'static_max', 'dynamic_min', 'dynamic_max'):
    def _make(field):
        def set_one(ctx, vm, value):
            _set_memory(ctx, vm, **{'memory_' + field: value})
        return set_one
    handler('VM', 'set_memory_' + _field)(_make(_field))


@handler('VM', 'set_VCPUs_max')
def vm_set_vcpus_max(ctx, vm, value):
    db = ctx.db
    with db.lock:
        common.assert_power(db, vm, (HALTED,))
        _check_vcpus(vm, db.get('VM', vm, 'VCPUs_at_startup'), value)
        db.set('VM', vm, VCPUs_max=value)


@handler('VM', 'set_VCPUs_at_startup')
def vm_set_vcpus_at_startup(ctx, vm, value):
    db = ctx.db
    with db.lock:
        common.assert_power(db, vm, (HALTED,))
        _check_vcpus(vm, value, db.get('VM', vm, 'VCPUs_max'))
        db.set('VM', vm, VCPUs_at_startup=value)


@handler('VM', 'set_VCPUs_number_live')
def vm_set_vcpus_number_live(ctx, vm, nvcpu):
    db = ctx.db
    with db.lock:
        # xapi marks it changing_VCPUs_live: a running HVM guest without
        # PV drivers needs feature-vcpu-hotplug
        common.check_vm_operation(db, vm, 'changing_VCPUs_live')
        _check_vcpus(vm, nvcpu, db.get('VM', vm, 'VCPUs_max'))
        db.set('VM_metrics', db.get('VM', vm, 'metrics'), VCPUs_number=nvcpu)


def _simple_setter(field, states=None):
    def set_field(ctx, vm, value):
        db = ctx.db
        with db.lock:
            if states:
                common.assert_power(db, vm, states)
            db.set('VM', vm, **{field: value})
    return set_field


for _field, _states in (('HVM_boot_policy', (HALTED,)),
                        ('actions_after_crash', None),
                        ('domain_type', (HALTED,)),
                        ('HVM_shadow_multiplier', (HALTED,)),
                        ('has_vendor_device', (HALTED,)),
                        ('suspend_VDI', None), ('order', None),
                        ('start_delay', None), ('shutdown_delay', None),
                        ('ha_always_run', None), ('ha_restart_priority', None),
                        ('appliance', None), ('protection_policy', None),
                        ('snapshot_schedule', None),
                        ('bios_strings', (HALTED,))):
    handler('VM', 'set_' + _field)(_simple_setter(_field, _states))


@handler('VM', 'get_allowed_VBD_devices')
def vm_get_allowed_vbd_devices(ctx, vm):
    used = used_vbd_devices(ctx.db, vm)
    return [str(n) for n in range(16) if n not in used]


@handler('VM', 'get_allowed_VIF_devices')
def vm_get_allowed_vif_devices(ctx, vm):
    used = set()
    for vif in ctx.db.get('VM', vm, 'VIFs'):
        n = vif_device_number(ctx.db.get('VIF', vif, 'device'))
        if n is not None:
            used.add(n)
    return [str(n) for n in range(VIF_DEVICE_LIMIT) if n not in used]


@handler('VM', 'compute_memory_overhead')
def vm_compute_memory_overhead(ctx, vm):
    return memory.vm_overhead(ctx.db.row('VM', vm))


@handler('VM', 'get_boot_record')
def vm_get_boot_record(ctx, vm):
    return ctx.db.record('VM', vm)


@handler('VM', 'update_allowed_operations')
def vm_update_allowed_operations(ctx, vm):
    common.refresh_vm_allowed(ctx.db, vm)


@handler('VM', 'assert_operation_valid')
def vm_assert_operation_valid(ctx, vm, op):
    common.check_vm_operation(ctx.db, vm, op)


@handler('VM', 'get_cooperative')
def vm_get_cooperative(ctx, vm):
    return True


@handler('VM', 'provision')
def vm_provision(ctx, vm):
    with common.vm_operation(ctx, vm, 'provision'):
        pass
