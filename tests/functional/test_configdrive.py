"""A config drive: Nova's config-2 ISO in a VDI attached read-only, and the
instance metadata in the guest's xenstore (vm-data/)."""

import base64

from tests.functional import base
from tests.functional.test_boot import pattern

MIB = 1024 * 1024
ISO_PVD = 16 * 2048      # the ISO 9660 primary volume descriptor
MOTD = b'welcome to a nova-xen guest, injected through the drive\n'


class ConfigDriveTest(base.XenAPIFunctionalTestCase):

    def test_config_drive_holds_the_metadata_and_is_read_only(self):
        image = self.image_with(pattern(MIB))
        body = self._build_server(image_uuid=image,
                                  flavor_id=self.flavor()['id'],
                                  networks=[{'uuid':
                                             self.neutron.network_1['id']}])
        # personality (file injection) needs microversion < 2.57
        self.api.microversion = '2.56'
        body.update(config_drive=True, metadata={'role': 'web'},
                    personality=[{'path': '/etc/motd', 'contents':
                                  base64.b64encode(MOTD).decode()}])
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
        # injected files travel in the drive (openstack/content/), never
        # into the root disk
        self.assertIn(MOTD, data)
        root = [v for v in record['VBDs'] if x.VBD.get_userdevice(v) == '0']
        self.assertNotIn(MOTD, self.xapi.vdi_bytes(
            x.VBD.get_VDI(root[0]), MIB))
        # the metadata also reaches the guest's xenstore
        xs = record['xenstore_data']
        self.assertEqual(server['id'], xs['vm-data/uuid'])
        self.assertEqual('web', xs['vm-data/meta/role'])
        self._delete_server(server)
        self.assertEqual({'VM': [], 'VDI': [], 'VBD': [], 'VIF': []},
                         self.xapi.objects_of(server['id']))


class ExtraDisksTest(base.XenAPIFunctionalTestCase):

    def test_ephemeral_and_swap_disks_of_the_flavor(self):
        flavor = self.api.post_flavor({'flavor': {
            'name': 'eph-swap', 'ram': 256, 'vcpus': 1, 'disk': 1,
            'OS-FLV-EXT-DATA:ephemeral': 2, 'swap': 64}})
        server = self._create_server(
            image_uuid=self.image_with(pattern(MIB)), flavor_id=flavor['id'],
            networks=[{'uuid': self.neutron.network_1['id']}])
        x = self.xapi.x
        _, record = self.xapi.vm_of(server['id'])
        disks = {}
        for vbd in record['VBDs']:
            vdi = x.VBD.get_VDI(vbd)
            disks[x.VBD.get_userdevice(vbd)] = (
                x.VDI.get_other_config(vdi)['nova_role'],
                int(x.VDI.get_virtual_size(vdi)), x.VBD.get_mode(vbd))
        self.assertEqual({'0': ('root', 1024 * MIB, 'RW'),
                          '1': ('ephemeral', 2048 * MIB, 'RW'),
                          '2': ('swap', 64 * MIB, 'RW')}, disks)
        self._delete_server(server)
        self.assertEqual({'VM': [], 'VDI': [], 'VBD': [], 'VIF': []},
                         self.xapi.objects_of(server['id']))
