"""nova_xen_isolation.py tested for real: packets through a namespaced dom0.

Each test builds its own lab (tests/dom0/netlab.py): a "dom0" network
namespace with a Linux bridge and veth "VIFs" vif5.0 (guest 1) and
vif6.0 (guest 2).  The plugin runs in dom0 as xapi runs it, then guest 1
sends honest and forged frames and the test checks, byte for byte, which
of them reach guest 2.

These tests need root, iproute2 and nftables.  Where network namespaces
cannot be built they fail, saying why: they never skip.
"""

import json
import os
import subprocess
import unittest

import XenAPI

from tests.dom0 import netlab
from tests.dom0 import packets as pk
from tests.xapisim.base import SimTestCase

VIF1 = 'a3c1e6f2-5b7d-4e0a-9f12-3c4d5e6f7a81'
VIF2 = 'b4d2f703-6c8e-4f1b-8a23-4d5e6f708192'
MAC1 = 'fa:16:3e:00:00:01'
MAC2 = 'fa:16:3e:00:00:02'
ROGUE_MAC = 'fa:16:3e:00:00:99'
IP1, IP2, ROGUE_IP = '192.0.2.11', '192.0.2.12', '198.51.100.7'
IP1_6, IP2_6, ROGUE_IP6 = '2001:db8::11', '2001:db8::12', '2001:db8::99'
# EUI-64 link-local addresses: the MAC with the U/L bit flipped, ff:fe inside
LLA1 = 'fe80::f816:3eff:fe00:1'
LLA2 = 'fe80::f816:3eff:fe00:2'
ALL_NODES = 'ff02::1'
# allowed address pairs: a VRRP address with its virtual MAC, networks
VIP, VRRP_MAC = '192.0.2.100', '00:00:5e:00:01:07'
VRRP_LLA = 'fe80::200:5eff:fe00:107'
PAIR_NET, PAIR_NET6 = '203.0.113.0/28', '2001:db8:1::/64'


class IsolationLabTestCase(unittest.TestCase):

    def setUp(self):
        super(IsolationLabTestCase, self).setUp()
        self.lab = netlab.Lab()
        try:
            self.lab.build()
        except netlab.LabUnavailable as exc:
            self.fail('NETWORK NAMESPACES UNAVAILABLE: %s' % exc)
        self.addCleanup(self.lab.destroy)
        self.guest1 = self.lab.add_guest(1)
        self.guest2 = self.lab.add_guest(2)
        self.lab.plug('vif5.0', self.guest1, MAC1)
        self.lab.plug('vif6.0', self.guest2, MAC2)
        self.flow = 0

    # -- the plugin ------------------------------------------------------

    def apply(self, **overrides):
        params = {'vif_uuid': VIF1, 'devices': ['vif5.0'], 'mac': MAC1,
                  'ipv4': [IP1], 'ipv6': [IP1_6]}
        params.update(overrides)
        return self.lab.plugin('apply_rules', params)

    def listed(self):
        return self.lab.plugin('list_rules', {})['vifs']

    def assertPluginFails(self, expected, fn, params, env=None):
        with self.assertRaises(netlab.PluginFailure) as ctx:
            self.lab.plugin(fn, params, env=env)
        self.assertEqual(expected, ctx.exception.description[:len(expected)])
        return ctx.exception.description

    # -- frames ----------------------------------------------------------

    def v4(self, label, src=IP1, src_mac=MAC1, dst='192.0.2.255',
           dst_mac=pk.BROADCAST, sport=4000, dport=4000):
        return pk.ether(src_mac, dst_mac, pk.ETH_IPV4,
                        pk.udp4(src, dst, sport, dport, label.encode()))

    def v6(self, label, src=IP1_6, src_mac=MAC1, dst=ALL_NODES, sport=4000,
           dport=4000):
        return pk.ether(src_mac, pk.multicast_mac(dst), pk.ETH_IPV6,
                        pk.udp6(src, dst, sport, dport, label.encode()))

    def icmp6(self, build, *args, **kwargs):
        """An NDP frame from guest 1; a flow label keeps frames distinct."""
        self.flow += 1
        src_mac = kwargs.pop('src_mac', MAC1)
        packet = build(*args, flow=self.flow, **kwargs)
        dst = packet[24:40]
        dst_mac = '33:33:' + ':'.join('%02x' % b for b in dst[12:])
        return pk.ether(src_mac, dst_mac, pk.ETH_IPV6, packet)

    def arp(self, op, spa, tpa, sha=MAC1, src_mac=MAC1):
        return pk.ether(src_mac, pk.BROADCAST, pk.ETH_ARP,
                        pk.arp(op, sha, spa, tpa))

    def assertFiltered(self, passing, dropped, sender=None, receiver=None,
                       sender_if='eth0', end=None):
        """``passing`` frames reach the receiver, ``dropped`` ones don't.

        Both are {description: frame}; ``end`` is an honest frame from
        the sender marking the end of the exchange.
        """
        frames = dict(passing, **dropped)
        self.assertEqual(len(frames), len(set(frames.values())),
                         'test frames must differ from each other')
        received = set(self.lab.exchange(
            frames.values(), sender or self.guest1, receiver or self.guest2,
            end or self.v4('end of exchange %d' % id(frames)),
            sender_if=sender_if))
        lost = sorted(k for k, f in passing.items() if f not in received)
        leaked = sorted(k for k, f in dropped.items() if f in received)
        self.assertEqual(([], []), (lost, leaked),
                         '(honest frames lost, forged frames let through)')


class AddressFilterTest(IsolationLabTestCase):

    def setUp(self):
        super(AddressFilterTest, self).setUp()
        result = self.apply()
        self.assertEqual({'vif_uuid': VIF1, 'backend': 'nftables',
                          'devices': ['vif5.0'], 'missing': []}, result)

    def test_ipv4_only_from_its_own_address(self):
        self.assertFiltered(
            {'own address, broadcast': self.v4('own'),
             'own address, unicast to guest 2': self.v4(
                 'unicast', dst=IP2, dst_mac=MAC2)},
            {'guest 2 address': self.v4('guest2', src=IP2),
             'foreign address': self.v4('rogue', src=ROGUE_IP),
             '0.0.0.0, not DHCP': self.v4('zero', src='0.0.0.0')})

    def test_only_its_own_mac(self):
        self.assertFiltered(
            {'own MAC': self.v4('own')},
            {'foreign MAC': self.v4('rogue mac', src_mac=ROGUE_MAC),
             'guest 2 MAC': self.v4('guest2 mac', src_mac=MAC2),
             'foreign MAC, IPv6': self.v6('rogue mac6', src_mac=ROGUE_MAC),
             'foreign MAC, ARP': self.arp(1, IP1, IP2, src_mac=ROGUE_MAC)})

    def test_arp_sender_must_be_its_own(self):
        self.assertFiltered(
            {'request': self.arp(1, IP1, IP2),
             'reply': self.arp(2, IP1, '192.0.2.20'),
             'gratuitous': self.arp(1, IP1, IP1),
             'probe from 0.0.0.0': self.arp(1, '0.0.0.0', IP1)},
            {'forged sender IP': self.arp(1, IP2, '192.0.2.21'),
             'forged reply for guest 2': self.arp(2, IP2, '192.0.2.22'),
             'forged sender MAC': self.arp(1, IP1, '192.0.2.23',
                                           sha=ROGUE_MAC),
             'reply from 0.0.0.0': self.arp(2, '0.0.0.0', '192.0.2.24'),
             'RARP': self.arp(3, IP1, '192.0.2.25')})

    def test_ipv6_only_from_its_own_addresses(self):
        self.assertFiltered(
            {'global address': self.v6('global'),
             'link-local address': self.v6('lla', src=LLA1),
             'unicast to guest 2': self.v6('unicast', dst=IP2_6)},
            {'foreign address': self.v6('rogue', src=ROGUE_IP6),
             'guest 2 address': self.v6('guest2', src=IP2_6),
             'guest 2 link-local': self.v6('guest2 lla', src=LLA2),
             'unspecified address, UDP': self.v6('unspecified', src='::')})

    def test_duplicate_address_detection_of_its_own_addresses(self):
        ns = pk.neighbour_solicitation
        self.assertFiltered(
            {'DAD for global': self.icmp6(ns, '::', pk.solicited_node(IP1_6),
                                          IP1_6),
             'DAD for link-local': self.icmp6(ns, '::',
                                              pk.solicited_node(LLA1), LLA1),
             'DAD with nonce option': self.icmp6(
                 ns, '::', pk.solicited_node(LLA1), LLA1,
                 options=b'\x0e\x01' + b'\x5a' * 6)},
            {'DAD for guest 2 address': self.icmp6(
                ns, '::', pk.solicited_node(IP2_6), IP2_6)})

    def test_neighbour_advertisements_only_for_its_addresses(self):
        na = pk.neighbour_advertisement
        own_option = pk.lla_option(2, MAC1)
        self.assertFiltered(
            {'own global, own MAC': self.icmp6(na, IP1_6, ALL_NODES, IP1_6,
                                               options=own_option),
             'own link-local, no option': self.icmp6(na, LLA1, ALL_NODES,
                                                     LLA1)},
            {'guest 2 target': self.icmp6(na, LLA1, ALL_NODES, IP2_6,
                                          options=own_option),
             'foreign target': self.icmp6(na, IP1_6, ALL_NODES, ROGUE_IP6),
             'own target, foreign MAC': self.icmp6(
                 na, IP1_6, ALL_NODES, IP1_6,
                 options=pk.lla_option(2, ROGUE_MAC)),
             'own target, option after another': self.icmp6(
                 na, IP1_6, ALL_NODES, IP1_6,
                 options=b'\x0e\x01' + b'\0' * 6 + pk.lla_option(2,
                                                                 ROGUE_MAC)),
             'from ::': self.icmp6(na, '::', ALL_NODES, IP1_6)})

    def test_neighbour_solicitations_carry_its_own_mac(self):
        ns = pk.neighbour_solicitation
        self.assertFiltered(
            {'resolving guest 2': self.icmp6(
                ns, IP1_6, pk.solicited_node(IP2_6), IP2_6,
                options=pk.lla_option(1, MAC1)),
             'router solicitation': self.icmp6(
                 pk.router_solicitation, LLA1,
                 options=pk.lla_option(1, MAC1))},
            {'forged source link-layer': self.icmp6(
                ns, IP1_6, pk.solicited_node(IP2_6), IP2_6,
                options=pk.lla_option(1, ROGUE_MAC))})

    def test_router_advertisements_and_server_replies_dropped(self):
        self.assertFiltered(
            {'DHCPv6 solicit': self.v6('solicit', src=LLA1, dst='ff02::1:2',
                                       sport=546, dport=547)},
            {'router advertisement': self.icmp6(pk.router_advertisement,
                                                LLA1, MAC1),
             'redirect': self.icmp6(pk.redirect, LLA1, LLA2, LLA1,
                                    ROGUE_IP6),
             'DHCPv4 offer': self.v4('offer', sport=67, dport=68),
             'DHCPv6 reply': self.v6('reply', src=LLA1, sport=547,
                                     dport=546)})

    def test_dhcp_discover_from_0_0_0_0(self):
        self.assertFiltered(
            {'DHCP discover': self.v4('discover', src='0.0.0.0',
                                      dst='255.255.255.255', sport=68,
                                      dport=67)},
            {'0.0.0.0 to a unicast address': self.v4(
                'unicast discover', src='0.0.0.0', dst='192.0.2.1',
                dst_mac=MAC2, sport=68, dport=67),
             '0.0.0.0, other ports': self.v4(
                 'not dhcp', src='0.0.0.0', dst='255.255.255.255', sport=68,
                 dport=68)})

    def test_only_arp_ipv4_and_ipv6(self):
        inner = pk.udp4(IP1, '192.0.2.255', 4000, 4000, b'tagged')
        self.assertFiltered(
            {'IPv4': self.v4('plain')},
            {'VLAN-tagged IPv4': pk.vlan(MAC1, pk.BROADCAST, 7, pk.ETH_IPV4,
                                         inner),
             'LLDP ethertype': pk.ether(MAC1, pk.BROADCAST, 0x88cc, b'\0' * 46),
             '802.3 LLC': pk.ether(MAC1, pk.BROADCAST, 46,
                                   b'\x42\x42\x03' + b'\0' * 43),
             'RARP ethertype': pk.ether(MAC1, pk.BROADCAST, 0x8035,
                                        pk.arp(3, MAC1, IP1, IP1))})

    def test_guest_without_rules_is_unaffected(self):
        self.assertFiltered(
            {'spoofed IPv4': self.v4('g2 spoofed', src=ROGUE_IP,
                                     src_mac=MAC2),
             'spoofed MAC': self.v4('g2 rogue mac', src=IP2,
                                    src_mac=ROGUE_MAC),
             'router advertisement': self.icmp6(
                 pk.router_advertisement, LLA2, MAC2, src_mac=MAC2),
             'forged ARP': self.arp(2, IP1, IP2, sha=MAC2, src_mac=MAC2)},
            {}, sender=self.guest2, receiver=self.guest1,
            end=self.v4('g2 end', src=IP2, src_mac=MAC2))
        # and guest 1 still reaches guest 2's own address and MAC
        self.assertFiltered({'to guest 2': self.v4('to g2', dst=IP2,
                                                   dst_mac=MAC2)}, {})

    def test_ruleset_is_one_table_named_after_the_vif(self):
        self.assertEqual({VIF1: ['vif5.0']}, self.listed())
        ruleset = self.lab.nft_ruleset()
        self.assertEqual(1, ruleset.count('table netdev nova_xen_'))
        self.assertIn('table netdev nova_xen_%s {' % VIF1.replace('-', ''),
                      ruleset)
        self.assertIn('hook ingress device "vif5.0"', ruleset)


class AllowedAddressPairsTest(IsolationLabTestCase):
    """Neutron's allowed address pairs of the port: a VRRP address with
    its virtual MAC, a range, an IPv6 network are sources too."""

    def setUp(self):
        super(AllowedAddressPairsTest, self).setUp()
        self.apply(ipv4=[IP1, PAIR_NET, VIP], ipv6=[IP1_6, PAIR_NET6],
                   macs=[VRRP_MAC])

    def test_pairs_are_sources_and_nothing_else(self):
        self.assertFiltered(
            {'own address': self.v4('own'),
             'inside the pair network': self.v4('net', src='203.0.113.5'),
             'VIP, virtual MAC': self.v4('vip', src=VIP, src_mac=VRRP_MAC),
             'IPv6 inside the pair network': self.v6(
                 'net6', src='2001:db8:1::5'),
             'link-local of the virtual MAC': self.v6(
                 'vlla', src=VRRP_LLA, src_mac=VRRP_MAC)},
            {'just outside the pair network': self.v4(
                'outside', src='203.0.113.16'),
             'foreign address': self.v4('rogue', src=ROGUE_IP),
             'VIP, foreign MAC': self.v4('vip rogue', src=VIP,
                                         src_mac=ROGUE_MAC),
             'IPv6 outside the pair network': self.v6(
                 'outside6', src='2001:db8:2::5'),
             'foreign IPv6': self.v6('rogue6', src=ROGUE_IP6)})

    def test_vrrp_announcements_of_the_vip(self):
        na = pk.neighbour_advertisement
        self.assertFiltered(
            {'gratuitous ARP for the VIP, virtual MAC': self.arp(
                2, VIP, VIP, sha=VRRP_MAC, src_mac=VRRP_MAC),
             'ARP from an address of the pair network': self.arp(
                 1, '203.0.113.9', IP2),
             'NA for an address of the IPv6 pair network': self.icmp6(
                 na, '2001:db8:1::7', ALL_NODES, '2001:db8:1::7',
                 options=pk.lla_option(2, VRRP_MAC), src_mac=VRRP_MAC)},
            {'gratuitous ARP for a foreign address': self.arp(
                2, ROGUE_IP, ROGUE_IP, sha=VRRP_MAC, src_mac=VRRP_MAC),
             'ARP with a foreign sender MAC': self.arp(
                 2, VIP, VIP, sha=ROGUE_MAC, src_mac=VRRP_MAC),
             'NA for a target outside the pairs': self.icmp6(
                 na, '2001:db8:1::7', ALL_NODES, '2001:db8:2::7'),
             'NA with a foreign MAC option': self.icmp6(
                 na, '2001:db8:1::7', ALL_NODES, '2001:db8:1::7',
                 options=pk.lla_option(2, ROGUE_MAC))})

    def test_a_pair_of_any_address(self):
        # the usual pair of a router or NAT VM: 0.0.0.0/0
        self.apply(ipv4=[IP1, '0.0.0.0/0'])
        self.assertFiltered(
            {'foreign address': self.v4('any', src=ROGUE_IP)},
            {'own address, foreign MAC': self.v4('any mac',
                                                 src_mac=ROGUE_MAC)})

    def test_port_security_off(self):
        # what the driver does for a port whose port security is off:
        # the VIF's table goes, and the guest sends what it likes
        spoofed = {'spoofed IPv4': self.v4('spoof', src=ROGUE_IP),
                   'spoofed MAC': self.v4('spoof mac', src_mac=ROGUE_MAC)}
        self.assertFiltered({}, spoofed)
        self.assertEqual({'vif_uuid': VIF1, 'removed': True},
                         self.lab.plugin('remove_rules', {'vif_uuid': VIF1}))
        self.assertFiltered(spoofed, {})


class LifecycleTest(IsolationLabTestCase):

    def spoofed(self):
        return {'spoofed IPv4': self.v4('spoof %d' % self.flow, src=ROGUE_IP),
                'spoofed MAC': self.v4('mac %d' % self.flow,
                                       src_mac=ROGUE_MAC)}

    def test_reapply_is_idempotent(self):
        self.apply()
        first = self.lab.nft_ruleset()
        self.apply()
        self.assertEqual(first, self.lab.nft_ruleset())
        self.assertEqual({VIF1: ['vif5.0']}, self.listed())

    def test_reapply_after_reboot_moves_the_rules(self):
        self.apply()
        # the guest reboots: its domid changes, vif5.0 goes, vif7.0 comes
        self.lab.unplug('vif5.0')
        self.lab.plug('vif7.0', self.guest1, MAC1)
        result = self.apply(devices=['vif7.0'])
        self.assertEqual(['vif7.0'], result['devices'])
        self.assertEqual({VIF1: ['vif7.0']}, self.listed())
        ruleset = self.lab.nft_ruleset()
        self.assertEqual(1, ruleset.count('table netdev nova_xen_'))
        self.assertEqual(1, ruleset.count('hook ingress'))
        self.assertNotIn('vif5.0', ruleset)
        self.assertFiltered({'honest': self.v4('after reboot')},
                            self.spoofed())

    def test_address_change_replaces_the_rules(self):
        self.apply()
        self.apply(ipv4=['192.0.2.31'], ipv6=[])
        self.assertFiltered(
            {'new address': self.v4('new', src='192.0.2.31'),
             'link-local': self.v6('lla', src=LLA1)},
            {'old address': self.v4('old', src=IP1),
             'old IPv6 address': self.v6('old6', src=IP1_6)},
            end=self.v4('end', src='192.0.2.31'))

    def test_remove_rules_restores_connectivity(self):
        self.apply()
        spoofed = self.spoofed()
        self.assertFiltered({}, spoofed)
        self.assertEqual({'vif_uuid': VIF1, 'removed': True},
                         self.lab.plugin('remove_rules', {'vif_uuid': VIF1}))
        self.assertEqual({}, self.listed())
        self.assertNotIn('nova_xen_', self.lab.nft_ruleset())
        self.assertFiltered(spoofed, {})
        # removing again is no error
        self.assertEqual({'vif_uuid': VIF1, 'removed': False},
                         self.lab.plugin('remove_rules', {'vif_uuid': VIF1}))

    def test_all_devices_of_the_vif_are_filtered(self):
        # an HVM guest: the emulated NIC's tap5.0 besides the PV vif5.0
        self.lab.plug('tap5.0', self.guest1, MAC1, guest_if='eth1')
        result = self.apply(devices=['vif5.0', 'tap5.0', 'tap9.0'])
        self.assertEqual((['vif5.0', 'tap5.0'], ['tap9.0']),
                         (result['devices'], result['missing']))
        self.assertEqual({VIF1: ['tap5.0', 'vif5.0']}, self.listed())
        for guest_if in ('eth0', 'eth1'):
            self.assertFiltered(
                {'honest': self.v4('honest via %s' % guest_if)},
                {'spoofed': self.v4('spoofed via %s' % guest_if,
                                    src=ROGUE_IP)},
                sender_if=guest_if, end=self.v4('end via %s' % guest_if))

    def test_no_device_exists(self):
        self.assertPluginFails(['NOVA_XEN_NO_SUCH_DEVICE', 'vif9.0', 'tap9.0'],
                               'apply_rules',
                               {'vif_uuid': VIF1, 'devices': ['vif9.0', 'tap9.0'],
                                'mac': MAC1})
        self.assertEqual({}, self.listed())

    def test_a_device_belongs_to_one_vif(self):
        self.apply()
        self.apply(vif_uuid=VIF2, mac=MAC2, ipv4=[IP2], ipv6=[])
        self.assertEqual({VIF1: [], VIF2: ['vif5.0']}, self.listed())
        self.assertEqual(1, self.lab.nft_ruleset().count('hook ingress'))

    def test_two_vifs_side_by_side(self):
        self.apply()
        self.lab.plugin('apply_rules', {
            'vif_uuid': VIF2, 'devices': ['vif6.0'], 'mac': MAC2,
            'ipv4': [IP2], 'ipv6': [IP2_6], 'allow_dhcp': False})
        self.assertEqual({VIF1: ['vif5.0'], VIF2: ['vif6.0']}, self.listed())
        self.assertFiltered(
            {'honest': self.v4('g2 honest', src=IP2, src_mac=MAC2)},
            {'spoofed': self.v4('g2 spoofed', src=IP1, src_mac=MAC2),
             'DHCP discover': self.v4('g2 discover', src='0.0.0.0',
                                      src_mac=MAC2, dst='255.255.255.255',
                                      sport=68, dport=67)},
            sender=self.guest2, receiver=self.guest1,
            end=self.v4('g2 end', src=IP2, src_mac=MAC2))
        self.lab.plugin('remove_rules', {'vif_uuid': VIF1})
        self.assertEqual({VIF2: ['vif6.0']}, self.listed())

    def test_without_nft(self):
        no_nft = {'NOVA_XEN_NFT': '/nonexistent/nft'}
        self.assertPluginFails(
            ['NOVA_XEN_ISOLATION_UNAVAILABLE'], 'list_rules', {}, env=no_nft)
        self.assertPluginFails(
            ['NOVA_XEN_ISOLATION_UNAVAILABLE'], 'apply_rules',
            {'vif_uuid': VIF1, 'devices': ['vif5.0'], 'mac': MAC1,
             'ipv4': [IP1], 'ipv6': []}, env=no_nft)
        # no nft, no rules: removing them (a destroy) succeeds
        self.assertEqual({'vif_uuid': VIF1, 'removed': False},
                         self.lab.plugin('remove_rules', {'vif_uuid': VIF1},
                                         env=no_nft))

    def test_dom0_python(self):
        version = subprocess.run([netlab.PLUGIN_PYTHON, '--version'],
                                 stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT).stdout.decode()
        if os.path.exists(netlab.PY36):
            self.assertIn('Python 3.6', version)


class IsolationArgumentsTest(SimTestCase):
    """Bad arguments through host.call_plugin, as the driver would send."""

    sim_options = {'plugins_dir': netlab.PLUGINS_DIR,
                   'plugin_python': netlab.PLUGIN_PYTHON}

    def call(self, fn, params):
        host = self.x.host.get_all()[0]
        return json.loads(self.x.host.call_plugin(
            host, 'nova_xen_isolation.py', fn,
            {'params': json.dumps(params)}))

    def invalid(self, name, reason=None, fn='apply_rules', **overrides):
        params = {'vif_uuid': VIF1, 'devices': ['vif5.0'], 'mac': MAC1,
                  'ipv4': [IP1], 'ipv6': [IP1_6]}
        params.update(overrides)
        with self.assertRaises(XenAPI.Failure) as ctx:
            self.call(fn, params)
        details = ctx.exception.details
        self.assertEqual(['NOVA_XEN_INVALID_ARGUMENT', name], details[:2],
                         overrides)
        if reason is not None:
            self.assertEqual(reason, details[2])

    def test_bad_mac(self):
        for mac in ('fa:16:3e:00:00', 'fa-16-3e-00-00-01', 'fa:16:3e:00:00:0g',
                    'fa:16:3e:00:00:01 ', 7, None):
            self.invalid('mac', mac=mac)
        self.invalid('mac', 'must be a unicast MAC address',
                     mac='01:00:5e:00:00:01')
        self.invalid('mac', 'must be a unicast MAC address',
                     mac='00:00:00:00:00:00')

    def test_bad_devices(self):
        reason = 'must be dom0 device names like vif5.0 or tap5.0'
        for devices in (['eth0'], ['vif5.0; nft flush ruleset'], ['vif5.0\n'],
                        ['vif5'], ['vif\u0665.0'], ['xenbr0'], ['../vif5.0'],
                        [5], ['vif123456.0']):
            self.invalid('devices', reason, devices=devices)
        self.invalid('devices', 'must name at least one device', devices=[])
        self.invalid('devices', 'names a device twice',
                     devices=['vif5.0', 'vif5.0'])
        self.invalid('devices', 'must be a list', devices='vif5.0')
        self.invalid('devices', 'has too many items',
                     devices=['vif5.%d' % i for i in range(9)])

    def test_bad_addresses(self):
        for ipv4 in (['192.0.2.300'], ['010.0.0.1'], [IP1_6], ['192.0.2.1/24'],
                     ['224.0.0.1'], ['0.0.0.0'], ['255.255.255.255'],
                     ['127.0.0.1'], [3221225995], [' 192.0.2.11'], IP1,
                     ['224.0.0.0/4'], ['192.0.2.0/33'], ['192.0.2.0/']):
            self.invalid('ipv4', ipv4=ipv4)
        for ipv6 in (['2001:db8::g'], [IP1], ['fe80::1%eth0'], ['::'],
                     ['ff02::1'], ['::1'], ['2001:db8::1/64'], [None],
                     ['2001:db8::1' + ':1' * 8], ['ff00::/8']):
            self.invalid('ipv6', ipv6=ipv6)
        for macs in (['fa:16:3e:00:00'], ['01:00:5e:00:00:01'], MAC2, [None],
                     ['fa:16:3e:00:00:%02x' % i for i in range(17)]):
            self.invalid('macs', macs=macs)
        self.invalid('ipv4', 'has too many items',
                     ipv4=['192.0.2.%d' % i for i in range(1, 66)])

    def test_bad_other_arguments(self):
        self.invalid('vif_uuid', vif_uuid='not-a-uuid')
        self.invalid('vif_uuid', vif_uuid=VIF1.upper())
        self.invalid('vif_uuid', 'is required', vif_uuid=None)
        self.invalid('allow_dhcp', allow_dhcp='yes')
        self.invalid('bridge', 'is not an argument of this call',
                     bridge='xenbr0')
        for fn, params, name in (
                ('remove_rules', {'vif_uuid': '../x'}, 'vif_uuid'),
                ('remove_rules', {}, 'vif_uuid'),
                ('remove_rules', {'vif_uuid': VIF1, 'devices': ['vif5.0']},
                 'devices'),
                ('list_rules', {'all': True}, 'all')):
            with self.assertRaises(XenAPI.Failure) as ctx:
                self.call(fn, params)
            self.assertEqual(['NOVA_XEN_INVALID_ARGUMENT', name],
                             ctx.exception.details[:2])

    def test_plugin_api_version(self):
        self.assertEqual({'api_version': '1.2'},
                         self.call('plugin_api_version', {}))


if __name__ == '__main__':
    unittest.main()
