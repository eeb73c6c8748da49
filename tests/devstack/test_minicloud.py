"""tools/minicloud's process bookkeeping: ``down`` stops exactly what
``up`` started, never a process that reused a pid."""

import os
import shutil
import subprocess
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
COMMON = os.path.join(os.path.dirname(os.path.dirname(HERE)), 'tools',
                      'minicloud', 'common.sh')


class PidFileTest(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='minicloud-test-')
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.others = []
        self.addCleanup(self._reap)

    def _reap(self):
        for proc in self.others:
            proc.kill()
            proc.wait()

    def bash(self, script):
        proc = subprocess.run(
            ['bash', '-c', 'source "$COMMON"\n' + script],
            env=dict(os.environ, COMMON=COMMON, MINICLOUD_DIR=self.dir),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            universal_newlines=True, timeout=60)
        return proc.returncode, proc.stdout.strip(), proc.stderr

    def alive(self, pid):
        try:
            with open('/proc/%d/stat' % pid) as fh:
                return fh.read().split(') ')[-1].split()[0] != 'Z'
        except FileNotFoundError:
            return False

    def test_spawn_then_stop(self):
        rc, out, err = self.bash('mc_spawn sleeper "$MINICLOUD_DIR" '
                                 'sleep 60\nmc_pid sleeper')
        self.assertEqual(0, rc, err)
        pid = int(out)
        self.assertTrue(self.alive(pid))
        with open(os.path.join(self.dir, 'run', 'sleeper.pid')) as fh:
            recorded_pid, started = fh.read().split()
        self.assertEqual(pid, int(recorded_pid))
        rc, _, err = self.bash('mc_stop sleeper')
        self.assertEqual(0, rc, err)
        deadline = time.time() + 60
        while self.alive(pid) and time.time() < deadline:
            time.sleep(0.1)
        self.assertFalse(self.alive(pid))
        self.assertFalse(os.path.exists(
            os.path.join(self.dir, 'run', 'sleeper.pid')))

    def test_a_reused_pid_is_not_ours(self):
        # a live process that ``up`` did not start, under a stale pid file
        # (its pid with another start time, as after a reboot)
        other = subprocess.Popen(['sleep', '60'])
        self.others.append(other)
        os.makedirs(os.path.join(self.dir, 'run'))
        with open(os.path.join(self.dir, 'run', 'n-api.pid'), 'w') as fh:
            fh.write('%d 1\n' % other.pid)
        rc, out, _ = self.bash('mc_pid n-api')
        self.assertEqual(1, rc)
        self.assertEqual('', out)
        rc, _, err = self.bash('mc_stop n-api')
        self.assertEqual(0, rc, err)
        # mc_stop returns once what it signalled is gone: had it signalled
        # this process, it would be over (a zombie of ours) by now
        self.assertIsNone(other.poll())
        # a pid file without a start time (another tool's) is not ours
        with open(os.path.join(self.dir, 'run', 'n-api.pid'), 'w') as fh:
            fh.write('%d\n' % other.pid)
        self.assertEqual(1, self.bash('mc_pid n-api')[0])
