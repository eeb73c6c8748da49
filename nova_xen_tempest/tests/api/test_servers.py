"""A server is one VM in the pool, tagged with its UUID, running where Nova
says, in the power state Nova shows."""

from tempest.lib import decorators

from nova_xen_tempest.tests.api import base

MIB = base.MIB


class ServerVMTest(base.XenAPIComputeTest):

    @classmethod
    def setup_clients(cls):
        super(ServerVMTest, cls).setup_clients()
        cls.admin_hypervisor_client = cls.os_admin.hypervisor_client

    @classmethod
    def resource_setup(cls):
        super(ServerVMTest, cls).resource_setup()
        cls.server = cls.create_active_server()

    @decorators.idempotent_id('8d790fa9-54b3-4bfb-91bd-eee42c974532')
    def test_vm_is_tagged_and_runs_on_the_reported_host(self):
        vm, record = self.vm_of(self.server)
        self.assertEqual(self.server['id'],
                         record['other_config']['nova_uuid'])
        self.assertEqual(self.server['OS-EXT-SRV-ATTR:instance_name'],
                         record['name_label'])
        self.assert_runs_where_nova_says(self.server, record)
        flavor = self.flavor_of(self.server)
        self.assertEqual(str(flavor['vcpus']), record['VCPUs_max'])
        self.assertEqual(str(flavor['ram'] * MIB),
                         record['memory_static_max'])
        root = self.xapi.disks(record).get('0')
        self.assertIsNotNone(root, 'VM %s has no disk 0' % record['uuid'])
        if flavor['disk']:
            self.assertEqual(str(flavor['disk'] * 1024 * MIB),
                             root['virtual_size'])

    @decorators.idempotent_id('1a1313a9-7c0b-4cae-8f82-7ceb384688b2')
    def test_the_hypervisor_is_a_xen_host_of_the_pool(self):
        name = self.server['OS-EXT-SRV-ATTR:hypervisor_hostname']
        hypervisors = self.admin_hypervisor_client.list_hypervisors(
            detail=True)['hypervisors']
        mine = [h for h in hypervisors if h['hypervisor_hostname'] == name]
        self.assertEqual(1, len(mine), hypervisors)
        self.assertEqual('xen', mine[0]['hypervisor_type'])
        self.assertIn(name, self.xapi.hostnames())

    @decorators.idempotent_id('663e7b81-010b-4752-97d7-6d248a81a17d')
    def test_stop_start_pause_unpause_show_in_xapi(self):
        vm, _ = self.vm_of(self.server)
        server_id = self.server['id']
        self.servers_client.stop_server(server_id)
        self.wait_for_server(server_id, 'SHUTOFF')
        self.xapi.wait_for_power_state(vm, 'Halted')
        self.servers_client.start_server(server_id)
        self.wait_for_server(server_id, 'ACTIVE')
        record = self.xapi.wait_for_power_state(vm, 'Running')
        server = self.admin_servers_client.show_server(server_id)['server']
        self.assert_runs_where_nova_says(server, record)
        self.servers_client.pause_server(server_id)
        self.wait_for_server(server_id, 'PAUSED')
        self.xapi.wait_for_power_state(vm, 'Paused')
        self.servers_client.unpause_server(server_id)
        self.wait_for_server(server_id, 'ACTIVE')
        self.xapi.wait_for_power_state(vm, 'Running')

    @decorators.idempotent_id('acb5f1c2-26ae-4415-b522-50ac628d6411')
    def test_hard_reboot_gives_a_new_domain(self):
        vm, record = self.vm_of(self.server)
        self.servers_client.reboot_server(self.server['id'], type='HARD')
        self.wait_for_server(self.server['id'], 'ACTIVE')
        record2 = self.xapi.wait_for_power_state(vm, 'Running')
        self.assertNotEqual(record['domid'], record2['domid'])
