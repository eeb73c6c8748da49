"""A snapshot through Nova's API becomes a VHD image that boots."""

import io

from xapisim import vhd

from tests.functional import base
from tests.functional.test_boot import pattern

MIB = 1024 * 1024


class SnapshotTest(base.XenAPIFunctionalTestCase):

    def test_snapshot_is_a_vhd_of_the_root_disk_and_boots(self):
        data = pattern(2 * MIB + 3, seed=b'snapshot-me')
        server = self.boot(self.image_with(data))
        image_id = self._create_image(server)
        image = self.glance.show(None, image_id)
        self.assertEqual('vhd', image['disk_format'])
        self.assertEqual('bare', image['container_format'])
        self.assertEqual('active', image['status'])
        # dom0 uploaded the bytes to Glance's API, with the user's token
        self.assertIn(('PUT', '/v2/images/%s/file' % image_id),
                      self.glance_http.requests)
        self.assertEqual({self.glance_http.token},
                         set(self.glance_http.tokens))
        # the image holds the root disk's bytes, as a VHD
        got = bytearray(len(data))

        def write(offset, chunk):
            end = min(len(got), offset + len(chunk))
            if offset < end:
                got[offset:end] = chunk[:end - offset]
        vhd.read_vhd(io.BytesIO(self.glance._imagedata[image_id]).read,
                     1 << 40, write)
        self.assertEqual(data, bytes(got))
        # no snapshot VDI is left behind
        x = self.xapi.x
        self.assertEqual([], [r for r in x.VDI.get_all_records().values()
                              if r['other_config'].get('nova_snapshot_of')])
        # and it boots
        second = self.boot(image_id)
        _, record = self.xapi.vm_of(second['id'])
        root = x.VBD.get_VDI(record['VBDs'][0])
        self.assertEqual(data, self.xapi.vdi_bytes(root, len(data)))
        self._delete_server(second)
        self._delete_server(server)
        self.assertEqual({'VM': [], 'VDI': [], 'VBD': [], 'VIF': []},
                         self.xapi.objects_of(server['id']))

    def _create_image(self, server):
        self.api.microversion = '2.45'
        resp = self.api.api_post('/servers/%s/action' % server['id'],
                                 {'createImage': {'name': 'snap'}}).body
        # the snapshot runs in the background: wait until it is done
        self._wait_for_server_parameter(
            server, {'OS-EXT-STS:task_state': None, 'status': 'ACTIVE'})
        return resp['image_id']
