"""xapisim's view of the XenAPI datamodel: classes, fields, messages, types.

The facts come from ``data/schema.json``, derived from xapi's official
datamodel by ``tools/gen_xapisim_schema.py``, plus the overlays
``data/datamodel_overlay*.json``: the calls and fields xapi added after
that datamodel, each read from xapi's OCaml datamodel and citing where
(``merge_overlay``).  This module turns the
datamodel's type strings ("(string -> VM ref) map", "enum vm_power_state
set", ...) into small codec objects that decode XML-RPC parameters strictly
(as xapi does) and encode values the way xapi puts them on the wire (int64
as decimal strings, datetimes as ``YYYYMMDDTHH:MM:SSZ``).
"""

import json
import os
import re
import xmlrpc.client

from xapisim.errors import XapiError

NULL_REF = 'OpaqueRef:NULL'
_REF_RE = re.compile(r'^OpaqueRef:[0-9a-fA-F-]+$')
_INT_RE = re.compile(r'^-?[0-9]+$')
_DATETIME_RE = re.compile(r'^\d{8}T\d{2}:\d{2}:\d{2}Z?$')


class Type(object):
    """A datamodel type: decodes wire values and encodes internal ones."""

    #: name used in error messages
    name = '?'

    def decode(self, value, field):
        raise NotImplementedError

    def encode(self, value):
        return value

    def zero(self):
        raise NotImplementedError

    def _type_error(self, field):
        raise XapiError('FIELD_TYPE_ERROR', field)


class StringType(Type):
    name = 'string'

    def decode(self, value, field):
        if isinstance(value, str):
            return value
        self._type_error(field)

    def zero(self):
        return ''


class IntType(Type):
    """int64: xapi sends decimal strings and accepts strings or XML-RPC ints."""
    name = 'int'

    def decode(self, value, field):
        if isinstance(value, bool):
            self._type_error(field)
        if isinstance(value, int):
            return value
        if isinstance(value, str) and _INT_RE.match(value.strip()):
            return int(value.strip())
        self._type_error(field)

    def encode(self, value):
        return str(value)

    def zero(self):
        return 0


class FloatType(Type):
    name = 'float'

    def decode(self, value, field):
        if isinstance(value, bool):
            self._type_error(field)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        self._type_error(field)

    def encode(self, value):
        return float(value)

    def zero(self):
        return 0.0


class BoolType(Type):
    name = 'bool'

    def decode(self, value, field):
        if isinstance(value, bool):
            return value
        # xapi's unmarshaller also takes the strings "true"/"false"
        if isinstance(value, str) and value.lower() in ('true', 'false'):
            return value.lower() == 'true'
        self._type_error(field)

    def zero(self):
        return False


class DateTimeType(Type):
    name = 'datetime'

    def decode(self, value, field):
        if isinstance(value, xmlrpc.client.DateTime):
            value = value.value
        if isinstance(value, str) and _DATETIME_RE.match(value):
            return value if value.endswith('Z') else value + 'Z'
        self._type_error(field)

    def encode(self, value):
        return xmlrpc.client.DateTime(value)

    def zero(self):
        return '19700101T00:00:00Z'


class EnumType(Type):
    def __init__(self, enum_name, values):
        self.name = 'enum ' + enum_name
        self.enum_name = enum_name
        self.values = values
        self._lower = {v.lower(): v for v in values}

    def decode(self, value, field):
        if isinstance(value, str):
            # xapi matches enum values case-insensitively
            canonical = self._lower.get(value.lower())
            if canonical is not None:
                return canonical
            raise XapiError('INVALID_VALUE', field, value)
        self._type_error(field)

    def zero(self):
        return self.values[0]


class RefType(Type):
    def __init__(self, cls_name):
        self.name = cls_name + ' ref'
        self.cls = cls_name

    def decode(self, value, field):
        if isinstance(value, str):
            return value
        self._type_error(field)

    def zero(self):
        return NULL_REF


class SetType(Type):
    def __init__(self, item):
        self.item = item
        self.name = item.name + ' set'

    def decode(self, value, field):
        if not isinstance(value, list):
            self._type_error(field)
        out = []
        for v in value:
            d = self.item.decode(v, field)
            if d not in out:
                out.append(d)
        return out

    def encode(self, value):
        enc = self.item.encode
        return [enc(v) for v in value]

    def zero(self):
        return []


class MapType(Type):
    """Maps travel as XML-RPC structs: keys are always strings on the wire."""

    def __init__(self, key, value):
        self.key = key
        self.value = value
        self.name = '(%s -> %s) map' % (key.name, value.name)

    def decode(self, value, field):
        if not isinstance(value, dict):
            self._type_error(field)
        out = {}
        for k, v in value.items():
            out[self.key.decode(k, field)] = self.value.decode(v, field)
        return out

    def encode(self, value):
        kenc = self.key.encode
        venc = self.value.encode
        return {str(kenc(k)): venc(v) for k, v in value.items()}

    def zero(self):
        return {}


class RecordType(Type):
    def __init__(self, schema, cls_name):
        self.schema = schema
        self.cls = cls_name
        self.name = cls_name + ' record'

    def decode(self, value, field):
        if not isinstance(value, dict):
            self._type_error(field)
        return value  # constructor arguments are checked by create()

    def encode(self, value):
        return self.schema.classes[self.cls].encode_record(value)

    def zero(self):
        return {}


class OptionType(Type):
    def __init__(self, item):
        self.item = item
        self.name = item.name + ' option'

    def decode(self, value, field):
        return self.item.decode(value, field)

    def encode(self, value):
        return self.item.encode(value)

    def zero(self):
        return self.item.zero()


class AnyType(Type):
    """Types the datamodel describes in words: ``void`` results, event
    batches, event snapshots.  The name is the datamodel's own text."""

    def __init__(self, text):
        self.name = text

    def decode(self, value, field):
        return value

    def zero(self):
        return None


class Field(object):
    __slots__ = ('name', 'type', 'qualifier', 'default', 'has_default')

    def __init__(self, name, ftype, qualifier, default, has_default):
        self.name = name
        self.type = ftype
        self.qualifier = qualifier
        self.default = default
        self.has_default = has_default

    @property
    def writable(self):
        return self.qualifier == 'RW'

    @property
    def in_constructor(self):
        return self.qualifier in ('RW', 'RO/constructor')

    def initial(self):
        value = self.default if self.has_default else self.type.zero()
        if isinstance(value, (list, dict)):
            value = type(value)(value)
        return value


class Message(object):
    __slots__ = ('cls', 'name', 'params', 'result', 'errors', 'implicit',
                 'required_fields', 'constructor_fields', 'optional_tail')

    def __init__(self, cls, name, params, result, errors, implicit):
        self.cls = cls
        self.name = name
        self.params = params  # [(name, Type)], session first when present
        self.result = result
        self.errors = errors
        self.implicit = implicit
        self.required_fields = ()
        self.constructor_fields = ()
        self.optional_tail = {}

    @property
    def wire_name(self):
        return '%s.%s' % (self.cls, self.name)

    @property
    def takes_session(self):
        return bool(self.params) and self.params[0][0] == 'session_id'


class ClassSchema(object):
    def __init__(self, name):
        self.name = name
        self.fields = {}
        self.messages = {}
        self._encoders = None

    def encode_record(self, record):
        encoders = self._encoders
        if encoders is None:
            encoders = self._encoders = [
                (n, f.type.encode) for n, f in self.fields.items()]
        out = {}
        for name, enc in encoders:
            value = record.get(name)
            if value is None:
                continue
            out[name] = enc(value)
        return out


# The only type strings of the datamodel that are words, not types.
DESCRIBED_TYPES = ('void', 'an event batch', '<class> record')

# Trailing parameters that xapi lets a caller omit, with the value it
# assumes.  The published datamodel JSON does not carry xapi's
# versioned-parameter defaults, so the few that clients rely on are listed.
OPTIONAL_TRAILING_PARAMS = {
    'session.login_with_password': {'version': '1.0', 'originator': ''},
    'VDI.copy': {'base_vdi': NULL_REF, 'into_vdi': NULL_REF},
    'VM.migrate_send': {'vgpu_map': {}},
    'VM.assert_can_migrate': {'vgpu_map': {}},
    'VM.snapshot': {'ignore_vdis': []},
}


class Schema(object):
    """All classes, enums and error codes of the datamodel."""

    def __init__(self, data):
        self.source = data['source']
        self.enums = data['enums']
        self.errors = data['errors']
        self.classes = {}
        self._types = {}
        self.lower_names = {}
        for cname in data['classes']:
            self.classes[cname] = ClassSchema(cname)
            self.lower_names[cname.lower()] = cname
        for cname, cdata in data['classes'].items():
            cls = self.classes[cname]
            for fname, f in cdata['fields'].items():
                cls.fields[fname] = Field(fname, self.type(f['type']),
                                          f['qualifier'], f['default'],
                                          f['has_default'])
            for mname, m in cdata['messages'].items():
                params = [(p[1], self.type(p[0])) for p in m['params']]
                msg = Message(cname, mname, params, self.type(m['result']),
                              m['errors'], m['implicit'])
                msg.required_fields = tuple(m.get('required_fields', ()))
                msg.constructor_fields = tuple(
                    m.get('constructor_fields', ()))
                msg.optional_tail = OPTIONAL_TRAILING_PARAMS.get(
                    msg.wire_name, {})
                cls.messages[mname] = msg
            self._add_where_messages(cls)

    def _add_where_messages(self, cls):
        # xapi serves get_all_records_where / get_all_where on every class
        # that has get_all_records, although the published datamodel omits
        # them; a class that declares its own (message) has only that one.
        if 'get_all_records' not in cls.messages or \
                'get_all_records_where' in cls.messages:
            return
        sess = ('session_id', self.type('session ref'))
        expr = ('expr', StringType())
        cls.messages['get_all_records_where'] = Message(
            cls.name, 'get_all_records_where', [sess, expr],
            self.type('(%s ref -> %s record) map' % (cls.name, cls.name)),
            [], True)
        cls.messages['get_all_where'] = Message(
            cls.name, 'get_all_where', [sess, expr],
            self.type('%s ref set' % cls.name), [], True)

    def type(self, text):
        t = self._types.get(text)
        if t is None:
            t = self._types[text] = self._parse_type(text.strip())
        return t

    def _parse_type(self, text):
        simple = {'string': StringType, 'int': IntType, 'float': FloatType,
                  'bool': BoolType, 'datetime': DateTimeType}
        if text in simple:
            return simple[text]()
        if text in DESCRIBED_TYPES:
            return AnyType(text)
        if text.endswith(' map') and text.startswith('('):
            inner = text[1:-len(' map')].rstrip()
            assert inner.endswith(')'), text
            inner = inner[:-1]
            key, _, value = inner.partition(' -> ')
            return MapType(self.type(key), self.type(value))
        if text.endswith(' set'):
            return SetType(self.type(text[:-len(' set')]))
        if text.endswith(' option'):
            return OptionType(self.type(text[:-len(' option')]))
        if text.startswith('enum '):
            ename = text[len('enum '):]
            return EnumType(ename, self.enums[ename])
        if text.endswith(' ref'):
            return RefType(text[:-len(' ref')])
        if text.endswith(' record'):
            cname = text[:-len(' record')]
            if cname in self.classes:
                return RecordType(self, cname)
        # a type string read wrongly must not pass for an untyped value
        raise ValueError('unknown datamodel type %r' % text)

    def error_arity(self, code):
        params = self.errors.get(code)
        return None if params is None else len(params)


_SCHEMA = None
DATA_DIR = os.path.join(os.path.dirname(__file__), 'data')
OVERLAY_PATH = os.path.join(DATA_DIR, 'datamodel_overlay.json')


def overlay_paths():
    """The overlay files shipped with xapisim, in a stable order."""
    return sorted(os.path.join(DATA_DIR, name)
                  for name in os.listdir(DATA_DIR)
                  if name.startswith('datamodel_overlay')
                  and name.endswith('.json'))


def merge_overlay(data, overlay):
    """Add an overlay's enums, fields and messages to the compact schema.

    An overlay only adds: an entry the datamodel already has means the
    datamodel caught up, and the overlay entry must go (ValueError).
    """
    for name, enum in overlay.get('enums', {}).items():
        if name in data['enums']:
            raise ValueError('overlay enum %s is in the datamodel' % name)
        data['enums'][name] = list(enum['values'])
    for cname, cdata in overlay.get('classes', {}).items():
        cls = data['classes'][cname]
        for fname, f in cdata.get('fields', {}).items():
            if fname in cls['fields']:
                raise ValueError('overlay field %s.%s is in the datamodel'
                                 % (cname, fname))
            cls['fields'][fname] = {k: f[k] for k in (
                'type', 'qualifier', 'default', 'has_default')}
        for mname, m in cdata.get('messages', {}).items():
            if mname in cls['messages']:
                raise ValueError('overlay message %s.%s is in the datamodel'
                                 % (cname, mname))
            cls['messages'][mname] = {
                'params': [list(p) for p in m['params']],
                'result': m['result'], 'errors': list(m.get('errors', ())),
                'implicit': bool(m.get('implicit', False))}
    return data


def load():
    """The schema shipped with xapisim (parsed once per process)."""
    global _SCHEMA
    if _SCHEMA is None:
        with open(os.path.join(DATA_DIR, 'schema.json')) as fh:
            data = json.load(fh)
        for path in overlay_paths():
            with open(path) as fh:
                merge_overlay(data, json.load(fh))
        _SCHEMA = Schema(data)
    return _SCHEMA


def is_ref(value):
    return isinstance(value, str) and bool(_REF_RE.match(value))
