"""The minicloud's ML2/OVN without a cloud (tools/minicloud/ovn.sh): Neutron
configured for OVN under uWSGI, xapisim with real dom0 networks, each
compute's chassis (its dom0's Open_vSwitch external_ids, its
ovn-controller inside that dom0's namespace), the computes' nova.conf,
and the agentless driver only when MINICLOUD_NEUTRON=noagent asks.
Also tools/minicloud/ovn_check.py's one-line findings, with a stand-in
for Neutron and ovn-sbctl.
"""

import copy
import json
import os
import types
import unittest

from tests.devstack.test_minicloud_computes import MinicloudTestCase
from tests.devstack.test_minicloud_computes import ini
from tests.devstack.test_minicloud_computes import tool_module
from tests.devstack.test_minicloud_computes import WORLD


def with_dom0(world):
    """WORLD as xapisim --dom0-network ovs describes it."""
    world = copy.deepcopy(world)
    n = 0
    for p, pool in enumerate(world['pools'], 1):
        for h, host in enumerate(pool['hosts'], 1):
            n += 1
            run = '/state/dom0/p%dh%d/var/run/openvswitch' % (p - 1, h - 1)
            host['dom0'] = {'netns': 'xsim-abc-h%d-%d' % (p, h),
                            'ovs_rundir': run,
                            'ovsdb': 'unix:%s/db.sock' % run,
                            'underlay_ip': '192.0.2.%d' % n,
                            'datapath_type': 'netdev'}
    world['dom0_network'] = {
        'mode': 'ovs', 'prefix': 'xsim-abc-',
        'provider': {'netns': 'xsim-abc-lan', 'bridge': 'br0',
                     'subnet': '198.51.100.0/24',
                     'physical_network': 'physnet1', 'host_bridge': 'xenbr1'}}
    return world


class OvnTestCase(MinicloudTestCase):

    def setUp(self):
        super().setUp()
        paste = self.dir / 'venv' / 'etc' / 'neutron' / 'api-paste.ini'
        paste.parent.mkdir(parents=True)
        paste.write_text('[composite:neutron]\n')

    def ok(self, script, computes='1.1 1.2 2.1'):
        result = self.bash(script, computes)
        self.assertEqual(0, result.returncode, result.stdout + result.stderr)
        return result

    def etc(self, *path):
        return self.dir.joinpath('etc', *path)

    def spawned(self):
        path = self.root / 'spawned'
        return path.read_text().splitlines() if path.exists() else []


SPAWN_STUB = 'function mc_spawn { echo "$*" >> "$SHIM_ROOT/spawned"; }\n'


class NeutronTest(OvnTestCase):

    def test_ml2_ovn_by_default(self):
        self.ok('mc_configure_neutron\n')
        ml2 = ini(self.etc('neutron', 'plugins', 'ml2', 'ml2_conf.ini'))
        self.assertEqual('ovn', ml2.get('ml2', 'mechanism_drivers'))
        self.assertEqual('geneve', ml2.get('ml2', 'tenant_network_types'))
        self.assertIn('geneve', ml2.get('ml2', 'type_drivers').split(','))
        self.assertIn('flat', ml2.get('ml2', 'type_drivers').split(','))
        self.assertEqual('physnet1', ml2.get('ml2_type_flat',
                                             'flat_networks'))
        run = self.dir / 'run' / 'ovn'
        self.assertEqual('unix:%s' % (run / 'nb.sock'),
                         ml2.get('ovn', 'ovn_nb_connection'))
        self.assertEqual('unix:%s' % (run / 'sb.sock'),
                         ml2.get('ovn', 'ovn_sb_connection'))
        self.assertEqual('False', ml2.get('ovn', 'ovn_metadata_enabled'))
        # oslo.config strips the quotes: the empty strategy, "activate
        # at once" (not "rarp")
        self.assertEqual('""', ml2.get(
            'ovn', 'live_migration_activation_strategy'))
        self.assertFalse(ml2.has_section('nova_xen_noagent'))
        # neutron-api under uWSGI on Neutron's port
        uwsgi = ini(self.etc('neutron', 'neutron-uwsgi.ini'))
        self.assertEqual('127.0.0.1:9696', uwsgi.get('uwsgi', 'http-socket'))
        self.assertEqual('neutron.wsgi.api:application',
                         uwsgi.get('uwsgi', 'module'))
        self.assertEqual('true', uwsgi.get('uwsgi', 'die-on-term'))
        self.assertFalse(self.etc('neutron', 'gunicorn.conf.py').exists())
        # L3 in OVN: routers, SNAT and centralized floating IPs
        conf = ini(self.etc('neutron', 'neutron.conf'))
        self.assertEqual('ovn-router', conf.get('DEFAULT', 'service_plugins'))
        self.assertEqual('False', ml2.get('ovn',
                                          'enable_distributed_floating_ip'))

    def test_api_under_uwsgi_and_the_maintenance_worker(self):
        self.ok('mc_configure_neutron\n' + SPAWN_STUB + 'mc_start_neutron\n')
        spawned = self.spawned()
        self.assertEqual(['neutron', 'q-ovn-maint'],
                         [line.split()[0] for line in spawned])
        uwsgi = '%s --ini %s' % (self.dir / 'venv' / 'bin' / 'uwsgi',
                                 self.etc('neutron', 'neutron-uwsgi.ini'))
        self.assertTrue(spawned[0].endswith(uwsgi), spawned[0])
        self.assertIn('neutron-ovn-maintenance-worker --config-file',
                      spawned[1])

    def test_noagent_fallback(self):
        self.env['MINICLOUD_NEUTRON'] = 'noagent'
        self.ok('mc_configure_neutron\n' + SPAWN_STUB + 'mc_start_neutron\n')
        ml2 = ini(self.etc('neutron', 'plugins', 'ml2', 'ml2_conf.ini'))
        self.assertEqual('nova_xen_noagent', ml2.get('ml2',
                                                     'mechanism_drivers'))
        self.assertFalse(ml2.has_section('ovn'))
        # no L3 plugin: no router, no floating IP
        conf = ini(self.etc('neutron', 'neutron.conf'))
        self.assertEqual('', conf.get('DEFAULT', 'service_plugins'))
        self.assertTrue(self.etc('neutron', 'gunicorn.conf.py').exists())
        self.assertEqual(['neutron'],
                         [line.split()[0] for line in self.spawned()])
        self.assertTrue(self.spawned()[0].endswith('bin/gunicorn'))

    def test_packages(self):
        result = self.ok('echo "${MC_APT_PACKAGES[*]}"\n'
                         'echo "${MC_PIP_PACKAGES[*]}"\n')
        apt, pip = result.stdout.splitlines()
        # (the guests' DHCP client, SSH server, busybox and LUN files; the
        # root namespace's ping)
        for package in ('ovn-central', 'ovn-host', 'openvswitch-switch',
                        'iputils-ping', 'udhcpc', 'dropbear-bin', 'busybox',
                        'libfuse3-3'):
            self.assertIn(package, apt.split())
        self.assertIn('pyuwsgi', pip.split())
        self.assertIn('mfusepy>=3.1.1', pip.split())
        self.env['MINICLOUD_NEUTRON'] = 'noagent'
        apt = self.ok('echo "${MC_APT_PACKAGES[*]}"\n').stdout.split()
        self.assertNotIn('ovn-central', apt)
        self.assertNotIn('dropbear-bin', apt)

    def test_unknown_backend_stops_up(self):
        self.env['MINICLOUD_NEUTRON'] = 'ovs'
        result = self.bash('mc_up\n')
        self.assertEqual(1, result.returncode)
        self.assertIn('MINICLOUD_NEUTRON is ovn (ML2/OVN, the default) or '
                      'noagent', result.stderr)
        self.assertEqual([], self.spawned())


class ComputeTest(OvnTestCase):

    def test_xapisim_with_dom0_networks(self):
        self.ok(SPAWN_STUB + 'mc_start_xapisim\n')
        words = self.spawned()[0].split()
        self.assertEqual('ovs', words[words.index('--dom0-network') + 1])
        os.unlink(self.root / 'spawned')
        self.env['MINICLOUD_NEUTRON'] = 'noagent'
        self.ok(SPAWN_STUB + 'mc_start_xapisim\n')
        self.assertNotIn('--dom0-network', self.spawned()[0])

    def test_nova_computes_for_ovn(self):
        self.configure()
        conf = self.conf('nova-cpu.conf')
        self.assertEqual('ovn', conf.get('xenserver', 'neutron_backend'))
        self.assertEqual('True', conf.get('DEFAULT', 'force_config_drive'))

    def test_nova_computes_without_ovn(self):
        self.env['MINICLOUD_NEUTRON'] = 'noagent'
        self.configure()
        conf = self.conf('nova-cpu.conf')
        self.assertFalse(conf.has_option('xenserver', 'neutron_backend'))
        self.assertFalse(conf.has_option('DEFAULT', 'force_config_drive'))


# ovs-vsctl and ovn-sbctl as the chassis steps call them: recorded; the
# southbound database has every chassis
CHASSIS_STUBS = r'''
function ovs-vsctl { echo "ovs-vsctl $*" >> "$SHIM_ROOT/calls"; }
function _mc_ovn_chassis_registered { echo "sb $1" >> "$SHIM_ROOT/calls"; }
'''


class ChassisTest(OvnTestCase):

    def setUp(self):
        super().setUp()
        self.world = with_dom0(WORLD)
        (self.dir / 'xapisim.json').write_text(json.dumps(self.world) + '\n')

    def calls(self):
        return (self.root / 'calls').read_text().splitlines()

    def test_each_compute_is_the_chassis_of_its_host(self):
        self.ok('mc_compute_table\n' + SPAWN_STUB + CHASSIS_STUBS +
                'mc_start_ovn_controllers\n')
        hosts = [self.world['pools'][0]['hosts'][0],
                 self.world['pools'][0]['hosts'][1],
                 self.world['pools'][1]['hosts'][0]]
        vsctl = [c for c in self.calls() if c.startswith('ovs-vsctl')]
        self.assertEqual(3, len(vsctl))
        sb = 'unix:%s' % (self.dir / 'run' / 'ovn' / 'sb.sock')
        for n, (host, call, spawned) in enumerate(
                zip(hosts, vsctl, self.spawned()), 1):
            dom0 = host['dom0']
            words = call.split()
            self.assertEqual('--db=%s' % dom0['ovsdb'], words[1])
            self.assertEqual(['set', 'Open_vSwitch', '.'], words[3:6])
            ids = dict(w[len('external_ids:'):].split('=', 1)
                       for w in words[6:])
            self.assertEqual({
                'system-id': host['uuid'],
                'hostname': 'compute%d' % n,
                'ovn-remote': sb,
                'ovn-encap-type': 'geneve',
                'ovn-encap-ip': dom0['underlay_ip'],
                'ovn-bridge': 'br-int',
                'ovn-bridge-datapath-type': 'netdev',
                'ovn-bridge-mappings': 'physnet1:xenbr1',
                # every chassis may hold routers' gateways
                'ovn-cms-options': 'enable-chassis-as-gw'}, ids)
            # ovn-controller inside that dom0's namespace, on its OVSDB
            rundir = self.dir / 'run' / 'ovn' / ('n-cpu-%d' % n)
            self.assertEqual(
                'ovn-cpu-%d %s ip netns exec %s env OVS_RUNDIR=%s '
                'OVN_RUNDIR=%s ovn-controller %s -vconsole:info '
                '-vsyslog:off' % (n, rundir, dom0['netns'],
                                  dom0['ovs_rundir'], rundir, dom0['ovsdb']),
                spawned)
        # up goes on once the southbound database has each chassis
        self.assertEqual(['sb %s' % h['uuid'] for h in hosts],
                         [c for c in self.calls() if c.startswith('sb ')])

    def test_xapisim_without_dom0_networks(self):
        (self.dir / 'xapisim.json').write_text(json.dumps(WORLD) + '\n')
        result = self.bash('mc_compute_table\n' + SPAWN_STUB + CHASSIS_STUBS
                           + 'mc_start_ovn_controllers\n')
        self.assertEqual(1, result.returncode)
        self.assertIn('xapisim host 1.1 (xcp-ng-1-1) has no dom0 network: '
                      'start xapisim with --dom0-network ovs', result.stderr)
        self.assertEqual([], self.spawned())

    def test_glance_in_each_dom0(self):
        # the dom0 plugins run in their host's namespace: a relay there
        # on 127.0.0.1, to Glance in the root namespace
        self.ok('mc_compute_table\nmc_ovn_chassis_table\n' + SPAWN_STUB +
                'function _mc_dom0_listens { echo "$*" >> "$SHIM_ROOT/calls"; }\n'
                'mc_start_dom0_glance\n')
        # (one command line: the relay's script has several lines)
        spawned = [(self.root / 'spawned').read_text().rstrip('\n')]
        sock = self.dir / 'run' / 'ovn' / 'glance.sock'
        self.assertTrue(spawned[0].startswith(
            'dom0-glance %s bash -c ' % sock.parent), spawned[0])
        self.assertTrue(spawned[0].endswith(
            ' dom0-glance %s 9292 xsim-abc-h1-1 xsim-abc-h1-2 xsim-abc-h2-1'
            % sock), spawned[0])
        script = ' '.join(spawned[0].replace('\\\n', ' ').split())
        self.assertIn('ip netns exec "$ns" socat "TCP-LISTEN:$port,bind='
                      '127.0.0.1,reuseaddr,fork" "UNIX-CONNECT:$sock" &',
                      script)
        self.assertIn('exec socat "UNIX-LISTEN:$sock,fork,unlink-early" '
                      '"TCP:127.0.0.1:$port"', script)
        self.assertEqual(['xsim-abc-h1-1 9292', 'xsim-abc-h1-2 9292',
                          'xsim-abc-h2-1 9292'], self.calls())

    def test_status_and_down_know_the_chassis(self):
        self.ok('mc_compute_table\nmc_ovn_chassis_table\n')
        result = self.ok('_mc_where ovn-cpu-3\n'
                         'mc_ovn_controller_services\n')
        self.assertEqual(['compute3 in xsim-abc-h2-1', 'ovn-cpu-1',
                          'ovn-cpu-2', 'ovn-cpu-3'],
                         result.stdout.splitlines())


def ovn_check_module():
    return tool_module('ovn_check')


class FakeNetwork(object):
    def __init__(self, agents):
        self._agents = agents

    def agents(self):
        return iter(self._agents)


def agent(host, alive=True, agent_type='OVN Controller agent'):
    return types.SimpleNamespace(host=host, is_alive=alive,
                                 agent_type=agent_type)


class ChainCheckTest(OvnTestCase):
    """ovn_check.py's first link: Neutron's OVN agents."""

    CHASSIS = [('n-cpu-1', 'compute1', 'uuid-1'),
               ('n-cpu-2', 'compute2', 'uuid-2')]

    def check(self, agents):
        module = ovn_check_module()
        conn = types.SimpleNamespace(network=FakeNetwork(agents))
        try:
            module.check_agents(conn, self.CHASSIS)
        except module.ChainError as exc:
            return str(exc)
        return None

    def test_every_host_has_an_alive_chassis(self):
        self.assertIsNone(self.check([agent('compute1'), agent('compute2')]))

    def test_a_host_without_chassis(self):
        self.assertEqual(
            'compute2: Neutron has no OVN Controller agent for host '
            'compute2 (its agents: OVN Controller agent@compute1, OVN '
            'Metadata agent@compute2; log: ovn-cpu-2.log)',
            self.check([agent('compute1'),
                        agent('compute2', agent_type='OVN Metadata agent')]))

    def test_a_gateway_chassis(self):
        self.assertIsNone(self.check([
            agent('compute1', agent_type='OVN Controller Gateway agent'),
            agent('compute2')]))

    def test_a_dead_chassis(self):
        self.assertEqual(
            'compute1: Neutron\'s OVN chassis for host compute1 is not '
            'alive (log: ovn-cpu-1.log)',
            self.check([agent('compute1', alive=False), agent('compute2')]))


class FakeCloud(object):
    """The parts of an openstacksdk connection check_chain uses: servers
    go ACTIVE at once, each with one port whose state the test sets."""

    def __init__(self, port_status='ACTIVE', bound=True):
        self.port_status = port_status
        self.bound = bound
        self.servers = {}
        self.deleted = []
        self.image = types.SimpleNamespace(find_image=self._found)
        self.compute = types.SimpleNamespace(
            find_flavor=self._found, create_server=self._create,
            get_server=self.servers.get, delete_server=self.deleted.append,
            wait_for_delete=lambda server, wait: None)
        self.network = types.SimpleNamespace(find_network=self._found,
                                             ports=self._ports)

    @staticmethod
    def _found(name, ignore_missing=True):
        return types.SimpleNamespace(id='id-of-' + name)

    def _create(self, name, availability_zone, **kwargs):
        server = types.SimpleNamespace(
            id='server-%d' % (len(self.servers) + 1), status='ACTIVE',
            fault=None, host=availability_zone.split(':')[1])
        self.servers[server.id] = server
        return server

    def _ports(self, device_id):
        server = self.servers[device_id]
        return [types.SimpleNamespace(
            id='port-of-' + device_id, status=self.port_status,
            binding_host_id=server.host if self.bound else '',
            binding_vif_type='ovs' if self.bound else 'binding_failed')]


class ChainLinksTest(OvnTestCase):
    """ovn_check.py's other links: bound, claimed by the chassis, ACTIVE;
    the servers go whatever the outcome."""

    CHASSIS = ChainCheckTest.CHASSIS

    def run_check(self, cloud, claims):
        module = ovn_check_module()
        module.claimed_by = lambda sb, port_id: claims.get(port_id)
        module.log = lambda text: None
        try:
            results = module.check_chain(cloud, 'unix:sb', self.CHASSIS,
                                         'img', 'm1.tiny', 'net')[0]
        except module.ChainError as exc:
            results = str(exc)
        self.assertEqual(['server-1', 'server-2'], cloud.deleted)
        return results

    def test_claimed_and_active(self):
        self.assertEqual(
            ['compute1 (chassis uuid-1)', 'compute2 (chassis uuid-2)'],
            self.run_check(FakeCloud(), {'port-of-server-1': 'uuid-1',
                                         'port-of-server-2': 'uuid-2'}))

    def test_not_claimed_by_its_chassis(self):
        self.assertEqual(
            'compute2: server server-2 port port-of-server-2 is not claimed '
            'by chassis uuid-2 of compute2 in the OVN southbound database '
            '(claimed by: no chassis): no OVS interface with its iface-id '
            'on br-int in that dom0, or ovn-controller did not see it (log: '
            'ovn-cpu-2.log)',
            self.run_check(FakeCloud(), {'port-of-server-1': 'uuid-1',
                                         'port-of-server-2': ''}))

    def test_claimed_but_down(self):
        self.assertEqual(
            'compute1: server server-1 port port-of-server-1 is claimed by '
            'its chassis but DOWN in Neutron (log: neutron.log)',
            self.run_check(FakeCloud(port_status='DOWN'),
                           {'port-of-server-1': 'uuid-1',
                            'port-of-server-2': 'uuid-2'}))

    def test_not_bound(self):
        self.assertEqual(
            'compute1: server server-1 port port-of-server-1 is not bound to '
            'compute1 (binding:host_id , vif_type binding_failed): Neutron '
            'found no OVN chassis for the host (log: neutron.log)',
            self.run_check(FakeCloud(bound=False), {}))


# ip, ethtool and sysctl as the root link's steps call them: recorded;
# the routes of the root namespace from $SHIM_ROOT/routes, the link there
# if $SHIM_ROOT/link exists
LINK_STUBS = r'''
function ip {
    if [[ "$*" == "-4 route show to match "* ]]; then
        cat "$SHIM_ROOT/routes" 2>/dev/null || true
        return 0
    fi
    if [[ "$*" == "-4 route show root "* ]]; then
        return 0
    fi
    if [[ "$*" == "link show dev mc-lan" ]]; then
        [[ -e $SHIM_ROOT/link ]]
        return
    fi
    echo "ip $*" >> "$SHIM_ROOT/calls"
}
function ethtool { echo "ethtool $*" >> "$SHIM_ROOT/calls"; }
function sysctl { echo "sysctl $*" >> "$SHIM_ROOT/calls"; }
'''


class RootLinkTest(OvnTestCase):
    """The root namespace's veth into xapisim's provider LAN."""

    def setUp(self):
        super().setUp()
        (self.dir / 'xapisim.json').write_text(
            json.dumps(with_dom0(WORLD)) + '\n')

    def calls(self):
        path = self.root / 'calls'
        return path.read_text().splitlines() if path.exists() else []

    def test_made_with_tx_off_and_the_gateway_address(self):
        result = self.ok(LINK_STUBS + 'mc_ovn_root_link\n')
        self.assertEqual([
            'ip link add mc-lan type veth peer name mc-root netns '
            'xsim-abc-lan',
            'ip -n xsim-abc-lan link set mc-root master br0 up',
            # the userspace datapath fills in no checksum: none left to
            # the "hardware" at either end
            'ethtool -K mc-lan tx off',
            'ip netns exec xsim-abc-lan ethtool -K mc-root tx off',
            'sysctl -q -w net.ipv6.conf.mc-lan.disable_ipv6=1 '
            'net.ipv4.conf.mc-lan.forwarding=0',
            # minicloud-net's gateway (bootstrap.py gives the subnet the
            # first address as its gateway)
            'ip addr add 198.51.100.1/24 dev mc-lan',
            'ip link set mc-lan up'], self.calls())
        self.assertIn('root namespace: mc-lan 198.51.100.1/24 on the '
                      'provider LAN (br0 in xsim-abc-lan)', result.stdout)

    def test_another_subnet(self):
        self.env['MINICLOUD_SUBNET_CIDR'] = '10.77.0.0/24'
        self.ok(LINK_STUBS + 'mc_ovn_root_link\n')
        self.assertIn('ip addr add 10.77.0.1/24 dev mc-lan', self.calls())

    def test_without_a_provider_lan(self):
        (self.dir / 'xapisim.json').write_text(json.dumps(WORLD) + '\n')
        result = self.bash(LINK_STUBS + 'mc_ovn_root_link\n')
        self.assertEqual(1, result.returncode)
        self.assertIn("no provider LAN for the root namespace's link",
                      result.stderr)
        self.assertEqual([], self.calls())

    def test_down_removes_it(self):
        (self.root / 'link').touch()
        self.ok(LINK_STUBS + 'mc_down\n')
        self.assertEqual(['ip link del mc-lan'], self.calls())
        os.unlink(self.root / 'link')
        os.unlink(self.root / 'calls')
        self.ok(LINK_STUBS + 'mc_down\n')
        self.assertEqual([], self.calls())

    # up, as far as its checks: what comes after them is not run
    UP_STUBS = (LINK_STUBS + SPAWN_STUB +
                'function mc_check_ports { :; }\n'
                'function mc_say { echo "$*"; [[ $1 != up:* ]] || exit 0; }\n')

    def test_a_routed_subnet_stops_up(self):
        (self.root / 'routes').write_text(
            '198.51.100.0/25 dev eth9 proto kernel scope link src '
            '198.51.100.7\n')
        result = self.bash(self.UP_STUBS + 'mc_up\n')
        self.assertEqual(1, result.returncode)
        self.assertEqual(
            'minicloud: error: the root namespace already routes '
            '198.51.100.0/24 (198.51.100.0/25 dev eth9 proto kernel scope '
            'link src 198.51.100.7): set MINICLOUD_SUBNET_CIDR to a subnet '
            'this machine does not use', result.stderr.splitlines()[0])
        self.assertEqual([], self.calls())
        self.assertEqual([], self.spawned())

    def test_a_free_subnet_and_a_stale_link(self):
        (self.root / 'link').touch()
        result = self.bash(self.UP_STUBS + 'mc_up\n')
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertIn('up: everything in', result.stdout)
        self.assertEqual(['ip link del mc-lan'], self.calls())

    def test_noagent_makes_no_link(self):
        self.env['MINICLOUD_NEUTRON'] = 'noagent'
        (self.root / 'routes').write_text('198.51.100.0/24 dev eth9\n')
        result = self.bash(self.UP_STUBS + 'mc_up\n')
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual([], self.calls())

    def test_status_shows_it(self):
        result = self.bash(
            'function ip { echo "mc-lan@if7 UP 198.51.100.1/24"; }\n'
            'mc_ovn_root_link_state\n'
            'function ip { return 1; }\n'
            'mc_ovn_root_link_state\n')
        self.assertEqual(['ok (198.51.100.1/24)', 'NO (no link mc-lan)'],
                         result.stdout.splitlines())


class FakeNeutron(object):
    """Networks, subnets, routers and router ports, as bootstrap.py
    finds, creates and updates them."""

    def __init__(self):
        self.made = []          # (kind, attributes) of each create/update
        self.networks, self.subnets, self.routers = {}, {}, {}
        self.interfaces = []    # (router id, subnet id)

    def _new(self, kind, table, **attrs):
        obj = types.SimpleNamespace(id='%s-%d' % (kind, len(table) + 1),
                                    **attrs)
        table[obj.id] = obj
        self.made.append((kind, attrs))
        return obj

    def find_network(self, name):
        return next((n for n in self.networks.values() if n.name == name),
                    None)

    def create_network(self, name, is_router_external=False, **attrs):
        attrs.setdefault('provider_network_type', 'geneve')
        return self._new('network', self.networks, name=name,
                         is_router_external=is_router_external, **attrs)

    def update_network(self, net, **attrs):
        vars(net).update(attrs)
        self.made.append(('network update', attrs))
        return net

    def find_subnet(self, name, network_id):
        return next((s for s in self.subnets.values()
                     if s.name == name and s.network_id == network_id), None)

    def create_subnet(self, **attrs):
        attrs.setdefault('gateway_ip', None)
        return self._new('subnet', self.subnets, **attrs)

    def find_router(self, name):
        return next((r for r in self.routers.values() if r.name == name),
                    None)

    def create_router(self, **attrs):
        return self._new('router', self.routers, **attrs)

    def update_router(self, router, **attrs):
        vars(router).update(attrs)
        self.made.append(('router update', attrs))
        return router

    def ports(self, device_id, device_owner):
        return [types.SimpleNamespace(fixed_ips=[{'subnet_id': subnet}])
                for router, subnet in self.interfaces if router == device_id]

    def add_interface_to_router(self, router, subnet):
        self.interfaces.append((router.id, subnet))
        self.made.append(('interface', {'subnet': subnet}))


class BootstrapNetworksTest(unittest.TestCase):
    """tools/minicloud/bootstrap.py's networks: minicloud-net, and with
    ML2/OVN's L3 minicloud-private behind minicloud-router; a second run
    changes nothing."""

    def resources(self, neutron, *l3):
        module = tool_module('bootstrap')
        module.say = lambda text: None
        conn = types.SimpleNamespace(
            network=neutron,
            compute=types.SimpleNamespace(find_flavor=lambda name: True))
        module.resources(conn, '198.51.100.0/24', 'physnet1', *l3)

    @staticmethod
    def provider(external):
        """What minicloud-net is made of (its gateway: the address the
        root namespace's link takes)."""
        return [
            ('network', {'name': 'minicloud-net', 'shared': True,
                         'is_router_external': external,
                         'provider_network_type': 'flat',
                         'provider_physical_network': 'physnet1'}),
            ('subnet', {'name': 'minicloud-subnet', 'network_id': 'network-1',
                        'ip_version': 4, 'cidr': '198.51.100.0/24',
                        'gateway_ip': '198.51.100.1', 'enable_dhcp': False})]

    def test_without_l3(self):
        neutron = FakeNeutron()
        self.resources(neutron)
        self.assertEqual(self.provider(external=False), neutron.made)

    def test_with_l3(self):
        neutron = FakeNeutron()
        self.resources(neutron, '10.30.0.0/23')
        self.assertEqual(self.provider(external=True) + [
            ('network', {'name': 'minicloud-private', 'shared': True,
                         'is_router_external': False,
                         'provider_network_type': 'geneve'}),
            ('subnet', {'name': 'minicloud-private-subnet',
                        'network_id': 'network-2', 'ip_version': 4,
                        'cidr': '10.30.0.0/23', 'enable_dhcp': True,
                        'gateway_ip': None}),
            ('router', {'name': 'minicloud-router',
                        'external_gateway_info': {'network_id': 'network-1'}}),
            ('interface', {'subnet': 'subnet-2'}),
        ], neutron.made)
        made = len(neutron.made)
        self.resources(neutron, '10.30.0.0/23')
        self.assertEqual(made, len(neutron.made), neutron.made[made:])

    def test_l3_on_a_minicloud_made_without(self):
        neutron = FakeNeutron()
        self.resources(neutron)
        neutron.create_router(name='minicloud-router',
                              external_gateway_info=None)
        del neutron.made[:]
        self.resources(neutron, '10.30.0.0/23')
        self.assertEqual(
            ['network update', 'network', 'subnet', 'router update',
             'interface'], [kind for kind, attrs in neutron.made])
        self.assertTrue(neutron.find_network('minicloud-net')
                        .is_router_external)


class ReachCheckTest(unittest.TestCase):
    """ovn_check.py's L3 links: the router's gateway chassis; ping and
    SSH from the root namespace, each failure one line."""

    CHASSIS = ChainCheckTest.CHASSIS

    def setUp(self):
        super().setUp()
        self.module = ovn_check_module()
        self.module.log = lambda text: None
        router = types.SimpleNamespace(id='router-1', name='minicloud-router')
        self.gateway_ports = [types.SimpleNamespace(id='gw-port')]
        self.console = 'xapisim-guest: dropbear: SSH server listening on ' \
                       'port 22\n'
        self.conn = types.SimpleNamespace(
            network=types.SimpleNamespace(
                find_router=lambda name, ignore_missing: router,
                ports=lambda device_id, device_owner: self.gateway_ports),
            compute=types.SimpleNamespace(
                get_server_console_output=lambda server: {
                    'output': self.console}))

    def gateway(self, bound):
        self.module.claimed_by = lambda sb, port: (
            bound if port == 'cr-lrp-gw-port' else None)
        try:
            return self.module.gateway_chassis(self.conn, 'unix:sb',
                                               self.CHASSIS,
                                               'minicloud-router')
        except self.module.ChainError as exc:
            return str(exc)

    def test_gateway_on_a_compute(self):
        self.assertEqual(self.CHASSIS[1], self.gateway('uuid-2'))

    def test_gateway_on_no_chassis(self):
        self.assertEqual(
            'router minicloud-router: its gateway port cr-lrp-gw-port is '
            'bound to no chassis in the OVN southbound database: no gateway '
            'chassis (ovn-cms-options=enable-chassis-as-gw in a chassis\' '
            'external_ids; log: ovn-northd.log, neutron.log)',
            self.gateway(''))
        self.assertIn('cr-lrp-gw-port is missing in the OVN southbound',
                      self.gateway(None))

    def test_gateway_elsewhere(self):
        self.assertEqual(
            'router minicloud-router: its gateway port cr-lrp-gw-port is '
            'bound to chassis uuid-9, which is no compute\'s',
            self.gateway('uuid-9'))

    def test_no_gateway_port(self):
        self.gateway_ports = []
        self.assertEqual('router minicloud-router has no gateway port '
                         '(bootstrap.py: its external_gateway_info)',
                         self.gateway('uuid-1'))

    def reach(self, ping=True, banner='SSH-2.0-dropbear_2022.83'):
        self.module.pings = lambda address: ping
        self.module.ssh_banner = lambda address: banner
        self.module.BOOT_LIMIT = 0
        try:
            self.module.check_reach(self.conn, 'server', '198.51.100.20',
                                    'compute1: server s1 at 198.51.100.20')
        except self.module.ChainError as exc:
            return str(exc)
        return None

    def test_reached(self):
        self.assertIsNone(self.reach())

    def test_no_ping(self):
        self.assertEqual('compute1: server s1 at 198.51.100.20: no answer to '
                         'ping from the root namespace (mc-lan) in 60 s',
                         self.reach(ping=False))

    def test_no_banner(self):
        self.assertEqual(
            'compute1: server s1 at 198.51.100.20: port 22 gave no SSH-2.0- '
            'banner to the root namespace: no banner ([Errno 111] '
            'Connection refused)',
            self.reach(banner='no banner ([Errno 111] Connection refused)'))

    def test_no_ssh_server(self):
        self.console = 'xapisim-guest: hostname s1\n'
        self.assertEqual(
            'compute1: server s1 at 198.51.100.20: the console never said '
            '"dropbear: SSH server listening" in 0 s (last line: '
            'xapisim-guest: hostname s1)', self.reach())


class BootstrapCallTest(OvnTestCase):
    """up's bootstrap step: the routed network and the router only with
    ML2/OVN (the agentless driver has no L3 plugin)."""

    RUN_STUB = 'function mc_run { echo "${*:2}" >> "$SHIM_ROOT/calls"; }\n'

    def bootstrap(self):
        self.ok(self.RUN_STUB + 'mc_bootstrap_resources\n')
        words = (self.root / 'calls').read_text().split()
        os.unlink(self.root / 'calls')
        return words[words.index('resources') + 1:]

    def test_ovn_gets_l3(self):
        self.assertEqual(['198.51.100.0/24', 'physnet1', '10.30.0.0/23'],
                         self.bootstrap())

    def test_noagent_makes_no_router(self):
        self.env['MINICLOUD_NEUTRON'] = 'noagent'
        self.assertEqual(['198.51.100.0/24', 'physnet1'], self.bootstrap())
