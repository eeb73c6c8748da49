"""The session layer: the one way the driver talks to xapi.

A bounded pool of logged-in XenAPI sessions to the pool master, safe to
share between threads (each call borrows a session for its duration).
It follows ``HOST_IS_SLAVE`` to the master, at login and when the master
moves; logs in again when xapi restarts (the XenAPI client retries on
``SESSION_INVALID``); verifies TLS by default; puts a timeout on every
call; waits for tasks with ``event.from`` and destroys them; and turns
failures into Nova exceptions.  Passwords never reach a log line, a URL or
an exception message.
"""

import contextlib
import errno
import http.client
import json
import socket
import ssl
import threading
import time
import urllib.parse
import xmlrpc.client

from nova import exception
from oslo_log import log as logging
import XenAPI

from nova_xen import errors
from nova_xen import reclaim
from nova_xen import tasks

LOG = logging.getLogger(__name__)

ORIGINATOR = 'nova-xen'
API_VERSION = '2.21'
# a refused connection (xapi restarting) is retried this many times
CONNECT_RETRIES = 5
# how long a cancelled task may take to stop
CANCEL_WAIT = 10.0


class _TimeoutMixin(object):
    """An xmlrpc transport whose socket timeout can change per call."""

    timeout = None

    def set_timeout(self, seconds):
        self.timeout = seconds
        conn = self._connection[1] if self._connection else None
        if conn is not None:
            conn.timeout = seconds
            if conn.sock is not None:
                conn.sock.settimeout(seconds)

    def make_connection(self, host):
        conn = super(_TimeoutMixin, self).make_connection(host)
        conn.timeout = self.timeout
        return conn


class _Transport(_TimeoutMixin, xmlrpc.client.Transport):
    pass


class _SafeTransport(_TimeoutMixin, xmlrpc.client.SafeTransport):
    pass


def tls_context(ca_file=None, insecure=False):
    """The TLS context for xapi; a bad ``ca_file`` is a StartupError that
    names the option, not a bare OSError or SSLError."""
    if insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    try:
        return ssl.create_default_context(cafile=ca_file or None)
    except ssl.SSLError as exc:
        raise errors.StartupError(reason=(
            '[xenserver]ca_file %s holds no usable CA certificate (%s): '
            'set it to the PEM file of the CA that signed the pool\'s '
            'certificate' % (ca_file, getattr(exc, 'reason', None) or exc)))
    except OSError as exc:
        raise errors.StartupError(reason=(
            'Cannot read [xenserver]ca_file %s: %s. Set it to the PEM file '
            'of the CA that signed the pool\'s certificate.'
            % (ca_file, exc.strerror or exc)))


class SessionRenewed(Exception):
    """xapi no longer knew the session (it restarted) and the client logged
    in again, in the middle of a call whose arguments meant something only
    to the old session (an ``event.from`` token)."""


class _Client(XenAPI.Session):
    """XenAPI's client, which can be told not to replay a call on the new
    session it logs in when xapi says SESSION_INVALID."""

    abort_on_renewal = False

    def _login(self, method, params):
        renewing = self._session is not None
        super(_Client, self)._login(method, params)
        if renewing and self.abort_on_renewal:
            raise SessionRenewed()


def check_url(url):
    """A connection URL we can use, or a StartupError saying what to fix."""
    if not url:
        raise errors.StartupError(reason=(
            'Set [xenserver]connection_url to the URL of the pool master, '
            'for example https://xcp-ng-1.example.com'))
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ('http', 'https') or not parts.hostname:
        raise errors.StartupError(reason=(
            '[xenserver]connection_url must be an http:// or https:// URL '
            'naming a host, not %r' % _redact(url)))
    if parts.username or parts.password:
        raise errors.StartupError(reason=(
            '[xenserver]connection_url must not carry credentials: set '
            '[xenserver]connection_username and connection_password '
            'instead'))
    return url


def _redact(url):
    parts = urllib.parse.urlsplit(url)
    if parts.password or parts.username:
        netloc = parts.hostname or ''
        if parts.port:
            netloc += ':%d' % parts.port
        parts = parts._replace(netloc='***@' + netloc)
    return urllib.parse.urlunsplit(parts)


def _resolve(proxy, method):
    target = proxy
    for part in method.split('.'):
        target = getattr(target, part)
    return target


def parse_task_result(text):
    """task.result is one XML-RPC <value>; '' for a void result."""
    if not text or text == '<value></value>':
        return ''
    doc = ('<?xml version="1.0"?><methodResponse><params><param>%s</param>'
           '</params></methodResponse>' % text)
    (value,), _ = xmlrpc.client.loads(doc)
    return value


class Session(object):
    def __init__(self, url, username, password, concurrent=5,
                 login_timeout=10, call_timeout=120, task_timeout=1800,
                 ca_file=None, insecure=False):
        self._url = check_url(url)
        self._configured_url = url
        self._username = username
        self._password = password
        self._concurrent = concurrent
        self._login_timeout = login_timeout
        self.call_timeout = call_timeout
        self.task_timeout = task_timeout
        self._tls = tls_context(ca_file, insecure) \
            if url.startswith('https') else None
        self._idle = []
        self._created = 0
        # the session ref new connections share: (generation, ref)
        self._shared = None
        # seconds callers waited for a free connection, and how often
        self.waited = 0.0
        self.waits = 0
        self._closed = False
        self._cond = threading.Condition()
        self._generation = 0     # bumped when the master moves
        # what could not be removed, for the reclaimer (reclaim.py)
        self.leftovers = reclaim.Leftovers()
        # steps to retry until they are done, for the reclaimer too
        self.deferred = reclaim.Deferred()
        self._tasks = None       # the task watcher, at the first task

    # -- addresses -----------------------------------------------------

    @property
    def url(self):
        return self._url

    def url_for(self, address):
        """The URL of xapi on another host: same scheme and port."""
        parts = urllib.parse.urlsplit(self._url)
        netloc = address if ':' not in address else '[%s]' % address
        if parts.port:
            netloc += ':%d' % parts.port
        return urllib.parse.urlunsplit((parts.scheme, netloc, '', '', ''))

    def http_connection(self, address, timeout=None):
        """An HTTP(S) connection to xapi on the host at ``address``."""
        parts = urllib.parse.urlsplit(self.url_for(address))
        if parts.scheme == 'https':
            return http.client.HTTPSConnection(
                parts.hostname, parts.port or 443, context=self._tls,
                timeout=timeout or self.call_timeout)
        return http.client.HTTPConnection(parts.hostname, parts.port or 80,
                                          timeout=timeout or self.call_timeout)

    # -- logging in ------------------------------------------------------

    def _new_xenapi(self):
        transport = _SafeTransport(context=self._tls) if self._tls \
            else _Transport()
        transport.set_timeout(self._login_timeout)
        return _Client(self._url, transport=transport)

    def _login(self):
        """A new logged-in XenAPI session, following HOST_IS_SLAVE."""
        for _ in range(3):
            xenapi = self._new_xenapi()
            try:
                xenapi.login_with_password(self._username, self._password or '',
                                           API_VERSION, ORIGINATOR)
            except XenAPI.Failure as exc:
                if exc.details and exc.details[0] == 'HOST_IS_SLAVE':
                    self._follow_master(exc.details[1])
                    continue
                if exc.details and exc.details[0] == \
                        'SESSION_AUTHENTICATION_FAILED':
                    raise errors.StartupError(reason=(
                        'xapi at %s refused the credentials of user %r '
                        '(SESSION_AUTHENTICATION_FAILED). Check '
                        '[xenserver]connection_username and '
                        'connection_password.' % (self._url, self._username)))
                raise errors.translate('session.login_with_password',
                                       exc.details)
            except ssl.SSLError as exc:
                raise errors.StartupError(reason=(
                    'TLS verification of %s failed: %s. Set '
                    '[xenserver]ca_file to the CA that signed the pool\'s '
                    'certificate (or insecure=true, for tests only).'
                    % (self._url, getattr(exc, 'reason', None) or exc)))
            except (OSError, http.client.HTTPException) as exc:
                raise errors.StartupError(reason=(
                    'Cannot reach xapi at %s: %s. Check '
                    '[xenserver]connection_url and that xapi is running.'
                    % (self._url, _reason(exc))))
            except (xmlrpc.client.ProtocolError, xmlrpc.client.Fault,
                    ValueError) as exc:
                raise errors.StartupError(reason=(
                    '%s does not answer like xapi (%s). Check '
                    '[xenserver]connection_url.' % (self._url, _reason(exc))))
            xenapi.transport.set_timeout(self.call_timeout)
            return xenapi
        raise errors.StartupError(reason=(
            'The pool master keeps moving (HOST_IS_SLAVE); last seen at %s'
            % self._url))

    def _follow_master(self, address):
        new_url = self.url_for(address)
        with self._cond:
            if new_url == self._url:
                return
            LOG.warning('xapi at %s is a pool member; following the pool '
                        'master to %s', self._url, new_url)
            self._url = new_url
            self._generation += 1
            stale, self._idle = self._idle, []
            self._created -= len(stale)
            self._cond.notify_all()
        for _, xenapi in stale:
            _quiet_logout(xenapi)

    def connect(self):
        """Log in once now, so that start-up errors surface at once."""
        xenapi = self._login()
        with self._cond:
            self._created += 1
            self._shared = (self._generation, xenapi._session)
            self._idle.append((self._generation, xenapi))
        return self

    def _open(self, generation):
        """A new connection: on the session the others share (xapi takes
        one session on many connections at once), or a new login."""
        with self._cond:
            shared = self._shared
        if shared is None or shared[0] != generation:
            xenapi = self._login()
            with self._cond:
                if generation == self._generation:
                    self._shared = (generation, xenapi._session)
            return xenapi
        xenapi = self._new_xenapi()
        xenapi._session = shared[1]
        # what XenAPI's client replays when xapi forgot the session
        xenapi.last_login_method = 'login_with_password'
        xenapi.last_login_params = (self._username, self._password or '',
                                    API_VERSION, ORIGINATOR)
        xenapi.transport.set_timeout(self.call_timeout)
        return xenapi

    # -- the pool --------------------------------------------------------

    @contextlib.contextmanager
    def _borrow(self):
        with self._cond:
            while True:
                if self._closed:
                    raise errors.XenAPIConnectionError(
                        url=self._url, reason='the session pool is closed')
                if self._idle:
                    generation, xenapi = self._idle.pop()
                    if generation == self._generation:
                        break
                    self._created -= 1
                    continue
                if self._created < self._concurrent:
                    self._created += 1
                    generation, xenapi = self._generation, None
                    break
                began = time.monotonic()
                self._cond.wait()
                self.waited += time.monotonic() - began
                self.waits += 1
        healthy = False
        try:
            if xenapi is None:
                xenapi = self._open(generation)
            healthy = True
            yield xenapi
        except (OSError, http.client.HTTPException):
            healthy = False
            raise
        finally:
            with self._cond:
                if healthy and not self._closed and \
                        generation == self._generation:
                    self._idle.append((generation, xenapi))
                    if self._shared is None or \
                            xenapi._session != self._shared[1]:
                        # it logged in again (xapi restarted): share that
                        self._shared = (generation, xenapi._session)
                else:
                    self._created -= 1
                    if xenapi is not None and self._closed:
                        _quiet_logout(xenapi)
                self._cond.notify()

    def logout_session(self, session_ref):
        """Log out a session of this pool that is not ours (the one a
        host.migrate_receive token holds); False if xapi would not."""
        try:
            with self._borrow() as xenapi:
                # XenAPI's proxy, without our session put in front
                result = getattr(xenapi, 'session.logout')(session_ref)
            return result.get('Status') == 'Success'
        except Exception as exc:
            LOG.debug('could not log out a session: %s', type(exc).__name__)
            return False

    def hand_out(self):
        """A new session of this pool for another pool's nova-compute (the
        destination of a cold migration): its ref, to be logged out with
        logout_session once that compute is done."""
        xenapi = self._login()
        ref = xenapi._session
        xenapi.transport.close()
        return ref

    def dedicated(self):
        """A logged-in XenAPI session outside the pool (the VM watcher's)."""
        return self._login()

    @contextlib.contextmanager
    def http_session(self):
        """A valid session ref for xapi's HTTP handlers.

        The ref is checked (and renewed, after a xapi restart) on a pooled
        session, which is then free again: a transfer that takes minutes
        keeps no other call waiting (xapi takes one session on several
        connections at once)."""
        with self._borrow() as xenapi:
            xenapi.xenapi.session.get_this_host(xenapi._session)
            ref = xenapi._session
        yield ref

    def close(self):
        """Log every session out (cleanup_host)."""
        with self._cond:
            self._closed = True
            watcher, self._tasks = self._tasks, None
            idle, self._idle = self._idle, []
            self._created -= len(idle)
            self._cond.notify_all()
        if watcher is not None:
            watcher.stop()
        done = set()
        for _, xenapi in idle:
            if xenapi._session in done:
                xenapi.transport.close()
                continue
            done.add(xenapi._session)
            _quiet_logout(xenapi)

    @property
    def size(self):
        with self._cond:
            return self._created

    # -- calling ---------------------------------------------------------

    def call(self, method, *args, **kwargs):
        """Call a XenAPI message (``'VM.get_record'``); returns its value."""
        timeout = kwargs.pop('timeout', None) or self.call_timeout
        for attempt in range(CONNECT_RETRIES + 1):
            try:
                with self._borrow() as xenapi:
                    xenapi.transport.set_timeout(timeout)
                    try:
                        return _resolve(xenapi.xenapi, method)(*args)
                    except socket.timeout:
                        xenapi.transport.close()
                        raise errors.XenAPIConnectionError(
                            url=self._url, reason='%s took more than %s s'
                            % (method, timeout))
            except XenAPI.Failure as exc:
                details = exc.details or ['UNKNOWN']
                if details[0] == 'HOST_IS_SLAVE' and attempt < CONNECT_RETRIES:
                    self._follow_master(details[1])
                    continue
                raise errors.translate(method, details)
            except errors.StartupError as exc:
                # a re-login failed (xapi restarting): retry, then give up
                if attempt >= CONNECT_RETRIES:
                    raise errors.XenAPIConnectionError(url=self._url,
                                                       reason=str(exc))
            except ConnectionRefusedError as exc:
                # xapi is restarting: the request never reached it
                if attempt >= CONNECT_RETRIES:
                    raise errors.XenAPIConnectionError(url=self._url,
                                                       reason=_reason(exc))
            except (OSError, http.client.HTTPException) as exc:
                raise errors.XenAPIConnectionError(url=self._url,
                                                   reason=_reason(exc))
            time.sleep(min(2 ** attempt * 0.2, 5))

    def call_async(self, method, *args, **kwargs):
        """Run ``method`` as a task, wait for it, destroy it.

        The wait holds no pooled session: the task watcher (tasks.py)
        hears the task end on its own connection.
        """
        timeout = kwargs.pop('timeout', None) or self.task_timeout
        # told the task's ref, for a caller that may cancel it (an abort)
        on_task = kwargs.pop('on_task', None)
        # told the task's progress (0..1) as xapi reports it
        on_progress = kwargs.pop('on_progress', None)
        watcher = self._task_watcher()
        task = self.call('Async.' + method, *args)
        if on_task is not None:
            on_task(task)
        try:
            record = self._wait_task(watcher, task, timeout, method,
                                     on_progress)
        finally:
            self.destroy_task(task)
        if record['status'] == 'success':
            return parse_task_result(record['result'])
        raise errors.translate(method, record['error_info'] or
                               ['TASK_FAILED', record['status']])

    def _task_watcher(self):
        with self._cond:
            if self._closed:
                raise errors.XenAPIConnectionError(
                    url=self._url, reason='the session pool is closed')
            if self._tasks is None:
                self._tasks = tasks.TaskWatcher(self)
            watcher = self._tasks
        watcher.ensure_started()
        return watcher

    def destroy_task(self, task):
        """Destroy a task we created; one xapi will not destroy now is left
        to the reclaimer (a task gone with a xapi restart is fine)."""
        reclaim.destroy(self, reclaim.TASK, task)

    def _wait_task(self, watcher, task, timeout, method, on_progress=None):
        record = watcher.wait(
            task, timeout, None if on_progress is None else
            lambda value: _tell(on_progress, value))
        if record is tasks.LOST:
            raise _task_lost(method, task)
        if record is not None:
            return record
        # a task past the last point where xapi honours a cancel ends in
        # success all the same: what it did is done (a VM halted, a clone
        # made), and reporting it as timed out would have the caller act
        # on a state that no longer is, or leak what the task made
        record = self._cancel(watcher, task)
        if record is not None and record is not tasks.LOST and \
                record['status'] == 'success':
            LOG.info('XenAPI %s finished as it was cancelled, after %s s',
                     method, timeout)
            return record
        raise errors.XenAPIError(method, ['TIMEOUT', str(timeout)],
                                 message='XenAPI %s did not finish within '
                                 '%s s; cancelled' % (method, timeout))

    def _cancel(self, watcher, task):
        """Cancel a task and give it a moment to wind down: its final
        record, or None if it has not ended by then.  A task that ended
        before the cancel reached it (xapi may refuse to cancel it) has
        its final record too."""
        try:
            self.call('task.cancel', task)
        except Exception:
            LOG.debug('could not cancel task %s', task)
        try:
            return watcher.wait(task, CANCEL_WAIT)
        except Exception as exc:
            LOG.debug('task %s: no final record after its cancel (%s)',
                      task, errors.why(exc))
            return None

    def call_plugin(self, host, plugin, fn, args=None, long_running=False,
                    as_task=False):
        """A dom0 plugin function: JSON arguments in, JSON result out.

        ``as_task``: the call runs as a task (``Async.host.call_plugin``),
        so that no pooled connection is held while dom0 works (xapi starts
        a process for every plugin call: calls made for every domain, such
        as isolation rules, would otherwise keep short calls waiting when
        many run at once); it costs one call more (``task.destroy``).
        ``long_running`` calls (image transfers) run as a task too,
        bounded by task_timeout rather than call_timeout.
        """
        params = {'params': json.dumps(args or {})}
        try:
            if long_running:
                text = self.call_async('host.call_plugin', host, plugin, fn,
                                       params)
            elif as_task:
                text = self.call_async('host.call_plugin', host, plugin, fn,
                                       params, timeout=self.call_timeout)
            else:
                text = self.call('host.call_plugin', host, plugin, fn, params)
        except (errors.XenAPIError, exception.NovaException) as exc:
            details = getattr(exc, 'details', None) or [str(exc)]
            raise errors.PluginError(details, plugin=plugin, fn=fn,
                                     reason=errors.describe(details))
        try:
            return json.loads(text) if text else None
        except ValueError:
            raise errors.PluginError(plugin=plugin, fn=fn,
                                     reason='result is not JSON: %r'
                                     % text[:200])


def _tell(on_progress, progress):
    try:
        fraction = min(max(float(progress), 0.0), 1.0)
    except (TypeError, ValueError):
        return
    try:
        on_progress(fraction)
    except Exception:
        LOG.exception('a task progress callback failed')


def _task_lost(method, task):
    return errors.XenAPIError(
        method, ['TASK_LOST', task],
        message='XenAPI %s did not finish: xapi restarted while it ran, and '
        'its task %s is gone' % (method, task))


def _reason(exc):
    if isinstance(exc, socket.gaierror):
        return 'cannot resolve the host name (%s)' % exc.strerror
    if isinstance(exc, ConnectionRefusedError):
        return 'connection refused'
    if isinstance(exc, socket.timeout):
        return 'timed out'
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH,
                                                  errno.ENETUNREACH):
        return 'no route to host'
    if isinstance(exc, xmlrpc.client.ProtocolError):
        return 'HTTP %s %s' % (exc.errcode, exc.errmsg)
    return str(exc) or exc.__class__.__name__


def _quiet_logout(xenapi):
    try:
        xenapi.xenapi.session.logout()
    except Exception:
        pass
    xenapi.transport.close()


class HandedSession(Session):
    """A session another pool's nova-compute handed over (Session.hand_out
    there): used as it is, never logged in again, logged out by close()."""

    def __init__(self, url, session_ref, **kwargs):
        super(HandedSession, self).__init__(url, None, None, concurrent=1,
                                            **kwargs)
        self._ref = session_ref

    def _login(self):
        xenapi = self._new_xenapi()
        xenapi._session = self._ref
        xenapi.transport.set_timeout(self.call_timeout)
        return xenapi

    def _open(self, generation):
        return self._login()

    def close(self):
        self.logout_session(self._ref)
        super(HandedSession, self).close()
