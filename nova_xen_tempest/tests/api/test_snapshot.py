"""A snapshot (createImage) is a VHD image in Glance, and it boots."""

from tempest import config
from tempest.lib import decorators

from nova_xen_tempest.tests.api import base

CONF = config.CONF


class SnapshotTest(base.XenAPIComputeTest):

    @classmethod
    def skip_checks(cls):
        super(SnapshotTest, cls).skip_checks()
        if not CONF.compute_feature_enabled.snapshot:
            raise cls.skipException('[compute-feature-enabled]snapshot is '
                                    'off')
        if not CONF.service_available.glance:
            raise cls.skipException('Glance is not available')

    @classmethod
    def resource_setup(cls):
        super(SnapshotTest, cls).resource_setup()
        cls.server = cls.create_active_server()

    @decorators.idempotent_id('6282665e-18f4-4ca9-b9e0-a87b5ef443f7')
    def test_snapshot_is_a_vhd_image_that_boots(self):
        image = self.create_image_from_server(self.server['id'],
                                              wait_until='ACTIVE')
        image = self.images_client.show_image(image['id'])
        self.assertEqual('vhd', image['disk_format'])
        self.assertEqual('bare', image['container_format'])
        self.assertEqual('active', image['status'])
        # the VDI the snapshot was read from is gone from the SR
        self.assertEqual([], self.xapi.snapshot_vdis_of(self.server['id']))
        # the server goes on running
        _, record = self.vm_of(self.server)
        self.assertEqual('Running', record['power_state'])

        server = self.create_active_server(image_id=image['id'])
        self.assertEqual(image['id'], server['image']['id'])
        _, record = self.vm_of(server)
        self.assert_runs_where_nova_says(server, record)
        self.assertIn('0', self.xapi.disks(record))
