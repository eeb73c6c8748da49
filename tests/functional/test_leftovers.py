"""Failed deletes say why, and what a failed clean-up leaves is reclaimed
while nova-compute runs (not only at its next start)."""

from nova.tests.functional.api import client

from tests.functional import base
from tests.functional import fixtures as xen_fixtures
from tests.functional.test_boot import pattern
from tests import polling

MIB = 1024 * 1024
NOTHING = {'VM': [], 'VDI': [], 'VBD': [], 'VIF': []}


class Reclaiming(object):
    """For a functional test case whose reclaimer passes every second."""

    def _setup_services(self):
        # the reclaimer's first pass comes after one interval: set it
        # before nova-compute starts
        self.flags(reclaim_interval=1, group='xenserver')
        super(Reclaiming, self)._setup_services()

    def eventually(self, check, seconds=base.WAIT, what='the condition'):
        """The first true value of ``check()``, polled (``seconds`` is a
        safety net: the reclaimer passes every second), once the
        reclaimer's pass under way is over: the pass that made it true
        logs what it did after doing it."""
        value = polling.until(check, what, seconds, 0.2)
        self.more_passes(0)
        return value

    def more_passes(self, count):
        """Until the reclaimer has completed ``count`` more passes (each
        of them begun after this call), and the one under way, if any."""
        reclaimer = self.computes[self.compute.host].manager.driver \
            ._reclaimer
        target = reclaimer.passes + count + 1
        polling.until(lambda: reclaimer.passes >= target,
                      '%d more reclaimer passes' % count, base.WAIT, 0.2)

    def log_lines(self, text):
        return [line for line in self.stdlog.logger.output.splitlines()
                if text in line]


class _Leftovers(Reclaiming, base.XenAPIFunctionalTestCase):

    def setUp(self):
        super(_Leftovers, self).setUp()
        self.server = self.boot(self.image_with(pattern(MIB)))
        self.driver = self.computes[self.compute.host].manager.driver


class FailedDeleteTest(_Leftovers):

    def test_a_refused_delete_leaves_a_fault_that_says_why(self):
        self.xapi.control.fail('VM.destroy', ['INTERNAL_ERROR', 'flaky'])
        try:
            self.api.delete_server(self.server['id'])
        except client.OpenStackApiException as exc:
            # in a cloud the delete is a cast to nova-compute; nova's test
            # framework makes it a call, and so hands the error back
            self.assertEqual(500, exc.response.status_code)
        server = self._wait_for_state_change(self.server, 'ERROR')
        # the server shows (GET answers) with xapi's reason as its fault
        server = self.api.get_server(self.server['id'])
        fault = server['fault']
        self.assertEqual(500, fault['code'])
        self.assertIn('XenAPI VM.destroy failed: INTERNAL_ERROR [flaky]',
                      fault['message'])
        self.assertNotIn('Original exception being dropped',
                         self.stdlog.logger.output)
        # the VM is still there; a second delete goes through
        self.assertIsNotNone(self.xapi.vm_of(self.server['id']))
        self._delete_server(server)
        self.assertEqual(NOTHING, self.xapi.objects_of(self.server['id']))
        self.assertEqual({}, self.xapi.isolation_rules())


class ReclaimTest(_Leftovers):

    def test_a_disk_xapi_would_not_destroy_is_reclaimed(self):
        vdis = self.xapi.objects_of(self.server['id'])['VDI']
        self.assertEqual(1, len(vdis))
        self.xapi.control.fail('VDI.destroy', ['INTERNAL_ERROR', 'busy'])
        # the server goes at once: its VM is gone, its disk follows
        self._delete_server(self.server)
        self.eventually(lambda: self.xapi.objects_of(self.server['id']) ==
                        NOTHING, what='the disk reclaimed')
        self.assertEqual(2, self.xapi.control.calls()['VDI.destroy'])
        vdi_uuid = vdis[0]
        self.assertEqual(1, len(self.log_lines(
            'could not remove VDI %s' % vdi_uuid)))
        self.assertEqual(1, len(self.log_lines(
            'reclaimed VDI %s' % vdi_uuid)))
        self.assertEqual(0, len(self.driver._session.leftovers))

    def test_rule_tables_of_vifs_that_no_longer_exist_are_removed(self):
        # an operator destroys a server's VM in XenCenter: its VIF goes,
        # nobody asks dom0 to drop its rule table
        own = self.xapi.isolation_rules()
        self.assertEqual(1, len(own))
        other = self.boot(self.image_with(pattern(MIB, seed=b'other')))
        vm, record = self.xapi.vm_of(other['id'])
        ghost = self.xapi.x.VIF.get_uuid(record['VIFs'][0])
        self.assertIn(ghost, self.xapi.isolation_rules())
        self.xapi.x.VM.hard_shutdown(vm)
        self.xapi.x.VM.destroy(vm)
        self.eventually(lambda: ghost not in self.xapi.isolation_rules(),
                        what='the orphaned rule table removed')
        self.assertEqual(own, self.xapi.isolation_rules())
        self.more_passes(2)     # logged once, not once per pass
        self.assertEqual(1, len(self.log_lines(
            'removed the isolation rules of VIF %s' % ghost)))

    def test_a_task_xapi_would_not_destroy_is_reclaimed(self):
        tasks_before = set(self.xapi.x.task.get_all())
        self.xapi.control.fail('task.destroy', ['INTERNAL_ERROR', 'later'])
        self.api.post_server_action(self.server['id'], {'os-stop': None})
        self._wait_for_state_change(self.server, 'SHUTOFF')
        self.eventually(
            lambda: set(self.xapi.x.task.get_all()) <= tasks_before,
            what='the task reclaimed')
        self.assertEqual(1, len(self.log_lines('reclaimed task')))

    def test_a_vm_the_spawn_rollback_could_not_destroy_is_reclaimed(self):
        self.flags(max_attempts=1, group='scheduler')
        build = '_do_build_and_run_instance'
        handlers = self.useFixture(xen_fixtures.Handlers(
            self.computes[self.compute.host].manager, [build]))
        self.xapi.control.fail('VM.start_on', ['NO_HOSTS_AVAILABLE'])
        # both the spawn's clean-up and nova's destroy of the failed build
        # are refused (and so is the reclaimer, whenever it passes: how
        # it interleaves with the build is the machine's business) ...
        self.xapi.control.fail('VM.destroy', ['INTERNAL_ERROR', 'flaky'],
                               times=0)
        server = self.boot(self.image_with(pattern(MIB, seed=b'x')),
                           expected_state='ERROR')
        handlers.wait(build, 1)
        self.assertEqual(1, len(self.xapi.objects_of(server['id'])['VM']))
        # ... until the build is over: only the reclaimer is left to take
        # the VM
        self.xapi.control.clear_faults()
        self.eventually(lambda: self.xapi.objects_of(server['id']) ==
                        NOTHING, what='the VM reclaimed')
        self.assertEqual(1, len(self.log_lines('reclaimed VM')))
