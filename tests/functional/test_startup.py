"""nova-compute refuses to start, with one clear sentence, when it cannot
use the pool -- and never shows the password."""

import os

from nova_xen import errors

from tests.functional import base
from tests.functional import fixtures


class _NoComputeYet(base.XenAPIFunctionalTestCase):

    def _setup_compute_service(self):
        return None     # each test starts its own, misconfigured

    def _stop_computes(self):
        pass

    def start_compute(self):
        return self._start_compute(self.xapi.pool['hosts'][0]['name_label'])

    def assertRefused(self, *expected):
        e = self.assertRaises(errors.StartupError, self.start_compute)
        for text in expected:
            self.assertIn(text, str(e))
        return str(e)


class StartupTest(_NoComputeYet):

    def test_wrong_password(self):
        secret = 'Not-The-Password-42'
        self.flags(connection_password=secret, group='xenserver')
        message = self.assertRefused('SESSION_AUTHENTICATION_FAILED',
                                     'connection_password')
        self.assertNotIn(secret, message)
        self.assertNotIn(secret, self.stdlog.logger.output)

    def test_unreachable_url(self):
        self.flags(connection_url='http://127.0.0.1:9', group='xenserver')
        self.assertRefused('Cannot reach xapi at http://127.0.0.1:9',
                           'connection refused')

    def test_unknown_host_uuid(self):
        self.flags(host_uuid='00000000-0000-4000-8000-000000000000',
                   group='xenserver')
        self.assertRefused('[xenserver]host_uuid=00000000-0000-4000-8000-',
                           self.xapi.pool['hosts'][0]['uuid'])

    def test_missing_url(self):
        self.flags(connection_url=None, group='xenserver')
        self.assertRefused('Set [xenserver]connection_url')


class PluginCheckTest(_NoComputeYet):
    """The dom0 plugins must be there, speak the driver's API, and be able
    to do their work."""

    def _setup_services(self):
        self.plugins = self.useFixture(fixtures.PluginsCopy())
        self.xapisim_options = dict(self.xapisim_options,
                                    plugins_dir=self.plugins.path)
        super(PluginCheckTest, self)._setup_services()

    def test_missing_plugins(self):
        os.unlink(os.path.join(self.plugins.path, 'nova_xen_version.py'))
        self.assertRefused('do not answer', 'XENAPI_MISSING_PLUGIN',
                           'dom0_plugins/install.sh root@127.0.0.2')

    def test_plugins_of_another_api_version(self):
        self.plugins.edit('nova_xen_dom0lib.py', "API_VERSION = '1.2'",
                          "API_VERSION = '2.0'")
        self.assertRefused('speak plugin API 2.0', 'needs 1.2',
                           'dom0_plugins/install.sh')

    def test_plugins_of_an_older_minor_version(self):
        # plugins of nova-xen before 1.2 cannot filter allowed address
        # pairs (nor, before 1.1, set up OVN)
        self.plugins.edit('nova_xen_dom0lib.py', "API_VERSION = '1.2'",
                          "API_VERSION = '1.1'")
        self.assertRefused('speak plugin API 1.1', 'needs 1.2',
                           'dom0_plugins/install.sh')

    def test_dom0_without_nft(self):
        # XCP-ng's dom0 does not ship nftables: say so before any spawn
        self.plugins.edit('nova_xen_isolation.py',
                          "lib.find_command('nft', 'NOVA_XEN_NFT')", "None")
        self.assertRefused('Network isolation cannot work on host',
                           'nft command is not installed',
                           'Install the nftables package in its dom0')

    def test_matching_plugins_start(self):
        self.assertIsNotNone(self.start_compute())
