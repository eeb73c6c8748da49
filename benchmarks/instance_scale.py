"""How the driver's view of its instances scales: 10 against 1,000 VMs.

Run from the repository root::

    python benchmarks/instance_scale.py [--sizes 10,1000]

For each size, a simulated pool gets that many running VMs tagged as
instances of its master host, and the driver's VM watcher (events.py,
what nova-compute's start-up, ``get_info``, ``list_instances`` and Nova's
power-state sync read) is timed:

* start-up: the watcher's first synchronisation (one ``event.from``);
* sync: one ``get_info``-style lookup for every instance, as Nova's
  ``_sync_power_states`` makes once a period;
* list: ``list_instance_uuids``.

Each line gives the seconds and the per-instance cost, and the ratio of
the largest size's per-instance cost to the smallest's: 1.0 means it
scales linearly (O(1) per instance).
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

import xapisim  # noqa: E402
from xapisim.client import Control  # noqa: E402

from nova_xen import events  # noqa: E402
from nova_xen import session as session_mod  # noqa: E402


def measure(size):
    with xapisim.running(hosts=1, guest_delay=0.0) as world:
        pool = world['pools'][0]
        control = Control(pool['master'], world['username'],
                          world['password'], ca_file=world.get('ca_file'))
        uuids = control.create_vms(size, running=True, instances=True)['vms']
        session = session_mod.Session(pool['master'], world['username'],
                                      world['password'],
                                      ca_file=world.get('ca_file')).connect()
        host = session.call('host.get_by_uuid', pool['hosts'][0]['uuid'])
        watcher = events.VMWatcher(session, host)
        start = time.monotonic()
        watcher.start()
        startup = time.monotonic() - start
        start = time.monotonic()
        for uuid in uuids:
            if watcher.record(uuid)[0] is None:
                raise SystemExit('instance %s not found' % uuid)
        sync = time.monotonic() - start
        start = time.monotonic()
        listed = watcher.uuids()
        listing = time.monotonic() - start
        if len(listed) != size:
            raise SystemExit('listed %d of %d' % (len(listed), size))
        watcher.stop()
        session.close()
    return {'start-up (first event.from)': startup,
            'sync (a lookup per instance)': sync,
            'list_instance_uuids': listing}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', default='10,1000')
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(',')]
    results = {size: measure(size) for size in sizes}
    small, large = sizes[0], sizes[-1]
    print('%-32s %s %s' % ('what', ' '.join(
        '%16s' % ('%d VMs' % n) for n in sizes), '  per-VM ratio'))
    for name in results[small]:
        cells = ' '.join('%10.4f s    ' % results[n][name] for n in sizes)
        ratio = (results[large][name] / large) / max(
            results[small][name] / small, 1e-9)
        print('%-32s %s %8.1f' % (name, cells, ratio))


if __name__ == '__main__':
    main()
