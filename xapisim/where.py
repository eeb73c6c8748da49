"""The expression language of ``get_all_records_where``.

Grammar (xapi's database filter)::

    expr   := term ('or' term)*
    term   := factor ('and' factor)*
    factor := 'not' factor | '(' expr ')' | 'true' | 'false'
            | value ('=' | '<>') value
    value  := 'field' '"name"' | '"literal"'

Field names use the database's column spelling, where a nested name is
joined with a double underscore (``name__label``); the API spelling
(``name_label``) is accepted too.  Values compare as the strings xapi
stores: booleans ``true``/``false``, numbers in decimal.
"""

import re

from xapisim.errors import XapiError

_TOKEN_RE = re.compile(r'\s*(?:(\()|(\))|(<>|=)|"((?:[^"\\]|\\.)*)"|([A-Za-z_]+))')


class _Parser(object):
    def __init__(self, text):
        self.text = text
        self.tokens = self._lex(text)
        self.pos = 0

    def _fail(self):
        raise XapiError('INVALID_VALUE', 'expr', self.text)

    def _lex(self, text):
        tokens = []
        pos = 0
        text = text.rstrip()
        while pos < len(text):
            m = _TOKEN_RE.match(text, pos)
            if not m or m.end() == pos:
                self._fail()
            lpar, rpar, op, quoted, word = m.groups()
            if lpar:
                tokens.append(('(', None))
            elif rpar:
                tokens.append((')', None))
            elif op:
                tokens.append(('op', op))
            elif quoted is not None:
                tokens.append(('str', re.sub(r'\\(.)', r'\1', quoted)))
            else:
                tokens.append(('word', word.lower()))
            pos = m.end()
        return tokens

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def take(self):
        tok = self.peek()
        if tok[0] is None:
            self._fail()
        self.pos += 1
        return tok

    def parse(self):
        node = self.expr()
        if self.pos != len(self.tokens):
            self._fail()
        return node

    def expr(self):
        node = self.term()
        while self.peek() == ('word', 'or'):
            self.take()
            node = ('or', node, self.term())
        return node

    def term(self):
        node = self.factor()
        while self.peek() == ('word', 'and'):
            self.take()
            node = ('and', node, self.factor())
        return node

    def factor(self):
        kind, val = self.peek()
        if kind == 'word' and val == 'not':
            self.take()
            return ('not', self.factor())
        if kind == 'word' and val in ('true', 'false'):
            self.take()
            return ('const', val == 'true')
        if kind == '(':
            self.take()
            node = self.expr()
            if self.take()[0] != ')':
                self._fail()
            return node
        left = self.value()
        kind, op = self.take()
        if kind != 'op':
            self._fail()
        right = self.value()
        return ('eq' if op == '=' else 'ne', left, right)

    def value(self):
        kind, val = self.take()
        if kind == 'word' and val == 'field':
            kind, name = self.take()
            if kind != 'str':
                self._fail()
            return ('field', name)
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
    if left is None or right is None:
        return False
    return (left == right) if kind == 'eq' else (left != right)


def _value(node, record):
    if node[0] == 'lit':
        return node[1]
    value = _column(record, node[1])
    return None if value is None else _as_text(value)
