"""How fast xapisim answers: call rate and event.from latency.

Run from the repository root::

    python benchmarks/xapisim_bench.py [--seconds 5] [--vms 1000] [--changes 50]

It starts a simulator as a separate process (``xapisim.running()``) and
prints, in plain words:

1. sequential ``VM.get_record`` calls per second from one client: the
   simulator's own rate (a minimal client that sends ready-made requests
   on one keep-alive connection and reads the answers whole, so that the
   figure is the simulator's, not the client's), and, for reference, the
   rate through the official ``XenAPI`` client, which spends more time
   parsing each record than the simulator takes to serve it;
2. with ``--vms`` VMs in the pool: the time of an initial
   ``event.from(['vm'], '', 0)`` snapshot, and the latency from a VM change
   made by one session to ``event.from`` returning it to another session
   (median and 95th percentile over ``--changes`` changes).
"""

import argparse
import http.client
import os
import socket
import statistics
import sys
import threading
import time
import urllib.parse
import xmlrpc.client

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

import XenAPI  # noqa: E402

import xapisim  # noqa: E402
from xapisim.client import Control  # noqa: E402

CALL_RATE_TARGET = 1500.0


def login(url, world):
    session = XenAPI.Session(url)
    session.login_with_password(world['username'], world['password'],
                                '2.21', 'xapisim-bench')
    return session


def event_from(x, classes, token, timeout):
    return getattr(x.event, 'from')(classes, token, timeout)


def call_rate(x, vm, seconds):
    """Sequential VM.get_record calls per second."""
    x.VM.get_record(vm)                 # warm the connection up
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    now = start
    while now < deadline:
        for _ in range(50):
            x.VM.get_record(vm)
        count += 50
        now = time.perf_counter()
    return count / (now - start), count


def raw_call_rate(url, session_ref, vm, seconds):
    """The simulator's rate: one keep-alive connection, no XML parsing."""
    parts = urllib.parse.urlsplit(url)
    body = xmlrpc.client.dumps((session_ref, vm), 'VM.get_record').encode()
    request = (b'POST / HTTP/1.1\r\nHost: %s\r\nContent-Type: text/xml\r\n'
               b'Content-Length: %d\r\n\r\n'
               % (parts.hostname.encode(), len(body))) + body
    sock = socket.create_connection((parts.hostname, parts.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = sock.makefile('rb')

    def call():
        sock.sendall(request)
        status = reader.readline()
        length = 0
        while True:
            line = reader.readline()
            if line in (b'\r\n', b''):
                break
            if line[:15].lower() == b'content-length:':
                length = int(line[15:])
        answer = reader.read(length)
        if not status.startswith(b'HTTP/1.1 200') or b'Success' not in answer:
            raise RuntimeError('unexpected answer: %r' % answer[:200])
    try:
        call()
        count = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(50):
                call()
            count += 50
        return count / (time.perf_counter() - start), count
    finally:
        reader.close()
        sock.close()


def call_breakdown(url, session_ref, vm, calls=500):
    """Where one call's time goes: server round trip vs. client parsing."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    body = xmlrpc.client.dumps((session_ref, vm), 'VM.get_record').encode()
    try:
        start = time.perf_counter()
        for _ in range(calls):
            conn.request('POST', '/', body, {'Content-Type': 'text/xml'})
            data = conn.getresponse().read()
        round_trip = (time.perf_counter() - start) / calls
    finally:
        conn.close()
    start = time.perf_counter()
    for _ in range(calls):
        xmlrpc.client.loads(data)
    parse = (time.perf_counter() - start) / calls
    return round_trip, parse, len(data)


def percentile(values, fraction):
    ordered = sorted(values)
    index = min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))
    return ordered[index]


def event_latency(url, world, vms, changes):
    control = Control(url, world['username'], world['password'])
    start = time.perf_counter()
    made = control.create_vms(vms, name_prefix='bench-')['vms']
    create_time = time.perf_counter() - start

    writer = login(url, world)
    watcher = login(url, world)
    try:
        w = watcher.xenapi
        start = time.perf_counter()
        snapshot = event_from(w, ['vm'], '', 0.0)
        snapshot_time = time.perf_counter() - start
        seen = len(snapshot['events'])
        token = snapshot['token']

        refs = [writer.xenapi.VM.get_by_uuid(u) for u in made[:changes]]
        latencies = []
        for i, vm in enumerate(refs):
            result = {}

            def watch():
                reply = event_from(w, ['vm'], token, 30.0)
                result['at'] = time.perf_counter()
                result['reply'] = reply
            thread = threading.Thread(target=watch)
            thread.start()
            time.sleep(0.02)            # let the watcher block in event.from
            changed_at = time.perf_counter()
            writer.xenapi.VM.set_name_description(vm, 'change %d' % i)
            thread.join(60)
            reply = result['reply']
            if not any(e['ref'] == vm for e in reply['events']):
                raise RuntimeError('event.from missed the change of %s' % vm)
            latencies.append(result['at'] - changed_at)
            token = reply['token']
    finally:
        for session in (writer, watcher):
            session.xenapi.session.logout()
    return {'create_time': create_time, 'snapshot_time': snapshot_time,
            'snapshot_events': seen, 'latencies': latencies}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seconds', type=float, default=5.0,
                        help='how long to measure the call rate')
    parser.add_argument('--vms', type=int, default=1000)
    parser.add_argument('--changes', type=int, default=50)
    args = parser.parse_args(argv)

    begun = time.perf_counter()
    with xapisim.running(pools=1, hosts=1) as world:
        url = world['pools'][0]['master']
        session = login(url, world)
        x = session.xenapi
        dom0 = [vm for vm in x.VM.get_all() if x.VM.get_is_control_domain(vm)]
        raw_rate, raw_count = raw_call_rate(url, session._session, dom0[0],
                                            args.seconds)
        rate, count = call_rate(x, dom0[0], args.seconds)
        round_trip, parse, size = call_breakdown(url, session._session,
                                                 dom0[0])
        session.xenapi.session.logout()
        verdict = 'meets' if raw_rate >= CALL_RATE_TARGET else 'BELOW'
        print('VM.get_record, sequential, one connection (the simulator\'s '
              'rate): %.0f calls/s (%d calls in %.1f s; %s the %.0f/s '
              'target)' % (raw_rate, raw_count, args.seconds, verdict,
                           CALL_RATE_TARGET))
        print('VM.get_record, sequential, official XenAPI client: %.0f '
              'calls/s (%d calls)' % (rate, count))
        print('  per call: %.2f ms HTTP round trip (server work + loopback), '
              '%.2f ms for the client to parse the %d-byte response'
              % (1000 * round_trip, 1000 * parse, size))
        sys.stdout.flush()

        ev = event_latency(url, world, args.vms, args.changes)
        lat = ev['latencies']
        print('created %d VMs through the control interface in %.2f s'
              % (args.vms, ev['create_time']))
        print("event.from(['vm'], '', 0) snapshot: %d events in %.3f s"
              % (ev['snapshot_events'], ev['snapshot_time']))
        print('event.from latency over %d VM changes (by another session): '
              'median %.1f ms, p95 %.1f ms, max %.1f ms'
              % (len(lat), 1000 * statistics.median(lat),
                 1000 * percentile(lat, 0.95), 1000 * max(lat)))
    print('total benchmark time: %.1f s' % (time.perf_counter() - begun))


if __name__ == '__main__':
    main()
