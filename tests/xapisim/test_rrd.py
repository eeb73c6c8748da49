"""RRDs over HTTP: /rrd_updates, /vm_rrd and /host_rrd."""

import http.client
import json
import time
import urllib.parse
import xml.etree.ElementTree as ET

from tests.xapisim.base import SimTestCase


class RrdTestCase(SimTestCase):
    def get(self, path, url=None, **params):
        """(status, headers, body) of a GET with the test's session."""
        params.setdefault('session_id', self.session._session)
        params = {k: v for k, v in params.items() if v is not None}
        parts = urllib.parse.urlsplit(url or self.master_url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port,
                                          timeout=30)
        try:
            conn.request('GET', path + '?' + urllib.parse.urlencode(params))
            resp = conn.getresponse()
            return (resp.status, {k.lower(): v for k, v in resp.getheaders()},
                    resp.read())
        finally:
            conn.close()

    def running_vm(self, name='rrd-vm', vcpus=2, host=None):
        vm = self.new_vm(name, vcpus=vcpus)
        vdi = self.new_vdi()
        self.new_vbd(vm, vdi)
        self.new_vif(vm)
        if host:
            self.x.VM.start_on(vm, host, False, False)
        else:
            self.x.VM.start(vm, False, False)
        return vm

    def updates(self, seconds=60, **params):
        start = int(time.time()) - seconds
        status, headers, body = self.get('/rrd_updates', start=start,
                                         **params)
        self.assertEqual(200, status, body[:300])
        return start, headers, body


def parse_xport(body):
    """(meta dict, legend, [(t, [floats])]) of an xport document."""
    root = ET.fromstring(body)
    assert root.tag == 'xport', root.tag
    meta = root.find('meta')
    info = {k: int(meta.find(k).text)
            for k in ('start', 'step', 'end', 'rows', 'columns')}
    legend = [e.text for e in meta.find('legend').findall('entry')]
    rows = [(int(r.find('t').text), [float(v.text) for v in r.findall('v')])
            for r in root.find('data').findall('row')]
    return info, legend, rows


def column(legend, rows, entry):
    i = legend.index(entry)
    return [values[i] for _, values in rows]


class RrdUpdates(RrdTestCase):
    @classmethod
    def setUpClass(cls):
        super(RrdUpdates, cls).setUpClass()
        cls.host_uuid = cls.world['pools'][0]['hosts'][0]['uuid']

    def setUp(self):
        super(RrdUpdates, self).setUp()
        self.vm = self.running_vm()
        self.uuid = self.x.VM.get_uuid(self.vm)

    def test_xport_document(self):
        start, headers, body = self.updates(host='true')
        self.assertTrue(headers['content-type'].startswith('text/xml'))
        info, legend, rows = parse_xport(body)
        self.assertEqual(info['columns'], len(legend))
        self.assertEqual(info['rows'], len(rows))
        self.assertGreater(len(rows), 1)
        for entry in ('AVERAGE:vm:%s:cpu0' % self.uuid,
                      'AVERAGE:vm:%s:cpu1' % self.uuid,
                      'AVERAGE:vm:%s:memory' % self.uuid,
                      'AVERAGE:vm:%s:vif_0_rx' % self.uuid,
                      'AVERAGE:host:%s:memory_total_kib' % self.host_uuid,
                      'AVERAGE:host:%s:cpu0' % self.host_uuid):
            self.assertIn(entry, legend)
        for t, values in rows:
            self.assertEqual(len(legend), len(values))
        for entry in legend:
            cf, kind, uuid, name = entry.split(':')
            self.assertIn(cf, ('AVERAGE', 'MIN', 'MAX', 'LAST'))
            self.assertIn(kind, ('vm', 'host'))
            if kind == 'host':
                self.assertEqual(self.host_uuid, uuid)
            self.assertTrue(name)

    def test_rows_are_newest_first(self):
        start, _, body = self.updates(seconds=60)
        info, legend, rows = parse_xport(body)
        times = [t for t, _ in rows]
        self.assertEqual(info['end'], times[0])
        self.assertEqual(info['start'], times[-1])
        for newer, older in zip(times, times[1:]):
            self.assertEqual(info['step'], newer - older)
        self.assertGreaterEqual(times[-1], start - info['step'])
        self.assertLessEqual(times[0], time.time() + info['step'])

    def test_values_are_functions_of_time(self):
        _, _, body = self.updates(seconds=120, host='true')
        _, legend, rows = parse_xport(body)
        cpu = column(legend, rows, 'AVERAGE:vm:%s:cpu0' % self.uuid)
        self.assertGreater(len(set(cpu)), 1, cpu)    # they move over time
        for value in cpu:
            self.assertTrue(0.0 <= value <= 1.0, value)
        # memory follows the records, at every instant
        total = int(self.x.host_metrics.get_memory_total(
            self.x.host.get_metrics(self.x.host.get_all()[0])))
        for value in column(legend, rows,
                            'AVERAGE:host:%s:memory_total_kib'
                            % self.host_uuid):
            # xapi prints 5 significant digits (f_to_s): allow rounding
            self.assertAlmostEqual(total / 1024.0, value, delta=value * 1e-4)
        actual = int(self.x.VM_metrics.get_memory_actual(
            self.x.VM.get_metrics(self.vm)))
        for value in column(legend, rows, 'AVERAGE:vm:%s:memory' % self.uuid):
            self.assertAlmostEqual(actual, value, delta=actual * 1e-4)
        # a second reader sees the same value for the same instant
        _, _, again = self.updates(seconds=120, host='true')
        _, legend2, rows2 = parse_xport(again)
        entry = 'AVERAGE:vm:%s:cpu0' % self.uuid
        first = dict(zip([t for t, _ in rows],
                         column(legend, rows, entry)))
        second = dict(zip([t for t, _ in rows2],
                          column(legend2, rows2, entry)))
        common = set(first) & set(second)
        self.assertGreater(len(common), 10)
        for t in common:
            self.assertEqual(first[t], second[t], t)

    def test_host_only_when_asked(self):
        _, _, body = self.updates()
        _, legend, _ = parse_xport(body)
        self.assertTrue(legend)
        self.assertFalse([e for e in legend if ':host:' in e])
        _, _, body = self.updates(host='false')
        _, legend, _ = parse_xport(body)
        self.assertFalse([e for e in legend if ':host:' in e])

    def test_vm_uuid_filter(self):
        other = self.running_vm('other-vm', vcpus=1)
        other_uuid = self.x.VM.get_uuid(other)
        _, _, body = self.updates()
        _, legend, _ = parse_xport(body)
        self.assertIn('AVERAGE:vm:%s:cpu0' % other_uuid, legend)
        self.assertIn('AVERAGE:vm:%s:cpu0' % self.uuid, legend)
        _, _, body = self.updates(vm_uuid=other_uuid)
        _, legend, _ = parse_xport(body)
        self.assertIn('AVERAGE:vm:%s:cpu0' % other_uuid, legend)
        self.assertEqual({other_uuid}, {e.split(':')[2] for e in legend})
        self.assertNotIn('AVERAGE:vm:%s:cpu1' % other_uuid, legend)

    def test_halted_vms_have_no_updates(self):
        self.x.VM.hard_shutdown(self.vm)
        _, _, body = self.updates()
        _, legend, _ = parse_xport(body)
        self.assertFalse([e for e in legend if self.uuid in e])

    def test_cf_filter(self):
        _, _, body = self.updates(cf='MAX', host='true')
        _, legend, _ = parse_xport(body)
        self.assertTrue(legend)
        self.assertEqual({'MAX'}, {e.split(':')[0] for e in legend})

    def test_json(self):
        _, headers, body = self.updates(json='true', host='true')
        doc = json.loads(body.decode())
        meta = doc['meta']
        self.assertEqual(meta['columns'], len(meta['legend']))
        self.assertEqual(meta['rows'], len(doc['data']))
        self.assertIn('AVERAGE:vm:%s:cpu0' % self.uuid, meta['legend'])
        self.assertIn('AVERAGE:host:%s:memory_total_kib' % self.host_uuid,
                      meta['legend'])
        times = [row['t'] for row in doc['data']]
        self.assertEqual(sorted(times, reverse=True), times)
        self.assertEqual(meta['end'], times[0])
        for row in doc['data']:
            self.assertEqual(meta['columns'], len(row['values']))
            for value in row['values']:
                float(value)

    def test_start_is_required(self):
        status, _, _ = self.get('/rrd_updates', host='true')
        self.assertEqual(400, status)
        status, _, _ = self.get('/rrd_updates', start='yesterday')
        self.assertEqual(400, status)

    def test_session_required(self):
        start = int(time.time()) - 30
        for path, params in (('/rrd_updates', {'start': start}),
                             ('/vm_rrd', {'uuid': self.uuid}),
                             ('/host_rrd', {})):
            for session in ('OpaqueRef:bogus', None):
                status, headers, _ = self.get(path, session_id=session,
                                              **params)
                self.assertEqual(401, status, (path, session))
                self.assertIn('www-authenticate', headers)


class FullRrds(RrdTestCase):
    def test_vm_rrd(self):
        vm = self.running_vm()
        status, _, body = self.get('/vm_rrd', uuid=self.x.VM.get_uuid(vm))
        self.assertEqual(200, status)
        root = ET.fromstring(body)
        self.assertEqual('rrd', root.tag)
        names = [ds.find('name').text for ds in root.findall('ds')]
        for name in ('cpu0', 'cpu1', 'memory', 'vif_0_rx'):
            self.assertIn(name, names)
        rra = root.find('rra')
        self.assertIn(rra.find('cf').text, ('AVERAGE', 'MIN', 'MAX', 'LAST'))
        for row in rra.find('database').findall('row'):
            self.assertEqual(len(names), len(row.findall('v')))
        self.assertGreater(int(root.find('lastupdate').text),
                           time.time() - 60)

    def test_vm_rrd_needs_a_vm(self):
        status, _, _ = self.get('/vm_rrd')
        self.assertEqual(400, status)

    def test_host_rrd(self):
        status, _, body = self.get('/host_rrd')
        self.assertEqual(200, status)
        root = ET.fromstring(body)
        self.assertEqual('rrd', root.tag)
        names = [ds.find('name').text for ds in root.findall('ds')]
        for name in ('cpu0', 'cpu_avg', 'memory_total_kib',
                     'memory_free_kib', 'loadavg'):
            self.assertIn(name, names)


class TwoHosts(RrdTestCase):
    hosts = 2

    def test_each_host_reports_its_own_vms(self):
        hosts = {self.x.host.get_address(h): h for h in self.x.host.get_all()}
        slave = self.world['pools'][0]['hosts'][1]
        vm = self.running_vm(host=hosts[slave['address']])
        uuid = self.x.VM.get_uuid(vm)
        start = int(time.time()) - 30
        status, _, body = self.get('/rrd_updates', start=start,
                                   url=slave['url'], host='true')
        self.assertEqual(200, status)
        _, legend, _ = parse_xport(body)
        self.assertIn('AVERAGE:vm:%s:cpu0' % uuid, legend)
        self.assertIn('AVERAGE:host:%s:cpu0' % slave['uuid'], legend)
        _, _, body = self.get('/rrd_updates', start=start, host='true')
        _, legend, _ = parse_xport(body)
        self.assertNotIn('AVERAGE:vm:%s:cpu0' % uuid, legend)
        # the master sends a VM's RRD requests to the VM's host
        status, headers, _ = self.get('/vm_rrd', uuid=uuid)
        self.assertEqual(302, status)
        self.assertTrue(headers['location'].startswith(slave['url'] +
                                                       '/vm_rrd?'))
        status, _, body = self.get('/vm_rrd', url=slave['url'], uuid=uuid)
        self.assertEqual(200, status)
        self.assertEqual('rrd', ET.fromstring(body).tag)
