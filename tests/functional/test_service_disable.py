"""A compute service an operator disables in Nova stops taking new
servers; the servers already on its XenServer host keep working (xapi's
host.disable would refuse every VM start there)."""

from nova.tests.functional.api import client

from tests.functional import base
from tests.functional.test_boot import pattern

MIB = 1024 * 1024


class _Disabling(base.XenAPIFunctionalTestCase):

    def setUp(self):
        super(_Disabling, self).setUp()
        self.x = self.xapi.x
        self.image = self.image_with(pattern(MIB))

    def host_ref(self, name):
        for host in self.xapi.pool['hosts']:
            if host['name_label'] == name:
                return self.x.host.get_by_uuid(host['uuid'])
        raise AssertionError('no host %s' % name)

    def set_service(self, host, status):
        self.api.microversion = '2.53'
        service, = self.api.get_services(binary='nova-compute', host=host)
        updated = self.api.put_service(service['id'], {'status': status})
        self.api.microversion = 'latest'
        self.assertEqual(status, updated['status'])

    def resident(self, server):
        vm, record = self.xapi.vm_of(server['id'])
        return record['power_state'], record['resident_on']


class DisabledServiceTest(_Disabling):

    def test_servers_on_a_disabled_service_keep_working(self):
        server = self.boot(self.image)
        host = self.host_ref(self.compute.host)
        self.set_service(self.compute.host, 'disabled')
        # xapi's host stays enabled: only Nova's scheduling stops
        self.assertTrue(self.x.host.get_enabled(host))
        self._stop_server(server)
        server = self._start_server(server)
        self.assertEqual(('Running', host), self.resident(server))
        server = self._reboot_server(server, hard=True)
        self.assertEqual(('Running', host), self.resident(server))
        # no new server lands there (the only host of this cloud)
        refused = self.boot(self.image, expected_state='ERROR')
        self.assertIn('No valid host', refused['fault']['message'])
        self.assertEqual([], self.xapi.objects_of(refused['id'])['VM'])
        self.set_service(self.compute.host, 'enabled')
        self.assertTrue(self.x.host.get_enabled(host))
        self._delete_server(server)

    def test_the_old_drivers_behaviour_behind_an_option(self):
        self.flags(disable_host_with_service=True, group='xenserver')
        server = self.boot(self.image)
        host = self.host_ref(self.compute.host)
        self._stop_server(server)
        self.set_service(self.compute.host, 'disabled')
        self.assertFalse(self.x.host.get_enabled(host))
        # the start fails, and the fault says why
        try:
            self.api.post_server_action(server['id'], {'os-start': None})
        except client.OpenStackApiException as exc:
            # in a cloud the start is a cast to nova-compute; nova's test
            # framework makes it a call, and so hands the error back
            self.assertEqual(500, exc.response.status_code)
        event = self._wait_for_instance_action_event(
            server, 'start', 'compute_start_instance', 'Error')
        self.assertIn('HOST_DISABLED', event['details'])
        self.assertIn('is disabled in xapi, which starts no VM on it',
                      event['details'])
        self.assertEqual(('Halted', 'OpaqueRef:NULL'), self.resident(server))
        self.set_service(self.compute.host, 'enabled')
        self.assertTrue(self.x.host.get_enabled(host))
        server = self._start_server(server)
        self.assertEqual(('Running', host), self.resident(server))

    def test_an_operators_own_disable_is_left_alone(self):
        self.flags(disable_host_with_service=True, group='xenserver')
        host = self.host_ref(self.compute.host)
        self.x.host.disable(host)       # xe host-disable, by hand
        self.set_service(self.compute.host, 'disabled')
        self.set_service(self.compute.host, 'enabled')
        self.assertFalse(self.x.host.get_enabled(host))
        self.assertNotIn('nova_xen_disabled',
                         self.x.host.get_other_config(host))
        self.x.host.enable(host)

    def test_maintenance_outlasts_a_service_enable(self):
        self.flags(disable_host_with_service=True, group='xenserver')
        host = self.host_ref(self.compute.host)
        self.api.microversion = '2.42'
        self.api.api_put('/os-hosts/%s' % self.compute.host,
                         {'maintenance_mode': 'enable'})
        self.set_service(self.compute.host, 'disabled')
        self.set_service(self.compute.host, 'enabled')
        # maintenance is still on: xapi still starts nothing there
        self.assertFalse(self.x.host.get_enabled(host))
        self.api.microversion = '2.42'
        self.api.api_put('/os-hosts/%s' % self.compute.host,
                         {'maintenance_mode': 'disable'})
        self.assertTrue(self.x.host.get_enabled(host))
        self.assertNotIn('nova_xen_disabled',
                         self.x.host.get_other_config(host))


class RevertOntoDisabledServiceTest(_Disabling):
    """A resize reverted onto a host whose service was disabled meanwhile
    starts the original there again."""
    xapisim_options = dict(_Disabling.xapisim_options, hosts=2)

    def setUp(self):
        super(RevertOntoDisabledServiceTest, self).setUp()
        hosts = self.xapi.pool['hosts']
        self.flags(host_uuid=hosts[1]['uuid'], group='xenserver')
        self.second = self._start_compute(hosts[1]['name_label'])

    def test_revert_onto_a_disabled_service(self):
        server = self.boot(self.image)
        source = server['OS-EXT-SRV-ATTR:host']
        target = [h['name_label'] for h in self.xapi.pool['hosts']
                  if h['name_label'] != source][0]
        server = self._migrate_server(server, host=target)
        self.assertEqual(target, server['OS-EXT-SRV-ATTR:host'])
        # the operator takes the source out of scheduling
        self.set_service(source, 'disabled')
        server = self._revert_resize(server)
        self.assertEqual(source, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual(('Running', self.host_ref(source)),
                         self.resident(server))
