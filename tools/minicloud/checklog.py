"""What the mini cloud's check scripts (smoke.py, cinder_check.py) share:
timed lines on stdout, and a count of the checks that failed."""

import sys
import time


class Checks(object):
    """Mixed into a check script's class: ``say`` a line, ``check`` a
    condition (counted in ``failed`` when false)."""

    failed = 0
    started = None

    def say(self, text):
        if self.started is None:
            self.started = time.time()
        sys.stdout.write('[%5.1fs] %s\n' % (time.time() - self.started, text))
        sys.stdout.flush()

    def check(self, ok, text):
        self.say('%s %s' % ('ok  ' if ok else 'FAIL', text))
        if not ok:
            self.failed += 1
        return ok
