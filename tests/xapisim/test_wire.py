"""XenAPI on the wire: XML-RPC envelopes and value encodings, as xapi sends them."""

import re
import xmlrpc.client

from tests.xapisim.base import MIB, SimTestCase

REF_RE = re.compile(r'^OpaqueRef:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-'
                    r'[0-9a-f]{4}-[0-9a-f]{12}$')
DATETIME_RE = re.compile(r'^\d{8}T\d{2}:\d{2}:\d{2}Z$')


class WireTest(SimTestCase):

    def raw_body(self, method, *params, path='/'):
        """The bytes of the response to one XML-RPC call."""
        body = xmlrpc.client.dumps(params, method).encode()
        status, data = self.http('POST', path, body,
                                 headers={'Content-Type': 'text/xml'})
        self.assertEqual(200, status, data)
        return data.decode()

    def raw_login(self, path='/'):
        return self.raw_call('session.login_with_password',
                             self.world['username'], self.world['password'],
                             '2.21', 'wire-test', path=path)

    # -- where XML-RPC is served ------------------------------------------

    def test_xmlrpc_is_served_at_root_and_rpc2(self):
        for path in ('/', '/RPC2'):
            result = self.raw_login(path)
            self.assertEqual('Success', result['Status'], (path, result))
            session = result['Value']
            self.assertRegex(session, REF_RE)
            pools = self.raw_call('pool.get_all', session, path=path)
            self.assertEqual({'Status': 'Success', 'Value': [self.pool_ref()]},
                             pools)
            self.raw_call('session.logout', session, path=path)

    def test_a_body_that_is_not_xmlrpc_is_an_http_error(self):
        status, _ = self.http('POST', '/', b'<methodCall><oops',
                              headers={'Content-Type': 'text/xml'})
        self.assertEqual(500, status)

    # -- envelopes ----------------------------------------------------------

    def test_success_envelope(self):
        result = self.raw_call('pool.get_all', self.session._session)
        self.assertEqual(['Status', 'Value'], sorted(result))
        self.assertEqual('Success', result['Status'])
        self.assertEqual([self.pool_ref()], result['Value'])

    def test_failure_envelope_is_a_struct_not_a_fault(self):
        bogus = 'OpaqueRef:00000000-0000-0000-0000-000000000001'
        body = self.raw_body('VM.get_name_label', self.session._session, bogus)
        self.assertNotIn('<fault>', body)
        (result,), _ = xmlrpc.client.loads(body)
        self.assertEqual(['ErrorDescription', 'Status'], sorted(result))
        self.assertEqual('Failure', result['Status'])
        self.assertEqual(['HANDLE_INVALID', 'VM', bogus],
                         result['ErrorDescription'])

    def test_every_error_parameter_is_a_string(self):
        result = self.raw_call('VM.get_name_label', self.session._session)
        self.assertEqual('Failure', result['Status'])
        self.assertEqual(['MESSAGE_PARAMETER_COUNT_MISMATCH',
                          'VM.get_name_label', '1', '0'],
                         result['ErrorDescription'])
        for item in result['ErrorDescription']:
            self.assertIsInstance(item, str)

    # -- value encodings ----------------------------------------------------

    def test_int64_values_arrive_as_decimal_strings(self):
        vm = self.new_vm(memory_mib=300, vcpus=2)
        record = self.x.VM.get_record(vm)
        self.assertEqual(str(300 * MIB), record['memory_static_max'])
        self.assertEqual('2', record['VCPUs_max'])
        self.assertEqual(str(300 * MIB), self.x.VM.get_memory_static_max(vm))
        self.assertIsInstance(record['domid'], str)
        self.assertEqual(-1, int(record['domid']))
        host = self.x.host.get_all()[0]
        metrics = self.x.host.get_metrics(host)
        total = self.x.host_metrics.get_record(metrics)['memory_total']
        self.assertIsInstance(total, str)
        self.assertRegex(total, r'^[1-9][0-9]*$')
        self.assertEqual(total, self.x.host_metrics.get_memory_total(metrics))
        # nothing in a record travels as an XML-RPC integer
        body = self.raw_body('VM.get_record', self.session._session, vm)
        self.assertNotRegex(body, r'<(int|i4|i8)>')

    def test_int64_parameters_are_taken_as_integers_or_strings(self):
        vm = self.new_vm()
        self.x.VM.set_user_version(vm, 5)
        self.assertEqual('5', self.x.VM.get_user_version(vm))
        self.x.VM.set_user_version(vm, '7')
        self.assertEqual('7', self.x.VM.get_user_version(vm))

    def test_booleans_are_xmlrpc_booleans(self):
        vm = self.new_vm()
        self.assertIs(False, self.x.VM.get_is_a_template(vm))
        body = self.raw_body('VM.get_is_a_template', self.session._session, vm)
        self.assertIn('<boolean>0</boolean>', body)
        self.x.VM.set_is_a_template(vm, True)
        self.assertIs(True, self.x.VM.get_record(vm)['is_a_template'])
        host = self.x.host.get_all()[0]
        self.assertIs(True, self.x.host.get_enabled(host))

    def test_datetimes_are_xmlrpc_datetimes(self):
        last_active = self.x.session.get_last_active(self.session._session)
        self.assertIsInstance(last_active, xmlrpc.client.DateTime)
        self.assertRegex(last_active.value, DATETIME_RE)
        body = self.raw_body('session.get_last_active', self.session._session,
                             self.session._session)
        self.assertRegex(body, r'<dateTime\.iso8601>\d{8}T\d{2}:\d{2}:\d{2}Z'
                               r'</dateTime\.iso8601>')
        task = self.x.task.create('wire', '')
        self.addCleanup(self.x.task.destroy, task)
        record = self.x.task.get_record(task)
        self.assertIsInstance(record['created'], xmlrpc.client.DateTime)
        self.assertRegex(record['created'].value, DATETIME_RE)
        # a task that has not finished reports the epoch
        self.assertEqual('19700101T00:00:00Z', record['finished'].value)

    def test_floats_are_xmlrpc_doubles(self):
        task = self.x.task.create('wire', '')
        self.addCleanup(self.x.task.destroy, task)
        self.assertEqual(0.0, self.x.task.get_progress(task))
        self.assertIsInstance(self.x.task.get_progress(task), float)

    def test_references(self):
        vm = self.new_vm()
        self.assertRegex(vm, REF_RE)
        uuid = self.x.VM.get_uuid(vm)
        self.assertNotIn(uuid, vm)
        self.assertEqual('OpaqueRef:NULL', self.x.VM.get_affinity(vm))
        self.assertEqual('OpaqueRef:NULL', self.x.VM.get_resident_on(vm))
        for ref in self.x.VM.get_all() + self.x.host.get_all() + \
                self.x.SR.get_all():
            self.assertRegex(ref, REF_RE)

    def test_void_result_is_the_empty_string(self):
        vm = self.new_vm()
        result = self.raw_call('VM.set_name_label', self.session._session, vm,
                               'renamed')
        self.assertEqual({'Status': 'Success', 'Value': ''}, result)
        self.assertEqual('renamed', self.x.VM.get_name_label(vm))

    def test_maps_are_structs_of_strings(self):
        vm = self.new_vm()
        self.x.VM.add_to_other_config(vm, 'k', 'v')
        result = self.raw_call('VM.get_other_config', self.session._session,
                               vm)
        self.assertEqual('Success', result['Status'])
        self.assertEqual('v', result['Value']['k'])

    def test_enums_use_the_datamodel_spelling(self):
        vm = self.new_vm()
        self.assertEqual('Halted', self.x.VM.get_power_state(vm))
        self.x.VM.set_actions_after_crash(vm, 'RESTART')
        self.assertEqual('restart', self.x.VM.get_actions_after_crash(vm))
