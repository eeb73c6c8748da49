"""nova_xen.pci against a simulated pool with PCI devices: the records
Nova's PCI tracker reads, and the refusals made before anything exists."""

from unittest import mock

import fixtures
from nova import exception
import testtools

import xapisim

from nova_xen import pci
from nova_xen import session as session_mod
from tests import devices_world


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
            self.session, record['PCIs'])}

    def test_only_devices_hidden_from_dom0_are_reported(self):
        devices = self.devices()
        # the SATA boot controller and the I210 stay with dom0; the USB
        # controller is not in xapi's inventory
        self.assertEqual({'0000:04:00.0', '0000:04:10.0', '0000:81:00.0',
                          '0000:82:00.0'}, set(devices))
        self.assertEqual({
            'address': '0000:04:00.0', 'vendor_id': '8086',
            'product_id': '10fb', 'dev_type': 'type-PCI',
            'dev_id': 'pci_0000_04_00_0', 'label': 'label_8086_10fb',
            'numa_node': None, 'parent_addr': None},
            devices['0000:04:00.0'])

    def test_an_older_xapi_without_dom0_access_calls_reads_the_driver(self):
        real = self.session.call

        def call(method, *args):
            if method == 'PCI.get_dom0_access_status':
                raise RuntimeError('MESSAGE_METHOD_UNKNOWN')
            return real(method, *args)
        self.useFixture(fixtures.MockPatchObject(self.session, 'call', call))
        # the fixture's hidden devices are bound to pciback
        self.assertEqual({'0000:04:00.0', '0000:04:10.0', '0000:81:00.0',
                          '0000:82:00.0'}, set(self.devices()))

    def test_sriov_ports_are_refused_with_a_sentence(self):
        pci.check_ports([{'id': 'p1', 'vnic_type': 'normal'}])
        error = self.assertRaises(
            pci.PciDeviceUnusable, pci.check_ports,
            [{'id': 'p1', 'vnic_type': 'normal'},
             {'id': 'p2', 'vnic_type': 'direct'}])
        self.assertIn('port p2 has vnic_type direct: nova-xen plugs only '
                      'normal ports', str(error))

    def test_a_device_of_another_host_is_refused(self):
        instance = mock.Mock(get_pci_devices=lambda: [
            mock.Mock(address='0000:99:00.0')])
        error = self.assertRaises(pci.PciDeviceUnusable, pci.check_claimed,
                                  self.session, self.host, instance)
        self.assertEqual('PCI device 0000:99:00.0 is not a device of host '
                         'xcp-ng-1-1', str(error))

    def test_a_device_dom0_uses_is_refused(self):
        instance = mock.Mock(get_pci_devices=lambda: [
            mock.Mock(address='0000:06:00.0')])
        error = self.assertRaises(pci.PciDeviceUnusable, pci.check_claimed,
                                  self.session, self.host, instance)
        self.assertIn('is still used by dom0 (hide it with '
                      'PCI.disable_dom0_access, then reboot the host)',
                      str(error))

    def test_suspend_refusal_is_a_rollback(self):
        instance = mock.Mock(get_pci_devices=lambda: [
            mock.Mock(address='0000:04:00.0')])
        error = self.assertRaises(exception.InstanceFaultRollback,
                                  pci.refuse_move, instance, 'suspend')
        self.assertIsInstance(error.inner_exception,
                              exception.InstanceSuspendFailure)
        pci.refuse_move(mock.Mock(get_pci_devices=lambda: []), 'suspend')
