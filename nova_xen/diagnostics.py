"""Instance diagnostics and host CPU times from xapi's round-robin
databases (RRDs).

The host that runs the VM serves ``/rrd_updates``: its latest row gives
the CPU use of each vCPU, the memory, and the byte rates of each disk
(``vbd_<device>_read/write``) and interface (``vif_<n>_rx/tx``).  With
``host=true`` it gives the busy fraction of each physical CPU
(``cpu<n>``), which ``HostCPU`` integrates into the cumulative times
Nova's CPU monitor wants.
"""

import calendar
import threading
import time
import xml.etree.ElementTree as ElementTree

from nova.compute import power_state
from nova import exception
from nova.objects import diagnostics as diag_obj

from nova_xen import configdrive
from nova_xen import errors

MIB = 1024 * 1024
WINDOW = 60   # seconds of history to ask for


class Diagnostics(object):
    def __init__(self, session, watcher):
        self.session = session
        self.watcher = watcher

    def _sources(self, instance):
        vm, record = self.watcher.record(instance.uuid)
        if vm is None:
            raise exception.InstanceNotFound(instance_id=instance.uuid)
        if record['power_state'] not in ('Running', 'Paused'):
            raise exception.InstanceInvalidState(
                attr='power_state', instance_uuid=instance.uuid,
                state=record['power_state'], method='get_diagnostics')
        address = self.session.call('host.get_address',
                                    record['resident_on'])
        body = rrd_updates(self.session, address, 'start=%d&cf=AVERAGE'
                           '&vm_uuid=%s' % (int(time.time()) - WINDOW,
                                            record['uuid']))
        return vm, record, latest(body, record['uuid'])

    def legacy(self, instance):
        """get_diagnostics: the data source names and latest values."""
        return self._sources(instance)[2]

    def instance(self, instance):
        vm, record, values = self._sources(instance)
        metrics = self.session.call('VM_metrics.get_record',
                                    self.session.call('VM.get_metrics', vm))
        state = {'Running': power_state.RUNNING,
                 'Paused': power_state.PAUSED}[record['power_state']]
        started = calendar.timegm(time.strptime(str(metrics['start_time']),
                                                '%Y%m%dT%H:%M:%SZ'))
        diags = diag_obj.Diagnostics(
            state=state, driver='xenapi', hypervisor='xen',
            hypervisor_os='XCP-ng', uptime=max(int(time.time() - started), 0),
            config_drive=configdrive.required(instance))
        cpus = sorted((int(k[3:]), v) for k, v in values.items()
                      if k.startswith('cpu') and k[3:].isdigit())
        for number, fraction in cpus:
            diags.add_cpu(id=number, utilisation=int(round(fraction * 100)))
        free_kib = values.get('memory_internal_free')
        maximum = int(metrics['memory_actual']) // MIB
        used = maximum - int(free_kib) // 1024 if free_kib is not None else 0
        diags.memory_details = diag_obj.MemoryDiagnostics(maximum=maximum,
                                                          used=max(used, 0))
        for vif in self.session.call('VM.get_VIFs', vm):
            rec = self.session.call('VIF.get_record', vif)
            diags.add_nic(mac_address=rec['MAC'],
                          rx_rate=int(values.get('vif_%s_rx' % rec['device'],
                                                 0)),
                          tx_rate=int(values.get('vif_%s_tx' % rec['device'],
                                                 0)))
        for vbd in self.session.call('VM.get_VBDs', vm):
            device = self.session.call('VBD.get_device', vbd)
            if not device:
                continue
            diags.add_disk(
                read_bytes=int(values.get('vbd_%s_read' % device, 0)),
                write_bytes=int(values.get('vbd_%s_write' % device, 0)))
        diags.num_cpus = len(cpus)
        return diags


def rrd_updates(session, address, query):
    """The body of ``GET /rrd_updates?<query>`` from xapi at ``address``."""
    with session.http_session() as session_id:
        conn = session.http_connection(address)
        try:
            conn.request('GET', '/rrd_updates?session_id=%s&%s'
                         % (session_id, query))
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
    if resp.status != 200:
        raise errors.XenAPIError('GET /rrd_updates',
                                 ['HTTP_%d' % resp.status])
    return body


class HostCPU(object):
    """Cumulative CPU times of the host (``get_host_cpu_stats``).

    xapi's RRDs keep, per physical CPU, the fraction of each 5-second step
    it was busy, over all domains; they do not split user from kernel
    time, nor count I/O wait.  Each call integrates the rows that came
    since the previous one: busy time is reported as ``user``, the rest as
    ``idle``, ``kernel`` and ``iowait`` stay 0 -- so Nova's CPU monitor
    gets the host's real utilisation.  The first call integrates the last
    minute.  Time since the newest row counts at that row's rate (so that
    two readings within one step still differ, as Nova's monitor needs),
    and no counter ever goes back.
    """

    def __init__(self, session, host):
        self.session = session
        self.host = host
        self._lock = threading.Lock()
        self._newest = None       # time of the last row integrated
        self._busy = 0.0          # CPU-seconds
        self._idle = 0.0
        self._rate = (0.0, 0.0)   # (busy, idle) CPUs in the newest row
        self._reported = (0, 0)   # (user, idle) ns last returned
        self._mhz = None

    def stats(self):
        with self._lock:
            self._integrate()
            if self._mhz is None:
                info = self.session.call('host.get_cpu_info', self.host.ref)
                self._mhz = int(float(info.get('speed') or 0))
            since = max(time.time() - self._newest, 0.0) \
                if self._newest is not None else 0.0
            user = max(int((self._busy + since * self._rate[0]) * 1e9),
                       self._reported[0])
            idle = max(int((self._idle + since * self._rate[1]) * 1e9),
                       self._reported[1])
            self._reported = (user, idle)
            return {'kernel': 0, 'iowait': 0, 'user': user, 'idle': idle,
                    'frequency': self._mhz}

    def _integrate(self):
        start = self._newest if self._newest is not None else \
            int(time.time()) - WINDOW
        root = ElementTree.fromstring(rrd_updates(
            self.session, self.host.address,
            'start=%d&cf=AVERAGE&host=true' % start))
        step = int(root.find('meta/step').text)
        prefix = 'AVERAGE:host:%s:cpu' % self.host.uuid
        columns = [i for i, e in enumerate(root.find('meta/legend'))
                   if e.text.startswith(prefix) and
                   e.text[len(prefix):].isdigit()]
        newest = self._newest
        for row in root.find('data').findall('row'):    # newest first
            t = int(row.find('t').text)
            if self._newest is not None and t <= self._newest:
                continue
            values = [v.text for v in row.findall('v')]
            busy_cpus = idle_cpus = 0.0
            for i in columns:
                try:
                    busy = min(max(float(values[i]), 0.0), 1.0)
                except ValueError:      # NaN: no data for that step
                    continue
                busy_cpus += busy
                idle_cpus += 1.0 - busy
            self._busy += busy_cpus * step
            self._idle += idle_cpus * step
            if newest is None or t > newest:
                newest, self._rate = t, (busy_cpus, idle_cpus)
        self._newest = newest


def latest(xport, vm_uuid):
    """{data source: newest value} of one VM from an /rrd_updates answer."""
    root = ElementTree.fromstring(xport)
    legend = [e.text for e in root.find('meta/legend')]
    rows = root.find('data').findall('row')
    if not rows:
        return {}
    newest = max(rows, key=lambda r: int(r.find('t').text))
    values = [v.text for v in newest.findall('v')]
    prefix = 'AVERAGE:vm:%s:' % vm_uuid
    out = {}
    for name, value in zip(legend, values):
        if name.startswith(prefix):
            try:
                out[name[len(prefix):]] = float(value)
            except ValueError:
                continue
    return out
