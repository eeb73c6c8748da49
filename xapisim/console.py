"""CONNECT /console: a VM's consoles, as xapi proxies them.

After ``HTTP/1.1 200 OK`` the connection carries the console's protocol.
An ``rfb`` console (the default when ``ref``/``uuid`` names a VM) speaks
RFB 3.8: a plain 640x480 screen named after the VM, enough for a VNC
client (noVNC behind nova-novncproxy) to connect, negotiate and draw.  A
``vt100`` console is the guest's text console: its boot log, then an echo
of what is typed.
"""

import struct
import time

from xapisim import guest

WIDTH = 640
HEIGHT = 480
PIXEL_FORMAT = struct.pack('>BBBBHHHBBB3x', 32, 24, 0, 1, 255, 255, 255,
                           16, 8, 0)
COLOUR = (0x10, 0x20, 0x40)     # the screen's one colour (red, green, blue)


def _find_console(db, req):
    """(VM, protocol) named by ``ref``/``uuid``: a VM or one of its consoles."""
    ref = req.param('ref')
    uuid = req.param('uuid')
    if not ref and uuid:
        ref = db.by_uuid['VM'].get(uuid) or db.by_uuid['console'].get(uuid)
    if ref and db.exists('VM', ref):
        return ref, 'rfb'
    if ref and db.exists('console', ref):
        row = db.row('console', ref)
        return row['VM'], row['protocol']
    return None, None


def connect(handler, req):
    session = handler.authenticate(req)
    if session is None:
        return
    db = handler.pool.db
    vm, protocol = _find_console(db, req)
    if vm is None or not db.exists('VM', vm):
        return handler.send_error_page(500, 'no such console')
    row = db.row('VM', vm)
    if row['power_state'] != 'Running' or \
            row['resident_on'] != handler.host.ref:
        return handler.send_error_page(
            500, 'VM is not running on this host')
    handler.wfile.write(b'HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n'
                        b'Cache-Control: no-cache, no-store\r\n\r\n')
    handler.wfile.flush()
    handler.close_connection = True
    try:
        if protocol == 'vt100':
            _serve_text(handler, row)
        else:
            _serve_rfb(handler.rfile, handler.wfile, row['name_label'])
    except (OSError, EOFError, struct.error, ValueError):
        pass


def _serve_text(handler, row):
    path = guest.console_log_path(handler.pool, row['resident_on'],
                                  row['domid'])
    try:
        with open(path, 'rb') as fh:
            handler.wfile.write(fh.read().replace(b'\n', b'\r\n'))
    except OSError:
        pass
    handler.wfile.flush()
    while True:
        data = handler.rfile.read1(4096)
        if not data:
            return
        handler.wfile.write(data)
        handler.wfile.flush()


def _pixel(pixel_format):
    """The screen colour as one pixel in the client's pixel format."""
    bpp, _, big_endian, true_colour, rmax, gmax, bmax, rshift, gshift, \
        bshift = struct.unpack('>BBBBHHHBBB3x', pixel_format)
    if bpp not in (8, 16, 32):
        raise ValueError('bits-per-pixel %d' % bpp)
    value = 0
    if true_colour:
        for level, top, shift in zip(COLOUR, (rmax, gmax, bmax),
                                     (rshift, gshift, bshift)):
            value |= (level * top // 255) << shift
    return (value & ((1 << bpp) - 1)).to_bytes(
        bpp // 8, 'big' if big_endian else 'little')


def _read(rfile, n):
    data = rfile.read(n)
    if len(data) < n:
        raise EOFError()
    return data


def _serve_rfb(rfile, wfile, name):
    wfile.write(b'RFB 003.008\n')
    wfile.flush()
    _read(rfile, 12)                         # the client's version
    wfile.write(b'\x01\x01')                 # one security type: None
    wfile.flush()
    _read(rfile, 1)
    wfile.write(struct.pack('>I', 0))        # SecurityResult: OK
    wfile.flush()
    _read(rfile, 1)                          # ClientInit (shared flag)
    title = name.encode('utf-8')
    wfile.write(struct.pack('>HH', WIDTH, HEIGHT) + PIXEL_FORMAT +
                struct.pack('>I', len(title)) + title)
    wfile.flush()
    pixel = _pixel(PIXEL_FORMAT)
    while True:
        kind = _read(rfile, 1)[0]
        if kind == 0:        # SetPixelFormat
            pixel = _pixel(_read(rfile, 19)[3:])
        elif kind == 2:      # SetEncodings
            _, count = struct.unpack('>BH', _read(rfile, 3))
            _read(rfile, 4 * count)
        elif kind == 3:      # FramebufferUpdateRequest
            incremental, x, y, w, h = struct.unpack('>BHHHH', _read(rfile, 9))
            if incremental:
                time.sleep(0.5)
                wfile.write(struct.pack('>BxH', 0, 0))
            else:
                w = max(0, min(w, WIDTH - x))
                h = max(0, min(h, HEIGHT - y))
                wfile.write(struct.pack('>BxH', 0, 1) +
                            struct.pack('>HHHHi', x, y, w, h, 0) +
                            pixel * (w * h))
            wfile.flush()
        elif kind == 4:      # KeyEvent
            _read(rfile, 7)
        elif kind == 5:      # PointerEvent
            _read(rfile, 5)
        elif kind == 6:      # ClientCutText
            _, length = struct.unpack('>3sI', _read(rfile, 7))
            _read(rfile, length)
        else:
            return
