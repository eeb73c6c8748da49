"""How fast each disk path of a resize or cold migration moves a disk.

Run from the repository root::

    python benchmarks/resize_copy_rates.py [--mib 256] [--rounds 3]

One disk of ``--mib`` MiB of random bytes (nothing sparse to skip) is
moved, in a simulated world of two pools of two hosts, along each path
nova-xen's resize module could take, and each is compared with ``dd`` of
the same bytes between two files on the same machine (the fastest a copy
can be here):

* ``VDI.clone``   same pool, an SR both hosts see (what resize.py does
  where the destination sees the disk's SR: copy-on-write, no bytes move);
* ``VDI.copy``    same pool, one host's local SR to the other's (what
  resize.py does between local SRs);
* ``VM.migrate_send``   a halted VM to the other pool: xapi sends the disk
  itself (what resize.py does across pools);
* ``export/import``   ``/export_raw_vdi`` of one pool streamed by this
  process into ``/import_raw_vdi`` of the other (the alternative across
  pools: the bytes pass through nova-compute's domU).

It prints seconds, MiB/s and the ratio to ``dd`` (median of ``--rounds``).
The figures are xapisim's: on XCP-ng, VDI.copy and migrate_send run in
dom0 (sparse_dd, stunnel between pools) and export/import passes the
bytes twice through the network of the domU.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

import xapisim  # noqa: E402

from nova_xen import session as session_mod  # noqa: E402
from tests import records  # noqa: E402

MIB = 1024 * 1024
NULL = 'OpaqueRef:NULL'


def vdi(x, sr, size, name='disk'):
    return x('VDI.create', {
        'SR': sr, 'virtual_size': str(size), 'type': 'user',
        'sharable': False, 'read_only': False, 'other_config': {},
        'name_label': name, 'name_description': '', 'sm_config': {},
        'xenstore_data': {}, 'tags': []})


def put(session, ref, data):
    """The bytes into a VDI through /import_raw_vdi."""
    with session.http_session() as sid:
        parts = urllib.parse.urlsplit(session.url)
        conn = session.http_connection(parts.hostname, timeout=600)
        query = urllib.parse.urlencode({'session_id': sid, 'vdi': ref,
                                        'format': 'raw'})
        conn.putrequest('PUT', '/import_raw_vdi?' + query)
        conn.putheader('Content-Length', str(len(data)))
        conn.endheaders()
        conn.send(data)
        conn.getresponse().read()
        conn.close()


def stream(src, src_vdi, dst, dst_vdi, size):
    """/export_raw_vdi of one pool into /import_raw_vdi of the other."""
    with src.http_session() as ssid, dst.http_session() as dsid:
        host = urllib.parse.urlsplit(src.url).hostname
        get = src.http_connection(host, timeout=600)
        get.request('GET', '/export_raw_vdi?' + urllib.parse.urlencode(
            {'session_id': ssid, 'vdi': src_vdi, 'format': 'raw'}))
        reply = get.getresponse()
        host = urllib.parse.urlsplit(dst.url).hostname
        conn = dst.http_connection(host, timeout=600)
        conn.putrequest('PUT', '/import_raw_vdi?' + urllib.parse.urlencode(
            {'session_id': dsid, 'vdi': dst_vdi, 'format': 'raw'}))
        conn.putheader('Content-Length', str(size))
        conn.endheaders()
        while True:
            chunk = reply.read(MIB)
            if not chunk:
                break
            conn.send(chunk)
        conn.getresponse().read()
        conn.close()
        get.close()


def timed(fn):
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def dd(data):
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, 'src')
        with open(src, 'wb') as out:
            out.write(data)
        return timed(lambda: subprocess.run(
            ['dd', 'if=' + src, 'of=' + os.path.join(tmp, 'dst'), 'bs=1M',
             'status=none'], check=True))


def local_srs(x):
    """{host ref: its local ext SR}."""
    found = {}
    for sr, record in x('SR.get_all_records').items():
        if record['type'] == 'ext' and not record['shared']:
            found[x('PBD.get_host', record['PBDs'][0])] = sr
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--mib', type=int, default=256)
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    size = args.mib * MIB
    data = os.urandom(size)
    times = {}
    with xapisim.running(pools=2, hosts=2) as world:
        one, two = [session_mod.Session(p['master'], world['username'],
                                        world['password']).connect()
                    for p in world['pools']]
        x, y = one.call, two.call
        shared = x('pool.get_default_SR', x('pool.get_all')[0])
        srs = list(local_srs(x).values())
        far_sr = y('pool.get_default_SR', y('pool.get_all')[0])
        far_host = y('host.get_all')[0]
        mgmt = [p for p in y('PIF.get_all_records').values()
                if p['management'] and p['host'] == far_host][0]['network']
        for _ in range(args.rounds):
            times.setdefault('dd', []).append(dd(data))
            disk = vdi(x, shared, size)
            put(one, disk, data)
            clone = []
            times.setdefault('VDI.clone (shared SR)', []).append(timed(
                lambda: clone.append(one.call_async('VDI.clone', disk, {}))))
            x('VDI.destroy', clone[0])
            x('VDI.destroy', disk)

            disk = vdi(x, srs[0], size)
            put(one, disk, data)
            copy = []
            times.setdefault('VDI.copy (local SR to local SR)', []).append(
                timed(lambda: copy.append(one.call_async(
                    'VDI.copy', disk, srs[1], NULL, NULL))))
            x('VDI.destroy', copy[0])

            vm = x('VM.create', records.vm_record(name='mover'))
            x('VBD.create', {
                'VM': vm, 'VDI': disk, 'userdevice': '0', 'bootable': True,
                'mode': 'RW', 'type': 'Disk', 'empty': False,
                'unpluggable': True, 'other_config': {},
                'qos_algorithm_type': '', 'qos_algorithm_params': {}})
            uuid = x('VM.get_uuid', vm)

            def send():
                token = y('host.migrate_receive', far_host, mgmt, {})
                one.call_async('VM.migrate_send', vm, token, False,
                               {disk: far_sr}, {}, {}, {})
                two.logout_session(token['session_id'])
            times.setdefault('VM.migrate_send (other pool)', []).append(
                timed(send))
            moved = y('VM.get_by_uuid', uuid)
            for vbd in y('VM.get_VBDs', moved):
                y('VDI.destroy', y('VBD.get_VDI', vbd))
            y('VM.destroy', moved)

            disk = vdi(x, srs[0], size)
            put(one, disk, data)
            target = vdi(y, far_sr, size)
            times.setdefault('export/import through this process', []).append(
                timed(lambda: stream(one, disk, two, target, size)))
            x('VDI.destroy', disk)
            y('VDI.destroy', target)
        one.close()
        two.close()
    base = statistics.median(times['dd'])
    print('%d MiB of random bytes, median of %d rounds'
          % (args.mib, args.rounds))
    print('%-40s %8s %10s %8s' % ('path', 'seconds', 'MiB/s', 'vs dd'))
    for name, values in times.items():
        median = statistics.median(values)
        print('%-40s %8.3f %10.1f %7.0f%%' % (
            name, median, args.mib / max(median, 1e-9),
            100.0 * base / max(median, 1e-9)))


if __name__ == '__main__':
    main()
