"""PCI passthrough: the host's assignable devices for Nova's PCI tracker,
the devices Nova claimed given to the VM, the moves xapi cannot make.

Facts (xapi, github xapi-project/xen-api e2ee48d6883e):

- xapi lists storage, network and display PCI devices of each host
  (``host.PCIs``); a device can be passed through once it is hidden from
  dom0 (``xen-pciback.hide``), which ``PCI.get_dom0_access_status`` says
  (``disabled``; xapi >= 24.14; older xapi: the device is bound to
  ``pciback``).  Vendor and device ids are public fields from 25.10.
- A VM gets devices through ``other_config:pci`` ("0/<address>,...",
  ``pciops.ml`` other_pcidevs_of_vm), assigned by xenopsd at start; xapi
  checks nothing before, so the driver checks the host is the one whose
  devices Nova claimed (the VM is pinned to it).
- xapi refuses suspend, checkpoint and migration of a VM with an
  attached PCI device (``VM_HAS_PCI_ATTACHED``, ``xapi_vm_lifecycle.ml``
  l.653-661); there is no hot-unplug, so the driver refuses them first.

Nova's side (nova 34): the tracker reads the JSON list once, at start
(``resource_tracker._setup_pci_tracker``); the keys are those of
``nova.pci.utils``/``objects.PciDevice`` as the libvirt driver reports
them.  VF/PF relations are not visible over XenAPI (``physical_function``
is internal to xapi), so every device is reported as ``type-PCI``.
"""

import json

from nova import exception
from nova.objects import fields as obj_fields
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

#: what is said when a server with passed-through devices cannot do a move
CANNOT_MOVE = ('the server has PCI devices passed through (%s): xapi cannot '
               '%s a VM with attached PCI devices (VM_HAS_PCI_ATTACHED)')


def _assignable(session, pci, record):
    try:
        status = session.call('PCI.get_dom0_access_status', pci)
    except Exception:     # xapi < 24.14: no such call
        return record.get('driver_name') == 'pciback'
    return status == 'disabled'


def passthrough_devices(session, pci_refs):
    """Nova's ``pci_passthrough_devices`` list for a host's PCI objects."""
    devices = []
    if not pci_refs:
        return devices
    # one call for the records (a host has tens of devices; the resource
    # tracker asks at every periodic update)
    records = session.call('PCI.get_all_records')
    for pci in pci_refs:
        record = records.get(pci)
        if record is None:
            continue      # gone since the host's record was read
        vendor = record.get('vendor_id', '').lower()
        product = record.get('device_id', '').lower()
        if not (vendor and product):
            continue      # xapi < 25.10 keeps the ids to itself
        if not _assignable(session, pci, record):
            continue
        address = record['pci_id'].lower()
        devices.append({
            'address': address,
            'vendor_id': vendor,
            'product_id': product,
            'dev_type': obj_fields.PciDeviceType.STANDARD,
            'dev_id': 'pci_' + address.replace(':', '_').replace('.', '_'),
            'label': 'label_%s_%s' % (vendor, product),
            'numa_node': None,
            'parent_addr': None,
        })
    return devices


def passthrough_devices_json(session, host_record):
    return json.dumps(passthrough_devices(session, host_record['PCIs']))


def claimed_addresses(instance):
    """The addresses of the devices Nova claimed for ``instance`` here
    (after a resize or cold migration's claim: the destination's)."""
    return sorted(d.address for d in instance.get_pci_devices())


#: the Neutron vnic types nova-xen plugs (a VIF on an Open vSwitch bridge)
PLAIN_VNIC_TYPES = ('normal',)
NO_SRIOV = ('port %s has vnic_type %s: nova-xen plugs only normal ports (a '
            'VIF on Open vSwitch); SR-IOV ports would bypass dom0 and the '
            'security groups nova-xen enforces there')


def check_ports(network_info):
    """Refuse SR-IOV and other passthrough ports, before anything is made."""
    for vif in network_info or ():
        vnic_type = vif.get('vnic_type') or 'normal'
        if vnic_type not in PLAIN_VNIC_TYPES:
            raise PciDeviceUnusable(reason=NO_SRIOV % (vif['id'], vnic_type))


def other_config(instance):
    """The ``other_config`` entry that gives the VM its claimed devices."""
    addresses = claimed_addresses(instance)
    if not addresses:
        return {}
    return {'pci': ','.join('0/%s' % a for a in addresses)}


class PciDeviceUnusable(exception.NovaException):
    msg_fmt = '%(reason)s'


def check_claimed(session, host_ref, instance):
    """Before anything is made: each device Nova claimed is a device of
    this host that dom0 left to guests and no running VM holds (xapi
    would only find out in xenopsd, after the VM was built)."""
    addresses = claimed_addresses(instance)
    if not addresses:
        return
    host = session.call('host.get_record', host_ref)
    here = {}
    for ref in host['PCIs']:
        record = session.call('PCI.get_record', ref)
        here[record['pci_id'].lower()] = (ref, record)
    holders = {}
    for vm in host['resident_VMs']:
        for ref in session.call('VM.get_attached_PCIs', vm):
            holders[ref] = vm
    for address in addresses:
        if address not in here:
            raise PciDeviceUnusable(reason='PCI device %s is not a device of '
                                    'host %s' % (address, host['name_label']))
        ref, record = here[address]
        if not _assignable(session, ref, record):
            raise PciDeviceUnusable(
                reason='PCI device %s of host %s is still used by dom0 (hide '
                       'it with PCI.disable_dom0_access, then reboot the '
                       'host)' % (address, host['name_label']))
        if ref in holders:
            raise PciDeviceUnusable(
                reason='PCI device %s of host %s is passed through to VM %s '
                       'already' % (address, host['name_label'],
                                    session.call('VM.get_name_label',
                                                 holders[ref])))


def refuse_move(instance, what):
    """Before a suspend or a live migration changes anything: refuse one
    xapi would refuse (the server stays as it is)."""
    addresses = claimed_addresses(instance)
    if not addresses:
        return
    reason = CANNOT_MOVE % (', '.join(addresses), what)
    if what == 'suspend':
        # a rollback: Nova puts the server back in its state (ACTIVE)
        # instead of ERROR, and the reason is the action event's
        raise exception.InstanceFaultRollback(
            inner_exception=exception.InstanceSuspendFailure(reason=reason))
    # the conductor turns it into an error migration, the server untouched
    raise exception.MigrationPreCheckError(reason=reason)
