"""The image cache against sm's storage chains: many servers cloned from
one entry keep one depth; an entry whose chain grows past
[xenserver]image_cache_max_chain_depth, or whose clone sm refuses for its
chain, is retired and the image imported again."""

import uuid as uuidlib

from nova import context as nova_context

from tests.functional import base
from tests.functional.test_boot import pattern

MIB = 1024 * 1024
TOO_LONG = ['SR_BACKEND_FAILURE_109', '', 'The snapshot chain is too long',
            '']


class ChainsTestCase(base.XenAPIFunctionalTestCase):

    def setUp(self):
        super(ChainsTestCase, self).setUp()
        self.data = pattern(MIB + 333, seed=b'chains')
        self.image = self.image_with(self.data)
        self.x = self.xapi.x

    def downloads(self):
        return len([path for verb, path in self.glance_http.requests
                    if verb == 'GET' and path.endswith(
                        '/images/%s/file' % self.image)])

    def root_of(self, server):
        vm, record = self.xapi.vm_of(server['id'])
        return [self.x.VBD.get_VDI(vbd) for vbd in record['VBDs']
                if self.x.VBD.get_userdevice(vbd) == '0'][0]

    def chain(self, vdi):
        """The uuids of the VDI's parents, nearest first, as xapi tells
        them (sm_config vhd-parent)."""
        found = []
        uuid = self.x.VDI.get_sm_config(vdi).get('vhd-parent')
        while uuid:
            found.append(uuid)
            uuid = self.x.VDI.get_sm_config(
                self.x.VDI.get_by_uuid(uuid)).get('vhd-parent')
        return found

    def depth(self, vdi):
        """sm's depth of a VDI's chain: the VDI and each parent."""
        return len(self.chain(vdi)) + 1

    def entries(self):
        """{name: [VDI ref, ...]} of this image's cache entries."""
        found = {}
        for ref in self.xapi.image_cache().get(self.image, []):
            found.setdefault(self.x.VDI.get_name_label(ref), []).append(ref)
        return found

    def boot(self, image_id, **kwargs):
        # no network: nothing here needs one, and each VIF costs a dom0
        # plugin call
        return super(ChainsTestCase, self).boot(image_id, networks='none',
                                                **kwargs)

    def base_of(self, server):
        return self.x.VDI.get_other_config(
            self.root_of(server))['nova_image_base']

    def assert_rebuilt(self, old, server):
        """``old`` was retired, the image imported again, and ``server``
        cloned from the new entry, with the image's bytes."""
        self.assertEqual('nova image retired %s' % self.image,
                         self.x.VDI.get_name_label(old))
        self.assertEqual(2, self.downloads())
        (new,) = self.entries()['nova image cache %s' % self.image]
        self.assertEqual(self.x.VDI.get_uuid(new), self.base_of(server))
        self.assertEqual(self.data, self.xapi.vdi_bytes(
            self.root_of(server), len(self.data)))


class ImageCacheChainTest(ChainsTestCase):
    # room for 40 m1.tiny servers on the one host
    xapisim_options = dict(ChainsTestCase.xapisim_options,
                           vm_memory_mib=24 * 1024, host_cpus=16)

    def boot_many(self, count, name):
        """``count`` servers at once (one multi-create), ACTIVE."""
        self.api.post_server({'server': {
            'name': name, 'imageRef': self.image,
            'flavorRef': self.flavor('m1.tiny')['id'],
            'networks': 'none',
            'min_count': count, 'max_count': count}})
        servers = [s for s in self.api.get_servers(detail=False)
                   if s['name'].startswith(name + '-')]
        self.assertEqual(count, len(servers))
        # each waits for its state, however long a busy machine takes
        return [self._wait_for_server_parameter(s, {'status': 'ACTIVE'},
                                                max_retries=600)
                for s in servers]

    def test_forty_servers_from_one_image_keep_its_depth(self):
        self.flags(instances=-1, cores=-1, ram=-1, group='quota')
        servers = []
        for batch in range(4):
            servers += self.boot_many(10, 'fleet%d' % batch)
        self.assertEqual(40, len(servers))
        self.assertEqual(1, self.downloads())
        (entry,) = self.entries()['nova image cache %s' % self.image]
        roots = [self.root_of(s) for s in servers]
        chains = {tuple(self.chain(root)) for root in roots}
        # every root is the entry's sibling under its one base, as deep
        # as the first server's
        self.assertEqual({tuple(self.chain(entry))}, chains)
        self.assertEqual([2] * 40, [self.depth(root) for root in roots])
        self.assertEqual(self.data,
                         self.xapi.vdi_bytes(roots[-1], len(self.data)))

    def test_an_entry_written_into_is_retired_past_the_bound(self):
        self.flags(image_cache_max_chain_depth=2, group='xenserver')
        first = self.boot(self.image)
        (entry,) = self.entries()['nova image cache %s' % self.image]
        self.assertEqual(2, self.depth(entry))
        # something writes into the cached VDI (past the image's bytes):
        # its next clone adds a level
        self.xapi.control.write_vdi(self.x.VDI.get_uuid(entry),
                                    b'written', offset=len(self.data) + 1)
        second = self.boot(self.image)
        self.assertEqual(3, self.depth(entry))
        self.assertEqual(3, self.depth(self.root_of(second)))
        # 3 deep, past the bound of 2: retired, the image imported again
        third = self.boot(self.image)
        self.assert_rebuilt(entry, third)
        self.assertEqual(2, self.depth(self.root_of(third)))
        for server in (first, second):
            self.assertEqual(self.data, self.xapi.vdi_bytes(
                self.root_of(server), len(self.data)))
        # the retired entry goes with its last clone
        for server in (first, second):
            self._delete_server(server)
        self.compute.driver.manage_image_cache(
            nova_context.get_admin_context(), [])
        self.assertEqual(['nova image cache %s' % self.image],
                         list(self.entries()))

    def test_a_clone_refused_for_its_chain_imports_the_image_again(self):
        self.boot(self.image)
        (old,) = self.entries()['nova image cache %s' % self.image]
        self.xapi.control.fail('VDI.clone', TOO_LONG)
        server = self.boot(self.image)
        self.assert_rebuilt(old, server)


class Qcow2ImageCacheTest(ChainsTestCase):
    """An SR whose VDIs are QCOW2 (XCP-ng's QCOW2 sm): every clone of the
    entry adds a level, so the entry is rebuilt at the bound."""

    def _setup_compute_service(self):
        x = self.xapi.x
        sr = x.SR.introduce(str(uuidlib.uuid4()), 'qcow2 NFS', '', 'nfs',
                            'user', True, {})
        host = x.host.get_by_uuid(self.xapi.pool['hosts'][0]['uuid'])
        pbd = x.PBD.create({'host': host, 'SR': sr, 'other_config': {},
                            'device_config': {
                                'server': 'nfs.example.com',
                                'preferred-image-formats': 'qcow2'}})
        x.PBD.plug(pbd)
        x.SR.add_to_other_config(sr, 'nova-disks', 'qcow2')
        self.flags(sr_matching_filter='other-config:nova-disks=qcow2',
                   group='xenserver')
        return super(Qcow2ImageCacheTest, self)._setup_compute_service()

    def test_the_entry_is_rebuilt_before_its_chain_passes_the_bound(self):
        self.flags(image_cache_max_chain_depth=2, group='xenserver')
        servers = [self.boot(self.image) for _ in range(5)]
        roots = [self.root_of(s) for s in servers]
        self.assertEqual(
            ['qcow2'] * 5,
            [self.x.VDI.get_sm_config(r)['image-format'] for r in roots])
        # the entry cloned at depths 1 and 2, then a new one: 1, 2, again 1
        self.assertEqual([2, 3, 2, 3, 2],
                         [self.depth(root) for root in roots])
        self.assertEqual(3, self.downloads())
        names = self.entries()
        self.assertEqual(2, len(names['nova image retired %s'
                                      % self.image]))
        self.assertEqual(1, len(names['nova image cache %s' % self.image]))
        self.assertEqual(self.data, self.xapi.vdi_bytes(roots[-1],
                                                        len(self.data)))
