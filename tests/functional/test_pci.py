"""PCI passthrough through Nova's API, its PCI tracker and scheduler filter:
the devices xapi can pass through are the tracker's, a server gets the one
Nova claimed (``VM.other_config:pci``), and what xapi cannot do is refused
with a sentence and nothing left behind.

The simulated hosts' devices: tests/devices_world.py (an Intel 82599 NIC,
8086:10fb, hidden from dom0 on each host: 0000:04:00.0 on the first,
0000:05:00.0 on the second).
"""

import json

from nova import context as nova_context
from nova import objects
from nova.tests.functional.api import client
import nova.conf

from tests import devices_world
from tests import records
from tests.functional import base
from tests.functional.test_boot import pattern

MIB = 1024 * 1024
NOTHING = {'VM': [], 'VDI': [], 'VBD': [], 'VIF': []}
NIC = {'vendor_id': '8086', 'product_id': '10fb'}


def _second_host_nic_elsewhere():
    spec = devices_world.spec()
    spec['hosts']['xcp-ng-1-2']['pci'][0]['pci_id'] = '0000:05:00.0'
    return spec


def assert_suspend_refused(test, server, reason):
    """A suspend of ``server`` fails with ``reason`` in the action's
    event, and the server stays ACTIVE with its VM running."""
    try:
        test.api.post_server_action(server['id'], {'suspend': {}})
    except client.OpenStackApiException:
        pass    # casts are calls in nova's harness (nova-api says 202)
    event = test._wait_for_instance_action_event(
        server, 'suspend', 'compute_suspend_instance', 'Error')
    test.assertIn(reason, event['details'])
    server = test._wait_for_state_change(server, 'ACTIVE')
    test.assertIsNone(server['OS-EXT-STS:task_state'])
    _, record = test.xapi.vm_of(server['id'])
    test.assertEqual('Running', record['power_state'])


class _PciBase(base.XenAPIFunctionalTestCase):
    xapisim_options = dict(base.XenAPIFunctionalTestCase.xapisim_options,
                           devices=_second_host_nic_elsewhere())
    #: [pci] device_spec entries (dicts)
    device_spec = [{'vendor_id': '8086'}]
    alias = dict(NIC, name='nic', device_type='type-PCI')

    def _setup_services(self):
        self.flags(device_spec=[json.dumps(s) for s in self.device_spec],
                   alias=[json.dumps(self.alias)], group='pci')
        filters = list(nova.conf.CONF.filter_scheduler.enabled_filters)
        self.flags(enabled_filters=filters + ['PciPassthroughFilter'],
                   group='filter_scheduler')
        super(_PciBase, self)._setup_services()

    def setUp(self):
        super(_PciBase, self).setUp()
        self.ctxt = nova_context.get_admin_context()
        self.x = self.xapi.x
        self.image = self.image_with(pattern(MIB, seed=b'pci'))
        self.pci_flavor = self._create_flavor(
            name='pci', memory_mb=256, vcpu=1, disk=1, ephemeral=0,
            extra_spec={'pci_passthrough:alias': 'nic:1'})

    def boot_with_nic(self, expected_state='ACTIVE'):
        return self._create_server(
            image_uuid=self.image, flavor_id=self.pci_flavor,
            networks=[{'uuid': self.neutron.network_1['id']}],
            expected_state=expected_state)

    def host_named(self, name):
        return self.x.host.get_by_name_label(name)[0]

    def tracker(self, host_name):
        """{address: status} of the PCI tracker's devices of a compute."""
        for node in objects.ComputeNodeList.get_all(self.ctxt):
            if node.host == host_name:
                return {d.address: d.status for d in
                        objects.PciDeviceList.get_by_compute_node(
                            self.ctxt, node.id)}
        raise AssertionError('no compute node of %s' % host_name)

    def xapi_assignable(self, host_name, vendor_id):
        """The addresses xapi says are hidden from dom0 (assignable)."""
        found = set()
        for pci in self.x.host.get_PCIs(self.host_named(host_name)):
            record = self.x.PCI.get_record(pci)
            if record['vendor_id'] == vendor_id and \
                    self.x.PCI.get_dom0_access_status(pci) == 'disabled':
                found.add(record['pci_id'])
        return found

    def pci_of(self, host_name, address):
        for pci in self.x.host.get_PCIs(self.host_named(host_name)):
            if self.x.PCI.get_pci_id(pci) == address:
                return pci
        raise AssertionError('no PCI %s on %s' % (address, host_name))


class PciPassthroughTest(_PciBase):
    """One host."""

    def setUp(self):
        super(PciPassthroughTest, self).setUp()
        self.host_name = self.xapi.pool['hosts'][0]['name_label']

    def test_the_tracker_has_the_devices_xapi_can_pass_through(self):
        # [pci] device_spec takes every Intel device: the SATA controller
        # and the I210 NIC dom0 uses, and the USB controller xapi does not
        # list, stay out; the 82599's PF and VF are there
        self.assertEqual({'0000:04:00.0', '0000:04:10.0'},
                         self.xapi_assignable(self.host_name, '8086'))
        self.assertEqual({'0000:04:00.0': 'available',
                          '0000:04:10.0': 'available'},
                         self.tracker(self.host_name))

    def test_boot_passes_the_claimed_device_through_and_delete_frees_it(self):
        server = self.boot_with_nic()
        vm, record = self.xapi.vm_of(server['id'])
        self.assertEqual('0/0000:04:00.0', record['other_config']['pci'])
        self.assertEqual([self.pci_of(self.host_name, '0000:04:00.0')],
                         record['attached_PCIs'])
        self.assertEqual('allocated',
                         self.tracker(self.host_name)['0000:04:00.0'])
        self._delete_server(server)
        self.assertEqual(NOTHING, self.xapi.objects_of(server['id']))
        self.assertEqual('available',
                         self.tracker(self.host_name)['0000:04:00.0'])

    def test_two_servers_compete_for_the_last_device(self):
        first = self.boot_with_nic()
        second = self.boot_with_nic(expected_state='ERROR')
        self.assertIn('No valid host',
                      self.api.get_server(second['id'])['fault']['message'])
        self.assertEqual(NOTHING, self.xapi.objects_of(second['id']))
        _, record = self.xapi.vm_of(first['id'])
        self.assertEqual('Running', record['power_state'])
        self.assertEqual({'0000:04:00.0': 'allocated',
                          '0000:04:10.0': 'available'},
                         self.tracker(self.host_name))

    def test_a_device_held_outside_nova_is_refused_before_anything_is_made(
            self):
        self.flags(max_attempts=1, group='scheduler')
        # a VM Nova does not know holds the NIC: xapi would only find out
        # in xenopsd, once the VM was built
        vm = self.x.VM.create(records.vm_record(
            'not-nova', 64, 1, other_config={'pci': '0/0000:04:00.0'}))
        self.x.VM.start_on(vm, self.host_named(self.host_name), False, False)
        vdis_before = self.xapi.vdis_besides_the_cache()
        self.xapi.control.reset_calls()
        server = self.boot_with_nic(expected_state='ERROR')
        fault = self.api.get_server(server['id'])['fault']['message']
        self.assertIn('Spawn failed at step "check the PCI devices"', fault)
        self.assertIn('PCI device 0000:04:00.0 of host %s is passed through '
                      'to VM' % self.host_name, fault)
        self.assertEqual(NOTHING, self.xapi.objects_of(server['id']))
        self.assertEqual(vdis_before, self.xapi.vdis_besides_the_cache())
        self.assertNotIn('VM.create', self.xapi.control.calls())

    def test_suspend_is_refused_and_the_server_stays_active(self):
        assert_suspend_refused(self, self.boot_with_nic(),
                               'xapi cannot suspend a VM with attached PCI '
                               'devices (VM_HAS_PCI_ATTACHED)')


class PciMoveTest(_PciBase):
    """Two hosts, each with an 82599 (at different addresses)."""

    xapisim_options = dict(_PciBase.xapisim_options, hosts=2)
    device_spec = [dict(NIC, live_migratable='yes')]
    alias = dict(_PciBase.alias, live_migratable='yes')

    def setUp(self):
        super(PciMoveTest, self).setUp()
        hosts = self.xapi.pool['hosts']
        self.flags(host_uuid=hosts[1]['uuid'], group='xenserver')
        self.second = self._start_compute(hosts[1]['name_label'])
        self.names = [h['name_label'] for h in hosts]

    def test_live_migration_is_refused_before_anything_changes(self):
        server = self.boot_with_nic()
        source = server['OS-EXT-SRV-ATTR:host']
        target = [n for n in self.names if n != source][0]
        vm, _ = self.xapi.vm_of(server['id'])
        self.xapi.control.reset_calls()
        try:
            self.api.post_server_action(server['id'], {'os-migrateLive': {
                'host': target, 'block_migration': 'auto'}})
        except client.OpenStackApiException:
            pass    # casts are calls in nova's harness (nova-api says 202)
        self._wait_for_migration_status(server, ['error'])
        server = self._wait_for_state_change(server, 'ACTIVE')
        event = self._wait_for_instance_action_event(
            server, 'live-migration', 'compute_check_can_live_migrate_source',
            'Error')
        self.assertIn('xapi cannot live-migrate a VM with attached PCI '
                      'devices (VM_HAS_PCI_ATTACHED)', event['details'])
        self.assertEqual(source, server['OS-EXT-SRV-ATTR:host'])
        self.assertIsNone(server['OS-EXT-STS:task_state'])
        moved, record = self.xapi.vm_of(server['id'])
        self.assertEqual((vm, 'Running', self.host_named(source)),
                         (moved, record['power_state'],
                          record['resident_on']))
        calls = self.xapi.control.calls()
        self.assertNotIn('VM.pool_migrate', calls)
        self.assertNotIn('VM.migrate_send', calls)

    def test_cold_migration_passes_the_destination_device_through(self):
        server = self.boot_with_nic()
        source = server['OS-EXT-SRV-ATTR:host']
        target = [n for n in self.names if n != source][0]
        addresses = {self.names[0]: '0000:04:00.0',
                     self.names[1]: '0000:05:00.0'}
        server = self._migrate_server(server, host=target)
        _, record = self.xapi.vm_of(server['id'])
        self.assertEqual('0/' + addresses[target],
                         record['other_config']['pci'])
        self.assertEqual([self.pci_of(target, addresses[target])],
                         record['attached_PCIs'])
        self._confirm_resize(server)
        self.assertEqual({addresses[source]: 'available'},
                         self.tracker(source))
        self.assertEqual({addresses[target]: 'allocated'},
                         self.tracker(target))
