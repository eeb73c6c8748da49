"""VDIs and VBDs of instances: creation, tagging, attachment, removal.

Every VDI the driver creates carries ``other_config['nova_uuid']`` (the
instance) and ``other_config['nova_role']`` (root, ephemeral, swap,
config-drive, ...), so that destroy and reconciliation find them even
when the VM record is gone.
"""

from nova import exception
from oslo_log import log as logging

from nova_xen import reclaim

LOG = logging.getLogger(__name__)

GIB = 1024 ** 3
NULL = 'OpaqueRef:NULL'

# userdevice numbers by role, as the guest sees them (xvda, xvdb, ...)
DEVICES = {'root': '0', 'ephemeral': '1', 'swap': '2', 'config-drive': '3',
           'rescue': '1'}


def tags(instance, role):
    return {'nova_uuid': instance.uuid, 'nova_role': role,
            'nova_instance_name': instance.name}


def tag_vdi(session, instance, vdi, role):
    """Make a VDI the instance's ``role`` disk (its tags and name)."""
    session.call('VDI.set_other_config', vdi, tags(instance, role))
    session.call('VDI.set_name_label', vdi, '%s %s' % (instance.name, role))


def create_vdi(session, sr, instance, role, size, name=None,
               read_only=False, other_config=None):
    """A new VDI of ``instance`` (tagged as its ``role``), or, with no
    instance, one tagged ``other_config`` (a cached image)."""
    if instance is not None:
        other_config = tags(instance, role)
        name = name or '%s %s' % (instance.name, role)
        description = 'nova instance %s (%s)' % (instance.uuid, role)
    else:
        description = 'nova-xen %s' % role
    return session.call('VDI.create', {
        'SR': sr,
        'virtual_size': str(size),
        'type': 'user',
        'sharable': False,
        'read_only': read_only,
        'other_config': other_config,
        'name_label': name,
        'name_description': description,
        'sm_config': {},
        'xenstore_data': {},
        'tags': [],
    })


def create_vbd(session, vm, vdi, role, bootable=False, read_only=False,
               vbd_type='Disk', userdevice=None, other_config=None):
    return session.call('VBD.create', {
        'VM': vm,
        'VDI': vdi,
        'userdevice': userdevice or DEVICES[role],
        'bootable': bootable,
        'mode': 'RO' if read_only else 'RW',
        'type': vbd_type,
        'empty': False,
        'unpluggable': True,
        'other_config': dict(other_config or {}, nova_role=role),
        'qos_algorithm_type': '',
        'qos_algorithm_params': {},
    })


def root_vdi(session, vm):
    """The VDI behind a VM's first disk (xvda)."""
    for vbd in session.call('VM.get_VBDs', vm):
        if session.call('VBD.get_userdevice', vbd) == DEVICES['root']:
            return session.call('VBD.get_VDI', vbd)
    raise exception.NovaException('VM %s has no root disk' % vm)


def vdis_of_instance(session, instance_uuid):
    """Every VDI tagged for the instance (attached or left behind)."""
    found = []
    for ref, record in session.call('VDI.get_all_records').items():
        if record['other_config'].get('nova_uuid') == instance_uuid:
            found.append(ref)
    return found


def vdis_of_vm(session, vm):
    found = []
    for vbd in session.call('VM.get_VBDs', vm):
        vdi = session.call('VBD.get_VDI', vbd)
        if vdi != NULL:
            found.append(vdi)
    return found


def vbd_records(session, vm, volumes):
    """{VBD ref: record} of ``vm``'s VBDs, in one call: its Cinder
    volumes (``volumes`` True) or every other one."""
    vbds = session.call('VBD.get_all_records_where', 'field "VM"="%s"' % vm)
    return {ref: record for ref, record in vbds.items()
            if (record['other_config'].get('nova_role') == 'volume') ==
            volumes}


def disks_by_role(session, vm):
    """{role: (VDI ref, virtual size)} of a VM's disks (the role its VBD
    was made with: root, ephemeral, swap, config-drive, ...)."""
    by_device = {device: role for role, device in DEVICES.items()
                 if role != 'rescue'}
    found = {}
    for vbd in session.call('VM.get_VBDs', vm):
        record = session.call('VBD.get_record', vbd)
        if record['VDI'] == NULL or record['type'] == 'CD':
            continue
        role = record['other_config'].get('nova_role') or by_device.get(
            record['userdevice'])
        if role and role != 'volume':     # a Cinder volume is not ours
            found[role] = (record['VDI'], int(session.call(
                'VDI.get_virtual_size', record['VDI'])))
    return found


def destroy_vdi(session, vdi):
    """Remove a VDI.  One that xapi will not remove now (in use, xapi
    restarting) is written down in the session's leftovers: the reclaimer
    (reclaim.py) tries again while nova-compute runs."""
    reclaim.destroy(session, reclaim.VDI, vdi)


def device_name_for(session, vm, claimed, wanted=None):
    """/dev/xvd<letter> for a new disk of ``vm`` (None: no VM yet): the
    ``wanted`` name if free, else the first userdevice xapi allows (or,
    without a VM, after the root disk) that no name in ``claimed`` has."""
    taken = {_letter(name) for name in claimed if name}
    if vm is not None:
        free = [int(n) for n in session.call('VM.get_allowed_VBD_devices',
                                             vm)]
    else:
        free = list(range(1, 16))
    letters = [chr(ord('a') + n) for n in sorted(free) if n < 26]
    wanted = _letter(wanted) if wanted else None
    if wanted in letters and wanted not in taken:
        return '/dev/xvd' + wanted
    for letter in letters:
        if letter not in taken:
            return '/dev/xvd' + letter
    raise exception.TooManyDiskDevices(maximum=len(letters))


def _letter(device_name):
    """'/dev/xvdc', 'xvdc', 'vdc', 'sdc' -> 'c'."""
    return device_name.rstrip('0123456789')[-1:]


def disk_info(session, vm, instance_uuid):
    """The disks of ``vm`` that belong to the instance, as plain data:
    [{'device', 'vdi_uuid', 'role', 'virt_disk_size', 'disk_size',
    'type'}] (type 'vhd': what xapi's SRs hold)."""
    disks = []
    for vbd in session.call('VM.get_VBDs', vm):
        vbd_rec = session.call('VBD.get_record', vbd)
        if vbd_rec['VDI'] == NULL:
            continue
        vdi = session.call('VDI.get_record', vbd_rec['VDI'])
        if vdi['other_config'].get('nova_uuid') != instance_uuid:
            continue
        disks.append({'device': 'xvd' + chr(ord('a') +
                                            int(vbd_rec['userdevice'])),
                      'vdi_uuid': vdi['uuid'],
                      'role': vdi['other_config'].get('nova_role', ''),
                      'type': 'vhd',
                      'virt_disk_size': int(vdi['virtual_size']),
                      'disk_size': int(vdi['physical_utilisation'])})
    return sorted(disks, key=lambda d: d['device'])


def gib(size_bytes):
    return (int(size_bytes) + GIB - 1) // GIB
