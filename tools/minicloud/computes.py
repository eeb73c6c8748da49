"""The minicloud's compute table, from xapisim's JSON line.

    computes.py XAPISIM_JSON "POOL.HOST ..."
    computes.py --chassis XAPISIM_JSON "POOL.HOST ..."
    computes.py --provider XAPISIM_JSON CIDR

prints one line per nova-compute, in the order of the specs (xapisim's
numbering, from 1):

    SERVICE HOST POOL.HOST XAPI_HOST HOST_UUID MASTER POOL_NAME

e.g. ``n-cpu-3 compute3 2.1 xcp-ng-2-1 <uuid> http://127.0.0.4:8080
pool-1``; with ``--chassis``, the OVN chassis of each (its host's dom0,
from xapisim's ``--dom0-network ovs``):

    SERVICE HOST SYSTEM_ID NETNS OVSDB OVS_RUNDIR UNDERLAY_IP

(SYSTEM_ID: the host's uuid).  Exits 1 with a sentence if a spec names
no host of xapisim, or (``--chassis``) the host has no dom0 network.

With ``--provider``, the root namespace's link into xapisim's provider
LAN (the LAN every dom0's ``xenbr1`` is on): the LAN's namespace and
bridge, and the address the root namespace takes there, the first of
CIDR (the provider subnet's gateway), e.g. ``xsim-abc-lan br0
198.51.100.1/24``.
"""

import ipaddress
import json
import sys


def _hosts(world, specs):
    """(n, spec, pool, host) for each spec, from 1."""
    pools = world['pools']
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
        yield n, spec, pool, pool['hosts'][h - 1]


def table(world, specs):
    lines = []
    for n, spec, pool, host in _hosts(world, specs):
        lines.append('n-cpu-%d compute%d %s %s %s %s %s' % (
            n, n, spec, host['name_label'], host['uuid'], pool['master'],
            pool['name_label']))
    return lines


def chassis(world, specs):
    lines = []
    for n, spec, pool, host in _hosts(world, specs):
        dom0 = host.get('dom0')
        if not dom0:
            raise SystemExit('xapisim host %s (%s) has no dom0 network: '
                             'start xapisim with --dom0-network ovs'
                             % (spec, host['name_label']))
        lines.append('n-cpu-%d compute%d %s %s %s %s %s' % (
            n, n, host['uuid'], dom0['netns'], dom0['ovsdb'],
            dom0['ovs_rundir'], dom0['underlay_ip']))
    return lines


def provider_link(world, cidr):
    provider = (world.get('dom0_network') or {}).get('provider')
    if not provider:
        raise SystemExit('xapisim has no provider LAN: start it with '
                         '--dom0-network ovs')
    try:
        net = ipaddress.ip_network(cidr)
    except ValueError as exc:
        raise SystemExit('MINICLOUD_SUBNET_CIDR: %s' % exc)
    if net.version != 4 or net.num_addresses < 4:
        raise SystemExit('MINICLOUD_SUBNET_CIDR %s is not an IPv4 subnet '
                         'with room for a gateway and servers' % cidr)
    return ['%s %s %s/%d' % (provider['netns'], provider['bridge'],
                             net.network_address + 1, net.prefixlen)]


def main(argv):
    lister = table
    if argv and argv[0] == '--provider':
        with open(argv[1]) as f:
            world = json.load(f)
        print(provider_link(world, argv[2])[0])
        return
    if argv and argv[0] == '--chassis':
        lister = chassis
        argv = argv[1:]
    with open(argv[0]) as f:
        world = json.load(f)
    for line in lister(world, argv[1].split()):
        print(line)


if __name__ == '__main__':
    main(sys.argv[1:])
