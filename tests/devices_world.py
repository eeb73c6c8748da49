"""A world's PCI devices and GPUs (xapisim ``--devices``) for the tests.

Host 1 (xcp-ng-1-1): a SATA controller dom0 boots from, an Intel 82599
NIC (PF 04:00.0 with a VF 04:10.0) and two Tesla T4 GPUs hidden from dom0,
an I210 NIC dom0 still uses, and a USB controller (a class xapi does not
list).  Host 2 (xcp-ng-1-2): one Tesla T4 and one 82599 PF, hidden.
"""

import copy


def _pci(pci_id, class_id, vendor_id, device_id, device_name, hidden=True,
         **extra):
    entry = {'pci_id': pci_id, 'class_id': class_id,
             'class_name': {'01': 'Mass storage controller',
                            '02': 'Ethernet controller',
                            '03': '3D controller',
                            '0c': 'USB controller'}[class_id[:2]],
             'vendor_id': vendor_id, 'device_id': device_id,
             'vendor_name': {'8086': 'Intel Corporation',
                             '10de': 'NVIDIA Corporation'}[vendor_id],
             'device_name': device_name,
             'dom0_access': 'disabled' if hidden else 'enabled',
             'driver_name': 'pciback' if hidden else 'ixgbe'}
    entry.update(extra)
    return entry


def _t4(pci_id):
    return _pci(pci_id, '0302', '10de', '1eb8', 'TU104GL [Tesla T4]',
                gpu={'group': 'Tesla T4', 'size': 16,
                     'types': ['GRID T4-4Q', 'GRID T4-8Q']})


SPEC = {
    'vgpu_types': [
        {'model_name': 'GRID T4-4Q', 'vendor_name': 'NVIDIA Corporation',
         'implementation': 'nvidia', 'size': 4, 'max_heads': 4,
         'framebuffer_size': 4 << 30},
        {'model_name': 'GRID T4-8Q', 'vendor_name': 'NVIDIA Corporation',
         'implementation': 'nvidia', 'size': 8, 'max_heads': 4,
         'framebuffer_size': 8 << 30}],
    'hosts': {
        'xcp-ng-1-1': {'pci': [
            _pci('0000:00:1f.2', '0106', '8086', '2922', 'SATA AHCI',
                 hidden=False, boot_device=True),
            _pci('0000:04:00.0', '0200', '8086', '10fb', '82599ES SFP+',
                 dependencies=['0000:04:10.0']),
            _pci('0000:04:10.0', '0200', '8086', '10ed', '82599 VF',
                 physfn='0000:04:00.0'),
            _pci('0000:06:00.0', '0200', '8086', '1533', 'I210',
                 hidden=False),
            _pci('0000:07:00.0', '0c03', '8086', '8c31', 'USB xHCI'),
            _t4('0000:81:00.0'),
            _t4('0000:82:00.0')]},
        'xcp-ng-1-2': {'pci': [
            _pci('0000:04:00.0', '0200', '8086', '10fb', '82599ES SFP+'),
            _t4('0000:81:00.0')]},
    }}


def spec():
    """A copy to change freely."""
    return copy.deepcopy(SPEC)
