"""Fault injection: make the Nth call of a message fail or stall.

A rule names an XML-RPC message (``VM.start``), consulted as a call of it
arrives, or a point inside an operation (``VM.migrate_send/copy``),
consulted each time the operation passes that point: the operation then
fails there with the rule's error (undoing what it had done, as xapi
does), or stalls there for the rule's delay (a stall that task.cancel
interrupts).  The points are listed in ``POINTS``.
"""

import threading

from xapisim.errors import XapiError

# Points inside operations, named <class>.<message>/<point>.  A rule for
# one is consulted by the pool that runs the operation (for a migration
# across pools: the source's).
POINTS = {
    'VM.pool_migrate/memory':
        'once per VM moved by VM.pool_migrate or host.evacuate, half-way '
        'through the copy of its memory, before the domain switches hosts',
    'VM.migrate_send/copy':
        'once per disk VM.migrate_send copies, after its bytes are copied '
        'and before the next disk (the Nth time: after the Nth disk)',
    'VM.migrate_send/memory':
        'once per running VM moved by VM.migrate_send, half-way through the '
        'copy of its memory: after its disks are copied (and, across pools, '
        'its record made at the destination)',
}


class Rule(object):
    def __init__(self, message, error=None, nth=1, times=1, delay=0.0):
        if not error and not delay:
            raise ValueError('a fault needs an error or a delay')
        if '/' in message and message not in POINTS:
            raise ValueError('no fault point %s (the points: %s)'
                             % (message, ', '.join(sorted(POINTS))))
        self.message = message
        self.error = list(error or [])
        self.nth = int(nth)
        self.times = int(times)      # 0: every call from the Nth on
        self.delay = float(delay)
        self.seen = 0
        self.fired = 0
        # set when the rule is cleared: a stall of a call ends there
        self.cleared = threading.Event()

    def describe(self):
        return {'message': self.message, 'error': self.error, 'nth': self.nth,
                'times': self.times, 'delay': self.delay, 'seen': self.seen,
                'fired': self.fired}


class Faults(object):
    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []

    def add(self, **kwargs):
        rule = Rule(**kwargs)
        with self.lock:
            self.rules.append(rule)
        return rule

    def clear(self):
        """No rule any more; calls stalled by a delay go on at once (and
        fail no more), so that a test can hold a call for as long as it
        needs and release it."""
        with self.lock:
            cleared, self.rules = self.rules, []
        for rule in cleared:
            rule.cleared.set()

    def describe(self):
        with self.lock:
            return [r.describe() for r in self.rules]

    def before(self, message, sleep=None):
        """Called as a call of ``message`` is about to run, or as an
        operation passes the point ``message``; ``sleep`` lets the
        operation's own clock (one that honours task.cancel) run a
        delay.  Without it, a delay ends early when the rules are
        cleared."""
        fire = []
        with self.lock:
            for rule in self.rules:
                if rule.message != message:
                    continue
                rule.seen += 1
                if rule.seen < rule.nth:
                    continue
                if rule.times and rule.fired >= rule.times:
                    continue
                rule.fired += 1
                fire.append(rule)
        for rule in fire:
            if rule.delay:
                if sleep is None:
                    rule.cleared.wait(rule.delay)
                else:
                    sleep(rule.delay)
            if rule.error and not rule.cleared.is_set():
                raise XapiError(*rule.error)
