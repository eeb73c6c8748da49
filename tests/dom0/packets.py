"""Ethernet frames built byte by byte: ARP, IPv4/UDP, IPv6/UDP, ICMPv6 NDP.

Just enough of each protocol to send what a guest (honest or not) sends,
with correct checksums so that nothing but the filter under test can drop
a frame.
"""

import socket
import struct

BROADCAST = 'ff:ff:ff:ff:ff:ff'
ETH_ARP = 0x0806
ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86dd
ETH_VLAN = 0x8100
PROTO_UDP = 17
PROTO_ICMPV6 = 58
ND_RS, ND_RA, ND_NS, ND_NA, ND_REDIRECT = 133, 134, 135, 136, 137


def mac(text):
    return bytes(int(part, 16) for part in text.split(':'))


def ip4(text):
    return socket.inet_pton(socket.AF_INET, text)


def ip6(text):
    return socket.inet_pton(socket.AF_INET6, text)


def multicast_mac(ipv6):
    """The 33:33:xx:xx:xx:xx Ethernet address of an IPv6 multicast group."""
    return ':'.join(['33', '33'] + ['%02x' % b for b in ip6(ipv6)[12:]])


def solicited_node(ipv6):
    tail = ip6(ipv6)[13:]
    return socket.inet_ntop(socket.AF_INET6, ip6('ff02::1:ff00:0')[:13] + tail)


def checksum(data):
    if len(data) % 2:
        data += b'\0'
    total = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return ~total & 0xffff


def ether(src, dst, ethertype, payload):
    return mac(dst) + mac(src) + struct.pack('!H', ethertype) + payload


def vlan(src, dst, vid, ethertype, payload):
    return (mac(dst) + mac(src) + struct.pack('!HHH', ETH_VLAN, vid, ethertype)
            + payload)


def arp(op, sha, spa, tpa, tha='00:00:00:00:00:00'):
    """ARP for IPv4 over Ethernet: op 1 request, 2 reply, 3 RARP."""
    return (struct.pack('!HHBBH', 1, ETH_IPV4, 6, 4, op) + mac(sha) + ip4(spa)
            + mac(tha) + ip4(tpa))


def ipv4(src, dst, proto, payload, ident=0, ttl=64):
    header = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(payload), ident, 0,
                         ttl, proto, 0, ip4(src), ip4(dst))
    header = header[:10] + struct.pack('!H', checksum(header)) + header[12:]
    return header + payload


def udp4(src, dst, sport, dport, data, ident=0):
    length = 8 + len(data)
    pseudo = ip4(src) + ip4(dst) + struct.pack('!BBH', 0, PROTO_UDP, length)
    segment = struct.pack('!HHHH', sport, dport, length, 0) + data
    csum = checksum(pseudo + segment) or 0xffff
    segment = segment[:6] + struct.pack('!H', csum) + segment[8:]
    return ipv4(src, dst, PROTO_UDP, segment, ident)


def ipv6(src, dst, next_header, payload, hop_limit=64, flow=0):
    return (struct.pack('!IHBB', (6 << 28) | (flow & 0xfffff), len(payload),
                        next_header, hop_limit) + ip6(src) + ip6(dst) + payload)


def _upper6(src, dst, proto, segment, csum_at):
    pseudo = ip6(src) + ip6(dst) + struct.pack('!IxxxB', len(segment), proto)
    csum = checksum(pseudo + segment)
    if proto == PROTO_UDP:
        csum = csum or 0xffff
    return segment[:csum_at] + struct.pack('!H', csum) + segment[csum_at + 2:]


def udp6(src, dst, sport, dport, data, flow=0):
    segment = struct.pack('!HHHH', sport, dport, 8 + len(data), 0) + data
    return ipv6(src, dst, PROTO_UDP, _upper6(src, dst, PROTO_UDP, segment, 6),
                flow=flow)


def icmpv6(src, dst, icmp_type, body, code=0, hop_limit=255, flow=0):
    segment = struct.pack('!BBH', icmp_type, code, 0) + body
    return ipv6(src, dst, PROTO_ICMPV6,
                _upper6(src, dst, PROTO_ICMPV6, segment, 2), hop_limit, flow)


def lla_option(kind, address):
    """Source (1) or target (2) link-layer address option."""
    return struct.pack('!BB', kind, 1) + mac(address)


def neighbour_solicitation(src, dst, target, options=b'', flow=0):
    return icmpv6(src, dst, ND_NS, b'\0' * 4 + ip6(target) + options,
                  flow=flow)


def neighbour_advertisement(src, dst, target, options=b'', flow=0,
                            flags=0x60000000):
    return icmpv6(src, dst, ND_NA, struct.pack('!I', flags) + ip6(target)
                  + options, flow=flow)


def router_solicitation(src, options=b'', flow=0):
    return icmpv6(src, 'ff02::2', ND_RS, b'\0' * 4 + options, flow=flow)


def router_advertisement(src, router_mac, flow=0):
    # hop limit 64, no flags, lifetime 1800 s, reachable 0, retrans 0
    body = struct.pack('!BBHII', 64, 0, 1800, 0, 0) + lla_option(1, router_mac)
    return icmpv6(src, 'ff02::1', ND_RA, body, flow=flow)


def redirect(src, dst, target, destination, flow=0):
    return icmpv6(src, dst, ND_REDIRECT, b'\0' * 4 + ip6(target)
                  + ip6(destination), flow=flow)
