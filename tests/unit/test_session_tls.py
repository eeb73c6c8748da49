"""TLS to xapi: verified by default, with the pool's CA, or explicitly not."""

import unittest

import xapisim

from nova_xen import errors
from nova_xen import session as session_mod


class TLSTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sim = xapisim.Simulator(tls=True)
        cls.world = cls.sim.describe()
        cls.url = cls.world['pools'][0]['master']

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()

    def session(self, **kwargs):
        sess = session_mod.Session(self.url, 'root', 'xapisim', **kwargs)
        self.addCleanup(sess.close)
        return sess

    def test_the_url_is_https(self):
        self.assertTrue(self.url.startswith('https://'))

    def test_verified_with_the_pools_ca(self):
        sess = self.session(ca_file=self.world['ca_file']).connect()
        self.assertEqual(1, len(sess.call('pool.get_all')))

    def test_an_unknown_certificate_stops_startup_and_says_what_to_do(self):
        with self.assertRaises(errors.StartupError) as ctx:
            self.session().connect()
        message = str(ctx.exception)
        self.assertIn('TLS verification of %s failed' % self.url, message)
        self.assertIn('[xenserver]ca_file', message)
        self.assertIn('CERTIFICATE_VERIFY_FAILED', message)

    def test_insecure_skips_verification(self):
        sess = self.session(insecure=True).connect()
        self.assertEqual(1, len(sess.call('pool.get_all')))

    def test_http_handlers_use_the_same_tls(self):
        sess = self.session(ca_file=self.world['ca_file']).connect()
        address = self.world['pools'][0]['hosts'][0]['address']
        with sess.http_session() as session_id:
            conn = sess.http_connection(address)
            conn.request('GET', '/rrd_updates?session_id=%s&start=0&host=true'
                         % session_id)
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
        self.assertEqual(200, resp.status)
        self.assertIn(b'<xport>', body)
