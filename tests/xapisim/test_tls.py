"""--tls: every host serves HTTPS with a certificate from the run's CA."""

import http.client
import ssl
import xmlrpc.client

import XenAPI

from tests.xapisim import base


class TLSTest(base.SimTestCase):
    hosts = 2
    sim_options = {'tls': True}

    def login(self, url=None, password=None):
        ctx = ssl.create_default_context(cafile=self.world['ca_file'])
        session = XenAPI.Session(url or self.master_url,
                                 transport=xmlrpc.client.SafeTransport(
                                     context=ctx))
        session.login_with_password(self.world['username'],
                                    password or self.world['password'],
                                    '2.21', 'xapisim-tests')
        self.addCleanup(base._quiet_logout, session)
        return session

    def control(self, url=None):
        from xapisim.client import Control
        return Control(url or self.master_url, self.world['username'],
                       self.world['password'], ca_file=self.world['ca_file'])

    def test_every_host_serves_https_for_its_address(self):
        for host in self.world['pools'][0]['hosts']:
            self.assertTrue(host['url'].startswith('https://%s:'
                                                   % host['address']))
        member = self.world['pools'][0]['hosts'][1]['url']
        with self.assertRaises(XenAPI.Failure) as ctx:
            self.login(url=member)
        self.assertEqual('HOST_IS_SLAVE', ctx.exception.details[0])

    def test_a_client_without_the_ca_is_refused(self):
        with self.assertRaises(ssl.SSLCertVerificationError):
            XenAPI.Session(self.master_url).login_with_password(
                'root', 'xapisim', '2.21', 'x')

    def test_plain_http_to_a_tls_port_gets_nothing_useful(self):
        host, port = self.master_url[len('https://'):].split(':')
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        with self.assertRaises((ConnectionError, http.client.HTTPException,
                                OSError)):
            conn.request('POST', '/', b'<x/>')
            conn.getresponse().read()
        conn.close()
        # and the server still serves
        self.assertEqual(1, len(self.x.pool.get_all()))

    def test_vdi_import_over_https(self):
        vdi = self.new_vdi(size=4 * base.MIB)
        host, port = self.master_url[len('https://'):].split(':')
        ctx = ssl.create_default_context(cafile=self.world['ca_file'])
        conn = http.client.HTTPSConnection(host, int(port), context=ctx)
        # more than a buffered read of the headers takes: the rest comes
        # off the TLS socket, decrypted (never spliced as it lies there)
        data = b'over tls' * (3 * base.MIB // 8)
        conn.request('PUT', '/import_raw_vdi?session_id=%s&vdi=%s'
                     % (self.session._session, vdi), body=data)
        resp = conn.getresponse()
        resp.read()
        task = resp.getheader('task-id')
        conn.close()
        self.assertEqual('success', self.x.task.get_status(task))
        conn = http.client.HTTPSConnection(host, int(port), context=ctx)
        conn.request('GET', '/export_raw_vdi?session_id=%s&vdi=%s'
                     % (self.session._session, vdi))
        self.assertEqual(data, conn.getresponse().read()[:len(data)])
        conn.close()
