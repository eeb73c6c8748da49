"""Bad input on the wire: xapi's HTTP answers, and the server survives.

xapi answers a request it cannot parse with an HTTP error page (not an
XML-RPC fault) and closes the connection; the next client is served as
if nothing happened, and the database is untouched.
"""

import http.client
import socket
import threading
import urllib.parse
import xmlrpc.client

from tests.xapisim import base
from tests.xapisim.base import SimTestCase


class BadInput(SimTestCase):
    def setUp(self):
        super(BadInput, self).setUp()
        self.vm = self.new_vm('witness')
        self.vm_count = len(self.x.VM.get_all())
        self.addCleanup(self.assertIntact)

    def assertIntact(self):
        """Still serving, on fresh connections; the database unchanged."""
        x = self.login().xenapi
        self.assertEqual(self.vm_count, len(x.VM.get_all()))
        record = x.VM.get_record(self.vm)
        self.assertEqual('witness', record['name_label'])
        self.assertEqual('Halted', record['power_state'])
        result = self.raw_call('session.login_with_password',
                               self.world['username'],
                               self.world['password'])
        self.assertEqual('Success', result['Status'], result)

    def address(self):
        parts = urllib.parse.urlsplit(self.master_url)
        return parts.hostname, parts.port

    def post(self, body, headers=None, path='/'):
        conn = http.client.HTTPConnection(*self.address(), timeout=30)
        try:
            conn.request('POST', path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return (resp.status, {k.lower(): v for k, v in resp.getheaders()},
                    resp.read())
        finally:
            conn.close()

    def exchange(self, data, half_close=False):
        """Raw bytes in; everything the server sends until it closes."""
        sock = socket.create_connection(self.address(), timeout=10)
        try:
            try:
                sock.sendall(data)
                if half_close:
                    sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            return base.read_until_close(sock)
        finally:
            sock.close()

    def call_body(self, method='pool.get_all', *params):
        return xmlrpc.client.dumps(params, method).encode()

    def assertErrorPage(self, status, headers, code=500):
        self.assertEqual(code, status)
        self.assertTrue(headers['content-type'].startswith('text/html'),
                        headers)
        self.assertEqual('close', headers.get('connection', '').lower())

    # -- the body ------------------------------------------------------

    def test_malformed_xml(self):
        for body in (b'<methodCall><methodName>pool.get_all',
                     b'this is not xml at all',
                     b'<?xml version="1.0"?><notACall/>',
                     b'<methodCall><methodName>VM.get_all</methodName><params>'
                     b'<param><value><int>twelve</int></value></param>'
                     b'</params></methodCall>',
                     b''):
            status, headers, page = self.post(body, {'Content-Type':
                                                     'text/xml'})
            self.assertErrorPage(status, headers)
            self.assertNotIn(b'methodResponse', page)
            # the next call, on a fresh connection, works
            self.assertTrue(self.x.VM.get_all())

    def test_connection_closes_after_a_malformed_call(self):
        sock = socket.create_connection(self.address(), timeout=10)
        self.addCleanup(sock.close)
        body = b'<methodCall><oops'
        sock.sendall(b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d'
                     b'\r\n\r\n%s' % (len(body), body))
        reply = b''
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
        self.assertTrue(reply.startswith(b'HTTP/1.1 500 '), reply[:100])

    def test_huge_body(self):
        # xapi refuses on the Content-Length alone, before reading the body
        body = self.call_body('session.login_with_password',
                              'root', 'x' * (400 * 1024))
        sock = socket.create_connection(self.address(), timeout=10)
        self.addCleanup(sock.close)
        sock.sendall(b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d'
                     b'\r\n\r\n' % len(body) + body[:1000])
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        self.assertErrorPage(resp.status, {k.lower(): v for k, v in
                                           resp.getheaders()})
        self.assertIn(b'size_over_limit', resp.read())
        # just under the limit is fine
        body = self.call_body('session.login_with_password',
                              self.world['username'],
                              self.world['password'])
        padded = body.replace(b'<params>', b'<params>' + b' ' * (
            300 * 1024 - len(body)))
        self.assertEqual(300 * 1024, len(padded))
        status, _, data = self.post(padded)
        self.assertEqual(200, status)
        (result,), _ = xmlrpc.client.loads(data)
        self.assertEqual('Success', result['Status'])

    def test_much_bigger_body_does_not_kill_the_server(self):
        body = self.call_body('pool.get_all', 'x' * (8 * 1024 * 1024))
        reply = self.exchange(b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: '
                              b'%d\r\n\r\n' % len(body) + body)
        # the server refuses without reading; the client may see the 500
        # or just the connection reset
        if reply:
            self.assertTrue(reply.startswith(b'HTTP/1.1 500 '), reply[:100])

    def test_missing_content_length(self):
        reply = self.exchange(b'POST / HTTP/1.1\r\nHost: x\r\n\r\n' +
                              self.call_body(), half_close=True)
        self.assertTrue(reply.startswith(b'HTTP/1.1 500 '), reply[:100])
        self.assertIn(b'content-length', reply.lower())

    def test_bad_content_length(self):
        for value in (b'abc', b'-5', b'1e3'):
            reply = self.exchange(b'POST / HTTP/1.1\r\nHost: x\r\n'
                                  b'Content-Length: %s\r\n\r\n' % value +
                                  self.call_body(), half_close=True)
            self.assertTrue(reply.startswith(b'HTTP/1.1 500 '),
                            (value, reply[:100]))

    def test_body_shorter_than_announced(self):
        body = self.call_body()
        reply = self.exchange(b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length:'
                              b' %d\r\n\r\n' % (len(body) + 100) + body,
                              half_close=True)
        self.assertFalse(reply.startswith(b'HTTP/1.1 200'), reply[:100])

    def test_any_content_type_is_accepted(self):
        body = self.call_body('session.login_with_password',
                              self.world['username'], self.world['password'])
        for ctype in ('application/json', 'text/plain', None):
            headers = {'Content-Type': ctype} if ctype else {}
            status, resp_headers, data = self.post(body, headers)
            self.assertEqual(200, status, ctype)
            self.assertTrue(resp_headers['content-type'].startswith(
                'text/xml'))
            (result,), _ = xmlrpc.client.loads(data)
            self.assertEqual('Success', result['Status'])
            self.assertTrue(result['Value'].startswith('OpaqueRef:'))

    def test_any_post_path_is_xmlrpc(self):
        body = self.call_body('session.login_with_password',
                              self.world['username'], self.world['password'])
        status, _, data = self.post(body, path='/RPC2')
        self.assertEqual(200, status)
        (result,), _ = xmlrpc.client.loads(data)
        self.assertEqual('Success', result['Status'])

    # -- paths and methods ---------------------------------------------

    def test_unknown_paths(self):
        status, _ = self.http('GET', '/no/such/thing')
        self.assertEqual(404, status)
        status, _ = self.http('GET', '/import_raw_vdi')
        self.assertEqual(404, status)
        status, _ = self.http('PUT', '/no/such/thing', body=b'data')
        self.assertEqual(403, status)
        status, _ = self.http('PUT', '/export_raw_vdi', body=b'data')
        self.assertEqual(403, status)

    def test_unknown_method(self):
        status, _ = self.http('DELETE', '/')
        self.assertEqual(501, status)

    # -- the request line and headers -----------------------------------

    def test_garbage_instead_of_http(self):
        for junk in (b'\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03' +
                     bytes(range(256)),
                     b'\r\n\r\n',
                     b'HELLO\r\n\r\n',
                     b'GET /' + b'a' * 70000 + b' HTTP/1.1\r\n\r\n',
                     b'POST / HTTP/9.9\r\n\r\n'):
            reply = self.exchange(junk, half_close=True)
            if reply:
                self.assertRegex(reply[:12], rb'^HTTP/1\.[01] [45]\d\d',
                                 junk[:20])
            self.assertTrue(self.x.pool.get_all())

    def test_garbage_headers(self):
        body = self.call_body()
        for headers in (b'Host: x\r\nthis line has no colon\r\n',
                        b'Host: \xff\xfe\x00\x01\r\nX-\x80\x81: \x90\r\n',
                        b'X-Long: ' + b'y' * 70000 + b'\r\n',
                        b''.join(b'X-%d: %d\r\n' % (i, i)
                                 for i in range(500)),
                        b'Content-Length: 1\r\nContent-Length: 99999999\r\n'):
            reply = self.exchange(b'POST / HTTP/1.1\r\n' + headers +
                                  b'Content-Length: %d\r\n\r\n' % len(body) +
                                  body, half_close=True)
            if reply:      # a refusal before reading all may end in a reset
                self.assertRegex(reply[:12], rb'^HTTP/1\.[01] \d\d\d',
                                 headers[:30])
            self.assertTrue(self.x.pool.get_all())

    def test_silent_and_abandoned_connections(self):
        socks = []
        for _ in range(20):
            sock = socket.create_connection(self.address(), timeout=10)
            socks.append(sock)
        socks[0].sendall(b'POST / HTTP/1.1\r\nHost: x\r\nContent-')
        for sock in socks:
            sock.close()
        # a half-sent request from one client does not block the others
        slow = socket.create_connection(self.address(), timeout=10)
        self.addCleanup(slow.close)
        slow.sendall(b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n'
                     b'\r\n<methodCall>')
        # the slow request never completes: a call that waited for it
        # would not return
        result = {}
        call = threading.Thread(
            target=lambda: result.update(vms=self.x.VM.get_all()))
        call.start()
        self.addCleanup(call.join)
        call.join(60)
        self.assertFalse(call.is_alive(), 'blocked by a half-sent request')
        self.assertTrue(result['vms'])
