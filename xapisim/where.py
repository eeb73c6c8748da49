"""The expression language of ``get_all_records_where``.

xapi's database filter (``db_filter_lex.mll`` / ``db_filter_parse.mly``)::

    expr  := value '=' value | expr 'and' expr | expr 'or' expr
           | 'not' expr | 'true' | 'false' | '(' expr ')'
    value := '"literal"' | 'field' '"name"'

Keywords are lower case; a quoted string has no escapes; there is no
``<>``.  ``and`` and ``or`` share one precedence and group from the left,
and ``not`` binds more loosely than both: ``not a and b`` is
``not (a and b)``.

A field is named as the database names its column, not as the API names
the field: a field inside one of the datamodel's namespaces is the
namespace and the field joined by a double underscore (``name__label``,
``memory__static_max``, ``VCPUs__max``, ``qos__algorithm_type``), any
other field keeps its name (``power_state``, ``resident_on``), and the
row's reference is ``_ref``.  Values compare as the strings xapi stores:
booleans ``true``/``false``, numbers in decimal, sets and maps as
S-expressions (``('a' 'b')``, ``(('k' 'v'))``).

A malformed expression fails with ``INVALID_VALUE [expr, exception]``,
the exception printed as OCaml prints it.  A field the table has no
column for fails as xapi's database fails when it looks the column up
in a row (``Db_exn.DBCache_NotFound ("missing field", name, "")``, which
reaches the client as ``INTERNAL_ERROR``): only when a row is evaluated,
and not where ``and``/``or`` never reach it.
"""

import re

from xapisim.errors import XapiError

_KEYWORDS = ('true', 'false', 'field', 'and', 'or', 'not')
_TOKEN_RE = re.compile(r'[ \t\n]*(?:(=)|(\()|(\))|"([^"]*)"|(%s))'
                       % '|'.join(_KEYWORDS))

PARSE_ERROR = 'Stdlib.Parsing.Parse_error'
LEX_ERROR = 'Failure("lexing: empty token")'


class _Parser(object):
    def __init__(self, text):
        self.text = text
        self.tokens = self._lex(text)
        self.pos = 0

    def _fail(self, why=PARSE_ERROR):
        raise XapiError('INVALID_VALUE', self.text, why)

    @staticmethod
    def _lex(text):
        """Tokens up to the end, or up to an ('error',) token."""
        tokens = []
        pos = 0
        while True:
            rest = re.match(r'[ \t\n]*', text[pos:]).end() + pos
            if rest == len(text):
                tokens.append(('eof', None))
                return tokens
            m = _TOKEN_RE.match(text, pos)
            if not m:
                tokens.append(('error', None))
                return tokens
            eq, lpar, rpar, quoted, word = m.groups()
            if eq:
                tokens.append(('=', None))
            elif lpar:
                tokens.append(('(', None))
            elif rpar:
                tokens.append((')', None))
            elif quoted is not None:
                tokens.append(('str', quoted))
            else:
                tokens.append((word, None))
            pos = m.end()

    def peek(self):
        tok = self.tokens[self.pos]
        if tok[0] == 'error':
            self._fail(LEX_ERROR)
        return tok[0]

    def take(self, kind=None):
        tok = self.tokens[self.pos]
        if tok[0] == 'error':
            self._fail(LEX_ERROR)
        if kind is not None and tok[0] != kind:
            self._fail()
        self.pos += 1
        return tok

    def parse(self):
        node = self.expr()
        self.take('eof')
        return node

    def expr(self):
        node = self.unary()
        while self.peek() in ('and', 'or'):
            op = self.take()[0]
            node = (op, node, self.unary())
        return node

    def unary(self):
        kind = self.peek()
        if kind == 'not':
            self.take()
            return ('not', self.expr())
        if kind in ('true', 'false'):
            self.take()
            return ('const', kind == 'true')
        if kind == '(':
            self.take()
            node = self.expr()
            self.take(')')
            return node
        left = self.value()
        self.take('=')
        return ('eq', left, self.value())

    def value(self):
        kind, val = self.take()
        if kind == 'field':
            return ('field', self.take('str')[1])
        if kind == 'str':
            return ('lit', val)
        self._fail()


def parse(text):
    """Parse an expression; raises INVALID_VALUE on a syntax error."""
    return _Parser(text).parse()


# The datamodel's namespaces (datamodel.ml ``namespace ~name:...``) whose
# fields become database columns "<namespace>__<field>".  Every class's
# name_label / name_description are the "name" namespace.
NAMESPACES = {
    'VM': ('memory', 'VCPUs', 'actions', 'PV', 'HVM'),
    'host': ('memory', 'API_version'),
    'host_metrics': ('memory',),
    'VM_metrics': ('memory', 'VCPUs'),
    'VBD': ('qos',),
    'VIF': ('qos',),
    'VBD_metrics': ('io',),
    'VIF_metrics': ('io',),
    'PIF_metrics': ('io',),
}
REF_COLUMN = '_ref'

_COLUMNS = {}


def column_name(cls, field):
    """The database column of an API field of class ``cls``."""
    for ns in ('name',) + NAMESPACES.get(cls, ()):
        prefix = ns + '_'
        if field.startswith(prefix) and len(field) > len(prefix):
            if ns == 'name' and field not in ('name_label',
                                              'name_description'):
                continue
            return ns + '__' + field[len(prefix):]
    return field


def columns(cls, fields):
    """{column name: API field name} for a class (computed once)."""
    found = _COLUMNS.get(cls)
    if found is None:
        found = _COLUMNS[cls] = {column_name(cls, f): f for f in fields}
    return found


def missing_field(name):
    return XapiError('INTERNAL_ERROR', 'missing field', name, '')


def _sexpr_atom(text):
    for char in ('\\', "'", '"'):
        text = text.replace(char, '\\' + char)
    return "'%s'" % text


def _as_text(value):
    """A value as xapi's database stores it."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, float):
        return '%.16g' % value
    if isinstance(value, dict):
        return '(%s)' % ' '.join('(%s %s)' % (_sexpr_atom(_as_text(k)),
                                              _sexpr_atom(_as_text(v)))
                                 for k, v in value.items())
    if isinstance(value, list):
        return '(%s)' % ' '.join(_sexpr_atom(_as_text(v)) for v in value)
    return str(value)


def predicate(tree, cls, fields):
    """A predicate (ref, record) -> bool for a parsed expression."""
    cols = columns(cls, fields)

    def value(node, ref, record):
        if node[0] == 'lit':
            return node[1]
        name = node[1]
        if name == REF_COLUMN:
            return ref
        field = cols.get(name)
        if field is None:
            raise missing_field(name)
        return _as_text(record[field])

    def evaluate(node, ref, record):
        kind = node[0]
        if kind == 'const':
            return node[1]
        if kind == 'not':
            return not evaluate(node[1], ref, record)
        if kind == 'and':
            return evaluate(node[1], ref, record) and \
                evaluate(node[2], ref, record)
        if kind == 'or':
            return evaluate(node[1], ref, record) or \
                evaluate(node[2], ref, record)
        return value(node[1], ref, record) == value(node[2], ref, record)

    return lambda ref, record: evaluate(tree, ref, record)
