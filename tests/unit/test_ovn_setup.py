"""``nova-xen-manage ovn-setup`` against a world with real dom0 switches.

A simulated pool of two hosts whose dom0s each run their own Open
vSwitch (xapisim ``dom0_network='ovs'``, as tests/xapisim/test_dom0_*
use); the command runs in this process as an operator runs it, with a
nova.conf naming the second host, and everything it changes is read back
from that dom0's switch (``ovs-vsctl`` on its database), from xapi and
from dom0's firewall rules.  Root and the Debian packages
openvswitch-switch, iproute2, ethtool are needed (never skipped).
"""

import json
import os
import subprocess

import fixtures
from oslo_config import fixture as config_fixture
import testtools
import XenAPI

import xapisim
from xapisim.plugins import default_plugins_dir

from nova_xen import conf as xen_conf
from nova_xen.cmd import manage
from nova_xen.cmd import ovn_setup
from nova_xen import host as host_mod
from nova_xen import ovn
from nova_xen import session as session_mod

PASSWORD = 'ovn-setup-secret'
NOVA_HOST = 'compute-7'
SB = 'ssl:192.0.2.200:6642'
PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'
OVN_KEYS = ('system-id', 'hostname', 'ovn-remote', 'ovn-encap-type',
            'ovn-encap-ip', 'ovn-bridge', 'ovn-bridge-mappings',
            'ovn-bridge-remote')


class OvnSetupTest(testtools.TestCase):

    @classmethod
    def setUpClass(cls):
        super(OvnSetupTest, cls).setUpClass()
        cls.sim = xapisim.Simulator(hosts=2, password=PASSWORD,
                                    plugins_dir=default_plugins_dir(),
                                    dom0_network='ovs', guest_delay=0.01)
        cls.world = cls.sim.describe()
        cls.pool = cls.world['pools'][0]
        cls.host = cls.pool['hosts'][1]
        cls.other = cls.pool['hosts'][0]

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()
        super(OvnSetupTest, cls).tearDownClass()

    def setUp(self):
        super(OvnSetupTest, self).setUp()
        self.useFixture(config_fixture.Config(xen_conf.CONF))
        self.useFixture(fixtures.MockPatch('nova_xen.host._domu_uuid',
                                           return_value=None))
        self.session = XenAPI.Session(self.pool['master'])
        self.session.login_with_password(self.world['username'], PASSWORD,
                                         '2.21', 'ovn-setup-tests')
        self.x = self.session.xenapi
        self.addCleanup(self.session.xenapi.session.logout)
        self.reset()
        self.ca = self.useFixture(fixtures.TempDir()).join('ca.pem')
        with open(self.ca, 'w') as fh:
            fh.write(PEM)

    def reset(self):
        """Each test starts from a dom0 nobody set up for OVN."""
        for ref in self.x.SDN_controller.get_all():
            self.x.SDN_controller.forget(ref)
        for name in self.x.pool.certificate_list():
            self.x.pool.certificate_uninstall(name)
        for host in (self.host, self.other):
            self.vsctl(host, '--', 'del-manager', '--', 'del-ssl',
                       '--', 'del-controller', 'br-int',
                       '--', 'set', 'Bridge', 'br-int', 'fail_mode=secure',
                       *[a for key in OVN_KEYS for a in (
                           '--', 'remove', 'Open_vSwitch', '.',
                           'external_ids', key)])
            rules = self.firewall_path(host)
            if os.path.exists(rules):
                os.unlink(rules)

    # -- what the command sees and leaves ----------------------------------

    def vsctl(self, host, *args):
        return subprocess.run(
            ['ovs-vsctl', '--timeout=60', '--db=' + host['dom0']['ovsdb']] +
            list(args), check=True, stdout=subprocess.PIPE,
            timeout=120).stdout.decode()

    def external_ids(self, host):
        out = json.loads(self.vsctl(host, '--format=json',
                                    '--columns=external_ids', 'list',
                                    'Open_vSwitch'))
        return {k: v for k, v in out['data'][0][0][1] if k in OVN_KEYS}

    def switch_state(self, host):
        return (self.external_ids(host), self.vsctl(host, 'get-manager'),
                self.vsctl(host, 'get-controller', 'br-int'),
                self.vsctl(host, 'get-fail-mode', 'br-int'))

    @staticmethod
    def firewall_path(host):
        root = host['dom0']['ovs_rundir'].rsplit('/var/run/', 1)[0]
        return os.path.join(root, 'var', 'lib', 'xapisim', 'iptables',
                            'rules')

    def open_ports(self, host):
        try:
            with open(self.firewall_path(host)) as fh:
                lines = fh.read().splitlines()
        except FileNotFoundError:
            return set()
        return {(w[w.index('--dport') + 1], w[w.index('-p') + 1])
                for w in (line.split() for line in lines)
                if '--dport' in w and 'ACCEPT' in w}

    def nova_conf(self):
        path = self.useFixture(fixtures.TempDir()).join('nova.conf')
        with open(path, 'w') as fh:
            fh.write('[DEFAULT]\nhost = %s\n[xenserver]\n'
                     'connection_url = %s\nconnection_password = %s\n'
                     'host_uuid = %s\n' % (NOVA_HOST, self.host['url'],
                                           PASSWORD, self.host['uuid']))
        return path

    def setup(self, *args):
        """Run the command; (exit status, its lines)."""
        lines = []
        rc = ovn_setup.main(['--config-file', self.nova_conf(),
                             '--sb-remote', SB] + list(args),
                            say=lines.append)
        for line in lines:
            self.assertNotIn(PASSWORD, line)
        return rc, lines

    def pif_ip(self):
        host = self.x.host.get_by_uuid(self.host['uuid'])
        pif = [p for p in self.x.host.get_PIFs(host)
               if self.x.PIF.get_management(p)][0]
        return self.x.PIF.get_IP(pif)

    # -- tests -----------------------------------------------------------

    def test_remote_mode_then_a_second_run_changes_nothing(self):
        other_before = self.external_ids(self.other)
        rc, lines = self.setup('--bridge-mappings', 'physnet1:xenbr1',
                               '--ovsdb-ca', self.ca)
        self.assertEqual(0, rc, lines)
        self.assertFalse([line for line in lines if line.startswith('CANNOT')], lines)
        address = self.host['address']
        self.assertEqual({
            'system-id': self.host['uuid'], 'hostname': NOVA_HOST,
            'ovn-remote': SB, 'ovn-encap-type': 'geneve',
            'ovn-encap-ip': self.pif_ip(), 'ovn-bridge': 'br-int',
            'ovn-bridge-mappings': 'physnet1:xenbr1',
            'ovn-bridge-remote': 'ssl:%s:6653' % address,
        }, self.external_ids(self.host))
        self.assertIn('CHANGED external_ids:hostname=%s (was unset)'
                      % NOVA_HOST, lines)
        # xapi's SDN controller made dom0's OVSDB listen for TLS clients
        # (on every host of the pool), with the pool's CA
        self.assertEqual('pssl:6640', self.vsctl(self.host,
                                                 'get-manager').strip())
        self.assertEqual('pssl:6640', self.vsctl(self.other,
                                                 'get-manager').strip())
        ssl = self.vsctl(self.host, 'get-ssl')
        self.assertIn('sdn-controller-ca.pem', ssl)
        controllers = list(self.x.SDN_controller.get_all_records().values())
        self.assertEqual([('pssl', '0')],
                         [(c['protocol'], c['port']) for c in controllers])
        self.assertEqual(['sdn-controller-ca.pem'],
                         self.x.pool.certificate_list())
        # br-int: a passive OpenFlow target for the remote ovn-controller
        self.assertEqual('pssl:6653', self.vsctl(
            self.host, 'get-controller', 'br-int').strip())
        self.assertEqual('secure', self.vsctl(
            self.host, 'get-fail-mode', 'br-int').strip())
        self.assertEqual({('6081', 'udp'), ('6640', 'tcp'), ('6653', 'tcp')},
                         self.open_ports(self.host))
        # only this compute's host is its chassis
        self.assertEqual(other_before, self.external_ids(self.other))
        self.assertEqual({('6640', 'tcp')}, self.open_ports(self.other))

        before = self.switch_state(self.host)
        rc, again = self.setup('--bridge-mappings', 'physnet1:xenbr1')
        self.assertEqual(0, rc, again)
        self.assertEqual('nothing to change: host %s is set up for ML2/OVN'
                         % self.host['name_label'], again[-1])
        self.assertFalse([line for line in again if line.startswith(
            ('CHANGED', 'WOULD', 'CANNOT'))], again)
        self.assertEqual(before, self.switch_state(self.host))

    def dom0_finding(self):
        """What nova-compute's start-up (and nova-xen-manage check) finds
        in this host's dom0 for ML2/OVN."""
        xen_conf.CONF.set_override('host_uuid', self.host['uuid'],
                                   'xenserver')
        session = session_mod.Session(self.host['url'], 'root', PASSWORD,
                                      concurrent=1).connect()
        self.addCleanup(session.close)
        host = host_mod.Host(session).discover()
        return ovn.dom0_bridge(session, host, 'br-int', NOVA_HOST, ovn=True)

    def test_the_start_up_check_agrees_afterwards(self):
        before = self.dom0_finding()
        self.assertTrue(before.failed)
        self.assertIn('has no external_ids:ovn-remote', before.text())
        rc, lines = self.setup('--mode', 'in-dom0')
        self.assertEqual(0, rc, lines)
        after = self.dom0_finding()
        self.assertFalse(after.failed, after.text())
        self.assertIn('hostname=%s' % NOVA_HOST, after.text())

    def test_a_remote_leftover_in_dom0_mode(self):
        self.vsctl(self.host, 'set', 'Open_vSwitch', '.',
                   'external_ids:ovn-bridge-remote="ssl:192.0.2.9:6653"')
        rc, lines = self.setup('--mode', 'in-dom0')
        self.assertEqual(1, rc, lines)
        self.assertIn(
            'CANNOT dom0\'s external_ids:ovn-bridge-remote is '
            'ssl:192.0.2.9:6653 (from a remote set-up): an ovn-controller in '
            'dom0 would reach br-int through it; remove it in dom0 '
            '(ovs-vsctl remove Open_vSwitch . external_ids '
            'ovn-bridge-remote) or use --mode remote', lines)
        self.assertEqual({'ovn-bridge-remote': 'ssl:192.0.2.9:6653'},
                         self.external_ids(self.host))

    def test_dry_run_says_what_and_changes_nothing(self):
        before = self.switch_state(self.host)
        rc, lines = self.setup('--ovsdb-ca', self.ca, '--dry-run',
                               '--bridge-remote',
                               'unix:/run/nova-xen/br-int.sock')
        self.assertEqual(0, rc, lines)
        self.assertIn('WOULD external_ids:hostname=%s (was unset)'
                      % NOVA_HOST, lines)
        self.assertIn('WOULD external_ids:ovn-bridge-remote='
                      'unix:/run/nova-xen/br-int.sock (was unset)', lines)
        self.assertIn('WOULD dom0 firewall: open udp 6081, tcp 6640, tcp '
                      '6653', lines)
        self.assertTrue(lines[-1].startswith('dry run: '), lines)
        self.assertFalse([line for line in lines if line.startswith('CHANGED')])
        self.assertEqual(before, self.switch_state(self.host))
        self.assertEqual([], self.x.SDN_controller.get_all())
        self.assertEqual([], self.x.pool.certificate_list())
        self.assertEqual(set(), self.open_ports(self.host))

    def test_in_dom0_mode(self):
        rc, lines = self.setup('--mode', 'in-dom0', '--encap-ip',
                               '192.0.2.2')
        self.assertEqual(0, rc, lines)
        ids = self.external_ids(self.host)
        self.assertEqual('192.0.2.2', ids['ovn-encap-ip'])
        self.assertEqual(NOVA_HOST, ids['hostname'])
        self.assertNotIn('ovn-bridge-remote', ids)
        # no SDN controller, no certificate, no remote OpenFlow: only
        # Geneve through the firewall
        self.assertEqual([], self.x.SDN_controller.get_all())
        self.assertEqual('', self.vsctl(self.host, 'get-manager').strip())
        self.assertEqual('', self.vsctl(self.host, 'get-controller',
                                        'br-int').strip())
        self.assertEqual({('6081', 'udp')}, self.open_ports(self.host))

    def test_a_mapping_onto_a_missing_bridge_changes_nothing(self):
        before = self.switch_state(self.host)
        rc, lines = self.setup('--mode', 'in-dom0', '--bridge-mappings',
                               'physnet1:xenbr9,physnet2:br-int')
        self.assertEqual(1, rc, lines)
        self.assertIn(
            'CANNOT map physnet1 onto xenbr9: dom0 of host %s has no bridge '
            'xenbr9 (its bridges: br-int, xenbr0, xenbr1); a provider '
            'network maps onto the bridge of a PIF\'s xapi network (xenbrN)'
            % self.host['name_label'], lines)
        self.assertIn(
            'CANNOT map physnet2 onto br-int: br-int is not the bridge of a '
            'PIF of host %s, so its traffic would never leave the host; use '
            'the bridge of a PIF\'s xapi network (xenbrN)'
            % self.host['name_label'], lines)
        self.assertEqual('nothing changed: 2 problems above', lines[-1])
        self.assertEqual(before, self.switch_state(self.host))
        self.assertEqual(set(), self.open_ports(self.host))

    def test_another_sdn_controller_is_left_alone(self):
        theirs = self.x.SDN_controller.introduce('ssl', '198.51.100.7',
                                                 '6632')
        before = self.switch_state(self.host)
        rc, lines = self.setup('--ovsdb-ca', self.ca)
        self.assertEqual(1, rc, lines)
        self.assertIn(
            'CANNOT make the pool\'s SDN controller pssl:6640: the pool '
            'already has one (ssl 198.51.100.7:6632), a single slot that '
            'Xen Orchestra\'s SDN controller also uses; forget it (xe '
            'sdn-controller-forget) only if nothing uses it, or run '
            'ovn-controller in dom0 (--mode in-dom0)', lines)
        self.assertEqual([theirs], self.x.SDN_controller.get_all())
        self.assertEqual([], self.x.pool.certificate_list())
        self.assertEqual(before, self.switch_state(self.host))

    def test_what_remote_mode_needs_from_the_operator(self):
        rc, lines = self.setup('--encap-network', 'xenbr1')
        self.assertEqual(1, rc, lines)
        self.assertIn('CANNOT use PIF eth1 of host %s on network xenbr1: it '
                      'has no IP address (give it one: xe '
                      'pif-reconfigure-ip, or pass --encap-ip)'
                      % self.host['name_label'], lines)
        self.assertIn('CANNOT let dom0\'s OVSDB trust ovn-controller: the '
                      'pool has no CA certificate sdn-controller-ca.pem; '
                      'pass --ovsdb-ca with the CA that signed the client '
                      'certificate of this domU\'s ovn-controller', lines)
        self.assertEqual({}, self.external_ids(self.host))

    def test_bad_arguments(self):
        rc, lines = self.setup('--bridge-mappings', 'physnet1')
        self.assertEqual(1, rc)
        self.assertIn('CANNOT --bridge-mappings: \'physnet1\' is not '
                      'physnet:bridge (e.g. physnet1:xenbr1)', lines)
        lines = []
        rc = ovn_setup.main(['--config-file', self.nova_conf(),
                             '--sb-remote', 'http://x'], say=lines.append)
        self.assertEqual(1, rc)
        self.assertIn('ssl:IP:PORT', lines[0])
        self.assertEqual({}, self.external_ids(self.host))

    def test_the_manage_command_line(self):
        rc = manage.main(['ovn-setup', '--config-file', self.nova_conf(),
                          '--sb-remote', SB, '--mode', 'in-dom0',
                          '--dry-run'])
        self.assertEqual(0, rc)
        self.assertEqual(2, manage.main(['ovn-setup', '--mode', 'x']))
