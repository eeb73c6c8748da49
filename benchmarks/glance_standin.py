"""A Glance stand-in for the benchmarks: ``GET /v2/images/<id>`` (the
record) and ``/v2/images/<id>/file`` (the bytes, sent with ``sendfile``),
served from its own process, for the user's token ``TOKEN`` only."""

import http.server
import json
import multiprocessing
import os
import re
import socketserver

TOKEN = 'bench-token-0123456789'


class _GlanceHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *args):
        pass

    def do_GET(self):
        match = re.match(r'^/v2/images/([0-9a-f-]{36})(/file)?$', self.path)
        images = self.server.images
        if self.headers.get('X-Auth-Token') != TOKEN or not match or \
                match.group(1) not in images:
            self.send_response(404)
            self.send_header('Content-Length', '0')
            self.end_headers()
            return
        record = images[match.group(1)]
        if not match.group(2):
            body = json.dumps(dict(record, path=None)).encode()
            self.send_response(200)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header('Content-Type', 'application/octet-stream')
        self.send_header('Content-Length', str(record['size']))
        self.send_header('Connection', 'close')
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        with open(record['path'], 'rb') as src:
            try:
                self.connection.sendfile(src)
            except OSError:
                pass


class _GlanceServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def _serve_glance(images, ready, nice):
    os.nice(nice)
    server = _GlanceServer(('127.0.0.1', 0), _GlanceHandler)
    server.images = images
    ready.put(server.server_address[1])
    server.serve_forever()


def start_glance(images, nice):
    ready = multiprocessing.Queue()
    proc = multiprocessing.Process(target=_serve_glance,
                                   args=(images, ready, nice), daemon=True)
    proc.start()
    return proc, 'http://127.0.0.1:%d' % ready.get(timeout=30)
