"""A real iSCSI target for tests: tgtd (Debian package ``tgt``) on loopback.

``TgtTarget`` is a ``fixtures.Fixture`` that starts its own ``tgtd`` in the
foreground, serving iSCSI on ``127.0.0.1`` at a free port of its own,
with a control port of its own (``tgtd -C N``, the Unix socket
``/var/run/tgtd/socket.N``), so that several fixtures, test processes
and the mini cloud's tgtd (control port 0, iSCSI port 3260) never clash.
Targets are made with ``tgtadm``; each LUN is a sparse file under the
fixture's temporary directory (``--bstype rdwr``).  At clean-up tgtd is
shut down (``tgtadm --mode system --op delete``; SIGKILL if it lingers)
and the files are removed.  A missing tgtd fails the test with a
sentence saying what to install (``./run tests`` installs it); the
fixture never skips.

API::

    tgt = self.useFixture(TgtTarget())
    tgt.host, tgt.port, tgt.portal          # '127.0.0.1', 40123, '127.0.0.1:40123'
    target = tgt.add_target(luns=[64 * MIB, 32 * MIB],   # LUNs 1 and 2
                            chap=True)    # or ('user', 'secret'), or None
    target.iqn, target.tid, target.chap   # chap: (user, password) or None
    target.luns                           # {1: '/tmp/.../t1-lun1.img', ...}
    target.connection_info(lun=1)         # what Cinder's tgt backend hands
                                          # Nova: driver_volume_type iscsi,
                                          # target_portal, target_iqn,
                                          # target_lun, auth_* (CHAP)
    target.device_config()                # an sm 'iscsi' SR's device_config
                                          # (target, port, targetIQN,
                                          # chapuser, chappassword)
    lun = tgt.add_lun(target, 16 * MIB)   # the next free LUN number
    tgt.grow_lun(target, 1, 128 * MIB)    # as Cinder's extend: the file
                                          # grows and tgtd re-reads its size
    tgt.remove_lun(target, 2)
    tgt.remove_target(target)             # forced: sessions are dropped
    tgt.show()                            # tgtadm's text (sessions, LUNs)
    tgt.log()                             # what tgtd wrote (CHAP failures)

Everything runs as root (tgtd needs it); CI does.
"""

import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import fixtures

MIB = 1024 * 1024
INSTALL_HINT = ('tgtd (Debian package tgt) is needed for the iSCSI tests: '
                'apt-get install tgt (./run tests installs it as root)')


class Target(object):
    """One iSCSI target of a ``TgtTarget``."""

    def __init__(self, tgt, tid, iqn, chap):
        self.tgt = tgt
        self.tid = tid
        self.iqn = iqn
        self.chap = chap
        self.luns = {}

    def connection_info(self, lun=1, volume_id=None):
        """Cinder's iSCSI connection_info for one LUN of this target."""
        data = {'target_discovered': False,
                'target_portal': self.tgt.portal,
                'target_iqn': self.iqn, 'target_lun': lun,
                'volume_id': volume_id or str(uuid.uuid4()),
                'access_mode': 'rw', 'encrypted': False,
                'cacheable': False}
        if self.chap:
            data.update(auth_method='CHAP', auth_username=self.chap[0],
                        auth_password=self.chap[1])
        return {'driver_volume_type': 'iscsi', 'data': data}

    def device_config(self):
        """device_config of an sm ``iscsi`` SR (RawISCSISR) for this
        target."""
        config = {'target': self.tgt.host, 'port': str(self.tgt.port),
                  'targetIQN': self.iqn}
        if self.chap:
            config.update(chapuser=self.chap[0], chappassword=self.chap[1])
        return config

    def __repr__(self):
        return '<Target %d %s luns=%s>' % (self.tid, self.iqn,
                                           sorted(self.luns))


class TgtTarget(fixtures.Fixture):
    """A tgtd of the test's own on ``host`` (default 127.0.0.1)."""

    def __init__(self, host='127.0.0.1', tgtd='tgtd', tgtadm='tgtadm'):
        super(TgtTarget, self).__init__()
        self.host = host
        self.tgtd = tgtd
        self.tgtadm_path = tgtadm
        self.port = None
        self.control_port = None
        self.process = None
        self.targets = {}

    @property
    def portal(self):
        return '%s:%d' % (self.host, self.port)

    # -- life --------------------------------------------------------------

    def _setUp(self):
        for tool in (self.tgtd, self.tgtadm_path):
            if shutil.which(tool) is None:
                raise RuntimeError(INSTALL_HINT)
        if os.geteuid() != 0:
            raise RuntimeError('tgtd must run as root for the iSCSI tests')
        self.dir = tempfile.mkdtemp(prefix='tgt-')
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.log_path = os.path.join(self.dir, 'tgtd.log')
        os.makedirs('/var/run/tgtd', exist_ok=True)
        last = None
        for _ in range(5):
            try:
                self._start()
                return
            except RuntimeError as exc:
                last = exc
        raise last

    def _start(self):
        self.port = _free_port(self.host)
        self.control_port = _free_control_port()
        log = open(self.log_path, 'ab')
        self.process = subprocess.Popen(
            [self.tgtd, '-f', '-C', str(self.control_port),
             '--iscsi', 'portal=%s' % self.portal],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self._answers():
                self.addCleanup(self._stop)
                return
            time.sleep(0.05)
        self._kill()
        raise RuntimeError('tgtd did not start on %s (control port %d): %s'
                           % (self.portal, self.control_port, self.log()))

    def _answers(self):
        ok = subprocess.run(self._adm('--mode', 'system', '--op', 'show'),
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL).returncode == 0
        if not ok:
            return False
        try:
            socket.create_connection((self.host, self.port), 1).close()
            return True
        except OSError:
            return False

    def _stop(self):
        subprocess.run(self._adm('--mode', 'system', '--op', 'delete'),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self._kill()
        for suffix in ('', '.lock'):
            try:
                os.unlink('/var/run/tgtd/socket.%d%s'
                          % (self.control_port, suffix))
            except OSError:
                pass

    def _kill(self):
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    # -- tgtadm ------------------------------------------------------------

    def _adm(self, *args):
        return [self.tgtadm_path, '-C', str(self.control_port),
                '--lld', 'iscsi'] + list(args)

    def tgtadm(self, *args):
        """Run tgtadm against this tgtd; its stdout (fails loudly)."""
        done = subprocess.run(self._adm(*args), capture_output=True,
                              text=True)
        if done.returncode:
            raise RuntimeError('tgtadm %s: %s' % (' '.join(args),
                                                  done.stderr.strip()))
        return done.stdout

    def show(self):
        return self.tgtadm('--mode', 'target', '--op', 'show')

    def log(self):
        try:
            with open(self.log_path, errors='replace') as fh:
                return fh.read()
        except OSError:
            return ''

    # -- targets and LUNs --------------------------------------------------

    def add_target(self, iqn=None, luns=(64 * MIB,), chap=None,
                   initiators='ALL'):
        """A new target with LUNs 1.. of the given sizes (bytes).

        ``chap``: None (no authentication), ``(user, password)``, or True
        for generated credentials (tgtd wants a secret of 12 characters
        or more for real initiators; any length works here).
        ``initiators``: 'ALL', or initiator IQNs allowed to log in.
        """
        tid = max(self.targets, default=0) + 1
        iqn = iqn or 'iqn.2010-10.org.openstack:volume-%s' % uuid.uuid4()
        if chap is True:
            chap = ('user-%s' % secrets.token_hex(4), secrets.token_hex(8))
        self.tgtadm('--mode', 'target', '--op', 'new', '--tid', str(tid),
                    '--targetname', iqn)
        target = Target(self, tid, iqn, tuple(chap) if chap else None)
        self.targets[tid] = target
        if initiators == 'ALL':
            self.tgtadm('--mode', 'target', '--op', 'bind', '--tid',
                        str(tid), '--initiator-address', 'ALL')
        else:
            for name in initiators:
                self.tgtadm('--mode', 'target', '--op', 'bind', '--tid',
                            str(tid), '--initiator-name', name)
        if chap:
            self.tgtadm('--mode', 'account', '--op', 'new', '--user',
                        chap[0], '--password', chap[1])
            self.tgtadm('--mode', 'account', '--op', 'bind', '--tid',
                        str(tid), '--user', chap[0])
        for size in luns:
            self.add_lun(target, size)
        return target

    def add_lun(self, target, size, lun=None):
        """A new LUN of ``size`` bytes backed by a sparse file; its number."""
        lun = lun or max(target.luns, default=0) + 1
        path = os.path.join(self.dir, 't%d-lun%d.img' % (target.tid, lun))
        with open(path, 'wb') as fh:
            fh.truncate(size)
        target.luns[lun] = path
        self._new_lu(target, lun)
        return lun

    def _new_lu(self, target, lun):
        self.tgtadm('--mode', 'logicalunit', '--op', 'new', '--tid',
                    str(target.tid), '--lun', str(lun), '--backing-store',
                    target.luns[lun], '--bstype', 'rdwr')

    def grow_lun(self, target, lun, size):
        """The LUN's file grows to ``size`` bytes and tgtd serves the new
        size (it reads a backing store's size when the LU is made)."""
        with open(target.luns[lun], 'r+b') as fh:
            fh.truncate(size)
        self.tgtadm('--mode', 'logicalunit', '--op', 'delete', '--tid',
                    str(target.tid), '--lun', str(lun))
        self._new_lu(target, lun)

    def remove_lun(self, target, lun):
        self.tgtadm('--mode', 'logicalunit', '--op', 'delete', '--tid',
                    str(target.tid), '--lun', str(lun))
        os.unlink(target.luns.pop(lun))

    def remove_target(self, target):
        """The target goes, even while initiators are logged in."""
        self.tgtadm('--mode', 'target', '--op', 'delete', '--force',
                    '--tid', str(target.tid))
        if target.chap:
            self.tgtadm('--mode', 'account', '--op', 'delete', '--user',
                        target.chap[0])
        for path in target.luns.values():
            os.unlink(path)
        target.luns.clear()
        del self.targets[target.tid]


def _free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _free_control_port():
    """A tgtd control port whose socket no running tgtd holds."""
    for _ in range(100):
        port = random.randint(10000, 32000)   # tgtd takes up to 32767
        if not os.path.exists('/var/run/tgtd/socket.%d.lock' % port):
            return port
    raise RuntimeError('no free tgtd control port')
