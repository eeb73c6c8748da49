"""State without polling: one ``event.from`` watcher per compute.

The watcher keeps, in memory, the record of every VM of the pool that is
an instance (``other_config['nova_uuid']``) and emits Nova lifecycle
events when one of this host's instances changes power state -- also when
the change happened behind Nova's back (an operator in XenCenter, a guest
shutting itself down).  ``get_info``, ``list_instances`` and Nova's power
state sync read the cache: listing 1,000 instances costs no XenAPI call.
It is also what the driver knows of its VMs before it acts on one (power
state, host, domain, VIFs), what it reserves for the VMs Nova does not own
on its host (their memory), and which rescue and resize VMs exist: none of
this is read from xapi again.  The driver writes what it learns from its
own calls (a record it read, the power state a call it made left) into the
cache at once, so that Nova's next look (``get_info``) sees it.

It runs on its own session (a long ``event.from`` must not hold one of the
pool's sessions) and survives xapi restarts, session loss and a moving
pool master: it logs in again and resynchronises from a fresh token,
emitting events for whatever changed meanwhile.
"""

import threading
import time

from nova.virt import event as virtevent
from oslo_log import log as logging

from nova_xen import errors

LOG = logging.getLogger(__name__)

NULL = 'OpaqueRef:NULL'
WAIT = 30.0          # seconds one event.from may block
# seconds a new domain's record is awaited from the watcher before it is
# read (its event usually arrives within milliseconds of the start)
DOMAIN_WAIT = 2.0
SEEN_DOMIDS = 8      # domids remembered per VM (see domids())
BACKOFF_MAX = 30.0   # seconds between reconnection attempts, at most
KEPT = ('name_label', 'power_state', 'resident_on', 'affinity', 'domid',
        'other_config', 'is_a_template', 'is_a_snapshot',
        'is_control_domain', 'uuid', 'VIFs', 'HVM_boot_policy')

# (old power state, new power state) -> lifecycle transition
_TRANSITIONS = {
    ('Halted', 'Running'): virtevent.EVENT_LIFECYCLE_STARTED,
    ('Halted', 'Paused'): virtevent.EVENT_LIFECYCLE_PAUSED,
    ('Paused', 'Running'): virtevent.EVENT_LIFECYCLE_RESUMED,
    ('Suspended', 'Running'): virtevent.EVENT_LIFECYCLE_RESUMED,
    ('Running', 'Paused'): virtevent.EVENT_LIFECYCLE_PAUSED,
    ('Running', 'Suspended'): virtevent.EVENT_LIFECYCLE_SUSPENDED,
    ('Paused', 'Suspended'): virtevent.EVENT_LIFECYCLE_SUSPENDED,
    ('Running', 'Halted'): virtevent.EVENT_LIFECYCLE_STOPPED,
    ('Paused', 'Halted'): virtevent.EVENT_LIFECYCLE_STOPPED,
    ('Suspended', 'Halted'): virtevent.EVENT_LIFECYCLE_STOPPED,
}


# other_config tags of the VMs a resize keeps (resize.py): not instances,
# but remembered, so that reconciliation needs no scan of its own
RESIZE_TAGS = ('nova_resize_of', 'nova_resize_transfer')
# the other_config tag of a rescue VM (rescue.py): its instance's uuid
RESCUE_TAG = 'nova_rescue_of'


def is_instance(record):
    return ('nova_uuid' in record['other_config'] and
            not record['is_a_template'] and not record['is_a_snapshot'] and
            not record['is_control_domain'])


def host_of(record):
    """The host a VM belongs to: the one it runs on, else its affinity."""
    if record['resident_on'] != NULL:
        return record['resident_on']
    return record['affinity']


def owned_by(record, host_ref):
    """An instance VM of ``host_ref`` (see host_of)."""
    return is_instance(record) and host_of(record) == host_ref


class VMWatcher(object):
    """The VMs of this compute, kept current by ``event.from``."""

    def __init__(self, session, host_ref, emit=None, new_domain=None):
        self.session = session
        self.host_ref = host_ref
        self.emit = emit or (lambda event: None)
        # called with the VM ref when one of our VMs gets a new domain
        self.new_domain = new_domain
        # notified whenever a record changes (wait_domain)
        self._lock = threading.Condition(threading.Lock())
        self._records = {}        # VM ref -> kept fields, instances only
        self._domids = {}         # VM ref -> domids seen, latest last
        # VM ref -> (host ref, domid) of its latest domain: where the
        # console log of a VM that stopped stays (Consoles)
        self._last_domain = {}
        self._by_uuid = {}        # instance uuid -> {VM refs}: O(1) lookups
        self._resize_vms = {}     # VM ref -> kept fields, RESIZE_TAGS
        self._rescue_vms = {}     # VM ref -> kept fields, RESCUE_TAG
        # VM ref -> bytes, of VMs on this host that Nova does not own
        # (dom0, an operator's VMs): what the inventory reserves
        self._foreign = {}
        self._stop = threading.Event()
        self._thread = None
        self._xenapi = None
        self.resyncs = 0
        self._leaving = set()     # instance uuids moving to another pool

    # -- reading ---------------------------------------------------------

    def _owned(self):
        return {ref: rec for ref, rec in self._records.items()
                if owned_by(rec, self.host_ref)}

    def lookup(self, instance_uuid):
        """The VM ref of an instance of this host, or None."""
        return self.record(instance_uuid)[0]

    def record(self, instance_uuid):
        """(VM ref, record) of an instance of this host, or (None, None):
        a dictionary lookup, whatever the size of the pool."""
        with self._lock:
            for ref in self._by_uuid.get(instance_uuid, ()):
                rec = self._records[ref]
                if owned_by(rec, self.host_ref):
                    return ref, dict(rec)
        return None, None

    def anywhere(self, instance_uuid):
        """(VM ref, record) of an instance on any host of the pool (a
        migration's other side), or (None, None)."""
        with self._lock:
            for ref in self._by_uuid.get(instance_uuid, ()):
                return ref, dict(self._records[ref])
        return None, None

    def _put(self, ref, kept):
        """Keep an instance VM's record (with the lock held)."""
        self._drop(ref)
        self._records[ref] = kept
        self._by_uuid.setdefault(kept['other_config']['nova_uuid'],
                                 set()).add(ref)
        domid = int(kept['domid'])
        if domid >= 0 and kept['resident_on'] != NULL:
            self._last_domain[ref] = (kept['resident_on'], domid)
        if domid >= 0:
            seen = self._domids.setdefault(ref, [])
            if domid not in seen:
                seen.append(domid)
                del seen[:-SEEN_DOMIDS]
        self._lock.notify_all()

    def domids(self, vm):
        """The domains the cache has seen ``vm`` in: taken before a
        start, they tell its new domain from a late event of an old one
        (wait_domain)."""
        with self._lock:
            return frozenset(self._domids.get(vm, ()))

    def last_domain(self, vm):
        """(host ref, domid) of the latest domain the cache has seen
        ``vm`` in (running or gone since), or None."""
        with self._lock:
            return self._last_domain.get(vm)

    def wait_domain(self, vm, known, host_ref, timeout=None,
                    power_state='Paused'):
        """The record of ``vm`` once the watcher has seen it in
        ``power_state`` in a domain on ``host_ref`` that is none of
        ``known`` (the new domain of a start or resume the driver made,
        paused; of a soft reboot, running), or None after ``timeout``
        seconds (DOMAIN_WAIT, read when called, by default; the caller
        reads the record instead).  A late event of an older domain does
        not qualify: that domain was running (for a start), or is in
        ``known``."""
        deadline = time.monotonic() + (DOMAIN_WAIT if timeout is None
                                       else timeout)
        with self._lock:
            while True:
                rec = self._records.get(vm)
                if rec is not None and rec['power_state'] == power_state and \
                        rec['resident_on'] == host_ref and \
                        int(rec['domid']) >= 0 and \
                        int(rec['domid']) not in known:
                    return dict(rec)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._lock.wait(left)

    def _drop(self, ref):
        """Forget an instance VM (with the lock held); its record."""
        old = self._records.pop(ref, None)
        if old is not None:
            uuid = old['other_config']['nova_uuid']
            refs = self._by_uuid.get(uuid, set())
            refs.discard(ref)
            if not refs:
                self._by_uuid.pop(uuid, None)
        return old

    def uuids(self):
        with self._lock:
            return [r['other_config']['nova_uuid']
                    for r in self._owned().values()]

    def names(self):
        with self._lock:
            return [r['name_label'] for r in self._owned().values()]

    def all_instances(self):
        """Every instance VM of the pool: {ref: record} (reconciliation)."""
        with self._lock:
            return {ref: dict(rec) for ref, rec in self._records.items()}

    def resize_vms(self):
        """VMs a resize keeps (originals, clones) anywhere in the pool:
        {ref: record}."""
        with self._lock:
            return {ref: dict(rec) for ref, rec in self._resize_vms.items()}

    def has_resize_vms(self, instance_uuid):
        """Whether a resize left a VM (original or clone) of the
        instance anywhere in the pool."""
        with self._lock:
            return any(rec['other_config'].get(tag) == instance_uuid
                       for rec in self._resize_vms.values()
                       for tag in RESIZE_TAGS)

    def rescue_vms(self):
        """Rescue VMs anywhere in the pool: {ref: record}."""
        with self._lock:
            return {ref: dict(rec) for ref, rec in self._rescue_vms.items()}

    def foreign_memory(self):
        """Bytes of memory of the VMs on this host that are no Nova
        instance (dom0 among them)."""
        with self._lock:
            return sum(self._foreign.values())

    # -- the spawn/destroy path tells us at once -----------------------

    def refresh_vm(self, vm):
        """Read one VM now (after we changed it), without waiting."""
        try:
            record = self.session.call('VM.get_record', vm)
        except Exception:
            with self._lock:
                self._drop(vm)
            return
        self._apply(vm, record, emit=False)

    def remember(self, vm, record):
        """A VM record the driver has just read: kept as the watcher's
        own would be (no event for Nova: the driver made the change)."""
        self._apply(vm, record, emit=False)

    def assume(self, vm, **fields):
        """What a call the driver made has left of a VM (its power state,
        domain, host), without reading it back; the watcher's next event
        of the VM brings the rest (no event for Nova: nothing changed)."""
        with self._lock:
            for kept in (self._records, self._resize_vms, self._rescue_vms):
                if vm in kept:
                    kept[vm].update(fields)

    def leaving(self, instance_uuid, leaving=True):
        """An instance is moving to another pool: its VM vanishing from
        this pool is no stop, for Nova."""
        with self._lock:
            if leaving:
                self._leaving.add(instance_uuid)
            else:
                self._leaving.discard(instance_uuid)

    def forget(self, vm):
        """A VM that is no longer an instance (destroyed, or hidden by a
        resize: the watcher's next event of it says what it is now)."""
        with self._lock:
            self._drop(vm)

    def gone(self, vm):
        """A VM the driver has destroyed, whatever it was."""
        with self._lock:
            self._drop(vm)
            self._resize_vms.pop(vm, None)
            self._rescue_vms.pop(vm, None)
            self._foreign.pop(vm, None)
            self._domids.pop(vm, None)
            self._last_domain.pop(vm, None)

    # -- the loop ----------------------------------------------------------

    def start(self):
        """Synchronise now (start-up waits for it), then watch."""
        token = self._resync()
        self._thread = threading.Thread(target=self._run, args=(token,),
                                        name='nova-xen-vm-watcher',
                                        daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        xenapi, self._xenapi = self._xenapi, None
        if xenapi is not None:
            try:
                xenapi.xenapi.session.logout()
            except Exception:
                pass
            xenapi.transport.close()

    def _connect(self):
        if self._xenapi is None:
            self._xenapi = self.session.dedicated()
            self._xenapi.transport.set_timeout(WAIT +
                                               self.session.call_timeout)
        return self._xenapi.xenapi

    def _drop_connection(self):
        xenapi, self._xenapi = self._xenapi, None
        if xenapi is not None:
            xenapi.transport.close()

    def _resync(self, emit=False):
        """All VMs afresh (token ''), emitting what changed meanwhile."""
        x = self._connect()
        batch = getattr(x.event, 'from')(['vm'], '', 0.0)
        seen = set()
        for event in batch['events']:
            if event['operation'] != 'del':
                seen.add(event['ref'])
                self._apply(event['ref'], event['snapshot'], emit=emit)
        with self._lock:
            gone = [ref for ref in list(self._records) +
                    list(self._resize_vms) + list(self._rescue_vms) +
                    list(self._foreign) if ref not in seen]
        for ref in gone:
            self._remove(ref, emit=emit)
        self.resyncs += 1
        return batch['token']

    def _run(self, token):
        delay = 0.5
        while not self._stop.is_set():
            if token is None:
                # after a lost connection: everything afresh, then watch
                try:
                    token = self._resync(emit=True)
                    LOG.info('VM watcher resynchronised with xapi')
                    delay = 0.5
                except Exception as exc:
                    LOG.debug('resync failed: %s', errors.why(exc))
                    self._drop_connection()
                    self._stop.wait(delay)
                    delay = min(delay * 2, BACKOFF_MAX)
                    continue
            try:
                x = self._connect()
                batch = getattr(x.event, 'from')(['vm'], token, WAIT)
                token = batch['token']
                for event in batch['events']:
                    if event['operation'] == 'del':
                        self._remove(event['ref'], emit=True)
                    else:
                        self._apply(event['ref'], event['snapshot'],
                                    emit=True)
            except Exception as exc:
                if self._stop.is_set():
                    return
                LOG.warning('VM watcher lost its connection to xapi (%s); '
                            'resynchronising in %.1f s', errors.why(exc), delay)
                self._drop_connection()
                self._stop.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                token = None

    def _apply(self, ref, record, emit):
        self._weigh(ref, record)
        if not is_instance(record):
            with self._lock:
                self._drop(ref)
                other = record['other_config']
                for kept, tagged in (
                        (self._resize_vms, any(tag in other
                                               for tag in RESIZE_TAGS)),
                        (self._rescue_vms, RESCUE_TAG in other)):
                    if tagged:
                        kept[ref] = {k: record[k] for k in KEPT}
                    else:
                        kept.pop(ref, None)
            return
        kept = {k: record[k] for k in KEPT}
        with self._lock:
            old = self._records.get(ref)
            self._put(ref, kept)
        if emit and old is not None:
            self._maybe_emit(old, kept)
            self._maybe_new_domain(ref, old, kept)
        elif emit and owned_by(kept, self.host_ref) and \
                int(kept['domid']) >= 0:
            # a VM that arrives here running (a storage migration from
            # another pool made it): its domain needs its rules at once
            self._new_domain(ref, kept)

    def _weigh(self, ref, record):
        """Keep the memory of a VM on this host that Nova does not own."""
        with self._lock:
            if 'nova_uuid' not in record['other_config'] and \
                    record['resident_on'] == self.host_ref:
                self._foreign[ref] = int(record['memory_target'] or
                                         record['memory_static_max'])
            else:
                self._foreign.pop(ref, None)

    def _remove(self, ref, emit):
        with self._lock:
            old = self._drop(ref)
            self._resize_vms.pop(ref, None)
            self._rescue_vms.pop(ref, None)
            self._foreign.pop(ref, None)
            self._domids.pop(ref, None)
            self._last_domain.pop(ref, None)
        if old is not None and old['other_config']['nova_uuid'] in \
                self._leaving:
            # it left for another pool: no stop, for Nova (mark consumed)
            self.leaving(old['other_config']['nova_uuid'], False)
            return
        if emit and old is not None and owned_by(old, self.host_ref) and \
                old['power_state'] != 'Halted':
            # a VM destroyed behind Nova's back is stopped, for Nova
            self._send(old, virtevent.EVENT_LIFECYCLE_STOPPED)

    def _maybe_emit(self, old, new):
        if not owned_by(old, self.host_ref):
            return   # not ours, or arriving (a migration): no change here
        if not owned_by(new, self.host_ref):
            return   # it moved to another host: that compute reports it
        if new['other_config']['nova_uuid'] in self._leaving:
            return   # its domain is going to another pool: no stop
        transition = _TRANSITIONS.get((old['power_state'],
                                       new['power_state']))
        if transition is not None:
            self._send(new, transition)

    def _maybe_new_domain(self, ref, old, new):
        if self.new_domain is None or not owned_by(new, self.host_ref):
            return
        if int(new['domid']) < 0:
            return
        # a new domain, or one that moved here (domids count per host: the
        # destination may give it the number it had at the source)
        if new['domid'] != old['domid'] or host_of(new) != host_of(old):
            self._new_domain(ref, new)

    def _new_domain(self, ref, record=None):
        if self.new_domain is None:
            return
        try:
            # the record it came with: whoever is told need not read it
            self.new_domain(ref, record=record)
        except Exception:
            LOG.exception('could not follow the new domain of VM %s', ref)

    def _send(self, record, transition):
        uuid = record['other_config']['nova_uuid']
        LOG.debug('instance %s: %s -> event %s', uuid, record['power_state'],
                  transition)
        try:
            self.emit(virtevent.LifecycleEvent(uuid, transition,
                                               timestamp=time.time()))
        except Exception:
            LOG.exception('could not deliver the lifecycle event of %s',
                          uuid)
