#!/usr/bin/env python3
"""Derive xapisim's compact schema from xapi's official datamodel.

The datamodel (``xenapi.json``, published by xapi-project/xen-api) carries
prose, roles and release history that the simulator does not need.  This
tool keeps only the facts the simulator enforces -- class and field names,
field types, qualifiers and defaults, message names, parameter names and
types, result types and declared errors -- plus xapi's error codes with
their parameter names, and writes them as one JSON file that ships inside
the ``xapisim`` package.

Run it again when the datamodel changes::

    python tools/gen_xapisim_schema.py ../shared/xapi/xenapi.json \
        ../shared/xapi/error_codes.tsv > xapisim/data/schema.json

``tests/xapisim/test_schema.py`` regenerates the schema from the datamodel
and fails if the shipped file differs.
"""

import hashlib
import json
import re
import sys

# The constructor description lists its arguments; non-optional ones carry
# a trailing '*'.  That list is the only place the datamodel states which
# create() fields are required, so it is parsed rather than guessed.
_CTOR_RE = re.compile(r"The constructor args are: (.*?) \(\* = non-optional\)",
                      re.S)


def _parse_map_default(text):
    # e.g. {"address" -> "localhost", "port" -> "80"}
    body = text.strip()[1:-1].strip()
    result = {}
    if not body:
        return result
    for item in re.findall(r'"([^"]*)"\s*->\s*"([^"]*)"', body):
        result[item[0]] = item[1]
    return result


def parse_default(ftype, text):
    """Turn the datamodel's textual default into a JSON value.

    Values are in the simulator's internal form: ints as ints, floats as
    floats, refs and datetimes as strings, sets as lists, maps as dicts.
    """
    if text is None:
        return None
    text = text.strip()
    if ftype.endswith(' map'):
        return _parse_map_default(text)
    if ftype.endswith(' set'):
        inner = text[1:-1].strip()
        if not inner:
            return []
        items = [i.strip().strip('"') for i in inner.split(',')]
        if ftype == 'int set':
            return [int(i) for i in items]
        return items
    if ftype.endswith(' ref'):
        if text in ('Null', 'OpaqueRef:NULL'):
            return 'OpaqueRef:NULL'
        return text
    if ftype == 'int':
        return int(text)
    if ftype == 'float':
        return float(text)
    if ftype == 'bool':
        return text == 'true'
    if ftype == 'string':
        if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
            return text[1:-1]
        return text
    # enum and datetime defaults are plain words
    return text


def compact_class(cls):
    fields = {}
    for f in cls['fields']:
        fields[f['name']] = {
            'type': f['type'],
            'qualifier': f['qualifier'],
            'default': parse_default(f['type'], f.get('default')),
            'has_default': 'default' in f,
        }
    messages = {}
    for m in cls['messages']:
        params = [[p['type'], p['name']] for p in m['params']]
        messages[m['name']] = {
            'params': params,
            'result': m['result'][0] if m['result'] else 'void',
            'errors': sorted(e['name'] for e in m['errors']),
            'implicit': bool(m['implicit']),
        }
        if m['name'] == 'create' and m['implicit']:
            match = _CTOR_RE.search(m['description'])
            if match:
                args = [a.strip() for a in match.group(1).split(',')]
                # datamodel order: the first missing field is the one
                # xapi reports
                required = [a[:-1] for a in args if a.endswith('*')]
                ctor = [a.rstrip('*') for a in args]
                messages['create']['constructor_fields'] = ctor
                messages['create']['required_fields'] = required
    enums = {e['name']: [v['name'] for v in e['values']]
             for e in cls['enums']}
    return {'fields': fields, 'messages': messages}, enums


def load_error_codes(path):
    codes = {}
    with open(path) as fh:
        for line in fh:
            line = line.rstrip('\n')
            if not line:
                continue
            code, _, params = line.partition('\t')
            codes[code] = [p.strip() for p in params.split(',') if p.strip()]
    return codes


def build(datamodel_path, errors_path):
    with open(datamodel_path, 'rb') as fh:
        raw = fh.read()
    datamodel = json.loads(raw)
    classes = {}
    enums = {}
    for cls in datamodel:
        compact, cls_enums = compact_class(cls)
        classes[cls['name']] = compact
        enums.update(cls_enums)
    return {
        'source': {
            'datamodel_sha256': hashlib.sha256(raw).hexdigest(),
        },
        'classes': classes,
        'enums': enums,
        'errors': load_error_codes(errors_path),
    }


def dumps(schema):
    return json.dumps(schema, sort_keys=True, separators=(',', ':')) + '\n'


def main(argv):
    if len(argv) != 3:
        sys.stderr.write('usage: %s XENAPI_JSON ERROR_CODES_TSV\n' % argv[0])
        return 2
    sys.stdout.write(dumps(build(argv[1], argv[2])))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
