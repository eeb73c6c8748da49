#!/usr/bin/env python3
"""nova-xen's network isolation plugin: anti-spoofing rules per VIF in dom0.

For every VIF the driver plugs, dom0 lets the guest send only from the
VIF's MAC address and its fixed IP addresses, and drops everything else
the guest sends through that VIF:

- Ethernet: source MAC must be the VIF's (or one of ``macs``); only ARP,
  IPv4 and IPv6 frames (ethertype) pass, so VLAN-tagged, LLC and other
  frames are dropped.
- ARP: requests and replies only, Ethernet/IPv4 only, sender hardware
  address = the VIF's MAC (or one of ``macs``), sender protocol address =
  one of its IPv4 addresses (or 0.0.0.0 in an ARP probe).
- IPv4: source = one of its addresses; with ``allow_dhcp`` also
  0.0.0.0 -> 255.255.255.255 udp 68 -> 67 (DHCP discover/request).
  DHCP server replies (udp 67 -> 68) are dropped.
- IPv6: source = one of its addresses or the EUI-64 link-local address
  derived from the MAC; the unspecified address :: only for duplicate
  address detection (a neighbour solicitation for one of its own
  addresses) and MLDv2 reports.  Router advertisements, redirects and
  DHCPv6 server replies (udp 547 -> 546) are dropped.  Neighbour
  advertisements must advertise one of its own addresses (target), and
  neighbour solicitations and advertisements from its addresses may
  carry a link-layer address option only if it is the VIF's MAC (and no
  other option).  A guest whose link-local address is not the EUI-64 one
  (RFC 7217 stable privacy addresses) must be given it in ``ipv6``.

``ipv4`` and ``ipv6`` may hold networks (``10.0.0.0/24``) besides single
addresses: Neutron's allowed address pairs of the port (a VRRP address, a
range a router VM forwards for).  ``macs`` are more source MAC addresses
(the pairs' own MACs); the EUI-64 link-local address of each is allowed
too.  Any allowed MAC may send from any allowed address: nft sets of
MAC . address concatenations with ranges need a newer kernel than dom0's
4.19, and OVN's port security enforces the exact pairs anyway.  A port
whose port security is off gets no rules at all: the driver calls
``remove_rules`` for its VIF instead.

How: nftables, one table per VIF (``netdev nova_xen_<vif uuid hex>``)
with a base chain on the *ingress* hook of each of the VIF's dom0 devices
(``vifD.N`` for the PV device, ``tapD.N`` for the emulated one of an HVM
guest).  Why nftables and netdev ingress:

- The ingress hook sees a frame as it leaves the guest, before any
  switch: it works whatever the bridge is, XCP-ng's default Open vSwitch
  or a Linux bridge.  ebtables (bridge-family hooks) only ever sees
  frames that go through a Linux bridge: with Open vSwitch it filters
  nothing at all, silently.
- One ``nft -f`` run is one transaction: re-applying a VIF's rules
  replaces its table atomically (never a moment without rules, never
  two sets), which ebtables/arptables/ip6tables cannot do per VIF.
- nftables can look into NDP (the target address of a neighbour
  advertisement, its options), which ebtables cannot.

The XCP-ng 8.x dom0 kernel (4.19) has everything this needs
(NF_TABLES, NF_TABLES_NETDEV, NETFILTER_INGRESS), but XCP-ng's dom0
package set pulls in iptables and ipset, not nftables: install the
``nftables`` package in dom0 where ``nft`` is missing.  Without ``nft``
``apply_rules`` and ``list_rules`` fail with
``NOVA_XEN_ISOLATION_UNAVAILABLE`` (nova-compute checks this at start-up
and refuses to start), ``remove_rules`` has nothing to remove: there is
deliberately no ebtables fallback, because on the default Open vSwitch
backend it would report success while filtering nothing.

Device names change when a guest reboots (they carry the domain id), so
the driver re-applies the VIF's rules with the new names; the whole
table is replaced and the old names' chains go with it.  A device is
claimed by one VIF only: a stale chain of another VIF on the same device
name is removed in the same transaction.  Only devices that exist are
hooked (older kernels refuse a chain for a missing device, newer ones
would hook any later device of that name): apply the rules again when
a device of the VIF appears.

Functions (``params`` is a JSON object, the result a JSON value):

- ``apply_rules``: ``{vif_uuid, devices: ["vif5.0", "tap5.0"], mac,
  ipv4: [...], ipv6: [...], macs: [...], allow_dhcp: true}`` ->
  ``{vif_uuid, backend: "nftables", devices: [hooked], missing: [absent]}``.
  Devices that do not exist are skipped and listed in ``missing``; if
  none exists: ``NOVA_XEN_NO_SUCH_DEVICE [device, ...]``.
- ``remove_rules``: ``{vif_uuid}`` -> ``{vif_uuid, removed: bool}``.
- ``list_rules``: ``{}`` -> ``{backend: "nftables",
  vifs: {vif_uuid: [device, ...]}}``.

Errors: ``NOVA_XEN_INVALID_ARGUMENT [name, reason]``,
``NOVA_XEN_ISOLATION_UNAVAILABLE [reason]``,
``NOVA_XEN_NO_SUCH_DEVICE [device...]``,
``NOVA_XEN_NFT_FAILED [exit status, nft's message]``.

``NOVA_XEN_NFT`` in the environment names the ``nft`` binary to use
(tests only; xapi never sets it).
"""

import ipaddress
import os
import re

import nova_xen_dom0lib as lib

BACKEND = 'nftables'
TABLE_PREFIX = 'nova_xen_'
# Before anything else on the device's ingress hook.
PRIORITY = -500
NFT_TIMEOUT = 60
MAX_ADDRESSES = 64
MAX_DEVICES = 8
MAX_MACS = 16

_DEVICE_RE = re.compile(r'^(vif|tap)[0-9]{1,5}\.[0-9]{1,5}\Z')
_TABLE_RE = re.compile(r'^table netdev (%s[0-9a-f]{32}) \{' % TABLE_PREFIX)
_CHAIN_RE = re.compile(r'^\s*chain (\S+) \{')
_HOOK_RE = re.compile(r'hook ingress device "?([A-Za-z0-9_.-]+)"?')
_PARAMS = ('vif_uuid', 'devices', 'mac', 'ipv4', 'ipv6', 'macs',
           'allow_dhcp')


# -- arguments ------------------------------------------------------------

def _only(params, names):
    for name in params:
        if name not in names:
            raise lib.InvalidArgument(name, 'is not an argument of this call')


def _devices(params):
    devices = lib.arg(params, 'devices', 'list', max_len=MAX_DEVICES)
    if not devices:
        raise lib.InvalidArgument('devices', 'must name at least one device')
    for dev in devices:
        if not isinstance(dev, str) or not _DEVICE_RE.match(dev):
            raise lib.InvalidArgument(
                'devices', 'must be dom0 device names like vif5.0 or tap5.0')
    if len(set(devices)) != len(devices):
        raise lib.InvalidArgument('devices', 'names a device twice')
    return devices


def _unicast(name, mac):
    first = int(mac[:2], 16)
    if first & 1 or mac == '00:00:00:00:00:00':
        raise lib.InvalidArgument(name, 'must be a unicast MAC address')
    return mac


def _mac(params):
    return _unicast('mac', lib.arg(params, 'mac', 'mac'))


def _macs(params, own):
    """The other MACs the guest may send from, without its own."""
    values = lib.arg(params, 'macs', 'list', [], max_len=MAX_MACS)
    found = []
    for value in values:
        mac = _unicast('macs', lib.arg({'macs': value}, 'macs', 'mac'))
        if mac != own and mac not in found:
            found.append(mac)
    return found


def _addresses(params, name, version):
    """Addresses and networks, collapsed (no two overlap: nft refuses
    overlapping intervals in a set)."""
    values = lib.arg(params, name, 'list', [], max_len=MAX_ADDRESSES)
    found = []
    for value in values:
        if not isinstance(value, str) or '%' in value:
            raise lib.InvalidArgument(name, 'must list IPv%d addresses'
                                      % version)
        try:
            net = ipaddress.ip_network(value)
        except ValueError:
            raise lib.InvalidArgument(
                name, '%r is not an IPv%d address or network (host bits '
                'must be zero)' % (value, version))
        if net.version != version or (version == 4 and str(
                net if '/' in value else net.network_address) != value):
            raise lib.InvalidArgument(name, '%r is not an IPv%d address'
                                      % (value, version))
        if net.num_addresses == 1:
            addr = net.network_address
            if addr.is_unspecified or addr.is_multicast or \
                    addr.is_loopback or (version == 4 and addr ==
                                         ipaddress.IPv4Address(
                                             '255.255.255.255')):
                raise lib.InvalidArgument(
                    name, '%s cannot be a guest address' % value)
        elif net.is_multicast or net.is_loopback:
            raise lib.InvalidArgument(name, '%s cannot be guest addresses'
                                      % value)
        found.append(net)
    return [str(net.network_address) if net.num_addresses == 1
            else str(net) for net in ipaddress.collapse_addresses(found)]


def link_local(mac):
    """The EUI-64 link-local IPv6 address of ``mac`` (RFC 4291)."""
    octets = [int(part, 16) for part in mac.split(':')]
    octets[0] ^= 0x02
    iid = octets[:3] + [0xff, 0xfe] + octets[3:]
    return str(ipaddress.IPv6Address(bytes([0xfe, 0x80] + [0] * 6 + iid)))


def table_name(vif_uuid):
    return TABLE_PREFIX + vif_uuid.replace('-', '')


def _uuid_of(table):
    hexa = table[len(TABLE_PREFIX):]
    return '-'.join((hexa[:8], hexa[8:12], hexa[12:16], hexa[16:20],
                     hexa[20:]))


def _chain_name(device):
    return 'in_' + device.replace('.', '_')


# -- the ruleset ------------------------------------------------------------

def _hex(value, bits):
    return '0x%0*x' % (bits // 4, value)


def _own_ipv6(macs, ipv6):
    """The guest's IPv6 networks: those given and the EUI-64 link-local
    address of each of its MACs, collapsed."""
    nets = [ipaddress.ip_network(link_local(mac)) for mac in macs]
    nets += [ipaddress.ip_network(value) for value in ipv6]
    return list(ipaddress.collapse_addresses(nets))


def _element(net):
    return str(net.network_address) if net.num_addresses == 1 else str(net)


def _range(net):
    """A network as a raw 128-bit value or range (an NDP target is read
    from the packet as bits, not as an address)."""
    first, last = int(net.network_address), int(net.broadcast_address)
    if first == last:
        return _hex(first, 128)
    return '%s-%s' % (_hex(first, 128), _hex(last, 128))


def ruleset(vif_uuid, devices, mac, ipv4, ipv6, allow_dhcp, macs=()):
    """The nft script body defining the VIF's table (without replace)."""
    all_macs = [mac] + [other for other in macs if other != mac]
    own6 = _own_ipv6(all_macs, ipv6)
    targets = '{ %s }' % ', '.join(_range(net) for net in own6)
    macs_set = '{ %s }' % ', '.join(all_macs)
    macs_int = '{ %s }' % ', '.join(
        _hex(int(one.replace(':', ''), 16), 48) for one in all_macs)
    lines = ['table netdev %s {' % table_name(vif_uuid)]
    if ipv4:
        lines += ['  set own_ipv4 { type ipv4_addr; flags interval; '
                  'elements = { %s } }' % ', '.join(ipv4)]
    lines += ['  set own_ipv6 { type ipv6_addr; flags interval; '
              'elements = { %s } }'
              % ', '.join(_element(net) for net in own6)]
    for dev in devices:
        lines += ['  chain %s {' % _chain_name(dev),
                  '    type filter hook ingress device "%s" priority %d; '
                  'policy drop;' % (dev, PRIORITY),
                  '    goto guest',
                  '  }']
    lines += ['  chain guest {',
              '    ether saddr != %s counter drop' % macs_set,
              '    ether type arp goto arp_from_guest',
              '    ether type ip goto ipv4_from_guest',
              '    ether type ip6 goto ipv6_from_guest',
              '    counter drop',
              '  }',
              '  chain arp_from_guest {',
              '    arp htype != 1 counter drop',
              '    arp ptype != ip counter drop',
              '    arp hlen != 6 counter drop',
              '    arp plen != 4 counter drop',
              '    arp operation != { request, reply } counter drop',
              '    arp saddr ether != %s counter drop' % macs_set]
    if ipv4:
        lines += ['    arp saddr ip @own_ipv4 accept']
    lines += ['    arp operation request arp saddr ip 0.0.0.0 accept',
              '    counter drop',
              '  }',
              '  chain ipv4_from_guest {',
              '    udp sport 67 udp dport 68 counter drop']
    if ipv4:
        lines += ['    ip saddr @own_ipv4 accept']
    if allow_dhcp:
        lines += ['    ip saddr 0.0.0.0 ip daddr 255.255.255.255 '
                  'udp sport 68 udp dport 67 accept']
    lines += ['    counter drop',
              '  }',
              '  chain ipv6_from_guest {',
              '    icmpv6 type { nd-router-advert, nd-redirect } counter drop',
              '    udp sport 547 udp dport 546 counter drop',
              '    ip6 saddr :: goto unspecified_from_guest',
              '    ip6 saddr != @own_ipv6 counter drop',
              '    icmpv6 type nd-neighbor-advert goto na_from_guest',
              '    icmpv6 type nd-neighbor-solicit goto ns_from_guest',
              # positive: a header too short to read matches nothing
              '    ip6 saddr @own_ipv6 accept',
              '    counter drop',
              '  }',
              # Duplicate address detection of its own addresses only;
              # @th,64,128 is the target address of an NS or NA.
              '  chain unspecified_from_guest {',
              '    ip6 nexthdr ipv6-icmp icmpv6 type nd-neighbor-solicit '
              '@th,64,128 %s accept' % targets,
              '    icmpv6 type mld2-listener-report accept',
              '    counter drop',
              '  }',
              # Without extension headers, an NA is 24 bytes, or 32 with a
              # target link-layer address option (type 2, length 1).
              '  chain na_from_guest {',
              '    ip6 nexthdr != ipv6-icmp counter drop',
              '    @th,64,128 != %s counter drop' % targets,
              '    ip6 length 24 accept',
              '    ip6 length 32 @th,192,16 0x0201 @th,208,48 %s accept'
              % macs_int,
              '    counter drop',
              '  }',
              # An NS may carry a source link-layer option (type 1).
              '  chain ns_from_guest {',
              '    ip6 nexthdr != ipv6-icmp counter drop',
              '    ip6 length 24 accept',
              '    ip6 length 32 @th,192,16 0x0101 @th,208,48 %s accept'
              % macs_int,
              '    counter drop',
              '  }',
              '}']
    return '\n'.join(lines) + '\n'


# -- running nft ----------------------------------------------------------

def _nft_path(required=True):
    path = lib.find_command('nft', 'NOVA_XEN_NFT')
    if path is None and required:
        lib.fail('NOVA_XEN_ISOLATION_UNAVAILABLE',
                 'the nft command is not installed in dom0 '
                 '(install the nftables package)')
    return path


def _nft(nft, args, script=None):
    """Run nft; its stdout, or NOVA_XEN_NFT_FAILED."""
    status, out, err = lib.run(
        [nft] + args, script.encode('ascii') if script is not None else None,
        timeout=NFT_TIMEOUT)
    if status is None:
        lib.fail('NOVA_XEN_NFT_FAILED', 'timeout',
                 'nft took more than %d seconds' % NFT_TIMEOUT)
    if status != 0:
        lib.fail('NOVA_XEN_NFT_FAILED', status,
                 err.decode('utf-8', 'replace').strip()[-2000:])
    return out.decode('utf-8', 'replace')


def _apply(nft, script):
    # "-f /dev/stdin" is "-f -", understood by old nft versions too.
    return _nft(nft, ['-f', '/dev/stdin'], script)


def _hooked(nft):
    """{table: {chain: device}} for every table of ours."""
    tables = {}
    table = chain = None
    for line in _nft(nft, ['list', 'ruleset', 'netdev']).splitlines():
        match = _TABLE_RE.match(line)
        if match:
            table, chain = match.group(1), None
            tables[table] = {}
            continue
        if line.startswith('table '):
            table = None
            continue
        if table is None:
            continue
        match = _CHAIN_RE.match(line)
        if match:
            chain = match.group(1)
            continue
        match = _HOOK_RE.search(line)
        if match and chain:
            tables[table][chain] = match.group(1)
    return tables


def _replace(name):
    # "add" makes "delete" succeed when the table does not exist yet; both
    # and the new definition are one transaction.
    return 'add table netdev %s\ndelete table netdev %s\n' % (name, name)


def _exists(device):
    # the kernel lists every network device in sysfs
    return os.path.isdir(lib.dom0_path('/sys/class/net/' + device))


# -- the plugin functions -------------------------------------------------

def apply_rules(session, params):
    _only(params, _PARAMS)
    vif_uuid = lib.arg(params, 'vif_uuid', 'uuid')
    devices = _devices(params)
    mac = _mac(params)
    ipv4 = _addresses(params, 'ipv4', 4)
    ipv6 = _addresses(params, 'ipv6', 6)
    macs = _macs(params, mac)
    allow_dhcp = lib.arg(params, 'allow_dhcp', 'bool', True)
    nft = _nft_path()
    present = [dev for dev in devices if _exists(dev)]
    missing = [dev for dev in devices if dev not in present]
    if not present:
        lib.fail('NOVA_XEN_NO_SUCH_DEVICE', *devices)
    name = table_name(vif_uuid)
    script = _replace(name)
    # A device belongs to one VIF: drop stale chains of others on it.
    for other, chains in sorted(_hooked(nft).items()):
        for chain, device in sorted(chains.items()):
            if other != name and device in present:
                lib.log('isolation: %s takes %s from %s', vif_uuid, device,
                        _uuid_of(other))
                script += 'delete chain netdev %s %s\n' % (other, chain)
    script += ruleset(vif_uuid, present, mac, ipv4, ipv6, allow_dhcp, macs)
    _apply(nft, script)
    lib.log('isolation: %s on %s: mac %s ipv4 %s ipv6 %s', vif_uuid,
            ','.join(present), ','.join([mac] + macs), ipv4, ipv6)
    return {'vif_uuid': vif_uuid, 'backend': BACKEND, 'devices': present,
            'missing': missing}


def remove_rules(session, params):
    _only(params, ('vif_uuid',))
    vif_uuid = lib.arg(params, 'vif_uuid', 'uuid')
    nft = _nft_path(required=False)
    if nft is None:
        # without nft there can be no rules: nothing to remove
        return {'vif_uuid': vif_uuid, 'removed': False}
    name = table_name(vif_uuid)
    existed = name in _hooked(nft)
    _apply(nft, _replace(name))
    if existed:
        lib.log('isolation: removed the rules of %s', vif_uuid)
    return {'vif_uuid': vif_uuid, 'removed': existed}


def list_rules(session, params):
    _only(params, ())
    nft = _nft_path()
    vifs = {}
    for table, chains in _hooked(nft).items():
        vifs[_uuid_of(table)] = sorted(chains.values())
    return {'backend': BACKEND, 'vifs': vifs}


if __name__ == '__main__':
    lib.main({'apply_rules': apply_rules, 'remove_rules': remove_rules,
              'list_rules': list_rules})
