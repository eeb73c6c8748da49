"""What nova-xen does not do yet is refused with a sentence, and the
server keeps running as it was."""

from nova.tests.functional.api import client

from tests.functional import base
from tests.functional.test_boot import pattern

MIB = 1024 * 1024


class ResizeTest(base.XenAPIFunctionalTestCase):
    xapisim_options = dict(base.XenAPIFunctionalTestCase.xapisim_options,
                           hosts=2)

    def setUp(self):
        super(ResizeTest, self).setUp()
        # a second host of the pool, for the scheduler to choose (each
        # nova-compute reads [xenserver]host_uuid at start)
        second = self.xapi.pool['hosts'][1]
        self.flags(host_uuid=second['uuid'], group='xenserver')
        self._start_compute(second['name_label'])

    def test_resize_is_refused_and_the_server_keeps_running(self):
        server = self.boot(self.image_with(pattern(MIB)))
        vm, before = self.xapi.vm_of(server['id'])
        try:
            self.api.post_server_action(
                server['id'], {'resize': {'flavorRef': self.flavor(
                    'm1.small')['id']}})
        except client.OpenStackApiException as exc:
            # nova's test harness turns the RPC casts into calls, so the
            # compute's refusal comes back through the API call itself;
            # a real nova-api answers 202 and the action records it
            self.assertIn('NotImplementedError', str(exc))
        event = self._wait_for_action_fail_completion(
            server, 'resize', 'compute_resize_instance')
        self.assertIn('migrate_disk_and_power_off', event['traceback'])
        # the sentence, in the log (and the scheduler's warning)
        self.assertIn('nova-xen: resize and cold migration is not supported: '
                      'moving disks between hosts is not implemented yet',
                      self.stdlog.logger.output)
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual('m1.tiny', server['flavor']['original_name'])
        _, after = self.xapi.vm_of(server['id'])
        self.assertEqual('Running', after['power_state'])
        self.assertEqual(before['resident_on'], after['resident_on'])
        self.assertEqual(before['domid'], after['domid'])
