"""The PCI devices and GPUs of simulated hosts (``--devices``).

A world is given its devices as JSON (a file or the text itself)::

    {"vgpu_types": [{"model_name": "GRID T4-4Q", "vendor_name": "NVIDIA",
                     "implementation": "nvidia", "size": 4,
                     "framebuffer_size": 4294967296, "max_heads": 4}],
     "hosts": {"xcp-ng-1-1": {
        "iommu": true,
        "pci": [{"pci_id": "0000:81:00.0", "class_id": "03",
                 "class_name": "3D controller", "vendor_id": "10de",
                 "device_id": "1eb8", "vendor_name": "NVIDIA Corporation",
                 "device_name": "TU104GL [Tesla T4]",
                 "dom0_access": "disabled", "driver_name": "pciback",
                 "dependencies": [], "physfn": null, "boot_device": false,
                 "gpu": {"group": "Tesla T4", "size": 16,
                         "types": ["GRID T4-4Q"]}}]}}}

Hosts are named by their name_label (``xcp-ng-<pool>-<host>``).  As
xapi does, only storage (class 01), network (02) and display (03)
controllers and the functions they depend on become PCI objects
(xapi ``ocaml/xapi/xapi_pci.ml`` l.20-36, l.233-248); the others are in
the world (a dom0 plugin could list them) but not in the database.
``dom0_access`` is the state the host booted with: ``enabled`` (dom0
drives it) or ``disabled`` (hidden by ``xen-pciback.hide``, assignable).

Each GPU is a PGPU in the pool-wide GPU_group of its ``group`` name,
supporting the listed VGPU types plus xapi's whole-GPU ``passthrough``
type.  Capacity is xapi's size arithmetic (``xapi_pgpu_helpers.ml``
get_remaining_capacity_internal): (pGPU size - sizes of its vGPUs) //
type size; a passthrough vGPU takes the whole pGPU.
"""

import json
import os

from xapisim import sysfs
from xapisim.db import new_uuid
from xapisim.errors import XapiError
from xapisim.schema import NULL_REF

XAPI_CLASSES = ('01', '02', '03')
PASSTHROUGH = 'passthrough'
DOM0_ACCESS = ('enabled', 'disabled')
# what a passed-through device or a vGPU can forbid
# the PGPU.compatibility_metadata key gpumon writes (xapi_gpumon.ml Nvidia.key l.77)
GPUMON_KEY = 'nvidia'
MIGRATING_OPS = ('suspend', 'checkpoint', 'pool_migrate', 'migrate_send')


class DeviceError(ValueError):
    """The --devices description is wrong (says where)."""


def read_spec(value):
    """The devices description: JSON text, or the path of a JSON file."""
    if not value:
        return {}
    if isinstance(value, dict):
        return value
    if os.path.exists(value):
        with open(value) as fh:
            value = fh.read()
    try:
        spec = json.loads(value)
    except ValueError as exc:
        raise DeviceError('--devices is neither a JSON file nor JSON: %s'
                          % exc)
    if not isinstance(spec, dict):
        raise DeviceError('--devices must be a JSON object')
    return spec


class PciState(object):
    """What xapi keeps outside its public fields for one PCI device."""

    def __init__(self, spec):
        hidden = spec.get('dom0_access', 'enabled') == 'disabled'
        self.hidden_now = hidden          # the running xen-pciback.hide
        self.hidden_after_reboot = hidden  # the configured command line
        self.boot_device = bool(spec.get('boot_device', False))
        self.attached_vm = NULL_REF       # xapi's internal attached_VMs

    def dom0_access(self):
        """xapi_pci_helpers.determine_dom0_access_status l.209-222."""
        return {(True, True): 'disabled',
                (False, True): 'disable_on_reboot',
                (False, False): 'enabled',
                (True, False): 'enable_on_reboot'}[
                    (self.hidden_now, self.hidden_after_reboot)]


class Devices(object):
    """The pool's devices: PCI state by PCI ref, sizes, per-host IOMMU."""

    def __init__(self):
        self.pci = {}           # PCI ref -> PciState
        self.by_address = {}    # (host ref, pci_id) -> PCI ref
        self.all_functions = {}  # host ref -> [spec] incl. invisible ones
        # (host ref, pci_id) -> PciState of every function, also those
        # xapi has no PCI object for (xenopsd assigns them all the same)
        self.functions = {}
        self.pgpu_size = {}     # PGPU ref -> size
        self.type_size = {}     # VGPU_type ref -> size (0: passthrough)


def _check_pci(host_name, spec):
    where = 'host %s PCI %s' % (host_name, spec.get('pci_id'))
    for key in ('pci_id', 'class_id', 'vendor_id', 'device_id'):
        if not isinstance(spec.get(key), str):
            raise DeviceError('%s: "%s" (a string) is required'
                              % (where, key))
    if spec.get('dom0_access', 'enabled') not in DOM0_ACCESS:
        raise DeviceError('%s: dom0_access is one of %s'
                          % (where, ', '.join(DOM0_ACCESS)))


def _vgpu_types(db, devices, spec):
    """VGPU_type rows by model name, xapi's passthrough type included."""
    types = {}
    entries = [{'model_name': PASSTHROUGH, 'vendor_name': '',
                'implementation': 'passthrough', 'size': 0}]
    entries += spec.get('vgpu_types', [])
    for entry in entries:
        name = entry.get('model_name')
        size = int(entry.get('size', 0))
        if not name or (name != PASSTHROUGH and size <= 0):
            raise DeviceError('each vgpu_types entry needs a model_name and '
                              'a positive size: %r' % (entry,))
        ref = db.create('VGPU_type', {
            'vendor_name': entry.get('vendor_name', ''),
            'model_name': name,
            'framebuffer_size': int(entry.get('framebuffer_size', 0)),
            'max_heads': int(entry.get('max_heads', 0)),
            'max_resolution_x': int(entry.get('max_resolution_x', 0)),
            'max_resolution_y': int(entry.get('max_resolution_y', 0)),
            'implementation': entry.get('implementation', 'nvidia'),
            'identifier': entry.get('identifier', name),
            'experimental': False})
        # one vGPU per VM: each type is compatible only with itself
        db.set('VGPU_type', ref, compatible_types_in_vm=[ref])
        devices.type_size[ref] = size
        types[name] = ref
    return types


def _add_to_set(db, cls, ref, field, item):
    values = db.get(cls, ref, field)
    if item not in values:
        db.set(cls, ref, **{field: values + [item]})


def _gpu(db, devices, host, pci, gpu, types, groups):
    name = gpu.get('group') or 'Group of %s' % pci
    group = groups.get(name)
    if group is None:
        group = groups[name] = db.create('GPU_group', {
            'name_label': name, 'allocation_algorithm': 'depth_first'})
    size = int(gpu.get('size', 1))
    supported = [types[PASSTHROUGH]]
    for model in gpu.get('types', []):
        if model not in types:
            raise DeviceError('GPU %s: unknown vGPU type %s' % (
                db.get('PCI', pci, 'pci_id'), model))
        supported.append(types[model])
    capacities = {}
    for t in supported:
        tsize = devices.type_size[t]
        capacities[t] = 1 if tsize == 0 else size // tsize
    state = devices.pci[pci]
    pgpu = db.create('PGPU', {
        'PCI': pci, 'GPU_group': group, 'host': host,
        'supported_VGPU_types': supported,
        'enabled_VGPU_types': list(supported),
        'supported_VGPU_max_capacities': capacities,
        'dom0_access': state.dom0_access(),
        'is_system_display_device': False})
    devices.pgpu_size[pgpu] = size
    for t in supported:
        _add_to_set(db, 'VGPU_type', t, 'supported_on_PGPUs', pgpu)
        _add_to_set(db, 'VGPU_type', t, 'enabled_on_PGPUs', pgpu)
        _add_to_set(db, 'VGPU_type', t, 'supported_on_GPU_groups', group)
        _add_to_set(db, 'VGPU_type', t, 'enabled_on_GPU_groups', group)
        _add_to_set(db, 'GPU_group', group, 'supported_VGPU_types', t)
        _add_to_set(db, 'GPU_group', group, 'enabled_VGPU_types', t)
    _add_to_set(db, 'GPU_group', group, 'GPU_types', '%s:%s' % (
        db.get('PCI', pci, 'vendor_id'), db.get('PCI', pci, 'device_id')))
    return pgpu


def populate(pool, spec):
    """Create the PCI, PGPU, GPU_group and VGPU_type objects of ``spec``
    for ``pool``'s hosts; returns the pool's ``Devices``."""
    db = pool.db
    devices = Devices()
    hosts = spec.get('hosts', {})
    mine = {h.name_label: h for h in pool.hosts}
    if not any(name in mine for name in hosts):
        return devices
    types = _vgpu_types(db, devices, spec)
    groups = {}
    for name, hspec in sorted(hosts.items()):
        host = mine.get(name)
        if host is None:
            continue
        chipset = dict(db.get('host', host.ref, 'chipset_info'))
        chipset['iommu'] = 'true' if hspec.get('iommu', True) else 'false'
        db.set('host', host.ref, chipset_info=chipset)
        functions = hspec.get('pci', [])
        devices.all_functions[host.ref] = functions
        for entry in functions:
            _check_pci(name, entry)
            devices.functions[(host.ref, entry['pci_id'])] = PciState(entry)
        sysfs.write(host.dom0_root, functions, {
            e['pci_id'] for e in functions
            if devices.functions[(host.ref, e['pci_id'])].hidden_now})
        # xapi lists a device of another class when a listed one
        # depends on it (xapi_pci.ml update_pcis: "related" functions)
        related = set()
        for entry in functions:
            if entry['class_id'][:2] in XAPI_CLASSES:
                related.update(entry.get('dependencies', []))
        made = []
        for entry in functions:
            if entry['class_id'][:2] not in XAPI_CLASSES and \
                    entry['pci_id'] not in related:
                continue
            ref = db.create('PCI', {
                'uuid': new_uuid(), 'host': host.ref,
                'pci_id': entry['pci_id'],
                'class_id': entry['class_id'],
                'class_name': entry.get('class_name', ''),
                'vendor_id': entry['vendor_id'],
                'vendor_name': entry.get('vendor_name', ''),
                'device_id': entry['device_id'],
                'device_name': entry.get('device_name', ''),
                'subsystem_vendor_id': entry.get('subsystem_vendor_id', ''),
                'subsystem_device_id': entry.get('subsystem_device_id', ''),
                'driver_name': entry.get('driver_name', ''),
                'other_config': {}})
            devices.pci[ref] = devices.functions[(host.ref, entry['pci_id'])]
            devices.by_address[(host.ref, entry['pci_id'])] = ref
            made.append((ref, entry))
        for ref, entry in made:
            deps = [devices.by_address[(host.ref, a)]
                    for a in entry.get('dependencies', [])
                    if (host.ref, a) in devices.by_address]
            db.set('PCI', ref, dependencies=deps)
            if entry.get('gpu') is not None:
                _gpu(db, devices, host.ref, ref, entry['gpu'], types, groups)
    return devices


def _suspendable(db, vgpu):
    """check_vgpu's is_suspendable: NVIDIA with gpumon metadata."""
    vtype = db.get('VGPU', vgpu, 'type')
    if db.get('VGPU_type', vtype, 'implementation') not in (
            'nvidia', 'nvidia_sriov'):
        return False
    pgpu = db.get('VGPU', vgpu, 'resident_on')
    return db.exists('PGPU', pgpu) and \
        GPUMON_KEY in db.get('PGPU', pgpu, 'compatibility_metadata')


def operation_error(db, row, vm, op):
    """VM_HAS_PCI_ATTACHED / VM_HAS_VGPU for ``op``, or None."""
    if op in MIGRATING_OPS and row['attached_PCIs']:
        return XapiError('VM_HAS_PCI_ATTACHED', vm)
    if not row['VGPUs'] or op not in MIGRATING_OPS:
        return None
    if op == 'migrate_send' and row['power_state'] == 'Halted':
        return None
    if op == 'checkpoint' and row['power_state'] == 'Suspended':
        return None
    if db is not None and all(_suspendable(db, v) for v in row['VGPUs']):
        return None
    return XapiError('VM_HAS_VGPU', vm)
