"""nova-compute refuses to start, with one clear sentence, when it cannot
use the pool -- and never shows the password."""

from nova_xen import errors

from tests.functional import base


class StartupTest(base.XenAPIFunctionalTestCase):

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
