"""nova_xen_ovs.py through xapisim and host.call_plugin, against a real
ovsdb-server.

The plugin file runs as xapi runs it, a process under dom0's Python (3.6
when this machine has it); xapisim gives it ``OVS_RUNDIR=<dom0
root>/var/run/openvswitch``, where each test starts a real ovsdb-server
(tests/ovsdb.py) for the host it calls: what ovs-vsctl reads and writes
there is what ovn-controller would read in dom0.  dom0's firewall is
xapisim's stand-in for xapi's firewall-port script and ``iptables -S``.
"""

import json
import os
import subprocess
import xmlrpc.client

from tests.dom0.test_host_plugin import PLUGIN_PYTHON
from tests.dom0.test_host_plugin import PLUGINS_DIR
from tests import ovsdb
from tests.xapisim.base import SimTestCase

PLUGIN = 'nova_xen_ovs.py'
DOM0_MODULES = os.path.join(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))), 'xapisim', 'dom0')


class OvsPluginTestCase(SimTestCase):
    hosts = 2
    sim_options = {'plugins_dir': PLUGINS_DIR, 'plugin_python': PLUGIN_PYTHON}

    def setUp(self):
        super(OvsPluginTestCase, self).setUp()
        self.ovs = self.useFixture(ovsdb.OvsdbServer(self.rundir(0)))

    def useFixture(self, fixture):
        fixture.setUp()
        self.addCleanup(fixture.cleanUp)
        return fixture

    def host(self, index=0):
        uuid = self.world['pools'][0]['hosts'][index]['uuid']
        return self.x.host.get_by_uuid(uuid)

    def dom0_root(self, index=0):
        return self.sim.world.pools[0].hosts[index].dom0_root

    def rundir(self, index):
        return os.path.join(self.dom0_root(index), 'var', 'run', 'openvswitch')

    def call(self, fn, params=None, host=0, raw=None):
        args = {'params': raw if raw is not None else json.dumps(params or {})}
        return json.loads(self.x.host.call_plugin(self.host(host), PLUGIN, fn,
                                                  args))

    def fails(self, code, fn, params, host=0):
        """The plugin fails with ``code``: its parameters."""
        details = self.assertFailure(code, self.call, fn, params, host)
        return details[1:]

    def invalid(self, fn, params, name):
        details = self.fails('NOVA_XEN_INVALID_ARGUMENT', fn, params)
        self.assertEqual(name, details[0], details)
        return details[1]


class OvsStatusTest(OvsPluginTestCase):

    def test_an_ovn_chassis_as_ovn_controller_leaves_it(self):
        self.ovs.add_bridge('xenbr0')
        self.ovs.add_bridge('br-int', fail_mode='secure',
                            datapath_type='netdev')
        self.ovs.vsctl('--no-wait', 'set-controller', 'br-int', 'pssl:6653')
        self.ovs.set_external_ids(
            system_id='3c7a6f1e-5b0d-4c55-9a3e-9b1f0e0d2c11',
            hostname='compute-1', ovn_remote='ssl:192.0.2.10:6642',
            ovn_encap_type='geneve', ovn_encap_ip='192.0.2.21',
            ovn_bridge_mappings='physnet1:xenbr0,physnet2:xenbr1')
        self.ovs.vsctl('--no-wait', 'set', 'Open_vSwitch', '.',
                       'external_ids:rundir=/elsewhere')
        status = self.call('ovs_status', {'bridge': 'br-int'})
        version = status.pop('ovs_version')
        self.assertEqual({
            'bridge': 'br-int', 'exists': True, 'fail_mode': 'secure',
            'datapath_type': 'netdev', 'controller': ['pssl:6653'],
            'bridges': ['br-int', 'xenbr0'],
            'external_ids': {
                'system-id': '3c7a6f1e-5b0d-4c55-9a3e-9b1f0e0d2c11',
                'hostname': 'compute-1', 'ovn-remote': 'ssl:192.0.2.10:6642',
                'ovn-encap-type': 'geneve', 'ovn-encap-ip': '192.0.2.21',
                'ovn-bridge-mappings': 'physnet1:xenbr0,physnet2:xenbr1'}},
            status)
        # ovsdb-server's database says which version wrote it last: none
        # here (no ovs-vswitchd), a release number in dom0
        self.assertIsInstance(version, str)

    def test_a_missing_bridge(self):
        self.ovs.add_bridge('xenbr0')
        self.assertEqual({
            'bridge': 'br-int', 'exists': False, 'fail_mode': '',
            'datapath_type': '', 'controller': [], 'bridges': ['xenbr0'],
            'external_ids': {}, 'ovs_version': ''},
            self.call('ovs_status', {'bridge': 'br-int'}))

    def test_a_bridge_without_fail_mode(self):
        self.ovs.add_bridge('br-int')
        status = self.call('ovs_status', {'bridge': 'br-int'})
        self.assertEqual((True, ''), (status['exists'], status['fail_mode']))
        self.ovs.vsctl('--no-wait', 'set', 'Bridge', 'br-int',
                       'fail_mode=standalone')
        self.assertEqual('standalone', self.call(
            'ovs_status', {'bridge': 'br-int'})['fail_mode'])

    def test_each_host_has_its_own_switch(self):
        """Host 2's dom0 runs no ovsdb-server: ovs-vsctl cannot connect."""
        self.ovs.add_bridge('br-int', fail_mode='secure')
        reason, = self.fails('NOVA_XEN_OVS_UNAVAILABLE', 'ovs_status',
                             {'bridge': 'br-int'}, host=1)
        self.assertIn('%s/db.sock: database connection failed'
                      % self.rundir(1), reason)
        other = self.useFixture(ovsdb.OvsdbServer(self.rundir(1)))
        other.add_bridge('br-int', fail_mode='standalone')
        self.assertEqual('standalone', self.call(
            'ovs_status', {'bridge': 'br-int'}, host=1)['fail_mode'])
        self.assertEqual('secure', self.call(
            'ovs_status', {'bridge': 'br-int'}, host=0)['fail_mode'])

    def test_bad_arguments(self):
        for bridge in ('', 'br int', 'a' * 16, 'br-int;ls', 7, None):
            self.invalid('ovs_status', {'bridge': bridge}, 'bridge')
        self.assertIn('not an argument',
                      self.invalid('ovs_status', {'bridge': 'br-int',
                                                  'db': 'tcp:1.2.3.4:6640'},
                                   'db'))

    def test_without_ovs_vsctl(self):
        """A dom0 on the Linux bridge backend (xapi's own test of it: the
        plugin run directly, with the command's override)."""
        request = xmlrpc.client.dumps(
            ('OpaqueRef:test', {'params': '{"bridge": "br-int"}'}),
            'ovs_status')
        proc = subprocess.run(
            [PLUGIN_PYTHON, os.path.join(PLUGINS_DIR, PLUGIN), request],
            env={'PATH': '/nonexistent', 'PYTHONPATH': DOM0_MODULES,
                 'NOVA_XEN_OVS_VSCTL': '/nonexistent/ovs-vsctl',
                 'OVS_RUNDIR': self.rundir(0)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        (result,), _ = xmlrpc.client.loads(proc.stdout.decode())
        self.assertEqual('Failure', result['Status'])
        self.assertEqual(['NOVA_XEN_OVS_UNAVAILABLE',
                          'ovs-vsctl is not installed in dom0: it runs the '
                          'Linux bridge network backend, not Open vSwitch'],
                         result['ErrorDescription'])


class ExternalIdsTest(OvsPluginTestCase):

    WANTED = {'system-id': '3c7a6f1e-5b0d-4c55-9a3e-9b1f0e0d2c11',
              'hostname': 'compute-1',
              'ovn-remote': 'ssl:192.0.2.10:6642,ssl:[2001:db8::10]:6642',
              'ovn-encap-type': 'geneve', 'ovn-encap-ip': '192.0.2.21',
              'ovn-bridge': 'br-int',
              'ovn-bridge-mappings': 'physnet1:xenbr0,physnet2:xenbr1'}

    def test_set_then_nothing_to_change(self):
        self.ovs.set_external_ids(hostname='dom0-name', rundir='/var/run/x')
        result = self.call('set_external_ids',
                           {'external_ids': self.WANTED})
        self.assertEqual(
            [{'key': k, 'new': v, 'old': 'dom0-name' if k == 'hostname'
              else None} for k, v in sorted(self.WANTED.items())],
            result['changes'])
        # what ovn-controller reads; other keys are left alone
        self.assertEqual(dict(self.WANTED, rundir='/var/run/x'),
                         self.ovs.external_ids())
        self.assertEqual({'changes': []}, self.call(
            'set_external_ids', {'external_ids': self.WANTED}))

    def test_dry_run_changes_nothing(self):
        result = self.call('set_external_ids', {
            'external_ids': {'hostname': 'compute-1'}, 'dry_run': True})
        self.assertEqual([{'key': 'hostname', 'old': None,
                           'new': 'compute-1'}], result['changes'])
        self.assertEqual({}, self.ovs.external_ids())

    def test_only_ovn_keys_and_plain_values(self):
        reason = self.invalid('set_external_ids',
                              {'external_ids': {'rundir': '/tmp'}},
                              'external_ids')
        self.assertIn('rundir is not one of system-id, hostname', reason)
        for value in ('compute 1', 'a"b', 'a\\b', '', 'x' * 1025, 7, None):
            self.invalid('set_external_ids',
                         {'external_ids': {'hostname': value}},
                         'external_ids')
        self.invalid('set_external_ids', {'external_ids': {}},
                     'external_ids')
        self.invalid('set_external_ids',
                     {'external_ids': {'hostname': 'h'}, 'dry_run': 'yes'},
                     'dry_run')
        self.assertEqual({}, self.ovs.external_ids())


class IntegrationBridgeTest(OvsPluginTestCase):

    def bridge(self):
        return self.call('ovs_status', {'bridge': 'br-int'})

    def test_created_for_a_remote_ovn_controller(self):
        dry = self.call('integration_bridge', {
            'bridge': 'br-int', 'controller': 'pssl:6653', 'dry_run': True})
        self.assertFalse(self.bridge()['exists'])
        result = self.call('integration_bridge', {
            'bridge': 'br-int', 'controller': 'pssl:6653'})
        self.assertEqual(dry, result)
        self.assertEqual([
            'create bridge br-int (fail_mode secure, in-band control off)',
            'set the OpenFlow controller of br-int to pssl:6653 (was none)'],
            result['changes'])
        status = self.bridge()
        self.assertEqual((True, 'secure', ['pssl:6653']), (
            status['exists'], status['fail_mode'], status['controller']))
        self.assertEqual('true', self.ovs.vsctl(
            'get', 'Bridge', 'br-int', 'other_config:disable-in-band'
        ).strip('"'))
        self.assertEqual({'changes': []}, self.call(
            'integration_bridge', {'bridge': 'br-int',
                                   'controller': 'pssl:6653'}))

    def test_an_existing_standalone_bridge_is_made_secure(self):
        self.ovs.add_bridge('br-int', fail_mode='standalone')
        self.ovs.vsctl('--no-wait', 'set-controller', 'br-int',
                       'tcp:192.0.2.99:6653')
        result = self.call('integration_bridge', {
            'bridge': 'br-int', 'controller': 'pssl:6653:192.0.2.21'})
        self.assertEqual([
            'set fail_mode secure on br-int (was standalone)',
            'set the OpenFlow controller of br-int to pssl:6653:192.0.2.21 '
            '(was tcp:192.0.2.99:6653)'], result['changes'])
        self.assertEqual(('secure', ['pssl:6653:192.0.2.21']), (
            self.bridge()['fail_mode'], self.bridge()['controller']))

    def test_only_passive_controllers(self):
        for target in ('tcp:192.0.2.1:6653', 'pssl', 'pssl:6653 ', 'unix:x',
                       'pssl:99999999'):
            self.invalid('integration_bridge',
                         {'bridge': 'br-int', 'controller': target},
                         'controller')
        self.assertFalse(self.bridge()['exists'])


class OpenPortsTest(OvsPluginTestCase):

    GENEVE = {'port': 6081, 'protocol': 'udp'}
    OPENFLOW = {'port': 6653, 'protocol': 'tcp'}

    def calls(self):
        path = os.path.join(self.dom0_root(), 'var', 'lib', 'xapisim',
                            'iptables', 'calls')
        if not os.path.exists(path):
            return []
        with open(path) as fh:
            return fh.read().splitlines()

    def rules(self):
        path = os.path.join(self.dom0_root(), 'var', 'lib', 'xapisim',
                            'iptables', 'rules')
        with open(path) as fh:
            return fh.read().splitlines()

    def setUp(self):
        super(OpenPortsTest, self).setUp()
        state = os.path.join(self.dom0_root(), 'var', 'lib', 'xapisim',
                             'iptables')
        for name in ('rules', 'calls'):
            if os.path.exists(os.path.join(state, name)):
                os.unlink(os.path.join(state, name))

    def test_opened_once(self):
        ports = [self.GENEVE, self.OPENFLOW]
        self.assertEqual({'opened': ports, 'open': []}, self.call(
            'open_ports', {'ports': ports, 'dry_run': True}))
        self.assertEqual([], self.calls())
        self.assertEqual({'opened': ports, 'open': []},
                         self.call('open_ports', {'ports': ports}))
        self.assertEqual(['open 6081 udp', 'open 6653 tcp'], self.calls())
        self.assertIn('-A xapi-INPUT -p udp -m conntrack --ctstate NEW -m udp '
                      '--dport 6081 -j ACCEPT', self.rules())
        self.assertEqual({'opened': [], 'open': ports},
                         self.call('open_ports', {'ports': ports}))
        self.assertEqual(2, len(self.calls()))

    def test_a_port_the_operator_opened(self):
        os.makedirs(os.path.join(self.dom0_root(), 'var', 'lib', 'xapisim',
                                 'iptables'), exist_ok=True)
        with open(os.path.join(self.dom0_root(), 'var', 'lib', 'xapisim',
                               'iptables', 'rules'), 'w') as fh:
            fh.write('-P INPUT ACCEPT\n-N RH-Firewall-1-INPUT\n'
                     '-A INPUT -j RH-Firewall-1-INPUT\n'
                     '-A RH-Firewall-1-INPUT -s 192.0.2.0/24 -p udp -m udp '
                     '--dport 6081 -j ACCEPT\n'
                     '-A RH-Firewall-1-INPUT -p tcp -m tcp --dport 6653 '
                     '-j DROP\n')
        self.assertEqual({'opened': [self.OPENFLOW], 'open': [self.GENEVE]},
                         self.call('open_ports',
                                   {'ports': [self.GENEVE, self.OPENFLOW]}))
        self.assertEqual(['open 6653 tcp'], self.calls())

    def test_bad_ports(self):
        for ports in ([], [{'port': 0, 'protocol': 'udp'}],
                      [{'port': 6081, 'protocol': 'sctp'}], [{'port': 6081}],
                      [6081], [{'port': '6081', 'protocol': 'udp'}],
                      [self.GENEVE] * 9):
            details = self.fails('NOVA_XEN_INVALID_ARGUMENT', 'open_ports',
                                 {'ports': ports})
            self.assertIn(details[0], ('ports', 'port', 'protocol'))
        self.assertEqual([], self.calls())
