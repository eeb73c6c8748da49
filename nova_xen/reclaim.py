"""Leftovers of failed clean-ups, reclaimed while nova-compute runs.

A delete, a failed spawn or a rescue removes each object on its own; when
xapi or dom0 refuses one (a disk still in use, xapi restarting, a plugin
failing), the object is written down in ``Leftovers`` (the session's) and
the ``Reclaimer`` tries again every ``[xenserver]reclaim_interval``
seconds until it is gone: no leftover waits for the next start of
nova-compute.  Each pass also looks for what no failure reported:
isolation rule tables in this host's dom0 whose VIF no longer exists.

Steps that must happen but may happen later go the same way
(``Deferred``, the session's too): after a live migration has moved the
VM, a step that fails (its affinity, its isolation rules, the source
letting go of a volume's target) must not fail the migration in Nova; it
is logged and retried by every pass until it is done, or has nothing
left to do.

Each object is logged once when it is left over and once when it is
reclaimed (or found gone); failed retries in between log at debug level.
"""

import threading

from nova import exception
from oslo_log import log as logging

from nova_xen.conf import CONF
from nova_xen import errors
from nova_xen import power

LOG = logging.getLogger(__name__)

# kinds of leftovers, in the order a pass retries them: a detached
# volume's VBD (its SR goes after it), a VM (its destruction frees its
# disks), then disks, then tasks
VBD, VM, VDI, TASK, SECRET = 'VBD', 'VM', 'VDI', 'task', 'secret'
_ORDER = (VBD, VM, VDI, TASK, SECRET)


def destroy(session, kind, ref):
    """``<kind>.destroy``; an object xapi will not destroy now is written
    down for the reclaimer (one that is gone already is fine)."""
    try:
        session.call('%s.destroy' % kind, ref)
    except exception.NotFound:
        pass
    except Exception as exc:
        session.leftovers.add(kind, ref, exc)


class Leftovers(object):
    """What could not be removed: {(kind, ref): why}.  Thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._items = {}

    def add(self, kind, ref, why):
        with self._lock:
            new = (kind, ref) not in self._items
            self._items[(kind, ref)] = str(why)
        if new:
            LOG.warning('could not remove %s %s (%s); nova-xen tries again '
                        'every %d s', kind, ref, why,
                        CONF.xenserver.reclaim_interval)

    def items(self):
        with self._lock:
            return sorted(self._items.items(),
                          key=lambda item: _ORDER.index(item[0][0]))

    def refs(self, kind):
        """The refs of one kind still waiting."""
        with self._lock:
            return {ref for k, ref in self._items if k == kind}

    def discard(self, kind, ref):
        with self._lock:
            self._items.pop((kind, ref), None)

    def __len__(self):
        with self._lock:
            return len(self._items)


class Deferred(object):
    """Steps to retry until they succeed: {key: (what, action, why)}.
    Thread-safe.  An action that finds nothing to do (its object gone, or
    no longer this compute's) returns, and is done."""

    def __init__(self):
        self._lock = threading.Lock()
        self._items = {}

    def attempt(self, key, what, action, retry=None, instance=None):
        """``action()`` now; if it fails, the reclaimer calls ``retry``
        (``action`` by default) every pass until it succeeds.  A step of
        the same ``key`` still waiting is replaced.  True if done now."""
        with self._lock:
            self._items.pop(key, None)
        try:
            action()
        except exception.NotFound:
            return True
        except Exception as exc:
            why = errors.why(exc)
            with self._lock:
                self._items[key] = (what, retry or action, why)
            LOG.warning('could not %s (%s); nova-xen tries again every %d s',
                        what, why, CONF.xenserver.reclaim_interval,
                        instance=instance)
            return False
        return True

    def run(self):
        """One retry of every waiting step: [('step', what)] of those now
        done."""
        with self._lock:
            items = sorted(self._items.items(), key=lambda item: str(
                item[0]))
        done = []
        for key, (what, action, why) in items:
            try:
                action()
            except exception.NotFound:
                pass
            except Exception as exc:
                LOG.debug('still cannot %s: %s', what, errors.why(exc))
                continue
            with self._lock:
                if self._items.get(key, (None, action))[1] is not action:
                    continue        # attempted anew meanwhile: that one's
                self._items.pop(key, None)
            LOG.info('done now: %s (it failed earlier: %s)', what, why)
            done.append(('step', what))
        return done

    def __len__(self):
        with self._lock:
            return len(self._items)


class Reclaimer(object):
    """Retries the session's leftovers and sweeps orphaned rule tables,
    from a thread of its own, every ``[xenserver]reclaim_interval`` s."""

    def __init__(self, session, isolation):
        self.session = session
        self.isolation = isolation
        self._stop = threading.Event()
        self._thread = None
        self.passes = 0
        # more sweeps, each returning [(kind, ref)] it reclaimed
        self.sweeps = []

    def start(self):
        self._thread = threading.Thread(target=self._run,
                                        name='nova-xen-reclaimer',
                                        daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()

    def _run(self):
        while not self._stop.wait(CONF.xenserver.reclaim_interval):
            try:
                self.run_once()
            except Exception:   # never let the thread die
                LOG.exception('reclaiming leftovers failed')

    def run_once(self):
        """One pass; returns what it reclaimed: [(kind, ref)]."""
        done = []
        for (kind, ref), why in self.session.leftovers.items():
            try:
                _REMOVE[kind](self, ref)
            except exception.NotFound:
                LOG.info('%s %s left over earlier (%s) is gone', kind, ref,
                         why)
            except Exception as exc:
                LOG.debug('%s %s still cannot be removed: %s', kind, ref,
                          exc)
                continue
            else:
                LOG.info('reclaimed %s %s, left over earlier (%s)', kind,
                         ref, why)
            self.session.leftovers.discard(kind, ref)
            done.append((kind, ref))
        done.extend(self.session.deferred.run())
        done.extend(self._orphaned_rules())
        for sweep in self.sweeps:
            try:
                done.extend(sweep())
            except Exception:
                LOG.exception('a reclaimer sweep failed')
        self.passes += 1
        return done

    def _remove_vbd(self, vbd):
        # a detached volume's VBD: power.start keeps it from being plugged
        # again, but unplug it if something did
        if self.session.call('VBD.get_currently_attached', vbd):
            self.session.call('VBD.unplug', vbd)
        self.session.call('VBD.destroy', vbd)

    def _remove_vm(self, vm):
        power.halt(self.session, vm)
        self.session.call('VM.destroy', vm)

    def _remove_vdi(self, vdi):
        self.session.call('VDI.destroy', vdi)

    def _remove_task(self, task):
        self.session.call('task.destroy', task)

    def _orphaned_rules(self):
        """Rule tables in this host's dom0 whose VIF no longer exists (its
        removal failed, or dom0 was unreachable when the VIF went) or whose
        VM runs elsewhere (a migration could not remove them here)."""
        removed = []
        try:
            tables = self.isolation.rules()
        except Exception as exc:
            LOG.debug('cannot list the isolation rules: %s', exc)
            return removed
        for vif_uuid in tables:
            why = 'which no longer exists'
            try:
                vif = self.session.call('VIF.get_by_uuid', vif_uuid)
                vm = self.session.call('VIF.get_VM', vif)
                if self.session.call('VM.get_resident_on', vm) == \
                        self.isolation.host.ref:
                    continue
                why = 'whose VM no longer runs here'
            except exception.NotFound:
                pass
            except errors.XenAPIError as exc:
                if exc.xapi_code != 'UUID_INVALID':
                    LOG.debug('VIF %s: %s', vif_uuid, exc)
                    continue
            except Exception as exc:
                LOG.debug('VIF %s: %s', vif_uuid, exc)
                continue
            try:
                self.isolation.remove_table(vif_uuid)
            except Exception as exc:
                LOG.debug('cannot remove the rules of VIF %s yet: %s',
                          vif_uuid, exc)
                continue
            LOG.info('removed the isolation rules of VIF %s, %s', vif_uuid,
                     why)
            removed.append(('rules', vif_uuid))
        return removed


_REMOVE = {VBD: Reclaimer._remove_vbd, VM: Reclaimer._remove_vm,
           VDI: Reclaimer._remove_vdi,
           TASK: Reclaimer._remove_task,
           SECRET: lambda self, ref: self.session.call('secret.destroy', ref)}
