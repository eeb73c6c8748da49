"""Ports Neutron has not reported up are waited for: the domain exists
paused (so the agent in dom0 can wire its VIF devices) until Neutron says
network-vif-plugged, as with Nova's libvirt driver."""

import threading
import time

import fixtures

from tests.functional import base
from tests.functional.test_boot import pattern

MIB = 1024 * 1024


class VifPluggingTest(base.XenAPIFunctionalTestCase):

    def setUp(self):
        super(VifPluggingTest, self).setUp()
        # nova's Neutron fixture reports ports up at once; a real Neutron
        # reports them down until its agent has wired them
        from nova.compute import manager
        real = manager.ComputeManager._build_networks_for_instance

        def ports_down(compute, *args, **kwargs):
            network_info = real(compute, *args, **kwargs)
            for vif in network_info:
                vif['active'] = False
            return network_info
        self.useFixture(fixtures.MonkeyPatch(
            'nova.compute.manager.ComputeManager.'
            '_build_networks_for_instance', ports_down))
        self.image = self.image_with(pattern(MIB))

    def neutron_reports_plugged_when_paused(self, seen):
        """What Neutron does: the VIF appears, the port goes up."""
        deadline = time.time() + base.WAIT
        while time.time() < deadline:
            for server in self.api.get_servers():
                found = self.xapi.vm_of(server['id'])
                if found and found[1]['power_state'] == 'Paused':
                    seen['paused'] = found[1]
                    ports = self.neutron.list_ports(
                        True, device_id=server['id'])['ports']
                    self.admin_api.api_post('/os-server-external-events', {
                        'events': [{'name': 'network-vif-plugged',
                                    'server_uuid': server['id'],
                                    'tag': p['id']} for p in ports]})
                    return
            time.sleep(0.05)

    def test_the_guest_runs_once_its_ports_are_plugged(self):
        # the event comes (when the VM is paused): the timeout is a
        # safety net
        self.flags(vif_plugging_timeout=base.WAIT,
                   vif_plugging_is_fatal=True)
        seen = {}
        neutron = threading.Thread(
            target=self.neutron_reports_plugged_when_paused, args=(seen,))
        neutron.start()
        server = self.boot(self.image)
        neutron.join()
        self.assertEqual('Paused', seen['paused']['power_state'])
        _, record = self.xapi.vm_of(server['id'])
        self.assertEqual('Running', record['power_state'])

    def test_no_event_in_time_fails_the_build_and_leaves_nothing(self):
        self.flags(vif_plugging_timeout=1, vif_plugging_is_fatal=True)
        self.flags(max_attempts=1, group='scheduler')
        server = self.boot(self.image, expected_state='ERROR')
        self.assertIn('Virtual Interface creation failed',
                      self.api.get_server(server['id'])['fault']['message'])
        self.assertEqual({'VM': [], 'VDI': [], 'VBD': [], 'VIF': []},
                         self.xapi.objects_of(server['id']))

    def test_not_fatal_starts_anyway(self):
        self.flags(vif_plugging_timeout=1, vif_plugging_is_fatal=False)
        server = self.boot(self.image)
        _, record = self.xapi.vm_of(server['id'])
        self.assertEqual('Running', record['power_state'])
