"""TLS to xapi: verified by default, with the pool's CA, or explicitly not."""

import os
import tempfile
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

    def _bad_ca_file(self, path, *expected):
        with self.assertRaises(errors.StartupError) as ctx:
            self.session(ca_file=path)
        message = str(ctx.exception)
        self.assertIn('[xenserver]ca_file %s' % path, message)
        for text in expected:
            self.assertIn(text, message)

    def test_a_missing_ca_file_is_a_startup_error_naming_the_option(self):
        self._bad_ca_file('/nonexistent/pool-ca.pem',
                          'No such file or directory')

    def test_a_ca_file_that_holds_no_certificate_is_a_startup_error(self):
        tmp = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, tmp)
        path = os.path.join(tmp, 'not-a-cert.pem')
        with open(path, 'w') as fh:
            fh.write('this is not a certificate\n')
        self.addCleanup(os.unlink, path)
        self._bad_ca_file(path, 'holds no usable CA certificate',
                          'NO_CERTIFICATE_OR_CRL_FOUND')

    def test_a_directory_as_ca_file_is_a_startup_error(self):
        tmp = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, tmp)
        self._bad_ca_file(tmp, 'Is a directory')
