"""host and pool messages: memory, plugins, enable/disable, master."""

import threading
import time

from xapisim import plugins
from xapisim.errors import XapiError
from xapisim.inventory import DOM0_MEMORY
from xapisim.rpc import handler
from xapisim.schema import NULL_REF

MIB = 1024 ** 2


def vm_overhead(row):
    """Memory xapi reserves beside a guest's RAM (page tables, device model)."""
    mib = row['memory_static_max'] // MIB
    return (mib // 128 + row['VCPUs_max'] + 1) * MIB


def vm_footprint(row):
    return row['memory_dynamic_max'] + vm_overhead(row)


def free_memory(db, host):
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


@handler('host', 'compute_free_memory')
def compute_free_memory(ctx, host):
    return free_memory(ctx.db, host)


@handler('host', 'compute_memory_overhead')
def compute_memory_overhead(ctx, host):
    return ctx.db.get('host', host, 'memory_overhead')


@handler('host', 'get_servertime')
def get_servertime(ctx, host):
    return time.strftime('%Y%m%dT%H:%M:%SZ', time.gmtime())


@handler('host', 'get_server_localtime')
def get_server_localtime(ctx, host):
    return time.strftime('%Y%m%dT%H:%M:%S', time.localtime())


@handler('host', 'call_plugin')
def call_plugin(ctx, host, plugin, fn, args):
    target = ctx.pool.host_by_ref(host)
    if target is None:
        # xapi looks the host up to forward the call: a DB miss
        raise XapiError('HANDLE_INVALID', 'host', host)
    return plugins.call(ctx.pool, target, ctx.session, plugin, fn, args)


@handler('host', 'disable')
def host_disable(ctx, host):
    ctx.db.set('host', host, enabled=False)


@handler('host', 'enable')
def host_enable(ctx, host):
    ctx.db.set('host', host, enabled=True)


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
    # imported here: both modules need each other
    from xapisim.api.migration import move_running_vm
    from xapisim.api.vm import pick_host
    db = ctx.db
    assert_can_evacuate(ctx, host)
    for vm in list(db.get('host', host, 'resident_VMs')):
        if db.get('VM', vm, 'is_control_domain'):
            continue
        move_running_vm(ctx, vm, pick_host(ctx, vm, exclude=host))


@handler('host', 'dmesg')
def host_dmesg(ctx, host):
    return '[    0.000000] Linux version 4.19.0+1 (xapisim)\n'


@handler('host', 'get_log')
def host_get_log(ctx, host):
    return ''


@handler('host', 'list_methods')
def host_list_methods(ctx):
    return sorted('%s.%s' % (c, m) for c, cls in ctx.pool.schema.classes.items()
                  for m in cls.messages)


@handler('host', 'get_data_sources')
def host_get_data_sources(ctx, host):
    from xapisim import rrd   # rrd reads this module's memory figures
    return [{'name_label': name, 'name_description': name, 'enabled': True,
             'standard': True, 'units': units, 'min': 0.0, 'max': 1.0,
             'value': value}
            for name, units, value in rrd.host_sources(ctx.pool, host)]


@handler('host', 'query_data_source')
def host_query_data_source(ctx, host, data_source):
    from xapisim import rrd
    for name, units, value in rrd.host_sources(ctx.pool, host):
        if name == data_source:
            return value
    raise XapiError('INTERNAL_ERROR', 'unknown data source %s' % data_source)


# ---------------------------------------------------------------- pool


@handler('pool', 'designate_new_master')
def designate_new_master(ctx, host):
    target = ctx.pool.host_by_ref(host)
    if target is ctx.pool.master:
        return
    # the switch happens after the reply, as xapi restarts itself
    threading.Timer(0.2, ctx.pool.move_master, args=(target,)).start()
