"""tempest.lib's compute clients (and their response schemas) drive the
in-process Nova; the pool is checked through XenAPI after each step.

The xapi-side checks use nova_xen_tempest.xapi, the helpers of the tempest
plugin's tests, so that CI runs them against xapisim.
"""

from tempest.lib.common import api_microversion_fixture
from tempest.lib import exceptions as lib_exc

from nova_xen_tempest import xapi as xen_xapi

from tests.functional import base
from tests.functional import tempest_clients
from tests.functional.test_boot import pattern

MIB = 1024 * 1024
#: the newest compute microversion tempest.lib 47 has response schemas for
MICROVERSION = '2.100'


class TempestClientsTest(base.XenAPIFunctionalTestCase):

    def setUp(self):
        super(TempestClientsTest, self).setUp()
        fixture = self.api_fixture
        self.member = tempest_clients.ComputeClients(
            fixture.base_url, 'tempest-member', fixture.project_id,
            ['reader', 'member'])
        self.admin = tempest_clients.ComputeClients(
            fixture.base_url, 'admin', fixture.project_id,
            ['reader', 'member', 'admin'])
        self.use_microversion(MICROVERSION)
        self.view = xen_xapi.Xapi(self.xapi.x)
        self.host = self.view.x.host.get_record(self.view.x.host.get_by_uuid(
            self.xapi.pool['hosts'][0]['uuid']))

    def use_microversion(self, version):
        """Requests (and response schemas) of this compute microversion,
        until the end of the test or the next call."""
        self.useFixture(api_microversion_fixture.APIMicroversionFixture(
            compute_microversion=version))

    # -- helpers ---------------------------------------------------------

    def create_server(self, image_id, **kwargs):
        flavor = self.flavor('m1.tiny')
        body = self.member.servers.create_server(
            name='tempest-server', imageRef=image_id, flavorRef=flavor['id'],
            networks=[{'uuid': self.neutron.network_1['id']}], **kwargs)
        server_id = body['server']['id']
        self.addCleanup(self._delete_quietly, server_id)
        return self.wait(server_id, 'ACTIVE')

    def _delete_quietly(self, server_id):
        try:
            self.member.servers.delete_server(server_id)
            tempest_clients.wait_for_server_termination(
                self.member.servers, server_id)
        except lib_exc.NotFound:
            pass

    def wait(self, server_id, status):
        return tempest_clients.wait_for_server_status(
            self.member.servers, server_id, status)

    def vm_of(self, server_id):
        vm, record = self.view.vm_of(server_id)
        self.assertIsNotNone(vm, 'no VM tagged nova_uuid=%s' % server_id)
        return vm, record

    def assert_vm(self, vm, power_state):
        record = self.view.wait_for_power_state(vm, power_state)
        if power_state in ('Running', 'Paused'):
            self.assertEqual(self.host['uuid'],
                             self.view.host_of(record)['uuid'])
        return record

    def act(self, call, server_id, status, power_state, vm, **kwargs):
        call(server_id, **kwargs)
        self.wait(server_id, status)
        return self.assert_vm(vm, power_state)

    # -- the tests ---------------------------------------------------------

    def test_create_show_list_metadata_console_diagnostics_delete(self):
        servers = self.member.servers
        server = self.create_server(self.image_with(pattern(MIB)),
                                    metadata={'role': 'tempest'})
        server_id = server['id']

        # show, as admin: where Nova says the VM is
        shown = self.admin.servers.show_server(server_id)['server']
        vm, record = self.vm_of(server_id)
        self.assertEqual('Running', record['power_state'])
        self.assertEqual(server_id, record['other_config']['nova_uuid'])
        self.assertEqual(shown['OS-EXT-SRV-ATTR:instance_name'],
                         record['name_label'])
        self.assertEqual(shown['OS-EXT-SRV-ATTR:hypervisor_hostname'],
                         self.view.host_of(record)['hostname'])
        flavor = shown['flavor']
        self.assertEqual(str(flavor['vcpus']), record['VCPUs_max'])
        self.assertEqual(str(flavor['ram'] * MIB),
                         record['memory_static_max'])
        self.assertEqual(str(flavor['disk'] * 1024 * MIB),
                         self.view.disks(record)['0']['virtual_size'])
        port = self.neutron.list_ports(True, device_id=server_id)['ports'][0]
        self.assertEqual([port['mac_address']],
                         [v['MAC'] for v in self.view.vifs(record)])
        # the metadata Nova booted the server with is in its xenstore
        self.assertEqual('tempest',
                         record['xenstore_data'].get('vm-data/meta/role'))

        # list and list with details
        self.assertIn(server_id, [s['id'] for s in
                                  servers.list_servers()['servers']])
        detail = {s['id']: s for s in
                  servers.list_servers(detail=True)['servers']}
        self.assertEqual('ACTIVE', detail[server_id]['status'])

        # metadata: replace, update, set/show/delete one item
        servers.set_server_metadata(server_id, {'a': '1'})
        self.assertEqual({'a': '1'},
                         servers.list_server_metadata(server_id)['metadata'])
        servers.update_server_metadata(server_id, {'b': '2'})
        servers.set_server_metadata_item(server_id, 'c', {'c': '3'})
        self.assertEqual({'c': '3'}, servers.show_server_metadata_item(
            server_id, 'c')['meta'])
        servers.delete_server_metadata_item(server_id, 'a')
        self.assertEqual({'b': '2', 'c': '3'},
                         servers.list_server_metadata(server_id)['metadata'])
        self.assertRaises(lib_exc.NotFound, servers.show_server_metadata_item,
                          server_id, 'a')

        # console output: the guest's log as dom0 keeps it
        output = servers.get_console_output(server_id)['output']
        self.assertIn('Linux version', output)
        record = self.xapi.x.VM.get_record(vm)
        log = self.view.dom0_console_log(record)
        last = [line for line in output.splitlines() if line.strip()][-1]
        self.assertIn(last, log)
        tail = servers.get_console_output(server_id, length=2)['output']
        self.assertLessEqual(len(tail.splitlines()), 2)
        self.assertIn(last, tail)

        # diagnostics (admin): the standard ones, then RRD data sources
        diags = self.admin.servers.show_server_diagnostics(server_id)
        self.assertEqual('xenapi', diags['driver'])
        self.assertEqual('running', diags['state'])
        self.assertEqual(int(record['VCPUs_at_startup']), diags['num_cpus'])
        self.assertEqual([port['mac_address']],
                         [n['mac_address'] for n in diags['nic_details']])
        self.assertEqual(int(record['memory_static_max']) // MIB,
                         diags['memory_details']['maximum'])
        self.assertEqual(1, diags['num_disks'])
        self.use_microversion('2.47')
        legacy = self.admin.servers.show_server_diagnostics(server_id)
        for name in ('cpu0', 'memory', 'vbd_xvda_read', 'vif_0_rx'):
            self.assertIsInstance(legacy[name], (int, float), name)
        self.use_microversion(MICROVERSION)

        # what Nova recorded of it
        actions = servers.list_instance_actions(server_id)['instanceActions']
        self.assertEqual(['create'], [a['action'] for a in actions])
        action = servers.show_instance_action(
            server_id, actions[0]['request_id'])['instanceAction']
        self.assertIn('compute__do_build_and_run_instance',
                      [e['event'] for e in action['events']])
        self.assertEqual(['Success'],
                         list({e['result'] for e in action['events']}))

        # delete: nothing of the server is left in the pool
        servers.delete_server(server_id)
        tempest_clients.wait_for_server_termination(servers, server_id)
        self.assertEqual({'VM': [], 'VDI': [], 'VBD': [], 'VIF': []},
                         self.xapi.objects_of(server_id))

    def test_server_actions(self):
        servers = self.member.servers
        server = self.create_server(self.image_with(pattern(MIB)))
        server_id = server['id']
        vm, record = self.vm_of(server_id)
        x = self.xapi.x

        # reboots give a new domain
        domid = record['domid']
        for kind in ('SOFT', 'HARD'):
            record = self.act(servers.reboot_server, server_id, 'ACTIVE',
                              'Running', vm, type=kind)
            self.assertNotEqual(domid, record['domid'], kind)
            domid = record['domid']

        self.act(servers.stop_server, server_id, 'SHUTOFF', 'Halted', vm)
        self.act(servers.start_server, server_id, 'ACTIVE', 'Running', vm)
        self.act(servers.pause_server, server_id, 'PAUSED', 'Paused', vm)
        self.act(servers.unpause_server, server_id, 'ACTIVE', 'Running', vm)
        record = self.act(servers.suspend_server, server_id, 'SUSPENDED',
                          'Suspended', vm)
        self.assertNotEqual('OpaqueRef:NULL', record['suspend_VDI'])
        record = self.act(servers.resume_server, server_id, 'ACTIVE',
                          'Running', vm)
        self.assertEqual('OpaqueRef:NULL', record['suspend_VDI'])

        # rebuild: the same VM record? no matter; a root disk of the image
        second = pattern(MIB, seed=b'tempest-rebuild')
        image = self.image_with(second, name='second')
        rebuilt = servers.rebuild_server(server_id, image)['server']
        self.assertEqual(image, rebuilt['image']['id'])
        server = self.wait(server_id, 'ACTIVE')
        self.assertEqual(image, server['image']['id'])
        vm, record = self.vm_of(server_id)
        self.assertEqual('Running', record['power_state'])
        root = x.VDI.get_by_uuid(self.view.disks(record)['0']['uuid'])
        self.assertEqual(second, self.xapi.vdi_bytes(root, len(second)))

        # createImage: a VHD image of the server, nothing left in the SR
        body = self.member.images.create_image(server_id, name='tempest-snap')
        image_id = body['image_id']
        self.wait(server_id, 'ACTIVE')
        self.assertEqual('vhd', self.glance.show(None, image_id)['disk_format'])
        self.assertEqual([], self.view.snapshot_vdis_of(server_id))
        self.assert_vm(vm, 'Running')
        self.use_microversion('2.35')     # the image proxy, gone in 2.36
        proxied = self.member.images.show_image(image_id)['image']
        self.assertEqual('ACTIVE', proxied['status'])
        self.assertEqual(server_id, proxied['server']['id'])
        self.use_microversion(MICROVERSION)

        actions = servers.list_instance_actions(server_id)['instanceActions']
        self.assertEqual(
            ['create', 'reboot', 'reboot', 'stop', 'start', 'pause',
             'unpause', 'suspend', 'resume', 'rebuild', 'createImage'],
            [a['action'] for a in reversed(actions)])

        servers.delete_server(server_id)
        tempest_clients.wait_for_server_termination(servers, server_id)
        self.assertEqual({'VM': [], 'VDI': [], 'VBD': [], 'VIF': []},
                         self.xapi.objects_of(server_id))

    def test_flavors_and_hypervisors(self):
        flavors = self.member.flavors
        listed = flavors.list_flavors()['flavors']
        tiny = [f for f in listed if f['name'] == 'm1.tiny'][0]
        detail = flavors.list_flavors(detail=True)['flavors']
        self.assertEqual(sorted(f['id'] for f in listed),
                         sorted(f['id'] for f in detail))
        shown = flavors.show_flavor(tiny['id'])['flavor']
        self.assertEqual(self.flavor('m1.tiny')['ram'], shown['ram'])

        # the hypervisor is the xapi host this compute manages (tempest.lib
        # 47 has no schema for the hypervisors of 2.88 and later)
        self.use_microversion('2.87')
        hypervisors = self.admin.hypervisors
        listed = hypervisors.list_hypervisors(detail=True)['hypervisors']
        self.assertEqual([self.host['hostname']],
                         [h['hypervisor_hostname'] for h in listed])
        shown = hypervisors.show_hypervisor(listed[0]['id'])['hypervisor']
        self.assertEqual('xen', shown['hypervisor_type'])
        self.assertEqual(('up', 'enabled'), (shown['state'], shown['status']))
        self.assertEqual(len(self.host['host_CPUs']), shown['vcpus'])
        memory = self.xapi.x.host_metrics.get_memory_total(
            self.host['metrics'])
        self.assertEqual(int(memory) // MIB, shown['memory_mb'])
        uptime = hypervisors.show_hypervisor_uptime(listed[0]['id'])
        self.assertIn('load average', uptime['hypervisor']['uptime'])
        # and it is for admins only
        self.assertRaises(lib_exc.Forbidden,
                          self.member.hypervisors.list_hypervisors)
