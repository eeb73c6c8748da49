"""A write-through file of each LUN a simulated guest uses.

A VDI of an ``iscsi`` SR (``xapisim.rawiscsi``) is a LUN of a real
target: its bytes have no file on this machine.  The simulated guest
(``xapisim.guestboot``) needs one: its /dev/xvdX link to the disk, and
the loop mount of the ext4 in its root disk's bytes (/tmp, /mnt).  While
a running guest uses a LUN VDI, the world serves it as a FUSE file
``<state dir>/luns/<VDI uuid>/lun``: every read is a READ(10), every
write a WRITE(10) on an iSCSI session of its own, logged in with the
initiator name and CHAP credentials of the PBD that attached the SR on
the VM's host (as dom0's tapdisk reads and writes the LUN's block device
through open-iscsi).  Nothing is cached on the way: what the guest wrote
and synced is in the target's backing store, and a Cinder snapshot (a
copy of it) carries it.

Each file is a child process (``python -m xapisim.lunfile``, mfusepy on
libfuse3, one thread): libfuse's main loop owns the process's signal
handlers, which a child keeps away from xapisim's.  Its settings come
through its stdin, never its command line (the CHAP secret is among
them); it unmounts and ends when its stdin closes (xapisim unmounts it,
or xapisim died).  The mount goes when no running guest uses the LUN any
more (halt, VBD unplug) and at xapisim's exit.

Without ``/dev/fuse``, libfuse3 (Debian ``libfuse3-3``) or the Python
package ``mfusepy``, nothing is mounted and ``use`` says why: the guest
then boots with /tmp and /mnt on tmpfs.
"""

import ctypes.util
import errno
import importlib.util
import json
import os
import select
import signal
import stat
import subprocess
import sys
import threading
import time

from xapisim import iscsi
from xapisim import rawiscsi

FILE = 'lun'
CHUNK_BLOCKS = 2048         # blocks of one READ(10)/WRITE(10)
READY = b'ready\n'
# bounds of a failure only: the waits end as soon as the state is reached
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
HERE = os.path.dirname(os.path.abspath(__file__))


class LunFileError(Exception):
    """A LUN's file could not be served (the text says why, never a
    secret)."""


def problem():
    """Why this machine cannot serve LUN files (None if it can)."""
    if not os.path.exists('/dev/fuse'):
        return 'no /dev/fuse (the fuse kernel module)'
    if ctypes.util.find_library('fuse3') is None:
        return 'no libfuse3 (Debian package libfuse3-3)'
    if importlib.util.find_spec('mfusepy') is None:
        return 'no Python package mfusepy (pip install mfusepy)'
    return None


def source_of(pool, vdi, host):
    """What serving ``vdi``'s bytes on ``host`` needs, None for a VDI that
    is no LUN (call with the database lock held): a dict with the VDI's
    uuid and either the session's settings or ``problem``."""
    db = pool.db
    row = db.row('VDI', vdi)
    if db.get('SR', row['SR'], 'type') != rawiscsi.SR_TYPE:
        return None
    source = {'uuid': row['uuid']}
    pbds = [p for p in db.get('SR', row['SR'], 'PBDs')
            if db.get('PBD', p, 'host') == host and
            db.get('PBD', p, 'currently_attached')]
    config = pool.initiators.config_of(pbds)
    try:
        lun = int(row['sm_config']['LUNid'])
    except (KeyError, ValueError):
        config = None
    if config is None:
        source['problem'] = 'the LUN has no session on the VM\'s host'
        return source
    source.update(portal=[config.host, config.port],
                  initiator=config.initiator, target=config.target_iqn,
                  chap=list(config.chap) if config.chap else None, lun=lun)
    return source


class Mount(object):
    """One LUN's file: its mount point and the process serving it."""

    def __init__(self, root, uuid):
        self.uuid = uuid
        self.dir = os.path.join(root, uuid)
        self.path = os.path.join(self.dir, FILE)
        self.log = os.path.join(root, uuid + '.log')
        self.process = None

    def start(self, source):
        os.makedirs(self.dir, exist_ok=True)
        settings = dict((k, source[k]) for k in
                        ('portal', 'initiator', 'target', 'chap', 'lun'))
        env = dict(os.environ, FUSE_LIBRARY_NAME='fuse3',
                   PYTHONPATH=os.pathsep.join(
                       [os.path.dirname(HERE)] +
                       [p for p in [os.environ.get('PYTHONPATH')] if p]))
        with open(self.log, 'wb') as log:
            self.process = subprocess.Popen(
                [sys.executable, '-m', 'xapisim.lunfile', self.dir],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                env=env, start_new_session=True)
        self.process.stdin.write(json.dumps(settings).encode() + b'\n')
        self.process.stdin.flush()
        deadline = time.monotonic() + START_TIMEOUT
        got = b''
        while READY not in got and time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [],
                                        deadline - time.monotonic())
            if not ready:
                break
            chunk = os.read(self.process.stdout.fileno(), 64)
            if not chunk:
                break
            got += chunk
        if READY not in got:
            self.stop()
            raise LunFileError('the file of LUN %s of %s did not come up: '
                               '%s' % (source['lun'], source['target'],
                                       self.why()))

    def why(self):
        try:
            with open(self.log, errors='replace') as fh:
                lines = [line.strip() for line in fh if line.strip()]
        except OSError:
            lines = []
        return lines[-1] if lines else 'no reason given'

    def stop(self):
        """The mount goes (once no loop device reads the file any more:
        a halted guest's mounts go as its namespace goes)."""
        if self.process is not None:
            deadline = time.monotonic() + STOP_TIMEOUT
            while loop_devices_of(self.path) and \
                    time.monotonic() < deadline:
                time.sleep(0.05)
            self.process.stdin.close()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process.stdout.close()
            self.process = None
        if mounted(self.dir):
            # its server was killed: the kernel keeps a dead mount
            subprocess.run(['umount', '-l', self.dir],
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        for path in (self.dir, self.log):
            try:
                (os.rmdir if path == self.dir else os.unlink)(path)
            except OSError:
                pass


def mounted(path):
    """``path`` is a mount point in this mount namespace."""
    with open('/proc/self/mountinfo') as fh:
        return any(line.split()[4] == path for line in fh)


def loop_devices_of(path):
    """The loop devices whose backing file is ``path``."""
    found = []
    try:
        names = os.listdir('/sys/block')
    except OSError:
        return found
    for name in names:
        if not name.startswith('loop'):
            continue
        try:
            with open('/sys/block/%s/loop/backing_file' % name) as fh:
                if fh.read().strip() == path:
                    found.append(name)
        except OSError:
            continue
    return found


class LunFiles(object):
    """The world's LUN files, and which running guests use them."""

    def __init__(self, state_dir):
        self.root = os.path.join(state_dir, 'luns')
        self.lock = threading.Lock()
        self.mounts = {}        # VDI uuid -> Mount
        self.users = {}         # VM uuid -> set of VDI uuids

    def use(self, vm_uuid, sources):
        """The guest of ``vm_uuid`` uses these LUNs (``source_of``'s
        dicts) and no others: ({VDI uuid: file}, {VDI uuid: why it has
        none})."""
        paths, notes = {}, {}
        with self.lock:
            self.users[vm_uuid] = set(sources)
            for uuid, source in sources.items():
                mount = self.mounts.get(uuid)
                if mount is None:
                    why = problem() or source.get('problem')
                    if why is None:
                        mount = Mount(self.root, uuid)
                        try:
                            mount.start(source)
                            self.mounts[uuid] = mount
                        except (LunFileError, OSError) as exc:
                            mount = None
                            why = str(exc)
                    if mount is None:
                        self.users[vm_uuid].discard(uuid)
                        notes[uuid] = 'no file of LUN VDI %s: %s' % (uuid,
                                                                     why)
                        continue
                paths[uuid] = mount.path
            self._unused()
        return paths, notes

    def release(self, vm_uuid):
        """The guest of ``vm_uuid`` is gone."""
        with self.lock:
            self.users.pop(vm_uuid, None)
            self._unused()

    def _unused(self):
        used = set()
        for uuids in self.users.values():
            used |= uuids
        for uuid in [u for u in self.mounts if u not in used]:
            self.mounts.pop(uuid).stop()

    def close(self):
        with self.lock:
            self.users.clear()
            self._unused()


# ------------------------------------------------------- the file server


class LunOperations(object):
    """mfusepy's operations: one file, the LUN's bytes (write-through)."""

    use_ns = True

    def __init__(self, session, lun, ready):
        self.session = session
        self.lun = lun
        self.ready = ready
        self.blocks, self.block = session.capacity(lun)
        self.size = self.blocks * self.block
        self.time = time.time_ns()

    # -- iSCSI ----------------------------------------------------------

    def _io(self, call, *args):
        from mfusepy import FuseOSError
        try:
            return call(*args)
        except iscsi.ScsiError as exc:
            _log('LUN %d: %s' % (self.lun, exc))
            raise FuseOSError(errno.EIO)
        except iscsi.IscsiError as exc:
            # the target dropped the connection: log in again, once
            _log('LUN %d: %s: logging in again' % (self.lun, exc))
            try:
                self.session = self.session.again()
                return call(*args)
            except iscsi.IscsiError as exc:
                _log('LUN %d: %s' % (self.lun, exc))
                raise FuseOSError(errno.EIO)

    def _read_blocks(self, lba, count):
        data = []
        while count:
            n = min(count, CHUNK_BLOCKS)
            data.append(self._io(lambda: self.session.read(
                self.lun, lba, n, self.block)))
            lba += n
            count -= n
        return b''.join(data)

    def _write_blocks(self, lba, data):
        step = CHUNK_BLOCKS * self.block
        for start in range(0, len(data), step):
            part = data[start:start + step]
            self._io(lambda: self.session.write(
                self.lun, lba + start // self.block, part, self.block))

    # -- FUSE -------------------------------------------------------------

    def init(self, path):
        self.ready()

    def getattr(self, path, fh=None):
        from mfusepy import FuseOSError
        times = dict(st_atime=self.time, st_mtime=self.time,
                     st_ctime=self.time)
        if path == '/':
            return dict(times, st_mode=stat.S_IFDIR | 0o755, st_nlink=2)
        if path == '/' + FILE:
            return dict(times, st_mode=stat.S_IFREG | 0o600, st_nlink=1,
                        st_size=self.size, st_blocks=self.size // 512)
        raise FuseOSError(errno.ENOENT)

    def readdir(self, path, fh):
        return ['.', '..', FILE]

    def open(self, path, flags):
        return 0

    def read(self, path, size, offset, fh):
        end = min(offset + size, self.size)
        if offset >= end:
            return b''
        first = offset // self.block
        last = (end + self.block - 1) // self.block
        data = self._read_blocks(first, last - first)
        skip = offset - first * self.block
        return data[skip:skip + end - offset]

    def write(self, path, data, offset, fh):
        from mfusepy import FuseOSError
        if offset + len(data) > self.size:
            raise FuseOSError(errno.ENOSPC)
        if not data:
            return 0
        first = offset // self.block
        last = (offset + len(data) + self.block - 1) // self.block
        head = offset - first * self.block
        tail = last * self.block - offset - len(data)
        if head or tail:
            # a partial block: read it, change it, write it whole
            whole = bytearray(self._read_blocks(first, last - first))
            whole[head:head + len(data)] = data
            data = bytes(whole)
        self._write_blocks(first, data)
        return len(data) - head - tail

    def truncate(self, path, length, fh=None):
        from mfusepy import FuseOSError
        if length != self.size:
            raise FuseOSError(errno.EPERM)     # a LUN keeps its size
        return 0

    def flush(self, path, fh):
        return 0                # every write went to the target already

    def fsync(self, path, datasync, fh):
        return 0

    def release(self, path, fh):
        return 0


class Reconnecting(object):
    """An iSCSI session that can log in again with the same settings."""

    def __init__(self, settings):
        self.settings = settings
        host, port = settings['portal']
        chap = tuple(settings['chap']) if settings['chap'] else None
        self.session = iscsi.Session(host, port, settings['initiator'],
                                     settings['target'], chap)

    def again(self):
        self.session.logout()
        return Reconnecting(self.settings)

    def __getattr__(self, name):
        return getattr(self.session, name)


def serve(mountpoint, settings):
    """Serve the LUN of ``settings`` as ``mountpoint``/lun until stdin
    closes or SIGTERM."""
    import mfusepy
    session = Reconnecting(settings)
    main = threading.get_ident()

    def ready():
        os.write(1, READY)

    def watch_stdin():
        # xapisim closes our stdin (or died): end the main loop, which
        # unmounts; libfuse's SIGTERM handler interrupts its read
        while sys.stdin.buffer.read(4096):
            pass
        signal.pthread_kill(main, signal.SIGTERM)

    ops = LunOperations(session, settings['lun'], ready)
    threading.Thread(target=watch_stdin, daemon=True).start()
    try:
        mfusepy.FUSE(ops, mountpoint, foreground=True, nothreads=True,
                     fsname='xapisim-lun', subtype='xapisim-lun')
    finally:
        session.logout()


def _log(text):
    sys.stderr.write('xapisim-lun: %s\n' % text)
    sys.stderr.flush()


def main(argv):
    if len(argv) != 2:
        _log('usage: python -m xapisim.lunfile MOUNTPOINT '
             '(settings as JSON on stdin)')
        return 2
    settings = json.loads(sys.stdin.buffer.readline().decode())
    try:
        serve(argv[1], settings)
    except iscsi.IscsiError as exc:
        _log(str(exc))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
