"""A real ovsdb-server for tests: dom0's Open vSwitch database.

``OvsdbServer(rundir)`` creates an Open_vSwitch database from the
installed schema, starts ``ovsdb-server`` on ``<rundir>/db.sock`` (the
socket ovs-vsctl uses with ``OVS_RUNDIR=<rundir>``, which is how xapisim
runs plugins: ``<dom0 root>/var/run/openvswitch``), and initialises it
(``ovs-vsctl --no-wait init``).  No ovs-vswitchd runs: bridges and
external_ids are database rows, all a plugin reads or writes here.  The
server is stopped by its pid, and its directory's files removed, at
clean-up.  Needs the Debian package openvswitch-switch (``./run tests``
installs it).
"""

import os
import shutil
import signal
import subprocess
import time

import fixtures

SCHEMA = '/usr/share/openvswitch/vswitch.ovsschema'
COMMANDS = ('ovsdb-tool', 'ovsdb-server', 'ovs-vsctl')


class OvsUnavailable(Exception):
    pass


def require():
    missing = [c for c in COMMANDS if shutil.which(c) is None]
    if missing or not os.path.exists(SCHEMA):
        raise OvsUnavailable(
            'these tests run a real ovsdb-server: install the Debian package '
            'openvswitch-switch (./run tests installs it as root); missing: '
            '%s' % ', '.join(missing or [SCHEMA]))


def _gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie is gone too (ovsdb-server --detach is not our child)
    try:
        with open('/proc/%d/stat' % pid) as fh:
            return fh.read().split(')')[-1].split()[0] == 'Z'
    except OSError:
        return True


class OvsdbServer(fixtures.Fixture):

    def __init__(self, rundir):
        super(OvsdbServer, self).__init__()
        self.rundir = rundir

    def _setUp(self):
        require()
        os.makedirs(self.rundir, exist_ok=True)
        db = os.path.join(self.rundir, 'conf.db')
        for name in ('conf.db', 'ovsdb-server.pid', 'db.sock'):
            path = os.path.join(self.rundir, name)
            if os.path.lexists(path):
                os.unlink(path)
        subprocess.run(['ovsdb-tool', 'create', db, SCHEMA], check=True,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        pidfile = os.path.join(self.rundir, 'ovsdb-server.pid')
        # --detach returns once the server listens
        subprocess.run(
            ['ovsdb-server', db,
             '--remote=punix:%s' % os.path.join(self.rundir, 'db.sock'),
             '--pidfile=%s' % pidfile,
             '--unixctl=%s' % os.path.join(self.rundir, 'ovsdb-server.ctl'),
             '--log-file=%s' % os.path.join(self.rundir, 'ovsdb-server.log'),
             '--detach', '--no-chdir'],
            check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            timeout=60)
        with open(pidfile) as fh:
            self.pid = int(fh.read().strip())
        self.addCleanup(self._stop)
        self.vsctl('--no-wait', 'init')

    def _stop(self):
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        while not _gone(self.pid):
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        for name in ('conf.db', 'db.sock', 'ovsdb-server.ctl',
                     'ovsdb-server.pid', '.conf.db.~lock~'):
            path = os.path.join(self.rundir, name)
            if os.path.lexists(path):
                os.unlink(path)

    def vsctl(self, *args):
        """ovs-vsctl on this database; its output, stripped."""
        proc = subprocess.run(
            ['ovs-vsctl', '--timeout=30'] + list(args),
            env=dict(os.environ, OVS_RUNDIR=self.rundir),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        if proc.returncode != 0:
            raise AssertionError('ovs-vsctl %s: %s' % (
                ' '.join(args), proc.stderr.decode()))
        return proc.stdout.decode().strip()

    def add_bridge(self, name, **columns):
        """A bridge row (``fail_mode='secure'``, ``datapath_type=...``)."""
        args = ['--no-wait', 'add-br', name]
        if columns:
            args += ['--', 'set', 'Bridge', name] + [
                '%s=%s' % item for item in sorted(columns.items())]
        self.vsctl(*args)

    def external_ids(self):
        """The Open_vSwitch row's external_ids, as a dict."""
        import json
        out = json.loads(self.vsctl('--format=json', '--columns=external_ids',
                                    'list', 'Open_vSwitch'))
        return dict(out['data'][0][0][1])

    def set_external_ids(self, **values):
        self.vsctl('--no-wait', 'set', 'Open_vSwitch', '.', *[
            'external_ids:%s="%s"' % (key.replace('_', '-'), value)
            for key, value in sorted(values.items())])
