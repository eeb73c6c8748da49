"""Checks shared by the handlers: power states, operations in progress."""

import contextlib
import threading
import time

from xapisim import devices
from xapisim.db import new_ref
from xapisim.errors import XapiError
from xapisim.schema import NULL_REF

HALTED = 'Halted'
RUNNING = 'Running'
PAUSED = 'Paused'
SUSPENDED = 'Suspended'
ANY = (HALTED, RUNNING, PAUSED, SUSPENDED)

# The power states in which xapi allows each VM operation, in xapi's order
# (VM_BAD_POWER_STATE lists them in this order).
VM_OPERATION_STATES = {
    'start': (HALTED,), 'start_on': (HALTED,), 'provision': (HALTED,),
    'make_into_template': (HALTED,), 'changing_VCPUs': (HALTED,),
    'changing_static_range': (HALTED,), 'changing_memory_limits': (HALTED,),
    'changing_shadow_memory': (HALTED,),
    'unpause': (PAUSED,), 'resume': (SUSPENDED,), 'resume_on': (SUSPENDED,),
    'clean_shutdown': (RUNNING,), 'clean_reboot': (RUNNING,),
    'pause': (RUNNING,), 'suspend': (RUNNING,), 'pool_migrate': (RUNNING,),
    'send_sysrq': (RUNNING,), 'changing_VCPUs_live': (RUNNING,),
    'snapshot_with_quiesce': (RUNNING,), 'call_plugin': (RUNNING,),
    'hard_reboot': (PAUSED, RUNNING),
    'hard_shutdown': (PAUSED, SUSPENDED, RUNNING),
    'shutdown': (PAUSED, SUSPENDED, RUNNING),
    'checkpoint': (PAUSED, SUSPENDED, RUNNING),
    'destroy': (HALTED, SUSPENDED), 'export': (HALTED, SUSPENDED),
    'clone': (HALTED,), 'copy': (HALTED,),
    'changing_dynamic_range': (HALTED, RUNNING),
    'migrate_send': (HALTED, SUSPENDED, RUNNING),
    'changing_NVRAM': (HALTED,), 'create_vtpm': (HALTED,),
    'snapshot': ANY, 'power_state_reset': ANY, 'revert': ANY,
    'metadata_export': ANY,
}

# What xapi puts in VM.allowed_operations: those of these that pass the
# checks (xapi_vm_lifecycle.update_allowed_operations).
VM_CANDIDATE_OPERATIONS = (
    'snapshot', 'copy', 'clone', 'revert', 'checkpoint',
    'snapshot_with_quiesce', 'start', 'start_on', 'pause', 'unpause',
    'clean_shutdown', 'clean_reboot', 'hard_shutdown', 'hard_reboot',
    'suspend', 'resume', 'resume_on', 'export', 'destroy', 'provision',
    'changing_VCPUs_live', 'pool_migrate', 'migrate_send',
    'make_into_template', 'changing_static_range', 'changing_shadow_memory',
    'changing_dynamic_range')

# Operations a template may undergo.
TEMPLATE_OPERATIONS = ('clone', 'copy', 'export', 'provision', 'destroy',
                       'migrate_send', 'changing_VCPUs',
                       'changing_static_range', 'changing_memory_limits',
                       'changing_shadow_memory', 'changing_dynamic_range',
                       'metadata_export')
SNAPSHOT_OPERATIONS = ('revert', 'clone', 'copy', 'export', 'destroy',
                       'hard_shutdown', 'metadata_export')
# Operations a control domain may undergo.
CONTROL_DOMAIN_OPERATIONS = ('changing_dynamic_range', 'changing_static_range',
                             'changing_memory_limits', 'changing_VCPUs',
                             'metadata_export', 'start', 'start_on')
# Operations that may run beside others (xapi's is_allowed_concurrently).
_CONCURRENT_GROUPS = (('clone', 'copy', 'export'), ('snapshot', 'checkpoint'))

# Operation refs (of synchronous calls) that another operation cancelled.
_cancelled = set()
_cancelled_lock = threading.Lock()


def power_error(vm, allowed, actual):
    return XapiError('VM_BAD_POWER_STATE', vm,
                     ', '.join(s.lower() for s in allowed), actual.lower())


def assert_power(db, vm, allowed):
    actual = db.get('VM', vm, 'power_state')
    if actual not in allowed:
        raise power_error(vm, allowed, actual)


def allowed_states(row, op):
    states = VM_OPERATION_STATES.get(op, ANY)
    if row['is_control_domain'] and op in ('changing_VCPUs',
                                           'changing_static_range',
                                           'changing_memory_limits'):
        states = (HALTED, RUNNING)
    if op in ('clone', 'copy') and row['is_a_snapshot']:
        states = (HALTED, SUSPENDED)
    return states


def allowed_concurrently(op, current_ops):
    for group in _CONCURRENT_GROUPS:
        if op in group and all(o in group for o in current_ops):
            return True
    if op == 'hard_shutdown':
        return op not in current_ops
    if op == 'hard_reboot':
        return not any(o in ('hard_shutdown', 'hard_reboot')
                       for o in current_ops)
    return False


def has_pv_drivers(gm):
    """xapi's Xapi_pv_driver_version.has_pv_drivers: the guest agent
    reported a driver version with a numeric major and minor."""
    if gm is None:
        return False
    version = gm['PV_drivers_version']
    try:
        int(version['major'])
        int(version['minor'])
    except (KeyError, ValueError):
        return False
    return True


def guest_metrics_of(db, row):
    gm = row['guest_metrics']
    return db.table('VM_guest_metrics').get(gm) if gm != NULL_REF else None


def booted_hvm(db, row):
    """The running domain is HVM (VM_metrics), as xapi's has_booted_hvm."""
    metrics = db.table('VM_metrics').get(row['metrics'])
    if metrics is None:
        return bool(row['HVM_boot_policy'])
    return metrics['current_domain_type'] == 'hvm'


def _feature_error(db, row, vm, op, strict):
    """xapi_vm_lifecycle.check_op_for_feature: a running HVM guest without
    PV drivers can do only what its guest agent says it can.

    ``strict`` is true for allowed_operations and for the calls that
    need the guest's help (clean shutdown and reboot, suspend,
    migration); VM.pool_migrate and VM.migrate_send pass false when the
    caller forces them.
    """
    if row['power_state'] != RUNNING:
        return None
    metrics = db.table('VM_metrics').get(row['metrics'])
    if metrics is not None and not metrics['hvm']:
        return None          # it booted PV: PV guests support everything
    gm = guest_metrics_of(db, row)
    if has_pv_drivers(gm):
        return None          # full PV drivers imply every feature
    other = gm['other'] if gm is not None else {}

    def lacks(feature):
        return other.get(feature) != '1'
    if op == 'clean_shutdown':
        missing = strict and lacks('feature-shutdown') and \
            lacks('feature-poweroff')
    elif op == 'clean_reboot':
        missing = strict and lacks('feature-shutdown') and \
            lacks('feature-reboot')
    elif op == 'changing_VCPUs_live':
        missing = lacks('feature-vcpu-hotplug')
    elif op in ('suspend', 'checkpoint', 'pool_migrate', 'migrate_send'):
        missing = strict and lacks('feature-suspend')
    else:
        missing = False
    return XapiError('VM_LACKS_FEATURE', vm) if missing else None


# VM operations during which xapi refuses to plug or unplug its devices.
_DEVICE_BLOCKING_VM_OPERATIONS = ('clean_shutdown', 'hard_shutdown', 'suspend',
                                  'pause')


def assert_hotplug(db, cls, device, vm, op):
    """What xapi_vif_helpers / xapi_vbd_helpers add, for plug and unplug
    of a device of a running VM, to the power state and attachment checks:
    no shutdown, suspend or pause in progress, and an HVM guest must have
    the PV drivers that do hotplug (unless its agent says otherwise)."""
    row = db.row('VM', vm)
    if not (cls == 'VBD' and op == 'unplug_force'):
        for _, vm_op in row['current_operations'].items():
            if vm_op in _DEVICE_BLOCKING_VM_OPERATIONS:
                raise XapiError('OPERATION_NOT_ALLOWED',
                                'Current operation on VM:%s is %s'
                                % (vm, vm_op))
    if not booted_hvm(db, row):
        return
    gm = guest_metrics_of(db, row)
    claim = gm['can_use_hotplug_' + cls.lower()] if gm is not None else None
    if claim == 'no':
        raise XapiError('OPERATION_NOT_ALLOWED',
                        'VM states it does not support %s hotplug.' % cls)
    if claim != 'yes' and not (cls == 'VBD' and gm is not None and
                               gm['PV_drivers_detected']):
        if not has_pv_drivers(gm):
            raise XapiError('VM_MISSING_PV_DRIVERS', vm)
    if cls == 'VBD' and db.get('VBD', device, 'type') == 'CD':
        raise XapiError('OPERATION_NOT_ALLOWED', 'HVM CDROMs cannot be '
                        'hotplugged/unplugged, only inserted or ejected')


def vm_operation_error(row, vm, op, db=None, strict=True):
    """The error xapi gives for ``op`` on this VM now, or None."""
    if op in row['blocked_operations']:
        return XapiError('OPERATION_BLOCKED', vm,
                         row['blocked_operations'][op])
    states = allowed_states(row, op)
    if row['power_state'] not in states:
        return power_error(vm, states, row['power_state'])
    current = row['current_operations']
    if current and not allowed_concurrently(op, list(current.values())):
        op_ref, other = sorted(current.items())[0]
        return XapiError('OTHER_OPERATION_IN_PROGRESS', 'VM', vm, other,
                         op_ref)
    if row['is_a_template'] and not row['is_a_snapshot'] and \
            op not in TEMPLATE_OPERATIONS:
        return XapiError('VM_IS_TEMPLATE', vm, op)
    if row['is_a_snapshot'] and op not in SNAPSHOT_OPERATIONS:
        return XapiError('VM_IS_SNAPSHOT', vm, op)
    if op == 'provision' and not row['is_a_template']:
        return XapiError('PROVISION_ONLY_ALLOWED_ON_TEMPLATE')
    if op == 'revert' and not row['is_a_snapshot']:
        return XapiError('REVERT_ONLY_ALLOWED_ON_SNAPSHOT')
    if row['is_control_domain'] and op not in CONTROL_DOMAIN_OPERATIONS:
        return XapiError('OPERATION_NOT_ALLOWED',
                         'This operation is not allowed on a control domain')
    error = None if db is None else _feature_error(db, row, vm, op, strict)
    return error or devices.operation_error(db, row, vm, op)


def check_vm_operation(db, vm, op, strict=True):
    """xapi's order: blocked, power state, other operation, template,
    control domain, guest features."""
    error = vm_operation_error(db.row('VM', vm), vm, op, db, strict)
    if error is not None:
        raise error


def busy(db, cls, ref):
    current = db.get(cls, ref, 'current_operations')
    for op_ref, op in current.items():
        raise XapiError('OTHER_OPERATION_IN_PROGRESS', cls, ref, op, op_ref)


def vm_allowed_operations(row, vm='', db=None):
    ops = []
    for op in VM_CANDIDATE_OPERATIONS:
        if vm_operation_error(row, vm, op, db) is None:
            ops.insert(0, op)    # xapi folds the list: last candidate first
    return ops


def refresh_vm_allowed(db, vm):
    row = db.row('VM', vm)
    ops = vm_allowed_operations(row, vm, db)
    if ops != row['allowed_operations']:
        db.set('VM', vm, allowed_operations=ops)


@contextlib.contextmanager
def vm_operation(ctx, vm, op, strict=True):
    """Mark ``op`` in progress on ``vm`` for the duration of the block."""
    db = ctx.db
    with db.lock:
        check_vm_operation(db, vm, op, strict)
        op_ref = ctx.task or new_ref()
        current = dict(db.get('VM', vm, 'current_operations'))
        current[op_ref] = op
        db.set('VM', vm, current_operations=current)
        refresh_vm_allowed(db, vm)
    previous = getattr(ctx, 'op_ref', None)
    ctx.op_ref = op_ref
    try:
        yield
    finally:
        ctx.op_ref = previous
        with _cancelled_lock:
            _cancelled.discard(op_ref)
        with db.lock:
            if db.exists('VM', vm):
                current = dict(db.get('VM', vm, 'current_operations'))
                current.pop(op_ref, None)
                db.set('VM', vm, current_operations=current)
                refresh_vm_allowed(db, vm)


def cancel_vm_operations(ctx, vm, ops):
    """Cancel the operations ``ops`` in progress on ``vm`` (hard shutdown
    and hard reboot do this to a stuck clean shutdown, as xapi does)."""
    db = ctx.db
    with db.lock:
        current = dict(db.get('VM', vm, 'current_operations'))
    for op_ref, op in current.items():
        if op not in ops or op_ref == ctx.task:
            continue
        if db.exists('task', op_ref):
            try:
                ctx.pool.tasks.cancel(op_ref)
            except XapiError:
                pass
        else:
            with _cancelled_lock:
                _cancelled.add(op_ref)


@contextlib.contextmanager
def object_operation(ctx, cls, ref, op):
    """The same for VDIs, VBDs, VIFs, SRs: one operation at a time."""
    db = ctx.db
    with db.lock:
        busy(db, cls, ref)
        op_ref = ctx.task or new_ref()
        db.set(cls, ref, current_operations={op_ref: op})
    try:
        yield
    finally:
        with db.lock:
            if db.exists(cls, ref):
                db.set(cls, ref, current_operations={})


def forget_cancellations():
    """A xapi restart: no operation is in progress any more."""
    with _cancelled_lock:
        _cancelled.clear()


def check_cancelled(ctx):
    ctx.check_cancelled()
    op_ref = getattr(ctx, 'op_ref', None)
    if op_ref is not None:
        with _cancelled_lock:
            cancelled = op_ref in _cancelled
        if cancelled:
            raise XapiError('TASK_CANCELLED', ctx.task or op_ref)


def pause(ctx, seconds):
    """Let simulated time pass, honouring task.cancel."""
    deadline = time.time() + seconds
    while True:
        check_cancelled(ctx)
        left = deadline - time.time()
        if left <= 0:
            return
        time.sleep(min(left, 0.05))
