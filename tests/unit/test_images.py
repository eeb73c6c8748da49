"""Which Glance endpoints the dom0 image plugin is given."""

import itertools
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
