"""Concurrent spawns against one spawn, at a given XenAPI latency.

Run from the repository root with the functional venv (nova installed)::

    .tox/functional/bin/python benchmarks/concurrent_spawns.py \
        [--spawns 50] [--latency-ms 20] [--connections 5,16,32]

The driver's own spawn path (nova_xen.vmops.VMOps.spawn: the image cache's
clone, VM, VBDs, VIF, start paused, isolation rules through the dom0
plugin, unpause) runs against a simulated pool whose every XenAPI call
takes ``--latency-ms`` more.  The image is in the cache already (as for
every spawn but an image's first); Glance's answer for it is given here
(no Glance runs), nothing else is stood in for.

For each size of the session's connection pool it prints:

* one spawn alone, and N spawns started at once (wall times, ratio);
* how long spawns waited for a free XenAPI connection;
* the session-seconds one spawn holds: the time pooled connections are
  checked out (a call on the wire, not a wait for a free one) while one
  spawn runs alone, by whichever thread (the spawn's, or the VM
  watcher's applying the new domain's rules);
* what the pool costs: N spawns times those session-seconds, divided by
  the pool's size, against one spawn's wall time (the issue's measure of
  what the driver imposes: N spawns cannot all end before the pool has
  served that much; xapisim's own work, on two cores, adds the rest);
* a short call (``VM.get_record``) made every 50 ms while the spawns run:
  median and worst latency (it must not wait behind long tasks).
"""

import argparse
import contextlib
import os
import statistics
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

from nova import context as nova_context  # noqa: E402
from nova.network import model as network_model  # noqa: E402
from nova import objects  # noqa: E402

import nova_xen.conf  # noqa: E402,F401
from nova_xen import events  # noqa: E402
from nova_xen import host as host_mod  # noqa: E402
from nova_xen import imagecache  # noqa: E402
from nova_xen import images  # noqa: E402
from nova_xen import network  # noqa: E402
from nova_xen import session as session_mod  # noqa: E402
from nova_xen import vmops  # noqa: E402
import xapisim  # noqa: E402
from xapisim.client import Control  # noqa: E402

GIB = 1024 ** 3
IMAGE = '6b1d8c1e-4a7e-4c55-9a53-4d2a51a7c0de'
RECORD = {'id': IMAGE, 'status': 'active', 'os_hash_algo': 'sha512',
          'os_hash_value': 'ab' * 64, 'checksum': 'cd' * 16,
          'disk_format': 'raw', 'container_format': 'bare',
          'size': 16 * 1024 * 1024, 'properties': {}}


class _VirtAPI(object):
    @contextlib.contextmanager
    def wait_for_instance_event(self, instance, events, timeout=300,
                                error_callback=None):
        yield


def _instance(number):
    flavor = objects.Flavor(name='m1.tiny', flavorid='1', memory_mb=256,
                            vcpus=1, root_gb=1, ephemeral_gb=0, swap=0,
                            extra_specs={})
    return objects.Instance(id=number, uuid=str(uuid.uuid4()),
                            display_name='bench-%d' % number,
                            os_type='linux', config_drive='',
                            flavor=flavor, metadata={}, system_metadata={},
                            image_ref=IMAGE, hostname='bench-%d' % number)


def _network_info():
    subnet = network_model.Subnet(
        cidr='10.1.0.0/24', ips=[network_model.FixedIP(address='10.1.0.5')])
    net = network_model.Network(id=str(uuid.uuid4()), bridge='br-int',
                                subnets=[subnet])
    return network_model.NetworkInfo([network_model.VIF(
        id=str(uuid.uuid4()), address='fa:16:3e:00:00:01', network=net,
        type='ovs', active=True)])


def _image_meta():
    return objects.ImageMeta.from_dict(dict(RECORD))


def _seed_cache(session, sr):
    """The image's cache entry, as the first spawn leaves it."""
    vdi = session.call('VDI.create', {
        'SR': sr, 'virtual_size': str(RECORD['size']), 'type': 'user',
        'sharable': False, 'read_only': False,
        'other_config': {imagecache.KEY: IMAGE,
                         imagecache.CHECKSUM:
                             imagecache.glance_checksum(RECORD),
                         imagecache.SIZE: str(RECORD['size'])},
        'name_label': imagecache.CACHED % IMAGE, 'name_description': '',
        'sm_config': {}, 'xenstore_data': {}, 'tags': []})
    # an entry names its own uuid (a clone, which copies other_config, is
    # thereby never taken for the entry)
    session.call('VDI.add_to_other_config', vdi, imagecache.SELF,
                 session.call('VDI.get_uuid', vdi))
    return vdi


def measure(world, connections, spawns, latency_ms):
    pool = world['pools'][0]
    control = Control(pool['master'], world['username'], world['password'],
                      ca_file=world.get('ca_file'))
    session = session_mod.Session(
        pool['master'], world['username'], world['password'],
        concurrent=connections, ca_file=world.get('ca_file')).connect()
    host = host_mod.Host(session).discover()
    sr = host.instance_sr()
    network.integration_network(session)
    isolation = network.Isolation(session, host)
    watcher = events.VMWatcher(session, host.ref)
    watcher.start()
    handler = images.handler(session, host)
    cache = imagecache.ImageCache(session, host, handler)
    ops = vmops.VMOps(session, host, watcher, handler, isolation, _VirtAPI(),
                      cache=cache)
    if not imagecache.ImageCache(session, host, handler)._find(
            sr, IMAGE, imagecache.glance_checksum(RECORD)):
        _seed_cache(session, sr)
    ctx = nova_context.get_admin_context()
    made = []
    plugin_time = []
    held = _instrument_pool(session)
    call_plugin = session.call_plugin

    def timed_plugin(*args, **kwargs):
        began = time.monotonic()
        try:
            return call_plugin(*args, **kwargs)
        finally:
            plugin_time.append(time.monotonic() - began)
    # measured, not replaced: the dom0 plugins run as processes of xapisim
    session.call_plugin = timed_plugin

    def spawn(number):
        instance = _instance(number)
        ops.spawn(ctx, instance, _image_meta(), _network_info(), sr)
        made.append(instance)

    control.set_latency(latency_ms)
    try:
        del held[:]
        start = time.monotonic()
        spawn(1)
        alone = time.monotonic() - start
        held_alone = sum(seconds for _, _, seconds in held)
        held_plugin = sum(seconds for _, method, seconds in held
                          if method and method.endswith('host.call_plugin'))

        probe = []
        stop = threading.Event()
        probe_vm = session.call('VM.get_all')[0]

        def short_calls():
            while not stop.is_set():
                began = time.monotonic()
                session.call('VM.get_record', probe_vm)
                probe.append(time.monotonic() - began)
                stop.wait(0.05)
        prober = threading.Thread(target=short_calls, name='prober')
        session.waited, session.waits = 0.0, 0
        del plugin_time[:]
        del held[:]
        threads = [threading.Thread(target=spawn, args=(n,))
                   for n in range(2, spawns + 2)]
        start = time.monotonic()
        prober.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        together = time.monotonic() - start
        stop.set()
        prober.join()
        waited = session.waited
        plugins = sum(plugin_time) / max(len(plugin_time), 1)
        held_together = sum(seconds for thread, _, seconds in held
                            if thread != 'prober')
    finally:
        control.set_latency(0)
        for instance in made:
            ops.destroy(instance)
        watcher.stop()
        session.close()
    if len(made) != spawns + 1:
        raise SystemExit('only %d of %d spawns succeeded'
                         % (len(made), spawns + 1))
    return {'alone': alone, 'together': together, 'waited': waited,
            'probe': probe, 'plugin': plugins, 'held_alone': held_alone,
            'held_together': held_together / spawns,
            'held_plugin': held_plugin}


def _instrument_pool(session):
    """Record (thread name, XenAPI message, seconds) for every time a
    pooled connection is checked out: from the moment the pool hands it
    over (a wait for a free one excluded) until it is back."""
    held = []
    current = threading.local()
    borrow, call = session._borrow, session.call

    @contextlib.contextmanager
    def timed_borrow():
        with borrow() as xenapi:
            began = time.monotonic()
            try:
                yield xenapi
            finally:
                held.append((threading.current_thread().name,
                             getattr(current, 'method', None),
                             time.monotonic() - began))

    def named_call(method, *args, **kwargs):
        current.method = method
        try:
            return call(method, *args, **kwargs)
        finally:
            current.method = None
    session._borrow = timed_borrow
    session.call = named_call
    return held


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--spawns', type=int, default=50)
    parser.add_argument('--latency-ms', type=int, default=20)
    parser.add_argument('--connections', default='5,16,32')
    args = parser.parse_args()
    objects.register_all()
    # the image's Glance record (the cache asks Glance on every hit)
    images.glance_record = lambda context, image_id: dict(RECORD)
    sizes = [int(n) for n in args.connections.split(',')]
    print('%d spawns at once vs one, %d ms per XenAPI call, image cached'
          % (args.spawns, args.latency_ms))
    print('%-5s %6s %6s %6s %14s %7s %9s %7s %13s %11s' % (
        'conn.', 'one s', 'all s', 'ratio', 'held s (dom0)', 'pool x',
        'held@N s', 'wait s', 'short ms', 'dom0 call s'))
    with xapisim.running(hosts=1, guest_delay=0.0) as world:
        for size in sizes:
            r = measure(world, size, args.spawns, args.latency_ms)
            probe = sorted(r['probe']) or [0.0]
            print('%-5d %6.2f %6.2f %5.1fx %6.3f (%5.3f) %6.2fx %9.3f %7.2f '
                  '%5.0f / %-5.0f %10.2f' % (
                      size, r['alone'], r['together'],
                      r['together'] / r['alone'],
                      r['held_alone'], r['held_plugin'],
                      args.spawns * r['held_alone'] / size / r['alone'],
                      r['held_together'],
                      r['waited'] / args.spawns,
                      statistics.median(probe) * 1000, probe[-1] * 1000,
                      r['plugin']))
    print('one, all: wall time of one spawn alone, of %d at once; ratio: '
          'all / one' % args.spawns)
    print('held: session-seconds one spawn alone holds (pooled connections '
          'checked out; in brackets: by dom0 plugin calls); held@N: the '
          'same per spawn while %d run at once (xapisim, loaded, answers '
          'slower)' % args.spawns)
    print('pool x: %d x held / connections / one: what the pool alone '
          'makes of %d spawns at once, in units of one spawn (goal <= 2)'
          % (args.spawns, args.spawns))
    print('wait: time a spawn waited for a free XenAPI connection')
    print('short call: median / worst of VM.get_record made every 50 ms '
          'while the spawns ran')
    print('dom0 call: mean time of a dom0 plugin call (isolation rules) '
          'during the run: xapisim runs each as a Python process')


if __name__ == '__main__':
    main()
