"""Real dom0 networking: VIFs follow their domains (shutdown, suspend,
reboot, hot-unplug, migration), and nothing outlives a world.

See tests/xapisim/dom0net_base.py; root and openvswitch-switch,
iproute2, ethtool needed (they never skip).
"""

import json
import os
import signal
import subprocess
import sys
import unittest
from unittest import mock

import XenAPI

import xapisim
from xapisim import netns

from tests import records
from tests.xapisim.test_plugins import PLUGINS
from tests.xapisim.dom0net_base import (Dom0NetworkTestCase, ROOT, TENANT,
                                        exchange, links, run, wait_for)


class LifecycleTest(Dom0NetworkTestCase):

    def started(self, networks=None, pool=0, index=0, x=None):
        x = x or self.x
        if networks is None:
            net = x.network.get_by_name_label(
                'Pool-wide network associated with eth0')[0]
            networks = [net, net]
        vm = self.vm_with_vifs(networks, x=x)
        host = self.start_on(vm, pool, index, x=x)
        return vm, host, x.VM.get_domid(vm), self.guest_ns(vm, x=x)

    def assert_plugged(self, host, vm, x=None):
        x = x or self.x
        domid = x.VM.get_domid(vm)
        guest = self.guest_ns(vm, x=x)
        for vif in self.vifs(vm, x=x):
            if not vif['currently_attached']:
                continue
            name = 'vif%s.%s' % (domid, vif['device'])
            row = self.interface(host, name)
            self.assertIsNotNone(row, name)
            self.assertEqual(vif['uuid'], row['external_ids']['xs-vif-uuid'])
            self.assertIn(name, links(host['dom0']['netns']))
            self.assertIn('eth%s' % vif['device'], links(guest))
        return guest

    def test_shutdowns_remove_port_veth_and_guest(self):
        for stop in ('clean_shutdown', 'hard_shutdown'):
            vm, host, domid, guest = self.started()
            self.assert_plugged(host, vm)
            getattr(self.x.VM, stop)(vm)
            self.assert_unplugged(host, domid, guest, devices=(0, 1))

    def test_hot_unplug_and_plug(self):
        vm, host, domid, guest = self.started()
        first, second = self.vifs(vm)
        self.x.VIF.unplug(self.x.VIF.get_by_uuid(second['uuid']))
        self.assertIsNone(self.interface(host, 'vif%s.1' % domid))
        self.assertNotIn('vif%s.1' % domid, links(host['dom0']['netns']))
        # the guest runs on with its other NIC
        self.assertEqual({'lo', 'eth0'}, set(links(guest)))
        self.x.VIF.plug(self.x.VIF.get_by_uuid(second['uuid']))
        self.assert_plugged(host, vm)
        self.assertEqual({'lo', 'eth0', 'eth1'}, set(links(guest)))

    def test_suspend_resume_and_reboot_make_new_domains(self):
        # one VIF on a pool-wide network, one on an internal one (whose
        # bridge xapi makes and removes with its VIFs)
        pool_net = self.x.network.get_by_name_label(
            'Pool-wide network associated with eth0')[0]
        vm, host, domid, guest = self.started([pool_net, self.new_network()])
        self.x.VM.suspend(vm)
        self.assert_unplugged(host, domid, guest, devices=(0, 1))
        self.x.VM.resume_on(vm, self.host_ref(0, 0), False, False)
        resumed = self.x.VM.get_domid(vm)
        self.assertNotEqual(domid, resumed)
        self.assert_plugged(host, vm)
        self.x.VM.hard_reboot(vm)
        self.assert_unplugged(host, resumed, devices=(0, 1))
        self.assert_plugged(host, vm)
        self.x.VM.clean_reboot(vm)
        self.assertEqual('Running', self.x.VM.get_power_state(vm))
        self.assert_plugged(host, vm)

    def test_pool_migrate_moves_the_port_and_keeps_the_guest(self):
        net = self.new_network()
        vm, one, domid, guest = self.started([net], 0, 0)
        peer = self.vm_with_vifs([net])
        self.start_on(peer, 0, 1)
        run(['ip', '-n', guest, 'addr', 'add', TENANT % 31, 'dev', 'eth0'])
        peer_ns = self.guest_ns(peer)
        run(['ip', '-n', peer_ns, 'addr', 'add', TENANT % 32, 'dev', 'eth0'])
        self.x.VM.pool_migrate(vm, self.host_ref(0, 1), {'live': 'true'})
        two = self.host_desc(0, 1)
        self.assert_unplugged(one, domid)
        self.assertEqual(guest, self.assert_plugged(two, vm))
        # the same guest, its address kept, now beside its peer
        self.assertEqual('203.0.113.31', exchange(guest, peer_ns,
                                                  '203.0.113.32'))
        self.assertEqual('203.0.113.32', exchange(peer_ns, guest,
                                                  '203.0.113.31'))
        # nothing of the VIF's network left on the source
        self.assertIsNone(self.bridge(one, self.x.network.get_bridge(net)))

    def test_destination_plugs_before_the_source_unplugs(self):
        vm, one, domid, guest = self.started(pool=0, index=0)
        two = self.host_desc(0, 1)
        self.x.VM.pool_migrate(vm, self.host_ref(0, 1), {})
        new_domid = self.x.VM.get_domid(vm)
        # each switch's database log: when the ports came and went
        added = [date for date, comment in self.transactions(two)
                 if 'add-port xenbr0 vif%s.0' % new_domid in comment]
        removed = [date for date, comment in self.transactions(one)
                   if comment.endswith('del-port vif%s.0' % domid)]
        self.assertEqual(1, len(added), added)
        self.assertEqual(1, len(removed), removed)
        # the dates are in ms: both in one ms is the right order too; the
        # wrong one puts a dozen commands between the two
        self.assertLessEqual(added[0], removed[0])

    def transactions(self, host):
        """(time in ms, comment) of each transaction in the switch's
        database log, oldest first."""
        found = []
        with open(os.path.join(host['dom0']['ovs_dbdir'], 'conf.db')) as fh:
            for line in fh:
                if line.startswith('{') and '"_comment"' in line:
                    record = json.loads(line)
                    found.append((record['_date'], record['_comment']))
        return found

    def test_migrate_send_moves_the_port_within_and_across_pools(self):
        vm, one, domid, guest = self.started(pool=0, index=0)
        x = self.x
        vdi_map = {}        # no disks: only the domain moves
        network = x.network.get_by_name_label(
            'Pool-wide network associated with eth0')[0]
        # storage XenMotion to the other host of the pool
        token = x.host.migrate_receive(self.host_ref(0, 1), network, {})
        x.VM.migrate_send(vm, token, True, vdi_map, {}, {}, {})
        two = self.host_desc(0, 1)
        self.assert_unplugged(one, domid, devices=(0, 1))
        self.assertEqual(guest, self.assert_plugged(two, vm))
        # then to the second pool
        other = XenAPI.Session(self.world['pools'][1]['master'])
        other.login_with_password(self.world['username'],
                                  self.world['password'], '2.21', 'test')
        self.addCleanup(other.xenapi.session.logout)
        y = other.xenapi
        there = y.network.get_by_name_label(
            'Pool-wide network associated with eth0')[0]
        token = y.host.migrate_receive(self.host_ref(1, 0, y), there, {})
        vif_map = {v: there for v in x.VM.get_VIFs(vm)}
        uuid = x.VM.get_uuid(vm)
        old_domid = x.VM.get_domid(vm)
        x.VM.migrate_send(vm, token, True, vdi_map, vif_map, {}, {})
        arrived = y.VM.get_by_uuid(uuid)
        self.addCleanup(self.remove_vm_in, y, arrived)
        three = self.host_desc(1, 0)
        self.assert_unplugged(two, old_domid, devices=(0, 1))
        self.assertEqual(guest, self.assert_plugged(three, arrived, x=y))
        # its ports carry the ids of the VIFs of the destination pool
        domid = y.VM.get_domid(arrived)
        for vif in self.vifs(arrived, x=y):
            row = self.interface(three, 'vif%s.%s' % (domid, vif['device']))
            self.assertEqual(y.network.get_uuid(there),
                             row['external_ids']['xs-network-uuid'])
        y.VM.hard_shutdown(arrived)
        self.assert_unplugged(three, domid, guest, devices=(0, 1))

    def test_a_move_to_a_host_without_the_bridge_keeps_the_vm_where_it_is(
            self):
        # an unmanaged network whose bridge only the first host has
        net = self.new_network(bridge='br-mv', managed=False)
        one, two = self.host_desc(0, 0), self.host_desc(0, 1)
        self.addCleanup(self.vsctl, one, '--if-exists', 'del-br', 'br-mv')
        self.vsctl(one, 'add-br', 'br-mv', '--', 'set', 'bridge', 'br-mv',
                   'datapath_type=netdev')
        vm, one, domid, guest = self.started([net], 0, 0)
        self.assertFailure(['BRIDGE_NOT_AVAILABLE', 'br-mv'],
                           self.x.VM.pool_migrate, vm, self.host_ref(0, 1),
                           {'live': 'true'})
        # and across pools, to a network whose bridge nobody made
        other = self.login(self.world['pools'][1]['master'])
        y = other.xenapi
        there = self.new_network(x=y, bridge='br-mw', managed=False)
        token = y.host.migrate_receive(
            self.host_ref(1, 0, y), y.network.get_by_name_label(
                'Pool-wide network associated with eth0')[0], {})
        vif_map = {v: there for v in self.x.VM.get_VIFs(vm)}
        self.assertFailure(['BRIDGE_NOT_AVAILABLE', 'br-mw'],
                           self.x.VM.migrate_send, vm, token, True, {},
                           vif_map, {}, {})
        # the VM runs on, where it was, its port and guest as they were
        self.assertEqual(self.host_ref(0, 0), self.x.VM.get_resident_on(vm))
        self.assertEqual(domid, self.x.VM.get_domid(vm))
        self.assertEqual(guest, self.assert_plugged(one, vm))
        self.assertEqual([], self.vif_ports(two))
        uuid = self.x.VM.get_uuid(vm)
        self.assertEqual([], [r for r in y.VM.get_all_records().values()
                              if r['uuid'] == uuid])
        self.assertEqual([], self.vif_ports(self.host_desc(1, 0)))


class WorldLifetimeTest(unittest.TestCase):
    """Nothing of a world's networking outlives it."""

    @staticmethod
    def daemons(world):
        pids = []
        for pool in world['pools']:
            for host in pool['hosts']:
                for name in ('ovsdb-server', 'ovs-vswitchd'):
                    with open(os.path.join(host['dom0']['ovs_rundir'],
                                           name + '.pid')) as fh:
                        pids.append(int(fh.read()))
        return pids

    def assert_gone(self, prefix, pids):
        wait_for('the namespaces of %s gone' % prefix,
                 lambda: not netns.list_netns(prefix))
        wait_for('the daemons gone',
                 lambda: not any(netns.alive(p) for p in pids))
        self.assertFalse(os.path.exists(os.path.join(
            netns.REGISTRY_DIR, prefix[:-1] + '.json')))

    def running_vm(self, world):
        session = XenAPI.Session(world['pools'][0]['master'])
        session.login_with_password(world['username'], world['password'],
                                    '2.21', 'test')
        x = session.xenapi
        vm = x.VM.create(records.vm_record('lifetime', 128, 1))
        net = x.network.get_by_name_label(
            'Pool-wide network associated with eth0')[0]
        x.VIF.create({'VM': vm, 'network': net, 'device': '0', 'MAC': '',
                      'MTU': '1500', 'other_config': {},
                      'qos_algorithm_type': '', 'qos_algorithm_params': {}})
        x.VM.start(vm, False, False)
        return x.VM.get_uuid(vm)

    def test_stop_leaves_no_namespace_and_no_daemon(self):
        with xapisim.running(hosts=2, dom0_network='ovs',
                             guest_delay=0.01) as world:
            prefix = world['dom0_network']['prefix']
            pids = self.daemons(world)
            self.running_vm(world)
            self.assertEqual(5, len(netns.list_netns(prefix)))
            self.assertTrue(all(netns.alive(p) for p in pids))
        self.assert_gone(prefix, pids)

    def test_a_killed_simulator_is_swept_by_the_next_world(self):
        proc = subprocess.Popen(
            [sys.executable, '-m', 'xapisim', '--dom0-network', 'ovs',
             '--guest-delay', '0.01'], cwd=ROOT, stdout=subprocess.PIPE)
        try:
            world = json.loads(proc.stdout.readline().decode())
            prefix = world['dom0_network']['prefix']
            pids = self.daemons(world)
            self.running_vm(world)
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()
        self.assertTrue(netns.list_netns(prefix))
        self.assertTrue(all(netns.alive(p) for p in pids))
        sim = xapisim.Simulator(dom0_network='ovs')
        try:
            self.assert_gone(prefix, pids)
        finally:
            sim.stop()

    def test_a_world_goes_when_its_test_process_dies(self):
        script = ('import json, sys, time, xapisim\n'
                  'with xapisim.running(dom0_network="ovs") as world:\n'
                  '    print(json.dumps(world), flush=True)\n'
                  '    time.sleep(3600)\n')
        proc = subprocess.Popen([sys.executable, '-c', script], cwd=ROOT,
                                stdout=subprocess.PIPE)
        try:
            world = json.loads(proc.stdout.readline().decode())
            pids = self.daemons(world)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
        self.assert_gone(world['dom0_network']['prefix'], pids)

    def test_without_open_vswitch_it_refuses_saying_which_package(self):
        real_which = netns.shutil.which

        def which(tool):
            return None if tool.startswith('ovs') else real_which(tool)
        with mock.patch.object(netns.shutil, 'which', which):
            with self.assertRaises(netns.Dom0NetError) as caught:
                xapisim.Simulator(dom0_network='ovs')
        self.assertIn('missing the Debian packages openvswitch-switch',
                      str(caught.exception))
        self.assertIn('--dom0-network ovs', str(caught.exception))

    def test_off_by_default(self):
        sim = xapisim.Simulator(plugins_dir=PLUGINS, guest_delay=0.01)
        self.addCleanup(sim.stop)
        world = sim.describe()
        self.assertNotIn('dom0_network', world)
        self.assertNotIn('dom0', world['pools'][0]['hosts'][0])
        self.running_vm(world)
        session = XenAPI.Session(world['pools'][0]['master'])
        session.login_with_password(world['username'], world['password'],
                                    '2.21', 'test')
        self.addCleanup(session.xenapi.session.logout)
        host = session.xenapi.host.get_all()[0]
        # plugins run in this namespace, with no switch of their own:
        # OVS_RUNDIR names where the dom0's switch would serve (an
        # ovsdb-server a test starts there, tests/ovsdb.py), nothing else
        seen = json.loads(session.xenapi.host.call_plugin(
            host, 'xapisim_probe.py', 'namespace', {}))
        own = os.stat('/proc/self/ns/net')
        rundir = os.path.join(session.xenapi.host.get_other_config(host)[
            'xapisim_dom0_root'], 'var', 'run', 'openvswitch')
        self.assertEqual({'env': {'OVS_RUNDIR': rundir},
                          'netns': [own.st_dev, own.st_ino]}, seen)
