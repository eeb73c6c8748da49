"""Server diagnostics come from xapi's RRDs."""

from tempest.lib import decorators

from nova_xen_tempest.tests.api import base

MIB = base.MIB


class LegacyDiagnosticsTest(base.XenAPIComputeTest):
    """Before microversion 2.48: the RRD data sources, by name."""

    max_microversion = '2.47'

    @classmethod
    def resource_setup(cls):
        super(LegacyDiagnosticsTest, cls).resource_setup()
        cls.server = cls.create_active_server()

    @decorators.idempotent_id('51d32208-c8f9-447e-8229-a9fe49e7ee46')
    def test_diagnostics_name_the_rrd_data_sources(self):
        diags = self.admin_servers_client.show_server_diagnostics(
            self.server['id'])
        for name in ('cpu0', 'memory', 'vbd_xvda_read', 'vif_0_rx'):
            self.assertIn(name, diags)
            self.assertIsInstance(diags[name], (int, float))


class DiagnosticsTest(base.XenAPIComputeTest):
    """Microversion 2.48 and later: the standard diagnostics of driver
    'xenapi', matching the VM in xapi."""

    min_microversion = '2.48'

    @classmethod
    def resource_setup(cls):
        super(DiagnosticsTest, cls).resource_setup()
        cls.server = cls.create_active_server()

    @decorators.idempotent_id('bccfac15-ca9c-4aab-93fa-9dd4f4d8312b')
    def test_diagnostics_describe_the_vm(self):
        diags = self.admin_servers_client.show_server_diagnostics(
            self.server['id'])
        _, record = self.vm_of(self.server)
        self.assertEqual('xenapi', diags['driver'])
        self.assertEqual('running', diags['state'])
        self.assertEqual(int(record['VCPUs_at_startup']), diags['num_cpus'])
        self.assertEqual(diags['num_cpus'], len(diags['cpu_details']))
        self.assertLess(0, diags['memory_details']['maximum'])
        self.assertLessEqual(diags['memory_details']['maximum'],
                             int(record['memory_static_max']) // MIB)
        self.assertEqual([v['MAC'] for v in self.xapi.vifs(record)],
                         [n['mac_address'] for n in diags['nic_details']])
        self.assertEqual(len(diags['nic_details']), diags['num_nics'])
        self.assertLessEqual(1, diags['num_disks'])
        self.assertEqual(diags['num_disks'], len(diags['disk_details']))
