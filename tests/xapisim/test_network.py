"""Networks and VIFs follow xapi's rules."""

import os
import re

from tests import dom0_bridges
from tests.xapisim.base import SimTestCase

MAC_RE = re.compile(r'^[0-9a-f]{2}(:[0-9a-f]{2}){5}$')


class NetworkTests(SimTestCase):

    def new_network(self, **extra):
        record = {'name_label': 'test-net', 'name_description': '',
                  'MTU': '1500', 'other_config': {}}
        record.update(extra)
        return self.destroy_later('network', self.x.network.create(record))

    def test_create_assigns_a_free_bridge(self):
        used = {self.x.network.get_bridge(n) for n in self.x.network.get_all()}
        first = self.new_network()
        second = self.new_network(name_label='other')
        bridges = [self.x.network.get_bridge(n) for n in (first, second)]
        for bridge in bridges:
            self.assertTrue(bridge.startswith('xapi'), bridge)
            self.assertNotIn(bridge, used)
        self.assertNotEqual(bridges[0], bridges[1])
        record = self.x.network.get_record(first)
        self.assertEqual('test-net', record['name_label'])
        self.assertEqual('1500', record['MTU'])
        self.assertEqual([], record['VIFs'])
        self.assertEqual([], record['PIFs'])

    def test_bridge_names_must_be_free_and_not_reserved(self):
        self.assertFailure(['BRIDGE_NAME_EXISTS', 'br-test'], lambda: [
            self.new_network(bridge='br-test'),
            self.new_network(bridge='br-test')])
        for reserved in ('xenbr7', 'xapi99', 'eth3', 'a-very-long-bridge'):
            self.assertFailure(['INVALID_VALUE', 'bridge', reserved],
                               lambda: self.new_network(bridge=reserved))

    def test_destroy_refused_while_a_vif_is_attached(self):
        net = self.new_network()
        vm = self.new_vm()
        vif = self.new_vif(vm, net)
        self.x.VM.start(vm, False, False)
        self.assertFailure(['NETWORK_CONTAINS_VIF', vif],
                           self.x.network.destroy, net)
        self.x.VM.hard_shutdown(vm)
        self.x.network.destroy(net)
        self.assertFailure(['HANDLE_INVALID', 'network', net],
                           self.x.network.get_record, net)
        # the VIF went with its network
        self.assertFailure(['HANDLE_INVALID', 'VIF', vif],
                           self.x.VIF.get_record, vif)
        self.assertEqual([], self.x.VM.get_VIFs(vm))

    def test_networks_with_pifs_or_system_networks_stay(self):
        pool_net = self.pool_network()
        pifs = self.x.network.get_PIFs(pool_net)
        self.assertTrue(pifs)
        details = self.assertFailure('NETWORK_CONTAINS_PIF',
                                     self.x.network.destroy, pool_net)
        self.assertEqual(set(pifs), set(details[1:]))
        internal = [n for n, r in self.x.network.get_all_records().items()
                    if r['bridge'] == 'xenapi'][0]
        self.assertFailure(['CANNOT_DESTROY_SYSTEM_NETWORK', internal],
                           self.x.network.destroy, internal)


class UnmanagedNetworkTests(SimTestCase):
    """xapi makes no bridge for an unmanaged network: a VM on one starts,
    resumes or gets a VIF plugged only where dom0 has the bridge
    (``--dom0-bridges``, br-int by default)."""

    new_network = NetworkTests.new_network

    def dom0_bridge(self, bridge, present):
        dom0_bridges.set_present(self, self.x, bridge, present)

    def test_the_bridge_must_be_in_dom0(self):
        net = self.new_network(bridge='br-ovn', managed=False)
        self.assertFalse(self.x.network.get_managed(net))
        vm = self.new_vm()
        self.new_vif(vm, network=net)
        self.assertFailure(['BRIDGE_NOT_AVAILABLE', 'br-ovn'],
                           self.x.VM.start, vm, False, False)
        self.assertEqual('Halted', self.x.VM.get_power_state(vm))
        self.dom0_bridge('br-ovn', True)
        self.x.VM.start(vm, False, False)
        self.assertEqual('Running', self.x.VM.get_power_state(vm))

    def test_br_int_is_there_by_default(self):
        host = self.x.host.get_all()[0]
        net_dir = os.path.join(self.x.host.get_other_config(host)[
            'xapisim_dom0_root'], 'sys', 'class', 'net')
        self.assertTrue(os.path.isdir(os.path.join(net_dir, 'br-int')))
        net = self.new_network(bridge='br-int', managed=False)
        vm = self.new_vm()
        self.new_vif(vm, network=net)
        self.x.VM.start(vm, False, False)
        self.assertEqual('Running', self.x.VM.get_power_state(vm))
        # a managed network's bridge xapi makes itself
        other = self.new_vm()
        self.new_vif(other, network=self.new_network(bridge='br-xapi'))
        self.assertFalse(os.path.isdir(os.path.join(net_dir, 'br-xapi')))
        self.x.VM.start(other, False, False)
        self.assertEqual('Running', self.x.VM.get_power_state(other))

    def test_hot_plug_and_resume(self):
        net = self.new_network(bridge='br-ovn', managed=False)
        self.dom0_bridge('br-ovn', True)
        vm = self.new_vm()
        self.new_vif(vm, network=net)
        self.x.VM.start(vm, False, False)
        other = self.new_network(bridge='br-gone', managed=False)
        vif = self.new_vif(vm, network=other, device='1')
        self.assertFailure(['BRIDGE_NOT_AVAILABLE', 'br-gone'],
                           self.x.VIF.plug, vif)
        self.assertFalse(self.x.VIF.get_currently_attached(vif))
        self.x.VIF.destroy(vif)
        self.x.VM.suspend(vm)
        self.dom0_bridge('br-ovn', False)
        self.assertFailure(['BRIDGE_NOT_AVAILABLE', 'br-ovn'],
                           self.x.VM.resume, vm, False, False)
        self.assertEqual('Suspended', self.x.VM.get_power_state(vm))


class VifTests(SimTestCase):

    def test_mac_generated_from_the_vm_mac_seed(self):
        seed = 'a1b2c3d4-0000-4000-8000-000000000001'
        vm = self.new_vm(other_config={'mac_seed': seed})
        twin = self.new_vm(name='twin', other_config={'mac_seed': seed})
        stranger = self.new_vm(name='stranger')
        self.assertIn('mac_seed', self.x.VM.get_other_config(stranger))
        vif = self.new_vif(vm)
        record = self.x.VIF.get_record(vif)
        mac = record['MAC']
        self.assertTrue(record['MAC_autogenerated'])
        self.assertRegex(mac, MAC_RE)
        first = int(mac[:2], 16)
        self.assertEqual(2, first & 3, 'locally administered unicast')
        self.assertEqual(mac, self.x.VIF.get_MAC(self.new_vif(twin)))
        self.assertNotEqual(mac, self.x.VIF.get_MAC(self.new_vif(stranger)))
        second = self.new_vif(vm, device='1')
        self.assertNotEqual(mac, self.x.VIF.get_MAC(second))
        self.x.VIF.destroy(vif)
        self.assertEqual(mac, self.x.VIF.get_MAC(self.new_vif(vm)))

    def test_given_mac_is_kept(self):
        vm = self.new_vm()
        vif = self.new_vif(vm, mac='02:16:3e:00:00:01')
        record = self.x.VIF.get_record(vif)
        self.assertEqual('02:16:3e:00:00:01', record['MAC'])
        self.assertFalse(record['MAC_autogenerated'])

    def test_invalid_macs(self):
        vm = self.new_vm()
        for mac in ('02:16:3e:00:00', '02:16:3e:00:00:0g', '2:16:3e:0:0:1',
                    '02-16-3e-00-00-01', '02:16:3e:00:00:01:02'):
            self.assertFailure(['MAC_INVALID', mac], self.new_vif, vm,
                               None, '0', mac)
        self.assertEqual([], self.x.VM.get_VIFs(vm))

    def test_devices(self):
        vm = self.new_vm()
        for device in ('eth0', '', 'one'):
            self.assertFailure(['INVALID_DEVICE', device], self.new_vif, vm,
                               None, device)
        self.new_vif(vm, device='0')
        self.new_vif(vm, device='9')
        self.assertFailure(['DEVICE_ALREADY_EXISTS', '0'], self.new_vif, vm,
                           None, '0')
        self.assertFailure(['DEVICE_ALREADY_EXISTS', '09'], self.new_vif, vm,
                           None, '09')
        self.assertEqual(2, len(self.x.VM.get_VIFs(vm)))
        allowed = self.x.VM.get_allowed_VIF_devices(vm)
        self.assertNotIn('0', allowed)
        self.assertIn('1', allowed)

    def test_plug_and_unplug(self):
        vm = self.new_vm()
        first = self.new_vif(vm)
        for fn in (self.x.VIF.plug, self.x.VIF.unplug):
            self.assertFailure(['VM_BAD_POWER_STATE', vm, 'running', 'halted'],
                               fn, first)
        self.x.VM.start(vm, False, False)
        self.assertTrue(self.x.VIF.get_currently_attached(first))
        self.assertFailure(['DEVICE_ALREADY_ATTACHED', first],
                           self.x.VIF.plug, first)
        self.assertFailure('OPERATION_NOT_ALLOWED', self.x.VIF.destroy, first)
        hot = self.new_vif(vm, device='1')
        self.assertFalse(self.x.VIF.get_currently_attached(hot))
        self.assertFailure(['DEVICE_ALREADY_DETACHED', hot],
                           self.x.VIF.unplug, hot)
        self.x.VIF.plug(hot)
        self.assertTrue(self.x.VIF.get_currently_attached(hot))
        self.x.VIF.unplug(hot)
        self.assertFalse(self.x.VIF.get_currently_attached(hot))
        self.x.VIF.destroy(hot)
        self.assertEqual([first], self.x.VM.get_VIFs(vm))
        self.x.VM.pause(vm)
        self.assertFailure(['VM_BAD_POWER_STATE', vm, 'running', 'paused'],
                           self.x.VIF.unplug, first)

    def test_allowed_addresses_are_validated(self):
        vif = self.new_vif(self.new_vm())
        self.x.VIF.set_ipv4_allowed(vif, ['10.0.0.1', '10.0.0.2', '10.0.0.1'])
        self.assertEqual({'10.0.0.1', '10.0.0.2'},
                         set(self.x.VIF.get_ipv4_allowed(vif)))
        self.assertEqual(2, len(self.x.VIF.get_ipv4_allowed(vif)))
        self.x.VIF.add_ipv4_allowed(vif, '10.0.0.3')
        self.x.VIF.remove_ipv4_allowed(vif, '10.0.0.1')
        self.assertEqual({'10.0.0.2', '10.0.0.3'},
                         set(self.x.VIF.get_ipv4_allowed(vif)))
        for bad in ('10.0.0.256', 'fe80::1', 'host.example'):
            self.assertFailure(['INVALID_IP_ADDRESS_SPECIFIED', 'ipv4_allowed'],
                               self.x.VIF.set_ipv4_allowed, vif, [bad])
            self.assertFailure(['INVALID_IP_ADDRESS_SPECIFIED', 'ipv4_allowed'],
                               self.x.VIF.add_ipv4_allowed, vif, bad)
        self.assertEqual({'10.0.0.2', '10.0.0.3'},
                         set(self.x.VIF.get_ipv4_allowed(vif)))
        self.x.VIF.set_ipv6_allowed(vif, ['fd00::1'])
        self.x.VIF.add_ipv6_allowed(vif, '2001:db8::5')
        self.assertEqual({'fd00::1', '2001:db8::5'},
                         set(self.x.VIF.get_ipv6_allowed(vif)))
        for bad in ('10.0.0.1', 'fd00::g'):
            self.assertFailure(['INVALID_IP_ADDRESS_SPECIFIED', 'ipv6_allowed'],
                               self.x.VIF.add_ipv6_allowed, vif, bad)

    def test_locking_mode(self):
        vif = self.new_vif(self.new_vm())
        self.assertEqual('network_default', self.x.VIF.get_locking_mode(vif))
        for mode in ('locked', 'disabled', 'unlocked', 'network_default'):
            self.x.VIF.set_locking_mode(vif, mode)
            self.assertEqual(mode, self.x.VIF.get_locking_mode(vif))
        locked = self.new_vif(self.new_vm(), locking_mode='locked',
                              ipv4_allowed=['192.0.2.10'])
        record = self.x.VIF.get_record(locked)
        self.assertEqual('locked', record['locking_mode'])
        self.assertEqual(['192.0.2.10'], record['ipv4_allowed'])
        net = self.x.VIF.get_network(locked)
        self.assertEqual('unlocked', self.x.network.get_default_locking_mode(net))
