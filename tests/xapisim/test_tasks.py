"""Tasks: Async.* calls run in the background and report through a task."""

import xmlrpc.client

from tests.xapisim.base import MIB, SimTestCase

BOGUS_REF = 'OpaqueRef:00000000-0000-0000-0000-00000000beef'


class TaskTest(SimTestCase):

    def async_call(self, method, *args):
        """Async.<method>(*args) through the XenAPI client: a task ref."""
        cls, name = method.split('.')
        fn = getattr(getattr(self.x.Async, cls), name)
        return self.destroy_later('task', fn(*args))

    def test_async_returns_a_task_that_ends_in_success(self):
        vm = self.new_vm()
        task = self.async_call('VM.start', vm, False, False)
        self.assertTrue(task.startswith('OpaqueRef:'), task)
        self.assertIn(task, self.x.task.get_all())
        record = self.wait_task(task)
        self.assertEqual('success', record['status'])
        self.assertEqual(1.0, record['progress'])
        self.assertEqual([], record['error_info'])
        self.assertEqual('<value></value>', record['result'])
        self.assertNotEqual('19700101T00:00:00Z', record['finished'].value)
        self.assertEqual('Running', self.x.VM.get_power_state(vm))
        self.x.VM.hard_shutdown(vm)

    def test_result_of_a_task_is_an_xmlrpc_value(self):
        vm = self.new_vm(name='to-clone')
        task = self.async_call('VM.clone', vm, 'cloned')
        record = self.wait_task(task)
        self.assertEqual('success', record['status'], record)
        result = record['result']
        self.assertRegex(result, r'^<value>OpaqueRef:[0-9a-f-]{36}</value>$')
        clone = xmlrpc.client.loads(
            '<params><param>%s</param></params>' % result)[0][0]
        self.addCleanup(self._remove_vm, clone)
        self.assertEqual('cloned', self.x.VM.get_name_label(clone))
        self.assertEqual(clone, self.x.task.get_result(task)[7:-8])

    def test_async_create_and_destroy(self):
        task = self.async_call('network.create', {
            'name_label': 'async-net', 'name_description': '', 'MTU': '1500',
            'other_config': {}})
        record = self.wait_task(task)
        self.assertEqual('success', record['status'], record)
        net = record['result'][len('<value>'):-len('</value>')]
        self.assertEqual('async-net', self.x.network.get_name_label(net))
        task = self.async_call('network.destroy', net)
        self.assertEqual('<value></value>', self.wait_task(task)['result'])
        self.assertEqual([], self.x.network.get_by_name_label('async-net'))

    def test_task_record_while_pending(self):
        vm = self.new_vm()
        self.control().delay('VM.start', 0.5)
        task = self.async_call('VM.start', vm, False, False)
        record = self.x.task.get_record(task)
        self.assertEqual('pending', record['status'])
        self.assertEqual('Async.VM.start', record['name_label'])
        self.assertLess(record['progress'], 1.0)
        self.assertEqual('', record['result'])
        self.assertEqual([], record['error_info'])
        self.assertIn('cancel', record['allowed_operations'])
        self.assertEqual(self.x.pool.get_master(self.pool_ref()),
                         record['resident_on'])
        self.assertEqual('success', self.wait_task(task)['status'])
        self.x.VM.hard_shutdown(vm)

    def test_failure_fills_error_info(self):
        vm = self.new_vm()
        self.x.VM.start(vm, False, False)
        self.addCleanup(self.x.VM.hard_shutdown, vm)
        task = self.async_call('VM.start', vm, False, False)
        record = self.wait_task(task)
        self.assertEqual('failure', record['status'])
        self.assertEqual(['VM_BAD_POWER_STATE', vm, 'halted', 'running'],
                         record['error_info'])
        self.assertEqual(1.0, record['progress'])
        self.assertEqual('', record['result'])

    def test_a_bad_reference_fails_the_task_not_the_call(self):
        task = self.async_call('VM.start', BOGUS_REF, False, False)
        record = self.wait_task(task)
        self.assertEqual('failure', record['status'])
        self.assertEqual(['HANDLE_INVALID', 'VM', BOGUS_REF],
                         record['error_info'])

    def test_call_errors_come_before_the_task(self):
        # arity and types are checked before any task exists
        before = set(self.x.task.get_all())
        self.assertFailure(['MESSAGE_PARAMETER_COUNT_MISMATCH', 'VM.start',
                            '3', '1'], self.x.Async.VM.start, BOGUS_REF)
        self.assertFailure('INTERNAL_ERROR', self.x.Async.VM.start, BOGUS_REF,
                           'no', False)
        self.assertEqual(before, set(self.x.task.get_all()))

    def test_work_runs_in_the_background(self):
        vm = self.new_vm()
        # the work cannot end until released: the call returns before it
        work = self.hold('VM.start')
        task = self.async_call('VM.start', vm, False, False)
        # the server answers other calls while the task runs
        self.assertEqual('pending', self.x.task.get_status(task))
        self.assertEqual('Halted', self.x.VM.get_power_state(vm))
        work.release()
        record = self.wait_task(task)
        self.assertEqual('success', record['status'])
        self.assertEqual('Running', self.x.VM.get_power_state(vm))
        self.x.VM.hard_shutdown(vm)

    def test_cancel_a_long_task(self):
        vm = self.new_vm()
        self.control().guest(self.x.VM.get_uuid(vm), clean_shutdown='ignore')
        self.x.VM.start(vm, False, False)
        self.addCleanup(self.x.VM.hard_shutdown, vm)
        task = self.async_call('VM.clean_shutdown', vm)
        self.until(lambda: self.x.VM.get_current_operations(vm) ==
                   {task: 'clean_shutdown'}, 'the shutdown under way')
        self.assertEqual('pending', self.x.task.get_status(task))
        self.x.task.cancel(task)
        # the work notices the request soon; until then the task is pending
        record = self.wait_task(task)
        self.assertEqual('cancelled', record['status'])
        self.assertEqual(['TASK_CANCELLED', task], record['error_info'])
        self.assertEqual('Running', self.x.VM.get_power_state(vm))
        self.assertEqual({}, self.x.VM.get_current_operations(vm))

    def test_destroy_a_finished_task(self):
        vdi = self.new_vdi(size=MIB)
        task = self.async_call('VDI.copy', vdi, self.default_sr())
        record = self.wait_task(task)
        self.assertEqual('success', record['status'], record)
        self.destroy_later('VDI', record['result'][7:-8])
        self.x.task.destroy(task)
        self.assertNotIn(task, self.x.task.get_all())
        self.assertFailure(['HANDLE_INVALID', 'task', task],
                           self.x.task.get_record, task)

    def test_cancelling_a_finished_task_changes_nothing(self):
        vm = self.new_vm()
        task = self.async_call('VM.clone', vm, 'finished')
        record = self.wait_task(task)
        self.addCleanup(self._remove_vm, record['result'][7:-8])
        self.x.task.cancel(task)
        after = self.x.task.get_record(task)
        self.assertEqual('success', after['status'])
        self.assertEqual(record['result'], after['result'])
        self.assertEqual([], after['error_info'])

    def test_destroying_a_pending_task_waits_for_its_end(self):
        vm = self.new_vm()
        work = self.hold('VM.start')
        task = self.async_call('VM.start', vm, False, False)
        self.x.task.destroy(task)
        record = self.x.task.get_record(task)
        self.assertEqual('pending', record['status'])
        self.assertEqual({'task': 'destroy'}, record['current_operations'])
        work.release()
        self.until(lambda: task not in self.x.task.get_all(),
                   'the task gone once its work ended')
        self.assertEqual('Running', self.x.VM.get_power_state(vm))
        self.x.VM.hard_shutdown(vm)

    def test_no_async_form_for_getters_and_sessions(self):
        vm = self.new_vm()
        before = set(self.x.task.get_all())
        for method, args in (('VM.get_name_label', (vm,)),
                             ('VM.get_record', (vm,)),
                             ('VM.set_name_label', (vm, 'x')),
                             ('VM.add_tags', (vm, 'x')),
                             ('VM.get_all', ()),
                             ('task.get_status', (BOGUS_REF,))):
            self.assertEqual(
                ['Fault', 'No async mode for this operation (rpc: %s)'
                 % method],
                self.raw_call('Async.' + method, self.session._session,
                              *args)['ErrorDescription'])
        result = self.raw_call('Async.event.from', self.session._session,
                               ['vm'], '', 0.0)
        self.assertEqual('Fault', result['ErrorDescription'][0])
        self.assertEqual(before, set(self.x.task.get_all()))
        self.assertEqual('test-vm', self.x.VM.get_name_label(vm))

    def test_task_create_and_destroy(self):
        task = self.x.task.create('by-hand', 'made by a client')
        record = self.x.task.get_record(task)
        self.assertEqual('by-hand', record['name_label'])
        self.assertEqual('made by a client', record['name_description'])
        self.assertEqual('pending', record['status'])
        self.assertEqual(0.0, record['progress'])
        self.x.task.set_progress(task, 0.5)
        self.assertEqual(0.5, self.x.task.get_progress(task))
        self.x.task.set_result(task, '<value>done</value>')
        self.x.task.set_status(task, 'success')
        record = self.x.task.get_record(task)
        self.assertEqual('success', record['status'])
        self.assertEqual('<value>done</value>', record['result'])
        self.x.task.destroy(task)
        self.assertFailure(['HANDLE_INVALID', 'task', task],
                           self.x.task.get_record, task)

    def test_a_client_task_destroyed_while_pending_goes_when_it_ends(self):
        task = self.x.task.create('by-hand', '')
        self.x.task.destroy(task)
        self.assertEqual({'task': 'destroy'},
                         self.x.task.get_current_operations(task))
        self.x.task.set_error_info(task, ['SOMETHING_FAILED', 'why'])
        self.x.task.set_status(task, 'failure')
        self.assertNotIn(task, self.x.task.get_all())
