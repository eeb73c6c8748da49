"""Consoles: console records of running VMs and CONNECT /console."""

import base64
import socket
import struct
import urllib.parse

from tests.xapisim.base import SimTestCase


class ConsoleClient(object):
    """Just enough of an RFB 3.8 client (and of nova-novncproxy)."""

    def __init__(self, address):
        self.sock = socket.create_connection(address, timeout=10)

    def close(self):
        self.sock.close()

    def recv_exact(self, n):
        data = b''
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError('connection closed after %d of %d bytes'
                               % (len(data), n))
            data += chunk
        return data

    def connect(self, path, headers=()):
        """Send CONNECT; the status line and the raw header block."""
        lines = ['CONNECT %s HTTP/1.1' % path] + list(headers)
        self.sock.sendall(('\r\n'.join(lines) + '\r\n\r\n').encode())
        head = b''
        while b'\r\n\r\n' not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                break
            head += chunk
        status_line = head.split(b'\r\n', 1)[0].decode()
        return status_line, head

    def handshake(self):
        """RFB 3.8 up to ServerInit: (width, height, pixel format, name)."""
        version = self.recv_exact(12)
        assert version == b'RFB 003.008\n', version
        self.sock.sendall(b'RFB 003.008\n')
        count = self.recv_exact(1)[0]
        types = self.recv_exact(count)
        assert 1 in types, types            # None
        self.sock.sendall(b'\x01')
        result = struct.unpack('>I', self.recv_exact(4))[0]
        assert result == 0, result
        self.sock.sendall(b'\x01')           # ClientInit: shared
        width, height = struct.unpack('>HH', self.recv_exact(4))
        pixel_format = self.recv_exact(16)
        length = struct.unpack('>I', self.recv_exact(4))[0]
        name = self.recv_exact(length).decode('utf-8')
        return width, height, pixel_format, name

    def set_encodings(self, *encodings):
        self.sock.sendall(struct.pack('>BxH', 2, len(encodings)) +
                          struct.pack('>%di' % len(encodings), *encodings))

    def set_pixel_format(self, pixel_format):
        self.sock.sendall(b'\x00\x00\x00\x00' + pixel_format)

    def update(self, x, y, w, h, bytes_per_pixel, incremental=0):
        """A FramebufferUpdateRequest; the rectangles of the update."""
        self.sock.sendall(struct.pack('>BBHHHH', 3, incremental, x, y, w, h))
        kind, count = struct.unpack('>BxH', self.recv_exact(4))
        assert kind == 0, kind
        rects = []
        for _ in range(count):
            rx, ry, rw, rh, enc = struct.unpack('>HHHHi', self.recv_exact(12))
            assert enc == 0, enc                 # Raw
            rects.append(((rx, ry, rw, rh),
                          self.recv_exact(rw * rh * bytes_per_pixel)))
        return rects


def pixel_colour(pixel_format, raw):
    """(r, g, b) as fractions of full scale, from one pixel."""
    (bpp, _, big, _, rmax, gmax, bmax, rs, gs, bs) = struct.unpack(
        '>BBBBHHHBBB3x', pixel_format)
    value = int.from_bytes(raw, 'big' if big else 'little')
    return tuple(((value >> shift) & top) / float(top)
                 for top, shift in ((rmax, rs), (gmax, gs), (bmax, bs)))


class ConsoleTestCase(SimTestCase):
    def running_vm(self, name='console-vm', host=None):
        vm = self.new_vm(name)
        if host:
            self.x.VM.start_on(vm, host, False, False)
        else:
            self.x.VM.start(vm, False, False)
        return vm

    def client(self, url=None):
        parts = urllib.parse.urlsplit(url or self.master_url)
        client = ConsoleClient((parts.hostname, parts.port))
        self.addCleanup(client.close)
        return client

    def console_path(self, session=None, **params):
        if session is not False:
            params['session_id'] = session or self.session._session
        return '/console?' + urllib.parse.urlencode(params)

    def consoles(self, vm):
        return {self.x.console.get_protocol(c): c
                for c in self.x.VM.get_consoles(vm)}


class Consoles(ConsoleTestCase):
    def test_running_vm_has_rfb_and_vt100_consoles(self):
        vm = self.running_vm()
        consoles = self.consoles(vm)
        self.assertEqual({'rfb', 'vt100'}, set(consoles))
        master = urllib.parse.urlsplit(self.master_url)
        for protocol, console in consoles.items():
            record = self.x.console.get_record(console)
            self.assertEqual(vm, record['VM'])
            location = urllib.parse.urlsplit(record['location'])
            self.assertEqual(master.hostname, location.hostname)
            self.assertEqual('/console', location.path)
            query = urllib.parse.parse_qs(location.query)
            self.assertTrue(query.get('uuid') == [record['uuid']] or
                            query.get('ref') == [console], location)

    def test_halted_vm_has_no_console(self):
        vm = self.new_vm()
        self.assertEqual([], self.x.VM.get_consoles(vm))
        status, _ = self.client().connect(self.console_path(ref=vm))
        self.assertEqual('HTTP/1.1 500', status[:12])

    def test_consoles_go_with_shutdown(self):
        vm = self.running_vm()
        consoles = self.x.VM.get_consoles(vm)
        self.x.VM.hard_shutdown(vm)
        self.assertEqual([], self.x.VM.get_consoles(vm))
        for console in consoles:
            self.assertFailure(['HANDLE_INVALID', 'console', console],
                               self.x.console.get_record, console)
        status, _ = self.client().connect(self.console_path(ref=vm))
        self.assertEqual('HTTP/1.1 500', status[:12])

    def test_connect_by_vm_ref_speaks_rfb(self):
        vm = self.running_vm('my desktop')
        client = self.client()
        status, head = client.connect(self.console_path(ref=vm))
        self.assertEqual('HTTP/1.1 200 OK', status)
        width, height, pixel_format, name = client.handshake()
        self.assertEqual((640, 480, 'my desktop'), (width, height, name))
        bpp = pixel_format[0]
        self.assertIn(bpp, (8, 16, 32))
        client.set_encodings(0)
        rects = client.update(0, 0, 640, 480, bpp // 8)
        self.assertEqual(1, len(rects))
        (x, y, w, h), pixels = rects[0]
        self.assertEqual((0, 0, 640, 480), (x, y, w, h))
        self.assertEqual(640 * 480 * bpp // 8, len(pixels))
        # a later request for part of the screen gets that part
        rects = client.update(600, 470, 100, 100, bpp // 8)
        self.assertEqual((600, 470, 40, 10), rects[0][0])

    def test_connect_by_console_ref_and_location(self):
        vm = self.running_vm('by-console')
        rfb = self.consoles(vm)['rfb']
        client = self.client()
        status, _ = client.connect(self.console_path(ref=rfb))
        self.assertEqual('HTTP/1.1 200 OK', status)
        self.assertEqual('by-console', client.handshake()[3])
        # the location, as a client would use it, with the session added
        location = urllib.parse.urlsplit(self.x.console.get_location(rfb))
        client = self.client()
        status, _ = client.connect('%s?%s&session_id=%s' % (
            location.path, location.query, self.session._session))
        self.assertEqual('HTTP/1.1 200 OK', status)
        self.assertEqual('by-console', client.handshake()[3])

    def test_client_pixel_format_is_honoured(self):
        vm = self.running_vm()
        client = self.client()
        client.connect(self.console_path(ref=vm))
        _, _, server_format, _ = client.handshake()
        (_, full), = client.update(0, 0, 1, 1, server_format[0] // 8)
        rgb565 = struct.pack('>BBBBHHHBBB3x', 16, 16, 1, 1, 31, 63, 31,
                             11, 5, 0)
        client.set_pixel_format(rgb565)
        (rect, pixels), = client.update(10, 20, 4, 3, 2)
        self.assertEqual((10, 20, 4, 3), rect)
        self.assertEqual(4 * 3 * 2, len(pixels))
        want = pixel_colour(server_format, full)
        got = pixel_colour(rgb565, pixels[:2])
        for a, b in zip(want, got):
            self.assertAlmostEqual(a, b, delta=1 / 31.0)
        # and the stream stays in step: nothing more was sent
        (rect, _), = client.update(0, 0, 2, 2, 2)
        self.assertEqual((0, 0, 2, 2), rect)

    def test_vt100_console_shows_the_boot_log(self):
        vm = self.running_vm('texty')
        client = self.client()
        status, _ = client.connect(self.console_path(
            ref=self.consoles(vm)['vt100']))
        self.assertEqual('HTTP/1.1 200 OK', status)
        text = b''
        while b'login:' not in text:
            text += client.sock.recv(4096)
        self.assertIn(b'texty login:', text)

    def test_session_required(self):
        vm = self.running_vm()
        for session in ('OpaqueRef:bogus', False):
            client = self.client()
            status, head = client.connect(self.console_path(session,
                                                            ref=vm))
            self.assertEqual('HTTP/1.1 401', status[:12], session)
            self.assertIn(b'WWW-Authenticate: Basic', head)

    def test_session_in_cookie_or_basic_auth(self):
        vm = self.running_vm()
        client = self.client()
        status, _ = client.connect(
            self.console_path(False, ref=vm),
            ['Cookie: session_id=%s' % self.session._session])
        self.assertEqual('HTTP/1.1 200 OK', status)
        client.handshake()
        token = base64.b64encode(('%s:%s' % (
            self.world['username'], self.world['password'])).encode())
        client = self.client()
        status, _ = client.connect(self.console_path(False, ref=vm),
                                   ['Authorization: Basic ' +
                                    token.decode()])
        self.assertEqual('HTTP/1.1 200 OK', status)

    def test_unknown_console(self):
        for params in ({'ref': 'OpaqueRef:nothing'}, {}):
            status, _ = self.client().connect(self.console_path(**params))
            self.assertEqual('HTTP/1.1 500', status[:12], params)


class ConsolesInAPool(ConsoleTestCase):
    hosts = 2

    def test_console_is_served_by_the_vm_host_only(self):
        master, slave = self.world['pools'][0]['hosts']
        hosts = {self.x.host.get_address(h): h for h in self.x.host.get_all()}
        vm = self.running_vm('on-slave', host=hosts[slave['address']])
        for console in self.x.VM.get_consoles(vm):
            location = urllib.parse.urlsplit(
                self.x.console.get_location(console))
            self.assertEqual(slave['address'], location.hostname)
        status, _ = self.client().connect(self.console_path(ref=vm))
        self.assertEqual('HTTP/1.1 500', status[:12])
        client = self.client(slave['url'])
        status, _ = client.connect(self.console_path(ref=vm))
        self.assertEqual('HTTP/1.1 200 OK', status)
        self.assertEqual('on-slave', client.handshake()[3])
