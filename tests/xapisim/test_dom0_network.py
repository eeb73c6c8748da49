"""Real dom0 networking: bridges, ports, ovs-xapi-sync, frames.

A world with ``dom0_network='ovs'`` (tests/xapisim/dom0net_base.py):
each host a network namespace with its own Open vSwitch, each running VM
a guest namespace whose ``eth<n>`` is the peer of ``vif<domid>.<n>`` in
its host's dom0.  They need root and the Debian packages
openvswitch-switch, iproute2 and ethtool (``./run tests`` installs
them): without them they fail, saying why; they never skip.
"""

import json
import os

from xapisim import netns

from tests.xapisim.dom0net_base import (Dom0NetworkTestCase, TENANT,
                                        exchange, links, run, wait_for)


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
        self.assertEqual(['br-int', 'xenbr0', 'xenbr1'],
                         self.vsctl(host, 'list-br').split())
        # --dom0-bridges (br-int): made as ovn-controller makes it
        self.assertEqual('secure', self.bridge(host, 'br-int')['fail_mode'])
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

    def test_guests_on_two_hosts_meet_on_the_provider_lan(self):
        # the pool-wide network on eth1: xenbr1 of every host, linked
        # through the hosts' eth1 to one LAN
        lan = self.x.network.get_by_name_label(
            'Pool-wide network associated with eth1')[0]
        first = self.vm_with_vifs([lan])
        second = self.vm_with_vifs([lan])
        self.start_on(first, 0, 0)
        self.start_on(second, 0, 1)
        a, b = self.guest_ns(first), self.guest_ns(second)
        run(['ip', '-n', a, 'addr', 'add', '198.51.100.41/24', 'dev', 'eth0'])
        run(['ip', '-n', b, 'addr', 'add', '198.51.100.42/24', 'dev', 'eth0'])
        self.assertEqual('198.51.100.41', exchange(a, b, '198.51.100.42'))
        self.assertEqual('198.51.100.42', exchange(b, a, '198.51.100.41'))
        # and whoever sits on that LAN outside the hosts reaches them
        provider = self.world['dom0_network']['provider']
        self.assertEqual('198.51.100.0/24', provider['subnet'])
        outside = provider['netns']
        run(['ip', '-n', outside, 'addr', 'add', '198.51.100.40/24', 'dev',
             provider['bridge']])
        self.addCleanup(run, ['ip', '-n', outside, 'addr', 'del',
                              '198.51.100.40/24', 'dev', provider['bridge']])
        self.assertEqual('198.51.100.40', exchange(outside, b,
                                                   '198.51.100.42'))

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

    def test_vif_move_and_locking_mode_run_the_vif_script_again(self):
        old_net, new_net = self.new_network(), self.new_network()
        mover = self.vm_with_vifs([old_net])
        peer = self.vm_with_vifs([new_net])
        host = self.start_on(mover, 0, 0)
        self.start_on(peer, 0, 0)
        old_bridge = self.x.network.get_bridge(old_net)
        new_bridge = self.x.network.get_bridge(new_net)
        name = 'vif%s.0' % self.x.VM.get_domid(mover)
        vif = self.x.VM.get_VIFs(mover)[0]
        a, b = self.guest_ns(mover), self.guest_ns(peer)
        run(['ip', '-n', a, 'addr', 'add', TENANT % 51, 'dev', 'eth0'])
        run(['ip', '-n', b, 'addr', 'add', TENANT % 52, 'dev', 'eth0'])
        self.x.VIF.move(vif, new_net)
        self.assertEqual(new_bridge, self.vsctl(host, 'iface-to-br',
                                                name).strip())
        self.assertEqual(self.x.network.get_uuid(new_net),
                         self.interface(host, name)['external_ids'][
                             'xs-network-uuid'])
        # the old internal network lost its last VIF here: its bridge goes
        self.assertIsNone(self.bridge(host, old_bridge))
        self.assertEqual('203.0.113.51', exchange(a, b, '203.0.113.52'))
        # disabled: the device stays, off any bridge (setup-vif-rules)
        self.x.VIF.set_locking_mode(vif, 'disabled')
        self.assertIsNone(self.interface(host, name))
        self.assertIn(name, links(host['dom0']['netns']))
        self.assertIn('eth0', links(a))
        self.x.VIF.set_locking_mode(vif, 'network_default')
        self.assertEqual(new_bridge, self.vsctl(host, 'iface-to-br',
                                                name).strip())
        self.assertEqual('203.0.113.52', exchange(b, a, '203.0.113.51'))

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
            self.assertEqual(['br-int', 'xenbr0', 'xenbr1'], seen['bridges'])
        other = self.host_desc(0, 1)
        self.addCleanup(self.vsctl, other, '--if-exists', 'del-br', 'br-p')
        self.vsctl(other, 'add-br', 'br-p', '--', 'set', 'bridge', 'br-p',
                   'datapath_type=netdev')
        seen = [json.loads(self.x.host.call_plugin(
            self.host_ref(0, i), 'xapisim_probe.py', 'dom0_switch',
            {}))['bridges'] for i in (0, 1)]
        self.assertEqual([['br-int', 'xenbr0', 'xenbr1'],
                          ['br-int', 'br-p', 'xenbr0', 'xenbr1']], seen)


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
