"""xapisim.netns.stop_all and continue_all: what a paused guest does to
its processes, also to one that exits as it is stopped (it stays a
zombie while its parent, stopped too, cannot reap it)."""

import os
import signal
import subprocess
import threading
import unittest
from unittest import mock

from xapisim import netns


class StopAllTest(unittest.TestCase):

    def sleeper(self):
        proc = subprocess.Popen(['sleep', '600'])
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)
        return proc

    def stop_all(self, pids):
        """stop_all in a thread with a pause far longer than this test may
        take: one that waits for a process which never stops waits all of
        it."""
        result = {}
        stopper = threading.Thread(target=lambda: result.update(
            stopped=netns.stop_all(lambda: pids, timeout=3600)))
        stopper.daemon = True
        stopper.start()
        stopper.join(300)
        self.assertFalse(stopper.is_alive(), 'stop_all still waits')
        return result['stopped']

    def test_stops_and_continues(self):
        procs = [self.sleeper(), self.sleeper()]
        stopped = self.stop_all([p.pid for p in procs])
        self.assertEqual({p.pid for p in procs}, set(stopped))
        self.assertEqual(['T', 'T'], [netns.state(p.pid) for p in procs])
        netns.continue_all(stopped)
        for proc in procs:
            self.assertIn(netns.state(proc.pid), ('S', 'R'))

    def test_a_process_that_exits_as_it_is_stopped(self):
        exiting, running = self.sleeper(), self.sleeper()
        kill = os.kill

        def exits_instead(pid, sig):
            # the SIGSTOP reaches a process already on its way out: it
            # dies, and its parent (this test, not reaping yet) keeps it
            # a zombie
            if pid == exiting.pid and sig == signal.SIGSTOP:
                sig = signal.SIGKILL
            kill(pid, sig)
        with mock.patch.object(netns.os, 'kill', exits_instead):
            stopped = self.stop_all([exiting.pid, running.pid])
        self.assertEqual('Z', netns.state(exiting.pid))
        self.assertEqual('T', netns.state(running.pid))
        netns.continue_all(stopped)
        self.assertIn(netns.state(running.pid), ('S', 'R'))
