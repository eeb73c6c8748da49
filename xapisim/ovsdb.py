"""A small OVSDB client (RFC 7047): JSON-RPC over an ovsdb-server socket.

Enough for a daemon that watches tables and writes back, as
``ovs-xapi-sync`` does with the OVS Python IDL: ``monitor`` (the initial
rows, then an ``update`` notification after every change), ``transact``
(with ``wait`` operations standing in for the IDL's ``verify``), and the
replies to the server's ``echo``.
"""

import codecs
import json
import socket

_decoder = json.JSONDecoder()


def decode(datum):
    """An OVSDB datum as Python: a map as a dict, a set as a list, an
    atom (a uuid as its string) as itself."""
    if isinstance(datum, list) and len(datum) == 2:
        kind, value = datum
        if kind == 'map':
            return {decode(k): decode(v) for k, v in value}
        if kind == 'set':
            return [decode(v) for v in value]
        if kind in ('uuid', 'named-uuid'):
            return value
    return datum


def encode_map(mapping):
    return ['map', [[k, v] for k, v in sorted(mapping.items())]]


def optional(value):
    """A column of zero or one value (``fail_mode``): the value or None."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


def row_is(uuid):
    return [['_uuid', '==', ['uuid', uuid]]]


class ConnectionClosed(Exception):
    pass


class Connection(object):
    """One connection to ``unix:<path>``; use from a single thread."""

    def __init__(self, path, timeout=30.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.sock.settimeout(None)
        self._buffer = ''
        self._utf8 = codecs.getincrementaldecoder('utf-8')()
        self._next_id = 0

    def close(self):
        """Also wakes the thread that waits in ``receive``."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def request(self, method, params):
        """Send a request; its id (the reply carries it)."""
        self._next_id += 1
        self._send({'method': method, 'params': params, 'id': self._next_id})
        return self._next_id

    def _send(self, message):
        self.sock.sendall(json.dumps(message).encode())

    def receive(self):
        """The next message from the server (echo requests are answered
        here and never returned)."""
        while True:
            message = self._take()
            if message is None:
                try:
                    data = self.sock.recv(65536)
                except OSError:
                    data = b''
                if not data:
                    raise ConnectionClosed()
                self._buffer += self._utf8.decode(data)
                continue
            if message.get('method') == 'echo':
                self._send({'result': message.get('params', []),
                            'error': None, 'id': message.get('id')})
                continue
            return message

    def _take(self):
        text = self._buffer.lstrip()
        if not text:
            self._buffer = ''
            return None
        try:
            message, end = _decoder.raw_decode(text)
        except ValueError:
            self._buffer = text
            return None         # not all of it has arrived yet
        self._buffer = text[end:]
        return message


class TableCache(object):
    """The rows a monitor reported, by table and uuid (columns decoded)."""

    def __init__(self):
        self.tables = {}

    def apply(self, updates):
        for table, rows in updates.items():
            cached = self.tables.setdefault(table, {})
            for uuid, change in rows.items():
                new = change.get('new')
                if new is None:
                    cached.pop(uuid, None)
                else:
                    cached[uuid] = {k: decode(v) for k, v in new.items()}

    def rows(self, table):
        return self.tables.get(table, {})
