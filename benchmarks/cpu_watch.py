"""CPU time and peak memory of the processes a benchmark runs, read from
/proc while they run."""

import os
import threading

TICK = os.sysconf('SC_CLK_TCK')


def cpu_seconds(pid, children=False, task_of=None):
    """CPU seconds a process used (with ``children``: and its children
    it has waited for, as xapisim waits for every plugin process); of the
    thread ``pid`` of the process ``task_of``."""
    path = '/proc/%d/stat' % pid if task_of is None else \
        '/proc/%d/task/%d/stat' % (task_of, pid)
    with open(path) as fh:
        fields = fh.read().rsplit(')', 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])        # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])   # cutime, cstime
    return ticks / TICK


def child_running(needle):
    """The pid of this process's child whose command line has needle."""
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % pid) as fh:
                ppid = int(fh.read().rsplit(')', 1)[1].split()[1])
            with open('/proc/%s/cmdline' % pid, 'rb') as fh:
                cmdline = fh.read()
        except OSError:
            continue
        if ppid == os.getpid() and needle in cmdline:
            return int(pid)
    raise RuntimeError('no child process runs %r' % needle)


class Pipeline(object):
    """CPU seconds the processes of a path used, together: xapisim (the
    sink, and the plugin processes it runs), the Glance stand-in, and the
    path's own when it runs elsewhere (nova-compute's)."""

    def __init__(self, xapisim_pid, glance_pid, plugins):
        self.pids = ((xapisim_pid, plugins), (glance_pid, False))
        self.start = self._now()

    def _now(self):
        return sum(cpu_seconds(pid, children) for pid, children in self.pids)

    def used(self):
        return self._now() - self.start


class PluginWatch(object):
    """Peak RSS (VmHWM) and CPU seconds of the processes running
    ``needle`` and of their busiest thread, read from /proc while they
    run: new ones are looked for every 50 ms, known ones read every 10 ms
    (the watching must not take the CPU the measured path needs)."""

    def __init__(self, needle):
        self.needle = needle.encode()
        self.peak = 0
        self.cpu = {}              # pid -> CPU seconds last seen
        self.threads = {}          # (pid, tid) -> CPU seconds last seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _find(self):
        for pid in os.listdir('/proc'):
            if not pid.isdigit() or int(pid) in self.cpu:
                continue
            try:
                with open('/proc/%s/cmdline' % pid, 'rb') as fh:
                    if self.needle in fh.read():
                        self.cpu[int(pid)] = 0.0
            except OSError:
                pass

    def _read(self, pid):
        try:
            with open('/proc/%d/status' % pid) as fh:
                for line in fh:
                    if line.startswith('VmHWM:'):
                        self.peak = max(self.peak, int(line.split()[1]))
            with open('/proc/%d/stat' % pid) as fh:
                fields = fh.read().rsplit(')', 1)[1].split()
            # utime and stime, fields 14 and 15 of stat
            self.cpu[pid] = (int(fields[11]) + int(fields[12])) / TICK
            for tid in os.listdir('/proc/%d/task' % pid):
                self.threads[(pid, tid)] = cpu_seconds(
                    int(tid), task_of=pid)
        except (OSError, IndexError, ValueError):
            pass

    def _poll(self):
        rounds = 0
        while not self._stop.wait(0.01):
            if rounds % 5 == 0:
                self._find()
            rounds += 1
            for pid in list(self.cpu):
                self._read(pid)

    def stop(self):
        """(peak RSS MiB, CPU seconds of all the processes, of the busiest
        thread)."""
        self._stop.set()
        self._thread.join()
        return (self.peak / 1024.0, sum(self.cpu.values()),
                max(self.threads.values() or [0.0]))
