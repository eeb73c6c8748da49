"""Images through both handlers: the dom0 plugin (the default) takes the
legacy tgz VHD chains and refuses malicious archives (what their first
bytes tell before any byte reaches the SR; what only their end tells
before the import completes, the VDI then destroyed); nova-compute's own
stream still works when chosen."""

import tarfile

from tests.dom0 import image_builders as build
from tests.functional import base
from tests.functional.test_boot import pattern

MIB = 1024 * 1024


class Dom0PluginImagesTest(base.XenAPIFunctionalTestCase):

    def test_a_legacy_vhd_chain_tgz_boots_with_the_merged_disk(self):
        size = 4 * MIB
        base_blocks = {0: (build.FULL, pattern(build.BLOCK, b'base')),
                       1: (build.FULL, pattern(build.BLOCK, b'base2'))}
        leaf_blocks = {0: (build.bitmap((0, 8)),
                           pattern(build.BLOCK, b'leaf'))}
        chain = [leaf_blocks, base_blocks]          # 0.vhd is the leaf
        image = build.tarball([
            ('0.vhd', build.make_vhd(size, leaf_blocks,
                                     build.DIFFERENCING)),
            ('1.vhd', build.make_vhd(size, base_blocks))])
        expected = build.merge(bytes(size), chain)
        image_id = self.image_with(image, disk_format='vhd',
                                   container_format='ovf')
        server = self.boot(image_id)
        _, record = self.xapi.vm_of(server['id'])
        root = self.xapi.x.VBD.get_VDI(record['VBDs'][0])
        self.assertEqual(expected, self.xapi.vdi_bytes(root, size))
        # the plugin fetched it with the user's token
        self.assertEqual({self.glance_http.token},
                         set(self.glance_http.tokens))

    def test_a_malicious_archive_is_refused_and_leaves_nothing(self):
        self.flags(max_attempts=1, group='scheduler')
        vdis = set(self.xapi.x.VDI.get_all())
        image = build.tarball([
            build.special('0.vhd', tarfile.SYMTYPE, '/etc/shadow')])
        image_id = self.image_with(image, disk_format='vhd',
                                   container_format='ovf')
        server = self.boot(image_id, expected_state='ERROR')
        fault = self.api.get_server(server['id'])['fault']['message']
        self.assertIn('is unacceptable', fault)
        self.assertIn('dom0 image plugin refused it', fault)
        self.assertEqual(vdis, set(self.xapi.x.VDI.get_all()))

    def test_a_corrupted_download_is_refused(self):
        self.flags(max_attempts=1, group='scheduler')
        vdis = set(self.xapi.x.VDI.get_all())
        data = pattern(6 * MIB)
        image_id = self.image_with(data)
        # the bytes Glance serves no longer match its checksum, far enough
        # from the start that the plugin has written into the VDI when
        # the checksum tells
        self.glance._imagedata[image_id] = data[:-1] + b'!'
        server = self.boot(image_id, expected_state='ERROR')
        fault = self.api.get_server(server['id'])['fault']['message']
        self.assertIn('NOVA_XEN_IMAGE_CHECKSUM_MISMATCH', fault)
        self.assertEqual({'VM': [], 'VDI': [], 'VBD': [], 'VIF': []},
                         self.xapi.objects_of(server['id']))
        self.assertEqual(vdis, set(self.xapi.x.VDI.get_all()))
        # read once: verified as it was written
        self.assertEqual(1, sum(1 for method, path in self.glance_http.requests
                                if method == 'GET' and path.endswith('/file')))

    def test_a_bad_member_after_a_written_one_leaves_nothing(self):
        self.flags(max_attempts=1, group='scheduler')
        vdis = set(self.xapi.x.VDI.get_all())
        leaf = build.make_vhd(4 * MIB, {0: (build.FULL,
                                            pattern(build.BLOCK, b'x'))})
        image = build.tarball([
            ('0.vhd', leaf),
            build.special('1.vhd', tarfile.SYMTYPE, '/etc/shadow')])
        image_id = self.image_with(image, disk_format='vhd',
                                   container_format='ovf')
        server = self.boot(image_id, expected_state='ERROR')
        fault = self.api.get_server(server['id'])['fault']['message']
        self.assertIn('NOVA_XEN_IMAGE_INVALID', fault)
        self.assertIn('symbolic link', fault)
        self.assertEqual({'VM': [], 'VDI': [], 'VBD': [], 'VIF': []},
                         self.xapi.objects_of(server['id']))
        self.assertEqual(vdis, set(self.xapi.x.VDI.get_all()))


class ImageSizeTest(base.XenAPIFunctionalTestCase):
    """A VHD bigger than the flavor's root disk, or than the configured
    limit, is refused before any disk is created; the dom0 plugin refuses
    it when Glance does not know its virtual size."""

    def setUp(self):
        super(ImageSizeTest, self).setUp()
        self.flags(max_attempts=1, group='scheduler')
        # 2 GiB virtual, a few KiB of bytes
        self.big = build.make_vhd(2048 * MIB, {})

    def assertRefused(self, image_id, flavor, *expected):
        vdis = set(self.xapi.x.VDI.get_all())
        server = self.boot(image_id, flavor=flavor, expected_state='ERROR')
        fault = self.api.get_server(server['id'])['fault']['message']
        for text in expected:
            self.assertIn(text, fault)
        self.assertEqual(vdis, set(self.xapi.x.VDI.get_all()))
        self.assertEqual({'VM': [], 'VDI': [], 'VBD': [], 'VIF': []},
                         self.xapi.objects_of(server['id']))

    def test_larger_than_the_flavor_disk(self):
        image_id = self.image_with(self.big, disk_format='vhd',
                                   virtual_size=2048 * MIB)
        # m1.tiny: a 1 GiB root disk
        self.assertRefused(image_id, 'm1.tiny', 'Flavor\'s disk is too small',
                           str(2048 * MIB))

    def test_larger_than_max_image_size(self):
        self.flags(max_image_size_gb=1, group='xenserver')
        image_id = self.image_with(self.big, disk_format='vhd',
                                   virtual_size=2048 * MIB)
        self.assertRefused(image_id, 'm1.small',
                           '[xenserver]max_image_size_gb (1 GiB)')

    def test_virtual_size_unknown_to_glance(self):
        # the plugin reads the VHD's own footer and refuses to write it
        # into a 1 GiB disk
        image_id = self.image_with(self.big, disk_format='vhd')
        self.assertRefused(image_id, 'm1.tiny', 'dom0 image plugin refused it',
                           'NOVA_XEN_IMAGE_TOO_LARGE')


class GlanceOverTLSTest(base.XenAPIFunctionalTestCase):
    """dom0 verifies Glance's certificate with nova's [glance]cafile."""
    glance_tls = True

    def test_private_ca_from_glance_cafile(self):
        self.assertTrue(self.glance_http.url.startswith('https://'))
        self.flags(cafile=self.glance_http.ca_file, group='glance')
        data = pattern(MIB + 5, seed=b'over-tls')
        server = self.boot(self.image_with(data))
        _, record = self.xapi.vm_of(server['id'])
        root = self.xapi.x.VBD.get_VDI(record['VBDs'][0])
        self.assertEqual(data, self.xapi.vdi_bytes(root, len(data)))

    def test_unknown_ca_is_refused(self):
        self.flags(max_attempts=1, group='scheduler')
        server = self.boot(self.image_with(pattern(MIB)),
                           expected_state='ERROR')
        fault = self.api.get_server(server['id'])['fault']['message']
        self.assertIn('CERTIFICATE_VERIFY_FAILED', fault)
        self.assertEqual({'VM': [], 'VDI': [], 'VBD': [], 'VIF': []},
                         self.xapi.objects_of(server['id']))


class RemoteStreamImagesTest(base.XenAPIFunctionalTestCase):
    """[xenserver]image_handler = vdi_remote_stream"""

    def setUp(self):
        self.flags(image_handler='vdi_remote_stream', group='xenserver')
        super(RemoteStreamImagesTest, self).setUp()

    def file_gets(self):
        return [path for method, path in self.glance_http.requests
                if method == 'GET' and path.endswith('/file')]

    def test_raw_image_streams_from_nova_compute(self):
        data = pattern(2 * MIB + 7, seed=b'streamed')
        image_id = self.image_with(data)
        server = self.boot(image_id)
        _, record = self.xapi.vm_of(server['id'])
        root = self.xapi.x.VBD.get_VDI(record['VBDs'][0])
        self.assertEqual(data, self.xapi.vdi_bytes(root, len(data)))
        # nova-compute's own reader fetched it once, with the user's token
        self.assertEqual(['/v2/images/%s/file' % image_id], self.file_gets())
        self.assertEqual({self.glance_http.token},
                         set(self.glance_http.tokens))

    def test_a_corrupted_download_is_refused_and_leaves_nothing(self):
        self.flags(max_attempts=1, group='scheduler')
        vdis = set(self.xapi.x.VDI.get_all())
        data = pattern(5 * MIB + 3, seed=b'corrupt')
        image_id = self.image_with(data)
        # Glance's record keeps the sha512 of the upload; the bytes it
        # serves differ in their last one
        self.glance._imagedata[image_id] = data[:-1] + b'!'
        server = self.boot(image_id, expected_state='ERROR')
        fault = self.api.get_server(server['id'])['fault']['message']
        self.assertIn('do not match the sha512 Glance recorded', fault)
        self.assertEqual({'VM': [], 'VDI': [], 'VBD': [], 'VIF': []},
                         self.xapi.objects_of(server['id']))
        self.assertEqual(vdis, set(self.xapi.x.VDI.get_all()))

    def test_a_short_download_is_refused_and_leaves_nothing(self):
        self.flags(max_attempts=1, group='scheduler')
        vdis = set(self.xapi.x.VDI.get_all())
        data = pattern(3 * MIB, seed=b'short')
        image_id = self.image_with(data)
        self.glance._imagedata[image_id] = data[:2 * MIB]
        server = self.boot(image_id, expected_state='ERROR')
        fault = self.api.get_server(server['id'])['fault']['message']
        self.assertIn('Glance sent %d bytes of its %d' % (2 * MIB, 3 * MIB),
                      fault)
        self.assertEqual({'VM': [], 'VDI': [], 'VBD': [], 'VIF': []},
                         self.xapi.objects_of(server['id']))
        self.assertEqual(vdis, set(self.xapi.x.VDI.get_all()))

    def test_signed_images_are_left_to_novas_own_client(self):
        # Nova verifies image signatures in its own download: with that
        # on, the image comes through Nova's client (here, the fixture)
        self.flags(verify_glance_signatures=True, group='glance')
        data = pattern(MIB + 1, seed=b'nova-client')
        server = self.boot(self.image_with(data))
        _, record = self.xapi.vm_of(server['id'])
        root = self.xapi.x.VBD.get_VDI(record['VBDs'][0])
        self.assertEqual(data, self.xapi.vdi_bytes(root, len(data)))
        self.assertEqual([], self.file_gets())
