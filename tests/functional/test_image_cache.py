"""The image cache: one import per image and SR, a clone per spawn."""

import contextlib
import threading
import time

from nova import context as nova_context
from nova import exception
from nova import objects

from tests.functional import base
from tests.functional.test_boot import pattern

MIB = 1024 * 1024
GIB = 1024 * MIB


class ImageCacheTest(base.XenAPIFunctionalTestCase):

    def setUp(self):
        super(ImageCacheTest, self).setUp()
        self.data = pattern(2 * MIB + 777, seed=b'cached')
        self.image = self.image_with(self.data)
        self.x = self.xapi.x

    def downloads(self, image_id):
        """GETs of the image's bytes that Glance answered."""
        return len([path for verb, path in self.glance_http.requests
                    if verb == 'GET' and path.endswith(
                        '/images/%s/file' % image_id)])

    def root_of(self, server):
        vm, record = self.xapi.vm_of(server['id'])
        return [self.x.VBD.get_VDI(vbd) for vbd in record['VBDs']
                if self.x.VBD.get_userdevice(vbd) == '0'][0]

    def entry(self):
        (refs,) = self.xapi.image_cache().values()
        self.assertEqual(1, len(refs))
        return refs[0], self.x.VDI.get_record(refs[0])

    def test_second_spawn_clones_the_cached_image(self):
        first = self.boot(self.image)
        self.assertEqual(1, self.downloads(self.image))
        ref, entry = self.entry()
        self.assertEqual('nova image cache %s' % self.image,
                         entry['name_label'])
        self.assertEqual([], entry['VBDs'])
        self.xapi.control.reset_calls()
        second = self.boot(self.image, flavor='m1.small')
        # no second download, no import, no new disk but the clone
        self.assertEqual(1, self.downloads(self.image))
        calls = self.xapi.control.calls()
        self.assertEqual(1, calls.get('VDI.clone'))
        self.assertNotIn('VDI.create', calls)
        for server, flavor in ((first, 'm1.tiny'), (second, 'm1.small')):
            root = self.root_of(server)
            record = self.x.VDI.get_record(root)
            self.assertEqual(entry['uuid'],
                             record['other_config']['nova_image_base'])
            self.assertEqual(server['id'],
                             record['other_config']['nova_uuid'])
            self.assertEqual(str(self.flavor(flavor)['disk'] * GIB),
                             record['virtual_size'])
            self.assertEqual(self.data,
                             self.xapi.vdi_bytes(root, len(self.data)))
        # a guest's writes stay in its own disk
        self._delete_server(first)
        self._delete_server(second)
        self.assertEqual([ref], self.xapi.image_cache()[self.image])
        self.assertEqual(self.data, self.xapi.vdi_bytes(ref, len(self.data)))

    def test_concurrent_first_spawns_download_once(self):
        flavor_id = self.flavor('m1.tiny')['id']
        server = self.api.post_server({'server': {
            'name': 'many', 'imageRef': self.image, 'flavorRef': flavor_id,
            'networks': [{'uuid': self.neutron.network_1['id']}],
            'min_count': 3, 'max_count': 3}})
        servers = [s for s in self.api.get_servers(detail=False)
                   if s['name'].startswith('many')]
        self.assertEqual(3, len(servers), server)
        for s in servers:
            self._wait_for_state_change(self.api.get_server(s['id']),
                                        'ACTIVE')
        self.assertEqual(1, self.downloads(self.image))
        ref, entry = self.entry()
        for s in servers:
            root = self.x.VDI.get_record(self.root_of(s))
            self.assertEqual(entry['uuid'],
                             root['other_config']['nova_image_base'])

    def test_unused_images_go_after_nova_s_age(self):
        self.flags(remove_unused_original_minimum_age_seconds=3600,
                   group='image_cache')
        server = self.boot(self.image)
        ref, _ = self.entry()
        driver = self.compute.driver
        driver.manage_image_cache(self.ctx(), [])
        self.assertNotIn('nova_image_unused_since',
                         self.x.VDI.get_other_config(ref))
        self._delete_server(server)
        # first pass: marked unused, kept
        driver.manage_image_cache(self.ctx(), [])
        since = int(self.x.VDI.get_other_config(ref)[
            'nova_image_unused_since'])
        self.assertAlmostEqual(time.time(), since, delta=30)
        # used again before its age: the mark goes
        server = self.boot(self.image)
        driver.manage_image_cache(self.ctx(), [])
        self.assertNotIn('nova_image_unused_since',
                         self.x.VDI.get_other_config(ref))
        self._delete_server(server)
        driver.manage_image_cache(self.ctx(), [])
        self.assertEqual([ref], self.xapi.image_cache()[self.image])
        # past its age: removed
        self.x.VDI.remove_from_other_config(ref, 'nova_image_unused_since')
        self.x.VDI.add_to_other_config(ref, 'nova_image_unused_since',
                                       str(int(time.time()) - 3601))
        driver.manage_image_cache(self.ctx(), [])
        self.assertEqual({}, self.xapi.image_cache())
        # and the next spawn imports it again
        self.boot(self.image)
        self.assertEqual(2, self.downloads(self.image))

    def test_nothing_is_removed_when_nova_says_keep(self):
        self.flags(remove_unused_base_images=False, group='image_cache')
        server = self.boot(self.image)
        self._delete_server(server)
        for _ in range(2):
            self.compute.driver.manage_image_cache(self.ctx(), [])
        ref, _ = self.entry()
        self.assertNotIn('nova_image_unused_since',
                         self.x.VDI.get_other_config(ref))

    def test_an_image_deleted_in_glance_is_never_served_again(self):
        server = self.boot(self.image)
        ref, _ = self.entry()
        self.glance.delete(self.ctx(), self.image)
        instance = objects.Instance.get_by_uuid(self.ctx(), server['id'])
        cache = self.compute.driver._cache
        with self.assertRaises(exception.ImageNotFound):
            cache.root_disk(self._user_ctx(), instance, _meta(self.image),
                            self.compute.driver._sr, GIB, _Undo(), _step)
        self.assertEqual('nova image retired %s' % self.image,
                         self.x.VDI.get_name_label(ref))
        # in use: kept while its clone lives, then removed at once
        self.compute.driver.manage_image_cache(self.ctx(), [])
        self.assertEqual([ref], self.xapi.image_cache()[self.image])
        self._delete_server(server)
        self.compute.driver.manage_image_cache(self.ctx(), [])
        self.assertEqual({}, self.xapi.image_cache())

    def test_an_entry_whose_checksum_differs_is_not_used(self):
        self.boot(self.image)
        old, _ = self.entry()
        # the entry holds another checksum than Glance's (an entry made
        # from other bytes), found by a compute that did not make it
        self.x.VDI.remove_from_other_config(old, 'nova_image_checksum')
        self.x.VDI.add_to_other_config(old, 'nova_image_checksum',
                                       'sha512:0000')
        self.compute.driver._cache._known.clear()
        second = self.boot(self.image)
        self.assertEqual(2, self.downloads(self.image))
        self.assertEqual('nova image retired %s' % self.image,
                         self.x.VDI.get_name_label(old))
        new = [ref for ref in self.xapi.image_cache()[self.image]
               if ref != old]
        self.assertEqual(self.x.VDI.get_uuid(new[0]),
                         self.x.VDI.get_other_config(
                             self.root_of(second))['nova_image_base'])

    def test_a_failed_clone_leaves_the_cache_and_nothing_else(self):
        self.flags(max_attempts=1, group='scheduler')
        self.boot(self.image)
        before = self.xapi.vdis_besides_the_cache()
        self.xapi.control.fail('VDI.resize', ['SR_FULL', '1', '0'])
        server = self.boot(self.image, flavor='m1.small',
                           expected_state='ERROR')
        fault = self.api.get_server(server['id'])['fault']['message']
        self.assertIn('Spawn failed at step "grow the root disk"', fault)
        self.assertEqual({'VM': [], 'VDI': [], 'VBD': [], 'VIF': []},
                         self.xapi.objects_of(server['id']))
        self.assertEqual(before, self.xapi.vdis_besides_the_cache())
        self.entry()

    def test_a_clone_waits_for_another_compute_s_clone(self):
        # xapi clones a VDI once at a time: a clone by another compute of
        # the pool (sharing the SR) is waited out, not a failed build
        self.boot(self.image)
        self.xapi.control.reset_calls()
        self.xapi.control.fail('VDI.clone', ['OTHER_OPERATION_IN_PROGRESS',
                                             'VDI', 'OpaqueRef:x', 'clone',
                                             'OpaqueRef:y'], times=2)
        self.boot(self.image)
        self.assertEqual(3, self.xapi.control.calls()['VDI.clone'])
        self.assertEqual(1, self.downloads(self.image))

    def test_an_entry_removed_by_another_compute_is_imported_again(self):
        self.boot(self.image)
        ref, _ = self.entry()
        # another nova-compute of the pool (same SR) removed it
        self.x.VDI.destroy(ref)
        server = self.boot(self.image)
        self.assertEqual(2, self.downloads(self.image))
        new, record = self.entry()
        self.assertEqual(record['uuid'], self.x.VDI.get_other_config(
            self.root_of(server))['nova_image_base'])

    def test_a_fresh_clone_is_never_taken_for_the_entry(self):
        # xapi copies a VDI's name and other_config into its clones: until
        # a spawn (here, or on another compute of the pool) renames and
        # re-tags its clone, the clone looks like the cache entry
        self.boot(self.image)
        ref, entry = self.entry()
        driver = self.compute.driver
        clones = [self.x.VDI.clone(ref, {}) for _ in range(4)]
        for clone in clones:
            self.assertEqual(entry['name_label'],
                             self.x.VDI.get_name_label(clone))
        driver._cache._known.clear()
        server = self.boot(self.image)
        self.assertEqual(entry['uuid'], self.x.VDI.get_other_config(
            self.root_of(server))['nova_image_base'])
        self.assertEqual(1, self.downloads(self.image))
        # nor does Nova's periodic pass treat them as entries
        self.flags(remove_unused_original_minimum_age_seconds=0,
                   group='image_cache')
        driver.manage_image_cache(self.ctx(), [])
        driver.manage_image_cache(self.ctx(), [])
        for clone in clones:
            self.assertNotIn('nova_image_unused_since',
                             self.x.VDI.get_other_config(clone))
            self.x.VDI.destroy(clone)

    def test_a_failed_import_leaves_no_entry(self):
        self.flags(max_attempts=1, group='scheduler')
        self.xapi.control.fail('host.call_plugin', ['INTERNAL_ERROR', 'x'])
        server = self.boot(self.image, expected_state='ERROR')
        self.assertIn('import the image',
                      self.api.get_server(server['id'])['fault']['message'])
        self.assertEqual({}, self.xapi.image_cache())
        # the next spawn imports it
        self.boot(self.image)
        self.entry()

    def test_cache_off_imports_each_time(self):
        self.flags(cache_images='none', group='xenserver')
        self.boot(self.image)
        self.boot(self.image)
        self.assertEqual(2, self.downloads(self.image))
        self.assertEqual({}, self.xapi.image_cache())

    def test_some_caches_only_images_that_ask_for_it(self):
        self.flags(cache_images='some', group='xenserver')
        other = self.image_with(pattern(MIB, seed=b'asks'),
                                properties={'cache_in_nova': 'true'})
        self.boot(self.image)
        self.boot(other)
        self.assertEqual([other], list(self.xapi.image_cache()))

    def test_images_are_cached_ahead_through_the_aggregate_api(self):
        agg = self.admin_api.post_aggregate(
            {'aggregate': {'name': 'pool-a'}})
        self.admin_api.add_host_to_aggregate(agg['id'], self.compute.host)
        self.admin_api.api_post(
            '/os-aggregates/%s/images' % agg['id'],
            {'cache': [{'id': self.image}]}, check_response_status=[202])
        self.poll(self.xapi.image_cache, 'the image cached ahead')
        ref, _ = self.entry()
        self.assertEqual(1, self.downloads(self.image))
        self.boot(self.image)
        self.assertEqual(1, self.downloads(self.image))

    def test_spawns_wait_for_one_import(self):
        # two spawns of a new image at once in this nova-compute: one
        # import, the other waits for it and clones
        cache = self.compute.driver._cache
        sr = self.compute.driver._sr
        meta = _meta(self.image)
        results = []
        instances = []
        for _ in range(2):
            server = self.boot(self.image_with(b'x' * 4096))
            instances.append(objects.Instance.get_by_uuid(self.ctx(),
                                                          server['id']))

        def spawn(instance):
            undo = _Undo()
            results.append(cache.root_disk(self._user_ctx(), instance, meta,
                                           sr, GIB, undo, _step))
        threads = [threading.Thread(target=spawn, args=(i,))
                   for i in instances]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(2, len(results))
        self.assertEqual(1, self.downloads(self.image))
        for vdi in results:
            self.x.VDI.destroy(vdi)

    # -- helpers -----------------------------------------------------------

    def ctx(self):
        return nova_context.get_admin_context()

    def _user_ctx(self):
        ctx = nova_context.get_admin_context()
        ctx.auth_token = self.glance_http.token
        return ctx


def _meta(image_id):
    return objects.ImageMeta.from_dict({
        'id': image_id, 'disk_format': 'raw', 'container_format': 'bare',
        'size': 2 * MIB + 777})


class _Undo(object):
    def __init__(self):
        self.vdis = []


def _step(name):
    return contextlib.nullcontext()
