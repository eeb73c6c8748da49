"""Host memory accounting: what a VM needs, what a host has free.

Used by the handlers (placement, migration), the domains (guest) and the
metrics (rrd); it depends on nothing of theirs.
"""

import time

from xapisim.errors import XapiError
from xapisim.inventory import DOM0_MEMORY

MIB = 1024 ** 2


def vm_overhead(row):
    """Memory xapi reserves beside a guest's RAM (page tables, device model)."""
    mib = row['memory_static_max'] // MIB
    return (mib // 128 + row['VCPUs_max'] + 1) * MIB


def vm_footprint(row):
    return row['memory_dynamic_max'] + vm_overhead(row)


def free_memory(db, host):
    """What xapi's host.compute_free_memory answers: the host's memory
    less dom0, the VMs resident on it and those scheduled to be (being
    started, resumed or moved there)."""
    total = db.get('host_metrics', db.get('host', host, 'metrics'),
                   'memory_total')
    used = DOM0_MEMORY
    for vm in db.get('host', host, 'resident_VMs'):
        row = db.row('VM', vm)
        if row['is_control_domain']:
            continue
        used += vm_footprint(row)
    for vm in db.find('VM', scheduled_to_be_resident_on=host):
        if db.get('VM', vm, 'resident_on') != host:
            used += vm_footprint(db.row('VM', vm))
    return total - used


def refresh_metrics(db, host):
    metrics = db.get('host', host, 'metrics')
    db.set('host_metrics', metrics, memory_free=free_memory(db, host),
           last_updated=time.strftime('%Y%m%dT%H:%M:%SZ', time.gmtime()))


def assert_memory(db, host, vm):
    needed = vm_footprint(db.row('VM', vm))
    available = free_memory(db, host)
    if needed > available:
        raise XapiError('HOST_NOT_ENOUGH_FREE_MEMORY', needed, available)
