"""The HTTP front of a simulated host: XML-RPC and xapi's HTTP handlers.

Each host listens on its own loopback address and on a Unix socket in its
dom0 (``var/lib/xcp/xapi``), where plugins reach it as they reach xapi.
Errors that xapi reports as HTTP statuses (a malformed XML-RPC body, a bad
``session_id`` on a handler, an unknown path) get the same statuses here.
"""

import base64
import http.server
import os
import socket
import socketserver
import ssl
import sys
import threading
import traceback
from urllib.parse import parse_qs, urlsplit

from xapisim import wire
from xapisim.db import Killed
from xapisim.errors import XapiError


class Request(object):
    """What a handler needs to know about an HTTP request."""

    def __init__(self, handler):
        self.handler = handler
        parts = urlsplit(handler.path)
        self.path = parts.path
        self.query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        cookies = {}
        for item in handler.headers.get('Cookie', '').split(';'):
            if '=' in item:
                k, _, v = item.strip().partition('=')
                cookies[k] = v
        self.cookies = cookies
        self.local = handler.server.is_unix

    def param(self, name, default=None):
        # xapi looks at the cookie first, then the query string
        if name in self.cookies:
            return self.cookies[name]
        return self.query.get(name, default)


class Headers(dict):
    """Request headers: a dict with case-insensitive names."""

    def __setitem__(self, name, value):
        dict.__setitem__(self, name.lower(), value)

    def __getitem__(self, name):
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name):
        return dict.__contains__(self, name.lower())

    def get(self, name, default=None):
        return dict.get(self, name.lower(), default)


class HostServerMixin(object):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def setup_host(self, host, is_unix):
        self.host = host
        self.is_unix = is_unix
        self.connections = set()
        self.connections_lock = threading.Lock()

    def drop_connections(self):
        with self.connections_lock:
            conns = list(self.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class TCPServer(HostServerMixin, http.server.ThreadingHTTPServer):
    tls = None     # an ssl.SSLContext when the world serves HTTPS

    def get_request(self):
        conn, address = self.socket.accept()
        if self.tls is not None:
            # the handshake happens in the request's own thread (setup)
            conn = self.tls.wrap_socket(conn, server_side=True,
                                        do_handshake_on_connect=False)
        return conn, address

    def handle_error(self, request, client_address):
        if sys.exc_info()[0] is not None and issubclass(
                sys.exc_info()[0], (ssl.SSLError, ConnectionError, Killed)):
            return      # a client that failed TLS or went away
        super(TCPServer, self).handle_error(request, client_address)


class UnixServer(HostServerMixin, socketserver.ThreadingUnixStreamServer):
    pass


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    # an unparsable request line still gets a status line in the answer
    default_request_version = 'HTTP/1.0'
    server_version = 'xapi/24.19'
    sys_version = ''

    # -- plumbing --------------------------------------------------------

    def parse_request(self):
        """The request line and headers, without the email parser.

        http.server parses headers with the email package, which costs as
        much as serving a XenAPI call; this reads them directly.  Anything
        unusual goes the standard way.
        """
        words = self.raw_requestline.decode('iso-8859-1').rstrip('\r\n')
        parts = words.split()
        if len(parts) != 3 or parts[2] not in ('HTTP/1.0', 'HTTP/1.1'):
            return super(Handler, self).parse_request()
        self.requestline = words
        self.command, self.path, self.request_version = parts
        headers = Headers()
        for _ in range(100):
            line = self.rfile.readline(65537)
            if len(line) > 65536:
                self.send_error(431, 'Line too long')
                return False
            if line in (b'\r\n', b'\n', b''):
                break
            name, sep, value = line.decode('iso-8859-1').partition(':')
            if not sep or not name or name != name.strip():
                self.send_error(400, 'Bad header line')
                return False
            headers[name] = value.strip()
        else:
            self.send_error(431, 'Too many headers')
            return False
        self.headers = headers
        connection = headers.get('Connection', '').lower()
        if self.request_version == 'HTTP/1.1':
            self.close_connection = connection == 'close'
        else:
            self.close_connection = connection != 'keep-alive'
        if headers.get('Expect', '').lower() == '100-continue' and \
                self.request_version == 'HTTP/1.1':
            return self.handle_expect_100()
        return True

    def handle_one_request(self):
        self.basic_session = None
        # what this request does dies with the xapi serving it now
        self.pool.db.enter_epoch()
        try:
            super(Handler, self).handle_one_request()
        except (ConnectionError, socket.timeout, Killed):
            # the client went away, or xapi restarted under the request:
            # nothing to answer, nothing to report
            self.close_connection = True
        finally:
            # xapi logs out the session it opened for HTTP Basic auth
            if self.basic_session is not None:
                with self.pool.db.lock:
                    if self.pool.db.exists('session', self.basic_session):
                        try:
                            self.pool.db.destroy('session',
                                                 self.basic_session)
                        except Killed:
                            pass

    def setup(self):
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(30)
            self.request.do_handshake()
            self.request.settimeout(None)
        super(Handler, self).setup()
        if not self.server.is_unix:
            # headers and body leave in separate writes: without this,
            # Nagle and the client's delayed ACK cost 40 ms per response
            self.connection.setsockopt(socket.IPPROTO_TCP,
                                       socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self):
        try:
            super(Handler, self).finish()
        finally:
            with self.server.connections_lock:
                self.server.connections.discard(self.connection)

    def address_string(self):
        return 'unix' if self.server.is_unix else self.client_address[0]

    def log_message(self, fmt, *args):
        if self.server.host.pool.options.verbose:
            sys.stderr.write('%s %s\n' % (self.server.host.address,
                                          fmt % args))

    @property
    def host(self):
        return self.server.host

    @property
    def pool(self):
        return self.server.host.pool

    def send_body(self, status, body, content_type='text/html',
                  close=False, headers=()):
        self.send_response(status)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(body)))
        self.send_header('Cache-Control', 'no-cache, no-store')
        for k, v in headers:
            self.send_header(k, v)
        if close:
            self.send_header('Connection', 'close')
            self.close_connection = True
        # headers and body in one write: one packet for a small answer
        self._headers_buffer.append(b'\r\n' + body)
        self.flush_headers()

    def send_error_page(self, status, text, headers=()):
        body = ('<html><body><h1>HTTP %d %s</h1>%s</body></html>'
                % (status, self.responses.get(status, ('',))[0],
                   text)).encode()
        self.send_body(status, body, close=True, headers=headers)

    def read_body(self, limit):
        """The request body; None without Content-Length.

        ValueError for a bad or too large Content-Length, EOFError when
        the client goes away before sending it all.
        """
        length = self.headers.get('Content-Length')
        if length is None:
            return None
        try:
            length = int(length.strip())
        except ValueError:
            length = -1
        if length < 0:
            raise ValueError('The HTTP headers could not be parsed')
        if length > limit:
            raise ValueError('Client_requested_size_over_limit')
        body = self.rfile.read(length)
        if len(body) < length:
            raise EOFError('the client sent %d of %d bytes'
                           % (len(body), length))
        return body

    # -- authentication for HTTP handlers ------------------------------

    def authenticate(self, req):
        """The session for a handler request, or None after a 401."""
        db = self.pool.db
        session = req.param('session_id')
        if session is not None:
            if db.exists('session', session):
                return session
        elif self.headers.get('Authorization', '').startswith('Basic '):
            try:
                raw = base64.b64decode(self.headers['Authorization'][6:])
                user, _, pwd = raw.decode().partition(':')
            except Exception:
                user, pwd = '', None
            opts = self.pool.options
            if user == opts.username and pwd == opts.password:
                from xapisim.api.session import open_session
                from xapisim.rpc import Context
                self.basic_session = open_session(
                    Context(self.pool, self.host, ''), user)
                return self.basic_session
        elif req.local:
            return ''
        task = req.param('task_id')
        if task and db.exists('task', task):
            self.pool.tasks.fail(task, ['SESSION_AUTHENTICATION_FAILED'])
        self.send_error_page(401, 'Unauthorised',
                             headers=[('WWW-Authenticate',
                                       'Basic realm="xapi"')])
        return None

    # -- verbs -----------------------------------------------------------

    def do_POST(self):
        req = Request(self)
        if req.path.startswith('/_xapisim/'):
            from xapisim import control
            return control.serve(self, req)
        if req.path.startswith('/jsonrpc'):
            return self.send_error_page(501, 'JSON-RPC is not simulated')
        return self.serve_xmlrpc()

    def do_PUT(self):
        req = Request(self)
        if req.path == '/import_raw_vdi':
            from xapisim import transfer
            return transfer.import_raw_vdi(self, req)
        return self.send_error_page(403, 'forbidden')

    def do_GET(self):
        req = Request(self)
        route = {'/export_raw_vdi': ('transfer', 'export_raw_vdi'),
                 '/rrd_updates': ('rrd', 'rrd_updates'),
                 '/vm_rrd': ('rrd', 'vm_rrd'),
                 '/host_rrd': ('rrd', 'host_rrd')}.get(req.path)
        if route:
            module = __import__('xapisim.' + route[0], fromlist=[route[1]])
            return getattr(module, route[1])(self, req)
        if req.path.startswith('/_xapisim/'):
            from xapisim import control
            return control.serve(self, req)
        return self.send_error_page(
            404, 'The requested URL %s was not found on this server.'
            % req.path.replace('<', '&lt;'))

    def do_CONNECT(self):
        req = Request(self)
        if req.path == '/console':
            from xapisim import console
            return console.connect(self, req)
        return self.send_error_page(403, 'forbidden')

    def serve_xmlrpc(self):
        try:
            body = self.read_body(wire.MAX_RPC_BODY)
        except ValueError as exc:
            return self.send_error_page(500, str(exc))
        except EOFError:
            # xapi writes nothing when the client hangs up mid-request
            self.close_connection = True
            return
        if body is None:
            return self.send_error_page(
                500, 'We require a content-length: HTTP header')
        try:
            method, params = wire.decode_call(body)
        except wire.MalformedCall as exc:
            return self.send_error_page(500, 'Internal Error: %s'
                                        % str(exc).replace('<', '&lt;'))
        try:
            value = self.pool.api.handle_xmlrpc(self.host, method, params,
                                                local=self.server.is_unix)
            payload = wire.success(value)
        except XapiError as exc:
            payload = wire.failure(exc.description)
        except Killed:
            # a xapi restart killed the call: its connection is gone
            self.close_connection = True
            return
        except Exception as exc:  # a simulator bug: say so, keep serving
            traceback.print_exc()
            payload = wire.failure(['INTERNAL_ERROR', repr(exc)])
        self.send_body(200, payload, content_type='text/xml',
                       headers=[('Access-Control-Allow-Origin', '*')])


def serve_host(host, port, tls=None):
    """Start the TCP and Unix-socket servers of one host (in threads)."""
    tcp = TCPServer((host.address, port), Handler)
    tcp.setup_host(host, is_unix=False)
    tcp.tls = tls
    _run(tcp)
    host.port = tcp.server_address[1]
    host.server = tcp
    if os.path.exists(host.socket_path):
        os.unlink(host.socket_path)
    unix = UnixServer(host.socket_path, Handler)
    unix.setup_host(host, is_unix=True)
    _run(unix)
    host.unix_server = unix
    return host.port


def _run(server):
    threading.Thread(target=server.serve_forever, daemon=True,
                     kwargs={'poll_interval': 0.2}).start()


def shutdown_host(host):
    for server in (host.server, host.unix_server):
        if server is not None:
            server.shutdown()
            server.drop_connections()
            server.server_close()
    host.server = host.unix_server = None
