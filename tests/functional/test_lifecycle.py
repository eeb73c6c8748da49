"""Power operations through Nova's API, checked on the xapi side too; and
changes made behind Nova's back reaching Nova through events."""

import threading

from tests.functional import base
from tests.functional.test_boot import pattern

MIB = 1024 * 1024


class PowerTest(base.XenAPIFunctionalTestCase):

    def setUp(self):
        super(PowerTest, self).setUp()
        self.server = self.boot(self.image_with(pattern(MIB)))
        self.vm, record = self.xapi.vm_of(self.server['id'])
        self.x = self.xapi.x

    def action(self, body, expected):
        self.api.post_server_action(self.server['id'], body)
        return self._wait_for_state_change(self.server, expected)

    def power_state(self):
        return self.x.VM.get_power_state(self.vm)

    def test_stop_and_start(self):
        self.action({'os-stop': None}, 'SHUTOFF')
        self.assertEqual('Halted', self.power_state())
        self.action({'os-start': None}, 'ACTIVE')
        self.assertEqual('Running', self.power_state())
        self.assertEqual(self.x.host.get_by_uuid(
            self.xapi.pool['hosts'][0]['uuid']),
            self.x.VM.get_resident_on(self.vm))

    def test_stop_falls_back_to_hard_when_the_guest_ignores_it(self):
        self.flags(shutdown_timeout=1)
        self.xapi.control.guest(self.x.VM.get_uuid(self.vm),
                                clean_shutdown='ignore')
        self.xapi.control.reset_calls()
        self.action({'os-stop': None}, 'SHUTOFF')
        self.assertEqual('Halted', self.power_state())
        calls = self.xapi.control.calls()
        self.assertEqual(1, calls.get('VM.clean_shutdown'))
        # Nova's 1 s, not xapi's own 20 min: the request was cancelled
        self.assertEqual(1, calls.get('task.cancel'))
        self.assertEqual(1, calls.get('VM.hard_shutdown'))

    def test_stop_asks_again_every_retry_interval(self):
        # the guest ignores two requests and answers a later one: how
        # many requests fit in the timeout is the machine's business, so
        # none can run out (the fall back is the test above)
        self.flags(shutdown_timeout=3600)
        self.flags(shutdown_retry_interval=1, group='compute')
        uuid = self.x.VM.get_uuid(self.vm)
        self.xapi.control.guest(uuid, clean_shutdown='ignore')
        self.xapi.control.reset_calls()
        # nova's test framework makes the stop a call: it returns when the
        # stop is over
        stop = threading.Thread(target=self.api.post_server_action,
                                args=(self.server['id'], {'os-stop': None}))
        stop.start()
        self.addCleanup(stop.join)
        self.poll(lambda: self.xapi.control.calls().get('task.cancel', 0)
                  >= 2, 'two requests to the guest cancelled')
        self.xapi.control.guest(uuid, clean_shutdown='ok')
        stop.join(base.WAIT)
        self._wait_for_state_change(self.server, 'SHUTOFF')
        self.assertEqual('Halted', self.power_state())
        calls = self.xapi.control.calls()
        asked = calls.get('VM.clean_shutdown')
        self.assertGreaterEqual(asked, 3)
        # each unanswered request was cancelled before the next (the one
        # answered may end just as it is cancelled, on a busy machine)
        self.assertIn(calls.get('task.cancel'), (asked - 1, asked))
        self.assertNotIn('VM.hard_shutdown', calls)

    def test_soft_and_hard_reboot_give_a_new_domain(self):
        domid = self.x.VM.get_domid(self.vm)
        self._reboot_server(self.server, hard=False)
        self.assertEqual('Running', self.power_state())
        second = self.x.VM.get_domid(self.vm)
        self.assertNotEqual(domid, second)
        self.xapi.control.reset_calls()
        self._reboot_server(self.server, hard=True)
        self.assertNotEqual(second, self.x.VM.get_domid(self.vm))
        # a hard reboot is a new domain started paused (rules first)
        calls = self.xapi.control.calls()
        self.assertEqual(1, calls.get('VM.hard_shutdown'))
        self.assertEqual(1, calls.get('VM.unpause'))
        self.assertEqual('Running', self.power_state())

    def test_soft_reboot_falls_back_to_hard(self):
        self.flags(soft_reboot_timeout=1, group='xenserver')
        self.xapi.control.guest(self.x.VM.get_uuid(self.vm),
                                clean_shutdown='ignore')
        self.xapi.control.reset_calls()
        self._reboot_server(self.server, hard=False)
        calls = self.xapi.control.calls()
        self.assertEqual(1, calls.get('VM.clean_reboot'))
        self.assertEqual(1, calls.get('task.cancel'))
        self.assertEqual(1, calls.get('VM.hard_shutdown'))
        self.assertEqual(1, calls.get('VM.start_on'))
        self.assertEqual('Running', self.power_state())

    def test_pause_and_unpause(self):
        self.action({'pause': None}, 'PAUSED')
        self.assertEqual('Paused', self.power_state())
        self.action({'unpause': None}, 'ACTIVE')
        self.assertEqual('Running', self.power_state())

    def test_suspend_and_resume(self):
        self.action({'suspend': None}, 'SUSPENDED')
        self.assertEqual('Suspended', self.power_state())
        self.assertNotEqual('OpaqueRef:NULL',
                            self.x.VM.get_suspend_VDI(self.vm))
        self.action({'resume': None}, 'ACTIVE')
        self.assertEqual('Running', self.power_state())
        self.assertEqual('OpaqueRef:NULL', self.x.VM.get_suspend_VDI(self.vm))

    def _settle(self, xapi_state):
        """Wait until Nova has heard (event) of what xapi did."""
        wanted = {'Running': 1, 'Paused': 3, 'Suspended': 7}[xapi_state]

        def seen():
            server = self.api.get_server(self.server['id'])
            return server if server['OS-EXT-STS:power_state'] == wanted \
                else None
        return self.poll(seen, 'Nova sees the VM %s' % xapi_state)

    def test_unpause_of_a_vm_xapi_already_runs(self):
        # paused through Nova, unpaused behind its back: Nova still shows
        # PAUSED, and its unpause must bring the server back, not fail
        self.action({'pause': None}, 'PAUSED')
        self.x.VM.unpause(self.vm)
        server = self._settle('Running')
        self.assertEqual('PAUSED', server['status'])
        self.action({'unpause': None}, 'ACTIVE')
        self.assertEqual('Running', self.power_state())
        self.assertNotIn('fault', self.api.get_server(self.server['id']))

    def test_resume_of_a_vm_xapi_already_runs(self):
        self.action({'suspend': None}, 'SUSPENDED')
        self.x.VM.resume(self.vm, False, False)
        server = self._settle('Running')
        self.assertEqual('SUSPENDED', server['status'])
        self.action({'resume': None}, 'ACTIVE')
        self.assertEqual('Running', self.power_state())

    def test_snapshot_of_an_instance_without_a_vm_is_not_running(self):
        from nova import context
        from nova import exception
        from nova import objects
        instance = objects.Instance.get_by_uuid(
            context.get_admin_context(), self.server['id'])
        self.x.VM.hard_shutdown(self.vm)
        self.x.VM.destroy(self.vm)
        driver = self.computes[self.compute.host].manager.driver
        self.poll(lambda: not driver.instance_exists(instance),
                  'the VM watcher has seen the VM go')
        self.assertRaises(exception.InstanceNotRunning, driver.snapshot,
                          context.get_admin_context(), instance,
                          'an-image-id', lambda **kwargs: None)


class BehindNovasBackTest(base.XenAPIFunctionalTestCase):

    def setUp(self):
        super(BehindNovasBackTest, self).setUp()
        # prove it is the event, not the periodic power sync
        self.flags(sync_power_state_interval=-1)
        self.server = self.boot(self.image_with(pattern(MIB)))
        self.vm, _ = self.xapi.vm_of(self.server['id'])

    def wait_for_status(self, status):
        def reached():
            server = self.api.get_server(self.server['id'])
            return server if server['status'] == status else None
        return self.poll(reached, 'server %s %s' % (self.server['id'],
                                                    status))

    def test_vm_halted_in_xapi_shows_shutoff(self):
        self.xapi.x.VM.hard_shutdown(self.vm)
        server = self.wait_for_status('SHUTOFF')
        self.assertEqual(4, server['OS-EXT-STS:power_state'])   # SHUTDOWN

    def test_guest_shutting_itself_down_shows_shutoff(self):
        self.xapi.x.VM.set_actions_after_shutdown(self.vm, 'destroy')
        self.xapi.control.guest_action(self.xapi.x.VM.get_uuid(self.vm),
                                       'shutdown')
        self.wait_for_status('SHUTOFF')

    def test_watcher_survives_a_xapi_restart(self):
        self.xapi.control.restart_xapi()
        self.xapi.session.login_with_password(
            self.xapi.username, self.xapi.password, '2.21', 'tests')
        # whether the watcher is still away (its resynchronisation finds
        # the VM halted) or back already (the event), Nova hears of it
        self.xapi.x.VM.hard_shutdown(self.vm)
        self.wait_for_status('SHUTOFF')

    def test_listing_1000_instances_costs_no_call_per_vm(self):
        # 1,000 more instance VMs running on this host, 500 VMs nova does
        # not own
        self.xapi.control.create_vms(1000, running=True, memory_mib=8,
                                     other_config={'nova_uuid': 'bulk'})
        self.xapi.control.create_vms(500, running=True, memory_mib=8)
        driver = self.computes[self.compute.host].manager.driver
        self.poll(lambda: len(driver.list_instances()) >= 1001,
                  'the VM watcher has seen the 1,000 VMs')
        self.xapi.control.reset_calls()
        names = driver.list_instances()
        uuids = driver.list_instance_uuids()
        instance = self._get_instance(self.server['id'])
        for _ in range(100):
            driver.get_info(instance)
        self.assertEqual(1001, len(names))
        self.assertIn(self.server['id'], uuids)
        self.assertEqual({}, {k: v for k, v in self.xapi.control.calls()
                              .items() if not k.startswith('event.')})

    def _get_instance(self, uuid):
        from nova import context
        from nova import objects
        return objects.Instance.get_by_uuid(context.get_admin_context(),
                                            uuid)


class RebuildTest(base.XenAPIFunctionalTestCase):

    def test_rebuild_with_another_image(self):
        server = self.boot(self.image_with(pattern(MIB, seed=b'first')))
        second = pattern(MIB, seed=b'second-image')
        image = self.image_with(second, name='second')
        self.api.post_server_action(server['id'],
                                    {'rebuild': {'imageRef': image}})
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual(image, server['image']['id'])
        self.assertEqual('/dev/xvda',
                         server['OS-EXT-SRV-ATTR:root_device_name'])
        vm, record = self.xapi.vm_of(server['id'])
        self.assertEqual('Running', record['power_state'])
        root = self.xapi.x.VBD.get_VDI(record['VBDs'][0])
        self.assertEqual(second, self.xapi.vdi_bytes(root, len(second)))
        # exactly one VM and the disks of one build remain
        left = self.xapi.objects_of(server['id'])
        self.assertEqual(1, len(left['VM']))
        self.assertEqual(1, len(left['VDI']))
