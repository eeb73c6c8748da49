"""The message class: xapi's alerts, with only the calls it declares."""

import time
import xmlrpc.client

from tests.xapisim.base import SimTestCase

BOGUS_UUID = '00000000-0000-0000-0000-000000000000'
BOGUS_REF = 'OpaqueRef:00000000-0000-0000-0000-00000000beef'


def datetime_of(seconds):
    return time.strftime('%Y%m%dT%H:%M:%SZ', time.gmtime(seconds))


class MessageTest(SimTestCase):

    def vm_uuid(self):
        return self.x.VM.get_uuid(self.new_vm(name='alerted'))

    def create(self, name='TEST_ALERT', priority=3, cls='VM', uuid=None,
               body='something happened'):
        return self.destroy_later('message', self.x.message.create(
            name, str(priority), cls, uuid or self.vm_uuid(), body))

    def test_create_and_read(self):
        uuid = self.vm_uuid()
        before = time.time()
        message = self.create(uuid=uuid, priority=5)
        self.assertTrue(message.startswith('OpaqueRef:'), message)
        record = self.x.message.get_record(message)
        self.assertEqual({'uuid', 'name', 'priority', 'cls', 'obj_uuid',
                          'timestamp', 'body'}, set(record))
        self.assertEqual('TEST_ALERT', record['name'])
        self.assertEqual('5', record['priority'])       # int64: a string
        self.assertEqual('VM', record['cls'])
        self.assertEqual(uuid, record['obj_uuid'])
        self.assertEqual('something happened', record['body'])
        self.assertIsInstance(record['timestamp'], xmlrpc.client.DateTime)
        self.assertGreaterEqual(record['timestamp'].value,
                                datetime_of(before - 1))
        self.assertIn(message, self.x.message.get_all())
        self.assertEqual(record, self.x.message.get_all_records()[message])
        self.assertEqual(message,
                         self.x.message.get_by_uuid(record['uuid']))

    def test_objects_of_other_classes(self):
        host = self.x.host.get_all()[0]
        host_uuid = self.x.host.get_uuid(host)
        message = self.create(cls='Host', uuid=host_uuid)
        self.assertEqual('Host', self.x.message.get_record(message)['cls'])
        sr_uuid = self.x.SR.get_uuid(self.default_sr())
        self.create(cls='SR', uuid=sr_uuid)
        pool_uuid = self.x.pool.get_uuid(self.pool_ref())
        self.create(cls='Pool', uuid=pool_uuid)

    def test_the_object_must_exist(self):
        self.assertFailure(['UUID_INVALID', 'VM', BOGUS_UUID],
                           self.x.message.create, 'X', '1', 'VM', BOGUS_UUID,
                           '')
        # a VM's uuid is no host's
        vm_uuid = self.vm_uuid()
        self.assertFailure(['UUID_INVALID', 'Host', vm_uuid],
                           self.x.message.create, 'X', '1', 'Host', vm_uuid,
                           '')
        self.assertFailure('INVALID_VALUE', self.x.message.create, 'X', '1',
                           'Nonsense', vm_uuid, '')

    def test_arity_and_types_are_the_datamodels(self):
        uuid = self.vm_uuid()
        self.assertFailure(['MESSAGE_PARAMETER_COUNT_MISMATCH',
                            'message.create', '5', '4'],
                           self.x.message.create, 'X', '1', 'VM', uuid)
        self.assertFailure('INTERNAL_ERROR', self.x.message.create, 'X',
                           'high', 'VM', uuid, '')

    def test_only_the_declared_calls_exist(self):
        message = self.create()
        for method, args in (('message.get_name', (message,)),
                             ('message.set_body', (message, 'x')),
                             ('message.get_all_where', ('true',)),
                             ('message.get_by_name_label', ('x',))):
            self.assertEqual(
                ['MESSAGE_METHOD_UNKNOWN', method],
                self.raw_call(method, self.session._session,
                              *args)['ErrorDescription'])

    def test_get_all_records_where_ignores_its_expression(self):
        # xapi: "The expression to match (not currently used)"
        message = self.create()
        for expr in ('false', 'field "name" = "nothing"', 'not valid ('):
            self.assertIn(message,
                          self.x.message.get_all_records_where(expr))

    def test_get_since_and_get(self):
        uuid = self.vm_uuid()
        other = self.vm_uuid()
        message = self.create(uuid=uuid)
        elsewhere = self.create(uuid=other)
        past = datetime_of(time.time() - 60)
        future = datetime_of(time.time() + 60)
        since = self.x.message.get_since(past)
        self.assertIn(message, since)
        self.assertIn(elsewhere, since)
        self.assertEqual(self.x.message.get_record(message), since[message])
        self.assertEqual({}, self.x.message.get_since(future))
        self.assertEqual([message],
                         list(self.x.message.get('VM', uuid, past)))
        self.assertEqual({}, self.x.message.get('VM', uuid, future))
        self.assertEqual({}, self.x.message.get('Host', self.x.host.get_uuid(
            self.x.host.get_all()[0]), past))
        self.assertFailure(['UUID_INVALID'], self.x.message.get, 'VM',
                           BOGUS_UUID, past)

    def test_destroy_and_destroy_many(self):
        uuid = self.vm_uuid()
        one, two, three = (self.create(uuid=uuid) for _ in range(3))
        record = self.x.message.get_record(one)
        self.x.message.destroy(one)
        self.assertNotIn(one, self.x.message.get_all())
        self.assertFailure(['HANDLE_INVALID', 'message', one],
                           self.x.message.get_record, one)
        self.assertFailure(['UUID_INVALID', 'message', record['uuid']],
                           self.x.message.get_by_uuid, record['uuid'])
        self.assertFailure(['HANDLE_INVALID', 'message', BOGUS_REF],
                           self.x.message.destroy, BOGUS_REF)
        self.x.message.destroy_many([two, three])
        left = self.x.message.get_all()
        self.assertNotIn(two, left)
        self.assertNotIn(three, left)


class MessageEventTest(SimTestCase):

    def event_from(self, classes, token, timeout=0.0):
        return getattr(self.x.event, 'from')(classes, token, timeout)

    def test_add_and_del_reach_event_from(self):
        token = self.event_from(['message'], '')['token']
        vm_uuid = self.x.VM.get_uuid(self.new_vm())
        message = self.x.message.create('TEST_ALERT', '2', 'VM', vm_uuid,
                                        'hello')
        batch = self.event_from(['message'], token, 5.0)
        [event] = batch['events']
        self.assertEqual(('message', 'add', message),
                         (event['class'], event['operation'], event['ref']))
        self.assertEqual(self.x.message.get_record(message),
                         event['snapshot'])
        self.assertNotIn('message', batch['valid_ref_counts'])
        self.x.message.destroy(message)
        [event] = self.event_from(['message'], batch['token'], 5.0)['events']
        self.assertEqual(('message', 'del', message),
                         (event['class'], event['operation'], event['ref']))
        self.assertNotIn('snapshot', event)

    def test_subscribing_to_everything_includes_messages(self):
        token = self.event_from(['*'], '')['token']
        vm_uuid = self.x.VM.get_uuid(self.new_vm())
        token = self.event_from(['*'], token)['token']
        message = self.x.message.create('TEST_ALERT', '2', 'VM', vm_uuid, '')
        self.addCleanup(self.x.message.destroy, message)
        events = self.event_from(['*'], token, 5.0)['events']
        self.assertIn(('message', message),
                      [(e['class'], e['ref']) for e in events])
        # and a VM subscription does not see them
        token = self.event_from(['vm'], '')['token']
        other = self.x.message.create('TEST_ALERT', '2', 'VM', vm_uuid, '')
        self.addCleanup(self.x.message.destroy, other)
        self.assertEqual([], self.event_from(['vm'], token, 0.2)['events'])
