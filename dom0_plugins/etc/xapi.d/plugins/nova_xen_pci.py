#!/usr/bin/env python3
"""nova-xen's PCI plugin: the host's PCI functions as dom0's sysfs shows them.

    host.call_plugin(host, 'nova_xen_pci.py', FN, {'params': JSON})

pci_functions {}
    -> {"functions": [{"address": "0000:04:10.0", "class_id": "020000",
       "vendor_id": "8086", "product_id": "10ed", "driver": "pciback" or
       null, "physfn": "0000:04:00.0" or null, "virtfns": ["0000:04:10.0",
       ...], "numa_node": int or null}, ...]} sorted by address: every
       function of /sys/bus/pci/devices, of every class.

Why: xapi keeps a PCI object only for storage, network and display
controllers (and the functions they depend on), and keeps a function's
SR-IOV relations (PCI.physical_function, PCI.virtual_functions) to
itself; Nova's PCI tracker needs both (a VF's parent address above all).
A function bound to ``pciback`` is one dom0 left to guests
(``xen-pciback.hide`` on dom0's command line, effective after a reboot).

Ids are four lowercase hex digits without ``0x`` (Nova's form), the
class six.  A function whose files cannot be read is left out (it went
away while being read: hot-unplug).  Bad parameters fail
NOVA_XEN_INVALID_ARGUMENT [name, reason]; anything unexpected
NOVA_XEN_PLUGIN_ERROR [exception class, message].  plugin_api_version {}
-> {"api_version": ...} (every nova-xen plugin).

Under a simulator ($DOM0_ROOT set) sysfs is read below $DOM0_ROOT, where
the simulator writes the files of its hosts' devices.
"""

import os
import re

import nova_xen_dom0lib as lib

SYSFS_DEVICES = '/sys/bus/pci/devices'
ADDRESS = re.compile(r'^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$')
VIRTFN = re.compile(r'^virtfn(\d+)$')


def _read_hex(folder, name, digits):
    """A sysfs id file ("0x8086\\n") as ``digits`` lowercase hex digits."""
    with open(os.path.join(folder, name)) as fh:
        value = int(fh.read().strip(), 16)
    return '%0*x' % (digits, value)


def _link_name(folder, name):
    """The last component of the symlink ``folder/name``, or None."""
    path = os.path.join(folder, name)
    if not os.path.islink(path):
        return None
    return os.path.basename(os.readlink(path).rstrip('/'))


def _numa_node(folder):
    try:
        with open(os.path.join(folder, 'numa_node')) as fh:
            node = int(fh.read().strip())
    except (OSError, ValueError):
        return None
    return node if node >= 0 else None   # -1: no NUMA information


def _virtfns(folder):
    found = []
    for name in os.listdir(folder):
        m = VIRTFN.match(name)
        if m:
            found.append((int(m.group(1)), _link_name(folder, name)))
    return [address for _, address in sorted(found) if address]


def read_function(root, address):
    """One function's record, or None when its files are gone."""
    folder = os.path.join(root, address)
    try:
        return {'address': address,
                'class_id': _read_hex(folder, 'class', 6),
                'vendor_id': _read_hex(folder, 'vendor', 4),
                'product_id': _read_hex(folder, 'device', 4),
                'driver': _link_name(folder, 'driver'),
                'physfn': _link_name(folder, 'physfn'),
                'virtfns': _virtfns(folder),
                'numa_node': _numa_node(folder)}
    except (OSError, ValueError):
        return None


def pci_functions(session, params):
    for name in sorted(params):
        raise lib.InvalidArgument(name, 'is not a parameter')
    root = lib.dom0_path(SYSFS_DEVICES)
    functions = []
    names = os.listdir(root) if os.path.isdir(root) else []
    for address in sorted(names):
        if not ADDRESS.match(address):
            continue
        record = read_function(root, address)
        if record is not None:
            functions.append(record)
    return {'functions': functions}


if __name__ == '__main__':
    lib.main({'pci_functions': pci_functions})
