"""Which Glance endpoints the dom0 image plugin is given."""

import itertools
import time
from unittest import mock

from nova import exception
from oslo_config import fixture as config_fixture
import testtools

from nova_xen import conf as xen_conf
from nova_xen import images


class GlanceEndpointsTest(testtools.TestCase):

    def setUp(self):
        super(GlanceEndpointsTest, self).setUp()
        self.conf = self.useFixture(config_fixture.Config(xen_conf.CONF))

    def endpoints(self, catalog=None):
        # nova's get_api_servers cycles for ever: a bug here never returns,
        # so the call runs under a guard that fails the test instead
        real = images.glance.get_api_servers
        calls = []

        def guarded(context):
            calls.append(context)
            if catalog is None:
                return itertools.islice(real(context), 1000)
            return itertools.islice(itertools.cycle([catalog]), 1000)
        with mock.patch.object(images.glance, 'get_api_servers', guarded):
            found = images.glance_endpoints(mock.sentinel.context)
        self.assertEqual(1, len(calls))
        return found

    def test_configured_servers_each_once_without_trailing_slash(self):
        self.conf.config(api_servers=['http://g1:9292/', 'https://g2/image',
                                      'http://g1:9292'], group='glance')
        self.assertEqual(['http://g1:9292', 'https://g2/image'],
                         sorted(self.endpoints()))

    def test_catalog_endpoint_as_nova_rewrites_it(self):
        # nova turns the catalog's http://h/image/v2 into http://h/image/
        self.assertEqual(['http://h/image'],
                         self.endpoints(catalog='http://h/image/'))

    def test_no_endpoint_anywhere(self):
        e = self.assertRaises(exception.GlanceConnectionFailed,
                              self.endpoints, catalog='')
        self.assertIn('[glance]api_servers is not set', str(e))


class CheckSizeTest(testtools.TestCase):

    def setUp(self):
        super(CheckSizeTest, self).setUp()
        self.conf = self.useFixture(config_fixture.Config(xen_conf.CONF))
        self.instance = mock.Mock(flavor=mock.Mock(root_gb=1))

    def test_fits(self):
        images.check_size(self.instance, 'img', images.GIB)

    def test_over_the_flavor_root_disk(self):
        self.assertRaises(exception.FlavorDiskSmallerThanImage,
                          images.check_size, self.instance, 'img',
                          images.GIB + 1)

    def test_root_gb_zero_takes_the_image_size(self):
        self.instance.flavor.root_gb = 0
        images.check_size(self.instance, 'img', 40 * images.GIB)

    def test_over_the_configured_limit(self):
        self.conf.config(max_image_size_gb=2, group='xenserver')
        self.instance.flavor.root_gb = 0
        e = self.assertRaises(exception.ImageUnacceptable,
                              images.check_size, self.instance, 'img',
                              3 * images.GIB)
        self.assertIn('[xenserver]max_image_size_gb (2 GiB)', str(e))


class _Stream(object):
    """An image download whose check fails at its end, as Nova's Glance
    client raises once the last chunk is through (a while after it: time
    for xapi to take every byte it was sent)."""

    def __init__(self, data, error=None):
        self.pieces = [data[i:i + images.CHUNK]
                       for i in range(0, len(data), images.CHUNK)]
        self.error = error
        self.closed = False

    def read(self, n=images.CHUNK):
        if self.pieces:
            piece = self.pieces.pop(0)
            if len(piece) > n:
                self.pieces.insert(0, piece[n:])
            return piece[:n]
        if self.error is not None:
            time.sleep(0.5)
            raise self.error
        return b''

    def close(self):
        self.closed = True


class RemoteStreamWriteTest(testtools.TestCase):
    """RemoteStreamHandler.write against a simulated pool."""

    def setUp(self):
        super(RemoteStreamWriteTest, self).setUp()
        import xapisim
        from nova_xen import session as session_mod
        self.sim = xapisim.Simulator(guest_delay=0.01)
        self.addCleanup(self.sim.stop)
        pool = self.sim.describe()['pools'][0]
        self.session = session_mod.Session(pool['master'], 'root',
                                           'xapisim').connect()
        self.addCleanup(self.session.close)
        self.host = self.session.call('host.get_all')[0]
        self.address = self.session.call('host.get_address', self.host)
        sr = self.session.call('pool.get_default_SR',
                               self.session.call('pool.get_all')[0])
        self.vdi = self.session.call('VDI.create', {
            'SR': sr, 'virtual_size': str(8 * images.CHUNK), 'type': 'user',
            'sharable': False, 'read_only': False, 'other_config': {},
            'name_label': 'root', 'name_description': '', 'sm_config': {},
            'xenstore_data': {}, 'tags': []})
        self.handler = images.RemoteStreamHandler(self.session)
        self.data = bytes(range(256)) * (5 * images.CHUNK // 256)

    def vdi_bytes(self):
        return self.sim.world.pools[0].storage.read(
            self.vdi, 0, len(self.data))

    def test_the_image_reaches_the_vdi(self):
        stream = _Stream(self.data)
        self.handler.write(stream, 'raw', len(self.data), self.vdi,
                           self.address)
        self.assertTrue(stream.closed)
        self.assertTrue(self.vdi_bytes() == self.data)

    def test_a_checksum_failing_at_the_end_leaves_the_import_short(self):
        outcomes = []
        destroy = self.session.destroy_task

        def destroy_when_done(task):
            # what xapi made of the import, once it is over
            deadline = time.monotonic() + 60
            while self.session.call('task.get_status', task) == 'pending' \
                    and time.monotonic() < deadline:
                time.sleep(0.02)
            outcomes.append(self.session.call('task.get_status', task))
            destroy(task)
        self.session.destroy_task = destroy_when_done
        stream = _Stream(self.data, IOError('Corrupt image download'))
        self.assertRaises(IOError, self.handler.write, stream, 'raw',
                          len(self.data), self.vdi, self.address)
        self.assertTrue(stream.closed)
        # the last piece waited for the verdict and never went: xapi got
        # fewer bytes than announced and its import failed
        self.assertEqual(['failure'], outcomes)
        last = len(self.data) - images.CHUNK
        written = self.vdi_bytes()
        self.assertTrue(written[:last] == self.data[:last])
        self.assertTrue(written[last:] == bytes(images.CHUNK))
