"""How long a live-migrated guest runs unfiltered on its new host.

Run from the repository root (as root: the isolation plugin runs nft in
the simulated dom0s)::

    python benchmarks/migration_rules_gap.py [--moves 20] [--latency-ms 0]

xapi resumes a XenMotioned guest on the destination before
``VM.pool_migrate`` returns, and offers no way to keep it paused there; so
the guest can send frames before the destination's dom0 has the
isolation rules of its VIFs.  nova-xen puts them there as soon as xapi
reports the move done (``migration.py``).  This script moves one running
VM with two VIFs back and forth between the two hosts of a simulated pool
with the driver's own session and isolation code, and prints, over the
moves, the time from xapi's answer to the rules being in place on the
destination (median, 95th percentile, maximum), with ``--latency-ms``
added to every XenAPI call (a remote pool master).  The time xapi takes
to tell the driver the task has ended is one ``event.from`` answer: see
benchmarks/xapisim_bench.py for that latency.
"""

import argparse
import os
import statistics
import sys
import time
import types

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

import xapisim  # noqa: E402
from xapisim.client import Control  # noqa: E402

from nova_xen import network  # noqa: E402
from nova_xen import session as session_mod  # noqa: E402
from tests import records  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--moves', type=int, default=20)
    parser.add_argument('--latency-ms', type=int, default=0)
    args = parser.parse_args()
    with xapisim.running(hosts=2, guest_delay=0.01) as world:
        pool = world['pools'][0]
        session = session_mod.Session(pool['master'], world['username'],
                                      world['password']).connect()
        x = session.call
        hosts = [x('host.get_by_uuid', h['uuid']) for h in pool['hosts']]
        net = [n for n in x('network.get_all')
               if x('network.get_bridge', n) == 'xenbr0'][0]
        vm = x('VM.create', records.vm_record(name='mover'))
        sr = x('pool.get_default_SR', x('pool.get_all')[0])
        vdi = x('VDI.create', {
            'SR': sr, 'virtual_size': str(64 * records.MIB), 'type': 'user',
            'sharable': False, 'read_only': False, 'other_config': {},
            'name_label': 'disk', 'name_description': '', 'sm_config': {},
            'xenstore_data': {}, 'tags': []})
        x('VBD.create', {
            'VM': vm, 'VDI': vdi, 'userdevice': '0', 'bootable': True,
            'mode': 'RW', 'type': 'Disk', 'empty': False,
            'unpluggable': True, 'other_config': {},
            'qos_algorithm_type': '', 'qos_algorithm_params': {}})
        for device in range(2):
            x('VIF.create', {
                'VM': vm, 'network': net, 'device': str(device),
                'MAC': 'fa:16:3e:00:00:%02x' % device, 'MTU': '1500',
                'other_config': {}, 'qos_algorithm_type': '',
                'qos_algorithm_params': {}, 'locking_mode': 'network_default',
                'ipv4_allowed': ['192.0.2.%d' % (device + 10)],
                'ipv6_allowed': []})
        x('VM.start_on', vm, hosts[0], False, False)
        isolation = network.Isolation(session, types.SimpleNamespace(
            ref=hosts[0], nodename='xcp-ng-1-1'))
        isolation.apply(vm)
        Control(pool['master'], world['username'],
                world['password']).set_latency(args.latency_ms)
        gaps = []
        for move in range(args.moves):
            dest = hosts[(move + 1) % 2]
            session.call_async('VM.pool_migrate', vm, dest, {'live': 'true'})
            done = time.monotonic()
            isolation.apply(vm, force=True)
            gaps.append((time.monotonic() - done) * 1000)
        gaps.sort()
        print('%d moves of a running VM with 2 VIFs, %d ms XenAPI latency:'
              % (args.moves, args.latency_ms))
        print('  rules in place on the destination after xapi reported the '
              'move done: median %.1f ms, 95th percentile %.1f ms, max %.1f '
              'ms' % (statistics.median(gaps),
                      gaps[int(0.95 * (len(gaps) - 1))], gaps[-1]))
        session.close()


if __name__ == '__main__':
    main()
