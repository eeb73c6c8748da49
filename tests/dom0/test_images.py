"""nova_xen_images.py through xapisim and host.call_plugin, against a fake Glance.

The real plugin file runs as a process under dom0's Python (3.6 when this
machine has it), with DOM0_ROOT pointing at the simulated host's dom0; it
talks to tests/dom0/fake_glance.py on 127.0.0.1 and writes through the
simulator's /import_raw_vdi.  Every refused image is checked to have left
the target VDI's bytes and the SR's VDI list as they were.
"""

import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import unittest
import urllib.parse
import uuid
import xmlrpc.client

from tests.dom0 import image_builders as ib
from tests.dom0.fake_glance import FakeGlance
from tests.xapisim.base import SimTestCase
from xapisim import tls as simtls
from xapisim.plugins import DOM0_MODULES

PLUGINS_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    'dom0_plugins', 'etc', 'xapi.d', 'plugins')
PLUGIN = 'nova_xen_images.py'
PY36 = os.environ.get('XAPISIM_PY36', '/root/.pyenv/versions/3.6.15/bin/python3.6')
PLUGIN_PYTHON = PY36 if os.path.exists(PY36) else sys.executable
MIB = ib.MIB
VDI_SIZE = 8 * MIB
FILL = b'\xa5' * VDI_SIZE   # what a target VDI holds before a download
WIPE = 4 * MIB              # zeroed by the plugin after a late refusal


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def pattern(size, seed):
    out = hashlib.sha512(seed.encode()).digest() * (size // 64 + 1)
    return out[:size]


class ImagesTestCase(SimTestCase):
    sim_options = {'plugins_dir': PLUGINS_DIR, 'plugin_python': PLUGIN_PYTHON,
                   'guest_delay': 0.01}
    tls = False

    @classmethod
    def setUpClass(cls):
        super(ImagesTestCase, cls).setUpClass()
        context = None
        if cls.tls:
            cls.certs = simtls.make_certificates(cls.sim.world.state_dir,
                                                 ['127.0.0.1'])
            context = simtls.server_context(cls.certs[1], cls.certs[2])
        cls.glance = FakeGlance(context)

    @classmethod
    def tearDownClass(cls):
        cls.glance.stop()
        super(ImagesTestCase, cls).tearDownClass()

    def setUp(self):
        super(ImagesTestCase, self).setUp()
        self.glance.reset()

    # -- xapi side ---------------------------------------------------------

    def host(self):
        return self.x.host.get_by_uuid(self.world['pools'][0]['hosts'][0]['uuid'])

    def call(self, fn, params):
        return json.loads(self.x.host.call_plugin(
            self.host(), PLUGIN, fn, {'params': json.dumps(params)}))

    def transfer(self, method, vdi_uuid, fmt='raw', body=None):
        query = urllib.parse.urlencode({'session_id': self.session._session,
                                        'vdi': vdi_uuid, 'format': fmt})
        path = '/%s_raw_vdi?%s' % ('import' if body else 'export', query)
        status, data = self.http(method, path, body)
        self.assertEqual(200, status)
        return data

    def target(self, size=VDI_SIZE, fill=FILL):
        vdi_uuid = self.x.VDI.get_uuid(self.new_vdi(size))
        self.transfer('PUT', vdi_uuid, body=fill[:size])
        return vdi_uuid

    def read_vdi(self, vdi_uuid):
        return self.transfer('GET', vdi_uuid)

    def sr_vdis(self):
        return sorted(self.x.SR.get_VDIs(self.default_sr()))

    def our_tasks(self):
        return [t for t in self.x.task.get_all()
                if self.x.task.get_name_label(t) == 'nova-xen image transfer']

    # -- Glance side -------------------------------------------------------

    def image(self, data, **kwargs):
        image_id = str(uuid.uuid4())
        self.glance.add(image_id, data, **kwargs)
        return image_id

    def params(self, image, vdi_uuid, data, disk_format='raw',
               container_format='bare', **extra):
        params = {'image_id': image, 'endpoints': [self.glance.url],
                  'token': self.glance.token, 'vdi_uuid': vdi_uuid,
                  'disk_format': disk_format,
                  'container_format': container_format,
                  'checksum': {'algorithm': 'sha256', 'value': sha256(data)},
                  'size': len(data), 'max_virtual_size': VDI_SIZE,
                  'retries': 0, 'timeout': 30}
        params.update(extra)
        return params

    def download(self, data, disk_format='raw', container_format='bare',
                 **extra):
        """(result, VDI bytes after) of downloading ``data`` into a target."""
        vdi_uuid = self.target()
        params = self.params(self.image(data), vdi_uuid, data, disk_format,
                             container_format, **extra)
        result = self.call('download_image', params)
        self.assertEqual([], self.our_tasks())
        return result, self.read_vdi(vdi_uuid)

    def assertRefused(self, expected, data, disk_format='raw',
                      container_format='bare', glance_data=None, late=False,
                      **extra):
        """Downloading fails with ``expected``; VDI and SR untouched.

        ``late``: a refusal found once bytes may have been written (the
        checksum, the end of a tar, a later member): the VDI may have been
        written, but then its start was wiped."""
        vdi_uuid = self.target()
        before, vdis = self.read_vdi(vdi_uuid), self.sr_vdis()
        image_id = self.image(data if glance_data is None else glance_data)
        params = self.params(image_id, vdi_uuid, data, disk_format,
                             container_format, **extra)
        details = self.assertFailure(expected, self.call, 'download_image',
                                     params)
        after = self.read_vdi(vdi_uuid)
        if late:
            self.assertTrue(after == before or after[:WIPE] == bytes(WIPE),
                            'VDI written and not wiped')
        else:
            self.assertTrue(before == after, 'VDI written')
        self.assertEqual(vdis, self.sr_vdis())
        self.assertEqual([], self.our_tasks())
        if not isinstance(expected, str) or expected != 'NOVA_XEN_INVALID_ARGUMENT':
            self.assertEqual(image_id, details[1])
        return details

    def assertInvalid(self, reason_part, data, disk_format='vhd',
                      container_format='tgz', **extra):
        details = self.assertRefused('NOVA_XEN_IMAGE_INVALID', data,
                                     disk_format, container_format, **extra)
        self.assertIn(reason_part, details[2])


def chain():
    """A three-VHD chain, leaf first, of an 8 MiB disk."""
    base = {0: (ib.FULL, pattern(ib.BLOCK, 'b0')),
            1: (ib.FULL, pattern(ib.BLOCK, 'b1')),
            2: (ib.bitmap((0, 2048)), pattern(ib.BLOCK, 'b2'))}
    middle = {1: (ib.bitmap((0, 2048)), pattern(ib.BLOCK, 'm1')),
              3: (ib.FULL, pattern(ib.BLOCK, 'm3'))}
    leaf = {0: (ib.bitmap((0, 10), (100, 101)), pattern(ib.BLOCK, 'l0')),
            1: (ib.bitmap((1000, 3000)), pattern(ib.BLOCK, 'l1')),
            3: (ib.FULL, pattern(ib.BLOCK, 'l3'))}
    disks = [leaf, middle, base]
    files = [ib.make_vhd(VDI_SIZE, leaf, ib.DIFFERENCING),
             ib.make_vhd(VDI_SIZE, middle, ib.DIFFERENCING),
             ib.make_vhd(VDI_SIZE, base)]
    return disks, files


class DownloadTest(ImagesTestCase):

    def test_raw_bare(self):
        data = pattern(5 * MIB + 512, 'raw')
        result, disk = self.download(data)
        self.assertEqual({'virtual_size': len(data), 'bytes': len(data),
                          'format': 'raw', 'checksum_verified': True}, result)
        self.assertTrue(disk == data + FILL[len(data):])
        # one pass: the image is verified as it is written; the token
        # went along
        self.assertEqual([('GET', self.glance.token)],
                         [(m, t) for m, _, t in self.glance.requests])

    def test_raw_in_tgz_with_every_checksum_algorithm(self):
        data = pattern(3 * MIB, 'raw-tgz')
        image = ib.tarball([('disk.raw', data)])
        for algorithm in ('md5', 'sha512'):
            with self.subTest(algorithm=algorithm):
                digest = hashlib.new(algorithm, image).hexdigest()
                result, disk = self.download(image, 'raw', 'tgz', checksum={
                    'algorithm': algorithm, 'value': digest.upper()})
                self.assertEqual(len(data), result['virtual_size'])
                self.assertTrue(disk == data + FILL[len(data):])

    def test_single_vhd_bare_writes_only_present_sectors(self):
        blocks = {0: (ib.FULL, pattern(ib.BLOCK, 'v0')),
                  2: (ib.bitmap((8, 16)), pattern(ib.BLOCK, 'v2'))}
        image = ib.make_vhd(6 * MIB, blocks)
        result, disk = self.download(image, 'vhd', 'bare')
        self.assertEqual({'virtual_size': 6 * MIB, 'bytes': len(image),
                          'format': 'vhd', 'checksum_verified': True}, result)
        self.assertTrue(disk == ib.merge(FILL, [blocks]))

    def test_single_vhd_in_ovf_tarball_made_by_tar_c_dot(self):
        blocks = {1: (ib.FULL, pattern(ib.BLOCK, 'o1'))}
        image = ib.tarball([ib.special('.', tarfile.DIRTYPE),
                            ('./0.vhd', ib.make_vhd(VDI_SIZE, blocks))])
        _, disk = self.download(image, 'vhd', 'ovf')
        self.assertTrue(disk == ib.merge(FILL, [blocks]))

    def test_chain_merges_child_sectors_over_parents_in_any_order(self):
        disks, files = chain()
        expected = ib.merge(FILL, disks)
        for order in ([0, 1, 2], [1, 0, 2], [2, 1, 0]):
            with self.subTest(order=order):
                image = ib.tarball([('%d.vhd' % i, files[i]) for i in order])
                result, disk = self.download(image, 'vhd', 'tgz')
                self.assertEqual(VDI_SIZE, result['virtual_size'])
                self.assertTrue(disk == expected)

    def test_legacy_chain_names_and_swap_are_understood(self):
        disks, files = chain()
        image = ib.tarball([('image.vhd', files[1]), ('swap.vhd', b'x' * 512),
                            ('snap.vhd', files[0]), ('base.vhd', files[2])],
                           compress=False)
        _, disk = self.download(image, 'vhd', 'tgz')
        self.assertTrue(disk == ib.merge(FILL, disks))

    def test_retries_after_5xx_and_dropped_connections(self):
        data = pattern(5 * MIB, 'retry')
        # the cut download has written bytes before it is retried
        self.glance.on_download({'status': 503}, {'close': True},
                                {'drop_after': 4 * MIB})
        _, disk = self.download(data, retries=3)
        self.assertTrue(disk == data + FILL[len(data):])
        self.assertEqual(4, self.glance.count('GET'))

    def test_next_endpoint_when_one_is_down_and_path_prefix(self):
        with socket.socket() as sock:
            sock.bind(('127.0.0.1', 0))
            dead = 'http://127.0.0.1:%d' % sock.getsockname()[1]
        data = pattern(MIB, 'endpoints')
        _, disk = self.download(data, endpoints=[dead, self.glance.url + '/image/'])
        self.assertTrue(disk.startswith(data))
        self.assertTrue(all(p.startswith('/image/v2/images/')
                            for _, p, _ in self.glance.requests))

    def test_gives_up_after_bounded_retries(self):
        data = pattern(MIB, 'down')
        self.glance.on_download(*[{'status': 502}] * 3)
        details = self.assertRefused('NOVA_XEN_GLANCE_UNAVAILABLE', data,
                                     retries=2)
        self.assertIn('HTTP 502', details[2])
        self.assertEqual(3, self.glance.count('GET'))

    def test_auth_and_missing_images_are_not_retried(self):
        data = pattern(MIB, 'auth')
        cases = [('NOVA_XEN_GLANCE_UNAUTHORIZED', {'token': 'wrong-token'}, []),
                 ('NOVA_XEN_GLANCE_FORBIDDEN', {}, [{'status': 403}]),
                 ('NOVA_XEN_IMAGE_NOT_FOUND', {}, [{'status': 404}]),
                 ('NOVA_XEN_IMAGE_NO_DATA', {}, [{'status': 204}])]
        for code, extra, plans in cases:
            with self.subTest(code=code):
                self.glance.reset()
                self.glance.on_download(*plans)
                self.assertRefused(code, data, retries=3, **extra)
                self.assertEqual(1, self.glance.count('GET'))

    def test_token_never_appears_in_errors(self):
        data = pattern(MIB, 'secret')
        self.glance.on_download({'status': 418, 'reason': 'echo %s' %
                                 self.glance.token})
        details = self.assertRefused('NOVA_XEN_GLANCE_ERROR', data)
        self.assertEqual('418', details[2])
        self.assertNotIn(self.glance.token, json.dumps(details))
        self.assertIn('***', details[3])

    def test_wrong_checksum(self):
        data = pattern(3 * MIB, 'sum')
        for container, image in (('bare', data),
                                 ('tgz', ib.tarball([('d.raw', data)]))):
            with self.subTest(container=container):
                details = self.assertRefused(
                    'NOVA_XEN_IMAGE_CHECKSUM_MISMATCH', image, 'raw',
                    container, glance_data=image[:99] + bytes([image[99] ^ 1])
                    + image[100:], late=True)
                self.assertEqual(['sha256', sha256(image)], details[2:4])

    def test_truncated_streams(self):
        data = pattern(5 * MIB, 'short')
        self.glance.on_download({'drop_after': 3 * MIB}, {'drop_after': 10})
        details = self.assertRefused('NOVA_XEN_IMAGE_TRUNCATED', data,
                                     retries=1, late=True)
        self.assertEqual([str(10), str(len(data))], details[2:])
        self.glance.on_download({'content_length': str(len(data) - 1)})
        self.assertRefused('NOVA_XEN_IMAGE_SIZE_MISMATCH', data)

    def test_more_bytes_than_glance_claims(self):
        data = pattern(3 * MIB, 'long')
        self.glance.on_download({'chunked': True})
        self.assertRefused('NOVA_XEN_IMAGE_SIZE_MISMATCH', data,
                           glance_data=data + b'extra', late=True)
        self.assertRefused('NOVA_XEN_IMAGE_SIZE_MISMATCH', data,
                           glance_data=data + b'extra', late=True)

    def test_larger_than_the_vdi(self):
        data = pattern(9 * MIB, 'big')
        self.assertRefused('NOVA_XEN_IMAGE_TOO_LARGE', data)
        self.assertEqual(0, self.glance.count('GET'))
        self.assertRefused('NOVA_XEN_IMAGE_TOO_LARGE',
                           ib.tarball([('d.raw', data)]), 'raw', 'tgz')
        small = pattern(2 * MIB, 'small')
        self.assertRefused('NOVA_XEN_IMAGE_TOO_LARGE', small,
                           max_virtual_size=MIB)
        vhd = ib.make_vhd(16 * MIB, {7: (ib.FULL, small)})
        self.assertRefused('NOVA_XEN_IMAGE_TOO_LARGE', vhd, 'vhd', 'bare')

    def test_checksum_mismatch_found_after_bytes_were_written(self):
        good = pattern(6 * MIB, 'good')
        evil = good[:5 * MIB - 7] + pattern(7, 'evil') + good[5 * MIB:]
        vdi_uuid = self.target()
        image_id = self.image(good)
        vdis = self.sr_vdis()
        self.glance.on_download({'data': evil})
        self.assertFailure(['NOVA_XEN_IMAGE_CHECKSUM_MISMATCH', image_id,
                            'sha256', sha256(good), sha256(evil)],
                           self.call, 'download_image',
                           self.params(image_id, vdi_uuid, good))
        self.assertEqual(1, self.glance.count('GET'))
        disk = self.read_vdi(vdi_uuid)
        # the bytes streamed into the VDI as they were hashed...
        self.assertTrue(disk[WIPE:5 * MIB - 7] == good[WIPE:5 * MIB - 7])
        # ...but the last piece waited for the verdict: xapi's import
        # never got all its bytes (its task failed), and the start of the
        # VDI was wiped
        self.assertTrue(disk[5 * MIB:] == FILL[5 * MIB:])
        self.assertTrue(disk[:WIPE] == bytes(WIPE))
        self.assertEqual(vdis, self.sr_vdis())
        self.assertEqual([], self.our_tasks())

    def test_unknown_vdi_and_bad_arguments(self):
        data = pattern(MIB, 'args')
        nowhere = '00000000-0000-4000-8000-000000000000'
        self.assertFailure(['NOVA_XEN_VDI_NOT_FOUND', nowhere], self.call,
                           'download_image',
                           self.params(self.image(data), nowhere, data))
        cases = [('image_id', 'X'), ('endpoints', ['ftp://glance']),
                 ('endpoints', []), ('endpoints', ['http://u:p@glance']),
                 ('token', 'a\r\nX-Evil: 1'), ('disk_format', 'qcow2'),
                 ('container_format', 'ovf'), ('retries', 11), ('size', -1),
                 ('checksum', {'algorithm': 'sha1', 'value': 'ab'}),
                 ('checksum', {'algorithm': 'md5', 'value': 'zz'}),
                 ('ca_bundle', 'relative.pem'), ('surprise', 1)]
        for name, value in cases:
            with self.subTest(name=name, value=value):
                details = self.assertRefused('NOVA_XEN_INVALID_ARGUMENT', data,
                                             **{name: value})
                self.assertTrue(details[1].startswith(name), details)
                self.assertNotIn('X-Evil', json.dumps(details))


class MaliciousTarTest(ImagesTestCase):
    """Tarballs that must be refused before anything is written."""

    vhd = ib.make_vhd(VDI_SIZE, {0: (ib.FULL, pattern(ib.BLOCK, 't0'))})

    def test_absolute_path(self):
        self.assertInvalid('absolute path', ib.tarball([('/0.vhd', self.vhd)]))

    def test_dot_dot(self):
        self.assertInvalid("'..'", ib.tarball([('../0.vhd', self.vhd)]))
        self.assertInvalid('subdirectory', ib.tarball([('a/0.vhd', self.vhd)]))

    def test_symlink(self):
        self.assertInvalid('symbolic link', ib.tarball([
            ('0.vhd', self.vhd),
            ib.special('1.vhd', tarfile.SYMTYPE, '/etc/shadow')]), late=True)
        self.assertInvalid('symbolic link', ib.tarball([
            ib.special('1.vhd', tarfile.SYMTYPE, '/etc/shadow'),
            ('0.vhd', self.vhd)]))

    def test_hard_link(self):
        self.assertInvalid('hard link', ib.tarball([
            ib.special('0.vhd', tarfile.LNKTYPE, '/etc/shadow')]))

    def test_device_nodes_and_fifos(self):
        for kind, word in ((tarfile.CHRTYPE, 'device node'),
                           (tarfile.BLKTYPE, 'device node'),
                           (tarfile.FIFOTYPE, 'FIFO')):
            with self.subTest(kind=kind):
                self.assertInvalid(word, ib.tarball([ib.special('0.vhd', kind)]))

    def test_unexpected_names(self):
        # told before a byte is written when the first member is wrong
        self.assertInvalid('unexpected file', ib.tarball([
            ('notes.txt', b'hello'), ('0.vhd', self.vhd)]))
        # after the first member was written: the VDI is wiped
        self.assertInvalid('unexpected file', ib.tarball([
            ('0.vhd', self.vhd), ('notes.txt', b'hello')]), late=True)
        self.assertInvalid('unexpected VHD names', ib.tarball([
            ('0.vhd', self.vhd), ('other.vhd', self.vhd)]), late=True)
        self.assertInvalid('more than one file', ib.tarball([
            ('a.raw', b'a' * 512), ('b.raw', b'b' * 512)]), 'raw', late=True)

    def test_gaps_and_duplicates_in_the_chain(self):
        self.assertInvalid('gaps', ib.tarball([('0.vhd', self.vhd),
                                               ('2.vhd', self.vhd)]), late=True)
        self.assertInvalid('twice', ib.tarball([('0.vhd', self.vhd),
                                                ('0.vhd', self.vhd)]), late=True)

    def test_differencing_base_and_bad_tar_data(self):
        diff = ib.make_vhd(VDI_SIZE, {}, ib.DIFFERENCING)
        self.assertInvalid('differencing', ib.tarball([('0.vhd', diff)]),
                           late=True)
        good = ib.tarball([('0.vhd', self.vhd)], compress=False)
        bad_header = good[:148] + b'0000000\0' + good[156:]
        self.assertInvalid('checksum', bad_header, container_format='ovf')
        self.assertInvalid('gzip', ib.tarball([('0.vhd', self.vhd)])[:-8]
                           + b'!' * 8, late=True)


class MaliciousVhdTest(ImagesTestCase):
    """VHDs that must be refused before anything is written."""

    def test_not_a_vhd(self):
        self.assertInvalid('not a VHD', pattern(3 * MIB, 'junk'), 'vhd', 'bare')

    def test_block_beyond_the_disk(self):
        data = ib.make_vhd(4 * MIB, {}, entries=4)
        table = 1536 + 3 * 4
        data = data[:table] + (4 * 1024 // 512).to_bytes(4, 'big') + data[table + 4:]
        self.assertInvalid('beyond the disk', data, 'vhd', 'bare')

    def test_broken_structures(self):
        good = ib.make_vhd(VDI_SIZE, {0: (ib.FULL, pattern(ib.BLOCK, 'g')),
                                      1: (ib.FULL, pattern(ib.BLOCK, 'h'))})
        footer_sum = good[:70] + bytes([good[70] ^ 1]) + good[71:]
        header_cookie = good[:512] + b'cxsparsX' + good[520:]
        overlapping = ib.make_vhd(VDI_SIZE, {0: (ib.FULL, b''), 1: (ib.FULL, b'')},
                                  bat={1: 4})
        # all in the VHD's headers: refused before a byte is written
        cases = [('footer checksum', footer_sum), ('header cookie', header_cookie),
                 ('overlaps', overlapping),
                 ('past the end', good[:-MIB])]
        for reason, data in cases:
            with self.subTest(reason=reason):
                self.assertInvalid(reason, data, 'vhd', 'bare')
        self.assertInvalid('footer copy', good[:-512] + b'\0' * 512, 'vhd',
                           'bare', late=True)


class TlsTest(ImagesTestCase):
    tls = True

    def test_verified_with_a_ca_bundle_as_text_or_dom0_path(self):
        data = pattern(MIB, 'tls')
        with open(self.certs[0]) as fh:
            pem = fh.read()
        _, disk = self.download(data, ca_bundle=pem)
        self.assertTrue(disk.startswith(data))
        dom0 = self.sim.world.pools[0].hosts[0].dom0_root
        os.makedirs(os.path.join(dom0, 'etc', 'glance'), exist_ok=True)
        shutil.copy(self.certs[0], os.path.join(dom0, 'etc', 'glance', 'ca.pem'))
        _, disk = self.download(data, ca_bundle='/etc/glance/ca.pem')
        self.assertTrue(disk.startswith(data))

    def test_unknown_ca_is_refused_unless_verification_is_off(self):
        data = pattern(MIB, 'tls-off')
        details = self.assertRefused('NOVA_XEN_GLANCE_TLS_ERROR', data, retries=2)
        self.assertEqual('127.0.0.1', details[2])
        self.assertEqual(0, self.glance.count('GET'))
        _, disk = self.download(data, verify_tls=False)
        self.assertTrue(disk.startswith(data))
        self.assertRefused('NOVA_XEN_INVALID_ARGUMENT', data,
                           ca_bundle='/etc/glance/missing.pem')


class UploadTest(ImagesTestCase):

    def source(self):
        """A VDI with data in blocks 0 and 3 of four, the others unwritten."""
        vdi_uuid = self.x.VDI.get_uuid(self.new_vdi(VDI_SIZE))
        content = bytearray(VDI_SIZE)
        content[MIB:MIB + 4096] = pattern(4096, 'u1')
        content[6 * MIB:7 * MIB] = pattern(MIB, 'u3')
        self.written = {0: (ib.FULL, bytes(content[:2 * MIB])),
                        3: (ib.FULL, bytes(content[6 * MIB:]))}
        self.transfer('PUT', vdi_uuid, 'vhd',
                      ib.make_vhd(VDI_SIZE, self.written))
        return vdi_uuid, bytes(content)

    def upload(self, vdi_uuid, disk_format='vhd', container_format='bare',
               image_id=None, **extra):
        image_id = image_id or self.image(b'', status='queued')
        params = {'image_id': image_id, 'endpoints': [self.glance.url],
                  'token': self.glance.token, 'vdi_uuid': vdi_uuid,
                  'disk_format': disk_format,
                  'container_format': container_format, 'retries': 1}
        params.update(extra)
        return image_id, self.call('upload_image', params)

    def test_vhd_bare(self):
        vdi_uuid, content = self.source()
        image_id, result = self.upload(vdi_uuid)
        image = self.glance.images[image_id]
        self.assertEqual('active', image.status)
        self.assertEqual({'size': len(image.data),
                          'checksum_md5': hashlib.md5(image.data).hexdigest(),
                          'os_hash_algo': 'sha512',
                          'os_hash_value': hashlib.sha512(image.data).hexdigest(),
                          'virtual_size': VDI_SIZE}, result)
        self.assertTrue(ib.vhd_contents(image.data, VDI_SIZE) == content)
        self.assertLess(len(image.data), 5 * MIB)   # only blocks with data
        self.assertEqual([], self.our_tasks())

    def test_raw_bare_with_properties(self):
        vdi_uuid, content = self.source()
        props = {'auto_disk_config': 'True', 'os_type': 'linux'}
        image_id, result = self.upload(vdi_uuid, 'raw', properties=props)
        image = self.glance.images[image_id]
        self.assertTrue(image.data == content)
        self.assertEqual(props, image.properties)
        self.assertEqual(hashlib.sha512(content).hexdigest(), result['os_hash_value'])

    def test_ovf_round_trip(self):
        vdi_uuid, content = self.source()
        image_id, result = self.upload(vdi_uuid, 'vhd', 'ovf')
        data = self.glance.images[image_id].data
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            self.assertEqual(['0.vhd'], tar.getnames())
            vhd = tar.extractfile('0.vhd').read()
        self.assertTrue(ib.vhd_contents(vhd, VDI_SIZE) == content)
        target = self.target()
        self.call('download_image', self.params(
            image_id, target, data, 'vhd', 'ovf', checksum={
                'algorithm': 'sha512', 'value': result['os_hash_value']}))
        self.assertTrue(self.read_vdi(target) == ib.merge(FILL, [self.written]))

    def test_retried_after_glance_fails(self):
        vdi_uuid, content = self.source()
        self.glance.on_upload({'status': 503}, {'close': True})
        image_id, result = self.upload(vdi_uuid, 'raw', retries=2)
        self.assertTrue(self.glance.images[image_id].data == content)
        self.assertEqual(3, self.glance.count('PUT'))

    def test_refusals(self):
        vdi_uuid, _ = self.source()

        def upload(**extra):
            return self.upload(vdi_uuid, **extra)
        active = self.image(b'done')
        self.assertFailure(['NOVA_XEN_IMAGE_NOT_QUEUED', active, 'active'],
                           lambda: upload(image_id=active))
        missing = str(uuid.uuid4())
        self.assertFailure(['NOVA_XEN_IMAGE_NOT_FOUND', missing],
                           lambda: upload(image_id=missing))
        self.assertFailure('NOVA_XEN_GLANCE_UNAUTHORIZED',
                           lambda: upload(token='nope'))
        self.assertFailure(['NOVA_XEN_INVALID_ARGUMENT', 'properties',
                            "cannot set 'status'"],
                           lambda: upload(properties={'status': 'active'}))
        self.glance.on_upload({'checksum': '0' * 32})
        details = self.assertFailure('NOVA_XEN_UPLOAD_MISMATCH', upload)
        self.assertEqual(['checksum', '0' * 32], details[2:4])
        self.assertEqual([], self.our_tasks())


WRAPPER = '''
import resource, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)
out = proc.communicate()[0]
sys.stdout.write(out.decode())
sys.stderr.write('%d' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
'''


class ResourcesTest(ImagesTestCase):

    def test_dom0_python_is_used_when_present(self):
        if not os.path.exists(PY36):
            self.skipTest('%s is not installed' % PY36)
        self.assertEqual(PY36, self.sim.world.options.plugin_python)
        out = subprocess.check_output([PY36, '-c', 'import sys; print(sys.version_info[:2])'])
        self.assertEqual(b'(3, 6)\n', out)

    def test_memory_stays_bounded_for_a_large_image(self):
        size = 512 * MIB

        def generate():
            zeros = bytes(MIB)
            for i in range(size // MIB):
                yield pattern(MIB, str(i)) if i % 64 == 0 else zeros
        digest = hashlib.sha256()
        for piece in generate():
            digest.update(piece)
        image_id = str(uuid.uuid4())
        self.glance.add(image_id, generate=generate, size=size)
        vdi = self.new_vdi(size)
        params = self.params(image_id, self.x.VDI.get_uuid(vdi), b'',
                             size=size, max_virtual_size=size, checksum={
                                 'algorithm': 'sha256', 'value': digest.hexdigest()})
        request = xmlrpc.client.dumps((self.session._session, {
            'params': json.dumps(params)}), 'download_image')
        proc = subprocess.Popen(
            [sys.executable, '-c', WRAPPER, PLUGIN_PYTHON,
             os.path.join(PLUGINS_DIR, PLUGIN), request],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={'PATH': os.environ.get('PATH', '/usr/bin:/bin'),
                 'PYTHONPATH': DOM0_MODULES, 'PYTHONDONTWRITEBYTECODE': '1',
                 'DOM0_ROOT': self.sim.world.pools[0].hosts[0].dom0_root})
        out, err = proc.communicate(timeout=120)
        (response,), _ = xmlrpc.client.loads(out.decode())
        self.assertEqual('Success', response['Status'], response)
        self.assertEqual(size, json.loads(response['Value'])['virtual_size'])
        peak_kib = int(err.decode().strip().splitlines()[-1])
        self.assertLess(peak_kib, 64 * 1024, 'peak RSS %d KiB' % peak_kib)
        self.assertEqual(1, self.glance.count('GET'))
        storage = self.sim.world.pools[0].storage
        self.assertEqual(pattern(4096, '64'), storage.read(vdi, 64 * MIB, 4096))
        self.assertEqual(bytes(4096), storage.read(vdi, 65 * MIB, 4096))


if __name__ == '__main__':
    unittest.main()
