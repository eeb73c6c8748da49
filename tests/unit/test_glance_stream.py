"""nova-compute's own Glance reader (vdi_remote_stream) against a Glance
stand-in on 127.0.0.1: the bytes, their check, Glance's refusals, TLS,
and a reader closed in the middle of a download."""

import hashlib
import http.server
import socketserver
import threading

import fixtures
from nova import context as nova_context
from nova import exception
from nova import service_auth
from oslo_config import fixture as config_fixture
import testtools

from nova_xen import conf as xen_conf
from nova_xen import glance_stream
from tests import polling
from xapisim import tls

MIB = 1024 * 1024
TOKEN = 'token-of-the-user-0123'
IMAGE = '6b0f3c1e-2d4a-4c55-9d0e-1f2a3b4c5d6e'


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *args):
        pass

    def do_GET(self):
        glance = self.server.glance
        glance.requests.append((self.path, self.headers.get('X-Auth-Token')))
        status = glance.statuses.pop(0) if glance.statuses else 200
        if status != 200 or self.path != '/v2/images/%s/file' % IMAGE:
            self.send_response(404 if status == 200 else status)
            self.send_header('Content-Length', '0')
            self.end_headers()
            return
        self.send_response(200)
        self.send_header('Content-Length', str(len(glance.data)))
        self.end_headers()
        if glance.stall is None:
            self.wfile.write(glance.data)
            return
        # the first MiB, then nothing until the test lets it go
        self.wfile.write(glance.data[:MIB])
        self.wfile.flush()
        glance.stall.wait(60)


class Glance(object):
    def __init__(self, data, tls_dir=None):
        self.data = data
        self.requests = []
        self.statuses = []
        self.stall = None
        self.ca_file = None
        self.server = _Server(('127.0.0.1', 0), _Handler)
        if tls_dir:
            self.ca_file, cert, key = tls.make_certificates(tls_dir,
                                                            ['127.0.0.1'])
            self.server.socket = tls.server_context(cert, key).wrap_socket(
                self.server.socket, server_side=True)
        self.server.glance = self
        threading.Thread(target=self.server.serve_forever,
                         daemon=True).start()

    @property
    def url(self):
        return '%s://127.0.0.1:%d' % ('https' if self.ca_file else 'http',
                                      self.server.server_address[1])

    def stop(self):
        if self.stall is not None:
            self.stall.set()
        self.server.shutdown()
        self.server.server_close()


def pattern(size, seed=b'glance'):
    out = bytearray()
    block = hashlib.sha512(seed).digest()
    while len(out) < size:
        out += block
        block = hashlib.sha512(block).digest()
    return bytes(out[:size])


class GlanceReaderTest(testtools.TestCase):

    def setUp(self):
        super(GlanceReaderTest, self).setUp()
        self.conf = self.useFixture(config_fixture.Config(xen_conf.CONF))
        # parsed as nova-compute does (the fixture's cleanup unparses)
        xen_conf.CONF([], project='nova', default_config_files=[])
        self.conf.config(num_retries=0, group='glance')
        # nova caches its keystoneauth session per group: each test's TLS
        # options must make their own
        service_auth.reset_globals()
        self.addCleanup(service_auth.reset_globals)
        self.context = nova_context.RequestContext('user', 'project',
                                                   auth_token=TOKEN)
        self.data = pattern(3 * MIB + 5)

    def glance(self, data=None, tls_dir=None):
        glance = Glance(self.data if data is None else data, tls_dir)
        self.addCleanup(glance.stop)
        return glance

    def record(self, **kwargs):
        record = {'size': len(self.data), 'checksum':
                  hashlib.md5(self.data).hexdigest(), 'os_hash_algo': 'sha512',
                  'os_hash_value': hashlib.sha512(self.data).hexdigest()}
        record.update(kwargs)
        return record

    def reader(self, endpoints, record=None):
        reader = glance_stream.GlanceReader(
            self.context, IMAGE, self.record() if record is None else record,
            endpoints)
        self.addCleanup(reader.close)
        return reader

    def read_all(self, reader, n=glance_stream.CHUNK):
        pieces = []
        while True:
            piece = reader.read(n)
            if not piece:
                return b''.join(pieces)
            # a view lasts until the reads move on (buffers are reused)
            pieces.append(bytes(piece))

    def assertThreadsEnded(self, reader):
        for thread in reader._threads:
            thread.join(60)
            self.assertFalse(thread.is_alive(), thread.name)

    def test_the_bytes_arrive_verified_with_the_users_token(self):
        glance = self.glance()
        reader = self.reader([glance.url])
        self.assertEqual(self.data[:512], reader.peek(512))
        self.assertTrue(self.read_all(reader, 700 * 1024) == self.data)
        self.assertEqual([('/v2/images/%s/file' % IMAGE, TOKEN)],
                         glance.requests)
        reader.close()
        self.assertThreadsEnded(reader)

    def test_a_mismatch_is_raised_where_the_stream_would_end(self):
        bad = self.data[:-1] + b'!'
        reader = self.reader([self.glance(bad).url])
        got = []
        error = None
        try:
            while True:
                piece = reader.read()
                if not piece:
                    break
                got.append(bytes(piece))
        except exception.ImageUnacceptable as exc:
            error = exc
        # every byte came, and then the verdict instead of the end
        self.assertEqual(bad, b''.join(got))
        self.assertIn('do not match the sha512 Glance recorded', str(error))

    def test_md5_when_glance_has_no_multihash(self):
        reader = self.reader([self.glance(self.data[:-1] + b'?').url],
                             self.record(os_hash_algo=None,
                                         os_hash_value=None))
        error = self.assertRaises(exception.ImageUnacceptable,
                                  self.read_all, reader)
        self.assertIn('the md5 Glance recorded', str(error))

    def test_no_checksum_is_refused_before_any_request(self):
        glance = self.glance()
        error = self.assertRaises(
            exception.ImageUnacceptable, glance_stream.GlanceReader,
            self.context, IMAGE, self.record(
                checksum=None, os_hash_algo=None, os_hash_value=None),
            [glance.url])
        self.assertIn('no checksum', str(error))
        self.assertEqual([], glance.requests)

    def test_a_short_download_says_how_short(self):
        reader = self.reader([self.glance(self.data[:2 * MIB]).url])
        error = self.assertRaises(exception.ImageUnacceptable,
                                  self.read_all, reader)
        self.assertIn('Glance sent %d bytes of its %d'
                      % (2 * MIB, len(self.data)), str(error))

    def test_glances_refusals(self):
        for status, error in ((401, exception.ImageNotAuthorized),
                              (403, exception.ImageNotAuthorized),
                              (404, exception.ImageNotFound),
                              (204, exception.ImageUnacceptable)):
            glance = self.glance()
            glance.statuses = [status]
            reader = self.reader([glance.url])
            self.assertRaises(error, self.read_all, reader)

    def test_a_failing_endpoint_gives_way_to_the_next(self):
        failing, working = self.glance(), self.glance()
        failing.statuses = [503]
        reader = self.reader([failing.url, working.url])
        self.assertTrue(self.read_all(reader) == self.data)
        self.assertEqual(1, len(failing.requests))
        self.assertEqual(1, len(working.requests))

    def test_no_endpoint_answers(self):
        glance = self.glance()
        url = glance.url
        glance.stop()
        reader = self.reader([url])
        error = self.assertRaises(exception.GlanceConnectionFailed,
                                  self.read_all, reader)
        self.assertNotIn(TOKEN, str(error))

    def test_tls_with_nova_glance_ca(self):
        tls_dir = self.useFixture(fixtures.TempDir()).path
        glance = self.glance(tls_dir=tls_dir)
        error = self.assertRaises(exception.GlanceConnectionFailed,
                                  self.read_all, self.reader([glance.url]))
        self.assertIn('CERTIFICATE_VERIFY_FAILED', str(error))
        service_auth.reset_globals()
        self.conf.config(cafile=glance.ca_file, group='glance')
        self.assertTrue(self.read_all(self.reader([glance.url])) ==
                        self.data)

    def test_buffers_are_reused_and_a_held_chunk_stays_intact(self):
        # as RemoteStreamHandler reads: each chunk is sent once the next
        # one is read; the reader is let run ahead as far as its queues
        # allow before each read, so that every buffer it can reuse, it
        # has reused by then
        data = pattern(40 * MIB + 7, b'reuse')
        given = []
        original = glance_stream.GlanceReader._buffer

        def buffer(reader):
            got = original(reader)
            given.append(got)
            return got
        self.useFixture(fixtures.MonkeyPatch(
            'nova_xen.glance_stream.GlanceReader._buffer', buffer))
        reader = self.reader([self.glance(data).url], self.record(
            size=len(data), checksum=hashlib.md5(data).hexdigest(),
            os_hash_value=hashlib.sha512(data).hexdigest()))
        sent, held = [], None
        while True:
            polling.until(lambda: reader._queue.full() or
                          not reader._threads[0].is_alive(),
                          'the reader to run ahead')
            chunk = reader.read()
            if held is not None:
                sent.append(bytes(held))
            if not chunk:
                break
            held = chunk
        self.assertTrue(b''.join(sent) == data)
        distinct = len(set(id(b) for b in given))
        # 41 chunks through at most: the receiver's, the hasher's, the
        # consumer's current and held one, and two queues of DEPTH
        self.assertEqual(41, len(given))
        self.assertLessEqual(distinct, 2 * glance_stream.DEPTH + 4)

    def test_only_chunks_read_past_the_held_one_are_retired(self):
        retired = []

        class Chunks(glance_stream._Chunks):
            def _retire(self, chunk):
                retired.append(bytes(chunk))
        chunks = Chunks()
        for piece in (b'aa', b'bb', b'cc', b'dd'):
            chunks._queue.put(piece)
        chunks._queue.put(None)
        self.assertEqual(b'a', bytes(chunks.read(1)))
        self.assertEqual(b'a', bytes(chunks.read(5)))
        self.assertEqual([], retired)
        self.assertEqual(b'bb', bytes(chunks.read()))
        self.assertEqual([b''], retired)           # 'aa' is held
        self.assertEqual(b'cc', bytes(chunks.read()))
        self.assertEqual([b'', b'aa'], retired)
        self.assertEqual(b'dd', bytes(chunks.read()))
        self.assertEqual(b'', bytes(chunks.read()))
        self.assertEqual([b'', b'aa', b'bb'], retired)

    def test_closing_in_the_middle_ends_both_threads(self):
        glance = self.glance()
        glance.stall = threading.Event()
        reader = self.reader([glance.url])
        self.assertEqual(self.data[:MIB], bytes(reader.read(MIB)))
        # Glance sends nothing more: the receiver waits in a receive
        reader.close()
        self.assertThreadsEnded(reader)
