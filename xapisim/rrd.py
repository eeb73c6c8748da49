"""Round-robin metrics: /rrd_updates, /vm_rrd and /host_rrd.

The values are synthetic but behave like real ones: CPU fractions wander
between 0 and 1, byte rates change over time, memory figures follow the
VM's and host's records.  Each data source is a smooth function of time
and the object's uuid, so two reads a few seconds apart differ and two
readers at the same instant agree.
"""

import hashlib
import json
import math
import time

from xapisim.api.memory import free_memory

STEP = 5
ROWS = 120
CFS = ('AVERAGE', 'MIN', 'MAX', 'LAST')


def _phase(*parts):
    digest = hashlib.md5(':'.join(parts).encode()).digest()
    return digest[0] / 255.0 * 2 * math.pi


def _wave(t, key, low, high, period=60.0):
    x = math.sin(t / period * 2 * math.pi + _phase(key))
    return low + (high - low) * (x + 1) / 2


def vm_sources(pool, vm, t):
    """[(name, units, value)] for a running VM at time ``t``."""
    db = pool.db
    row = db.row('VM', vm)
    uuid = row['uuid']
    metrics = db.row('VM_metrics', row['metrics'])
    out = []
    for n in range(max(metrics['VCPUs_number'], 1)):
        out.append(('cpu%d' % n, '(fraction)',
                    _wave(t, uuid + 'cpu%d' % n, 0.01, 0.35)))
    memory = metrics['memory_actual'] or row['memory_dynamic_max']
    out.append(('memory', 'B', float(memory)))
    out.append(('memory_target', 'B', float(row['memory_target'] or memory)))
    out.append(('memory_internal_free', 'KiB',
                _wave(t, uuid + 'free', 0.3, 0.6) * memory / 1024))
    for vbd in row['VBDs']:
        vrow = db.row('VBD', vbd)
        if not vrow['currently_attached']:
            continue
        dev = vrow['device'] or 'xvd' + chr(ord('a') + int(vrow['userdevice']))
        out.append(('vbd_%s_read' % dev, 'B/s',
                    _wave(t, uuid + dev + 'r', 0, 4e6)))
        out.append(('vbd_%s_write' % dev, 'B/s',
                    _wave(t, uuid + dev + 'w', 0, 2e6)))
    for vif in row['VIFs']:
        vrow = db.row('VIF', vif)
        if not vrow['currently_attached']:
            continue
        dev = vrow['device']
        out.append(('vif_%s_rx' % dev, 'B/s',
                    _wave(t, uuid + dev + 'rx', 100, 2e5)))
        out.append(('vif_%s_tx' % dev, 'B/s',
                    _wave(t, uuid + dev + 'tx', 100, 1e5)))
    return out


def host_sources(pool, host, t=None):
    t = time.time() if t is None else t
    db = pool.db
    row = db.row('host', host)
    metrics = db.row('host_metrics', row['metrics'])
    out = []
    cpus = [_wave(t, row['uuid'] + 'cpu%d' % n, 0.02, 0.5)
            for n in range(len(row['host_CPUs']))]
    for n, value in enumerate(cpus):
        out.append(('cpu%d' % n, '(fraction)', value))
    out.append(('cpu_avg', '(fraction)', sum(cpus) / max(len(cpus), 1)))
    out.append(('memory_total_kib', 'KiB', metrics['memory_total'] / 1024.0))
    out.append(('memory_free_kib', 'KiB', free_memory(db, host) / 1024.0))
    out.append(('loadavg', '(fraction)', _wave(t, row['uuid'] + 'load', 0, 1)))
    for pif in row['PIFs']:
        dev = db.get('PIF', pif, 'device')
        out.append(('pif_%s_rx' % dev, 'B/s',
                    _wave(t, row['uuid'] + dev + 'rx', 1e3, 5e6)))
        out.append(('pif_%s_tx' % dev, 'B/s',
                    _wave(t, row['uuid'] + dev + 'tx', 1e3, 5e6)))
    return out


def _fmt(value):
    return '%.4f' % value if abs(value) < 1e6 else '%.6e' % value


def rrd_updates(handler, req):
    session = handler.authenticate(req)
    if session is None:
        return
    start = req.param('start')
    try:
        start = int(start)
    except (TypeError, ValueError):
        return handler.send_error_page(400, 'start is required')
    pool = handler.pool
    db = pool.db
    now = int(time.time()) // STEP * STEP
    if start < 0:
        start = now + start
    cf = req.param('cf')
    cfs = (cf,) if cf in CFS else CFS
    step = max(int(req.param('interval') or STEP), STEP)
    rows = max(1, min(ROWS, (now - start) // step))
    objects = []
    if req.param('host') == 'true':
        host = handler.host.ref
        objects.append(('host:%s:' % db.get('host', host, 'uuid'),
                        lambda t, h=host: host_sources(pool, h, t)))
    wanted = req.param('vm_uuid')
    with db.lock:
        vms = [vm for vm in db.get('host', handler.host.ref, 'resident_VMs')
               if not db.get('VM', vm, 'is_control_domain')]
    for vm in vms:
        uuid = db.get('VM', vm, 'uuid')
        if wanted in (None, uuid):
            objects.append(('vm:%s:' % uuid,
                            lambda t, v=vm: vm_sources(pool, v, t)))
    times = [now - i * step for i in range(rows)]
    legend = []
    samples = {t: [] for t in times}
    for prefix, sources in objects:
        names = [name for name, _, _ in sources(now)]
        for c in cfs:
            legend.extend('%s:%s%s' % (c, prefix, name) for name in names)
        for t in times:
            values = [v for _, _, v in sources(t)][:len(names)]
            for _ in cfs:
                samples[t].extend(values)
    end = times[0]
    if req.param('json') is not None:
        body = json.dumps({
            'meta': {'start': times[-1], 'step': step, 'end': end,
                     'rows': rows, 'columns': len(legend), 'legend': legend},
            'data': [{'t': t, 'values': [_fmt(v) for v in samples[t]]}
                     for t in times]}).encode()
        return handler.send_body(200, body, content_type='application/json')
    parts = ['<?xml version="1.0" encoding="UTF-8"?><xport><meta>',
             '<start>%d</start><step>%d</step><end>%d</end>'
             % (times[-1], step, end),
             '<rows>%d</rows><columns>%d</columns><legend>' % (rows, len(legend))]
    parts.extend('<entry>%s</entry>' % e for e in legend)
    parts.append('</legend></meta><data>')
    for t in times:
        parts.append('<row><t>%d</t>' % t)
        parts.extend('<v>%s</v>' % _fmt(v) for v in samples[t])
        parts.append('</row>')
    parts.append('</data></xport>')
    handler.send_body(200, ''.join(parts).encode(), content_type='text/xml')


def _full_rrd(sources, now):
    """A whole RRD document: one AVERAGE archive of 5-second rows."""
    names = [(name, units) for name, units, _ in sources(now)]
    parts = ['<?xml version="1.0" encoding="UTF-8"?><rrd><version>0003'
             '</version><step>%d</step><lastupdate>%d</lastupdate>'
             % (STEP, now)]
    for (name, units), (_, _, value) in zip(names, sources(now)):
        parts.append('<ds><name>%s</name><type>GAUGE</type>'
                     '<minimal_heartbeat>300.0000</minimal_heartbeat>'
                     '<min>0.0</min><max>Infinity</max><last_ds>%s</last_ds>'
                     '<value>%s</value><unknown_sec>0</unknown_sec></ds>'
                     % (name, _fmt(value), _fmt(value)))
    parts.append('<rra><cf>AVERAGE</cf><pdp_per_row>1</pdp_per_row><params>'
                 '<xff>0.5000</xff></params><cdp_prep>')
    parts.extend('<ds><primary_value>0.0</primary_value><secondary_value>0.0'
                 '</secondary_value><value>0.0</value><unknown_datapoints>0'
                 '</unknown_datapoints></ds>' for _ in names)
    parts.append('</cdp_prep><database>')
    for i in range(ROWS - 1, -1, -1):
        t = now - i * STEP
        parts.append('<row>')
        parts.extend('<v>%s</v>' % _fmt(v) for _, _, v in sources(t))
        parts.append('</row>')
    parts.append('</database></rra></rrd>')
    return ''.join(parts).encode()


def vm_rrd(handler, req):
    session = handler.authenticate(req)
    if session is None:
        return
    db = handler.pool.db
    vm = db.by_uuid['VM'].get(req.param('uuid') or '')
    if vm is None:
        return handler.send_error_page(400, 'uuid is required')
    if db.get('VM', vm, 'power_state') not in ('Running', 'Paused'):
        return handler.send_error_page(404, 'no RRD for a halted VM')
    owner = handler.pool.host_by_ref(db.get('VM', vm, 'resident_on'))
    if owner is not None and owner is not handler.host:
        # the RRD lives with the VM: xapi redirects to its host
        location = owner.url + handler.path
        return handler.send_error_page(
            302, 'The RRD is on %s' % owner.address,
            headers=[('Location', location)])
    now = int(time.time()) // STEP * STEP
    handler.send_body(200, _full_rrd(
        lambda t: vm_sources(handler.pool, vm, t), now),
        content_type='text/xml', close=True)


def host_rrd(handler, req):
    session = handler.authenticate(req)
    if session is None:
        return
    host = handler.host.ref
    now = int(time.time()) // STEP * STEP
    handler.send_body(200, _full_rrd(
        lambda t: host_sources(handler.pool, host, t), now),
        content_type='text/xml', close=True)
