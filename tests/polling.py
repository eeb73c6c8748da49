"""Waiting in tests for a state, never for a guessed time."""

import time


def until(check, what, seconds=60, interval=0.02):
    """The first true value of ``check()``, tried every ``interval`` s;
    AssertionError saying ``what`` did not happen if ``seconds`` pass
    first (a safety net: a test that needs it has failed)."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError('%s: not within %d s' % (what, seconds))
        time.sleep(interval)
