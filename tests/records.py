"""The records tests hand to VM.create: a plain HVM VM, nothing booted."""

MIB = 1024 * 1024
NULL = 'OpaqueRef:NULL'


def vm_record(name='test-vm', memory_mib=128, vcpus=1, affinity=NULL,
              other_config=None, **extra):
    mem = str(memory_mib * MIB)
    record = {
        'name_label': name, 'user_version': '1', 'is_a_template': False,
        'affinity': affinity, 'memory_static_max': mem,
        'memory_dynamic_max': mem, 'memory_dynamic_min': mem,
        'memory_static_min': mem, 'VCPUs_params': {},
        'VCPUs_max': str(vcpus), 'VCPUs_at_startup': str(vcpus),
        'actions_after_shutdown': 'destroy',
        'actions_after_reboot': 'restart', 'actions_after_crash': 'destroy',
        'PV_bootloader': '', 'PV_kernel': '', 'PV_ramdisk': '', 'PV_args': '',
        'PV_bootloader_args': '', 'PV_legacy_args': '',
        'HVM_boot_policy': 'BIOS order', 'HVM_boot_params': {'order': 'dc'},
        'platform': {}, 'PCI_bus': '', 'other_config': dict(other_config or {}),
        'recommendations': ''}
    record.update(extra)
    return record
