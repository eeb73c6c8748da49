"""Short calls do not wait behind long tasks."""

import threading

from tests.functional import base
from tests.functional.test_boot import pattern

MIB = 1024 * 1024


class ShortCallsTest(base.XenAPIFunctionalTestCase):

    def _setup_services(self):
        # one XenAPI connection: only what holds none while waiting (the
        # task watcher) lets anything else through during an import
        self.flags(connection_concurrent=1, group='xenserver')
        super(ShortCallsTest, self)._setup_services()

    def test_console_and_delete_while_an_image_imports(self):
        first = self.boot(self.image_with(pattern(MIB, seed=b'first')))
        other = self.boot(self.image_with(pattern(MIB, seed=b'other')))
        # the next image import (a dom0 plugin task) cannot end until the
        # short calls are done: were its wait to hold the one connection,
        # they could not go through (no bound on how long they take)
        image = self.image_with(pattern(MIB, seed=b'slow'))
        held = self.glance_http.hold(image)
        self.addCleanup(held.release)
        flavor = self.flavor('m1.tiny')['id']
        slow = self.api.post_server({'server': {
            'name': 'slow', 'flavorRef': flavor, 'imageRef': image,
            'networks': [{'uuid': self.neutron.network_1['id']}]}})
        self.assertTrue(held.requested.wait(120), 'the import never began')
        outcome = {}

        def short_calls():
            try:
                outcome['console'] = self.api.post_server_action(
                    first['id'], {'os-getConsoleOutput': {'length': 5}})
                self._delete_server(other)
                outcome['deleted'] = True
            except Exception as exc:
                outcome['error'] = exc
        thread = threading.Thread(target=short_calls)
        thread.start()
        thread.join(120)
        through = not thread.is_alive()
        building = self.api.get_server(slow['id'])['status']
        held.release()
        thread.join(120)
        self.assertTrue(through, 'the short calls wait behind the import')
        self.assertEqual('BUILD', building)
        self.assertNotIn('error', outcome)
        self.assertIn('output', outcome['console'])
        self.assertTrue(outcome.get('deleted'))
        self._wait_for_state_change(slow, 'ACTIVE')


class RulesHoldNoConnectionTest(base.XenAPIFunctionalTestCase):
    """The isolation plugin runs in dom0 as a task: while dom0 works on a
    server's rules, the driver's one XenAPI connection serves others."""

    def _setup_services(self):
        self.flags(connection_concurrent=1, group='xenserver')
        super(RulesHoldNoConnectionTest, self)._setup_services()

    def test_another_server_pauses_while_rules_are_applied(self):
        image = self.image_with(pattern(MIB))
        rebooting = self.boot(image)
        other = self.boot(image)
        control = self.xapi.control
        # the next plugin call stalls in dom0 until the faults are cleared
        control.delay('host.call_plugin', 600)
        # (Nova's test RPC answers the request once the reboot is over)
        request = threading.Thread(target=self.api.post_server_action,
                                   args=(rebooting['id'],
                                         {'reboot': {'type': 'HARD'}}))
        request.start()
        self.addCleanup(request.join)
        self.addCleanup(control.clear_faults)
        # the new domain's rules are in dom0, stalled
        self.poll(lambda: control.faults()[0]['fired'] == 1,
                  'the plugin call for the rebooted server')
        self.api.post_server_action(other['id'], {'pause': None})
        self._wait_for_state_change(other, 'PAUSED')
        # ... while the rules of the rebooted server are still being made
        self.assertEqual('reboot_started_hard', self.api.get_server(
            rebooting['id'])['OS-EXT-STS:task_state'])
        control.clear_faults()
        request.join()
        self._wait_for_server_parameter(
            rebooting, {'status': 'ACTIVE', 'OS-EXT-STS:task_state': None})
        vm, record = self.xapi.vm_of(rebooting['id'])
        vif = self.xapi.x.VIF.get_uuid(record['VIFs'][0])
        domid = int(record['domid'])
        self.assertEqual({'vif%d.0' % domid, 'tap%d.0' % domid},
                         set(self.xapi.isolation_rules()[vif]))
