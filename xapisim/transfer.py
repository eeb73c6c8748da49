"""PUT /import_raw_vdi and GET /export_raw_vdi: VDI bytes over HTTP.

As in xapi, an import answers ``200 OK`` before it reads the body; whether
the bytes made it is told by the task (``task_id`` given by the client, or
one created for the transfer and named in the ``task-id`` header).  A body
that is truncated, too large for the VDI or not the VHD it claims to be
fails the task with ``VDI_IO_ERROR``.
"""

import fcntl
import os
import ssl
import sys
import threading

from xapisim import vhd
from xapisim.errors import XapiError
from xapisim.storage import blocks_of, data_blocks, data_extents

CHUNK = 1024 * 1024
# an import reads its body in pieces of this size (fewer, larger writes)
IMPORT_CHUNK = 4 * 1024 * 1024
FORMATS = ('raw', 'vhd')


def _log(pool, text):
    if pool.options.verbose:
        sys.stderr.write('xapisim: %s\n' % text)


class TransferError(Exception):
    """The transfer failed; the task says VDI_IO_ERROR."""


def _yield_cpu(pool):
    """This thread at the world's transfer niceness at least (it ends with
    the transfer: imports and exports close their connection)."""
    thread = threading.get_native_id()
    if os.getpriority(os.PRIO_PROCESS, thread) < pool.options.transfer_nice:
        os.setpriority(os.PRIO_PROCESS, thread, pool.options.transfer_nice)


def _resolve_vdi(handler, req):
    db = handler.pool.db
    value = req.param('vdi')
    if value is None:
        return None
    if db.exists('VDI', value):
        return value
    return db.by_uuid['VDI'].get(value)


def _task_for(handler, req, session, label):
    db = handler.pool.db
    task = req.param('task_id')
    if task and db.exists('task', task):
        return task
    return handler.pool.tasks.create(handler.host, session, label)


def _fail_early(handler, req, session, status, description, text):
    task = _task_for(handler, req, session, 'VDI transfer')
    handler.pool.tasks.fail(task, description)
    handler.send_error_page(status, text, headers=[('task-id', task)])


def _prologue(handler, req, label):
    """Checks shared by import and export; (session, vdi, format) or None."""
    session = handler.authenticate(req)
    if session is None:
        return None
    encoding = handler.headers.get('Transfer-Encoding')
    if encoding:
        # xapi hands the socket to vhd-tool, which speaks no HTTP encoding
        _fail_early(handler, req, session, 404,
                    ['INTERNAL_ERROR', 'Cannot handle encoding: %s'
                     % encoding], 'Cannot handle encoding')
        return None
    fmt = (req.param('format') or 'raw').lower()
    if fmt not in FORMATS:
        _fail_early(handler, req, session, 404,
                    ['INTERNAL_ERROR', 'Unknown format %s' % fmt],
                    'Unknown format')
        return None
    vdi = _resolve_vdi(handler, req)
    if vdi is None:
        _fail_early(handler, req, session, 400,
                    ['VDI_MISSING', '', req.param('vdi') or ''],
                    'Missing or unknown vdi')
        return None
    return session, vdi, fmt


def import_raw_vdi(handler, req):
    found = _prologue(handler, req, 'VDI import')
    if found is None:
        return
    session, vdi, fmt = found
    pool = handler.pool
    _yield_cpu(pool)
    task = _task_for(handler, req, session, 'VDI import')
    handler.close_connection = True
    try:
        handler.send_response(200)
        handler.send_header('Connection', 'close')
        handler.send_header('Cache-Control', 'no-cache, no-store')
        handler.send_header('task-id', task)
        handler.send_header('Content-Type', 'application/octet-stream')
        handler.end_headers()
        handler.wfile.flush()
    except OSError:
        # the client went away before the transfer began
        pool.tasks.fail(task, ['VDI_IO_ERROR', 'Device I/O errors'])
        return
    refusal = _import_refusal(pool.db, vdi)
    if refusal is not None:
        # as xapi, which attaches the VDI read-write to dom0 after the
        # 200 OK: the task fails and not a byte is read or written
        pool.tasks.fail(task, refusal.description)
        return
    length = handler.headers.get('Content-Length')
    reader = _BodyReader(handler.rfile, int(length) if length else None,
                         pool, task)
    written = set()     # the VHD blocks the import wrote into
    try:
        size = pool.db.get('VDI', vdi, 'virtual_size')
        path = pool.storage.path(vdi)
        with open(path, 'r+b', buffering=0) as out:
            fd = out.fileno()

            def write(offset, data):
                if offset + len(data) > size:
                    raise TransferError('write beyond the end of the VDI')
                written.update(blocks_of(offset, len(data)))
                view = memoryview(data)
                while view:
                    done = os.pwrite(fd, view, offset)
                    offset += done
                    view = view[done:]
            with _Pipe(handler) as pipe:
                if pipe is None:
                    move = None
                else:
                    # the kernel moves the body's bytes into the file, not
                    # through this process (xapi leaves them to vhd-tool)
                    def move(offset, n):
                        return _splice(reader, pipe, fd, offset, n, size,
                                       written)
                if fmt == 'vhd':
                    vhd.read_vhd(reader.read, size, write, move)
                elif move is not None:
                    move(0, None)
                else:
                    # one buffer for the whole body: no allocation per piece
                    buf = memoryview(bytearray(IMPORT_CHUNK))
                    offset = 0
                    while True:
                        got = reader.readinto(buf)
                        if not got:
                            break
                        write(offset, buf[:got])
                        offset += got
            reader.finish()
    except XapiError as exc:
        pool.tasks.fail(task, exc.description)
        return
    except (TransferError, vhd.VhdError, OSError) as exc:
        _log(pool, 'import into VDI %s failed: %s' % (vdi, exc))
        pool.tasks.fail(task, ['VDI_IO_ERROR', 'Device I/O errors'])
        return
    finally:
        if pool.db.exists('VDI', vdi):
            pool.storage.mark_written(vdi, written)
            pool.storage.refresh_utilisation(vdi)
    pool.tasks.succeed(task, vdi)


def _splice(reader, pipe, fd, offset, n, size, written):
    """Move ``n`` bytes of the body (None: the rest of it) into the file
    ``fd`` at ``offset``; how many it held."""
    moved = 0
    while n is None or moved < n:
        limit = size - offset + 1 if n is None else n - moved
        got = reader.splice_into(pipe, fd, offset, limit, size)
        if not got:
            break
        written.update(blocks_of(offset, got))
        offset += got
        moved += got
    return moved


class _Pipe(object):
    """A pipe to splice a plain HTTP body through (None over TLS, whose
    bytes on the socket are not the body's), as large as the kernel lets
    an unprivileged process make it."""

    def __init__(self, handler):
        self.usable = hasattr(os, 'splice') and \
            not isinstance(handler.connection, ssl.SSLSocket)

    def __enter__(self):
        if not self.usable:
            return None
        self.read_end, self.write_end = os.pipe()
        try:
            with open('/proc/sys/fs/pipe-max-size') as fh:
                largest = int(fh.read())
            self.size = fcntl.fcntl(self.write_end, fcntl.F_SETPIPE_SZ,
                                    min(largest, IMPORT_CHUNK))
        except (OSError, ValueError):
            self.size = fcntl.fcntl(self.write_end, fcntl.F_GETPIPE_SZ)
        return self

    def __exit__(self, *exc):
        if self.usable:
            os.close(self.read_end)
            os.close(self.write_end)


def _import_refusal(db, vdi):
    """Why xapi cannot attach ``vdi`` read-write to dom0 for an import.

    xapi (Sm_fs_ops.with_block_attached_device) creates a read-write VBD
    in dom0 and plugs it: VBD.create refuses a read-only VDI
    (VDI_READONLY), and the sharing check of VBD.plug
    (xapi_vbd_helpers) refuses a VDI that is not sharable while another
    VBD has it attached, unless that VBD's VM is suspended (VDI_IN_USE).
    """
    with db.lock:
        row = db.row('VDI', vdi)
        if row['read_only']:
            return XapiError('VDI_READONLY', vdi)
        if row['sharable']:
            return None
        for vbd in row['VBDs']:
            other = db.row('VBD', vbd)
            if not (other['currently_attached'] or
                    other['current_operations']):
                continue
            vm = db.table('VM').get(other['VM'])
            if vm is not None and vm['power_state'] == 'Suspended':
                continue
            return XapiError('VDI_IN_USE', vdi)
    return None


class _BodyReader(object):
    """The request body, bounded by Content-Length, honouring task.cancel
    and reporting the share of it read as the task's progress."""

    # the task's progress moves in steps of at least this much
    PROGRESS_STEP = 0.01

    def __init__(self, rfile, length, pool, task):
        self.rfile = rfile
        self.length = length
        self.left = length
        self.pool = pool
        self.task = task
        self.reported = 0.0
        self.drained = False     # the buffered head of the body (splice)

    def _progress(self):
        if not self.length:
            return
        # 1.0 is for the task's end, once the bytes are safely written
        done = min((self.length - self.left) / float(self.length), 0.99)
        if done - self.reported < self.PROGRESS_STEP:
            return
        self.reported = done
        db = self.pool.db
        with db.lock:
            if db.exists('task', self.task) and \
                    db.get('task', self.task, 'status') == 'pending':
                db.set('task', self.task, progress=done)

    def _check(self, n):
        """How many of n bytes to read now."""
        self.pool.db.assert_alive()      # a xapi restart stops the transfer
        if self.pool.tasks.cancel_requested(self.task):
            raise XapiError('TASK_CANCELLED', self.task)
        return n if self.left is None else min(n, self.left)

    def _count(self, got):
        if self.left is not None:
            if not got:
                raise TransferError('truncated upload: %d bytes missing'
                                    % self.left)
            self.left -= got
            self._progress()

    def read(self, n):
        """The next n bytes (fewer only at the end of the body)."""
        n = self._check(n)
        if n == 0:
            return b''
        # a buffered read blocks until it has n bytes or the end: one
        # Python round per piece however the sender splits its writes
        data = self.rfile.read(n)
        self.drained = False
        self._count(len(data))
        return data

    def readinto(self, view):
        """read() into ``view``: how many bytes it now holds."""
        n = self._check(len(view))
        if n == 0:
            return 0
        got = self.rfile.readinto(view[:n])
        self.drained = False
        self._count(got)
        return got

    def splice_into(self, pipe, fd, offset, limit, size):
        """Move up to ``limit`` of the body's next bytes (a pipe's worth at
        most) into the file ``fd`` at ``offset``, through ``pipe`` and not
        through this process; how many (0 at the end).  Bytes the buffered
        reads left in the buffer go first, written as usual.  Nothing is
        written past ``size``."""
        n = self._check(min(pipe.size, limit))
        if n == 0:
            return 0
        if not self.drained:
            # one receive if nothing is buffered: either way, what is
            # buffered now is all the buffer holds until the next read
            data = self.rfile.read(min(n, len(self.rfile.peek(1))))
            self.drained = len(data) < n
            self._within(offset, len(data), size)
            if data and os.pwrite(fd, data, offset) != len(data):
                raise TransferError('short write into the VDI')
            self._count(len(data))
            return len(data)
        got = os.splice(self.rfile.raw.fileno(), pipe.write_end, n)
        self._within(offset, got, size)
        left, at = got, offset
        while left:
            done = os.splice(pipe.read_end, fd, left, offset_dst=at)
            left -= done
            at += done
        self._count(got)
        return got

    @staticmethod
    def _within(offset, n, size):
        if offset + n > size:
            raise TransferError('write beyond the end of the VDI')

    def finish(self):
        if self.left:
            raise TransferError('unread data: %d bytes' % self.left)


def export_raw_vdi(handler, req):
    found = _prologue(handler, req, 'VDI export')
    if found is None:
        return
    session, vdi, fmt = found
    pool = handler.pool
    _yield_cpu(pool)
    base = None
    if req.param('base'):
        base = _resolve_vdi(handler, _Param(req.param('base')))
        if base is None or fmt != 'vhd':
            return _fail_early(handler, req, session, 500,
                               ['INTERNAL_ERROR', 'Cannot compute differences '
                                'on non-VHD images'], 'bad base')
    task = _task_for(handler, req, session, 'VDI export')
    row = pool.db.record('VDI', vdi)
    handler.send_response(200)
    handler.send_header('Connection', 'close')
    handler.send_header('Cache-Control', 'no-cache, no-store')
    handler.send_header('task-id', task)
    handler.send_header('Content-Type', 'application/vhd' if fmt == 'vhd'
                        else 'application/octet-stream')
    handler.send_header('Content-Disposition', 'attachment; filename="%s.%s"'
                        % (row['uuid'], fmt))
    handler.end_headers()
    handler.close_connection = True
    path = pool.storage.path(vdi)
    size = row['virtual_size']
    try:
        with open(path, 'rb') as src:
            if fmt == 'raw':
                _send_raw(handler, src, size)
            else:
                base_path = pool.storage.path(base) if base else None
                _send_vhd(handler, src, size, base_path)
        handler.wfile.flush()
    except (OSError, XapiError) as exc:
        _log(pool, 'export of VDI %s failed: %s' % (vdi, exc))
        pool.tasks.fail(task, ['VDI_IO_ERROR', 'Device I/O errors'])
        return
    pool.tasks.succeed(task, '')


class _Param(object):
    def __init__(self, value):
        self.value = value

    def param(self, name):
        return self.value


def _send_raw(handler, src, size):
    offset = 0
    zeros = b'\0' * CHUNK
    for start, length in list(data_extents(src, size)) + [(size, 0)]:
        while offset < start:
            n = min(CHUNK, start - offset)
            handler.wfile.write(zeros[:n])
            offset += n
        src.seek(start)
        while length:
            chunk = src.read(min(CHUNK, length))
            handler.wfile.write(chunk)
            length -= len(chunk)
            offset += len(chunk)


def _send_vhd(handler, src, size, base_path):
    block = vhd.BLOCK_SIZE
    blocks = data_blocks(src, size)

    def read_block(fh, idx):
        fh.seek(idx * block)
        data = fh.read(min(block, size - idx * block))
        return data + b'\0' * (min(block, size - idx * block) - len(data))
    if base_path is not None:
        # a differencing export: the blocks where the VDI and its base differ
        with open(base_path, 'rb') as base:
            candidates = blocks | data_blocks(base, size)
            blocks = {i for i in candidates
                      if read_block(base, i) != read_block(src, i)}
    for piece in vhd.write_vhd(size, sorted(blocks),
                               lambda idx: read_block(src, idx)):
        handler.wfile.write(piece)
