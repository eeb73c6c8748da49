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
    return xmlrpc.client.dumps((struct,), methodresponse=True).encode('utf-8')


def value_text(value):
    """One XML-RPC <value> as text: what xapi stores in task.result."""
    if value is None or value == '':
        return '<value></value>'
    if isinstance(value, str):
        return '<value>%s</value>' % escape(value)
    xml = xmlrpc.client.dumps((value,))
    start = xml.index('<value>')
    end = xml.rindex('</value>') + len('</value>')
    return xml[start:end]
