"""The control interface (``/_xapisim/``): faults, latency, restarts, guests."""

import http.client
import os
import time
import unittest
import urllib.parse
import xmlrpc.client

import XenAPI

from tests.xapisim.base import SimTestCase
from xapisim.client import Control, ControlError


class ControlTestCase(SimTestCase):
    pools = 1
    hosts = 2
    sim_options = {'guest_delay': 0.01}

    def host(self, index):
        return self.x.host.get_by_uuid(
            self.world['pools'][0]['hosts'][index]['uuid'])

    def timed(self, fn, *args):
        start = time.monotonic()
        result = fn(*args)
        return time.monotonic() - start, result


class FaultTest(ControlTestCase):

    def test_nth_call_fails_with_the_given_error(self):
        vm = self.new_vm(name='faulty')
        self.control().fail('VM.get_name_label',
                            ['SR_BACKEND_FAILURE_44', 'no space', ''], nth=3)
        self.assertEqual('faulty', self.x.VM.get_name_label(vm))
        self.assertEqual('faulty', self.x.VM.get_name_label(vm))
        self.assertFailure(['SR_BACKEND_FAILURE_44', 'no space', ''],
                           self.x.VM.get_name_label, vm)
        self.assertEqual('faulty', self.x.VM.get_name_label(vm))
        self.assertEqual('faulty', self.x.VM.get_name_label(vm))

    def test_other_messages_are_not_affected(self):
        vm = self.new_vm(name='unaffected')
        self.control().fail('VM.get_name_label', ['INTERNAL_ERROR', 'x'])
        self.assertEqual('1', self.x.VM.get_user_version(vm))
        self.assertFailure(['INTERNAL_ERROR', 'x'],
                           self.x.VM.get_name_label, vm)

    def test_fault_times(self):
        self.control().fail('pool.get_all', ['HOST_OFFLINE', 'h'], nth=2,
                            times=2)
        self.x.pool.get_all()
        self.assertFailure(['HOST_OFFLINE', 'h'], self.x.pool.get_all)
        self.assertFailure(['HOST_OFFLINE', 'h'], self.x.pool.get_all)
        self.assertEqual(1, len(self.x.pool.get_all()))

    def test_async_call_fails_its_task(self):
        vm = self.new_vm(name='async-fault')
        self.control().fail('VM.start', ['VM_HVM_REQUIRED', vm])
        task = self.x.Async.VM.start(vm, False, False)
        record = self.wait_task(task)
        self.assertEqual('failure', record['status'])
        self.assertEqual(['VM_HVM_REQUIRED', vm], record['error_info'])
        self.assertEqual('Halted', self.x.VM.get_power_state(vm))

    def test_faults_are_listed_and_cleared(self):
        control = self.control()
        control.fail('VM.get_all', ['INTERNAL_ERROR', 'listed'], nth=2)
        self.x.VM.get_all()
        [rule] = control.faults()
        self.assertEqual('VM.get_all', rule['message'])
        self.assertEqual(1, rule['seen'])
        self.assertEqual(0, rule['fired'])
        control.clear_faults()
        self.assertEqual([], control.faults())
        self.x.VM.get_all()
        self.x.VM.get_all()

    def test_delay(self):
        control = self.control()
        control.delay('pool.get_all', 0.3)
        slow, _ = self.timed(self.x.pool.get_all)
        self.x.pool.get_all()
        self.assertGreaterEqual(slow, 0.3)
        # the second call was not delayed (the rule fires once)
        rule, = control.faults()
        self.assertEqual((2, 1), (rule['seen'], rule['fired']))

    def test_clearing_the_faults_ends_a_stall_in_progress(self):
        # a call held for as long as a test needs: until the rules go
        vm = self.new_vm(name='held')
        control = self.control()
        control.delay('VM.start', 600)
        control.fail('VM.start', ['INTERNAL_ERROR', 'not after a clear'])
        task = self.x.Async.VM.start(vm, False, False)
        # the stall has begun: the task is running, held by the rule
        deadline = time.monotonic() + 30
        while control.faults()[0]['fired'] != 1:
            self.assertLess(time.monotonic(), deadline, control.faults())
            time.sleep(0.05)
        self.assertEqual('pending', self.x.task.get_status(task))
        control.clear_faults()
        record = self.wait_task(task)
        # it went on as if there had been no rule (not even the failure)
        self.assertEqual('success', record['status'])
        self.assertEqual('Running', self.x.VM.get_power_state(vm))
        self.x.task.destroy(task)

    def test_latency(self):
        control = self.control()
        control.set_latency(150)
        self.addCleanup(control.set_latency, 0)
        for _ in range(2):
            took, _ = self.timed(self.x.pool.get_all)
            self.assertGreaterEqual(took, 0.15)
        control.set_latency(0)
        self.assertEqual(0, self.sim.world.pools[0].latency)

    def test_bad_fault_request(self):
        with self.assertRaises(ControlError) as ctx:
            self.control().fail('pool.get_all', [])
        self.assertIn('HTTP 400', str(ctx.exception))


class CallCountTest(ControlTestCase):

    def test_calls_are_counted_per_message(self):
        control = self.control()
        control.reset_calls()
        for _ in range(3):
            self.x.VM.get_all()
        self.x.host.get_all()
        self.x.host.get_all()
        counts = control.calls()
        self.assertEqual(3, counts['VM.get_all'])
        self.assertEqual(2, counts['host.get_all'])
        self.assertNotIn('pool.get_all', counts)

    def test_failed_calls_count_too(self):
        control = self.control()
        control.reset_calls()
        self.assertFailure('HANDLE_INVALID', self.x.VM.get_record,
                           'OpaqueRef:00000000-0000-0000-0000-000000000000')
        self.assertEqual(1, control.calls()['VM.get_record'])

    def test_async_calls_count_as_the_message(self):
        vm = self.new_vm(name='counted')
        control = self.control()
        control.reset_calls()
        self.wait_task(self.x.Async.VM.start(vm, False, False))
        self.assertEqual(1, control.calls().get('VM.start'))

    def test_reset(self):
        control = self.control()
        self.x.VM.get_all()
        self.assertGreaterEqual(control.calls()['VM.get_all'], 1)
        control.reset_calls()
        self.assertNotIn('VM.get_all', control.calls())
        self.x.VM.get_all()
        self.assertEqual(1, control.calls()['VM.get_all'])


class RestartTest(ControlTestCase):

    def test_restart_kills_sessions(self):
        other = self.login()
        vm = self.new_vm(name='survives-restart')
        self.assertEqual({}, self.control().restart_xapi())
        for session in (self.session, other):
            # (the XenAPI client would quietly log in again)
            self.assertEqual(
                {'Status': 'Failure',
                 'ErrorDescription': ['SESSION_INVALID', session._session]},
                self.raw_call('VM.get_all', session._session))
        x = self.login().xenapi
        self.assertEqual('survives-restart', x.VM.get_name_label(vm))

    def test_restart_drops_connections(self):
        parts = urllib.parse.urlsplit(self.master_url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port,
                                          timeout=10)
        self.addCleanup(conn.close)
        body = xmlrpc.client.dumps((self.session._session,), 'pool.get_all')
        conn.request('POST', '/', body)
        resp = conn.getresponse()
        resp.read()
        self.assertEqual(200, resp.status)
        self.control().restart_xapi()
        with self.assertRaises((ConnectionError, http.client.HTTPException)):
            conn.request('POST', '/', body)
            conn.getresponse().read()

    def test_restart_kills_pending_tasks(self):
        task = self.x.task.create('long job', '')
        self.control().restart_xapi()
        x = self.login().xenapi
        self.assertFailure(['HANDLE_INVALID', 'task', task],
                           x.task.get_status, task)

    def test_restart_kills_the_work_of_an_async_start(self):
        vm = self.new_vm(name='start-killed')
        work = self.hold('VM.start')
        task = self.x.Async.VM.start(vm, False, False)
        self.assertTrue(work.entered.wait(60))
        self.assertEqual('pending', self.x.task.get_status(task))
        self.control().restart_xapi()
        # the work goes on after the restart, and ends (dies)
        work.release()
        work.join()
        x = self.login().xenapi
        self.assertFailure(['HANDLE_INVALID', 'task', task],
                           x.task.get_record, task)
        record = x.VM.get_record(vm)
        self.assertEqual('Halted', record['power_state'])
        self.assertEqual('-1', record['domid'])
        self.assertEqual('OpaqueRef:NULL', record['resident_on'])
        self.assertEqual({}, record['current_operations'])
        self.assertIn('start', record['allowed_operations'])
        x.VM.start(vm, False, False)        # nothing is left half done
        self.assertEqual('Running', x.VM.get_power_state(vm))

    def test_restart_kills_a_slow_async_clean_shutdown(self):
        vm = self.new_vm(name='slow-shutdown')
        self.x.VM.start(vm, False, False)
        domid = self.x.VM.get_domid(vm)
        work = self.hold('VM.clean_shutdown')
        task = self.x.Async.VM.clean_shutdown(vm)
        self.assertTrue(work.entered.wait(60))
        self.control().restart_xapi()
        work.release()
        work.join()
        x = self.login().xenapi
        self.assertFailure(['HANDLE_INVALID', 'task', task],
                           x.task.get_status, task)
        self.assertEqual('Running', x.VM.get_power_state(vm))
        self.assertEqual(domid, x.VM.get_domid(vm))
        x.VM.hard_shutdown(vm)

    def test_restart_kills_a_stuck_async_clean_shutdown(self):
        vm = self.new_vm(name='shutdown-killed')
        self.control().guest(self.x.VM.get_uuid(vm), clean_shutdown='ignore')
        self.x.VM.start(vm, False, False)
        domid = self.x.VM.get_domid(vm)
        work = self.hold('VM.clean_shutdown', held=False)
        task = self.x.Async.VM.clean_shutdown(vm)
        self.until(lambda: self.x.VM.get_current_operations(vm) ==
                   {task: 'clean_shutdown'}, 'the shutdown under way')
        self.control().restart_xapi()
        x = self.login().xenapi
        self.assertFailure(['HANDLE_INVALID', 'task', task],
                           x.task.get_status, task)
        # the restarted xapi has no operation in progress
        record = x.VM.get_record(vm)
        self.assertEqual({}, record['current_operations'])
        self.assertIn('clean_shutdown', record['allowed_operations'])
        # the stuck shutdown's work has ended (dead), and changed nothing
        work.join()
        record = x.VM.get_record(vm)
        self.assertEqual('Running', record['power_state'])
        self.assertEqual(domid, record['domid'])
        self.assertEqual({}, record['current_operations'])
        x.VM.hard_shutdown(vm)

    def test_restart_kills_a_synchronous_call_in_progress(self):
        vm = self.new_vm(name='sync-killed')
        self.control().guest(self.x.VM.get_uuid(vm), clean_shutdown='ignore')
        self.x.VM.start(vm, False, False)
        work = self.hold('VM.clean_shutdown', held=False)
        # raw HTTP: the XenAPI client would log in again and retry
        parts = urllib.parse.urlsplit(self.master_url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port,
                                          timeout=10)
        self.addCleanup(conn.close)
        conn.request('POST', '/', xmlrpc.client.dumps(
            (self.session._session, vm), 'VM.clean_shutdown'))
        self.until(lambda: self.x.VM.get_current_operations(vm),
                   'the shutdown under way')
        self.control().restart_xapi()
        with self.assertRaises((ConnectionError, http.client.HTTPException)):
            conn.getresponse().read()      # no answer: the call died
        x = self.login().xenapi
        self.assertEqual({}, x.VM.get_current_operations(vm))
        work.join()
        self.assertEqual('Running', x.VM.get_power_state(vm))
        self.assertEqual({}, x.VM.get_current_operations(vm))
        x.VM.hard_shutdown(vm)

    def test_restart_forgets_finished_tasks_too(self):
        # xapi keeps tasks in memory only
        vm = self.new_vm(name='finished-task')
        task = self.x.Async.VM.clone(vm, 'a clone')
        record = self.wait_task(task)
        self.addCleanup(self._remove_vm, record['result'][7:-8])
        self.control().restart_xapi()
        self.assertEqual([], self.login().xenapi.task.get_all())

    def test_move_master(self):
        hosts = self.world['pools'][0]['hosts']
        new_master = self.host(1)
        control = self.control()
        result = control.move_master(hosts[1]['uuid'])
        self.addCleanup(self.control(hosts[1]['url']).move_master,
                        hosts[0]['uuid'])
        self.assertEqual(hosts[1]['url'], result['master'])
        with self.assertRaises(XenAPI.Failure) as ctx:
            XenAPI.Session(hosts[0]['url']).login_with_password(
                self.world['username'], self.world['password'])
        self.assertEqual(['HOST_IS_SLAVE', hosts[1]['address']],
                         ctx.exception.details)
        x = self.login(hosts[1]['url']).xenapi
        self.assertEqual(new_master, x.pool.get_master(x.pool.get_all()[0]))
        # the old session died with the restart
        result = self.raw_call('pool.get_all', self.session._session,
                               url=hosts[1]['url'])
        self.assertEqual(['SESSION_INVALID', self.session._session],
                         result['ErrorDescription'])

    def test_move_master_to_unknown_host(self):
        with self.assertRaises(ControlError) as ctx:
            self.control().move_master('00000000-0000-0000-0000-000000000000')
        self.assertIn('HTTP 400', str(ctx.exception))


class GuestTest(ControlTestCase):

    def running_vm(self, name, **behaviour):
        vm = self.new_vm(name=name)
        if behaviour:
            self.control().guest(self.x.VM.get_uuid(vm), **behaviour)
        self.x.VM.start(vm, False, False)
        return vm

    def test_guest_refusing_clean_shutdown(self):
        vm = self.running_vm('stubborn', clean_shutdown='refuse')
        self.assertFailure(['VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT', vm],
                           self.x.VM.clean_shutdown, vm)
        self.assertEqual('Running', self.x.VM.get_power_state(vm))
        self.x.VM.hard_shutdown(vm)
        self.assertEqual('Halted', self.x.VM.get_power_state(vm))

    def test_guest_without_pv_drivers(self):
        vm = self.running_vm('no-tools', pv_drivers=False)
        self.assertEqual('OpaqueRef:NULL', self.x.VM.get_guest_metrics(vm))
        with_tools = self.running_vm('tools')
        metrics = self.x.VM.get_guest_metrics(with_tools)
        self.assertTrue(
            self.x.VM_guest_metrics.get_PV_drivers_detected(metrics))

    def test_guest_console_text(self):
        vm = self.running_vm('chatty', console='hello from the guest\n')
        domid = int(self.x.VM.get_domid(vm))
        host = self.x.VM.get_resident_on(vm)
        dom0 = self.x.host.get_other_config(host)['xapisim_dom0_root']
        path = os.path.join(dom0, 'var', 'log', 'xen', 'guest',
                            'console.%d' % domid)
        with open(path) as fh:
            self.assertIn('hello from the guest', fh.read())

    def test_guest_crash_follows_actions_after_crash(self):
        vm = self.running_vm('crasher')   # actions_after_crash: destroy
        self.control().guest_action(self.x.VM.get_uuid(vm), 'crash')
        self.assertEqual('Halted', self.x.VM.get_power_state(vm))
        self.assertEqual('-1', self.x.VM.get_domid(vm))

    def test_guest_reboot_makes_a_new_domain(self):
        vm = self.running_vm('rebooter')
        domid = self.x.VM.get_domid(vm)
        self.control().guest_action(self.x.VM.get_uuid(vm), 'reboot')
        self.assertEqual('Running', self.x.VM.get_power_state(vm))
        self.assertNotEqual(domid, self.x.VM.get_domid(vm))

    def test_guest_action_needs_a_running_vm(self):
        vm = self.new_vm(name='halted')
        with self.assertRaises(ControlError) as ctx:
            self.control().guest_action(self.x.VM.get_uuid(vm), 'shutdown')
        self.assertIn('HTTP 409', str(ctx.exception))
        self.assertIn('VM_BAD_POWER_STATE', str(ctx.exception))


class BulkTest(ControlTestCase):
    hosts = 1
    sim_options = {'guest_delay': 0.01, 'vm_memory_mib': 128 * 1024}

    def test_thousand_vms_in_one_request(self):
        # (how long it takes is benchmarks' business, not a test's)
        before = len(self.x.VM.get_all())
        result = self.control().create_vms(1000)
        self.assertEqual(1000, len(set(result['vms'])))
        records = self.x.VM.get_all_records()
        self.assertEqual(before + 1000, len(records))
        uuids = set(r['uuid'] for r in records.values()
                    if r['name_label'].startswith('bulk-'))
        self.assertEqual(set(result['vms']), uuids)

    def test_bulk_running_vms(self):
        result = self.control().create_vms(5, running=True,
                                           name_prefix='running-')
        for uuid in result['vms']:
            vm = self.x.VM.get_by_uuid(uuid)
            self.assertEqual('Running', self.x.VM.get_power_state(vm))
            self.assertTrue(self.x.VM.get_name_label(vm).startswith(
                'running-'))


class AuthTest(ControlTestCase):
    hosts = 1

    def test_wrong_credentials(self):
        control = Control(self.master_url, self.world['username'], 'wrong')
        with self.assertRaises(ControlError) as ctx:
            control.calls()
        self.assertIn('HTTP 401', str(ctx.exception))

    def test_no_credentials(self):
        status, _ = self.http('GET', '/_xapisim/calls')
        self.assertEqual(401, status)

    def test_a_session_is_not_enough(self):
        status, _ = self.http('GET', '/_xapisim/calls?session_id=%s'
                              % self.session._session)
        self.assertEqual(401, status)

    def test_unknown_action(self):
        with self.assertRaises(ControlError) as ctx:
            self.control()._request('GET', 'no_such_action')
        self.assertIn('HTTP 404', str(ctx.exception))

    def test_describe_is_the_world(self):
        self.assertEqual(self.world, self.control().describe())


if __name__ == '__main__':
    unittest.main()


class HostLiveTest(ControlTestCase):
    """A host that dies: xapi keeps its VMs Running in the database until
    VM.power_state_reset, refuses to start anything there (HOST_OFFLINE)
    or to call its plugins; the host back, all works again."""

    def test_a_dead_host_and_its_vm(self):
        other = self.host(1)
        vm = self.new_vm(name='on-the-dying-host')
        self.x.VM.start_on(vm, other, False, False)
        uuid = self.world['pools'][0]['hosts'][1]['uuid']
        self.control().host_live(uuid, False)
        metrics = self.x.host.get_metrics(other)
        self.assertFalse(self.x.host_metrics.get_live(metrics))
        # the database still says it runs there
        self.assertEqual('Running', self.x.VM.get_power_state(vm))
        self.assertEqual(other, self.x.VM.get_resident_on(vm))
        self.assertFailure(['HOST_OFFLINE', other], self.x.host.call_plugin,
                           other, 'nova_xen_host.py', 'host_uptime',
                           {'params': '{}'})
        self.x.VM.power_state_reset(vm)
        self.assertEqual('Halted', self.x.VM.get_power_state(vm))
        self.assertFailure(['HOST_OFFLINE', other], self.x.VM.start_on, vm,
                           other, False, False)
        # it starts on the live host
        self.x.VM.start_on(vm, self.host(0), False, False)
        self.assertEqual(self.host(0), self.x.VM.get_resident_on(vm))
        self.control().host_live(uuid, True)
        self.assertTrue(self.x.host_metrics.get_live(metrics))
        self.x.VM.hard_shutdown(vm)
        self.x.VM.start_on(vm, other, False, False)
        self.assertEqual(other, self.x.VM.get_resident_on(vm))

    def test_an_unknown_host_is_a_bad_request(self):
        self.assertRaises(ControlError, self.control().host_live,
                          'no-such-host', False)


class BulkInstancesTest(ControlTestCase):
    def test_bulk_vms_as_instances_of_the_master(self):
        made = self.control().create_vms(3, running=True, instances=True)
        made = made['vms']
        master = self.x.pool.get_master(self.x.pool.get_all()[0])
        for uuid in made:
            record = self.x.VM.get_record(self.x.VM.get_by_uuid(uuid))
            self.assertEqual(uuid, record['other_config']['nova_uuid'])
            self.assertEqual(master, record['affinity'])
            self.assertEqual(master, record['resident_on'])
            self.assertEqual('Running', record['power_state'])
