"""The session layer against a live simulated pool."""

import logging
import socket
import threading
import time
import unittest

import fixtures
import XenAPI

import xapisim
from xapisim.client import Control
from xapisim import rpc

from nova import exception
from nova_xen import errors
from nova_xen import session as session_mod
from tests import polling
from tests import records

PASSWORD = 's3cret-Pa55'


def free_port():
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


class SessionTestCase(unittest.TestCase):
    hosts = 2

    @classmethod
    def setUpClass(cls):
        cls.sim = xapisim.Simulator(hosts=cls.hosts, password=PASSWORD,
                                    guest_delay=0.01)
        world = cls.sim.describe()
        cls.pool = world['pools'][0]

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()

    def setUp(self):
        self.control = Control(self.pool['master'], 'root', PASSWORD)
        self.addCleanup(self.control.clear_faults)
        self.addCleanup(self.control.set_latency, 0)
        # each test starts with the first host as master
        self.addCleanup(self._reset_master)
        self.log = self._capture_logs()

    def _reset_master(self):
        first = self.pool['hosts'][0]
        for host in self.pool['hosts']:
            try:
                Control(host['url'], 'root', PASSWORD).move_master(
                    first['uuid'])
                return
            except Exception:
                continue

    def _capture_logs(self):
        stream = []

        class Handler(logging.Handler):
            def emit(self, record):
                stream.append(self.format(record))
        handler = Handler()
        root = logging.getLogger()
        root.addHandler(handler)
        old = root.level
        root.setLevel(logging.DEBUG)
        self.addCleanup(root.removeHandler, handler)
        self.addCleanup(root.setLevel, old)
        return stream

    def session(self, url=None, password=PASSWORD, **kwargs):
        sess = session_mod.Session(url or self.pool['master'], 'root',
                                   password, **kwargs)
        self.addCleanup(sess.close)
        return sess

    def admin(self):
        x = XenAPI.Session(self.pool['master'])
        x.login_with_password('root', PASSWORD, '2.21', 'test')
        self.addCleanup(lambda: x.xenapi.session.logout())
        return x.xenapi

    def assertNoPassword(self, text):
        self.assertNotIn(PASSWORD, text)


class StartupErrorsTest(SessionTestCase):

    def test_wrong_password_says_which_options_to_check(self):
        sess = self.session(password='wrong-' + PASSWORD)
        with self.assertRaises(errors.StartupError) as ctx:
            sess.connect()
        message = str(ctx.exception)
        self.assertIn('SESSION_AUTHENTICATION_FAILED', message)
        self.assertIn('connection_password', message)
        self.assertNoPassword(message)
        self.assertNoPassword('\n'.join(self.log))

    def test_unreachable_url(self):
        url = 'http://127.0.0.1:%d' % free_port()
        with self.assertRaises(errors.StartupError) as ctx:
            self.session(url=url).connect()
        self.assertIn('Cannot reach xapi at %s' % url, str(ctx.exception))
        self.assertIn('connection refused', str(ctx.exception))

    def test_missing_url(self):
        with self.assertRaises(errors.StartupError) as ctx:
            session_mod.Session(None, 'root', PASSWORD)
        self.assertIn('connection_url', str(ctx.exception))

    def test_credentials_in_the_url_are_refused_without_echoing_them(self):
        url = self.pool['master'].replace('http://',
                                          'http://root:%s@' % PASSWORD)
        with self.assertRaises(errors.StartupError) as ctx:
            session_mod.Session(url, 'root', PASSWORD)
        self.assertIn('must not carry credentials', str(ctx.exception))
        self.assertNoPassword(str(ctx.exception))

    def test_something_that_is_not_xapi(self):
        # an HTTP server that answers 404 to XML-RPC
        import http.server
        server = http.server.HTTPServer(('127.0.0.1', 0),
                                        http.server.BaseHTTPRequestHandler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        url = 'http://127.0.0.1:%d' % server.server_address[1]
        with self.assertRaises(errors.StartupError) as ctx:
            self.session(url=url).connect()
        self.assertIn('does not answer like xapi', str(ctx.exception))


class CallsTest(SessionTestCase):

    def test_call_returns_xapi_values(self):
        sess = self.session().connect()
        pools = sess.call('pool.get_all')
        self.assertEqual(1, len(pools))
        self.assertTrue(pools[0].startswith('OpaqueRef:'))

    def test_a_pool_member_url_leads_to_the_master(self):
        member = self.pool['hosts'][1]['url']
        sess = self.session(url=member).connect()
        self.assertEqual(self.pool['master'], sess.url)
        self.assertEqual(1, len(sess.call('pool.get_all')))

    def test_failures_keep_code_and_parameters(self):
        sess = self.session().connect()
        with self.assertRaises(exception.NotFound) as ctx:
            sess.call('VM.get_record', 'OpaqueRef:nope')
        self.assertIn('HANDLE_INVALID [VM, OpaqueRef:nope]',
                      str(ctx.exception))

    def test_relogin_after_xapi_restart(self):
        sess = self.session().connect()
        sess.call('pool.get_all')
        self.control.reset_calls()
        self.control.restart_xapi()
        self.assertEqual(1, len(sess.call('pool.get_all')))
        self.assertEqual(1, self.control.calls()[
            'session.login_with_password'])

    def test_follows_the_master_when_it_moves(self):
        sess = self.session().connect()
        sess.call('pool.get_all')
        new = self.pool['hosts'][1]
        self.control.move_master(new['uuid'])
        self.assertEqual(1, len(sess.call('pool.get_all')))
        self.assertEqual(new['url'], sess.url)

    def test_call_timeout(self):
        sess = self.session(call_timeout=1).connect()
        # without the timeout, the call would succeed after 60 s: its
        # error is the proof (no bound on the time it took)
        self.control.delay('pool.get_all', 60)
        with self.assertRaises(errors.XenAPIConnectionError) as ctx:
            sess.call('pool.get_all')
        self.assertIn('pool.get_all took more than 1 s', str(ctx.exception))
        # the session is still usable afterwards
        self.assertEqual(1, len(sess.call('pool.get_all')))

    def test_concurrency_is_bounded(self):
        sess = self.session(concurrent=3).connect()
        self.control.set_latency(100)
        self.control.reset_calls()
        peak = []
        results = []

        def work():
            results.append(sess.call('pool.get_all'))
            peak.append(sess.size)
        threads = [threading.Thread(target=work) for _ in range(20)]
        start = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.time() - start
        self.assertEqual(20, len(results))
        self.assertLessEqual(max(peak), 3)
        # 20 calls of 100 ms through 3 sessions: at least 7 rounds
        self.assertGreaterEqual(elapsed, 0.65)
        # the two connections added share the session connect() logged in
        self.assertNotIn('session.login_with_password', self.control.calls())

    def test_connections_share_a_session_renewed_after_a_restart(self):
        sess = self.session(concurrent=4).connect()
        self.control.set_latency(50)

        def burst():
            threads = [threading.Thread(target=sess.call,
                                        args=('pool.get_all',))
                       for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        burst()
        self.assertEqual(4, sess.size)
        self.control.reset_calls()
        self.control.restart_xapi()
        burst()
        burst()
        # each connection that met the restart logged in again, at most
        # once; later connections take the renewed session
        logins = self.control.calls()['session.login_with_password']
        self.assertGreaterEqual(logins, 1)
        self.assertLessEqual(logins, 4)
        self.assertEqual(1, len(sess.call('pool.get_all')))

    def test_close_logs_every_session_out(self):
        self.control.reset_calls()
        sess = session_mod.Session(self.pool['master'], 'root', PASSWORD,
                                   concurrent=2).connect()
        self.control.set_latency(50)
        threads = [threading.Thread(target=sess.call, args=('pool.get_all',))
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # two connections, one session: one login, one logout
        self.assertEqual(1, self.control.calls()[
            'session.login_with_password'])
        sess.close()
        self.assertEqual(1, self.control.calls()['session.logout'])
        with self.assertRaises(errors.XenAPIConnectionError):
            sess.call('pool.get_all')


class TasksTest(SessionTestCase):

    def _vm(self, sess, memory_mib=128):
        vm = sess.call('VM.create', records.vm_record('task-test',
                                                      memory_mib))

        def remove():
            if sess.call('VM.get_power_state', vm) != 'Halted':
                sess.call('VM.hard_shutdown', vm)
            sess.call('VM.destroy', vm)
        self.addCleanup(remove)
        return vm

    def test_async_waits_through_event_from_and_destroys_the_task(self):
        sess = self.session().connect()
        vm = self._vm(sess)
        tasks_before = set(self.admin().task.get_all())
        self.control.reset_calls()
        self.control.delay('VM.start', 0.5)
        self.assertEqual('', sess.call_async('VM.start', vm, False, False))
        self.assertEqual('Running', sess.call('VM.get_power_state', vm))
        calls = self.control.calls()
        self.assertGreaterEqual(calls['event.from'], 1)
        self.assertEqual(1, calls['task.destroy'])
        self.assertEqual(0, calls.get('task.get_record', 0))
        self.assertEqual(tasks_before, set(self.admin().task.get_all()))

    def _quick_task(self, sess, vm):
        host = sess.call('host.get_all')[0]
        sess.call_async('VM.assert_can_boot_here', vm, host)

    def _hold(self, message, vm):
        """Make the task of ``message`` on ``vm`` wait until the returned
        event is set."""
        release = threading.Event()
        self.addCleanup(release.set)
        key = tuple(message.split('.'))
        real = rpc.HANDLERS[key]

        def held(ctx, ref, *args):
            if ref == vm:
                release.wait(120)
            return real(ctx, ref, *args)
        self.addCleanup(rpc.HANDLERS.__setitem__, key, real)
        rpc.HANDLERS[key] = held
        return release

    def _in_background(self, fn, *args):
        """Run ``fn`` in a thread; (thread, {'result' or 'error': ...})."""
        outcome = {}

        def run():
            try:
                outcome['result'] = fn(*args)
            except Exception as exc:
                outcome['error'] = exc
        thread = threading.Thread(target=run)
        thread.start()
        self.addCleanup(thread.join)
        return thread, outcome

    def _until(self, check, what):
        polling.until(check, what)

    def test_a_wait_holds_no_pooled_session(self):
        # one pooled session: while a VM.start task cannot end, short
        # calls and a second task still go through (were the session
        # held by the wait, they could only fail, after 60 s)
        sess = self.session(concurrent=1).connect()
        vm = self._vm(sess)
        other = self._vm(sess)
        watcher = sess._task_watcher()
        release = self._hold('VM.start', vm)
        started, outcome = self._in_background(
            sess.call_async, 'VM.start', vm, False, False)
        self._until(lambda: watcher._waiters, 'no wait for the VM.start')
        quick, seen = self._in_background(lambda: (
            sess.call('VM.get_power_state', other),
            sess.call_async('VM.start', other, True, False),
            sess.call('VM.get_power_state', other)))
        quick.join(60)
        self.assertEqual(('Halted', '', 'Paused'), seen.get('result'),
                         seen.get('error', 'short calls wait behind a task'))
        self.assertEqual('Halted', sess.call('VM.get_power_state', vm))
        release.set()
        started.join(60)
        self.assertEqual({'result': ''}, outcome)
        self.assertEqual('Running', sess.call('VM.get_power_state', vm))

    def test_tasks_cost_two_calls_each(self):
        sess = self.session().connect()
        vm = self._vm(sess)
        self._quick_task(sess, vm)   # the watcher is up
        self.control.reset_calls()
        for _ in range(10):
            self._quick_task(sess, vm)
        calls = self.control.calls()
        self.assertEqual(10, calls['VM.assert_can_boot_here'])
        self.assertEqual(10, calls['task.destroy'])
        # the watcher's event.from, on its own connection: it wakes for
        # a task's creation, end and removal at most (often fewer: one
        # answer carries all that happened meanwhile); no per-task reads
        self.assertLessEqual(calls.get('event.from', 0), 30)
        self.assertEqual(0, calls.get('task.get_record', 0))
        self.assertEqual(0, calls.get('task.get_status', 0))

    def test_a_task_that_ended_before_its_wait_is_delivered(self):
        sess = self.session().connect()
        vm = self._vm(sess)
        watcher = sess._task_watcher()
        task = sess.call('Async.VM.assert_can_boot_here', vm,
                         sess.call('host.get_all')[0])
        # the watcher hears the end before anybody waits for it
        self._until(lambda: task in watcher._finished,
                    'the end of the task never reached the watcher')
        record = watcher.wait(task, 1)
        self.assertEqual('success', record['status'])
        sess.destroy_task(task)

    def test_async_result_is_decoded(self):
        sess = self.session().connect()
        vm = self._vm(sess)
        clone = sess.call_async('VM.clone', vm, 'the-clone')
        self.assertTrue(clone.startswith('OpaqueRef:'))
        self.assertEqual('the-clone', sess.call('VM.get_name_label', clone))
        sess.call('VM.destroy', clone)

    def test_async_failure_is_translated(self):
        sess = self.session().connect()
        vm = self._vm(sess, memory_mib=64 * 1024)
        with self.assertRaises(exception.ComputeResourcesUnavailable) as ctx:
            sess.call_async('VM.start', vm, False, False)
        self.assertIn('HOST_NOT_ENOUGH_FREE_MEMORY', str(ctx.exception))
        self.assertIn('not enough free memory', str(ctx.exception))

    def _start_during_a_restart(self, *delays):
        """A VM.start that cannot end while xapi restarts: the TASK_LOST
        error; ``delays``: more (message, seconds)."""
        # a wait that hears nothing never reads its task itself, and the
        # task outlasts the wait: were the task watcher not to fail the
        # wait at once, it would end in TIMEOUT, not TASK_LOST
        patch = fixtures.MonkeyPatch('nova_xen.tasks.CHECK_EVERY', 3600.0)
        patch.setUp()
        self.addCleanup(patch.cleanUp)
        sess = self.session(task_timeout=120).connect()
        vm = self._vm(sess)
        # the task watcher is up (it starts with the first task)
        watcher = sess._task_watcher()
        self._quick_task(sess, vm)
        self.control.delay('VM.start', 600)
        for message, seconds in delays:
            self.control.delay(message, seconds)
        started, outcome = self._in_background(
            sess.call_async, 'VM.start', vm, False, False)
        self._until(lambda: watcher._waiters, 'no wait for the VM.start')
        self.control.restart_xapi()
        started.join(180)
        self.assertIsInstance(outcome.get('error'), errors.XenAPIError,
                              outcome)
        error = outcome['error']
        self.assertEqual('TASK_LOST', error.xapi_code)
        self.assertIn('XenAPI VM.start did not finish: xapi restarted while '
                      'it ran', str(error))
        self.assertNotIn('HANDLE_INVALID', str(error))
        # the session pool is still usable
        self.assertEqual('Halted', sess.call('VM.get_power_state', vm))

    def test_a_task_killed_by_a_xapi_restart_fails_at_once(self):
        self._start_during_a_restart()

    def test_a_restart_while_the_event_from_is_delayed_fails_at_once(self):
        # xapi restarts while the task watcher's event.from is on its way:
        # the task is gone before anything was sent about it (a blocking
        # event.from would wait 30 s for it)
        self._start_during_a_restart(('event.from', 3))

    def test_a_task_that_ends_in_success_as_it_is_cancelled_succeeds(self):
        # a clone past the last point where xapi honours a cancel: it
        # ends only once the wait has given up and cancelled it, and
        # succeeds (on a busy machine, any task can end this way)
        sess = self.session(task_timeout=1).connect()
        vm = self._vm(sess)
        pool = self.sim.world.pools[0]
        clone = rpc.HANDLERS[('VM', 'clone')]

        def clone_once_cancelled(ctx, vm, name):
            deadline = time.monotonic() + 60
            while not pool.tasks.cancel_requested(ctx.task):
                self.assertLess(time.monotonic(), deadline, 'no cancel')
                time.sleep(0.01)
            return clone(ctx, vm, name)
        self.addCleanup(rpc.HANDLERS.__setitem__, ('VM', 'clone'), clone)
        rpc.HANDLERS[('VM', 'clone')] = clone_once_cancelled
        tasks_before = set(self.admin().task.get_all())
        self.control.reset_calls()
        made = sess.call_async('VM.clone', vm, 'late-clone')
        # the clone is the caller's (not a TIMEOUT, and a VM left behind)
        self.assertEqual('late-clone', sess.call('VM.get_name_label', made))
        sess.call('VM.destroy', made)
        self.assertEqual(1, self.control.calls()['task.cancel'])
        self.assertEqual(tasks_before, set(self.admin().task.get_all()))

    def test_async_timeout_cancels_the_task(self):
        sess = self.session(task_timeout=1).connect()
        vm = self._vm(sess)
        sess.call('VM.start', vm, False, False)
        uuid = sess.call('VM.get_uuid', vm)
        # the guest ignores it: without the timeout, the call would fail
        # only after xapi's own (20 min)
        self.control.guest(uuid, clean_shutdown='ignore')
        with self.assertRaises(errors.XenAPIError) as ctx:
            sess.call_async('VM.clean_shutdown', vm)
        self.assertIn('did not finish within 1 s', str(ctx.exception))
        # cancelled: the VM is usable again at once
        self.assertEqual([], list(sess.call('VM.get_current_operations',
                                            vm)))
        sess.call('VM.hard_shutdown', vm)
