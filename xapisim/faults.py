"""Fault injection: make the Nth call of a message fail or stall."""

import threading
import time

from xapisim.errors import XapiError


class Rule(object):
    def __init__(self, message, error=None, nth=1, times=1, delay=0.0):
        if not error and not delay:
            raise ValueError('a fault needs an error or a delay')
        self.message = message
        self.error = list(error or [])
        self.nth = int(nth)
        self.times = int(times)      # 0: every call from the Nth on
        self.delay = float(delay)
        self.seen = 0
        self.fired = 0

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
        with self.lock:
            self.rules = []

    def describe(self):
        with self.lock:
            return [r.describe() for r in self.rules]

    def before(self, message):
        """Called as a call of ``message`` is about to run."""
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
                time.sleep(rule.delay)
            if rule.error:
                raise XapiError(*rule.error)
