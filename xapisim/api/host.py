"""host and pool messages: memory, plugins, enable/disable, master.

host.evacuate and the checks before it live with the other moves of
VMs, in ``xapisim.api.migration``.
"""

import threading
import time

from xapisim import plugins, rrd
from xapisim.api.memory import free_memory
from xapisim.errors import XapiError
from xapisim.rpc import handler


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
    if not ctx.db.get('host_metrics', ctx.db.get('host', host, 'metrics'),
                      'live'):
        raise XapiError('HOST_OFFLINE', host)
    return plugins.call(ctx.pool, target, ctx.session, plugin, fn, args)


@handler('host', 'disable')
def host_disable(ctx, host):
    ctx.db.set('host', host, enabled=False)


@handler('host', 'enable')
def host_enable(ctx, host):
    ctx.db.set('host', host, enabled=True)


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
    return [{'name_label': name, 'name_description': name, 'enabled': True,
             'standard': True, 'units': units, 'min': 0.0, 'max': 1.0,
             'value': value}
            for name, units, value in rrd.host_sources(ctx.pool, host)]


@handler('host', 'query_data_source')
def host_query_data_source(ctx, host, data_source):
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
