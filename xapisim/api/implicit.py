"""The messages xapi generates for every class: getters, setters, create...

``handler_for(message)`` returns the generic implementation of an implicit
message.  Classes whose create/destroy have side effects register their
own handlers and reuse ``constructor_values`` for the generic checks.
"""

from xapisim import where
from xapisim.errors import XapiError
from xapisim.schema import NULL_REF, MapType, RefType, SetType, load


def constructor_values(ctx, cls, args):
    """Decode a create() struct as xapi's dispatcher does.

    Unknown keys are ignored; a missing required field fails with xapi's
    ``Dispatcher_FieldNotFound`` internal error; references must be live.
    """
    schema = ctx.pool.schema.classes[cls]
    msg = schema.messages['create']
    values = {}
    for name in msg.constructor_fields:
        field = schema.fields.get(name)
        if field is None:
            continue
        if name not in args:
            if name in msg.required_fields:
                raise XapiError(
                    'INTERNAL_ERROR',
                    'Server_helpers.Dispatcher_FieldNotFound("%s")' % name)
            continue
        try:
            values[name] = field.type.decode(args[name], name)
        except XapiError as exc:
            if exc.code != 'FIELD_TYPE_ERROR':
                raise
            raise XapiError('INTERNAL_ERROR',
                            '(Failure "Expected %s for field %s")'
                            % (field.type.name, name))
        check_ref_value(ctx, field.type, values[name])
    return values


def check_ref_value(ctx, ftype, value):
    db = ctx.db
    if isinstance(ftype, RefType):
        if value != NULL_REF and ftype.cls in db.tables \
                and not db.exists(ftype.cls, value):
            raise XapiError('HANDLE_INVALID', ftype.cls, value)
    elif isinstance(ftype, SetType) and isinstance(ftype.item, RefType):
        for ref in value:
            check_ref_value(ctx, ftype.item, ref)


def generic_create(ctx, cls, args):
    return ctx.db.create(cls, constructor_values(ctx, cls, args))


def _getter(cls, field):
    def get(ctx, ref):
        return ctx.db.get(cls, ref, field)
    return get


def _setter(cls, field):
    def set_(ctx, ref, value):
        ctx.db.set(cls, ref, **{field: value})
    return set_


def _map_add(cls, field):
    def add(ctx, ref, key, value):
        with ctx.db.lock:
            current = ctx.db.get(cls, ref, field)
            if key in current:
                raise XapiError('MAP_DUPLICATE_KEY', cls, field, ref, key)
            updated = dict(current)
            updated[key] = value
            ctx.db.set(cls, ref, **{field: updated})
    return add


def _map_remove(cls, field):
    def remove(ctx, ref, key):
        with ctx.db.lock:
            current = ctx.db.get(cls, ref, field)
            if key in current:
                updated = dict(current)
                del updated[key]
                ctx.db.set(cls, ref, **{field: updated})
    return remove


def _set_add(cls, field):
    def add(ctx, ref, value):
        with ctx.db.lock:
            current = ctx.db.get(cls, ref, field)
            if value not in current:
                ctx.db.set(cls, ref, **{field: current + [value]})
    return add


def _set_remove(cls, field):
    def remove(ctx, ref, value):
        with ctx.db.lock:
            current = ctx.db.get(cls, ref, field)
            if value in current:
                ctx.db.set(cls, ref, **{field: [v for v in current if v != value]})
    return remove


def _records(ctx, cls, predicate=None):
    with ctx.db.lock:
        table = ctx.db.table(cls)
        return {ref: ctx.db.record(cls, ref) for ref, row in table.items()
                if predicate is None or predicate(ref, row)}


_CACHE = {}


def handler_for(msg):
    key = (msg.cls, msg.name)
    if key not in _CACHE:
        _CACHE[key] = _make_handler(msg)
    return _CACHE[key]


def _make_handler(msg):
    cls = msg.cls
    name = msg.name
    schema_fields = load().classes[cls].fields
    if name == 'get_record':
        return lambda ctx, ref: ctx.db.record(cls, ref)
    if name == 'get_all':
        return lambda ctx: ctx.db.refs(cls)
    if name == 'get_all_records':
        return lambda ctx: _records(ctx, cls)
    if name in ('get_all_records_where', 'get_all_where'):
        def where_(ctx, expr):
            test = where.predicate(where.parse(expr), cls, schema_fields)
            found = _records(ctx, cls, test)
            return found if name == 'get_all_records_where' else list(found)
        return where_
    if name == 'get_by_uuid':
        return lambda ctx, uuid: ctx.db.ref_of_uuid(cls, uuid)
    if name == 'get_by_name_label':
        return lambda ctx, label: ctx.db.find(cls, name_label=label)
    if name == 'create':
        return lambda ctx, args: generic_create(ctx, cls, args)
    if name == 'destroy':
        return lambda ctx, ref: ctx.db.destroy(cls, ref)
    for prefix, make in (('get_', _getter), ('set_', _setter)):
        if name.startswith(prefix) and name[len(prefix):] in schema_fields:
            return make(cls, name[len(prefix):])
    for prefix, map_make, set_make in (('add_to_', _map_add, None),
                                       ('remove_from_', _map_remove, None),
                                       ('add_', None, _set_add),
                                       ('remove_', None, _set_remove)):
        field = name[len(prefix):]
        if name.startswith(prefix) and field in schema_fields:
            ftype = schema_fields[field].type
            if map_make and isinstance(ftype, MapType):
                return map_make(cls, field)
            if set_make and isinstance(ftype, SetType):
                return set_make(cls, field)
    return None
