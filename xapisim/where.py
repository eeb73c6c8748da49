"""The expression language of ``get_all_records_where``.

xapi's database filter (``db_filter_lex.mll`` / ``db_filter_parse.mly``)::

    expr  := value '=' value | expr 'and' expr | expr 'or' expr
           | 'not' expr | 'true' | 'false' | '(' expr ')'
    value := '"literal"' | 'field' '"name"'

Keywords are lower case; a quoted string has no escapes; there is no
``<>``.  ``and`` and ``or`` share one precedence and group from the left,
and ``not`` binds more loosely than both: ``not a and b`` is
``not (a and b)``.  Field names use the database's column spelling, where
a nested name is joined with a double underscore (``name__label``); the
API spelling (``name_label``) is accepted too.  Values compare as the
strings xapi stores: booleans ``true``/``false``, numbers in decimal.

A malformed expression fails with ``INVALID_VALUE [expr, exception]``,
the exception printed as OCaml prints it.
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


def _as_text(value):
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (list, dict)):
        return repr(value)
    return str(value)


def _column(record, name):
    if name in record:
        return record[name]
    api = name.replace('__', '_')
    if api in record:
        return record[api]
    return None


def evaluate(node, record):
    kind = node[0]
    if kind == 'const':
        return node[1]
    if kind == 'not':
        return not evaluate(node[1], record)
    if kind == 'and':
        return evaluate(node[1], record) and evaluate(node[2], record)
    if kind == 'or':
        return evaluate(node[1], record) or evaluate(node[2], record)
    left = _value(node[1], record)
    right = _value(node[2], record)
    return left is not None and left == right


def _value(node, record):
    if node[0] == 'lit':
        return node[1]
    value = _column(record, node[1])
    return None if value is None else _as_text(value)
