"""Evacuate through Nova's API: a host of the pool dies (its nova-compute
down, xapi reporting it dead), its instance restarts on the other host
from its disks on the shared SR; the dead host's compute, back, leaves it
alone.  Disks on the dead host's local SR are out of reach: refused."""

from tests.functional import base
from tests.functional.test_boot import pattern

MIB = 1024 * 1024


class _Evacuate(base.XenAPIFunctionalTestCase):
    xapisim_options = dict(base.XenAPIFunctionalTestCase.xapisim_options,
                           hosts=2)
    local_srs = False
    # casts stay casts: a refusal is the evacuation's, not the API call's
    CAST_AS_CALL = False

    def _setup_compute_service(self):
        if self.local_srs:
            self.use_local_srs()
        return super(_Evacuate, self)._setup_compute_service()

    def setUp(self):
        super(_Evacuate, self).setUp()
        self.x = self.xapi.x
        hosts = self.xapi.pool['hosts']
        # the host that fails is a pool member (the master's xapi is the
        # one that stays): the second host, where the server is booted
        self.flags(host_uuid=hosts[1]['uuid'], group='xenserver')
        self.second = self._start_compute(hosts[1]['name_label'])
        self.dead_name = hosts[1]['name_label']
        self.dead_uuid = hosts[1]['uuid']
        self.dead = self.x.host.get_by_uuid(hosts[1]['uuid'])
        self.alive_name = hosts[0]['name_label']
        self.alive = self.x.host.get_by_uuid(hosts[0]['uuid'])
        self.server = self._create_server(
            image_uuid=self.image_with(pattern(MIB, seed=b'evac')),
            flavor_id=self.flavor()['id'],
            networks=[{'uuid': self.neutron.network_1['id']}],
            az='nova:%s' % self.dead_name)
        self.vm, record = self.xapi.vm_of(self.server['id'])
        self.vif = self.x.VIF.get_uuid(record['VIFs'][0])
        self.root = self.x.VBD.get_VDI(record['VBDs'][0])
        self.data = self.xapi.vdi_bytes(self.root, MIB)
        self.assertEqual(self.dead, record['resident_on'])

    def fail_second_host(self):
        """Its nova-compute stops (and is forced down), xapi sees it dead."""
        self.second.stop()
        service = self.api.get_services(binary='nova-compute',
                                        host=self.dead_name)[0]
        self.api.put_service_force_down(service['id'], True)
        self.xapi.control.host_live(self.dead_uuid, False)
        return service


class EvacuateTest(_Evacuate):
    def test_evacuate_restarts_the_vm_from_its_disks(self):
        service = self.fail_second_host()
        # since microversion 2.95 Nova leaves an evacuated server stopped
        server = self._evacuate_server(self.server,
                                       expected_host=self.alive_name,
                                       expected_state='SHUTOFF')
        self.assertIn('disk on shared storage, evacuating using existing '
                      'disk', self.stdlog.logger.output)
        # the same VM, with the same disk, now this host's
        vm, record = self.xapi.vm_of(server['id'])
        self.assertEqual(self.vm, vm)
        self.assertEqual('Halted', record['power_state'])
        self.assertEqual(self.alive, record['affinity'])
        self.assertEqual(self.root, self.x.VBD.get_VDI(record['VBDs'][0]))
        self.assertEqual(self.data, self.xapi.vdi_bytes(self.root, MIB))
        # the failed host comes back, and its nova-compute: the evacuated
        # VM is not its own any more, and nothing destroys it
        self.xapi.control.host_live(self.dead_uuid, True)
        self.restart_compute_service(self.second)
        self.assertEqual([], self.second.manager.driver.list_instance_uuids())
        # Nova's start-up moved the evacuation to "completed"
        self._wait_for_migration_status(server, ['completed'])
        self.api.put_service_force_down(service['id'], False)
        self.assertEqual(self.vm, self.xapi.vm_of(server['id'])[0])
        server = self._start_server(server)
        self.assertEqual(self.alive_name, server['OS-EXT-SRV-ATTR:host'])
        record = self.x.VM.get_record(self.vm)
        self.assertEqual('Running', record['power_state'])
        self.assertEqual(self.alive, record['resident_on'])
        self.assertEqual([self.vif],
                         list(self.xapi.isolation_rules(self.alive)))
        # the failed host's dom0 kept the VIF's old table (xapisim's dom0
        # outlives the "crash"); the reclaimer's next pass removes it
        self.assertIn(self.vif, self.xapi.isolation_rules(self.dead))
        self.second.manager.driver._reclaimer.run_once()
        self.assertEqual({}, self.xapi.isolation_rules(self.dead))

    def test_a_live_and_enabled_host_is_not_evacuated(self):
        self.second.stop()
        service = self.api.get_services(binary='nova-compute',
                                        host=self.dead_name)[0]
        self.api.put_service_force_down(service['id'], True)
        # xapi still sees the host alive and enabled: its VM may run
        self._evacuate_server(self.server, expected_state='ERROR',
                              expected_migration_status='failed')
        self.assertIn('xapi reports its host', self.stdlog.logger.output)
        record = self.x.VM.get_record(self.vm)
        self.assertEqual('Running', record['power_state'])
        self.assertEqual(self.dead, record['resident_on'])


class LocalDisksEvacuateTest(_Evacuate):
    local_srs = True

    def test_disks_out_of_reach_are_refused(self):
        self.fail_second_host()
        self._evacuate_server(self.server, expected_state='ERROR',
                              expected_migration_status='failed')
        self.assertIn('which this host does not see',
                      self.stdlog.logger.output)
        record = self.x.VM.get_record(self.vm)
        # untouched: xapi still has it running on the dead host
        self.assertEqual('Running', record['power_state'])
        self.assertEqual(self.dead, record['resident_on'])
        self.assertEqual(self.data, self.xapi.vdi_bytes(self.root, MIB))
