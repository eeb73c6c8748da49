"""nova-compute's start-up says, in a WARNING sentence each, when Neutron
has no OVN chassis for this compute's host (nothing would bind its ports)
and when dom0's integration bridge is missing or in the wrong fail mode;
the compute starts all the same (Neutron or ovn-controller may come up
after it)."""

import os

from tests.fake_neutron import ovn_controller
from tests.functional import base
from tests import ovsdb


class OvnStartupTest(base.XenAPIFunctionalTestCase):

    def restart(self):
        """nova-compute starts again; what its ML2/OVN checks logged."""
        before = len(self.stdlog.logger.output)
        self.compute = self.restart_compute_service(self.compute)
        self.assertEqual('up', self.admin_api.get_services(
            host=self.compute.host, binary='nova-compute')[0]['state'])
        return [line.split('ML2/OVN: ', 1)[1]
                for line in self.stdlog.logger.output[before:].splitlines()
                if 'ML2/OVN: ' in line]

    def dom0_ovs(self):
        """A real ovsdb-server as the host's dom0 Open vSwitch, set up by
        an ovn-controller for this compute, with br-int as it makes it."""
        x = self.xapi.x
        dom0 = x.host.get_other_config(x.host.get_all()[0])[
            'xapisim_dom0_root']
        ovs = self.useFixture(ovsdb.OvsdbServer(
            os.path.join(dom0, 'var', 'run', 'openvswitch')))
        ovs.add_bridge('br-int', fail_mode='secure')
        ovs.set_external_ids(hostname=self.compute.host,
                             ovn_remote='tcp:192.0.2.10:6642')
        return ovs

    def test_no_chassis_for_this_host(self):
        self.neutron_agents[:] = [ovn_controller('compute-9'),
                                  ovn_controller('compute-8')]
        said = self.restart()
        self.assertIn(
            'Neutron has no OVN chassis for host %s (nothing would bind its '
            'ports); its OVN chassis are on hosts compute-8, compute-9: run '
            'ovn-controller for this compute\'s XenServer host with '
            'external_ids:hostname=%s in its dom0\'s Open vSwitch, see '
            '"Networking with ML2/OVN" in the nova-xen README'
            % (self.compute.host, self.compute.host), said)
        self.assertIn('WARNING [nova_xen.ovn] ML2/OVN: Neutron has no OVN '
                      'chassis', self.stdlog.logger.output)

    def test_dom0_bridge_missing_or_not_secure(self):
        self.neutron_agents[:] = [ovn_controller(self.compute.host)]
        ovs = self.dom0_ovs()
        said = self.restart()
        self.assertEqual(2, len(said), said)
        self.assertTrue(said[0].startswith('Neutron has OVN chassis '
                                           'chassis-%s' % self.compute.host),
                        said)
        self.assertIn('br-int in dom0 of %s: fail_mode secure'
                      % self.compute.host, said[1])
        ovs.vsctl('--no-wait', 'set', 'Bridge', 'br-int',
                  'fail_mode=standalone')
        said = self.restart()
        self.assertIn(
            'bridge br-int in dom0 of host %s is in fail mode standalone: '
            'whenever its controller (ovn-controller) is away, Open vSwitch '
            'then runs it as a learning switch forwarding between all its '
            'ports, with no ACLs and no isolation between networks'
            % self.compute.host, said[1])
        ovs.vsctl('--no-wait', 'del-br', 'br-int')
        said = self.restart()
        self.assertIn(
            'dom0 of host %s has no bridge br-int: start ovn-controller for '
            'this host (it creates it), see "Networking with ML2/OVN" in the '
            'nova-xen README; until then no VM with a port on it starts '
            'there (xapi: BRIDGE_NOT_AVAILABLE)' % self.compute.host, said)
