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
import queue
import ssl
import threading
import time
import urllib.parse

import nova_xen_dom0lib as lib

IO = 1 << 20
CHUNK = 2 << 20         # the unit in which a download is read and hashed
DEPTH = 4               # chunks queued between reader, hasher and writer
# hashed in slices: a hash that holds the GIL (Python's own, when
# hashlib has no OpenSSL) lets the I/O threads in between them
HASH_SLICE = 256 << 10
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


class _End(object):
    """The stream's end, every check passed."""


END = _End()


def _failure(code, *params):
    """The exception ``lib.fail`` raises, to raise in another thread."""
    try:
        lib.fail(code, *params)
    except Exception as exc:
        return exc


class Download(object):
    """The bytes of one image download, read once and checked as they pass.

    One thread reads the response into CHUNK buffers, a second hashes them
    with ``algorithm``; the reader (the caller's thread, which writes them
    into the VDI) gets each chunk only once it is hashed.  The checks that
    need the whole image -- the digest against ``expected``, fewer or more
    bytes than ``size`` -- travel after the last chunk: ``read`` raises
    them where it would return b''.  At most 2 * DEPTH + 3 chunks are in
    memory.  Fewer bytes than ``size`` raise Retry (the download was cut);
    more fail.
    """

    def __init__(self, image_id, resp, size, algorithm, expected):
        self.image_id, self.resp, self.size = image_id, resp, size
        self.algorithm, self.expected = algorithm, expected
        length = resp.getheader('Content-Length')
        if length is not None and length.strip() != str(size):
            resp.close()
            lib.fail('NOVA_XEN_IMAGE_SIZE_MISMATCH', image_id, size,
                     length.strip()[:20])
        if resp.getheader('Content-Encoding', 'identity') != 'identity':
            resp.close()
            lib.fail('NOVA_XEN_GLANCE_ERROR', image_id, resp.status,
                     'unexpected content encoding')
        self.buf, self.pos, self.ended = memoryview(b''), 0, None
        self._stop = threading.Event()
        self._fetched = queue.Queue(DEPTH)
        self._hashed = queue.Queue(DEPTH)
        self._threads = [
            threading.Thread(target=self._guard, args=(self._fetch,
                                                       self._fetched)),
            threading.Thread(target=self._guard, args=(self._digest,
                                                       self._hashed))]
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    # -- the threads ------------------------------------------------------

    def _put(self, q, item):
        while not self._stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                pass
        return False

    def _guard(self, work, out):
        try:
            work(out)
        except BaseException as exc:
            self._put(out, exc)

    def _fetch(self, out):
        count = 0
        while not self._stop.is_set():
            chunk = bytearray(CHUNK)
            view, got = memoryview(chunk), 0
            while got < CHUNK:
                try:
                    n = self.resp.readinto(view[got:])
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    raise Retry('NOVA_XEN_GLANCE_UNAVAILABLE', self.image_id,
                                reason(exc))
                if not n:
                    break
                got += n
            count += got
            if count > self.size:
                raise _failure('NOVA_XEN_IMAGE_SIZE_MISMATCH', self.image_id,
                               self.size, 'more')
            if got and not self._put(out, view[:got]):
                return
            if got < CHUNK:
                if count < self.size:
                    raise Retry('NOVA_XEN_IMAGE_TRUNCATED', self.image_id,
                                count, self.size)
                self._put(out, END)
                return

    def _digest(self, out):
        digest = hashlib.new(self.algorithm)
        while not self._stop.is_set():
            try:
                item = self._fetched.get(timeout=0.2)
            except queue.Empty:
                continue
            if isinstance(item, BaseException):
                raise item
            if item is END:
                actual = digest.hexdigest()
                if actual != self.expected:
                    raise _failure('NOVA_XEN_IMAGE_CHECKSUM_MISMATCH',
                                   self.image_id, self.algorithm,
                                   self.expected, actual)
                self._put(out, END)
                return
            for at in range(0, len(item), HASH_SLICE):
                digest.update(item[at:at + HASH_SLICE])
            if not self._put(out, item):
                return

    # -- the reader ---------------------------------------------------------

    def _next(self):
        if self.ended is not None:
            if self.ended is END:
                return False
            raise self.ended
        item = self._hashed.get()
        if isinstance(item, BaseException) or item is END:
            self.ended = item
            return self._next()
        self.buf, self.pos = item, 0
        return True

    def read(self, n):
        """Up to n bytes (a memoryview), b'' once every check passed."""
        if self.pos >= len(self.buf) and not self._next():
            return b''
        out = self.buf[self.pos:self.pos + n]
        self.pos += len(out)
        return out

    def peek(self, n):
        if self.pos >= len(self.buf) and not self._next():
            return b''
        return bytes(self.buf[self.pos:self.pos + n])

    def finish(self):
        """Read to the end: raises what the last checks found."""
        while self.read(CHUNK):
            pass

    def close(self):
        self._stop.set()
        try:
            self.resp.close()
        except Exception:
            pass
        for thread in self._threads:
            thread.join(5)
