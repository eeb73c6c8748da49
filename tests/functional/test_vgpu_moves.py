"""Resize and cold migration of vGPU servers through Nova's API: in a pool
(the same VGPU types on another host, another type, from and to flavors
without vGPU) and to another pool; revert, confirm, a failure at the
destination's vGPU step, two servers competing for the destination's
last vGPU.  After each, placement's usage of each (host, GPU group,
type) provider is the number of xapi's VGPUs there: a running VM's on
the pGPU xapi picked, a halted VM's (an original kept for a revert) on
its affinity host.

The world: pool 1 with hosts xcp-ng-1-1 (a Tesla T4 enabled for GRID
T4-4Q, four of them, and one for GRID T4-8Q, two) and xcp-ng-1-2 (a T4
for 8Q); pool 2 with xcp-ng-2-1 (a T4 for 8Q).
"""

from xapisim.client import Control

from tests import devices_world
from tests.functional import base
from tests.functional import test_leftovers
from tests.functional.test_boot import pattern
from tests.functional.test_resize import tagged

MIB = 1024 * 1024
Q4, Q8 = 'GRID T4-4Q', 'GRID T4-8Q'


def _world():
    spec = devices_world.spec()
    t4 = devices_world._t4
    spec['hosts'] = {
        'xcp-ng-1-1': {'pci': [t4('0000:81:00.0'), t4('0000:82:00.0')]},
        'xcp-ng-1-2': {'pci': [t4('0000:81:00.0')]},
        'xcp-ng-2-1': {'pci': [t4('0000:81:00.0')]}}
    for host, address, model in (('xcp-ng-1-1', '0000:81:00.0', Q4),
                                 ('xcp-ng-1-1', '0000:82:00.0', Q8),
                                 ('xcp-ng-1-2', '0000:81:00.0', Q8),
                                 ('xcp-ng-2-1', '0000:81:00.0', Q8)):
        for entry in spec['hosts'][host]['pci']:
            if entry['pci_id'] == address:
                entry['gpu']['types'] = [model]
    return spec


def _slug(model):
    return model.replace(' ', '_').replace('-', '_')


class VgpuMoveTest(test_leftovers.Reclaiming, base.XenAPIFunctionalTestCase):
    xapisim_options = dict(base.XenAPIFunctionalTestCase.xapisim_options,
                           pools=2, hosts=2, devices=_world())
    # casts stay casts, as between real services (test_resize.py)
    CAST_AS_CALL = False

    def _setup_services(self):
        self.flags(enabled_mdev_types=[Q8, Q4], group='devices')
        super(VgpuMoveTest, self)._setup_services()

    def setUp(self):
        super(VgpuMoveTest, self).setUp()
        self.flags(allow_resize_to_same_host=True)
        pools = self.xapi.world['pools']
        self.x = self.xapi.x
        self.y = self.xapi.login(pools[1]['master']).xenapi
        self.flags(host_uuid=pools[0]['hosts'][1]['uuid'], group='xenserver')
        self._start_compute('xcp-ng-1-2')
        self.flags(connection_url=pools[1]['master'],
                   host_uuid=pools[1]['hosts'][0]['uuid'], group='xenserver')
        self._start_compute('xcp-ng-2-1')
        self.image = self.image_with(pattern(MIB, seed=b'vgpu-moves'))
        self.flavors = {}
        for name, spec in (
                ('q8', {'resources:VGPU': '1',
                        'trait:CUSTOM_VGPU_GRID_T4_8Q': 'required'}),
                ('q4', {'resources:VGPU': '1',
                        'trait:CUSTOM_VGPU_GRID_T4_4Q': 'required'}),
                ('q8.big', {'resources:VGPU': '1',
                            'trait:CUSTOM_VGPU_GRID_T4_8Q': 'required'}),
                ('plain', {})):
            self.flavors[name] = self._create_flavor(
                name=name, memory_mb=512 if name == 'q8.big' else 256,
                vcpu=1, disk=1, ephemeral=0, extra_spec=spec)
        # every vGPU provider of the three computes, by name
        self.providers = {}
        for x, host in ((self.x, 'xcp-ng-1-1'), (self.x, 'xcp-ng-1-2'),
                        (self.y, 'xcp-ng-2-1')):
            group = x.GPU_group.get_by_name_label('Tesla T4')[0]
            for model in (Q8, Q4):
                name = self.provider(host, x.GPU_group.get_uuid(group),
                                     model)
                found = self.placement.get(
                    '/resource_providers?name=' + name).body[
                    'resource_providers']
                if found:
                    self.providers[name] = found[0]['uuid']
        self.assertEqual(4, len(self.providers), self.providers)

    @staticmethod
    def provider(host, group_uuid, model):
        return '%s_gpu_group_%s_%s' % (host, group_uuid, _slug(model))

    def provider_at(self, host, model):
        x = self.y if host.startswith('xcp-ng-2-') else self.x
        group = x.GPU_group.get_by_name_label('Tesla T4')[0]
        return self.provider(host, x.GPU_group.get_uuid(group), model)

    # -- what each side says ---------------------------------------------

    def placement_usage(self):
        """{provider name: VGPUs used} of the providers in use."""
        found = {}
        for name, uuid in self.providers.items():
            used = self._get_provider_usages(uuid).get('VGPU', 0)
            if used:
                found[name] = used
        return found

    def xapi_usage(self):
        """{provider name: VGPUs} from both pools' VGPUs."""
        found = {}
        for x in (self.x, self.y):
            for record in x.VGPU.get_all_records().values():
                if record['currently_attached']:
                    host = x.PGPU.get_host(record['resident_on'])
                else:
                    host = x.VM.get_affinity(record['VM'])
                name = self.provider(
                    x.host.get_name_label(host),
                    x.GPU_group.get_uuid(record['GPU_group']),
                    x.VGPU_type.get_model_name(record['type']))
                found[name] = found.get(name, 0) + 1
        return found

    def assert_agree(self):
        self.assertEqual(self.placement_usage(), self.xapi_usage())

    def vgpus_of(self, server, x=None):
        """[(host, pGPU address, model, attached)] of the server's VM."""
        x = x or self.x
        vm = tagged(x, server['id'], ('nova_uuid',))['VM']
        self.assertEqual(1, len(vm), vm)
        found = []
        for vgpu in x.VM.get_VGPUs(vm[0]):
            record = x.VGPU.get_record(vgpu)
            pgpu = record['resident_on']
            found.append((
                x.host.get_name_label(x.PGPU.get_host(pgpu)),
                x.PCI.get_pci_id(x.PGPU.get_PCI(pgpu)),
                x.VGPU_type.get_model_name(record['type']),
                record['currently_attached']))
        return found

    def original_vgpus(self, server, x=None):
        x = x or self.x
        return [x.VGPU_type.get_model_name(x.VGPU.get_type(vgpu))
                for vm in tagged(x, server['id'], ('nova_resize_of',))['VM']
                for vgpu in x.VM.get_VGPUs(vm)]

    def boot(self, flavor, host, expected_state='ACTIVE'):
        return self._create_server(
            image_uuid=self.image, flavor_id=self.flavors[flavor],
            networks=[{'uuid': self.neutron.network_1['id']}], host=host,
            expected_state=expected_state)

    def resize(self, server, flavor, state='VERIFY_RESIZE'):
        self.api.post_server_action(
            server['id'], {'resize': {'flavorRef': self.flavors[flavor]}})
        return self._wait_for_state_change(server, state)

    def revert(self, server):
        self.api.post_server_action(server['id'], {'revertResize': None})
        server = self._wait_for_state_change(server, 'ACTIVE')
        self._wait_for_migration_status(server, ['reverted'])
        # the source's finish_revert_resize gives the allocation back
        self._wait_for_instance_action_event(
            server, 'revertResize', 'compute_finish_revert_resize',
            'success')
        return server

    # -- the tests ---------------------------------------------------------

    def test_each_gpu_group_and_type_of_a_host_is_a_provider(self):
        for host, model, total in (('xcp-ng-1-1', Q4, 4),
                                   ('xcp-ng-1-1', Q8, 2),
                                   ('xcp-ng-1-2', Q8, 2),
                                   ('xcp-ng-2-1', Q8, 2)):
            uuid = self.providers[self.provider_at(host, model)]
            self.assertEqual(total, self._get_provider_inventory(uuid)[
                'VGPU']['total'])
            self.assertEqual(
                {'OWNER_NOVA', 'CUSTOM_VGPU_' + _slug(model).upper()},
                set(self._get_provider_traits(uuid)))

    def test_delete_while_verifying_frees_both_sides(self):
        server = self.boot('q8', 'xcp-ng-1-1')
        server = self._migrate_server(server, host='xcp-ng-2-1')
        self.assert_agree()
        self._delete_server(server)
        self.assertEqual({'VM': [], 'VDI': []}, tagged(self.y, server['id']))
        # Nova confirms the resize on the source first (a cast)
        self.eventually(lambda: tagged(self.x, server['id']) == {
            'VM': [], 'VDI': []}, what='the original removed')
        self.assertEqual({}, self.placement_usage())
        self.assert_agree()

    def test_resize_in_the_pool_to_another_vgpu_type_then_confirm(self):
        server = self.boot('q8', 'xcp-ng-1-2')
        self.assertEqual([('xcp-ng-1-2', '0000:81:00.0', Q8, True)],
                         self.vgpus_of(server))
        self.assert_agree()
        # only xcp-ng-1-1 has 4Q vGPUs: on its first T4
        server = self.resize(server, 'q4')
        self.assertEqual('xcp-ng-1-1', server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual([('xcp-ng-1-1', '0000:81:00.0', Q4, True)],
                         self.vgpus_of(server))
        # the original, halted, keeps its 8Q for a revert; placement keeps
        # the source's allocation for it
        self.assertEqual([Q8], self.original_vgpus(server))
        self.assert_agree()
        self._confirm_resize(server)
        self.assertEqual([], self.original_vgpus(server))
        self.assertEqual({self.provider_at('xcp-ng-1-1', Q4): 1},
                         self.placement_usage())
        self.assert_agree()

    def test_cold_migration_in_the_pool_then_revert(self):
        server = self.boot('q8', 'xcp-ng-1-1')
        self.assertEqual([('xcp-ng-1-1', '0000:82:00.0', Q8, True)],
                         self.vgpus_of(server))
        server = self._migrate_server(server, host='xcp-ng-1-2')
        self.assertEqual([('xcp-ng-1-2', '0000:81:00.0', Q8, True)],
                         self.vgpus_of(server))
        self.assert_agree()
        server = self.revert(server)
        self.assertEqual('xcp-ng-1-1', server['OS-EXT-SRV-ATTR:host'])
        # the original's own vGPU runs again on the source's 8Q pGPU
        self.assertEqual([('xcp-ng-1-1', '0000:82:00.0', Q8, True)],
                         self.vgpus_of(server))
        self.assertEqual({self.provider_at('xcp-ng-1-1', Q8): 1},
                         self.placement_usage())
        self.assert_agree()

    def test_cold_migration_to_the_other_pool_then_confirm(self):
        server = self.boot('q8', 'xcp-ng-1-1')
        server = self._migrate_server(server, host='xcp-ng-2-1')
        self.assertEqual([('xcp-ng-2-1', '0000:81:00.0', Q8, True)],
                         self.vgpus_of(server, self.y))
        # no clone (nor its vGPU) left in the source pool
        self.assertEqual([], tagged(self.x, server['id'],
                                    ('nova_resize_transfer',))['VM'])
        self.assertEqual([Q8], self.original_vgpus(server))
        self.assert_agree()
        self._confirm_resize(server)
        self.assertEqual({'VM': [], 'VDI': []}, tagged(self.x, server['id']))
        self.assertEqual({self.provider_at('xcp-ng-2-1', Q8): 1},
                         self.placement_usage())
        self.assert_agree()

    def test_resize_to_and_from_a_flavor_without_vgpu(self):
        server = self.boot('q8', 'xcp-ng-1-1')
        server = self.resize(server, 'plain')
        self.assertEqual([], self.vgpus_of(
            server, self.y if server['OS-EXT-SRV-ATTR:host'] ==
            'xcp-ng-2-1' else self.x))
        self.assert_agree()
        server = self._confirm_resize(server)
        self.assertEqual({}, self.placement_usage())
        self.assert_agree()
        # back to a vGPU: 4Q, which only xcp-ng-1-1 has
        server = self.resize(server, 'q4')
        self.assertEqual([('xcp-ng-1-1', '0000:81:00.0', Q4, True)],
                         self.vgpus_of(server))
        self.assert_agree()
        server = self.revert(server)
        self.assertEqual({}, self.placement_usage())
        self.assert_agree()
        self.assertEqual([], self.vgpus_of(
            server, self.y if server['OS-EXT-SRV-ATTR:host'] ==
            'xcp-ng-2-1' else self.x))

    def test_a_failed_vgpu_at_the_destination_leaves_nothing(self):
        server = self.boot('q8', 'xcp-ng-1-1')
        self.xapi.control.fail('VGPU.create', ['FEATURE_RESTRICTED'])
        self.api.post_server_action(server['id'],
                                    {'migrate': {'host': 'xcp-ng-1-2'}})
        server = self._wait_for_state_change(server, 'ERROR')
        fault = server['fault']['message']
        self.assertIn('at step "create the vGPUs"', fault)
        self.assertIn('FEATURE_RESTRICTED', fault)
        # nothing of the destination's VM; the original kept (hidden) lost
        # its vGPU with the source's allocation, which Nova dropped
        self.assertEqual({'VM': [], 'VDI': []},
                         tagged(self.x, server['id'], ('nova_uuid',)))
        self.assertEqual([], self.original_vgpus(server))
        self.assertEqual({}, self.xapi_usage())
        # Nova keeps the allocation on the destination of a failed finish
        # (a hard reboot there would use it): the only disagreement, gone
        # with the server
        self.assertEqual({self.provider_at('xcp-ng-1-2', Q8): 1},
                         self.placement_usage())
        self._delete_server(server)
        self.assertEqual({'VM': [], 'VDI': []}, tagged(self.x, server['id']))
        self.assertEqual({}, self.placement_usage())
        self.assert_agree()

    def test_a_failed_vgpu_in_the_other_pool_leaves_nothing(self):
        server = self.boot('q8', 'xcp-ng-1-1')
        pool = self.xapi.world['pools'][1]
        Control(pool['master'], self.xapi.username, self.xapi.password,
                ca_file=self.xapi.ca_file).fail('VGPU.create',
                                                ['FEATURE_RESTRICTED'])
        self.api.post_server_action(server['id'],
                                    {'migrate': {'host': 'xcp-ng-2-1'}})
        server = self._wait_for_state_change(server, 'ERROR')
        self.assertIn('at step "create the vGPUs"',
                      server['fault']['message'])
        self.assertEqual({'VM': [], 'VDI': []}, tagged(self.y, server['id']))
        self.assertEqual([], self.original_vgpus(server))
        self.assertEqual({}, self.xapi_usage())
        self._delete_server(server)
        # no call reaches the source pool: its reclaimer removes the
        # original (resize.py)
        self.eventually(lambda: tagged(self.x, server['id']) == {
            'VM': [], 'VDI': []}, what='the original removed')
        self.assertEqual({'VM': [], 'VDI': []}, tagged(self.y, server['id']))
        self.assertEqual({}, self.placement_usage())
        self.assert_agree()

    def test_two_servers_compete_for_the_last_vgpu_of_the_destination(self):
        # xcp-ng-1-2 has two 8Q vGPUs: one is taken
        self.boot('q8', 'xcp-ng-1-2')
        first = self.boot('q8', 'xcp-ng-1-1')
        second = self.boot('q8', 'xcp-ng-1-1')
        for server in (first, second):
            self.api.post_server_action(server['id'],
                                        {'migrate': {'host': 'xcp-ng-1-2'}})

        def settled():
            found = {}
            for server in (first, second):
                migrations = [
                    m for m in self.api.api_get('/os-migrations').body[
                        'migrations'] if m['instance_uuid'] == server['id']]
                status = migrations[0]['status'] if migrations else None
                state = self.api.get_server(server['id'])['status']
                if (status, state) not in (('finished', 'VERIFY_RESIZE'),
                                           ('error', 'ACTIVE')):
                    return None
                found[server['id']] = state
            return found
        states = self.poll(settled, 'both migrations to end')
        self.assertEqual(['ACTIVE', 'VERIFY_RESIZE'],
                         sorted(states.values()))
        winner, loser = sorted(
            (first, second), key=lambda s: states[s['id']] == 'ACTIVE')
        self.assertEqual([('xcp-ng-1-2', '0000:81:00.0', Q8, True)],
                         self.vgpus_of(winner))
        # the loser runs on as it was, with its vGPU
        self.assertEqual([('xcp-ng-1-1', '0000:82:00.0', Q8, True)],
                         self.vgpus_of(loser))
        self.assertEqual({self.provider_at('xcp-ng-1-2', Q8): 2,
                          self.provider_at('xcp-ng-1-1', Q8): 2},
                         self.placement_usage())
        self.assert_agree()
