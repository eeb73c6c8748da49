"""vGPU: the host's GPUs as placement providers of VGPU, and the VGPU
objects of a server's VM.

The operator names the vGPU types in Nova's own ``[devices]
enabled_mdev_types`` as xapi's ``VGPU_type.model_name`` (e.g. ``GRID
T4-4Q``; Nova's old XenAPI driver read the same group).  Without it the
driver reports no GPU and creates no VGPU.  With several, a flavor picks
one by its trait (``trait:CUSTOM_VGPU_GRID_T4_4Q=required``).

Facts that shape it (xapi, github xapi-project/xen-api e2ee48d6883e):

- xapi, not Nova, chooses the physical GPU: a VGPU names a GPU_group and
  a type, and ``VM.start`` picks a pGPU of that group on the host by the
  group's allocation algorithm (``vgpuops.ml`` allocate_vgpu_to_gpu
  l.59-105).  A provider per pGPU would let placement allocate on one
  pGPU while xapi puts the vGPU on another; so each (host, GPU_group,
  type) is one child provider, its inventory the sum of that host's pGPUs
  of the group counted for the type (never
  ``GPU_group.get_remaining_capacity``, which sums the whole pool: the
  mistake of Nova's old driver).
- One running type per pGPU (``xapi_pgpu_helpers.ml``): each pGPU counts
  for one enabled type only, so the capacities add up; a pGPU on which
  xapi enables several of them is counted for the first (and the check
  after start says so if xapi started another type there).
- ``VGPU.create`` needs the VM halted (``xapi_vgpu.ml`` l.64-123); the
  VGPUs go with ``VM.destroy``.  A resize or cold migration makes them
  anew on the destination's VM from the destination's allocation
  (resize.py); the original, halted, keeps its own for a revert.
"""

import re

import os_resource_classes as orc
import os_traits
from nova import exception
import nova.conf
from oslo_log import log as logging

LOG = logging.getLogger(__name__)
NOVA_CONF = nova.conf.CONF
RC = orc.VGPU


def enabled_models():
    """The xapi VGPU_type model names the operator enabled, in order."""
    return list(NOVA_CONF.devices.enabled_mdev_types or [])


def slug(model):
    """A model name as placement allows it in a name or a trait."""
    return re.sub('[^A-Z0-9]+', '_', model.upper()).strip('_')


def type_trait(model):
    """The trait a flavor requires for this type (``trait:<it>=required``
    next to ``resources:VGPU``), e.g. ``CUSTOM_VGPU_GRID_T4_8Q``."""
    return 'CUSTOM_VGPU_' + slug(model)


def provider_name(nodename, group_uuid, model):
    return '%s_gpu_group_%s_%s' % (nodename, group_uuid, slug(model))


def requested(allocations):
    """{provider uuid: VGPU count} of a server's allocations."""
    return {rp: alloc['resources'][RC]
            for rp, alloc in (allocations or {}).items()
            if alloc.get('resources', {}).get(RC)}


class Gpus(object):
    """The vGPU providers of one host and the VGPUs of its servers."""

    def __init__(self, session, host):
        self.session = session
        self.host = host
        self.groups = {}        # provider uuid -> (GPU_group ref, type ref)
        # (GPU_group ref, type ref) -> the pGPUs counted for that type
        self.pgpus = {}

    def _types(self, models):
        """[(model, VGPU_type ref)] of the enabled models xapi has."""
        refs = {record['model_name']: ref for ref, record in
                self.session.call('VGPU_type.get_all_records').items()}
        for model in models:
            if model not in refs:
                LOG.warning('[devices] enabled_mdev_types: xapi has no vGPU '
                            'type %s on this pool', model)
        return [(model, refs[model]) for model in models if model in refs]

    def _inventory(self, models):
        """{(GPU_group ref, type ref): [group uuid, model, total, used by
        others, pGPUs]} of this host.  Each pGPU counts for one type: the
        first enabled model (in the order of the option) that xapi enables
        on it (a pGPU runs one type at a time, xapi_pgpu_helpers.ml)."""
        session = self.session
        types = self._types(models)
        found = {}
        for pgpu in session.call('host.get_PGPUs', self.host.ref):
            record = session.call('PGPU.get_record', pgpu)
            enabled = [(model, vtype) for model, vtype in types
                       if vtype in record['enabled_VGPU_types']]
            if not enabled:
                continue
            if len(enabled) > 1:
                LOG.warning('pGPU %s enables several of the types in '
                            '[devices] enabled_mdev_types: counted for %s '
                            'only, and xapi may start another type on it; '
                            'enable one of them per pGPU (PGPU.'
                            'set_enabled_VGPU_types)', record['uuid'],
                            enabled[0][0])
            model, vtype = enabled[0]
            total = int(record['supported_VGPU_max_capacities'].get(vtype, 0))
            others = 0
            for vgpu in record['resident_VGPUs']:
                vm = session.call('VGPU.get_VM', vgpu)
                if 'nova_uuid' not in session.call('VM.get_other_config', vm):
                    others += 1
            group = record['GPU_group']
            entry = found.get((group, vtype))
            if entry is None:
                entry = found[group, vtype] = [
                    session.call('GPU_group.get_uuid', group), model, 0, 0,
                    set()]
            entry[2] += total
            entry[3] += others
            entry[4].add(pgpu)
        return found

    def update_provider_tree(self, provider_tree, nodename):
        models = enabled_models()
        found = self._inventory(models) if models else {}
        wanted = {}
        for key, (uuid, model, total, others, pgpus) in found.items():
            if total > 0:
                wanted[provider_name(nodename, uuid, model)] = (
                    key, model, total, others, pgpus)
        prefix = '%s_gpu_group_' % nodename
        for uuid in provider_tree.get_provider_uuids(nodename):
            name = provider_tree.data(uuid).name
            if name.startswith(prefix) and name not in wanted:
                provider_tree.remove(uuid)
        self.groups, self.pgpus = {}, {}
        for name, (key, model, total, others, pgpus) in wanted.items():
            if not provider_tree.exists(name):
                provider_tree.new_child(name, nodename)
            provider_tree.update_inventory(name, {RC: {
                'total': total, 'reserved': min(others, total),
                'min_unit': 1, 'max_unit': total, 'step_size': 1,
                'allocation_ratio': 1.0}})
            provider_tree.add_traits(name, os_traits.OWNER_NOVA,
                                     type_trait(model))
            self.groups[provider_tree.data(name).uuid] = key
            self.pgpus[key] = pgpus

    def create(self, instance, vm, allocations):
        """The VGPUs placement allocated, on the halted VM: of the type
        and in the GPU group of the provider each was allocated from."""
        wanted = requested(allocations)
        for rp, count in sorted(wanted.items()):
            if rp not in self.groups:
                raise exception.ComputeResourcesUnavailable(
                    reason='vGPU allocated on provider %s, which is none of '
                           'this host\'s GPU groups' % rp)
            group, vtype = self.groups[rp]
            for _ in range(count):
                self.session.call('VGPU.create', vm, group, '0',
                                  {'nova_uuid': instance.uuid}, vtype)

    def check_placed(self, instance, vm):
        """After the start: each VGPU is on a pGPU of this host that
        placement's provider counts (xapi chose which one, in the group)."""
        for vgpu in self.session.call('VM.get_VGPUs', vm):
            record = self.session.call('VGPU.get_record', vgpu)
            pgpu = record['resident_on']
            counted = self.pgpus.get((record['GPU_group'], record['type']),
                                     ())
            if pgpu not in counted:
                where = 'not on a GPU of this host'
                if pgpu != 'OpaqueRef:NULL' and self.session.call(
                        'PGPU.get_host', pgpu) == self.host.ref:
                    where = 'on a GPU this host reports for another type'
                raise exception.ComputeResourcesUnavailable(
                    reason='xapi placed vGPU %s on pGPU %s, %s' % (
                        vgpu, pgpu, where))


def _has_vgpu(flavor):
    for key, value in (flavor.extra_specs or {}).items():
        prefix, _, rc = key.partition(':')
        if rc == RC and prefix.startswith('resources'):
            try:
                if int(value) > 0:
                    return True
            except ValueError:
                pass
    return False


def refuse_move(instance, what):
    """Suspend and live migration of a server with a vGPU (xapi:
    VM_HAS_VGPU, unless NVIDIA with gpumon data, which nova-xen does not
    check): refused before anything changes, the server left as it
    was."""
    if not _has_vgpu(instance.flavor):
        return
    reason = ('the server has a vGPU: nova-xen does not %s servers with '
              'vGPUs' % what)
    if what == 'live-migrate':
        raise exception.MigrationPreCheckError(reason=reason)
    raise exception.InstanceFaultRollback(
        inner_exception=exception.InstanceSuspendFailure(reason=reason))
