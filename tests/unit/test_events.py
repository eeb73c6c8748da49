"""The VM watcher against a live simulated pool: lifecycle events, and
recovery when xapi restarts and refuses logins for a while."""

import threading
import time
import unittest

from nova.virt import event as virtevent

import xapisim
from xapisim.client import Control

from nova_xen import events
from nova_xen import session as session_mod
from tests import polling
from tests import records

# a safety net for waits on events, never a guess of how long they take
WAIT = 240


def vm_record(nova_uuid, host):
    return records.vm_record('watched', affinity=host,
                             other_config={'nova_uuid': nova_uuid})


class WatcherCase(unittest.TestCase):
    """A watcher of the first host of a two-host pool."""

    def setUp(self):
        self.sim = xapisim.Simulator(hosts=2, guest_delay=0.01)
        self.addCleanup(self.sim.stop)
        pool = self.sim.describe()['pools'][0]
        self.control = Control(pool['master'])
        self.session = session_mod.Session(pool['master'], 'root',
                                           'xapisim').connect()
        self.addCleanup(self.session.close)
        self.host = self.session.call('host.get_by_uuid',
                                      pool['hosts'][0]['uuid'])
        self.other_host = self.session.call('host.get_by_uuid',
                                            pool['hosts'][1]['uuid'])
        self.events = []
        self.cond = threading.Condition()
        self.watcher = events.VMWatcher(self.session, self.host,
                                        emit=self._emit)
        self.watcher.start()
        self.addCleanup(self.watcher.stop)

    def _emit(self, event):
        with self.cond:
            self.events.append((event.get_instance_uuid(),
                                event.get_transition()))
            self.cond.notify_all()

    def wait_for(self, item, seconds=WAIT):
        deadline = time.time() + seconds
        with self.cond:
            while item not in self.events:
                left = deadline - time.time()
                if left <= 0:
                    self.fail('no %s in %s' % (item, self.events))
                self.cond.wait(left)


class WatcherTest(WatcherCase):
    def test_events_for_our_instances_only(self):
        ours = self.session.call('VM.create', vm_record('ours', self.host))
        # an instance of another compute: it runs on the other host
        other = self.session.call('VM.create',
                                  vm_record('other', self.other_host))
        self.session.call('VM.start_on', ours, self.host, False, False)
        self.session.call('VM.start_on', other, self.other_host, False,
                          False)
        self.wait_for(('ours', virtevent.EVENT_LIFECYCLE_STARTED))
        self.session.call('VM.pause', ours)
        self.wait_for(('ours', virtevent.EVENT_LIFECYCLE_PAUSED))
        self.assertEqual(['ours'], self.watcher.uuids())
        self.assertNotIn('other', [u for u, _ in self.events])

    def test_recovers_when_xapi_restarts_and_refuses_logins(self):
        vm = self.session.call('VM.create', vm_record('ours', self.host))
        self.session.call('VM.start_on', vm, self.host, False, False)
        self.wait_for(('ours', virtevent.EVENT_LIFECYCLE_STARTED))
        self.control.fail('session.login_with_password',
                          ['SESSION_AUTHENTICATION_FAILED', 'root', 'busy'],
                          times=2)
        self.control.restart_xapi()
        # the change happens while the watcher is away
        admin = session_mod.Session(self.sim.describe()['pools'][0][
            'master'], 'root', 'xapisim')

        def logged_in():
            try:
                admin.connect()
            except Exception:
                return False
            return True
        # xapi is back when it answers (however long its restart takes)
        polling.until(logged_in, 'a login to the restarted xapi', WAIT, 0.1)
        self.addCleanup(admin.close)
        admin.call('VM.hard_shutdown', vm)
        # whether the watcher resynchronised or (xapi's tokens outlive a
        # restart) carried on from its token once logged in again, the
        # change reaches Nova
        self.wait_for(('ours', virtevent.EVENT_LIFECYCLE_STOPPED))
        self.assertEqual(['ours'], self.watcher.uuids())

    def test_lost_events_resynchronise_even_when_the_resync_fails(self):
        vm = self.session.call('VM.create', vm_record('ours', self.host))
        self.session.call('VM.start_on', vm, self.host, False, False)
        self.wait_for(('ours', virtevent.EVENT_LIFECYCLE_STARTED))
        resyncs = self.watcher.resyncs
        # the watcher's next event.from fails (its token is too old), and
        # so does the first resynchronisation's
        self.control.fail('event.from', ['EVENTS_LOST'], times=2)
        self.session.call('VM.pause', vm)
        self.wait_for(('ours', virtevent.EVENT_LIFECYCLE_PAUSED))
        polling.until(lambda: self.watcher.resyncs != resyncs,
                      'a resynchronisation', WAIT, 0.05)
        self.assertEqual(resyncs + 1, self.watcher.resyncs)
        self.session.call('VM.hard_shutdown', vm)
        self.wait_for(('ours', virtevent.EVENT_LIFECYCLE_STOPPED))


class WaitDomainTest(WatcherCase):
    """A start's new domain comes from the watcher's event, never from a
    late event of the domain before it."""

    def test_the_new_paused_domain_arrives_without_a_read(self):
        vm = self.session.call('VM.create', vm_record('ours', self.host))
        self.session.call('VM.start_on', vm, self.host, False, False)
        self.wait_for(('ours', virtevent.EVENT_LIFECYCLE_STARTED))
        old = int(self.session.call('VM.get_domid', vm))
        known = self.watcher.domids(vm)
        self.assertEqual({old}, known)
        self.session.call('VM.hard_shutdown', vm)
        self.wait_for(('ours', virtevent.EVENT_LIFECYCLE_STOPPED))
        self.session.call('VM.start_on', vm, self.host, True, False)
        record = self.watcher.wait_domain(vm, known, self.host, timeout=WAIT)
        self.assertIsNotNone(record)
        self.assertEqual('Paused', record['power_state'])
        self.assertEqual(self.session.call('VM.get_domid', vm),
                         record['domid'])
        self.assertNotEqual(old, int(record['domid']))

    def test_a_late_event_of_the_old_domain_does_not_qualify(self):
        vm = self.session.call('VM.create', vm_record('ours', self.host))
        self.session.call('VM.start_on', vm, self.host, True, False)
        record = self.watcher.wait_domain(vm, frozenset(), self.host,
                                          timeout=WAIT)
        self.assertIsNotNone(record)
        # the cache still shows that domain, paused (as a late event
        # would): with its domid known, it is no new domain
        started = time.monotonic()
        self.assertIsNone(self.watcher.wait_domain(
            vm, self.watcher.domids(vm), self.host, timeout=0.3))
        self.assertGreaterEqual(time.monotonic() - started, 0.3)
        # nor is a domain on another host
        self.assertIsNone(self.watcher.wait_domain(
            vm, frozenset(), self.other_host, timeout=0.1))
