"""event.from: block until objects change, then report them once each."""

import re
import time

from xapisim.errors import XapiError
from xapisim.rpc import handler

# Classes that never produce events (their datamodel has gen_events off).
SILENT = frozenset(['session'])
# Classes xapi keeps outside its database: no valid_ref_counts entry.
NOT_IN_DB = frozenset(['message'])


def token_of(generation):
    return '%020d,%020d' % (generation, 0)


_TOKEN_PART = re.compile(r'^[-+]?[0-9]+$')


def parse_token(token):
    """The generation in a token: '' or 'generation,message-generation'."""
    if token == '':
        return 0
    parts = token.split(',')
    if len(parts) == 2 and all(_TOKEN_PART.match(p) for p in parts):
        return int(parts[0])
    raise XapiError('EVENT_FROM_TOKEN_PARSE_FAILURE', token)


def subscription(schema, classes):
    """A predicate (cls, ref) -> bool for a list of subscriptions."""
    everything = False
    whole = set()
    single = set()
    for item in classes:
        item = item.strip()
        if item == '*':
            everything = True
            continue
        name, _, ref = item.partition('/')
        cls = schema.lower_names.get(name.lower())
        if cls is None:
            continue
        if ref:
            single.add((cls, ref))
        else:
            whole.add(cls)

    def wanted(cls, ref):
        if cls in SILENT:
            return False
        return everything or cls in whole or (cls, ref) in single
    return wanted


@handler('event', 'from')
def event_from(ctx, classes, token, timeout):
    db = ctx.db
    since = parse_token(token)
    wanted = subscription(ctx.pool.schema, classes)
    deadline = time.time() + max(timeout, 0.0)
    scan_from = since
    with db.lock:
        while True:
            if not db.exists('session', ctx.session):
                raise XapiError('SESSION_INVALID', ctx.session)
            changes = db.changes_since(scan_from, wanted)
            if changes:
                break
            # nothing we want up to here: later scans start from now
            scan_from = db.generation
            left = deadline - time.time()
            if left <= 0:
                break
            db.changed.wait(left)
        generation = db.generation
        counts = {cls.lower(): len(table) for cls, table in db.tables.items()
                  if cls not in NOT_IN_DB}
    classes_schema = ctx.pool.schema.classes
    events = []
    for gen, cls, ref, op, record in changes:
        event = {'id': str(gen), 'timestamp': '0.0', 'class': cls.lower(),
                 'operation': op, 'ref': ref}
        if record is not None:
            event['snapshot'] = classes_schema[cls].encode_record(record)
        events.append(event)
    return {'events': events, 'valid_ref_counts': counts,
            'token': token_of(generation)}


@handler('event', 'get_current_id')
def event_get_current_id(ctx):
    return ctx.db.generation


@handler('event', 'inject')
def event_inject(ctx, cls, ref):
    real = ctx.pool.schema.lower_names.get(cls.lower(), cls)
    if real not in ctx.db.tables or not ctx.db.exists(real, ref):
        raise XapiError('HANDLE_INVALID', cls, ref)
    ctx.db.touch(real, ref)
    return token_of(ctx.db.generation)
