"""Short calls do not wait behind long tasks."""

import time

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
        # the next image import (dom0 plugin task) takes 4 s
        self.xapi.control.delay('host.call_plugin', 4)
        self.xapi.control.reset_calls()
        flavor = self.flavor('m1.tiny')['id']
        slow = self.api.post_server({'server': {
            'name': 'slow', 'flavorRef': flavor,
            'imageRef': self.image_with(pattern(MIB, seed=b'slow')),
            'networks': [{'uuid': self.neutron.network_1['id']}]}})
        deadline = time.time() + 20
        while not self.xapi.control.calls().get('host.call_plugin') and \
                time.time() < deadline:
            time.sleep(0.05)
        began = time.time()
        output = self.api.post_server_action(
            first['id'], {'os-getConsoleOutput': {'length': 5}})
        self.assertIn('output', output)
        self._delete_server(other)
        took = time.time() - began
        self.assertLess(took, 2.5, 'short calls waited %.1f s' % took)
        self.assertEqual('BUILD', self.api.get_server(slow['id'])['status'])
        self._wait_for_state_change(slow, 'ACTIVE')
