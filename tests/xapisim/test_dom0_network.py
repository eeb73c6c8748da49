"""Real dom0 networking: xapisim plugs VIFs as XCP-ng's scripts do.

A world with ``dom0_network='ovs'``: each host a network namespace with
its own Open vSwitch (userspace datapath), each running VM a guest
namespace whose ``eth<n>`` is the peer of ``vif<domid>.<n>`` in its
host's dom0.  Checked through the real XenAPI client, the switches'
databases and real frames between the guests.  These tests need root and
the Debian packages openvswitch-switch, iproute2 and ethtool (``./run
tests`` installs them): without them they fail, saying why; they never
skip.
"""

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

import unittest

import XenAPI

import xapisim
from xapisim import netns

from tests import records
from tests.xapisim.base import SimTestCase
from tests.xapisim.test_plugins import PLUGINS

# generous bounds for a loaded machine: the waits end when the state is
# reached, these only bound a failure
WAIT = 60.0
SETUP_VIF_RULES_KEYS = {'xs-vm-uuid', 'xs-vif-uuid', 'xs-network-uuid',
                        'attached-mac'}
TENANT = '203.0.113.%d/24'
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def wait_for(what, probe, timeout=WAIT):
    """``probe()``'s first true value; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError('still not the case after %ds: %s'
                                 % (timeout, what))
        time.sleep(0.02)


def run(argv):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=120)
    if proc.returncode != 0:
        raise AssertionError('%s: %s' % (' '.join(argv),
                                         proc.stderr.decode()))
    return proc.stdout.decode()


def links(ns):
    """The network devices of namespace ``ns``, by name."""
    return {link['ifname']: link
            for link in json.loads(run(['ip', '-n', ns, '-j', 'link']))}


def exchange(sender_ns, receiver_ns, address, port=5005, timeout=WAIT):
    """A UDP datagram from ``sender_ns`` reaches ``address`` in
    ``receiver_ns``; sent again every 0.2 s (ARP, learning and tunnels may
    drop the first ones) until it arrives; the source it came from."""
    with netns.inside(receiver_ns):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with netns.inside(sender_ns):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind((address, port))
        payload = os.urandom(8).hex().encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            tx.sendto(payload, (address, port))
            if select.select([rx], [], [], 0.2)[0]:
                data, source = rx.recvfrom(100)
                if data == payload:
                    return source[0]
        raise AssertionError('no datagram from %s reached %s in %s'
                             % (sender_ns, address, receiver_ns))
    finally:
        rx.close()
        tx.close()


class Dom0NetworkTestCase(SimTestCase):
    pools = 2
    hosts = 2
    sim_options = {'dom0_network': 'ovs', 'guest_delay': 0.01,
                   'plugins_dir': PLUGINS}

    # -- the world ---------------------------------------------------------

    def host_desc(self, pool=0, index=0):
        return self.world['pools'][pool]['hosts'][index]

    def host_ref(self, pool=0, index=0, x=None):
        return (x or self.x).host.get_by_uuid(self.host_desc(pool,
                                                             index)['uuid'])

    def desc_of(self, host_ref, x=None):
        uuid = (x or self.x).host.get_uuid(host_ref)
        for pool in self.world['pools']:
            for host in pool['hosts']:
                if host['uuid'] == uuid:
                    return host
        raise AssertionError('no host %s' % uuid)

    def vsctl(self, host, *args):
        return run(['ovs-vsctl', '--db=' + host['dom0']['ovsdb'],
                    '--timeout=60'] + list(args))

    def interface(self, host, name):
        """An Interface row's name, external_ids, ofport (None: no row)."""
        out = json.loads(self.vsctl(
            host, '--format=json', '--columns=external_ids,ofport', 'find',
            'Interface', 'name=%s' % name))
        if not out['data']:
            return None
        ids, ofport = out['data'][0]
        return {'external_ids': dict(ids[1]), 'ofport': ofport}

    def bridge(self, host, name):
        out = json.loads(self.vsctl(
            host, '--format=json', '--columns=fail_mode,external_ids,'
            'other_config,datapath_type', 'find', 'Bridge', 'name=%s' % name))
        if not out['data']:
            return None
        fail_mode, ids, other, datapath = out['data'][0]
        return {'fail_mode': fail_mode if isinstance(fail_mode, str)
                else None, 'external_ids': dict(ids[1]),
                'other_config': dict(other[1]), 'datapath_type': datapath}

    def vif_ports(self, host):
        out = json.loads(self.vsctl(host, '--format=json', '--columns=name',
                                    'list', 'Interface'))
        return sorted(row[0] for row in out['data']
                      if row[0].startswith('vif'))

    def guest_ns(self, vm, x=None):
        uuid = (x or self.x).VM.get_uuid(vm)
        return self.control().guest_netns(uuid)

    # -- objects ---------------------------------------------------------

    def new_network(self, x=None, **extra):
        x = x or self.x
        record = {'name_label': 'dom0net-test', 'name_description': '',
                  'MTU': '1500', 'other_config': {}}
        record.update(extra)
        net = x.network.create(record)
        session = self.session if x is self.x else None

        def destroy():
            try:
                (session.xenapi if session else x).network.destroy(net)
            except XenAPI.Failure:
                pass
        self.addCleanup(destroy)
        return net

    def vm_with_vifs(self, networks, x=None, vm_other_config=None,
                     vif_other_config=None, **extra):
        x = x or self.x
        vm = x.VM.create(records.vm_record(
            'dom0net', 128, 1, other_config=vm_other_config, **extra))
        self.addCleanup(self._remove_vm_in, x, vm)
        for device, net in enumerate(networks):
            x.VIF.create({
                'VM': vm, 'network': net, 'device': str(device), 'MAC': '',
                'MTU': '1500',
                'other_config': dict((vif_other_config or {}).get(device,
                                                                  {})),
                'qos_algorithm_type': '', 'qos_algorithm_params': {}})
        return vm

    @staticmethod
    def _remove_vm_in(x, vm):
        try:
            if x.VM.get_power_state(vm) != 'Halted':
                x.VM.hard_shutdown(vm)
            x.VM.destroy(vm)
        except XenAPI.Failure:
            pass

    def vifs(self, vm, x=None):
        x = x or self.x
        return sorted((x.VIF.get_record(v) for v in x.VM.get_VIFs(vm)),
                      key=lambda r: int(r['device']))

    def start_on(self, vm, pool=0, index=0, x=None):
        (x or self.x).VM.start_on(vm, self.host_ref(pool, index, x), False,
                                  False)
        return self.host_desc(pool, index)

    def assert_unplugged(self, host, domid, guest_ns=None, devices=(0,)):
        """No port, no device of domain ``domid`` in ``host``'s dom0."""
        for n in devices:
            name = 'vif%s.%d' % (domid, n)
            self.assertIsNone(self.interface(host, name))
            self.assertNotIn(name, links(host['dom0']['netns']))
        if guest_ns is not None:
            self.assertNotIn(guest_ns, netns.list_netns(guest_ns))

    def iface_id(self, host, name):
        row = self.interface(host, name)
        return row and row['external_ids'].get('iface-id')


class PlugTest(Dom0NetworkTestCase):

    def test_the_description_names_each_dom0(self):
        shared = self.world['dom0_network']
        self.assertEqual('ovs', shared['mode'])
        names = [h['dom0']['netns'] for p in self.world['pools']
                 for h in p['hosts']]
        addresses = [h['dom0']['underlay_ip'] for p in self.world['pools']
                     for h in p['hosts']]
        self.assertEqual(4, len(set(names)))
        self.assertEqual(['192.0.2.1', '192.0.2.2', '192.0.2.3',
                          '192.0.2.4'], addresses)
        for name in names + [shared['fabric']['netns'],
                             shared['provider']['netns']]:
            self.assertTrue(name.startswith(shared['prefix']), name)
            self.assertIn(name, netns.list_netns(shared['prefix']))
        host = self.host_desc()
        self.assertEqual(['xenbr0', 'xenbr1'],
                         self.vsctl(host, 'list-br').split())
        # the switch answers where the description says, with OVS_RUNDIR
        self.assertTrue(os.path.exists(os.path.join(
            host['dom0']['ovs_rundir'], 'xenbr0.mgmt')))
        self.assertEqual('netdev', self.bridge(host, 'xenbr0')[
            'datapath_type'])
        addresses = run(['ip', '-n', host['dom0']['netns'], '-j', 'addr',
                         'show', 'xenbr0'])
        self.assertIn('"192.0.2.1"', addresses)
        # the provider LAN is a xapi network with a PIF on every host
        provider = self.x.network.get_by_name_label(
            'Pool-wide network associated with eth1')[0]
        self.assertEqual('xenbr1', self.x.network.get_bridge(provider))
        self.assertEqual(2, len(self.x.network.get_PIFs(provider)))

    def test_start_plugs_each_vif_as_the_vif_scripts_do(self):
        net = self.x.network.get_by_name_label(
            'Pool-wide network associated with eth0')[0]
        vm = self.vm_with_vifs(
            [net, net], vm_other_config={'nicira-vm-id': 'nova-instance'},
            vif_other_config={0: {'nicira-iface-id': 'neutron-port-0'},
                              1: {'mtu': '1400'}})
        host = self.start_on(vm, 0, 1)
        domid = self.x.VM.get_domid(vm)
        vm_uuid = self.x.VM.get_uuid(vm)
        guest = self.guest_ns(vm)
        dom0_links = links(host['dom0']['netns'])
        guest_links = links(guest)
        for vif in self.vifs(vm):
            name = 'vif%s.%s' % (domid, vif['device'])
            self.assertEqual('xenbr0',
                             self.vsctl(host, 'iface-to-br', name).strip())
            iface_id = vif['other_config'].get('nicira-iface-id',
                                               vif['uuid'])
            wait_for('iface-id on %s' % name,
                     lambda: self.iface_id(host, name) == iface_id)
            row = self.interface(host, name)
            # exactly setup-vif-rules' keys, and what ovs-xapi-sync adds
            self.assertEqual({
                'xs-vm-uuid': vm_uuid, 'xs-vif-uuid': vif['uuid'],
                'xs-network-uuid': self.x.network.get_uuid(net),
                'attached-mac': vif['MAC'], 'iface-id': iface_id,
                'vm-id': 'nova-instance', 'iface-status': 'active'},
                row['external_ids'])
            self.assertGreater(row['ofport'], 0)
            # the veth: dom0 end as vif-real sets it, guest end the VIF
            mtu = int(vif['other_config'].get('mtu', '1500'))
            self.assertEqual('fe:ff:ff:ff:ff:ff',
                             dom0_links[name]['address'])
            self.assertIn('NOARP', dom0_links[name]['flags'])
            peer = guest_links['eth%s' % vif['device']]
            self.assertEqual(vif['MAC'], peer['address'])
            self.assertEqual(mtu, peer['mtu'])
            self.assertEqual(mtu, dom0_links[name]['mtu'])
            # xapi writes the device's MTU into the VIF
            self.assertEqual(str(mtu), vif['MTU'])
            self.assertIn('UP', peer['flags'])
        # the sysfs view the isolation plugin reads is still there
        sysfs = os.path.join(self.x.host.get_other_config(
            self.host_ref(0, 1))['xapisim_dom0_root'], 'sys', 'class', 'net')
        self.assertIn('vif%s.0' % domid, os.listdir(sysfs))

    def test_ovs_xapi_sync_takes_iface_id_from_rows_without_xs_vif_uuid(self):
        host = self.host_desc(0, 0)
        self.addCleanup(self.vsctl, host, '--if-exists', 'del-port', 'stray')
        self.addCleanup(self.vsctl, host, '--if-exists', 'del-port', 'qvo1')
        self.vsctl(host, 'add-port', 'xenbr1', 'stray', '--', 'set',
                   'interface', 'stray', 'type=internal',
                   'external_ids:iface-id=someone-else',
                   'external_ids:iface-status=active')
        # an old os-xenapi style port: xs-vif-uuid keeps its iface-id
        self.vsctl(host, 'add-port', 'xenbr1', 'qvo1', '--', 'set',
                   'interface', 'qvo1', 'type=internal',
                   'external_ids:xs-vif-uuid=port-9')
        wait_for('stray loses iface-id and iface-status', lambda: (
            self.interface(host, 'stray')['external_ids'] == {}))
        wait_for('qvo1 gets iface-id from xs-vif-uuid', lambda: (
            self.iface_id(host, 'qvo1') == 'port-9'))
        # and so for good: set it again, it goes again
        self.vsctl(host, 'set', 'interface', 'stray',
                   'external_ids:iface-id=again')
        wait_for('stray loses iface-id again', lambda: (
            self.iface_id(host, 'stray') is None))

    def test_guests_on_one_bridge_exchange_frames(self):
        net = self.new_network()
        first = self.vm_with_vifs([net])
        second = self.vm_with_vifs([net])
        host = self.start_on(first, 0, 0)
        self.start_on(second, 0, 0)
        bridge = self.x.network.get_bridge(net)
        # xcp-networkd made the bridge of the managed internal network
        made = self.bridge(host, bridge)
        self.assertEqual('netdev', made['datapath_type'])
        self.assertEqual('standalone', made['fail_mode'])
        self.assertEqual(self.x.network.get_uuid(net),
                         made['external_ids']['xs-network-uuids'])
        a, b = self.guest_ns(first), self.guest_ns(second)
        run(['ip', '-n', a, 'addr', 'add', TENANT % 11, 'dev', 'eth0'])
        run(['ip', '-n', b, 'addr', 'add', TENANT % 12, 'dev', 'eth0'])
        self.assertEqual('203.0.113.11', exchange(a, b, '203.0.113.12'))
        self.assertEqual('203.0.113.12', exchange(b, a, '203.0.113.11'))
        # the last VIF gone, xapi removes the empty bridge it made
        self.x.VM.hard_shutdown(first)
        self.assertIsNotNone(self.bridge(host, bridge))
        self.x.VM.hard_shutdown(second)
        self.assertIsNone(self.bridge(host, bridge))

    def test_guests_on_two_hosts_meet_through_a_geneve_tunnel(self):
        net = self.new_network()
        first = self.vm_with_vifs([net])
        second = self.vm_with_vifs([net])
        one = self.start_on(first, 0, 0)
        two = self.start_on(second, 0, 1)
        bridge = self.x.network.get_bridge(net)
        for here, there in ((one, two), (two, one)):
            # gone before the VMs, so that their bridges can go with them
            self.addCleanup(self.vsctl, here, '--if-exists', 'del-port',
                            'gnv0')
            self.vsctl(here, 'add-port', bridge, 'gnv0', '--', 'set',
                       'interface', 'gnv0', 'type=geneve',
                       'options:remote_ip=%s' % there['dom0']['underlay_ip'],
                       'options:key=77')
        a, b = self.guest_ns(first), self.guest_ns(second)
        run(['ip', '-n', a, 'addr', 'add', TENANT % 21, 'dev', 'eth0'])
        run(['ip', '-n', b, 'addr', 'add', TENANT % 22, 'dev', 'eth0'])
        self.assertEqual('203.0.113.21', exchange(a, b, '203.0.113.22'))
        self.assertEqual('203.0.113.22', exchange(b, a, '203.0.113.21'))

    def test_plugins_reach_their_hosts_switch(self):
        for index in (0, 1):
            host = self.host_desc(0, index)
            seen = json.loads(self.x.host.call_plugin(
                self.host_ref(0, index), 'xapisim_probe.py', 'dom0_switch',
                {}))
            self.assertEqual(host['dom0']['ovs_rundir'],
                             seen['env']['OVS_RUNDIR'])
            st = os.stat(os.path.join(netns.NETNS_DIR,
                                      host['dom0']['netns']))
            self.assertEqual([st.st_dev, st.st_ino], seen['netns'])
            self.assertEqual(['xenbr0', 'xenbr1'], seen['bridges'])
        other = self.host_desc(0, 1)
        self.addCleanup(self.vsctl, other, '--if-exists', 'del-br', 'br-p')
        self.vsctl(other, 'add-br', 'br-p', '--', 'set', 'bridge', 'br-p',
                   'datapath_type=netdev')
        seen = [json.loads(self.x.host.call_plugin(
            self.host_ref(0, i), 'xapisim_probe.py', 'dom0_switch',
            {}))['bridges'] for i in (0, 1)]
        self.assertEqual([['xenbr0', 'xenbr1'],
                          ['br-p', 'xenbr0', 'xenbr1']], seen)


class UnmanagedNetworkTest(Dom0NetworkTestCase):

    def test_start_needs_the_bridge_of_an_unmanaged_network(self):
        net = self.new_network(bridge='br-nx', managed=False, other_config={
            'vswitch-controller-fail-mode': 'secure'})
        vm = self.vm_with_vifs([net])
        host = self.host_desc(0, 1)
        self.assertFailure(['BRIDGE_NOT_AVAILABLE', 'br-nx'],
                           self.start_on, vm, 0, 1)
        self.assertEqual('Halted', self.x.VM.get_power_state(vm))
        self.assertEqual([], self.vif_ports(host))
        self.assertIsNone(self.bridge(host, 'br-nx'))
        self.assertEqual(
            [], netns.list_netns(self.world['dom0_network']['prefix'] + 'g-'))
        # with the bridge there (as OVN makes br-int) it plugs
        self.addCleanup(self.vsctl, host, '--if-exists', 'del-br', 'br-nx')
        self.vsctl(host, 'add-br', 'br-nx', '--', 'set', 'bridge', 'br-nx',
                   'datapath_type=netdev', 'fail_mode=secure')
        self.start_on(vm, 0, 1)
        name = 'vif%s.0' % self.x.VM.get_domid(vm)
        vif = self.vifs(vm)[0]
        self.assertEqual('br-nx', self.vsctl(host, 'iface-to-br',
                                             name).strip())
        wait_for('iface-id', lambda: self.iface_id(host, name) == vif['uuid'])
        self.assertEqual('secure', self.bridge(host, 'br-nx')['fail_mode'])
        # xapi never removes an unmanaged network's bridge
        self.x.VM.hard_shutdown(vm)
        self.assertIsNotNone(self.bridge(host, 'br-nx'))

    def test_vif_plug_needs_the_bridge_too(self):
        pool_net = self.x.network.get_by_name_label(
            'Pool-wide network associated with eth0')[0]
        vm = self.vm_with_vifs([pool_net])
        host = self.start_on(vm, 0, 0)
        net = self.new_network(bridge='br-ny', managed=False)
        vif = self.x.VIF.create({
            'VM': vm, 'network': net, 'device': '1', 'MAC': '', 'MTU': '1500',
            'other_config': {}, 'qos_algorithm_type': '',
            'qos_algorithm_params': {}})
        self.assertFailure(['BRIDGE_NOT_AVAILABLE', 'br-ny'],
                           self.x.VIF.plug, vif)
        self.assertFalse(self.x.VIF.get_currently_attached(vif))
        domid = self.x.VM.get_domid(vm)
        self.assertEqual(['vif%s.0' % domid], self.vif_ports(host))
        self.assertNotIn('eth1', links(self.guest_ns(vm)))

    def test_ovs_xapi_sync_applies_the_networks_fail_mode(self):
        host = self.host_desc(0, 0)
        # a managed network asking for secure: its new bridge becomes so
        secure = self.new_network(other_config={
            'vswitch-controller-fail-mode': 'secure'})
        vm = self.vm_with_vifs([secure])
        self.start_on(vm, 0, 0)
        bridge = self.x.network.get_bridge(secure)
        wait_for('%s secure' % bridge,
                 lambda: self.bridge(host, bridge)['fail_mode'] == 'secure')
        # an unmanaged network saying nothing: the real daemon forces
        # standalone on its bridge, even one made secure
        self.new_network(bridge='br-nz', managed=False)
        self.addCleanup(self.vsctl, host, '--if-exists', 'del-br', 'br-nz')
        self.vsctl(host, 'add-br', 'br-nz', '--', 'set', 'bridge', 'br-nz',
                   'datapath_type=netdev', 'fail_mode=secure',
                   'other_config:disable-in-band=true')
        wait_for('br-nz standalone, in-band default', lambda: self.bridge(
            host, 'br-nz') == {'fail_mode': 'standalone', 'external_ids': {},
                               'other_config': {},
                               'datapath_type': 'netdev'})


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
        vm, host, domid, guest = self.started()
        self.x.VM.suspend(vm)
        self.assert_unplugged(host, domid, guest, devices=(0, 1))
        self.x.VM.resume_on(vm, self.host_ref(0, 0), False, False)
        resumed = self.x.VM.get_domid(vm)
        self.assertNotEqual(domid, resumed)
        self.assert_plugged(host, vm)
        self.x.VM.hard_reboot(vm)
        self.assert_unplugged(host, resumed, devices=(0, 1))
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
        self.assertLess(added[0], removed[0])

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
        self.addCleanup(self._remove_vm_in, y, arrived)
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
