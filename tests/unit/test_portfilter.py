"""What a Neutron port's security and allowed address pairs become in the
VIF's other_config, and what the isolation rules read back from it."""

import unittest

from nova_xen import portfilter


class PortFilterTest(unittest.TestCase):

    def test_pairs_as_ovn_takes_them(self):
        config = portfilter.config_of({
            'id': 'p', 'port_security_enabled': True,
            'allowed_address_pairs': [
                # Neutron accepts host bits; OVN allows the network
                {'ip_address': '10.0.0.5/24'},
                {'ip_address': '192.0.2.7', 'mac_address': 'FA:16:3E:0A:0B:0C'},
                # the same address with and without a MAC
                {'ip_address': '192.0.2.7'},
                {'ip_address': '2001:db8::1/128'},
                {'ip_address': '2001:DB8:1::/64', 'mac_address': None}]})
        self.assertEqual('true', config[portfilter.SECURITY])
        self.assertEqual(
            (['10.0.0.0/24', '192.0.2.7'], ['2001:db8:1::/64', '2001:db8::1'],
             ['fa:16:3e:0a:0b:0c']),
            portfilter.allowed(config))

    def test_port_security_off(self):
        config = portfilter.config_of({'id': 'p',
                                       'port_security_enabled': False,
                                       'allowed_address_pairs': []})
        self.assertIsNone(portfilter.allowed(config))

    def test_without_the_extensions_the_port_is_secured(self):
        # Neutron without port-security / allowed-address-pairs omits them
        config = portfilter.config_of({'id': 'p'})
        self.assertEqual(([], [], []), portfilter.allowed(config))
        # a VIF made before nova-xen read them: its fixed IPs only
        self.assertEqual(([], [], []), portfilter.allowed({}))
