"""Ports bound as ML2/OVN binds them: the VIF joins the xapi network of the
integration bridge Neutron names (``vif_details`` ``bridge_name``), an
unmanaged network in fail mode secure, with the MTU Neutron gives; a
spawn whose bridge is missing in dom0, or whose bridge has a network xapi
manages, fails with a sentence and leaves nothing behind."""

import copy

from tests import dom0_bridges
from tests.functional import base
from tests.functional.test_boot import pattern
from tests.functional.test_spawn_failures import _FailingSpawn

MIB = 1024 * 1024
SECURE = {'vswitch-controller-fail-mode': 'secure'}


class _OvnPorts(object):
    """Ports bound with vif_details, bridges in dom0, what the pool has."""

    def bind_ports(self, mtu=None, **vif_details):
        """The ports nova makes from now on are bound with these
        ``vif_details`` (as ML2/OVN: bridge_name, port_filter,
        connectivity), on a network of this MTU."""
        port = copy.deepcopy(self.neutron.default_port)
        port['binding:vif_details'] = dict(vif_details)
        self.neutron.default_port = port
        if mtu is not None:
            net = dict(self.neutron.network_1, mtu=mtu)
            self.neutron._networks[net['id']] = net

    def dom0_bridge(self, bridge, present=True):
        dom0_bridges.set_present(self, self.xapi.x, bridge, present)

    def networks(self):
        """{bridge: network record} of the pool."""
        return {r['bridge']: r
                for r in self.xapi.x.network.get_all_records().values()}

    def vif_of(self, server):
        x = self.xapi.x
        vm, record = self.xapi.vm_of(server['id'])
        vif = x.VIF.get_record(record['VIFs'][0])
        return vif, x.network.get_record(vif['network'])

    def port_of(self, server):
        return self.neutron.list_ports(
            True, device_id=server['id'])['ports'][0]


class BridgeNameTest(_OvnPorts, base.XenAPIFunctionalTestCase):

    def setUp(self):
        super(BridgeNameTest, self).setUp()
        self.image = self.image_with(pattern(MIB, seed=b'ovn ports'))

    def test_the_bridge_neutron_names_with_its_mtu(self):
        self.dom0_bridge('br-ovn')
        self.bind_ports(mtu=1442, bridge_name='br-ovn', port_filter=True,
                        connectivity='l2')
        server = self.boot(self.image)
        vif, net = self.vif_of(server)
        self.assertEqual('br-ovn', net['bridge'])
        self.assertFalse(net['managed'])
        self.assertEqual('secure', net['other_config'][
            'vswitch-controller-fail-mode'])
        self.assertEqual('1442', vif['MTU'])
        # what xapi hands the vif script for the dom0 device
        self.assertEqual('1442', vif['other_config']['mtu'])
        # ovs-xapi-sync makes it the dom0 port's iface-id: OVN's port
        self.assertEqual(self.port_of(server)['id'],
                         vif['other_config']['nicira-iface-id'])
        # the next port on that bridge joins the same network
        second = self.boot(self.image)
        self.assertEqual(vif['network'], self.vif_of(second)[0]['network'])
        self.assertEqual(1, [r['bridge'] for r in self.networks().values()]
                         .count('br-ovn'))

    def test_ports_naming_no_bridge_use_the_configured_one(self):
        server = self.boot(self.image)
        vif, net = self.vif_of(server)
        self.assertEqual('br-int', net['bridge'])
        self.assertFalse(net['managed'])
        self.assertEqual(SECURE, {k: v for k, v in net['other_config'].items()
                                  if k == 'vswitch-controller-fail-mode'})
        # the MTU of nova's fixture network (1450)
        self.assertEqual('1450', vif['MTU'])


class UnfitBridgeTest(_OvnPorts, _FailingSpawn):

    def assertFailsCleanly(self, step, *reasons):
        networks = self.networks()
        server = super(UnfitBridgeTest, self).assertFailsCleanly(
            step, *reasons)
        # no network made, none changed
        self.assertEqual(networks, self.networks())
        return server

    def test_integration_bridge_missing_in_dom0(self):
        self.dom0_bridge('br-int', present=False)
        self.assertFailsCleanly(
            'start the VM', 'BRIDGE_NOT_AVAILABLE [br-int] (dom0 has no '
            'bridge br-int; its xapi network is unmanaged: ovn-controller '
            'makes it (nova-xen-manage check says what is missing))')

    def test_a_network_xapi_manages(self):
        x = self.xapi.x
        net = x.network.create({
            'name_label': 'made by hand', 'name_description': '',
            'bridge': 'br-hand', 'MTU': '1500', 'other_config': {}})
        self.addCleanup(x.network.destroy, net)
        uuid = x.network.get_uuid(net)
        self.dom0_bridge('br-hand')
        self.bind_ports(bridge_name='br-hand')
        self.assertFailsCleanly(
            'create the network interfaces',
            'xapi manages the network of bridge br-hand, so it would make '
            'and unmake the bridge ovn-controller owns: xe network-destroy '
            'uuid=%s; nova-compute makes an unmanaged one' % uuid)
        # left as it was
        self.assertTrue(x.network.get_managed(net))
