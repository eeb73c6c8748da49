"""vGPU through Nova's API and placement: each GPU group of the host is a
child provider of VGPU (xapi, not placement, picks the physical GPU in
the group), a flavor's ``resources:VGPU=1`` gives the VM a VGPU of the
type ``[devices] enabled_mdev_types`` names, and placement's usage is
xapi's.

The simulated host has one Tesla T4 (tests/devices_world.py): two
``GRID T4-8Q`` vGPUs.
"""

from tests import devices_world
from tests.functional import base
from tests.functional.test_boot import pattern
from tests.functional.test_pci import assert_suspend_refused

MIB = 1024 * 1024
NOTHING = {'VM': [], 'VDI': [], 'VBD': [], 'VIF': []}
MODEL = 'GRID T4-8Q'


def _one_gpu():
    spec = devices_world.spec()
    spec['hosts']['xcp-ng-1-1']['pci'] = [
        p for p in spec['hosts']['xcp-ng-1-1']['pci']
        if p['pci_id'] != '0000:82:00.0']
    return spec


class VgpuTest(base.XenAPIFunctionalTestCase):
    xapisim_options = dict(base.XenAPIFunctionalTestCase.xapisim_options,
                           devices=_one_gpu())

    def _setup_services(self):
        self.flags(enabled_mdev_types=[MODEL], group='devices')
        super(VgpuTest, self)._setup_services()

    def setUp(self):
        super(VgpuTest, self).setUp()
        self.x = self.xapi.x
        self.host_name = self.xapi.pool['hosts'][0]['name_label']
        self.image = self.image_with(pattern(MIB, seed=b'vgpu'))
        self.vgpu_flavor = self._create_flavor(
            name='vgpu', memory_mb=256, vcpu=1, disk=1, ephemeral=0,
            extra_spec={'resources:VGPU': '1'})
        group = self.x.GPU_group.get_by_name_label('Tesla T4')[0]
        self.rp_name = '%s_gpu_group_%s_GRID_T4_8Q' % (
            self.host_name, self.x.GPU_group.get_uuid(group))
        self.rp = self._get_provider_uuid_by_name(self.rp_name)

    def boot_with_vgpu(self, expected_state='ACTIVE'):
        return self._create_server(
            image_uuid=self.image, flavor_id=self.vgpu_flavor,
            networks=[{'uuid': self.neutron.network_1['id']}],
            expected_state=expected_state)

    def xapi_vgpus(self):
        """The VGPUs of running VMs, by VM uuid's nova_uuid."""
        found = {}
        for vgpu, record in self.x.VGPU.get_all_records().items():
            vm = self.x.VM.get_record(record['VM'])
            found.setdefault(vm['other_config'].get('nova_uuid'), []).append(
                (self.x.VGPU_type.get_model_name(record['type']),
                 record['currently_attached'],
                 self.x.PGPU.get_host(record['resident_on'])
                 if record['currently_attached'] else None))
        return found

    def test_the_gpu_group_is_a_child_provider_with_the_hosts_capacity(self):
        inventory = self._get_provider_inventory(self.rp)
        self.assertEqual(2, inventory['VGPU']['total'])
        self.assertEqual(0, inventory['VGPU']['reserved'])
        self.assertIn('OWNER_NOVA', self._get_provider_traits(self.rp))
        root = self._get_provider_uuid_by_name(self.host_name)
        self.assertNotIn('VGPU', self._get_provider_inventory(root))

    def test_boot_gets_a_vgpu_placement_agrees_and_delete_frees_it(self):
        server = self.boot_with_vgpu()
        host = self.x.host.get_by_name_label(self.host_name)[0]
        self.assertEqual({server['id']: [(MODEL, True, host)]},
                         self.xapi_vgpus())
        self.assertEqual({'VGPU': 1}, self._get_provider_usages(self.rp))
        self._delete_server(server)
        self.assertEqual(NOTHING, self.xapi.objects_of(server['id']))
        self.assertEqual({}, self.xapi_vgpus())
        self.assertEqual({'VGPU': 0}, self._get_provider_usages(self.rp))

    def test_servers_compete_for_the_last_vgpu(self):
        first = self.boot_with_vgpu()
        second = self.boot_with_vgpu()
        third = self.boot_with_vgpu(expected_state='ERROR')
        self.assertIn('No valid host',
                      self.api.get_server(third['id'])['fault']['message'])
        self.assertEqual(NOTHING, self.xapi.objects_of(third['id']))
        self.assertEqual({first['id'], second['id']}, set(self.xapi_vgpus()))
        self.assertEqual({'VGPU': 2}, self._get_provider_usages(self.rp))

    def test_suspend_is_refused_and_the_server_stays_active(self):
        assert_suspend_refused(self, self.boot_with_vgpu(),
                               'nova-xen does not suspend servers with vGPUs')

    def test_a_refused_vgpu_leaves_nothing(self):
        self.flags(max_attempts=1, group='scheduler')
        self.xapi.control.fail('VGPU.create', ['FEATURE_RESTRICTED'])
        server = self.boot_with_vgpu(expected_state='ERROR')
        fault = self.api.get_server(server['id'])['fault']['message']
        self.assertIn('Spawn failed at step "create the vGPUs"', fault)
        self.assertIn('FEATURE_RESTRICTED', fault)
        self.assertEqual(NOTHING, self.xapi.objects_of(server['id']))
        self.assertEqual({}, self.xapi_vgpus())
        self.assertEqual({'VGPU': 0}, self._get_provider_usages(self.rp))


def _shared_gpu():
    """Host 1's first T4 enabled for both types, its second for 8Q only."""
    spec = devices_world.spec()
    for entry in spec['hosts']['xcp-ng-1-1']['pci']:
        if entry['pci_id'] == '0000:82:00.0':
            entry['gpu']['types'] = ['GRID T4-8Q']
    return spec


class SharedGpuTest(base.XenAPIFunctionalTestCase):
    """With ``GRID T4-4Q, GRID T4-8Q`` enabled, the first T4 counts for 4Q
    only; xapi, picking depth-first among the T4s that enable 8Q, starts
    an 8Q vGPU on it (the host's first): the check after the start
    refuses that, as placement's 8Q provider counts the second T4 only."""
    xapisim_options = dict(base.XenAPIFunctionalTestCase.xapisim_options,
                           devices=_shared_gpu())

    def _setup_services(self):
        self.flags(enabled_mdev_types=['GRID T4-4Q', MODEL],
                   group='devices')
        super(SharedGpuTest, self)._setup_services()

    def test_a_vgpu_xapi_puts_on_a_gpu_counted_for_another_type(self):
        self.flags(max_attempts=1, group='scheduler')
        host = self.xapi.pool['hosts'][0]['name_label']
        group = self.xapi.x.GPU_group.get_by_name_label('Tesla T4')[0]
        rp = self._get_provider_uuid_by_name('%s_gpu_group_%s_GRID_T4_8Q' % (
            host, self.xapi.x.GPU_group.get_uuid(group)))
        self.assertEqual(2, self._get_provider_inventory(rp)['VGPU']['total'])
        flavor = self._create_flavor(
            name='vgpu8', memory_mb=256, vcpu=1, disk=1, ephemeral=0,
            extra_spec={'resources:VGPU': '1',
                        'trait:CUSTOM_VGPU_GRID_T4_8Q': 'required'})
        server = self._create_server(
            image_uuid=self.image_with(pattern(MIB, seed=b'shared')),
            flavor_id=flavor,
            networks=[{'uuid': self.neutron.network_1['id']}],
            expected_state='ERROR')
        fault = self.api.get_server(server['id'])['fault']['message']
        self.assertIn('on a GPU this host reports for another type', fault)
        self.assertEqual(NOTHING, self.xapi.objects_of(server['id']))
        self.assertEqual({}, self.xapi.x.VGPU.get_all_records())
        self.assertEqual({'VGPU': 0}, self._get_provider_usages(rp))
