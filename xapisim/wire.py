"""XML-RPC on the wire, the way xapi writes it."""

import xmlrpc.client
from xml.sax.saxutils import escape

# xapi reads at most this much of an XML-RPC request body.
MAX_RPC_BODY = 300 * 1024


class MalformedCall(Exception):
    """The body is not an XML-RPC methodCall; xapi answers HTTP 500."""


def decode_call(body):
    """(method name, params) of an XML-RPC methodCall."""
    try:
        params, method = xmlrpc.client.loads(body)
    except Exception as exc:  # expat errors, bad values, anything
        raise MalformedCall(str(exc))
    if not method:
        raise MalformedCall('no methodName')
    return method, params


def success(value):
    return _response({'Status': 'Success', 'Value': value})


def failure(description):
    return _response({'Status': 'Failure', 'ErrorDescription': description})


def _response(struct):
    return ("<?xml version='1.0'?>\n<methodResponse><params><param>%s"
            "</param></params></methodResponse>\n"
            % _encode(struct)).encode('utf-8')


def _text(value):
    if '&' in value or '<' in value or '>' in value:
        return escape(value)
    return value


def _encode(value):
    """One XML-RPC <value>, written as xapi writes it (strings untagged)."""
    kind = type(value)
    if kind is str:
        return '<value>%s</value>' % _text(value)
    if kind is dict:
        return '<value><struct>%s</struct></value>' % ''.join([
            '<member><name>%s</name>%s</member>' % (_text(k), _encode(v))
            for k, v in value.items()])
    if kind is list or kind is tuple:
        return '<value><array><data>%s</data></array></value>' % ''.join(
            [_encode(v) for v in value])
    if kind is bool:
        return '<value><boolean>%d</boolean></value>' % value
    if kind is int:
        if not -2 ** 31 <= value < 2 ** 31:
            raise OverflowError('int exceeds XML-RPC limits')
        return '<value><i4>%d</i4></value>' % value
    if kind is float:
        return '<value><double>%r</double></value>' % value
    if kind is xmlrpc.client.DateTime:
        return '<value><dateTime.iso8601>%s</dateTime.iso8601></value>' \
            % value.value
    raise TypeError('cannot marshal %r' % (kind,))


def value_text(value):
    """One XML-RPC <value> as text: what xapi stores in task.result."""
    if value is None or value == '':
        return '<value></value>'
    return _encode(value)
