"""Checks shared by the handlers: power states, operations in progress."""

import contextlib
import time

from xapisim.db import new_ref
from xapisim.errors import XapiError

HALTED = 'Halted'
RUNNING = 'Running'
PAUSED = 'Paused'
SUSPENDED = 'Suspended'
ANY = (HALTED, RUNNING, PAUSED, SUSPENDED)

# The power states in which xapi allows each VM operation.
VM_OPERATION_STATES = {
    'start': (HALTED,), 'start_on': (HALTED,), 'provision': (HALTED,),
    'make_into_template': (HALTED,), 'changing_VCPUs': (HALTED,),
    'changing_static_range': (HALTED,), 'changing_memory_limits': (HALTED,),
    'changing_shadow_memory': (HALTED,),
    'unpause': (PAUSED,), 'resume': (SUSPENDED,), 'resume_on': (SUSPENDED,),
    'clean_shutdown': (RUNNING,), 'clean_reboot': (RUNNING,),
    'pause': (RUNNING,), 'suspend': (RUNNING,), 'pool_migrate': (RUNNING,),
    'send_sysrq': (RUNNING,), 'changing_VCPUs_live': (RUNNING,),
    'hard_reboot': (PAUSED, RUNNING),
    'hard_shutdown': (PAUSED, SUSPENDED, RUNNING),
    'checkpoint': (PAUSED, SUSPENDED, RUNNING),
    'destroy': (HALTED, SUSPENDED), 'export': (HALTED, SUSPENDED),
    'clone': (HALTED,), 'copy': (HALTED,),
    'changing_dynamic_range': (HALTED, RUNNING),
    'migrate_send': (HALTED, SUSPENDED, RUNNING),
    'snapshot': ANY, 'power_state_reset': ANY, 'revert': ANY,
    'metadata_export': ANY,
}

# Operations a template may undergo.
TEMPLATE_OPERATIONS = ('clone', 'copy', 'export', 'provision', 'destroy',
                       'changing_VCPUs', 'changing_static_range',
                       'changing_memory_limits', 'changing_dynamic_range',
                       'metadata_export')


def power_error(vm, allowed, actual):
    return XapiError('VM_BAD_POWER_STATE', vm,
                     ', '.join(s.lower() for s in allowed), actual.lower())


def assert_power(db, vm, allowed):
    actual = db.get('VM', vm, 'power_state')
    if actual not in allowed:
        raise power_error(vm, allowed, actual)


def check_vm_operation(db, vm, op):
    """xapi's order: blocked, power state, other operation, template."""
    row = db.row('VM', vm)
    if op in row['blocked_operations']:
        raise XapiError('OPERATION_BLOCKED', vm, row['blocked_operations'][op])
    allowed = VM_OPERATION_STATES.get(op, ANY)
    if row['power_state'] not in allowed:
        raise power_error(vm, allowed, row['power_state'])
    busy(db, 'VM', vm)
    if row['is_a_template'] and op not in TEMPLATE_OPERATIONS:
        raise XapiError('VM_IS_TEMPLATE', vm, op)


def busy(db, cls, ref):
    current = db.get(cls, ref, 'current_operations')
    for op_ref, op in current.items():
        raise XapiError('OTHER_OPERATION_IN_PROGRESS', cls, ref, op, op_ref)


def vm_allowed_operations(row):
    if row['current_operations']:
        return []
    ops = []
    for op, states in sorted(VM_OPERATION_STATES.items()):
        if row['power_state'] not in states:
            continue
        if row['is_a_template'] and op not in TEMPLATE_OPERATIONS:
            continue
        if row['is_control_domain'] and op not in ('snapshot',):
            continue
        ops.append(op)
    return ops


def refresh_vm_allowed(db, vm):
    row = db.row('VM', vm)
    ops = vm_allowed_operations(row)
    if ops != row['allowed_operations']:
        db.set('VM', vm, allowed_operations=ops)


@contextlib.contextmanager
def vm_operation(ctx, vm, op):
    """Mark ``op`` in progress on ``vm`` for the duration of the block."""
    db = ctx.db
    with db.lock:
        check_vm_operation(db, vm, op)
        op_ref = ctx.task or new_ref()
        db.set('VM', vm, current_operations={op_ref: op},
               allowed_operations=[])
    try:
        yield
    finally:
        with db.lock:
            if db.exists('VM', vm):
                db.set('VM', vm, current_operations={})
                refresh_vm_allowed(db, vm)


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


def pause(ctx, seconds):
    """Let simulated time pass, honouring task.cancel."""
    deadline = time.time() + seconds
    while True:
        ctx.check_cancelled()
        left = deadline - time.time()
        if left <= 0:
            return
        time.sleep(min(left, 0.05))
