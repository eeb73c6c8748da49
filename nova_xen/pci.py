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

- xapi has PCI objects only for storage, network and display
  controllers (and functions they depend on), and keeps SR-IOV relations
  (``PCI.physical_function``, ``virtual_functions``) internal.  The dom0
  plugin ``nova_xen_pci.py`` lists every function from dom0's sysfs: its
  class, ids, driver (``pciback``: left to guests) and ``physfn`` /
  ``virtfn*`` links, as Nova's old XenAPI driver read them.  xenopsd
  assigns any pciback function named in ``other_config:pci``; for one
  without a PCI object xapi records no ``attached_PCIs``
  (``xapi_xenops.ml`` update_pci finds none among ``host.PCIs``).

Nova's side (nova 34): the tracker reads the JSON list once, at start
(``resource_tracker._setup_pci_tracker``); the keys are those of
``nova.pci.utils``/``objects.PciDevice`` as the libvirt driver reports
them: ``dev_type`` type-PF / type-VF / type-PCI and, for a VF, its PF's
address in ``parent_addr`` (which also puts the VF on its PF's resource
provider with ``[pci] report_in_placement``,
``pci_placement_translator._get_rp_name_for_child``).  Nova reads the
compute host's sysfs for a ``device_spec`` naming a PF's exact address
(``pci.utils.is_physical_function``) or a ``devname``: in the domU running
nova-compute those files are not the Xen host's, so such a spec matches
the PF alone, never its VFs (the README says which forms work).

Which source decides (the design): a function with a PCI object is
assignable when xapi says dom0 no longer has it (dom0-access status
``disabled``, or bound to pciback for xapi < 24.14); one without is
assignable when the plugin says it is bound to pciback.  Ids come from
xapi when it shows them (>= 25.10), else from sysfs.  A dom0 without the
plugin (installed by an older nova-xen) still gets the xapi-only report,
every device ``type-PCI``, with one warning per host saying why.
"""

import json
import re

from nova import exception
from nova.objects import fields as obj_fields
from oslo_log import log as logging

from nova_xen import errors

LOG = logging.getLogger(__name__)

PCI_PLUGIN = 'nova_xen_pci.py'
#: the codes of a dom0 without the plugin (or without the function)
PLUGIN_MISSING = ('XENAPI_MISSING_PLUGIN', 'UNKNOWN_XENAPI_PLUGIN_FUNCTION')
PCIBACK = 'pciback'
#: an other_config:pci entry as xapi parses it (pciops.ml l.56-66)
OTHER_CONFIG_ENTRY = re.compile(
    r'^\d+/([0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])$')
#: VM power states in which a domain holds its devices
HOLDING_STATES = ('Running', 'Paused')
_warned_no_plugin = set()

#: what is said when a server with passed-through devices cannot do a move
CANNOT_MOVE = ('the server has PCI devices passed through (%s): xapi cannot '
               '%s a VM with attached PCI devices (VM_HAS_PCI_ATTACHED)')


def _assignable(session, pci, record):
    try:
        status = session.call('PCI.get_dom0_access_status', pci)
    except Exception:     # xapi < 24.14: no such call
        return record.get('driver_name') == PCIBACK
    return status == 'disabled'


def dom0_functions(session, host_ref, host_name):
    """{address: the plugin's record} of every PCI function of the host,
    or None when its dom0 has no nova_xen_pci.py (said once per host)."""
    try:
        reply = session.call_plugin(host_ref, PCI_PLUGIN, 'pci_functions')
    except errors.PluginError as exc:
        if exc.xapi_code not in PLUGIN_MISSING:
            raise
        if host_name not in _warned_no_plugin:
            _warned_no_plugin.add(host_name)
            LOG.warning(
                'Host %s has no dom0 plugin %s (%s): its PCI devices are '
                'those xapi lists (storage, network, display), all reported '
                'as type-PCI without VF/PF relations; install the plugins '
                'of this nova-xen release (dom0_plugins/install.sh) for the '
                'others and for SR-IOV functions', host_name, PCI_PLUGIN,
                exc.xapi_code)
        return None
    return {f['address']: f for f in reply['functions']}


def _dev_type(function):
    if function is None:
        return obj_fields.PciDeviceType.STANDARD, None
    if function.get('physfn'):
        return obj_fields.PciDeviceType.SRIOV_VF, function['physfn']
    if function.get('virtfns'):
        return obj_fields.PciDeviceType.SRIOV_PF, None
    return obj_fields.PciDeviceType.STANDARD, None


def _device(address, vendor, product, function):
    dev_type, parent = _dev_type(function)
    return {
        'address': address,
        'vendor_id': vendor,
        'product_id': product,
        'dev_type': dev_type,
        'dev_id': 'pci_' + address.replace(':', '_').replace('.', '_'),
        'label': 'label_%s_%s' % (vendor, product),
        'numa_node': function.get('numa_node') if function else None,
        'parent_addr': parent,
    }


def _xapi_devices(session, pci_refs):
    """{address: (PCI ref, record)} of a host's PCI objects, in their
    order: one call for the records (a host has tens of devices; the
    resource tracker asks at every periodic update)."""
    records = session.call('PCI.get_all_records') if pci_refs else {}
    # a ref missing from the records is gone since the host's was read
    return {records[ref]['pci_id'].lower(): (ref, records[ref])
            for ref in pci_refs if ref in records}


def passthrough_devices(session, host_ref, host_record):
    """Nova's ``pci_passthrough_devices`` list for a host: the functions
    dom0 left to guests, xapi's and the plugin's merged."""
    devices = []
    try:
        functions = dom0_functions(session, host_ref,
                                   host_record['name_label'])
    except errors.PluginError as exc:
        # the resource update goes on with what xapi knows
        LOG.warning('Host %s: %s; its PCI devices are those xapi lists, '
                    'all reported as type-PCI', host_record['name_label'],
                    exc)
        functions = None
    listed = _xapi_devices(session, host_record['PCIs'])
    for address, (pci, record) in listed.items():
        function = (functions or {}).get(address)
        vendor = record.get('vendor_id', '').lower()
        product = record.get('device_id', '').lower()
        if not (vendor and product) and function is not None:
            # xapi < 25.10 keeps the ids to itself: sysfs has them
            vendor, product = function['vendor_id'], function['product_id']
        if not (vendor and product):
            continue
        if not _assignable(session, pci, record):
            continue
        devices.append(_device(address, vendor, product, function))
    for address, function in sorted((functions or {}).items()):
        if address in listed or function.get('driver') != PCIBACK:
            continue
        devices.append(_device(address, function['vendor_id'],
                               function['product_id'], function))
    return devices


def passthrough_devices_json(session, host_ref, host_record):
    return json.dumps(passthrough_devices(session, host_ref, host_record))


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


def _holders(session, host_ref):
    """Who holds which device on the host: ({PCI ref: VM record},
    {address: VM record}) from the attached PCIs xapi records and the
    ``other_config:pci`` of its running VMs (the only trace of a function
    without a PCI object)."""
    by_ref, by_address = {}, {}
    vms = session.call('VM.get_all_records_where',
                       'field "resident_on" = "%s"' % host_ref)
    for vm in vms.values():
        if vm.get('is_control_domain') or \
                vm.get('power_state') not in HOLDING_STATES:
            continue
        for ref in vm.get('attached_PCIs', ()):
            by_ref[ref] = vm
        for entry in vm.get('other_config', {}).get('pci', '').split(','):
            m = OTHER_CONFIG_ENTRY.match(entry.strip())
            if m:
                by_address[m.group(1).lower()] = vm
    return by_ref, by_address


def check_claimed(session, host_ref, instance):
    """Before anything is made: each device Nova claimed is a device of
    this host that dom0 left to guests and no running VM holds (xapi
    would only find out in xenopsd, after the VM was built).  A function
    xapi has no PCI object for is checked in dom0's sysfs (the plugin,
    asked only then) and against the running VMs' ``other_config:pci``."""
    addresses = claimed_addresses(instance)
    if not addresses:
        return
    host = session.call('host.get_record', host_ref)
    name = host['name_label']
    here = _xapi_devices(session, host['PCIs'])
    functions = {}
    if any(a not in here for a in addresses):
        functions = dom0_functions(session, host_ref, name) or {}
    by_ref, by_address = _holders(session, host_ref)
    for address in addresses:
        if address in here:
            ref, record = here[address]
            in_dom0 = not _assignable(session, ref, record)
            holder = by_ref.get(ref) or by_address.get(address)
        elif address in functions:
            in_dom0 = functions[address].get('driver') != PCIBACK
            holder = by_address.get(address)
        else:
            raise PciDeviceUnusable(reason='PCI device %s is not a device of '
                                    'host %s' % (address, name))
        if in_dom0:
            raise PciDeviceUnusable(
                reason='PCI device %s of host %s is still used by dom0 (%s, '
                       'then reboot the host)' % (
                           address, name,
                           'hide it with PCI.disable_dom0_access'
                           if address in here else
                           'add it to xen-pciback.hide on dom0\'s command '
                           'line'))
        if holder is not None:
            raise PciDeviceUnusable(
                reason='PCI device %s of host %s is passed through to VM %s '
                       'already' % (address, name, holder['name_label']))


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
