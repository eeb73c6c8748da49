"""xapisim's stand-in for dom0's ``XenAPI`` module, as plugins use it.

``xapi_local()`` returns a session that talks HTTP over xapi's Unix socket
(``/var/lib/xcp/xapi`` under the simulated host's dom0 root), the way the
real module does in dom0; ``Failure`` carries ``[code, params...]``.
Runs on Python 3.6.
"""

import http.client
import os
import socket
import xmlrpc.client

XAPI_SOCKET = 'var/lib/xcp/xapi'


def dom0_path(path):
    return os.path.join(os.environ.get('DOM0_ROOT', '/'), path.lstrip('/'))


class Failure(Exception):
    def __init__(self, details):
        Exception.__init__(self)
        self.details = details

    def __str__(self):
        return str(self.details)


class UDSHTTPConnection(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(dom0_path(XAPI_SOCKET))


class UDSTransport(xmlrpc.client.Transport):
    def make_connection(self, host):
        if self._connection and host == self._connection[0]:
            return self._connection[1]
        self._connection = host, UDSHTTPConnection(host)
        return self._connection[1]


class _Dispatcher(object):
    def __init__(self, send, name):
        self._send = send
        self._name = name

    def __getattr__(self, name):
        if self._name is None:
            return _Dispatcher(self._send, name)
        return _Dispatcher(self._send, '%s.%s' % (self._name, name))

    def __call__(self, *args):
        return self._send(self._name, args)


class Session(xmlrpc.client.ServerProxy):
    def __init__(self, uri, transport=None):
        xmlrpc.client.ServerProxy.__init__(self, uri, transport,
                                           allow_none=True)
        self._session = None

    def _call(self, methodname, params):
        if methodname.startswith('login'):
            result = _parse(getattr(self, 'session.' + methodname)(*params))
            self._session = result
            return result
        if methodname in ('logout', 'session.logout'):
            result = _parse(getattr(self, 'session.logout')(self._session))
            self._session = None
            return result
        return _parse(getattr(self, methodname)(self._session, *params))

    def __getattr__(self, name):
        if name == 'xenapi':
            return _Dispatcher(self._call, None)
        if name == 'handle':
            return self._session
        if name.startswith('login'):
            return lambda *params: self._call(name, params)
        if name.startswith('__'):
            raise AttributeError(name)
        return xmlrpc.client.ServerProxy.__getattr__(self, name)


def _parse(result):
    if result.get('Status') == 'Success':
        return result['Value']
    raise Failure(result.get('ErrorDescription', ['INTERNAL_ERROR']))


def xapi_local():
    return Session('http://_var_lib_xcp_xapi/', transport=UDSTransport())
