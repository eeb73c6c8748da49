"""Shared by nova-xen's xapi plugins: arguments, failures, dom0 paths.

Runs in dom0 on Python 3.6 with only the standard library and the
XenAPI/XenAPIPlugin modules dom0 provides.  Installed beside the plugins
in /etc/xapi.d/plugins, from where the plugins import it.

Every plugin function takes one argument, ``params``: a JSON document
passed by the driver as the string value of the ``params`` key of
host.call_plugin's argument map.  It returns a JSON-serialisable value,
which travels back as a JSON string.  Every argument is validated before
anything happens; a bad one raises ``XenAPIPlugin.Failure`` with
``NOVA_XEN_INVALID_ARGUMENT [name, reason]``.  Unexpected errors become
``NOVA_XEN_PLUGIN_ERROR [exception class, message]``: never a traceback.
"""

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import syslog

import XenAPIPlugin

# The plugin API version: the driver refuses to run against another major
# one, or an older minor one (1.1: nova_xen_ovs.py; 1.2: apply_rules of
# nova_xen_isolation.py takes networks and a macs list).
API_VERSION = '1.2'

_UUID_RE = re.compile(r'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-'
                      r'[0-9a-f]{12}$')
_MAC_RE = re.compile(r'^[0-9a-f]{2}(:[0-9a-f]{2}){5}$')
XAPI_SOCKET = '/var/lib/xcp/xapi'


class InvalidArgument(Exception):
    def __init__(self, name, reason):
        Exception.__init__(self, '%s: %s' % (name, reason))
        self.name = name
        self.reason = reason


def fail(code, *params):
    """Stop with a failure of our own: ``[code, params...]``."""
    raise XenAPIPlugin.Failure(code, [str(p) for p in params])


def log(message, *args):
    try:
        syslog.openlog('nova-xen')
        syslog.syslog(syslog.LOG_INFO, message % args)
    except Exception:
        pass


def dom0_path(path):
    """A dom0 path; under $DOM0_ROOT when a simulator runs the plugin."""
    root = os.environ.get('DOM0_ROOT')
    if not root:
        return path
    return os.path.join(root, path.lstrip('/'))


# -- dom0 commands ------------------------------------------------------

def find_command(name, override_env):
    """The path of dom0's ``name`` command, or None.  ``override_env``
    names an environment variable that replaces the search (tests only;
    xapi never sets it)."""
    override = os.environ.get(override_env)
    if override:
        candidates = [override]
    else:
        dirs = os.environ.get('PATH', '').split(os.pathsep)
        candidates = [os.path.join(d, name) for d in
                      dirs + ['/usr/sbin', '/usr/bin', '/sbin', '/bin'] if d]
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def run(argv, data=None, timeout=30):
    """Run a command: (exit status, stdout, stderr) as bytes; the status
    is None when it took more than ``timeout`` seconds (it is killed)."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None, b'', b''
    return proc.returncode, out, err


# -- argument validation ------------------------------------------------

_MISSING = object()


def arg(params, name, kind, default=_MISSING, **limits):
    """The validated value of ``params[name]``.

    kinds: str, int, bool, uuid, mac, url, list, dict.  Limits: ``min`` and
    ``max`` (int), ``max_len`` (str, list), ``choices``, ``schemes`` (url).
    """
    if name not in params or params[name] is None:
        if default is _MISSING:
            raise InvalidArgument(name, 'is required')
        return default
    value = params[name]
    check = _CHECKS.get(kind)
    if check is None:
        raise InvalidArgument(name, 'unknown kind %s' % kind)
    value = check(name, value, limits)
    if 'choices' in limits and value not in limits['choices']:
        raise InvalidArgument(name, 'must be one of %s'
                              % ', '.join(map(str, limits['choices'])))
    return value


def _check_str(name, value, limits):
    if not isinstance(value, str):
        raise InvalidArgument(name, 'must be a string')
    if len(value) > limits.get('max_len', 4096):
        raise InvalidArgument(name, 'is too long')
    if '\0' in value:
        raise InvalidArgument(name, 'contains a NUL byte')
    return value


def _check_int(name, value, limits):
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(name, 'must be an integer')
    if 'min' in limits and value < limits['min']:
        raise InvalidArgument(name, 'must be at least %d' % limits['min'])
    if 'max' in limits and value > limits['max']:
        raise InvalidArgument(name, 'must be at most %d' % limits['max'])
    return value


def _check_bool(name, value, limits):
    if not isinstance(value, bool):
        raise InvalidArgument(name, 'must be true or false')
    return value


def _check_uuid(name, value, limits):
    if not isinstance(value, str) or not _UUID_RE.match(value):
        raise InvalidArgument(name, 'must be a lower-case UUID')
    return value


def _check_mac(name, value, limits):
    if not isinstance(value, str) or not _MAC_RE.match(value.lower()):
        raise InvalidArgument(name, 'must be a MAC address')
    return value.lower()


def _check_url(name, value, limits):
    value = _check_str(name, value, limits)
    schemes = limits.get('schemes', ('https', 'http'))
    scheme = value.split(':', 1)[0].lower()
    if scheme not in schemes or '://' not in value:
        raise InvalidArgument(name, 'must be a %s URL'
                              % ' or '.join(schemes))
    if re.search(r'[\s\0]', value):
        raise InvalidArgument(name, 'contains white space')
    return value


def _check_list(name, value, limits):
    if not isinstance(value, list):
        raise InvalidArgument(name, 'must be a list')
    if len(value) > limits.get('max_len', 1024):
        raise InvalidArgument(name, 'has too many items')
    return value


def _check_dict(name, value, limits):
    if not isinstance(value, dict):
        raise InvalidArgument(name, 'must be an object')
    return value


_CHECKS = {'str': _check_str, 'int': _check_int, 'bool': _check_bool,
           'uuid': _check_uuid, 'mac': _check_mac, 'url': _check_url,
           'list': _check_list, 'dict': _check_dict}


# -- talking to the local xapi ------------------------------------------

class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP to xapi over its Unix socket in dom0."""

    def __init__(self, path=None, timeout=300):
        http.client.HTTPConnection.__init__(self, 'localhost',
                                            timeout=timeout)
        self.socket_path = path or dom0_path(XAPI_SOCKET)

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


# -- dispatch -----------------------------------------------------------

def _wrap(fn):
    def call(session, args):
        try:
            raw = args.get('params', '{}')
            try:
                params = json.loads(raw)
            except ValueError:
                raise InvalidArgument('params', 'is not JSON')
            if not isinstance(params, dict):
                raise InvalidArgument('params', 'must be a JSON object')
            return json.dumps(fn(session, params))
        except InvalidArgument as exc:
            fail('NOVA_XEN_INVALID_ARGUMENT', exc.name, exc.reason)
        except XenAPIPlugin.Failure:
            raise
        except Exception as exc:
            log('%s failed: %s: %s', fn.__name__, exc.__class__.__name__,
                exc)
            fail('NOVA_XEN_PLUGIN_ERROR', exc.__class__.__name__, str(exc))
    call.__name__ = fn.__name__
    return call


def dispatch(functions):
    """Serve ``{name: fn(session, params)}`` the way xapi calls plugins."""
    table = dict((name, _wrap(fn)) for name, fn in functions.items())
    table['plugin_api_version'] = _wrap(
        lambda session, params: {'api_version': API_VERSION})
    XenAPIPlugin.dispatch(table)


def main(functions):
    if len(sys.argv) != 2:
        sys.stderr.write('%s is a xapi plugin: call it with '
                         'host.call_plugin\n' % sys.argv[0])
        sys.exit(2)
    dispatch(functions)
