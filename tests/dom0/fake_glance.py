"""A small Glance v2 image service on 127.0.0.1, for the image plugin tests.

It serves what the plugin uses: GET/PUT /v2/images/<id>/file and GET/PATCH
/v2/images/<id>, with X-Auth-Token checked on every request.  Tests queue
misbehaviour for the next downloads or uploads (``on_download``,
``on_upload``), each a dict:

  {'status': 503}            answer with this status (and 'reason')
  {'close': True}            close the connection without answering
  {'drop_after': n}          full Content-Length, then only n bytes
  {'data': b'...'}           serve these bytes instead of the image's
  {'chunked': True}          no Content-Length: chunked encoding
  {'content_length': 'n'}    announce this Content-Length
  {'checksum': 'x'}          (upload) record this checksum instead
"""

import hashlib
import http.server
import json
import re
import secrets
import socketserver
import threading

_FILE = re.compile(r'^(?:/image)?/v2/images/([0-9a-f-]{36})(/file)?$')
PIECE = 1024 * 1024


class Image(object):
    def __init__(self, data=b'', generate=None, size=None, status='active',
                 **properties):
        self.data = data
        self.generate = generate or (lambda: iter([self.data]))
        self.size = len(data) if size is None else size
        self.status = status
        self.properties = properties
        self.hashes = {}

    def record(self, image_id):
        record = dict(self.properties, id=image_id, status=self.status,
                      size=self.size if self.status == 'active' else None)
        record.update(self.hashes)
        return record


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass    # clients hanging up mid-transfer are part of the tests


class FakeGlance(object):
    def __init__(self, tls_context=None):
        self.token = 'glance-token-' + secrets.token_hex(16)
        self.lock = threading.Lock()
        self.images = {}
        self.download_plans = []
        self.upload_plans = []
        self.requests = []
        self.server = _Server(('127.0.0.1', 0), _Handler)
        self.server.glance = self
        if tls_context is not None:
            self.server.socket = tls_context.wrap_socket(self.server.socket,
                                                         server_side=True)
        self.scheme = 'https' if tls_context else 'http'
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    @property
    def url(self):
        return '%s://127.0.0.1:%d' % (self.scheme, self.server.server_port)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def reset(self):
        with self.lock:
            self.images.clear()
            del self.download_plans[:]
            del self.upload_plans[:]
            del self.requests[:]

    def add(self, image_id, data=b'', **kwargs):
        self.images[image_id] = Image(data, **kwargs)
        return self.images[image_id]

    def on_download(self, *plans):
        self.download_plans.extend(plans)

    def on_upload(self, *plans):
        self.upload_plans.extend(plans)

    def count(self, method, suffix=''):
        return sum(1 for m, p, _ in self.requests
                   if m == method and p.endswith(suffix))

    def _next(self, plans):
        with self.lock:
            return plans.pop(0) if plans else {}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *args):
        pass

    @property
    def glance(self):
        return self.server.glance

    def _route(self, method):
        glance = self.glance
        token = self.headers.get('X-Auth-Token')
        with glance.lock:
            glance.requests.append((method, self.path, token))
        match = _FILE.match(self.path)
        if token != glance.token:
            return self._answer(401, b'401 Unauthorized')
        image = glance.images.get(match.group(1)) if match else None
        if image is None:
            return self._answer(404, b'no such image')
        return match.group(1), image, bool(match.group(2))

    def _answer(self, status, body=b'', reason=None, ctype='text/plain'):
        self.send_response(status, reason)
        self.send_header('Content-Type', ctype)
        self.send_header('Content-Length', str(len(body)))
        self.send_header('Connection', 'close')
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _json(self, image_id, image):
        self._answer(200, json.dumps(image.record(image_id)).encode(),
                     ctype='application/json')

    def do_GET(self):
        route = self._route('GET')
        if route is None:
            return
        image_id, image, is_file = route
        if not is_file:
            return self._json(image_id, image)
        plan = self.glance._next(self.glance.download_plans)
        if plan.get('close'):
            self.close_connection = True
            return
        if 'status' in plan:
            return self._answer(plan['status'], b'sorry', plan.get('reason'))
        pieces = iter([plan['data']]) if 'data' in plan else image.generate()
        size = len(plan['data']) if 'data' in plan else image.size
        self.send_response(200)
        self.send_header('Content-Type', 'application/octet-stream')
        if plan.get('chunked'):
            self.send_header('Transfer-Encoding', 'chunked')
        else:
            self.send_header('Content-Length',
                             plan.get('content_length', str(size)))
        self.send_header('Connection', 'close')
        self.end_headers()
        self.close_connection = True
        left = plan.get('drop_after')
        for piece in pieces:
            for at in range(0, len(piece), PIECE):
                part = piece[at:at + PIECE]
                if left is not None:
                    part = part[:left]
                    left -= len(part)
                if plan.get('chunked') and part:
                    part = b'%x\r\n%s\r\n' % (len(part), part)
                try:
                    self.wfile.write(part)
                except OSError:
                    return
                if left == 0:
                    return
        if plan.get('chunked'):
            self.wfile.write(b'0\r\n\r\n')

    def _body(self):
        if self.headers.get('Transfer-Encoding', '').lower() == 'chunked':
            parts = []
            while True:
                size = int(self.rfile.readline().split(b';')[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b''.join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get('Content-Length', 0)))

    def do_PUT(self):
        route = self._route('PUT')
        if route is None:
            return
        image_id, image, is_file = route
        if not is_file:
            return self._answer(405)
        plan = self.glance._next(self.glance.upload_plans)
        if plan.get('close'):
            self.close_connection = True
            return
        if image.status != 'queued':
            return self._answer(409, b'image is not queued')
        try:
            data = self._body()
        except (ValueError, OSError):
            return self._answer(400, b'bad body')
        if 'status' in plan:
            return self._answer(plan['status'], b'sorry', plan.get('reason'))
        image.data = data
        image.size = len(data)
        image.status = 'active'
        image.hashes = {
            'checksum': plan.get('checksum', hashlib.md5(data).hexdigest()),
            'os_hash_algo': 'sha512',
            'os_hash_value': hashlib.sha512(data).hexdigest()}
        self._answer(204)

    def do_PATCH(self):
        route = self._route('PATCH')
        if route is None:
            return
        image_id, image, is_file = route
        ctype = self.headers.get('Content-Type')
        if is_file or ctype != 'application/openstack-images-v2.1-json-patch':
            return self._answer(415, b'unsupported media type')
        for change in json.loads(self._body().decode()):
            key = change['path'].lstrip('/')
            if change['op'] in ('add', 'replace'):
                image.properties[key] = change['value']
            elif change['op'] == 'remove':
                image.properties.pop(key, None)
        self._json(image_id, image)
