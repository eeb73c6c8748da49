"""vGPU: the host's GPUs as placement providers of VGPU, and the VGPU
objects of a server's VM.

The operator names the vGPU type in Nova's own ``[devices]
enabled_mdev_types`` as xapi's ``VGPU_type.model_name`` (e.g. ``GRID
T4-4Q``; Nova's old XenAPI driver read the same group).  Without it the
driver reports no GPU and creates no VGPU.

Facts that shape it (xapi, github xapi-project/xen-api e2ee48d6883e):

- xapi, not Nova, chooses the physical GPU: a VGPU names a GPU_group and
  a type, and ``VM.start`` picks a pGPU of that group on the host by the
  group's allocation algorithm (``vgpuops.ml`` allocate_vgpu_to_gpu
  l.59-105).  A provider per pGPU would let placement allocate on one
  pGPU while xapi puts the vGPU on another; so each (host, GPU_group)
  is one child provider, its inventory the sum of that host's pGPUs of
  the group (never ``GPU_group.get_remaining_capacity``, which sums the
  whole pool: the mistake of Nova's old driver).
- One running type per pGPU (``xapi_pgpu_helpers.ml``); with one enabled
  type per compute, the per-pGPU capacities add up.
- ``VGPU.create`` needs the VM halted (``xapi_vgpu.ml`` l.64-123); the
  VGPUs go with ``VM.destroy``.
"""

import os_resource_classes as orc
import os_traits
from nova import exception
import nova.conf
from oslo_log import log as logging

LOG = logging.getLogger(__name__)
NOVA_CONF = nova.conf.CONF
RC = orc.VGPU


def enabled_model():
    """The xapi VGPU_type model name the operator enabled, or None."""
    names = list(NOVA_CONF.devices.enabled_mdev_types or [])
    if len(names) > 1:
        LOG.warning('[devices] enabled_mdev_types names %s: nova-xen uses '
                    'the first only, %s', ', '.join(names), names[0])
    return names[0] if names else None


def provider_name(nodename, group_uuid):
    return '%s_gpu_group_%s' % (nodename, group_uuid)


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

    def _inventory(self, model):
        """{GPU_group ref: (group uuid, total, used by others)} for the
        enabled type on this host, and the type's ref."""
        session = self.session
        vtype = None
        for ref, record in session.call('VGPU_type.get_all_records').items():
            if record['model_name'] == model:
                vtype = ref
        if vtype is None:
            LOG.warning('[devices] enabled_mdev_types: xapi has no vGPU type '
                        '%s on this pool', model)
            return {}, None
        found = {}
        pgpus = session.call('host.get_PGPUs', self.host.ref)
        for pgpu in pgpus:
            record = session.call('PGPU.get_record', pgpu)
            if vtype not in record['enabled_VGPU_types']:
                continue
            total = int(record['supported_VGPU_max_capacities'].get(vtype, 0))
            others = 0
            for vgpu in record['resident_VGPUs']:
                vm = session.call('VGPU.get_VM', vgpu)
                if 'nova_uuid' not in session.call('VM.get_other_config', vm):
                    others += 1
            group = record['GPU_group']
            uuid, have, used = found.get(group, (None, 0, 0))
            if uuid is None:
                uuid = session.call('GPU_group.get_uuid', group)
            found[group] = (uuid, have + total, used + others)
        return found, vtype

    def update_provider_tree(self, provider_tree, nodename):
        model = enabled_model()
        groups, vtype = self._inventory(model) if model else ({}, None)
        wanted = {}
        for group, (uuid, total, others) in groups.items():
            if total > 0:
                wanted[provider_name(nodename, uuid)] = (group, total, others)
        prefix = provider_name(nodename, '')
        for uuid in provider_tree.get_provider_uuids(nodename):
            name = provider_tree.data(uuid).name
            if name.startswith(prefix) and name not in wanted:
                provider_tree.remove(uuid)
        self.groups = {}
        for name, (group, total, others) in wanted.items():
            if not provider_tree.exists(name):
                provider_tree.new_child(name, nodename)
            provider_tree.update_inventory(name, {RC: {
                'total': total, 'reserved': min(others, total),
                'min_unit': 1, 'max_unit': total, 'step_size': 1,
                'allocation_ratio': 1.0}})
            provider_tree.add_traits(name, os_traits.OWNER_NOVA)
            self.groups[provider_tree.data(name).uuid] = (group, vtype)

    def create(self, instance, vm, allocations):
        """The VGPUs placement allocated, on the halted VM."""
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
        """After the start: each VGPU is on a pGPU of this host (xapi chose
        which one, in the group placement allocated from)."""
        for vgpu in self.session.call('VM.get_VGPUs', vm):
            pgpu = self.session.call('VGPU.get_resident_on', vgpu)
            host = self.session.call('PGPU.get_host', pgpu) \
                if pgpu != 'OpaqueRef:NULL' else None
            if host != self.host.ref:
                raise exception.ComputeResourcesUnavailable(
                    reason='xapi placed vGPU %s on pGPU %s, not on a GPU of '
                           'this host' % (vgpu, pgpu))


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


def refuse_move(instance, what, new_flavor=None):
    """Suspend and live migration (xapi: VM_HAS_VGPU, unless NVIDIA with
    gpumon data, which nova-xen does not check), and resize or cold
    migration (the VGPU would have to be made again from the new
    allocations: not done), of a server with a vGPU: refused before
    anything changes, the server left as it was."""
    if not (_has_vgpu(instance.flavor) or
            (new_flavor is not None and _has_vgpu(new_flavor))):
        return
    reason = ('the server has a vGPU: nova-xen does not %s servers with '
              'vGPUs' % what)
    if what == 'live-migrate':
        raise exception.MigrationPreCheckError(reason=reason)
    inner = exception.InstanceSuspendFailure(reason=reason) \
        if what == 'suspend' else exception.MigrationPreCheckError(
            reason=reason)
    raise exception.InstanceFaultRollback(inner_exception=inner)
