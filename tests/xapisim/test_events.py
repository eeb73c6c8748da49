"""event.from: a blocking feed of changed objects, as xapi serves it."""

import re
import threading
import time
import xmlrpc.client

from tests.xapisim.base import SimTestCase

TOKEN_RE = re.compile(r'^\d{20},\d{20}$')


class EventTest(SimTestCase):

    def event_from(self, classes, token, timeout, x=None):
        return getattr((x or self.x).event, 'from')(classes, token, timeout)

    def token_now(self, classes=('*',)):
        return self.event_from(list(classes), '', 0)['token']

    def waiting(self):
        """event.from calls blocked in the simulator now, waiting for a
        change."""
        return len(self.sim.world.pools[0].db.changed._waiters)

    def once_blocked(self, fn, *args):
        """Run ``fn(*args)`` in a thread once an event.from call blocks
        (the change comes while it waits, however slow the machine)."""
        before = self.waiting()

        def run():
            self.until(lambda: self.waiting() > before,
                       'an event.from call blocked')
            fn(*args)
        thread = threading.Thread(target=run)
        thread.start()
        self.addCleanup(thread.join)
        return thread

    def other_client(self):
        """A XenAPI client for another thread (clients are not shared)."""
        return self.login().xenapi

    def test_empty_token_lists_every_object_as_add(self):
        vm = self.new_vm(name='listed')
        gone = self.new_vm(name='gone')
        self.x.VM.destroy(gone)
        batch = self.event_from(['vm'], '', 0)
        self.assertEqual({'events', 'valid_ref_counts', 'token'}, set(batch))
        self.assertRegex(batch['token'], TOKEN_RE)
        events = batch['events']
        self.assertEqual(sorted(self.x.VM.get_all()),
                         sorted(e['ref'] for e in events))
        for event in events:
            self.assertEqual('add', event['operation'])
            self.assertEqual('vm', event['class'])
            self.assertIsInstance(event['id'], str)
            self.assertIn('snapshot', event)
        by_ref = {e['ref']: e for e in events}
        self.assertEqual(self.x.VM.get_record(vm), by_ref[vm]['snapshot'])
        self.assertEqual('listed', by_ref[vm]['snapshot']['name_label'])
        # int64 fields in snapshots are strings, as in get_record
        self.assertIsInstance(by_ref[vm]['snapshot']['memory_static_max'],
                              str)

    def test_blocks_until_a_change(self):
        vm = self.new_vm()
        token = self.token_now(['vm'])
        other = self.other_client()
        self.once_blocked(other.VM.set_name_label, vm, 'changed')
        started = time.time()
        batch = self.event_from(['vm'], token, 60.0)
        # it returned for the change, not at its timeout
        self.assertLess(time.time() - started, 60.0)
        self.assertEqual([(vm, 'mod')], [(e['ref'], e['operation'])
                                         for e in batch['events']])
        self.assertEqual('changed',
                         batch['events'][0]['snapshot']['name_label'])
        self.assertGreater(batch['token'], token)

    def test_timeout_gives_no_events_and_a_token(self):
        vm = self.new_vm()
        token = self.token_now()
        started = time.time()
        batch = self.event_from(['vm/%s' % vm], token, 0.5)
        elapsed = time.time() - started
        self.assertGreaterEqual(elapsed, 0.45)
        # it returned at its timeout, not at the next change or never
        self.assertLess(elapsed, 30.0)
        self.assertEqual([], batch['events'])
        self.assertRegex(batch['token'], TOKEN_RE)
        self.assertGreaterEqual(batch['token'], token)
        # the token goes on working
        self.x.VM.set_name_label(vm, 'after-timeout')
        batch = self.event_from(['vm/%s' % vm], batch['token'], 5.0)
        self.assertEqual([vm], [e['ref'] for e in batch['events']])

    def test_add_mod_del(self):
        token = self.token_now(['vm'])
        vm = self.new_vm(name='lifecycle')
        batch = self.event_from(['vm'], token, 5.0)
        self.assertEqual([(vm, 'add')], [(e['ref'], e['operation'])
                                         for e in batch['events']])
        token = batch['token']
        self.x.VM.set_name_label(vm, 'renamed')
        batch = self.event_from(['vm'], token, 5.0)
        self.assertEqual([(vm, 'mod')], [(e['ref'], e['operation'])
                                         for e in batch['events']])
        token = batch['token']
        self.x.VM.destroy(vm)
        batch = self.event_from(['vm'], token, 5.0)
        self.assertEqual([(vm, 'del')], [(e['ref'], e['operation'])
                                         for e in batch['events']])
        self.assertNotIn('snapshot', batch['events'][0])
        self.assertEqual('vm', batch['events'][0]['class'])

    def test_created_and_deleted_between_calls_is_not_reported(self):
        token = self.token_now(['vm'])
        vm = self.new_vm(name='ephemeral')
        self.x.VM.destroy(vm)
        keeper = self.new_vm(name='keeper')
        batch = self.event_from(['vm'], token, 5.0)
        self.assertEqual([(keeper, 'add')], [(e['ref'], e['operation'])
                                             for e in batch['events']])

    def test_several_changes_are_reported_once(self):
        vm = self.new_vm()
        token = self.token_now(['vm'])
        for name in ('one', 'two', 'three'):
            self.x.VM.set_name_label(vm, name)
        self.x.VM.add_to_other_config(vm, 'k', 'v')
        batch = self.event_from(['vm'], token, 5.0)
        self.assertEqual([vm], [e['ref'] for e in batch['events']])
        snapshot = batch['events'][0]['snapshot']
        self.assertEqual('three', snapshot['name_label'])
        self.assertEqual('v', snapshot['other_config']['k'])

    def test_subscription_by_class(self):
        vm = self.new_vm()
        token = self.token_now()
        net = self.x.network.create({'name_label': 'evnet',
                                     'name_description': '', 'MTU': '1500',
                                     'other_config': {}})
        self.addCleanup(self.x.network.destroy, net)
        self.x.VM.set_name_label(vm, 'by-class')
        vms = self.event_from(['vm'], token, 5.0)['events']
        self.assertEqual({'vm'}, {e['class'] for e in vms})
        self.assertEqual([vm], [e['ref'] for e in vms])
        # class names are not case sensitive
        upper = self.event_from(['VM'], token, 5.0)['events']
        self.assertEqual([vm], [e['ref'] for e in upper])
        nets = self.event_from(['network'], token, 5.0)['events']
        self.assertEqual([(net, 'add')], [(e['ref'], e['operation'])
                                          for e in nets])
        both = self.event_from(['vm', 'network'], token, 5.0)['events']
        self.assertEqual({vm, net}, {e['ref'] for e in both})

    def test_subscription_to_everything(self):
        vm = self.new_vm()
        token = self.token_now()
        net = self.x.network.create({'name_label': 'evnet-all',
                                     'name_description': '', 'MTU': '1500',
                                     'other_config': {}})
        self.addCleanup(self.x.network.destroy, net)
        self.x.VM.set_name_label(vm, 'everything')
        task = self.x.task.create('evtask', '')
        self.addCleanup(self.x.task.destroy, task)
        self.addCleanup(self.x.task.set_status, task, 'success')
        events = self.event_from(['*'], token, 5.0)['events']
        seen = {(e['class'], e['ref']) for e in events}
        self.assertIn(('vm', vm), seen)
        self.assertIn(('network', net), seen)
        self.assertIn(('task', task), seen)

    def test_subscription_to_one_object(self):
        a = self.new_vm(name='one-a')
        b = self.new_vm(name='one-b')
        token = self.token_now()
        self.x.VM.set_name_label(a, 'a2')
        self.x.VM.set_name_label(b, 'b2')
        events = self.event_from(['vm/%s' % b], token, 5.0)['events']
        self.assertEqual([b], [e['ref'] for e in events])
        self.assertEqual('b2', events[0]['snapshot']['name_label'])
        events = self.event_from(['vm/%s' % a, 'vm/%s' % b], token,
                                 5.0)['events']
        self.assertEqual({a, b}, {e['ref'] for e in events})

    def test_sessions_produce_no_events(self):
        vm = self.new_vm()
        token = self.token_now()
        extra = self.login()
        extra.xenapi.session.logout()
        self.x.VM.set_name_label(vm, 'after-logins')
        events = self.event_from(['*'], token, 5.0)['events']
        self.assertNotIn('session', {e['class'] for e in events})
        self.assertIn(vm, {e['ref'] for e in events})
        started = time.time()
        batch = self.event_from(['session'], token, 0.3)
        self.assertEqual([], batch['events'])
        self.assertGreaterEqual(time.time() - started, 0.25)

    def test_bad_token(self):
        for token in ('garbage', '12', '1,2,3', 'a,b', '00000000000000000001'):
            self.assertFailure(['EVENT_FROM_TOKEN_PARSE_FAILURE', token],
                               self.event_from, ['vm'], token, 0)

    def test_valid_ref_counts(self):
        self.new_vm()
        counts = self.event_from(['vm'], '', 0)['valid_ref_counts']
        self.assertEqual(len(self.x.VM.get_all()), counts['vm'])
        self.assertEqual(len(self.x.host.get_all()), counts['host'])
        self.assertEqual(len(self.x.SR.get_all()), counts['sr'])
        for name, count in counts.items():
            self.assertEqual(name.lower(), name)
            self.assertIsInstance(count, int)
        # they travel as XML-RPC integers
        body = xmlrpc.client.dumps((self.session._session, ['vm'], '', 0.0),
                                   'event.from').encode()
        status, data = self.http('POST', '/', body,
                                 headers={'Content-Type': 'text/xml'})
        self.assertEqual(200, status)
        self.assertRegex(data.decode(),
                         r'<name>vm</name>\s*<value><(int|i4)>\d+</(int|i4)>')

    def test_references_change_the_referenced_object(self):
        vm = self.new_vm()
        vdi = self.new_vdi()
        token = self.token_now()
        vbd = self.new_vbd(vm, vdi)
        events = self.event_from(['vm', 'vdi', 'vbd'], token, 5.0)['events']
        ops = {(e['class'], e['ref']): e['operation'] for e in events}
        self.assertEqual('add', ops[('vbd', vbd)])
        self.assertEqual('mod', ops[('vm', vm)])
        self.assertEqual('mod', ops[('vdi', vdi)])
        snap = [e for e in events if e['ref'] == vm][0]['snapshot']
        self.assertEqual([vbd], snap['VBDs'])

    def test_logout_wakes_a_blocked_call(self):
        session = self.raw_call('session.login_with_password',
                                self.world['username'],
                                self.world['password'])['Value']
        result = {}

        # first consume the initial batch so the call blocks
        token = self.raw_call('event.from', session, ['vm'], '',
                              0.0)['Value']['token']

        def wait_blocked():
            proxy = xmlrpc.client.ServerProxy(self.master_url)
            # nothing else would end it within the test's time
            result['value'] = getattr(proxy.event, 'from')(session, ['vm'],
                                                           token, 3600.0)

        before = self.waiting()
        thread = threading.Thread(target=wait_blocked)
        thread.start()
        self.addCleanup(thread.join)
        self.until(lambda: self.waiting() > before,
                   'the event.from call blocked')
        self.raw_call('session.logout', session)
        thread.join(60)
        self.assertFalse(thread.is_alive())
        self.assertEqual({'Status': 'Failure',
                          'ErrorDescription': ['SESSION_INVALID', session]},
                         result['value'])

    def test_waiting_is_not_a_busy_loop(self):
        vm = self.new_vm()
        token = self.token_now()
        cpu = time.process_time()
        started = time.time()
        batch = self.event_from(['vm/%s' % vm], token, 3.0)
        used = time.process_time() - cpu
        self.assertGreaterEqual(time.time() - started, 2.9)
        self.assertEqual([], batch['events'])
        self.assertLess(used, 0.3)
