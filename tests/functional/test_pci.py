"""PCI passthrough through Nova's API, its PCI tracker and scheduler filter:
the devices xapi can pass through are the tracker's, a server gets the one
Nova claimed (``VM.other_config:pci``), and what xapi cannot do is refused
with a sentence and nothing left behind.

The simulated hosts' devices: tests/devices_world.py (an Intel 82599 NIC,
8086:10fb, hidden from dom0 on each host, an SR-IOV PF with one VF
8086:10ed: 0000:04:00.0 and its VF 0000:04:10.0 on the first, 0000:05:00.0
and 0000:05:10.0 on the second; on the first a USB controller, a class
xapi does not list, that only the dom0 plugin nova_xen_pci.py reports).
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
VF = {'vendor_id': '8086', 'product_id': '10ed'}
USB = {'vendor_id': '8086', 'product_id': '8c31'}


def _second_host_nic_elsewhere():
    spec = devices_world.spec()
    pf = spec['hosts']['xcp-ng-1-2']['pci'][0]
    pf.update(pci_id='0000:05:00.0', dependencies=['0000:05:10.0'])
    vf = [p for p in spec['hosts']['xcp-ng-1-1']['pci']
          if p['pci_id'] == '0000:04:10.0'][0]
    spec['hosts']['xcp-ng-1-2']['pci'].append(
        dict(vf, pci_id='0000:05:10.0', physfn='0000:05:00.0'))
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
    # the 82599 is an SR-IOV PF: Nova gives a PF only to an alias that
    # asks for one (PciDeviceStats._filter_pools_for_unrequested_pfs)
    alias = dict(NIC, name='nic', device_type='type-PF')
    #: more [pci] alias entries
    aliases = [dict(VF, name='vf', device_type='type-VF'),
               dict(USB, name='usb', device_type='type-PCI')]

    def _setup_services(self):
        self.flags(device_spec=[json.dumps(s) for s in self.device_spec],
                   alias=[json.dumps(a) for a in [self.alias] + self.aliases],
                   group='pci')
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

    def boot_with_nic(self, expected_state='ACTIVE', flavor=None):
        return self._create_server(
            image_uuid=self.image, flavor_id=flavor or self.pci_flavor,
            networks=[{'uuid': self.neutron.network_1['id']}],
            expected_state=expected_state)

    def flavor_with(self, alias):
        return self._create_flavor(
            name=alias, memory_mb=256, vcpu=1, disk=1, ephemeral=0,
            extra_spec={'pci_passthrough:alias': '%s:1' % alias})

    def tracker_types(self, host_name):
        """{address: (dev_type, parent_addr)} of the tracker's devices."""
        return {d.address: (d.dev_type, d.parent_addr)
                for d in self.tracker_devices(host_name)}

    def host_named(self, name):
        return self.x.host.get_by_name_label(name)[0]

    def tracker_devices(self, host_name):
        """The PCI tracker's devices of a compute."""
        for node in objects.ComputeNodeList.get_all(self.ctxt):
            if node.host == host_name:
                return objects.PciDeviceList.get_by_compute_node(
                    self.ctxt, node.id)
        raise AssertionError('no compute node of %s' % host_name)

    def tracker(self, host_name):
        """{address: status} of the PCI tracker's devices of a compute."""
        return {d.address: d.status for d in self.tracker_devices(host_name)}

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

    def test_the_tracker_has_the_devices_dom0_left_to_guests(self):
        # [pci] device_spec takes every Intel device: the SATA controller
        # and the I210 NIC dom0 uses stay out; the 82599's PF and VF, and
        # the USB controller xapi does not list, are there
        self.assertEqual({'0000:04:00.0', '0000:04:10.0'},
                         self.xapi_assignable(self.host_name, '8086'))
        self.assertEqual({'0000:04:00.0': ('type-PF', None),
                          '0000:04:10.0': ('type-VF', '0000:04:00.0'),
                          '0000:07:00.0': ('type-PCI', None)},
                         self.tracker_types(self.host_name))
        self.assertEqual({'available'},
                         set(self.tracker(self.host_name).values()))

    def assert_passed_through_and_freed(self, address, attached,
                                        flavor=None):
        """A server boots with ``address`` in its VM's other_config:pci
        (``attached``: xapi's attached_PCIs for it), claimed in the
        tracker; its delete leaves nothing and frees the device."""
        server = self.boot_with_nic(flavor=flavor)
        _, record = self.xapi.vm_of(server['id'])
        self.assertEqual(('0/' + address, 'Running', attached),
                         (record['other_config']['pci'],
                          record['power_state'], record['attached_PCIs']))
        self.assertEqual('allocated', self.tracker(self.host_name)[address])
        self._delete_server(server)
        self.assertEqual(NOTHING, self.xapi.objects_of(server['id']))
        self.assertEqual('available', self.tracker(self.host_name)[address])

    def test_boot_passes_the_claimed_device_through_and_delete_frees_it(self):
        self.assert_passed_through_and_freed(
            '0000:04:00.0', [self.pci_of(self.host_name, '0000:04:00.0')])

    def test_two_servers_compete_for_the_last_device(self):
        first = self.boot_with_nic()
        second = self.boot_with_nic(expected_state='ERROR')
        self.assertIn('No valid host',
                      self.api.get_server(second['id'])['fault']['message'])
        self.assertEqual(NOTHING, self.xapi.objects_of(second['id']))
        _, record = self.xapi.vm_of(first['id'])
        self.assertEqual('Running', record['power_state'])
        # Nova knows the VF's parent: the PF given away, its VF is not
        # available either
        self.assertEqual({'0000:04:00.0': 'allocated',
                          '0000:04:10.0': 'unavailable',
                          '0000:07:00.0': 'available'},
                         self.tracker(self.host_name))

    def test_a_device_of_a_class_xapi_does_not_list_is_passed_through(self):
        # the USB controller: xapi has no PCI object to record it on
        self.assert_passed_through_and_freed(
            '0000:07:00.0', [], flavor=self.flavor_with('usb'))

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

    def test_a_device_xapi_does_not_list_held_outside_nova_is_refused(self):
        self.flags(max_attempts=1, group='scheduler')
        # xapi records no attachment for it: only the other VM's
        # other_config:pci says it is taken
        vm = self.x.VM.create(records.vm_record(
            'not-nova', 64, 1, other_config={'pci': '0/0000:07:00.0'}))
        self.x.VM.start_on(vm, self.host_named(self.host_name), False, False)
        server = self.boot_with_nic(flavor=self.flavor_with('usb'),
                                    expected_state='ERROR')
        fault = self.api.get_server(server['id'])['fault']['message']
        self.assertIn('Spawn failed at step "check the PCI devices"', fault)
        self.assertIn('PCI device 0000:07:00.0 of host %s is passed through '
                      'to VM not-nova already' % self.host_name, fault)
        self.assertEqual(NOTHING, self.xapi.objects_of(server['id']))

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


class PciSriovTest(_PciBase):
    """Two hosts; only the first has an 82599 VF (0000:04:10.0)."""

    xapisim_options = dict(base.XenAPIFunctionalTestCase.xapisim_options,
                           devices=devices_world.spec(), hosts=2)

    def setUp(self):
        super(PciSriovTest, self).setUp()
        hosts = self.xapi.pool['hosts']
        self.flags(host_uuid=hosts[1]['uuid'], group='xenserver')
        self.second = self._start_compute(hosts[1]['name_label'])
        self.first_name = hosts[0]['name_label']

    def test_a_vf_by_alias_lands_on_the_host_that_has_it(self):
        server = self.boot_with_nic(flavor=self.flavor_with('vf'))
        self.assertEqual(self.first_name, server['OS-EXT-SRV-ATTR:host'])
        _, record = self.xapi.vm_of(server['id'])
        self.assertEqual('0/0000:04:10.0', record['other_config']['pci'])
        self.assertEqual(self.host_named(self.first_name),
                         record['resident_on'])
        self.assertEqual([self.pci_of(self.first_name, '0000:04:10.0')],
                         record['attached_PCIs'])
        # its PF cannot be given away while the VF is in use
        self.assertEqual({'0000:04:00.0': 'unavailable',
                          '0000:04:10.0': 'allocated',
                          '0000:07:00.0': 'available'},
                         self.tracker(self.first_name))


class PciInPlacementTest(_PciBase):
    """[pci] report_in_placement: the resource tracker makes a provider per
    device from the driver's report, a VF on its PF's provider."""

    # a PF and its VFs cannot both be in placement: the VFs and the USB
    # controller are configured
    device_spec = [VF, USB]

    def _setup_services(self):
        self.flags(report_in_placement=True, group='pci')
        self.flags(pci_in_placement=True, group='filter_scheduler')
        super(PciInPlacementTest, self)._setup_services()

    def setUp(self):
        super(PciInPlacementTest, self).setUp()
        self.host_name = self.xapi.pool['hosts'][0]['name_label']

    def pci_providers(self):
        """{provider name: (inventory totals, usages)} of the PCI ones."""
        found = {}
        for rp in self._get_all_providers():
            if not rp['name'].startswith(self.host_name + '_0000:'):
                continue
            inventory = self._get_provider_inventory(rp['uuid'])
            found[rp['name']] = (
                {rc: inv['total'] for rc, inv in inventory.items()},
                self._get_provider_usages(rp['uuid']))
        return found

    def xapi_in_use(self):
        """The addresses running VMs of the host hold, as xapi has them
        (``other_config:pci`` of each running VM)."""
        held = set()
        host = self.host_named(self.host_name)
        for vm in self.x.host.get_resident_VMs(host):
            record = self.x.VM.get_record(vm)
            if record['power_state'] == 'Running' and \
                    record['other_config'].get('pci'):
                held.update(e.split('/', 1)[1] for e in
                            record['other_config']['pci'].split(','))
        return held

    def test_providers_and_inventories_come_from_the_report(self):
        self.assertEqual({
            # the VF on the provider of its PF
            self.host_name + '_0000:04:00.0': (
                {'CUSTOM_PCI_8086_10ED': 1}, {'CUSTOM_PCI_8086_10ED': 0}),
            self.host_name + '_0000:07:00.0': (
                {'CUSTOM_PCI_8086_8C31': 1}, {'CUSTOM_PCI_8086_8C31': 0})},
            self.pci_providers())
        rp = self._get_provider_uuid_by_name(self.host_name + '_0000:04:00.0')
        self.assertIn('OWNER_NOVA', self._get_provider_traits(rp))

    def test_boot_and_delete_keep_placement_and_xapi_in_agreement(self):
        vf_rp = self.host_name + '_0000:04:00.0'
        server = self.boot_with_nic(flavor=self.flavor_with('vf'))
        _, record = self.xapi.vm_of(server['id'])
        self.assertEqual('0/0000:04:10.0', record['other_config']['pci'])
        self.assertEqual({'0000:04:10.0'}, self.xapi_in_use())
        providers = self.pci_providers()
        self.assertEqual({'CUSTOM_PCI_8086_10ED': 1}, providers[vf_rp][1])
        allocations = self._get_allocations_by_server_uuid(server['id'])
        self.assertEqual(
            {'CUSTOM_PCI_8086_10ED': 1},
            allocations[self._get_provider_uuid_by_name(vf_rp)]['resources'])
        usb = self._create_server(
            image_uuid=self.image, flavor_id=self.flavor_with('usb'),
            networks=[{'uuid': self.neutron.network_1['id']}])
        self.assertEqual({'0000:04:10.0', '0000:07:00.0'}, self.xapi_in_use())
        self.assertEqual({'CUSTOM_PCI_8086_8C31': 1},
                         self.pci_providers()[
                             self.host_name + '_0000:07:00.0'][1])
        self._delete_server(server)
        self._delete_server(usb)
        self.assertEqual(set(), self.xapi_in_use())
        self.assertEqual({0}, {n for _, usages in
                               self.pci_providers().values()
                               for n in usages.values()})
