"""Waiting for xapi's tasks without holding a pooled session.

One ``event.from`` loop per Session watches the ``task`` class on a
connection of its own (started at the first asynchronous call), and hands
each task's final record to the thread waiting for it.  A wait therefore
costs no call of its own: ``Async.X`` and ``task.destroy`` are all an
asynchronous call makes, and the session pool stays free for short calls
while long tasks (image imports, migrations) run.

A task that ends before its waiter registers is kept for a while
(``KEEP``): the loop's token predates every task the driver creates, so
no final state is missed.  When the loop loses xapi (a restart drops
sessions and tasks), it reads every task afresh and fails the waits of
tasks that are gone, at once, with TASK_LOST.  As a safety net a waiter
that hears nothing for ``CHECK_EVERY`` seconds reads its task's record
itself (one short call).
"""

import threading
import time

from nova import exception
from oslo_log import log as logging

from nova_xen import errors

LOG = logging.getLogger(__name__)

WAIT = 30.0           # seconds one event.from may block
CHECK_EVERY = 30.0    # a waiter with no news reads its task itself
KEEP = 120.0          # seconds an unclaimed final record is kept
BACKOFF_MAX = 10.0
FINAL = ('success', 'failure', 'cancelled')

LOST = object()       # the task vanished (xapi restarted)


class _Waiter(object):
    def __init__(self, on_progress):
        self.done = threading.Event()
        self.record = None            # the final record, or LOST
        self.on_progress = on_progress


class TaskWatcher(object):
    """Final records of tasks, delivered to the threads waiting for them."""

    def __init__(self, session):
        self.session = session
        self._lock = threading.Lock()
        self._waiters = {}        # task ref -> _Waiter
        self._finished = {}       # task ref -> (record or LOST, when)
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._xenapi = None
        self._thread = None
        self._failure = None
        self.resyncs = 0

    # -- life ------------------------------------------------------------

    def ensure_started(self):
        """Start the loop once; return when its first token is known, so
        that every task created afterwards is seen."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name='nova-xen-task-watcher',
                    daemon=True)
                self._thread.start()
        self._ready.wait(self.session.call_timeout)

    def stop(self):
        self._stop.set()
        self._drop_connection(logout=True)
        with self._lock:
            waiters = list(self._waiters.values())
        for waiter in waiters:
            waiter.done.set()

    @property
    def running(self):
        return self._ready.is_set() and not self._stop.is_set()

    # -- waiting -----------------------------------------------------------

    def wait(self, task, timeout, on_progress=None):
        """The final record of ``task``; LOST if xapi lost it; None when
        ``timeout`` passed first."""
        waiter = self._register(task, on_progress)
        try:
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                if waiter.done.wait(min(left, CHECK_EVERY)):
                    if self._stop.is_set() and waiter.record is None:
                        raise errors.XenAPIConnectionError(
                            url=self.session.url,
                            reason='the session pool is closed')
                    return waiter.record
                # nothing heard: the loop may be reconnecting; ask xapi
                record = self._read(task)
                if record is LOST or record['status'] in FINAL:
                    return record
        finally:
            self.forget(task)

    def forget(self, task):
        with self._lock:
            self._waiters.pop(task, None)
            self._finished.pop(task, None)

    def _register(self, task, on_progress):
        waiter = _Waiter(on_progress)
        with self._lock:
            known = self._finished.pop(task, None)
            if known is not None:
                waiter.record = known[0]
                waiter.done.set()
            else:
                self._waiters[task] = waiter
        return waiter

    def _read(self, task):
        try:
            return self.session.call('task.get_record', task)
        except exception.NotFound:
            return LOST

    # -- the loop ----------------------------------------------------------

    def _connect(self):
        if self._xenapi is None:
            xenapi = self.session.dedicated()
            xenapi.transport.set_timeout(WAIT + self.session.call_timeout)
            # a replayed event.from would carry a token of the old xapi
            xenapi.abort_on_renewal = True
            self._xenapi = xenapi
        return self._xenapi.xenapi

    def _drop_connection(self, logout=False):
        xenapi, self._xenapi = self._xenapi, None
        if xenapi is None:
            return
        if logout:
            try:
                xenapi.xenapi.session.logout()
            except Exception:
                pass
        xenapi.transport.close()

    def _run(self):
        token = None
        delay = 0.5
        while not self._stop.is_set():
            try:
                x = self._connect()
                if token is None:
                    token = self._resync(x)
                    self._ready.set()
                    delay = 0.5
                    continue
                batch = getattr(x.event, 'from')(['task'], token, WAIT)
                token = batch['token']
                self._deliver(batch['events'])
            except Exception as exc:
                if self._stop.is_set():
                    return
                # once per outage at WARNING, then quietly until it is back
                log = LOG.warning if delay == 0.5 else LOG.debug
                log('task watcher lost its connection to xapi (%s); '
                    'reconnecting in %.1f s', errors.why(exc), delay)
                self._drop_connection()
                self._stop.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                token = None

    def _resync(self, x):
        """Every task afresh (token ''): waits on tasks xapi no longer
        knows fail now; finished ones are delivered."""
        batch = getattr(x.event, 'from')(['task'], '', 0.0)
        present = set()
        for event in batch['events']:
            if event['operation'] != 'del':
                present.add(event['ref'])
        self._deliver(batch['events'])
        with self._lock:
            gone = [ref for ref in self._waiters if ref not in present]
        for ref in gone:
            self._settle(ref, LOST)
        self.resyncs += 1
        return batch['token']

    def _deliver(self, events):
        now = time.monotonic()
        for event in events:
            if event['operation'] == 'del':
                self._settle(event['ref'], LOST, now)
                continue
            record = event['snapshot']
            if record['status'] in FINAL:
                self._settle(event['ref'], record, now)
                continue
            with self._lock:
                waiter = self._waiters.get(event['ref'])
            if waiter is not None and waiter.on_progress is not None:
                waiter.on_progress(record.get('progress'))
        with self._lock:
            stale = [ref for ref, (_, when) in self._finished.items()
                     if now - when > KEEP]
            for ref in stale:
                del self._finished[ref]

    def _settle(self, ref, record, now=None):
        with self._lock:
            waiter = self._waiters.pop(ref, None)
            if waiter is None:
                if record is LOST:
                    # a task destroyed (ours, or another client's): keep
                    # only what a waiter might still ask for
                    if ref in self._finished:
                        return
                self._finished[ref] = (record, now or time.monotonic())
                return
        waiter.record = record
        waiter.done.set()
