"""The minicloud's compute table, from xapisim's JSON line.

    computes.py XAPISIM_JSON "POOL.HOST ..."

prints one line per nova-compute, in the order of the specs (xapisim's
numbering, from 1):

    SERVICE HOST POOL.HOST XAPI_HOST HOST_UUID MASTER POOL_NAME

e.g. ``n-cpu-3 compute3 2.1 xcp-ng-2-1 <uuid> http://127.0.0.4:8080
pool-1``.  Exits 1 with a sentence if a spec names no host of xapisim.
"""

import json
import sys


def table(world, specs):
    pools = world['pools']
    lines = []
    for n, spec in enumerate(specs, 1):
        try:
            p, h = (int(i) for i in spec.split('.'))
        except ValueError:
            raise SystemExit('%s is not POOL.HOST (MINICLOUD_COMPUTES)'
                             % spec)
        if not (1 <= p <= len(pools) and 1 <= h <= len(pools[p - 1]['hosts'])):
            raise SystemExit('xapisim has no host %s: %d pool(s) of %s '
                             'host(s) (MINICLOUD_COMPUTES)'
                             % (spec, len(pools), '/'.join(
                                 str(len(pool['hosts'])) for pool in pools)))
        pool = pools[p - 1]
        host = pool['hosts'][h - 1]
        lines.append('n-cpu-%d compute%d %s %s %s %s %s' % (
            n, n, spec, host['name_label'], host['uuid'], pool['master'],
            pool['name_label']))
    return lines


def main(argv):
    with open(argv[0]) as f:
        world = json.load(f)
    for line in table(world, argv[1].split()):
        print(line)


if __name__ == '__main__':
    main(sys.argv[1:])
