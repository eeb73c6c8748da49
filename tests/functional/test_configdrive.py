"""A config drive: Nova's config-2 ISO in a VDI attached read-only, and the
instance metadata in the guest's xenstore (vm-data/)."""

from tests.functional import base
from tests.functional.test_boot import pattern

MIB = 1024 * 1024
ISO_PVD = 16 * 2048      # the ISO 9660 primary volume descriptor


class ConfigDriveTest(base.XenAPIFunctionalTestCase):

    def test_config_drive_holds_the_metadata_and_is_read_only(self):
        image = self.image_with(pattern(MIB))
        body = self._build_server(image_uuid=image,
                                  flavor_id=self.flavor()['id'],
                                  networks=[{'uuid':
                                             self.neutron.network_1['id']}])
        body.update(config_drive=True, metadata={'role': 'web'})
        server = self.api.post_server({'server': body})
        server = self._wait_for_state_change(server, 'ACTIVE')
        x = self.xapi.x
        vm, record = self.xapi.vm_of(server['id'])
        drives = [x.VBD.get_record(v) for v in record['VBDs']
                  if x.VBD.get_userdevice(v) == '3']
        self.assertEqual(1, len(drives))
        self.assertEqual('RO', drives[0]['mode'])
        self.assertTrue(drives[0]['currently_attached'])
        vdi = drives[0]['VDI']
        self.assertEqual('config-drive',
                         x.VDI.get_other_config(vdi)['nova_role'])
        data = self.xapi.vdi_bytes(vdi, 512 * 1024)
        self.assertEqual(b'CD001', data[ISO_PVD + 1:ISO_PVD + 6])
        self.assertEqual(b'config-2', data[ISO_PVD + 40:ISO_PVD + 48])
        self.assertIn(server['id'].encode(), data)
        # the metadata also reaches the guest's xenstore
        xs = record['xenstore_data']
        self.assertEqual(server['id'], xs['vm-data/uuid'])
        self.assertEqual('web', xs['vm-data/meta/role'])
        self._delete_server(server)
        self.assertEqual({'VM': [], 'VDI': [], 'VBD': [], 'VIF': []},
                         self.xapi.objects_of(server['id']))
