"""Glance v2 over HTTP(S) for nova-xen's image plugin.

Runs in dom0 on Python 3.6 with the standard library only.  A ``Glance``
talks about one image: every request carries the token as X-Auth-Token
(and nowhere else), HTTPS is verified unless told otherwise, endpoints are
tried in order and transient failures retried a bounded number of rounds.
Failures are ``lib.fail`` codes (see nova_xen_images.py); the transient
ones travel as ``Retry`` until the retries are spent.
"""

import hashlib
import http.client
import json
import os
import ssl
import time
import urllib.parse

import nova_xen_dom0lib as lib

IO = 1 << 20
CHUNK = 4 << 20         # the unit in which pass 2 is checked against pass 1
AGENT = 'nova-xen-dom0/1.0'
STATUS_CODES = {204: 'NOVA_XEN_IMAGE_NO_DATA',
                401: 'NOVA_XEN_GLANCE_UNAUTHORIZED',
                403: 'NOVA_XEN_GLANCE_FORBIDDEN',
                404: 'NOVA_XEN_IMAGE_NOT_FOUND'}


class Retry(Exception):
    """A transient failure: try the next endpoint, then again later."""

    def __init__(self, code, *params):
        Exception.__init__(self, code)
        self.code = code
        self.params = params


def endpoint(value, name):
    """A validated Glance base URL (no credentials, query or fragment)."""
    value = lib.arg({name: value}, name, 'url')
    parts = urllib.parse.urlsplit(value)
    try:
        parts.port
    except ValueError:
        raise lib.InvalidArgument(name, 'has a bad port')
    if not parts.hostname or '@' in parts.netloc or parts.query or \
            parts.fragment:
        raise lib.InvalidArgument(name, 'must be a base URL without '
                                  'credentials, query or fragment')
    return value.rstrip('/')


def tls_context(verify, ca_bundle):
    """ca_bundle: None (the system's CAs), PEM text or an absolute path."""
    if not verify:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if ca_bundle is None:
        return ssl.create_default_context()
    if ca_bundle.lstrip().startswith('-----BEGIN'):
        kwargs = {'cadata': ca_bundle}
    elif ca_bundle.startswith('/'):
        kwargs = {'cafile': lib.dom0_path(ca_bundle)}
        if not os.path.isfile(kwargs['cafile']):
            raise lib.InvalidArgument('ca_bundle', 'no such file')
    else:
        raise lib.InvalidArgument('ca_bundle', 'must be an absolute path '
                                  'or PEM text')
    try:
        return ssl.create_default_context(**kwargs)
    except (ssl.SSLError, ValueError, OSError):
        raise lib.InvalidArgument('ca_bundle', 'is not a PEM CA bundle')


def reason(exc):
    text = str(exc) or exc.__class__.__name__
    return ('%s: %s' % (exc.__class__.__name__, text))[:200]


class Glance(object):
    def __init__(self, image_id, endpoints, token, tls, timeout, retries):
        self.image_id, self.endpoints, self.token = image_id, endpoints, token
        self.tls, self.timeout, self.retries = tls, timeout, retries

    def with_retries(self, attempt):
        """``attempt(endpoint)`` on each endpoint, rounds apart, until one
        does not raise Retry; the last Retry's failure when all do."""
        last = None
        for round_ in range(self.retries + 1):
            if round_:
                time.sleep(min(0.5 * 2 ** (round_ - 1), 8))
            for url in self.endpoints:
                try:
                    return attempt(url)
                except Retry as exc:
                    lib.log('image %s: %s %s', self.image_id, exc.code,
                            ' '.join(str(p) for p in exc.params[1:]))
                    last = exc
        lib.fail(last.code, *last.params)

    def connect(self, url):
        """(connection, path prefix, host) for an endpoint."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == 'https':
            conn = http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=self.timeout,
                context=self.tls)
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port,
                                              timeout=self.timeout)
        return conn, parts.path, parts.hostname

    def headers(self, extra=()):
        headers = {'X-Auth-Token': self.token, 'User-Agent': AGENT,
                   'Accept-Encoding': 'identity', 'Connection': 'close'}
        headers.update(extra)
        return headers

    def transport_error(self, host, exc):
        if isinstance(exc, (ssl.SSLError, ssl.CertificateError)):
            lib.fail('NOVA_XEN_GLANCE_TLS_ERROR', self.image_id, host,
                     reason(exc))
        if isinstance(exc, (OSError, http.client.HTTPException)):
            raise Retry('NOVA_XEN_GLANCE_UNAVAILABLE', self.image_id,
                        '%s: %s' % (host, reason(exc)))
        raise exc

    def check_status(self, resp, ok):
        if resp.status in ok:
            return
        status, text = resp.status, (resp.reason or '')[:100]
        resp.close()
        if status in STATUS_CODES:
            lib.fail(STATUS_CODES[status], self.image_id)
        if status == 409:
            lib.fail('NOVA_XEN_IMAGE_NOT_QUEUED', self.image_id, 'conflict')
        if status >= 500 or status in (408, 429):
            raise Retry('NOVA_XEN_GLANCE_UNAVAILABLE', self.image_id,
                        'HTTP %d %s' % (status, text))
        lib.fail('NOVA_XEN_GLANCE_ERROR', self.image_id, status, text)

    def request(self, url, method, path, body=None, extra=(), ok=(200,)):
        """A response with a status in ``ok``, from the image's ``path``."""
        conn, prefix, host = self.connect(url)
        try:
            conn.request(method, '%s/v2/images/%s%s' % (
                prefix, self.image_id, path), body=body,
                headers=self.headers(extra))
            resp = conn.getresponse()
        except Exception as exc:
            conn.close()
            self.transport_error(host, exc)
        self.check_status(resp, ok)
        return resp

    def record(self, url, method='GET', body=None, extra=()):
        """The image's record (GET, or PATCH with a JSON patch)."""
        resp = self.request(url, method, '', body, extra)
        try:
            data = resp.read(IO + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise Retry('NOVA_XEN_GLANCE_UNAVAILABLE', self.image_id,
                        reason(exc))
        finally:
            resp.close()
        try:
            if len(data) > IO:
                raise ValueError('too large')
            found = json.loads(data.decode('utf-8'))
            if not isinstance(found, dict):
                raise ValueError('not an object')
            return found
        except ValueError as exc:
            lib.fail('NOVA_XEN_GLANCE_ERROR', self.image_id, resp.status,
                     'bad image record: %s' % exc)


class Body(object):
    """The bytes of one image download, released a CHUNK at a time.

    Pass 1 (``check`` false) hashes them with ``algorithm`` and records
    each chunk's digest in ``digests``; pass 2 releases no byte of a chunk
    whose digest differs.  Fewer bytes than ``size`` raise Retry (the
    download was cut); more fail at once.
    """

    def __init__(self, image_id, resp, size, algorithm, digests, check):
        self.image_id, self.resp, self.size = image_id, resp, size
        self.digests, self.check = digests, check
        self.hash = hashlib.new(algorithm)
        self.count = self.chunks = self.pos = 0
        self.buf = b''
        self.eof = False
        length = resp.getheader('Content-Length')
        if length is not None and length.strip() != str(size):
            lib.fail('NOVA_XEN_IMAGE_SIZE_MISMATCH', image_id, size,
                     length.strip()[:20])
        if resp.getheader('Content-Encoding', 'identity') != 'identity':
            lib.fail('NOVA_XEN_GLANCE_ERROR', image_id, resp.status,
                     'unexpected content encoding')

    def _fill(self):
        parts, got = [], 0
        while got < CHUNK:
            try:
                piece = self.resp.read(min(IO, CHUNK - got))
            except (OSError, http.client.HTTPException) as exc:
                raise Retry('NOVA_XEN_GLANCE_UNAVAILABLE', self.image_id,
                            reason(exc))
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
            if self.count + got > self.size:
                lib.fail('NOVA_XEN_IMAGE_SIZE_MISMATCH', self.image_id,
                         self.size, 'more')
        self.count += got
        if got < CHUNK:
            self.eof = True
            if self.count < self.size:
                raise Retry('NOVA_XEN_IMAGE_TRUNCATED', self.image_id,
                            self.count, self.size)
        data = b''.join(parts)
        if data:
            digest = hashlib.blake2b(data, digest_size=16).digest()
            at = self.chunks * 16
            if not self.check:
                self.digests += digest
                self.hash.update(data)
            elif self.digests[at:at + 16] != digest:
                lib.fail('NOVA_XEN_IMAGE_CHANGED', self.image_id)
            self.chunks += 1
        self.buf, self.pos = data, 0

    def read(self, n):
        if self.pos >= len(self.buf):
            if self.eof:
                return b''
            self._fill()
        out = self.buf[self.pos:self.pos + n]
        self.pos += len(out)
        return out

    def peek(self, n):
        if self.pos >= len(self.buf) and not self.eof:
            self._fill()
        return self.buf[self.pos:self.pos + n]
