"""Glance image bytes as a pull stream for ``vdi_remote_stream``.

Two sources, one interface (``read``, ``peek``, ``close``):

* ``GlanceReader`` (the default): nova-compute's own reader of
  ``GET /v2/images/<id>/file``.  It receives in one thread and hashes in
  another (sha512 from OpenSSL lets go of the GIL), while the caller sends
  to xapi in a third, so the one hash of the image, which cannot be split,
  has a core to itself.  Nova's Glance client reads, parses and hashes in
  a single thread, which bounds it at about two thirds of one core's
  sha512 (README, Benchmarks).  Authentication, TLS and retries are
  Nova's: the same keystoneauth session and headers (the user's token,
  the service token where ``[service_user]`` sends one), ``[glance]``
  cafile/certfile/keyfile/insecure and ``num_retries``.
* ``ImageStream``: Nova's own ``download``, used where Nova verifies
  image signatures (``[glance]verify_glance_signatures``): that check is
  Nova's and stays there.

Either way the bytes are checked against Glance's record as they pass
(the multihash, else the md5 checksum): a mismatch is raised where the
stream would end, so the caller never hands xapi the last bytes of a
corrupted image and its import fails short.  At most DEPTH chunks wait
between the threads, whatever the image size; GlanceReader receives into
the same few buffers over and over (a fresh buffer for every chunk costs
its page faults and zeroing again).
"""

import collections
import hashlib
import http.client
import queue
import socket
import ssl
import threading
import time
import urllib.parse

from nova import exception
from nova.image import glance
from nova import service_auth
from oslo_log import log as logging

from nova_xen.conf import CONF

LOG = logging.getLogger(__name__)

CHUNK = 1024 * 1024
DEPTH = 8
# the chunks before the current one that a reader's caller may still hold
# (RemoteStreamHandler holds back one, sent once the next is read)
HELD = 1
NETWORK_TIMEOUT = 60      # per receive, unless [glance]timeout says
_END = object()


class _Chunks(object):
    """A pull stream over chunks a producer queues (bytes-like; None ends
    the stream, after which ``self._error``, if set, is raised)."""

    def __init__(self):
        self._queue = queue.Queue(maxsize=DEPTH)
        self._chunk = memoryview(b'')
        self._pos = 0
        self._error = None
        self._done = False
        self._closed = False
        self._read_chunks = collections.deque()

    def _retire(self, chunk):
        """The caller has moved HELD chunks past ``chunk``."""

    def _advance(self, chunk):
        """Make ``chunk`` current; the one before it is read through."""
        self._read_chunks.append(self._chunk)
        if len(self._read_chunks) > HELD:
            self._retire(self._read_chunks.popleft())
        self._chunk, self._pos = memoryview(chunk), 0

    def _next(self):
        """Make the next chunk current; False at the (verified) end."""
        while self._pos >= len(self._chunk):
            if self._done:
                if self._error is not None:
                    raise self._error
                return False
            chunk = self._queue.get()
            if chunk is None:
                self._done = True
            else:
                self._advance(chunk)
        return True

    def read(self, n=CHUNK):
        """Up to ``n`` bytes (fewer when a chunk ends); empty at the end.

        No copy: a view of the chunk as it was received, valid until the
        reads have moved HELD chunks past the one it came from (then its
        buffer may receive later bytes)."""
        if not self._next():
            return b''
        data = self._chunk[self._pos:self._pos + n]
        self._pos += len(data)
        return data

    def peek(self, n):
        """The next ``n`` bytes (fewer only at the end), left unread."""
        while self._next():
            if len(self._chunk) - self._pos >= n or self._done:
                break
            chunk = self._queue.get()
            if chunk is None:
                self._done = True
            else:
                self._chunk = memoryview(
                    bytes(self._chunk[self._pos:]) + bytes(chunk))
                self._pos = 0
        return bytes(self._chunk[self._pos:self._pos + n])

    def _drain(self):
        while not self._done:
            if self._queue.get() is None:
                self._done = True


class ImageStream(_Chunks):
    """Nova's own download in a thread (its client checks the checksum,
    and the signature where Nova is configured to)."""

    def __init__(self, context, image_id):
        super(ImageStream, self).__init__()
        self._thread = threading.Thread(
            target=self._download, args=(context, image_id),
            name='image-download-%s' % image_id, daemon=True)
        self._thread.start()

    def _download(self, context, image_id):
        try:
            glance.API().download(context, image_id, data=self)
        except Exception as exc:   # reported to the reader
            self._error = exc
        finally:
            self._queue.put(None)

    def write(self, data):          # called by the Glance client
        if self._closed:
            raise IOError('the image is no longer wanted')
        if not isinstance(data, bytes):
            data = bytes(data)      # the caller may reuse its buffer
        if len(data) <= 4 * CHUNK:
            self._queue.put(data)
            return
        for start in range(0, len(data), CHUNK):
            if self._closed:
                raise IOError('the image is no longer wanted')
            self._queue.put(data[start:start + CHUNK])

    def close(self):
        """Stop the download (if still running) and wait for its thread."""
        self._closed = True
        self._drain()
        self._thread.join()


def _tls_context(session):
    """An SSL context as Nova's keystoneauth session for Glance verifies
    and presents certificates ([glance] cafile, insecure, certfile,
    keyfile)."""
    if session.verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif isinstance(session.verify, str):
        context = ssl.create_default_context(cafile=session.verify)
    else:
        context = ssl.create_default_context()
    if session.cert:
        if isinstance(session.cert, (tuple, list)):
            context.load_cert_chain(*session.cert)
        else:
            context.load_cert_chain(session.cert)
    return context


def expected_digest(record, image_id):
    """(hash object, expected hex digest) from Glance's record: the
    multihash, else the md5 checksum; refused when it has neither."""
    algo, value = record.get('os_hash_algo'), record.get('os_hash_value')
    if algo and value:
        try:
            return hashlib.new(algo), value
        except ValueError:
            raise exception.ImageUnacceptable(
                image_id=image_id, reason='Glance hashed it with %s, which '
                'this Python cannot compute' % algo)
    if record.get('checksum'):
        return hashlib.md5(usedforsecurity=False), record['checksum']
    raise exception.ImageUnacceptable(
        image_id=image_id, reason='Glance holds no checksum for it: its '
        'bytes could not be verified')


class _Transient(Exception):
    """A failure another endpoint, or a later round, may not have."""


class GlanceReader(_Chunks):
    """nova-compute's own reader of an image's bytes (see the module)."""

    def __init__(self, context, image_id, record, endpoints):
        super(GlanceReader, self).__init__()
        self._image_id = image_id
        self._digest, self._expected = expected_digest(record, image_id)
        self._size = record.get('size')
        self._context = context
        self._endpoints = endpoints
        self._conn = None
        self._hashing = queue.Queue(maxsize=DEPTH)
        self._free = queue.SimpleQueue()     # buffers read through
        self._threads = [
            threading.Thread(target=self._receive, daemon=True,
                             name='image-receive-%s' % image_id),
            threading.Thread(target=self._hash, daemon=True,
                             name='image-hash-%s' % image_id)]
        for thread in self._threads:
            thread.start()

    # -- the receiving thread ------------------------------------------

    def _headers(self):
        session = service_auth.get_service_auth_session('glance')
        auth = service_auth.get_service_user_token_auth_plugin(self._context)
        headers = dict(session.get_auth_headers(auth=auth) or {})
        headers['X-OpenStack-Request-ID'] = self._context.global_id
        headers['User-Agent'] = 'nova-xen'
        return session, headers

    def _open(self, endpoint, session, headers):
        parts = urllib.parse.urlsplit(endpoint)
        timeout = session.timeout or NETWORK_TIMEOUT
        if parts.scheme == 'https':
            conn = http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=timeout,
                context=_tls_context(session))
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port,
                                              timeout=timeout)
        self._conn = conn
        try:
            conn.request('GET', '%s/v2/images/%s/file'
                         % (parts.path.rstrip('/'), self._image_id),
                         headers=headers)
            response = conn.getresponse()
        except ssl.SSLError as exc:
            # a certificate problem is the same on the next try
            raise exception.GlanceConnectionFailed(
                server=parts.netloc, reason=str(exc))
        except (OSError, http.client.HTTPException) as exc:
            raise _Transient('%s: %s' % (parts.netloc, exc))
        status = response.status
        if status == 200:
            return response
        response.read()
        if status == 204:
            raise exception.ImageUnacceptable(
                image_id=self._image_id, reason='Glance holds no data '
                'for it')
        if status in (401, 403):
            raise exception.ImageNotAuthorized(image_id=self._image_id)
        if status == 404:
            raise exception.ImageNotFound(image_id=self._image_id)
        if status >= 500 or status == 429:
            raise _Transient('%s answered HTTP %d' % (parts.netloc, status))
        raise exception.GlanceConnectionFailed(
            server=parts.netloc, reason='HTTP %d %s' % (status,
                                                        response.reason))

    def _response(self):
        """The image's response from the first endpoint that gives it,
        in up to 1 + [glance]num_retries rounds, as Nova's client tries."""
        session, headers = self._headers()
        last = None
        for attempt in range(CONF.glance.num_retries + 1):
            if attempt:
                time.sleep(1)      # Nova's client waits as long
            for endpoint in self._endpoints:
                if self._closed:
                    raise IOError('the image is no longer wanted')
                try:
                    return self._open(endpoint, session, headers)
                except _Transient as exc:
                    LOG.warning('Image %s from Glance: %s',
                                self._image_id, exc)
                    last = exc
                    self._conn.close()
        raise exception.GlanceConnectionFailed(server='(all endpoints)',
                                               reason=str(last))

    def _receive(self):
        try:
            response = self._response()
            got = 0
            while True:
                buf = self._buffer()
                view, filled = memoryview(buf), 0
                while filled < CHUNK:
                    n = response.readinto(view[filled:])
                    if not n:
                        break
                    filled += n
                if not filled:
                    break
                got += filled
                self._hashing.put(view[:filled] if filled < CHUNK else buf)
                if filled < CHUNK or self._closed:
                    break
            if self._size and got != int(self._size) and not self._closed:
                raise exception.ImageUnacceptable(
                    image_id=self._image_id, reason='Glance sent %d bytes of '
                    'its %s' % (got, self._size))
            self._hashing.put(_END)
        except Exception as exc:
            self._hashing.put(exc)
        finally:
            if self._conn is not None:
                self._conn.close()

    def _buffer(self):
        try:
            return self._free.get_nowait()
        except queue.Empty:
            return bytearray(CHUNK)

    def _retire(self, chunk):
        buf = chunk.obj
        if isinstance(buf, bytearray) and len(buf) == CHUNK:
            self._free.put(buf)

    # -- the hashing thread --------------------------------------------

    def _hash(self):
        try:
            while True:
                item = self._hashing.get()
                if item is _END:
                    break
                if isinstance(item, Exception):
                    raise item
                if not self._closed:
                    self._digest.update(item)
                    self._queue.put(item)
            if self._digest.hexdigest() != self._expected:
                raise exception.ImageUnacceptable(
                    image_id=self._image_id, reason='its bytes do not match '
                    'the %s Glance recorded for it' % self._digest.name)
        except Exception as exc:   # reported to the reader
            self._error = exc
        finally:
            self._queue.put(None)

    def close(self):
        """Stop receiving (if still running) and wait for both threads:
        once closed, the hasher passes nothing on, so the receiver's
        queue drains into it, and the receiver, woken from a receive in
        progress, ends."""
        self._closed = True
        conn = self._conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._drain()
        for thread in self._threads:
            thread.join()
