"""Images cached on storage repositories as base VDIs, cloned per spawn.

The first spawn of an image on an SR imports it once into a VDI of its
own (``nova image cache <image id>``, tagged ``nova_image_cache``); every
spawn of that image on that SR clones it (copy-on-write on XCP-ng's VHD
SRs: the clone shares the base's blocks) and grows the clone to its
flavor.  The clone carries ``nova_image_base`` (the cache VDI's uuid): a
cached image is in use while a VDI with its uuid there exists, whichever
compute of the pool made it.

* An entry is being imported while its name is ``nova image import ...``;
  only a renamed (finished) entry is ever cloned.  Spawns of one image on
  one SR in this nova-compute wait for one import; two computes sharing
  an SR may each import once (the spare goes as unused).
* Each hit asks Glance for the image with the user's token: an image
  deleted in Glance, or whose checksum changed, is never served again (its
  entry is renamed ``nova image retired ...`` and removed once unused).
* ``manage_image_cache`` (Nova's periodic pass) marks unused entries and
  removes them after ``[image_cache]remove_unused_original_minimum_age_
  seconds``; it also removes imports that a crash interrupted.

xapi's SRs keep what clones share: destroying a cached VDI whose clones
still exist leaves its data as the clones' hidden parent until the last
clone goes (the SR's garbage collector then coalesces or frees it), so
a removed entry never holds space beyond its last user; a snapshot of an
instance hangs off the instance's own chain, not off the cache entry.

Storage chains.  sm refuses to clone or snapshot a VDI whose chain (the
VDI and its parents, ``sm_config['vhd-parent']``) is 30 deep.  On VHD SRs
the clones of a never-written entry are siblings under one base and its
chain keeps its depth (2); something writing into the entry adds a level
at its next clone, and on QCOW2 SRs every clone adds one.  Before a clone
the entry's depth is checked: an entry deeper than
``[xenserver]image_cache_max_chain_depth`` is retired and the image
imported again, and so is one whose clone sm refuses for its chain
(``SR_BACKEND_FAILURE_109``).  The chain changes only where the entry's
own parent changes (a clone that made a base, sm's coalescing), so a
spawn reads the entry's sm_config (one call) and walks the parents only
when that parent is not the one seen before.
"""

import collections
import threading
import time

from nova import exception
from oslo_log import log as logging

from nova_xen.conf import CONF
from nova_xen import errors
from nova_xen import images
from nova_xen import reclaim
from nova_xen import storage
from nova_xen import vmops

LOG = logging.getLogger(__name__)

GIB = 1024 ** 3
CLONE_WAIT = 60.0     # seconds a clone waits for another one to finish

KEY = 'nova_image_cache'           # image id, on cache VDIs only
BASE = 'nova_image_base'           # on clones: the cache VDI's uuid
CHECKSUM = 'nova_image_checksum'
SIZE = 'nova_image_virtual_size'   # the image's size ('0': not known)
STARTED = 'nova_image_import_started'
UNUSED = 'nova_image_unused_since'
# on a cache VDI: its own uuid.  xapi copies name and other_config into a
# clone, so a spawn's fresh clone looks like the entry until the spawn
# renames and re-tags it: only the VDI whose uuid this names is the entry
SELF = 'nova_image_cache_vdi'

CACHED = 'nova image cache %s'
IMPORTING = 'nova image import %s'
RETIRED = 'nova image retired %s'

PARENT = 'vhd-parent'                        # in sm_config: the parent's uuid
CHAIN_TOO_LONG = 'SR_BACKEND_FAILURE_109'    # sm's SnapshotChainTooLong


def glance_checksum(record):
    """What identifies an image's bytes in Glance (multihash, else md5)."""
    if record.get('os_hash_value'):
        return '%s:%s' % (record.get('os_hash_algo') or 'sha512',
                          record['os_hash_value'])
    return 'md5:%s' % (record.get('checksum') or '')


def wanted(record):
    """Whether [xenserver]cache_images caches this image."""
    mode = CONF.xenserver.cache_images
    if mode == 'all':
        return True
    if mode == 'some':
        flag = (record.get('properties') or {}).get('cache_in_nova')
        return str(flag).lower() in ('true', '1', 'yes')
    return False


class ImageCache(object):
    def __init__(self, session, host, handler):
        self.session = session
        self.host = host
        self.images = handler
        self._guard = threading.Lock()
        self._locks = collections.defaultdict(threading.Lock)
        # (image id, SR) -> (ref, record) of entries found or made here:
        # no lookup per spawn (a clone of one removed since finds out)
        self._known = {}
        # entry ref -> the uuids of its parents, nearest first, as last read
        self._chains = {}

    # -- spawn -------------------------------------------------------------

    def root_disk(self, context, instance, image_meta, sr, root_size, undo,
                  step, again=True):
        """The root VDI of a new instance, cloned from the cached image and
        grown to ``root_size``; None if this image is not to be cached or
        the entry cannot serve this flavor (the caller imports it)."""
        with step('check the image'):
            try:
                record = images.glance_record(context, image_meta.id)
                if record.get('status') in ('deleted', 'killed',
                                            'pending_delete'):
                    raise exception.ImageNotFound(image_id=image_meta.id)
            except exception.ImageNotFound:
                # gone from Glance: its cached copy is never served again
                self._find(sr, image_meta.id, None)
                raise
            if not wanted(record):
                return None
            checksum = glance_checksum(record)
            entry = self._known.get((image_meta.id, sr))
            fresh = entry is None or \
                entry[1]['other_config'].get(CHECKSUM) != checksum
            if fresh:
                entry = self._find(sr, image_meta.id, checksum)
            if entry is not None and \
                    not self._shallow(entry, image_meta.id, fresh):
                entry = None
        if entry is None:
            with self._lock(image_meta.id, sr):
                # another spawn may have imported it while we waited
                entry = self._find(sr, image_meta.id, checksum)
                if entry is not None and \
                        not self._shallow(entry, image_meta.id, True):
                    entry = None
                if entry is None:
                    entry = self._import(context, instance, image_meta, sr,
                                         checksum, undo, step)
        else:
            images.check_size(instance, image_meta.id,
                              int(entry[1]['other_config'].get(SIZE) or 0))
        ref, rec = entry
        root_size = max(root_size, int(rec['other_config'].get(SIZE) or 0))
        if int(rec['virtual_size']) > root_size:
            LOG.info('the cached image %s is larger than this flavor\'s root '
                     'disk: importing it for this instance alone',
                     image_meta.id, instance=instance)
            return None
        with step('clone the cached image'):
            try:
                root = self._clone(ref, image_meta.id, sr)
            except exception.NotFound:
                # removed meanwhile (another compute's cache pass)
                self._known.pop((image_meta.id, sr), None)
                if not again:
                    return None
                return self.root_disk(context, instance, image_meta, sr,
                                      root_size, undo, step, again=False)
            except errors.XenAPIError as exc:
                if exc.xapi_code != CHAIN_TOO_LONG or not again:
                    raise
                # deepened since it was read (another compute's clone,
                # a write into it): never cloned again
                LOG.warning('SR %s refused to clone cached image %s (%s): '
                            'retired, importing the image again', sr,
                            image_meta.id, errors.why(exc),
                            instance=instance)
                self._retire(ref, image_meta.id)
                return self.root_disk(context, instance, image_meta, sr,
                                      root_size, undo, step, again=False)
            undo.vdis.append(root)
            other = storage.tags(instance, 'root')
            other[BASE] = rec['uuid']
            self.session.call('VDI.set_other_config', root, other)
            self.session.call('VDI.set_name_label', root,
                              '%s root' % instance.name)
        if root_size > int(rec['virtual_size']):
            with step('grow the root disk'):
                self.session.call('VDI.resize', root, str(root_size))
        return root

    def prefetch(self, context, image_meta, sr):
        """Nova's cache_image (image pre-caching on an aggregate, that is
        a pool): True if imported now, False if it was there already."""
        record = images.glance_record(context, image_meta.id)
        if not wanted(record):
            raise NotImplementedError(
                'image %s is not cached: [xenserver]cache_images is %s'
                % (image_meta.id, CONF.xenserver.cache_images))
        checksum = glance_checksum(record)
        with self._lock(image_meta.id, sr):
            if self._find(sr, image_meta.id, checksum) is not None:
                return False
            undo = vmops.Undo(self.session)
            step = vmops.Step()
            try:
                self._import(context, _Prefetch(), image_meta, sr, checksum,
                             undo, step)
            except Exception as exc:
                undo.rollback(None)
                LOG.error('could not cache image %s at step "%s": %s',
                          image_meta.id, step.name, exc)
                raise
        return True

    def _clone(self, ref, image_id, sr):
        """VDI.clone of a cache entry.  xapi clones a VDI once at a time
        (OTHER_OPERATION_IN_PROGRESS): spawns here take turns, and a
        clone by another compute of the pool is waited out."""
        deadline = time.monotonic() + CLONE_WAIT
        delay = 0.1
        while True:
            try:
                with self._lock(image_id, sr):
                    return self.session.call('VDI.clone', ref, {})
            except exception.InstanceInvalidState as exc:
                if getattr(exc, 'xapi_code', None) != \
                        'OTHER_OPERATION_IN_PROGRESS' or \
                        time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _lock(self, image_id, sr):
        with self._guard:
            return self._locks[(image_id, sr)]

    def _find(self, sr, image_id, checksum):
        """(ref, record) of the finished entry of ``image_id`` on ``sr``
        with this checksum; an entry with another checksum is retired
        (every entry, for a ``checksum`` of None)."""
        found = self.session.call(
            'VDI.get_all_records_where',
            'field "name__label"="%s" and field "SR"="%s"'
            % (CACHED % image_id, sr))
        for ref in sorted(found):
            rec = found[ref]
            if rec['other_config'].get(KEY) != image_id or \
                    rec['other_config'].get(SELF) != rec['uuid']:
                continue     # not the entry (a clone a spawn is tagging)
            if rec['other_config'].get(CHECKSUM) != checksum:
                LOG.info('cached image %s no longer matches Glance\'s '
                         'checksum: retired', image_id)
                self._retire(ref, image_id)
                continue
            self._known[(image_id, sr)] = (ref, rec)
            return ref, rec
        self._known.pop((image_id, sr), None)
        return None

    def _retire(self, ref, image_id):
        self._forget(ref)
        try:
            self.session.call('VDI.set_name_label', ref, RETIRED % image_id)
        except exception.NotFound:
            pass

    def _forget(self, ref):
        """No more spawns of this nova-compute use the entry ``ref``."""
        self._chains.pop(ref, None)
        for key, (known, _) in list(self._known.items()):
            if known == ref:
                self._known.pop(key, None)

    # -- storage chains ----------------------------------------------------

    def _shallow(self, entry, image_id, fresh):
        """Whether the entry's chain is within the bound; one deeper is
        retired, one gone forgotten.  ``fresh``: its record was just read
        (its sm_config is current)."""
        ref, rec = entry
        try:
            sm_config = rec['sm_config'] if fresh else \
                self.session.call('VDI.get_sm_config', ref)
        except exception.NotFound:
            self._forget(ref)        # removed by another compute's pass
            return False
        limit = CONF.xenserver.image_cache_max_chain_depth
        depth = self._depth(ref, sm_config.get(PARENT), limit)
        if depth <= limit:
            return True
        LOG.info('cached image %s on SR %s is %d deep, more than '
                 '[xenserver]image_cache_max_chain_depth (%d): retired, '
                 'importing the image again', image_id, rec['SR'], depth,
                 limit)
        self._retire(ref, image_id)
        return False

    def _depth(self, ref, parent, limit):
        """The entry's depth as sm counts it (the entry and each parent);
        ``limit`` + 1 for any deeper one (not counted further)."""
        known = self._chains.get(ref, [])
        if not parent:
            chain, whole = [], True
        elif known[:1] == [parent]:
            # the same parent as before: at most as deep as then (sm's
            # coalescing only shortens what lies below it)
            chain, whole = known, True
        else:
            chain, whole = self._walk(parent, known, limit)
        if whole and len(chain) < limit:
            self._chains[ref] = chain
        else:
            self._chains.pop(ref, None)
        return len(chain) + 1

    def _walk(self, parent, known, most):
        """The uuids of the parents from ``parent`` down (``most`` at
        most), reusing ``known`` from where it joins it; and whether that
        is the whole chain (False: a parent went while it was read)."""
        chain = []
        uuid = parent
        while uuid and len(chain) < most:
            if uuid in known:
                return (chain + known[known.index(uuid):])[:most], True
            chain.append(uuid)
            found = self.session.call('VDI.get_all_records_where',
                                      'field "uuid"="%s"' % uuid)
            if not found:
                return chain, False
            uuid = next(iter(found.values()))['sm_config'].get(PARENT)
        return chain, True

    def _import(self, context, instance, image_meta, sr, checksum, undo,
                step):
        """A new finished cache entry: (ref, record)."""
        with step('check the image'):
            plan, fmt, size = self.images.open(context, instance, image_meta)
        try:
            with step('create the image cache disk'):
                vsize = size or instance.flavor.root_gb * GIB
                other = {KEY: image_meta.id, CHECKSUM: checksum,
                         SIZE: str(size), STARTED: str(int(time.time())),
                         'nova_role': 'image-cache'}
                vdi = storage.create_vdi(
                    self.session, sr, None, 'image-cache', vsize,
                    name=IMPORTING % image_meta.id, other_config=other)
                undo.vdis.append(vdi)
            with step('import the image'):
                self.images.write(plan, fmt, int(image_meta.size or 0), vdi,
                                  self.host.address)
        finally:
            plan.close()
        with step('import the image'):
            self.session.call('VDI.add_to_other_config', vdi, SELF,
                              self.session.call('VDI.get_uuid', vdi))
            self.session.call('VDI.set_name_label', vdi,
                              CACHED % image_meta.id)
        undo.vdis.remove(vdi)
        LOG.info('image %s cached on SR %s', image_meta.id, sr)
        rec = self.session.call('VDI.get_record', vdi)
        self._known[(image_meta.id, sr)] = (vdi, rec)
        return vdi, rec

    # -- Nova's periodic pass ----------------------------------------------

    def manage(self, sr, now=None):
        """Remove what no instance uses any more (after Nova's ages) and
        imports a crash interrupted; returns the refs removed."""
        now = now if now is not None else time.time()
        opts = CONF.image_cache
        everything = self.session.call('VDI.get_all_records_where',
                                       'field "SR"="%s"' % sr)
        used = {rec['other_config'].get(BASE)
                for rec in everything.values()}
        removed = []
        for ref, rec in everything.items():
            other = rec['other_config']
            image_id = other.get(KEY)
            if not image_id or other.get(SELF, rec['uuid']) != rec['uuid']:
                continue     # no entry (a clone a spawn is tagging)
            name = rec['name_label']
            if name == IMPORTING % image_id:
                started = int(other.get(STARTED) or 0)
                if now - started > self.session.task_timeout:
                    self._remove(ref, removed, 'an interrupted import')
                continue
            in_use = rec['uuid'] in used
            if in_use:
                if UNUSED in other:
                    self._call('VDI.remove_from_other_config', ref, UNUSED)
                continue
            if name == RETIRED % image_id:
                self._remove(ref, removed, 'retired')
                continue
            if not opts.remove_unused_base_images:
                continue
            since = other.get(UNUSED)
            if since is None:
                self._call('VDI.add_to_other_config', ref, UNUSED,
                           str(int(now)))
            elif now - int(since) >= \
                    opts.remove_unused_original_minimum_age_seconds:
                self._remove(ref, removed, 'unused since %s' % since)
        return removed

    def _call(self, method, *args):
        try:
            self.session.call(method, *args)
        except exception.NotFound:
            pass   # removed meanwhile (another compute of the pool)

    def _remove(self, ref, removed, why):
        LOG.info('removing cached image VDI %s (%s)', ref, why)
        self._forget(ref)
        reclaim.destroy(self.session, reclaim.VDI, ref)
        removed.append(ref)


class _Flavor(object):
    root_gb = 0


class _Prefetch(object):
    """Stands for the instance when an image is cached ahead of any: no
    flavor limits its size (only [xenserver]max_image_size_gb)."""
    uuid = None
    name = 'image pre-caching'
    flavor = _Flavor()
