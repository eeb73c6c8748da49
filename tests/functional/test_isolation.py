"""Isolation rules follow every VIF of an instance: applied when its domain
starts, moved to the new devices when the domain changes (also behind
Nova's back), removed when the instance goes."""

import json
import os

from tests.functional import base
from tests.functional import fixtures
from tests.functional.test_boot import pattern

MIB = 1024 * 1024


class IsolationTest(base.XenAPIFunctionalTestCase):

    def setUp(self):
        super(IsolationTest, self).setUp()
        self.server = self.boot(self.image_with(pattern(MIB)))
        self.vm, record = self.xapi.vm_of(self.server['id'])
        self.vif = self.xapi.x.VIF.get_record(record['VIFs'][0])

    def rules(self):
        x = self.xapi.x
        host = x.host.get_all()[0]
        return json.loads(x.host.call_plugin(
            host, 'nova_xen_isolation.py', 'list_rules',
            {'params': '{}'}))['vifs']

    def expected_devices(self):
        domid = int(self.xapi.x.VM.get_domid(self.vm))
        return sorted(['vif%d.0' % domid, 'tap%d.0' % domid])

    def test_rules_for_the_vif_with_the_ports_addresses(self):
        self.assertEqual({self.vif['uuid']: self.expected_devices()},
                         self.rules())
        port = self.neutron.list_ports(
            True, device_id=self.server['id'])['ports'][0]
        self.assertEqual([ip['ip_address'] for ip in port['fixed_ips']],
                         self.vif['ipv4_allowed'] + self.vif['ipv6_allowed'])

    def test_rules_follow_a_reboot_through_nova(self):
        before = self.expected_devices()
        self._reboot_server(self.server, hard=True)
        after = self.expected_devices()
        self.assertNotEqual(before, after)
        self.assertEqual({self.vif['uuid']: after}, self.rules())

    def test_rules_follow_a_guest_rebooting_itself(self):
        before = self.expected_devices()
        self.xapi.control.guest_action(self.xapi.x.VM.get_uuid(self.vm),
                                       'reboot')
        after = self.expected_devices()
        self.assertNotEqual(before, after)
        self.poll(lambda: self.rules() == {self.vif['uuid']: after},
                  'the rules on the new domain (now %s)' % self.rules())

    def test_rules_go_with_the_instance(self):
        self._delete_server(self.server)
        self.assertEqual({}, self.rules())


class RulesBeforeTheGuestRunsTest(base.XenAPIFunctionalTestCase):
    """Every domain the driver starts is paused while its VIFs get their
    rules: the isolation plugin, asked to apply them, sees the VM Paused."""

    def _setup_services(self):
        self.plugins = self.useFixture(fixtures.PluginsCopy())
        self.seen = os.path.join(self.plugins.path, 'seen')
        self.plugins.edit(
            'nova_xen_isolation.py', 'def apply_rules(session, params):\n',
            'def apply_rules(session, params):\n'
            '    _x = session.xenapi\n'
            "    _vm = _x.VIF.get_VM(_x.VIF.get_by_uuid(params['vif_uuid']))\n"
            '    with open(%r, "a") as _fh:\n'
            '        _fh.write(_x.VM.get_power_state(_vm) + "\\n")\n'
            % self.seen)
        self.xapisim_options = dict(self.xapisim_options,
                                    plugins_dir=self.plugins.path)
        super(RulesBeforeTheGuestRunsTest, self)._setup_services()

    def assertOnlyPaused(self):
        """Rules were applied (maybe twice: the driver and the VM watcher
        may both see the new domain), each time to a paused domain."""
        with open(self.seen) as fh:
            states = fh.read().split()
        os.unlink(self.seen)
        self.assertEqual({'Paused'}, set(states))

    def test_spawn_start_resume_reboot_rescue(self):
        server = self.boot(self.image_with(pattern(MIB)))
        self.assertOnlyPaused()
        for body, state in (({'os-stop': None}, 'SHUTOFF'),
                            ({'os-start': None}, 'ACTIVE'),
                            ({'suspend': None}, 'SUSPENDED'),
                            ({'resume': None}, 'ACTIVE')):
            self.api.post_server_action(server['id'], body)
            self._wait_for_state_change(server, state)
            if state == 'ACTIVE':
                self.assertOnlyPaused()
        self._reboot_server(server, hard=True)
        self.assertOnlyPaused()
        self._rescue_server(server)
        self.assertOnlyPaused()
        self._unrescue_server(server)
        self.assertOnlyPaused()
        vm, _ = self.xapi.vm_of(server['id'])
        self.assertEqual('Running', self.xapi.x.VM.get_power_state(vm))


class IsolationOffTest(base.XenAPIFunctionalTestCase):
    """[xenserver]isolation_rules = false (where OVN's port security is
    enough): no rules on any VIF, and the rules a run with them on left
    in dom0 are removed when nova-compute starts."""

    def test_no_rules_and_the_old_ones_go(self):
        image = self.image_with(pattern(MIB))
        server = self.boot(image)
        vm, record = self.xapi.vm_of(server['id'])
        vif = self.xapi.x.VIF.get_uuid(record['VIFs'][0])
        # on by default
        self.assertEqual([vif], list(self.xapi.isolation_rules()))
        self.flags(isolation_rules=False, group='xenserver')
        self.compute = self.restart_compute_service(self.compute)
        self.assertEqual({}, self.xapi.isolation_rules())
        self.assertIn('isolation rules are off ([xenserver]isolation_rules): '
                      'removed the rules of 1 VIFs from dom0 of',
                      self.stdlog.logger.output)
        # a new domain, a new server: still none, and both run
        self._reboot_server(server, hard=True)
        second = self.boot(image)
        self.assertEqual('Running', self.xapi.x.VM.get_power_state(
            self.xapi.vm_of(second['id'])[0]))
        self.assertEqual({}, self.xapi.isolation_rules())
        self._delete_server(server)
        self.assertEqual({}, self.xapi.isolation_rules())
