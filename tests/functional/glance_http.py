"""Glance's image API on 127.0.0.1, serving nova's GlanceFixture images.

The dom0 image plugin talks HTTP to Glance (GET/PUT /v2/images/<id>/file,
GET/PATCH /v2/images/<id>); nova's GlanceFixture lives in the test process
only.  This server answers the plugin from the fixture's records and
bytes, so that an image uploaded through Nova's (fixture) API is what the
plugin downloads, and a snapshot the plugin uploads is what Nova then
boots.  It records the tokens it was given.
"""

import hashlib
import http.server
import json
import re
import secrets
import socketserver
import threading

from xapisim import tls

_PATH = re.compile(r'^/v2/images/([0-9a-f-]{36})(/file)?$')


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class GlanceHTTP(object):
    """``tls_dir``: serve HTTPS with a certificate signed by a CA made
    there (its certificate: ``ca_file``)."""

    def __init__(self, fixture, tls_dir=None):
        self.fixture = fixture
        self.token = 'keystone-token-' + secrets.token_hex(8)
        self.tokens = []
        self.requests = []
        self.held = {}          # image id -> Held
        self.ca_file = None
        self.server = _Server(('127.0.0.1', 0), _Handler)
        if tls_dir is not None:
            self.ca_file, cert, key = tls.make_certificates(tls_dir,
                                                            ['127.0.0.1'])
            self.server.socket = tls.server_context(cert, key).wrap_socket(
                self.server.socket, server_side=True)
        self.server.glance = self
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    @property
    def url(self):
        return '%s://127.0.0.1:%d' % ('https' if self.ca_file else 'http',
                                      self.server.server_address[1])

    def stop(self):
        for held in list(self.held.values()):
            held.release()
        self.server.shutdown()
        self.server.server_close()

    def hold(self, image_id):
        """The next downloads of ``image_id`` wait for Held.release(): an
        import that cannot end until the test says so."""
        held = self.held[image_id] = Held()
        return held

    def record(self, image_id):
        image = self.fixture.images.get(image_id)
        if image is None:
            return None
        data = self.fixture._imagedata.get(image_id)
        record = {k: v for k, v in image.items()
                  if k not in ('created_at', 'updated_at', 'deleted_at',
                               'properties')}
        record.update(image.get('properties', {}))
        record['status'] = 'active' if data is not None else 'queued'
        if data is not None:
            record.update(size=len(data),
                          checksum=hashlib.md5(data).hexdigest(),
                          os_hash_algo='sha512',
                          os_hash_value=hashlib.sha512(data).hexdigest())
        return record


class Held(object):
    """Downloads of an image, held: ``requested`` is set once one has
    begun; they go on once released (or after ``limit`` seconds, a safety
    net for a test that fails before it releases them)."""

    def __init__(self, limit=300):
        self.requested = threading.Event()
        self._released = threading.Event()
        self.limit = limit

    def wait(self):
        self.requested.set()
        self._released.wait(self.limit)

    def release(self):
        self._released.set()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *args):
        pass

    @property
    def glance(self):
        return self.server.glance

    def _route(self):
        token = self.headers.get('X-Auth-Token')
        self.glance.tokens.append(token)
        self.glance.requests.append((self.command, self.path))
        if token != self.glance.token:
            self._answer(401)
            return None, None
        match = _PATH.match(self.path)
        if not match:
            self._answer(404)
            return None, None
        return match.group(1), bool(match.group(2))

    def _answer(self, status, body=b'', ctype='application/json'):
        self.send_response(status)
        self.send_header('Content-Type', ctype)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        image_id, is_file = self._route()
        if image_id is None:
            return
        record = self.glance.record(image_id)
        if record is None:
            return self._answer(404)
        if not is_file:
            return self._answer(200, json.dumps(record).encode())
        data = self.glance.fixture._imagedata.get(image_id)
        if data is None:
            return self._answer(204)
        held = self.glance.held.get(image_id)
        if held is not None:
            held.wait()
        self._answer(200, data, ctype='application/octet-stream')

    def do_PATCH(self):
        image_id, _ = self._route()
        if image_id is None:
            return
        length = int(self.headers.get('Content-Length', 0))
        ops = json.loads(self.rfile.read(length).decode() or '[]')
        image = self.glance.fixture.images[image_id]
        for op in ops:
            image.setdefault('properties', {})[op['path'].lstrip('/')] = \
                op.get('value')
        self._answer(200, json.dumps(self.glance.record(image_id)).encode())

    def do_PUT(self):
        image_id, is_file = self._route()
        if image_id is None or not is_file:
            return self._answer(405)
        if self.headers.get('Transfer-Encoding', '').lower() == 'chunked':
            parts = []
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if not size:
                    self.rfile.readline()
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            data = b''.join(parts)
        else:
            data = self.rfile.read(int(self.headers.get('Content-Length', 0)))
        self.glance.fixture._imagedata[image_id] = data
        # what Glance records once it has the bytes
        self.glance.fixture.images[image_id].update(
            size=len(data), status='active',
            checksum=hashlib.md5(data).hexdigest(), os_hash_algo='sha512',
            os_hash_value=hashlib.sha512(data).hexdigest())
        self._answer(204)
