"""CONNECT /console: a VM's graphical console, as xapi proxies it.

After ``HTTP/1.1 200 OK`` the connection carries RFB (VNC).  The simulated
framebuffer is a plain 640x480 screen named after the VM: enough for a
VNC client (noVNC behind nova-novncproxy) to connect, negotiate and draw.
"""

import struct
import time

WIDTH = 640
HEIGHT = 480
PIXEL_FORMAT = struct.pack('>BBBBHHHBBB3x', 32, 24, 0, 1, 255, 255, 255,
                           16, 8, 0)
BACKGROUND = b'\x40\x20\x10\x00'


def _find_vm(db, req):
    """The VM named by ``ref``/``uuid``: a VM's or one of its consoles'."""
    ref = req.param('ref')
    if ref:
        if db.exists('VM', ref):
            return ref
        if db.exists('console', ref):
            return db.get('console', ref, 'VM')
    uuid = req.param('uuid')
    if uuid:
        if uuid in db.by_uuid['VM']:
            return db.by_uuid['VM'][uuid]
        if uuid in db.by_uuid['console']:
            return db.get('console', db.by_uuid['console'][uuid], 'VM')
    return None


def connect(handler, req):
    session = handler.authenticate(req)
    if session is None:
        return
    db = handler.pool.db
    vm = _find_vm(db, req)
    if vm is None:
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
        _serve_rfb(handler.rfile, handler.wfile, row['name_label'])
    except (OSError, EOFError, struct.error):
        pass


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
    while True:
        kind = _read(rfile, 1)[0]
        if kind == 0:        # SetPixelFormat
            _read(rfile, 19)
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
                            BACKGROUND * (w * h))
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
