"""message: xapi's alerts, kept apart from the database as xapi keeps them.

xapi stores messages in files of their own (``/var/lib/xcp/blobs/
messages``), not in its database: they have no getters or setters, only
the messages the datamodel declares, and ``get_all_records_where``
ignores its expression (the datamodel says "not currently used").  They
still reach ``event.from`` (class ``message``): ``add`` with a snapshot
when created, ``del`` when destroyed.  The simulator keeps them in the
pool's database table for ``message`` with their exact creation time
beside it, for ``get_since`` and ``get``, which want messages strictly
later than a time.
"""

import calendar
import time

from xapisim.errors import XapiError
from xapisim.rpc import handler

# The class of a message's object (enum cls) -> the table it lives in.
CLASS_TABLES = {'VM': 'VM', 'Host': 'host', 'SR': 'SR', 'Pool': 'pool',
                'VMPP': 'VMPP', 'VMSS': 'VMSS', 'PVS_proxy': 'PVS_proxy',
                'VDI': 'VDI', 'Certificate': 'Certificate'}


def _object_exists(db, cls, obj_uuid):
    table = CLASS_TABLES.get(cls)
    return table in db.by_uuid and obj_uuid in db.by_uuid[table]


def _times(ctx):
    return ctx.pool.message_times


def _epoch(datetime_text):
    """Seconds since the epoch of a datamodel datetime (UTC)."""
    return calendar.timegm(time.strptime(datetime_text.rstrip('Z'),
                                         '%Y%m%dT%H:%M:%S'))


def create_message(pool, name, priority, cls, obj_uuid, body):
    """A new message, as xapi writes one (also used for xapi's own)."""
    db = pool.db
    with db.lock:
        now = time.time()
        ref = db.create('message', {
            'name': name, 'priority': priority, 'cls': cls,
            'obj_uuid': obj_uuid, 'body': body,
            'timestamp': time.strftime('%Y%m%dT%H:%M:%SZ',
                                       time.gmtime(now))})
        pool.message_times[ref] = now
        return ref


@handler('message', 'create')
def message_create(ctx, name, priority, cls, obj_uuid, body):
    if not _object_exists(ctx.db, cls, obj_uuid):
        raise XapiError('UUID_INVALID', cls, obj_uuid)
    return create_message(ctx.pool, name, priority, cls, obj_uuid, body)


def _records_since(ctx, since, keep=None):
    """Messages created strictly after ``since``, newest first."""
    db = ctx.db
    times = _times(ctx)
    with db.lock:
        found = [(times.get(ref, 0.0), ref)
                 for ref, row in db.table('message').items()
                 if times.get(ref, 0.0) > since and (keep is None or
                                                     keep(row))]
        found.sort(reverse=True)
        return {ref: db.record('message', ref) for _, ref in found}


@handler('message', 'get_record')
def message_get_record(ctx, message):
    return ctx.db.record('message', message)


@handler('message', 'get_all')
def message_get_all(ctx):
    return ctx.db.refs('message')


@handler('message', 'get_all_records')
def message_get_all_records(ctx):
    return _records_since(ctx, float('-inf'))


@handler('message', 'get_all_records_where')
def message_get_all_records_where(ctx, expr):
    # xapi's own implementation ignores the expression
    return _records_since(ctx, float('-inf'))


@handler('message', 'get_by_uuid')
def message_get_by_uuid(ctx, uuid):
    return ctx.db.ref_of_uuid('message', uuid)


@handler('message', 'get_since')
def message_get_since(ctx, since):
    return _records_since(ctx, _epoch(since))


@handler('message', 'get')
def message_get(ctx, cls, obj_uuid, since):
    if not _object_exists(ctx.db, cls, obj_uuid):
        # xapi raises this one without parameters
        raise XapiError('UUID_INVALID')
    return _records_since(ctx, _epoch(since), lambda row: (
        row['cls'] == cls and row['obj_uuid'] == obj_uuid))


def _destroy(ctx, message):
    with ctx.db.lock:
        ctx.db.destroy('message', message)
        _times(ctx).pop(message, None)


@handler('message', 'destroy')
def message_destroy(ctx, message):
    _destroy(ctx, message)


@handler('message', 'destroy_many')
def message_destroy_many(ctx, messages):
    for message in messages:
        _destroy(ctx, message)
