"""nova_xen.pci against a simulated pool with PCI devices: the records
Nova's PCI tracker reads, and the refusals made before anything exists."""

from unittest import mock

import fixtures
from nova import exception
import testtools

import xapisim

from nova_xen import errors
from nova_xen import pci
from nova_xen import session as session_mod
from tests import devices_world
from tests import records


class PciTestCase(testtools.TestCase):
    @classmethod
    def setUpClass(cls):
        super(PciTestCase, cls).setUpClass()
        cls.sim = xapisim.Simulator(hosts=2, devices=devices_world.SPEC)
        cls.pool = cls.sim.describe()['pools'][0]

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()
        super(PciTestCase, cls).tearDownClass()

    def setUp(self):
        super(PciTestCase, self).setUp()
        self.session = session_mod.Session(self.pool['master'], 'root',
                                           'xapisim').connect()
        self.addCleanup(self.session.close)
        self.host = self.session.call('host.get_by_name_label',
                                      'xcp-ng-1-1')[0]

    def devices(self):
        record = self.session.call('host.get_record', self.host)
        return {d['address']: d for d in pci.passthrough_devices(
            self.session, self.host, record)}

    def refusal(self, address):
        """Why check_claimed refuses a server claiming ``address``."""
        instance = mock.Mock(get_pci_devices=lambda: [
            mock.Mock(address=address)])
        return str(self.assertRaises(pci.PciDeviceUnusable,
                                     pci.check_claimed, self.session,
                                     self.host, instance))

    def without_plugin(self, code='XENAPI_MISSING_PLUGIN'):
        """The host's dom0 has no nova_xen_pci.py (an older install)."""
        real = self.session.call_plugin

        def call_plugin(host, plugin, fn, args=None, **kwargs):
            if plugin == pci.PCI_PLUGIN:
                raise errors.PluginError([code, plugin], plugin=plugin,
                                         fn=fn, reason=code)
            return real(host, plugin, fn, args, **kwargs)
        self.useFixture(fixtures.MockPatchObject(
            self.session, 'call_plugin', call_plugin))
        pci._warned_no_plugin.discard('xcp-ng-1-1')

    def test_only_devices_hidden_from_dom0_are_reported(self):
        devices = self.devices()
        # the SATA boot controller and the I210 stay with dom0; the USB
        # controller, which xapi does not list, is bound to pciback
        self.assertEqual({'0000:04:00.0', '0000:04:10.0', '0000:07:00.0',
                          '0000:81:00.0', '0000:82:00.0'}, set(devices))
        self.assertEqual({
            'address': '0000:04:00.0', 'vendor_id': '8086',
            'product_id': '10fb', 'dev_type': 'type-PF',
            'dev_id': 'pci_0000_04_00_0', 'label': 'label_8086_10fb',
            'numa_node': None, 'parent_addr': None},
            devices['0000:04:00.0'])
        self.assertEqual(('type-VF', '0000:04:00.0', '10ed'),
                         (devices['0000:04:10.0']['dev_type'],
                          devices['0000:04:10.0']['parent_addr'],
                          devices['0000:04:10.0']['product_id']))
        self.assertEqual(('type-PCI', None, '8086', '8c31'),
                         (devices['0000:07:00.0']['dev_type'],
                          devices['0000:07:00.0']['parent_addr'],
                          devices['0000:07:00.0']['vendor_id'],
                          devices['0000:07:00.0']['product_id']))

    def test_an_older_xapi_without_dom0_access_calls_reads_the_driver(self):
        real = self.session.call

        def call(method, *args):
            if method == 'PCI.get_dom0_access_status':
                raise RuntimeError('MESSAGE_METHOD_UNKNOWN')
            return real(method, *args)
        self.useFixture(fixtures.MockPatchObject(self.session, 'call', call))
        # the fixture's hidden devices are bound to pciback
        self.assertEqual({'0000:04:00.0', '0000:04:10.0', '0000:07:00.0',
                          '0000:81:00.0', '0000:82:00.0'},
                         set(self.devices()))

    def test_a_dom0_without_the_plugin_gets_xapis_view_and_a_sentence(self):
        self.without_plugin()
        with mock.patch.object(pci.LOG, 'warning') as warning:
            devices = self.devices()
            self.devices()
        self.assertEqual({'0000:04:00.0', '0000:04:10.0', '0000:81:00.0',
                          '0000:82:00.0'}, set(devices))
        self.assertEqual({'type-PCI'},
                         {d['dev_type'] for d in devices.values()})
        self.assertEqual({None}, {d['parent_addr'] for d in devices.values()})
        # said once, not at every resource update
        self.assertEqual(1, warning.call_count)
        self.assertIn('has no dom0 plugin %s', warning.call_args[0][0])

    def test_a_device_without_a_pci_object_held_by_a_vm_is_refused(self):
        vm = self.session.call('VM.create', records.vm_record(
            'holds-usb', 64, 1, other_config={'pci': '0/0000:07:00.0'}))
        self.session.call('VM.start_on', vm, self.host, False, False)
        self.addCleanup(self.session.call, 'VM.destroy', vm)
        self.addCleanup(self.session.call, 'VM.hard_shutdown', vm)
        error = self.refusal('0000:07:00.0')
        self.assertEqual('PCI device 0000:07:00.0 of host xcp-ng-1-1 is '
                         'passed through to VM holds-usb already', error)

    def test_a_device_without_a_pci_object_still_in_dom0_is_refused(self):
        real = self.session.call_plugin

        def call_plugin(host, plugin, fn, args=None, **kwargs):
            reply = real(host, plugin, fn, args, **kwargs)
            if plugin == pci.PCI_PLUGIN:
                for function in reply['functions']:
                    if function['address'] == '0000:07:00.0':
                        function['driver'] = 'xhci_hcd'
            return reply
        self.useFixture(fixtures.MockPatchObject(
            self.session, 'call_plugin', call_plugin))
        self.assertNotIn('0000:07:00.0', self.devices())
        error = self.refusal('0000:07:00.0')
        self.assertEqual('PCI device 0000:07:00.0 of host xcp-ng-1-1 is '
                         'still used by dom0 (add it to xen-pciback.hide on '
                         'dom0\'s command line, then reboot the host)',
                         error)

    def test_a_device_without_a_pci_object_is_unknown_without_the_plugin(
            self):
        self.without_plugin()
        error = self.refusal('0000:07:00.0')
        self.assertEqual('PCI device 0000:07:00.0 is not a device of host '
                         'xcp-ng-1-1', error)

    def test_sriov_ports_are_refused_with_a_sentence(self):
        pci.check_ports([{'id': 'p1', 'vnic_type': 'normal'}])
        error = self.assertRaises(
            pci.PciDeviceUnusable, pci.check_ports,
            [{'id': 'p1', 'vnic_type': 'normal'},
             {'id': 'p2', 'vnic_type': 'direct'}])
        self.assertIn('port p2 has vnic_type direct: nova-xen plugs only '
                      'normal ports', str(error))

    def test_a_device_of_another_host_is_refused(self):
        error = self.refusal('0000:99:00.0')
        self.assertEqual('PCI device 0000:99:00.0 is not a device of host '
                         'xcp-ng-1-1', error)

    def test_a_device_dom0_uses_is_refused(self):
        error = self.refusal('0000:06:00.0')
        self.assertIn('is still used by dom0 (hide it with '
                      'PCI.disable_dom0_access, then reboot the host)',
                      error)

    def test_suspend_refusal_is_a_rollback(self):
        instance = mock.Mock(get_pci_devices=lambda: [
            mock.Mock(address='0000:04:00.0')])
        error = self.assertRaises(exception.InstanceFaultRollback,
                                  pci.refuse_move, instance, 'suspend')
        self.assertIsInstance(error.inner_exception,
                              exception.InstanceSuspendFailure)
        pci.refuse_move(mock.Mock(get_pci_devices=lambda: []), 'suspend')
