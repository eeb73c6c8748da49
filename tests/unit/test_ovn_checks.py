"""``nova-xen-manage check``'s ML2/OVN lines: ``OVN chassis`` (Neutron's
agents API, through nova's own Neutron client, against a stand-in Neutron
over HTTP) and ``integration bridge`` (the bridge's xapi network, and
dom0's Open vSwitch read by the nova_xen_ovs.py plugin from a real
ovsdb-server in the simulated host's dom0)."""

import os

import XenAPI

from tests.fake_neutron import ovn_controller
from tests import ovsdb
from tests import records
from tests.unit.test_manage import CheckTestCase
from tests.unit.test_manage import NOVA_HOST
from tests.unit.test_manage import PASSWORD

GUIDE = 'see "Networking with ML2/OVN" in the nova-xen README'


class OvnCheckTestCase(CheckTestCase):

    def setUp(self):
        super(OvnCheckTestCase, self).setUp()
        self.member = self.pool['hosts'][1]
        self.node = self.member['name_label']
        session = XenAPI.Session(self.pool['master'])
        session.login_with_password('root', PASSWORD)
        self.addCleanup(session.xenapi.session.logout)
        self.x = session.xenapi

    def start_ovs(self):
        """dom0's Open vSwitch on the compute's host, set up by an
        ovn-controller for compute-1."""
        host = self.sim.world.pools[0].hosts[1]
        ovs = self.useFixture(ovsdb.OvsdbServer(os.path.join(
            host.dom0_root, 'var', 'run', 'openvswitch')))
        ovs.add_bridge('br-int', fail_mode='secure')
        ovs.set_external_ids(system_id=self.member['uuid'],
                             hostname=NOVA_HOST,
                             ovn_remote='ssl:192.0.2.10:6642',
                             ovn_encap_type='geneve',
                             ovn_encap_ip=self.member['address'])
        return ovs

    def ovn_neutron(self, *hosts):
        self.neutron.agents = [ovn_controller(h) for h in hosts] + [
            ovn_controller('gateway-1', agent_type='OVN Controller Gateway '
                           'agent')]


class ChassisTest(OvnCheckTestCase):

    def test_all_set(self):
        self.ovn_neutron(NOVA_HOST, 'compute-2')
        self.start_ovs()
        rc, lines = self.check()
        self.assertEqual(0, rc, lines)
        self.assertEqual('OK OVN chassis: Neutron has OVN chassis '
                         'chassis-compute-1 for host compute-1 (OVN Controller '
                         'agent, alive)', lines['OVN chassis'])
        self.assertEqual(
            'OK integration bridge: no xapi network has bridge br-int yet: '
            'nova-compute creates it (unmanaged, fail mode secure) when it '
            'starts; br-int in dom0 of %s: fail_mode secure, datapath '
            'system; chassis hostname=compute-1, ovn-encap-ip=%s, '
            'ovn-encap-type=geneve, ovn-remote=ssl:192.0.2.10:6642, '
            'system-id=%s' % (self.node, self.member['address'],
                              self.member['uuid']),
            lines['integration bridge'])
        # nova's client asked for this host's agents
        self.assertIn('/v2.0/agents?host=compute-1', self.neutron.requests)

    def test_no_chassis_for_this_host(self):
        self.ovn_neutron('compute-2', 'compute-3')
        self.start_ovs()
        rc, lines = self.check()
        self.assertEqual(1, rc)
        self.assertEqual(
            'FAIL OVN chassis: Neutron has no OVN chassis for host compute-1 '
            '(nothing would bind its ports); its OVN chassis are on hosts '
            'compute-2, compute-3, gateway-1: run ovn-controller for this '
            'compute\'s XenServer host with external_ids:hostname=compute-1 '
            'in its dom0\'s Open vSwitch, %s'
            % GUIDE, lines['OVN chassis'])
        # the rest is checked all the same
        self.assertStatus('OK', lines, 'integration bridge',
                          'network isolation')

    def test_a_dead_chassis(self):
        self.neutron.agents = [ovn_controller(NOVA_HOST, alive=False)]
        rc, lines = self.check()
        self.assertEqual(1, rc)
        self.assertEqual(
            'FAIL OVN chassis: Neutron\'s OVN chassis chassis-compute-1 for '
            'host compute-1 is not alive: Neutron refuses to bind ports to a '
            'dead agent; is its ovn-controller running and connected to the '
            'OVN southbound database?', lines['OVN chassis'])

    def test_neutron_without_ovn(self):
        """ML2/OVS (no OVS in dom0 here): reported, not failed."""
        self.neutron.agents = [{'host': NOVA_HOST, 'alive': True,
                                'agent_type': 'Open vSwitch agent'},
                               {'host': 'net-1', 'alive': True,
                                'agent_type': 'DHCP agent'}]
        rc, lines = self.check()
        self.assertEqual(0, rc, lines)
        self.assertEqual('OK OVN chassis: not ML2/OVN: Neutron lists no OVN '
                         'agent, only DHCP agent, Open vSwitch agent (set '
                         '[xenserver]neutron_backend to say which)',
                         lines['OVN chassis'])
        self.assertIn('(what would matter with ML2/OVN: cannot read the Open '
                      'vSwitch of host %s\'s dom0: ' % self.node,
                      lines['integration bridge'])
        self.assertTrue(lines['integration bridge'].startswith('OK '))

    def test_backend_said_in_nova_conf(self):
        rc, lines = self.check(neutron_backend='ovn')
        self.assertEqual(1, rc)
        self.assertIn('FAIL OVN chassis: Neutron has no OVN chassis for host '
                      'compute-1 (nothing would bind its ports): run '
                      'ovn-controller', lines['OVN chassis'])
        self.assertIn('FAIL integration bridge: cannot read the Open vSwitch '
                      'of host %s\'s dom0: ' % self.node,
                      lines['integration bridge'])
        self.assertIn('database connection failed', lines['integration '
                                                          'bridge'])
        rc, lines = self.check(neutron_backend='other')
        self.assertEqual(0, rc, lines)
        self.assertEqual('OK OVN chassis: not checked: '
                         '[xenserver]neutron_backend = other',
                         lines['OVN chassis'])
        self.assertEqual([], self.neutron.requests[2:])

    def test_neutron_cannot_be_asked(self):
        self.neutron.fail_with = 503
        rc, lines = self.check()
        self.assertEqual(1, rc)
        self.assertIn('FAIL OVN chassis: cannot ask Neutron for the agents of '
                      'host compute-1 with the [neutron] credentials of '
                      'nova.conf: ', lines['OVN chassis'])
        self.assertIn('the fake Neutron fails', lines['OVN chassis'])
        rc, lines = self.check(neutron=False)
        self.assertEqual(1, rc)
        self.assertIn('FAIL OVN chassis: cannot ask Neutron for the agents of '
                      'host compute-1 with the [neutron] credentials of '
                      'nova.conf: [neutron] auth_type is not set: '
                      'nova-compute has no credentials for Neutron',
                      lines['OVN chassis'])


class Dom0BridgeTest(OvnCheckTestCase):

    def setUp(self):
        super(Dom0BridgeTest, self).setUp()
        self.ovn_neutron(NOVA_HOST)
        self.ovs = self.start_ovs()

    def test_no_bridge_in_dom0(self):
        self.ovs.vsctl('--no-wait', 'del-br', 'br-int')
        rc, lines = self.check()
        self.assertEqual(1, rc)
        self.assertEqual(
            'FAIL integration bridge: dom0 of host %s has no bridge br-int: '
            'start ovn-controller for this host (it creates it), %s; until '
            'then no VM with a port on it starts there (xapi: '
            'BRIDGE_NOT_AVAILABLE)' % (self.node, GUIDE),
            lines['integration bridge'])

    def test_a_standalone_bridge(self):
        self.ovs.vsctl('--no-wait', 'set', 'Bridge', 'br-int',
                       'fail_mode=standalone')
        rc, lines = self.check()
        self.assertEqual(1, rc)
        self.assertIn(
            'FAIL integration bridge: bridge br-int in dom0 of host %s is in '
            'fail mode standalone: whenever its controller (ovn-controller) '
            'is away, Open vSwitch then runs it as a learning switch '
            'forwarding between all its ports, with no ACLs and no isolation '
            'between networks' % self.node, lines['integration bridge'])
        self.ovs.vsctl('--no-wait', 'clear', 'Bridge', 'br-int', 'fail_mode')
        rc, lines = self.check()
        self.assertIn('is in fail mode unset (Open vSwitch\'s default, '
                      'standalone)', lines['integration bridge'])

    def test_a_chassis_named_after_another_host(self):
        self.ovs.set_external_ids(hostname='xcp-ng-dom0')
        rc, lines = self.check()
        self.assertEqual(1, rc)
        self.assertEqual(
            'FAIL integration bridge: dom0 of host %s names its OVN chassis '
            'host \'xcp-ng-dom0\' (external_ids:hostname of its Open '
            'vSwitch), not this nova-compute\'s [DEFAULT]host \'compute-1\': '
            'the chassis would not bind this compute\'s ports; in its dom0: '
            'ovs-vsctl set Open_vSwitch . external_ids:hostname=compute-1'
            % self.node, lines['integration bridge'])

    def test_no_ovn_controller_set_up(self):
        self.ovs.vsctl('--no-wait', 'remove', 'Open_vSwitch', '.',
                       'external_ids', 'ovn-remote')
        rc, lines = self.check()
        self.assertEqual(1, rc)
        self.assertIn('FAIL integration bridge: the Open vSwitch of host %s\'s '
                      'dom0 has no external_ids:ovn-remote'
                      % self.node, lines['integration bridge'])

    def test_a_managed_network_of_an_older_nova_xen(self):
        net = self.x.network.create({
            'name_label': 'nova-xen integration bridge br-int',
            'name_description': '', 'bridge': 'br-int', 'MTU': '1500',
            'other_config': {'nova_role': 'integration-bridge'}})
        self.addCleanup(self.x.network.destroy, net)
        uuid = self.x.network.get_uuid(net)
        # nova-compute replaces it when it starts: said, not failed
        rc, lines = self.check()
        self.assertEqual(0, rc, lines)
        self.assertIn('nova-compute replaces it with an unmanaged one when '
                      'it starts and no VIF is on it (0 are)',
                      lines['integration bridge'])
        vm = self.x.VM.create(records.vm_record('held'))
        self.addCleanup(self.x.VM.destroy, vm)
        vif = self.x.VIF.create({
            'VM': vm, 'network': net, 'device': '0', 'MAC': '',
            'MTU': '1500', 'other_config': {}, 'qos_algorithm_type': '',
            'qos_algorithm_params': {}})
        self.addCleanup(self.x.VIF.destroy, vif)
        rc, lines = self.check()
        self.assertEqual(1, rc)
        self.assertEqual(
            'FAIL integration bridge: xapi manages the network of bridge '
            'br-int (an older nova-xen made it, uuid %s), so it would make '
            'and unmake the bridge ovn-controller owns: nova-compute replaces '
            'it with an unmanaged one when it starts and no VIF is on it (1 '
            'are)' % uuid, lines['integration bridge'])
