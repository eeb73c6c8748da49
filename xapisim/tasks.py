"""Tasks: Async.* calls run in the background and report through a task."""

import threading
import traceback

from xapisim import wire
from xapisim.db import Killed, new_ref, now_datetime
from xapisim.errors import XapiError
from xapisim.rpc import Context

PENDING = 'pending'


class Tasks(object):
    def __init__(self, pool):
        self.pool = pool
        self.db = pool.db
        self._cancel = set()
        self._destroy_when_done = set()
        self._lock = threading.Lock()

    def create(self, host, session, label, description='', cancellable=True):
        return self.db.create('task', {
            'name_label': label,
            'name_description': description,
            'status': PENDING,
            'created': now_datetime(),
            'resident_on': host.ref,
            'progress': 0.0,
            'type': '<none/>',
            'allowed_operations': ['cancel'] if cancellable else [],
            'other_config': {},
        })

    def run_async(self, host, session, msg, fn, values):
        task = self.create(host, session, 'Async.' + msg.wire_name)
        ctx = Context(self.pool, host, session, task=task, method=msg.wire_name)
        epoch = getattr(self.db.local, 'epoch', None)
        if epoch is None:
            epoch = self.db.epoch
        thread = threading.Thread(
            target=self._run, args=(ctx, msg, fn, values, epoch),
            name='task-%s' % msg.wire_name, daemon=True)
        thread.start()
        return task

    def _run(self, ctx, msg, fn, values, epoch):
        # the task dies with the xapi that created it
        self.db.enter_epoch(epoch)
        try:
            value = self.pool.api.run(ctx, msg, fn, values)
        except Killed:
            return          # a xapi restart: the task is gone already
        except XapiError as exc:
            self.fail(ctx.task, exc.description)
        except Exception as exc:  # a simulator bug must still end the task
            traceback.print_exc()
            self.fail(ctx.task, ['INTERNAL_ERROR', repr(exc)])
        else:
            self.succeed(ctx.task, value)

    def succeed(self, task, wire_value):
        self._finish(task, status='success',
                     result=wire.value_text(wire_value))

    def fail(self, task, description):
        status = 'cancelled' if description[0] == 'TASK_CANCELLED' else 'failure'
        self._finish(task, status=status, error_info=[str(d) for d in description])

    def _finish(self, task, progress=1.0, **fields):
        with self.db.lock:
            if not self.db.exists('task', task):
                return   # destroyed by a xapi restart
            if progress is not None:
                fields['progress'] = progress
            fields.update(finished=now_datetime(), allowed_operations=[])
            self.db.set('task', task, **fields)
            with self._lock:
                self._cancel.discard(task)
                destroy = task in self._destroy_when_done
                self._destroy_when_done.discard(task)
            if destroy:
                self.db.destroy('task', task)

    def set_status(self, task, status):
        """task.set_status: a client finishing a task it created."""
        with self.db.lock:
            self.db.row('task', task)
            if status == PENDING:
                self.db.set('task', task, status=status)
            else:
                self._finish(task, status=status, progress=None)

    def cancel(self, task):
        """Ask a task to stop, as xapi does: its status stays ``pending``
        and ``current_operations`` shows the request until the work
        notices and fails with ``TASK_CANCELLED``."""
        with self.db.lock:
            row = self.db.row('task', task)
            ops = dict(row['current_operations'])
            ops[new_ref()] = 'cancel'
            self.db.set('task', task, current_operations=ops)
            if row['status'] == PENDING:
                with self._lock:
                    self._cancel.add(task)

    def cancel_requested(self, task):
        with self._lock:
            return task in self._cancel

    def destroy(self, task):
        """A finished task goes at once; a pending one when it finishes."""
        with self.db.lock:
            row = self.db.row('task', task)
            if row['status'] == PENDING:
                ops = dict(row['current_operations'], task='destroy')
                self.db.set('task', task, current_operations=ops)
                with self._lock:
                    self._destroy_when_done.add(task)
                return
            self.db.destroy('task', task)

    def kill_all(self):
        """A xapi restart: every task vanishes, pending or not (xapi keeps
        tasks in memory only: its datamodel does not persist them)."""
        with self.db.lock:
            for ref in self.db.refs('task'):
                self.db.destroy('task', ref)
        with self._lock:
            self._cancel.clear()
            self._destroy_when_done.clear()
