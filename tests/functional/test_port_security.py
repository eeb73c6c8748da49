"""The isolation rules follow the port's security and allowed address
pairs in Neutron: at boot, at an interface attach, and when they change
while the server runs (within a reclaimer pass).  What is checked is the
ruleset xapisim's dom0 holds for the VIF (its nft stand-in's tables)."""

import json
import os
import re

from unittest import mock

from keystoneauth1 import exceptions as ks_exc

from tests.functional import base
from tests.functional.test_boot import pattern
from tests.functional.test_leftovers import Reclaiming

MIB = 1024 * 1024
PAIR_MAC = 'fa:16:3e:aa:bb:cc'
PAIRS = [{'ip_address': '10.9.0.0/24'},
         {'ip_address': '192.168.5.7', 'mac_address': PAIR_MAC.upper()},
         {'ip_address': '2001:db8:9::/64'}]


class PortSecurityTestCase(base.XenAPIFunctionalTestCase):

    def port(self, **attributes):
        """A port of network_1 with ``attributes`` set in Neutron."""
        port = self.neutron.create_port(
            {'port': {'network_id': self.neutron.network_1['id']}})['port']
        if attributes:
            self.neutron.update_port(port['id'], {'port': attributes})
        return port['id']

    def boot_on(self, port_id):
        server = self.boot(self.image_with(pattern(MIB)),
                           networks=[{'port': port_id}])
        vm, record = self.xapi.vm_of(server['id'])
        return server, vm, self.vif_of(vm, port_id)

    def vif_of(self, vm, port_id):
        x = self.xapi.x
        for ref in x.VM.get_VIFs(vm):
            record = x.VIF.get_record(ref)
            if record['other_config'].get('neutron-port-id') == port_id:
                return record
        self.fail('no VIF for port %s' % port_id)

    def table(self, vif):
        """The text of the VIF's table in dom0, or None."""
        x = self.xapi.x
        root = x.host.get_other_config(
            x.host.get_all()[0])['xapisim_dom0_root']
        path = os.path.join(root, 'var', 'lib', 'xapisim', 'nft',
                            'ruleset.json')
        if not os.path.exists(path):
            return None
        with open(path) as fh:
            tables = json.load(fh)
        return tables.get('nova_xen_' + vif['uuid'].replace('-', ''))

    def allowed(self, vif):
        """(IPv4 sources, IPv6 sources, source MACs) the VIF's rules let
        through, as its table says; None without a table."""
        text = self.table(vif)
        if text is None:
            return None

        def elements(pattern):
            match = re.search(pattern, text)
            return set(match.group(1).split(', ')) if match else set()
        return (elements(r'set own_ipv4 \{[^}]*elements = \{ ([^}]*) \}'),
                elements(r'set own_ipv6 \{[^}]*elements = \{ ([^}]*) \}'),
                elements(r'ether saddr != \{ ([^}]*) \}'))

    def fixed(self, port_id):
        port = self.neutron.show_port(port_id)['port']
        return {ip['ip_address'] for ip in port['fixed_ips']}


class AtBootTest(PortSecurityTestCase):

    def test_port_security_off_means_no_rules(self):
        server, vm, vif = self.boot_on(self.port(port_security_enabled=False))
        self.assertEqual({}, self.xapi.isolation_rules())
        # nor on the next domain
        self._reboot_server(server, hard=True)
        self.assertEqual({}, self.xapi.isolation_rules())
        # a server on a port with port security has them
        other, _, secured = self.boot_on(self.port())
        self.assertEqual([secured['uuid']],
                         list(self.xapi.isolation_rules()))

    def test_allowed_address_pairs_are_sources(self):
        port_id = self.port(allowed_address_pairs=PAIRS)
        server, vm, vif = self.boot_on(port_id)
        v4, v6, macs = self.allowed(vif)
        fixed = self.fixed(port_id)
        self.assertEqual(fixed | {'10.9.0.0/24', '192.168.5.7'}, v4)
        self.assertIn('2001:db8:9::/64', v6)
        self.assertEqual({vif['MAC'].lower(), PAIR_MAC}, macs)

    def test_attached_interface_without_port_security(self):
        server, vm, first = self.boot_on(self.port())
        port_id = self.port(port_security_enabled=False)
        self.api.attach_interface(server['id'], {'interfaceAttachment': {
            'port_id': port_id}})
        added = self.vif_of(vm, port_id)
        self.assertTrue(added['currently_attached'])
        self.assertEqual([first['uuid']], list(self.xapi.isolation_rules()))


class AfterBootTest(Reclaiming, PortSecurityTestCase):
    """Neutron tells Nova of a port update with a network-changed event,
    which does not reach the driver: the reclaimer reads the ports."""

    def test_rules_follow_the_port(self):
        port_id = self.port()
        server, vm, vif = self.boot_on(port_id)
        fixed = self.fixed(port_id)
        mac = vif['MAC'].lower()
        self.assertEqual(fixed, self.allowed(vif)[0])

        self.neutron.update_port(port_id, {'port': {
            'allowed_address_pairs': PAIRS}})
        self.eventually(
            lambda: self.allowed(vif)[0] == fixed | {'10.9.0.0/24',
                                                     '192.168.5.7'},
            what='the pairs in the rules (now %s)' % (self.allowed(vif),))
        self.assertEqual({mac, PAIR_MAC}, self.allowed(vif)[2])

        self.neutron.update_port(port_id, {'port': {
            'port_security_enabled': False}})
        self.eventually(lambda: self.table(vif) is None,
                        what='the rules of the VIF removed')
        self.assertEqual({}, self.xapi.isolation_rules())
        # a new domain gets none either
        self._reboot_server(server, hard=True)
        self.assertEqual({}, self.xapi.isolation_rules())

        self.neutron.update_port(port_id, {'port': {
            'port_security_enabled': True, 'allowed_address_pairs': []}})
        self.eventually(lambda: self.table(vif) is not None,
                        what='the rules of the VIF back')
        self.assertEqual((fixed, {mac}), (self.allowed(vif)[0],
                                          self.allowed(vif)[2]))
        self.assertTrue(self.log_lines(
            'port %s of VIF %s changed in Neutron (port security off'
            % (port_id, vif['uuid'])))

    def test_neutron_unreachable_then_back(self):
        """Neutron cannot be asked at the spawn: the server boots with the
        strict rules, and gets its pairs once a pass can read its port."""
        port_id = self.port(allowed_address_pairs=PAIRS)
        unreachable = mock.patch(
            'nova_xen.portfilter.neutron_client',
            side_effect=ks_exc.ConnectFailure('Neutron is down'))
        unreachable.start()
        self.addCleanup(mock.patch.stopall)
        server, vm, vif = self.boot_on(port_id)
        fixed = self.fixed(port_id)
        self.assertEqual((fixed, {vif['MAC'].lower()}),
                         (self.allowed(vif)[0], self.allowed(vif)[2]))
        self.assertTrue(self.log_lines(
            'cannot read port security and allowed address pairs of ports '
            '%s from Neutron (Neutron is down)' % port_id))
        self.more_passes(1)
        self.assertTrue(self.log_lines(
            "cannot read the ports of this host's VMs from Neutron: "
            'Neutron is down'))
        unreachable.stop()
        self.eventually(
            lambda: self.allowed(vif)[0] == fixed | {'10.9.0.0/24',
                                                     '192.168.5.7'},
            what='the pairs in the rules')
        self.assertEqual({vif['MAC'].lower(), PAIR_MAC},
                         self.allowed(vif)[2])
