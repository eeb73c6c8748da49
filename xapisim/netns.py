"""Network namespaces, commands and daemons of a simulated dom0 network.

Every world that asks for real dom0 networking gets a run prefix
(``xsim-<6 hex>-``): every namespace it makes is named with it, so that
two worlds (and a mini cloud) never collide, and everything of a run can
be found again.  A run writes a registry entry under ``/run/xapisim``
(its owner's pid and start time, the daemons' pid files); a later run
sweeps the entries whose owner is gone (a test that crashed, a simulator
that was killed): it kills the processes in their namespaces and the
daemons of their pid files, and deletes the namespaces.
"""

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import time
import uuid

NETNS_DIR = '/run/netns'
REGISTRY_DIR = '/run/xapisim'
PREFIX_ROOT = 'xsim-'
CLONE_NEWNET = 0x40000000
# Debian packages behind the commands, for the error that names them
PACKAGES = {'ip': 'iproute2', 'ethtool': 'ethtool',
            'ovs-vsctl': 'openvswitch-switch',
            'ovsdb-server': 'openvswitch-switch',
            'ovsdb-tool': 'openvswitch-switch',
            'ovs-vswitchd': 'openvswitch-switch'}
COMMAND_TIMEOUT = 120

_libc = ctypes.CDLL(None, use_errno=True)


class Dom0NetError(RuntimeError):
    """The machine cannot give the simulated dom0s real networking, or a
    command that builds it failed: the message says which and why."""


def requirements_problem():
    """Why real dom0 networking cannot run here (None: it can)."""
    problems = []
    if os.geteuid() != 0:
        problems.append('it must run as root (it creates network '
                        'namespaces and veth pairs)')
    missing = sorted({pkg for tool, pkg in PACKAGES.items()
                      if shutil.which(tool) is None})
    if missing:
        problems.append('missing the Debian packages %s' % ' '.join(missing))
    if not problems:
        return None
    return ('xapisim cannot give its hosts real dom0 networking '
            '(--dom0-network ovs): %s' % '; '.join(problems))


def run(argv, check=True, env=None, timeout=COMMAND_TIMEOUT):
    """Run a command; its stdout.  A failure raises Dom0NetError with the
    command and what it said."""
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Dom0NetError('%s: %s' % (' '.join(argv), exc))
    if check and proc.returncode != 0:
        raise Dom0NetError('%s: exit %d: %s' % (
            ' '.join(argv), proc.returncode,
            proc.stderr.decode(errors='replace').strip()))
    return proc.stdout.decode(errors='replace')


def ip(netns, *args, **kwargs):
    """``ip -n <netns> ...`` (``netns`` None: this namespace)."""
    argv = ['ip'] + (['-n', netns] if netns else []) + list(args)
    return run(argv, **kwargs)


def ethtool_tx_off(netns, device):
    """No transmit checksum offload: the userspace datapath reads frames
    with AF_PACKET, and would forward TCP/UDP with partial checksums."""
    run(['ip', 'netns', 'exec', netns, 'ethtool', '-K', device, 'tx', 'off'])


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, 'setns: %s' % os.strerror(err))


@contextlib.contextmanager
def inside(netns):
    """The block runs with this thread in network namespace ``netns``."""
    own = os.open('/proc/thread-self/ns/net', os.O_RDONLY)
    try:
        target = os.open(os.path.join(NETNS_DIR, netns), os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(target)
    finally:
        os.close(own)


def add_netns(name, ipv6=True):
    """A new namespace with its loopback up (``ipv6`` False: none, so
    that its devices stay silent, as XCP-ng's dom0 without IPv6)."""
    run(['ip', 'netns', 'add', name])
    ip(name, 'link', 'set', 'lo', 'up')
    if not ipv6:
        with inside(name):
            for conf in ('all', 'default'):
                with open('/proc/sys/net/ipv6/conf/%s/disable_ipv6' % conf,
                          'w') as fh:
                    fh.write('1')


def list_netns(prefix):
    try:
        names = os.listdir(NETNS_DIR)
    except OSError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


def delete_netns(name):
    run(['ip', 'netns', 'del', name], check=False)


# ---------------------------------------------------------------- processes


def _start_time(pid):
    """The process's start time (clock ticks since boot), None if it is
    gone or a zombie: with its pid, it names one process for good."""
    try:
        with open('/proc/%d/stat' % pid) as fh:
            stat = fh.read()
    except OSError:
        return None
    fields = stat[stat.rindex(')') + 2:].split()
    if fields[0] in ('Z', 'X'):
        return None
    return int(fields[19])


def alive(pid):
    return _start_time(pid) is not None


def pids_in(netns_names):
    """Processes whose network namespace is one of these."""
    wanted = set()
    for name in netns_names:
        try:
            st = os.stat(os.path.join(NETNS_DIR, name))
        except OSError:
            continue
        wanted.add((st.st_dev, st.st_ino))
    found = []
    if not wanted:
        return found
    for entry in os.listdir('/proc'):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            st = os.stat('/proc/%s/ns/net' % entry)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in wanted:
            found.append(int(entry))
    return found


def _pid_from(pidfile):
    """The pid a daemon wrote, if that process is still the daemon started
    with this pid file (a pid can be reused once its process is gone)."""
    try:
        with open(pidfile) as fh:
            pid = int(fh.read().strip() or 0)
        with open('/proc/%d/cmdline' % pid, 'rb') as fh:
            cmdline = fh.read().decode(errors='replace')
    except (OSError, ValueError):
        return None
    return pid if pidfile in cmdline else None


def kill_all(pids, timeout=15.0):
    """SIGTERM, then SIGKILL what is still there after ``timeout``."""
    pids = [p for p in set(pids) if p and alive(p)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if alive(p)]
            if pids:
                time.sleep(0.02)
        if not pids:
            return


def clean_up(prefix, pidfiles=()):
    """Kill the daemons of ``pidfiles`` and every process in the
    namespaces named with ``prefix``; delete those namespaces."""
    names = list_netns(prefix)
    pids = [_pid_from(p) for p in pidfiles] + pids_in(names)
    kill_all(pids)
    for name in names:
        delete_netns(name)


def clean_up_netns(name):
    """Kill the processes in namespace ``name``, then delete it."""
    kill_all(pids_in([name]))
    delete_netns(name)


# ---------------------------------------------------------------- runs


class Run(object):
    """One world's share of the machine: its prefix and registry entry."""

    def __init__(self):
        sweep()
        os.makedirs(REGISTRY_DIR, exist_ok=True)
        while True:
            self.prefix = '%s%s-' % (PREFIX_ROOT, uuid.uuid4().hex[:6])
            self.path = os.path.join(REGISTRY_DIR, self.prefix[:-1] + '.json')
            if not list_netns(self.prefix) and not os.path.exists(self.path):
                break
        self.pidfiles = []
        self._write()

    def _write(self):
        entry = {'pid': os.getpid(), 'start': _start_time(os.getpid()),
                 'prefix': self.prefix, 'pidfiles': self.pidfiles}
        tmp = self.path + '.tmp'
        with open(tmp, 'w') as fh:
            json.dump(entry, fh)
        os.rename(tmp, self.path)

    def name(self, suffix):
        return self.prefix + suffix

    def add_pidfile(self, path):
        self.pidfiles.append(path)
        self._write()

    def close(self):
        clean_up(self.prefix, self.pidfiles)
        try:
            os.unlink(self.path)
        except OSError:
            pass


def sweep():
    """Remove what runs whose owner has gone left behind."""
    try:
        entries = os.listdir(REGISTRY_DIR)
    except OSError:
        return
    for entry in entries:
        if not entry.endswith('.json'):
            continue
        path = os.path.join(REGISTRY_DIR, entry)
        try:
            with open(path) as fh:
                run_entry = json.load(fh)
        except (OSError, ValueError):
            continue
        if _start_time(run_entry.get('pid', 0)) == run_entry.get('start'):
            continue        # its owner still runs
        prefix = run_entry.get('prefix', '')
        if not prefix.startswith(PREFIX_ROOT):
            continue
        clean_up(prefix, run_entry.get('pidfiles', []))
        try:
            os.unlink(path)
        except OSError:
            pass
