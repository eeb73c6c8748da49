"""The pool database: typed records, relations, generations and events.

One ``Database`` per simulated pool, shared by all of its hosts.  Every
change bumps a global generation; each object remembers the generation of
its last change, which is what ``event.from`` reads (an object changed
several times between two calls is reported once, with its latest state,
as xapi does).
"""

import collections
import threading
import time
import uuid as uuidlib

from xapisim.errors import XapiError
from xapisim.schema import NULL_REF

# (class with the ref field, ref field, class with the set field, set field):
# the set field is maintained from the ref field, as xapi's database does.
RELATIONS = (
    ('VBD', 'VM', 'VM', 'VBDs'),
    ('VBD', 'VDI', 'VDI', 'VBDs'),
    ('VIF', 'VM', 'VM', 'VIFs'),
    ('VIF', 'network', 'network', 'VIFs'),
    ('VDI', 'SR', 'SR', 'VDIs'),
    ('PBD', 'SR', 'SR', 'PBDs'),
    ('PBD', 'host', 'host', 'PBDs'),
    ('PIF', 'network', 'network', 'PIFs'),
    ('PIF', 'host', 'host', 'PIFs'),
    ('VM', 'resident_on', 'host', 'resident_VMs'),
    ('host_cpu', 'host', 'host', 'host_CPUs'),
    ('console', 'VM', 'VM', 'consoles'),
    ('VM', 'snapshot_of', 'VM', 'snapshots'),
    ('VDI', 'snapshot_of', 'VDI', 'snapshots'),
    ('VM', 'parent', 'VM', 'children'),
    ('task', 'subtask_of', 'task', 'subtasks'),
    ('crashdump', 'VM', 'VM', 'crash_dumps'),
    ('crashdump', 'VDI', 'VDI', 'crash_dumps'),
    ('VTPM', 'VM', 'VM', 'VTPMs'),
    ('VM', 'appliance', 'VM_appliance', 'VMs'),
    ('host_crashdump', 'host', 'host', 'crashdumps'),
    ('host_patch', 'host', 'host', 'patches'),
    ('PCI', 'host', 'host', 'PCIs'),
    ('PGPU', 'host', 'host', 'PGPUs'),
    ('PGPU', 'GPU_group', 'GPU_group', 'PGPUs'),
    ('VGPU', 'VM', 'VM', 'VGPUs'),
    ('VGPU', 'GPU_group', 'GPU_group', 'VGPUs'),
    ('VGPU', 'type', 'VGPU_type', 'VGPUs'),
    ('VGPU', 'resident_on', 'PGPU', 'resident_VGPUs'),
)

# Deleted objects are remembered for event.from this many deletions long.
TOMBSTONES_KEPT = 100000


class Killed(Exception):
    """The work of a call or task that a xapi restart killed.

    A restart kills xapi's process with every call and task in progress.
    The simulator's threads cannot be killed, so each remembers the
    database's epoch it started in; once a restart has moved the epoch on,
    any change it tries to make raises this instead, and it unwinds
    without touching the pool.
    """


def new_uuid():
    return str(uuidlib.uuid4())


def new_ref():
    return 'OpaqueRef:' + str(uuidlib.uuid4())


def now_datetime():
    return time.strftime('%Y%m%dT%H:%M:%SZ', time.gmtime())


class Database(object):
    def __init__(self, schema):
        self.schema = schema
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        # bumped by each xapi restart; a thread's calls and tasks belong to
        # the epoch in local.epoch (None: the simulator's own work)
        self.epoch = 0
        self.local = threading.local()
        self.tables = {c: {} for c in schema.classes}
        self.by_uuid = {c: {} for c in schema.classes}
        self.generation = 0
        self.created_gen = {}          # (cls, ref) -> generation of creation
        self.changes = collections.OrderedDict()   # (cls, ref) -> last gen
        self.tombstones = 0
        self.oldest_tombstone_gen = 0
        self._forward = collections.defaultdict(list)   # cls -> relations
        for rel in RELATIONS:
            many, field, one, setf = rel
            if many in schema.classes and one in schema.classes:
                self._forward[many].append(rel)

    # -- reading -------------------------------------------------------

    def table(self, cls):
        return self.tables[cls]

    def exists(self, cls, ref):
        return ref in self.tables[cls]

    def row(self, cls, ref):
        """The live record; raises HANDLE_INVALID for a bad reference."""
        try:
            return self.tables[cls][ref]
        except KeyError:
            raise XapiError('HANDLE_INVALID', cls, ref)

    def get(self, cls, ref, field):
        return self.row(cls, ref)[field]

    def record(self, cls, ref):
        with self.lock:
            return _copy_record(self.row(cls, ref))

    def ref_of_uuid(self, cls, uuid):
        ref = self.by_uuid[cls].get(uuid)
        if ref is None:
            raise XapiError('UUID_INVALID', cls, uuid)
        return ref

    def refs(self, cls):
        return list(self.tables[cls])

    def find(self, cls, **criteria):
        with self.lock:
            return [ref for ref, row in self.tables[cls].items()
                    if all(row.get(k) == v for k, v in criteria.items())]

    def find_one(self, cls, **criteria):
        found = self.find(cls, **criteria)
        return found[0] if found else None

    # -- writing -------------------------------------------------------

    def assert_alive(self):
        """Raise Killed in a thread whose xapi has restarted since."""
        epoch = getattr(self.local, 'epoch', None)
        if epoch is not None and epoch != self.epoch:
            raise Killed()

    def enter_epoch(self, epoch=None):
        """This thread's work now belongs to ``epoch`` (default: now)."""
        self.local.epoch = self.epoch if epoch is None else epoch

    def _bump(self, cls, ref):
        self.generation += 1
        key = (cls, ref)
        self.changes[key] = self.generation
        self.changes.move_to_end(key)

    def _notify(self):
        self.changed.notify_all()

    def create(self, cls, fields, ref=None):
        """Insert a record; missing fields take their datamodel defaults."""
        schema = self.schema.classes[cls]
        with self.lock:
            self.assert_alive()
            ref = ref or new_ref()
            record = {}
            for name, field in schema.fields.items():
                if name in fields:
                    record[name] = fields[name]
                else:
                    record[name] = field.initial()
            if not record.get('uuid'):
                record['uuid'] = new_uuid()
            self.tables[cls][ref] = record
            self.by_uuid[cls][record['uuid']] = ref
            self._bump(cls, ref)
            self.created_gen[(cls, ref)] = self.generation
            for rel in self._forward[cls]:
                self._link(rel, ref, None, record.get(rel[1]))
            self._notify()
            return ref

    def set(self, cls, ref, **fields):
        """Change fields of one object: one change, one event."""
        with self.lock:
            self.assert_alive()
            row = self.row(cls, ref)
            unknown = set(fields) - set(self.schema.classes[cls].fields)
            if unknown:   # a simulator bug, never a client's mistake
                raise KeyError('%s has no field %s' % (cls, sorted(unknown)))
            for rel in self._forward[cls]:
                if rel[1] in fields:
                    self._link(rel, ref, row.get(rel[1]), fields[rel[1]])
            row.update(fields)
            self._bump(cls, ref)
            self._notify()

    def touch(self, cls, ref):
        with self.lock:
            self.assert_alive()
            self.row(cls, ref)
            self._bump(cls, ref)
            self._notify()

    def destroy(self, cls, ref):
        with self.lock:
            self.assert_alive()
            row = self.row(cls, ref)
            for rel in self._forward[cls]:
                self._link(rel, ref, row.get(rel[1]), None)
            del self.tables[cls][ref]
            self.by_uuid[cls].pop(row['uuid'], None)
            # the creation generation stays with the tombstone: event.from
            # says nothing of an object created and deleted since a token
            self._bump(cls, ref)
            self.tombstones += 1
            self._prune_tombstones()
            self._notify()

    def _link(self, rel, ref, old, new):
        many, field, one, setf = rel
        if old == new:
            return
        if old and old != NULL_REF and old in self.tables[one]:
            members = self.tables[one][old][setf]
            if ref in members:
                members.remove(ref)
                self._bump(one, old)
        if new and new != NULL_REF and new in self.tables[one]:
            members = self.tables[one][new][setf]
            if ref not in members:
                members.append(ref)
                self._bump(one, new)

    def _prune_tombstones(self):
        if self.tombstones <= TOMBSTONES_KEPT:
            return
        for key in list(self.changes):
            if self.tombstones <= TOMBSTONES_KEPT // 2:
                break
            cls, ref = key
            if ref not in self.tables[cls]:
                self.oldest_tombstone_gen = self.changes.pop(key)
                self.created_gen.pop(key, None)
                self.tombstones -= 1

    # -- events --------------------------------------------------------

    def changes_since(self, gen, wanted):
        """[(cls, ref, operation, record-or-None)] changed after ``gen``.

        ``wanted(cls, ref)`` filters the subscription.  Called with the lock
        held.
        """
        out = []
        for key in reversed(self.changes):
            kgen = self.changes[key]
            if kgen <= gen:
                break
            cls, ref = key
            if not wanted(cls, ref):
                continue
            row = self.tables[cls].get(ref)
            created_since = self.created_gen.get(key, 0) > gen
            if row is None:
                if not created_since:
                    out.append((kgen, cls, ref, 'del', None))
            elif created_since:
                out.append((kgen, cls, ref, 'add', _copy_record(row)))
            else:
                out.append((kgen, cls, ref, 'mod', _copy_record(row)))
        out.reverse()
        return out

    def wait_for_change(self, gen, timeout):
        """Block (lock held) until the generation moves past ``gen``."""
        if self.generation > gen:
            return True
        return self.changed.wait(timeout)


def _copy_record(row):
    out = {}
    for k, v in row.items():
        if isinstance(v, dict):
            v = dict(v)
        elif isinstance(v, list):
            v = list(v)
        out[k] = v
    return out
