"""Instance diagnostics from xapi's round-robin databases (RRDs).

The host that runs the VM serves ``/rrd_updates``: its latest row gives
the CPU use of each vCPU, the memory, and the byte rates of each disk
(``vbd_<device>_read/write``) and interface (``vif_<n>_rx/tx``).
"""

import calendar
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
        with self.session.http_session() as session_id:
            conn = self.session.http_connection(address)
            try:
                conn.request('GET', '/rrd_updates?session_id=%s&start=%d'
                             '&cf=AVERAGE&vm_uuid=%s' % (
                                 session_id, int(time.time()) - WINDOW,
                                 record['uuid']))
                resp = conn.getresponse()
                body = resp.read()
            finally:
                conn.close()
        if resp.status != 200:
            raise errors.XenAPIError('GET /rrd_updates',
                                     ['HTTP_%d' % resp.status])
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
