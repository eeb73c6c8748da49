"""The simulated dom0's ``/sys/bus/pci``: the files a dom0 plugin reads.

Each function of a host's ``--devices`` spec (every class, also those xapi
does not list) gets the entries Linux makes for it, under the host's dom0
directory::

    sys/bus/pci/devices/0000:04:10.0/class     "0x020000"
                                     vendor    "0x8086"
                                     device    "0x10ed"
                                     numa_node "-1"
                                     driver -> ../../drivers/pciback
                                     physfn -> ../0000:04:00.0
    sys/bus/pci/devices/0000:04:00.0/virtfn0 -> ../0000:04:10.0

A function is bound to ``pciback`` while it is hidden from dom0 (the
running ``xen-pciback.hide``), else to its spec's ``driver_name`` (dom0's
own driver; none when the spec names pciback).  ``bind`` redoes the
driver link after a host reboot changed what is hidden.
"""

import os
import shutil

DEVICES = ('sys', 'bus', 'pci', 'devices')
DRIVERS = ('sys', 'bus', 'pci', 'drivers')
PCIBACK = 'pciback'


def _write(path, text):
    with open(path, 'w') as fh:
        fh.write(text + '\n')


def _link(target, path):
    if os.path.lexists(path):
        os.remove(path)
    if target is not None:
        os.symlink(target, path)


def _driver(spec, hidden):
    if hidden:
        return PCIBACK
    name = spec.get('driver_name') or None
    return None if name == PCIBACK else name


def bind(dom0_root, spec, hidden):
    """Point the function's ``driver`` link at the driver it now has."""
    name = _driver(spec, hidden)
    folder = os.path.join(dom0_root, *DEVICES + (spec['pci_id'],))
    if name is not None:
        os.makedirs(os.path.join(dom0_root, *DRIVERS + (name,)),
                    exist_ok=True)
    _link(None if name is None else
          os.path.join('..', '..', 'drivers', name),
          os.path.join(folder, 'driver'))


def write(dom0_root, functions, hidden):
    """The sysfs of ``functions`` (spec entries); ``hidden``: the set of
    addresses hidden from dom0 now."""
    top = os.path.join(dom0_root, *DEVICES)
    shutil.rmtree(top, ignore_errors=True)
    os.makedirs(top)
    virtfns = {}
    for spec in sorted(functions, key=lambda s: s['pci_id']):
        if spec.get('physfn'):
            virtfns.setdefault(spec['physfn'], []).append(spec['pci_id'])
    for spec in functions:
        address = spec['pci_id']
        folder = os.path.join(top, address)
        os.makedirs(folder)
        # class_id is class and subclass ("0200"); sysfs adds the
        # programming interface byte
        _write(os.path.join(folder, 'class'),
               '0x' + spec['class_id'].lower().ljust(6, '0'))
        _write(os.path.join(folder, 'vendor'), '0x' + spec['vendor_id'])
        _write(os.path.join(folder, 'device'), '0x' + spec['device_id'])
        numa = spec.get('numa_node')
        _write(os.path.join(folder, 'numa_node'),
               str(-1 if numa is None else int(numa)))
        if spec.get('physfn'):
            _link(os.path.join('..', spec['physfn']),
                  os.path.join(folder, 'physfn'))
        for index, vf in enumerate(virtfns.get(address, [])):
            _link(os.path.join('..', vf),
                  os.path.join(folder, 'virtfn%d' % index))
        bind(dom0_root, spec, address in hidden)
