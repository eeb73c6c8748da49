"""Which Tempest compute features the installed nova-xen driver supports.

Prints one line per Tempest ``[compute-feature-enabled]`` option,
``<option> True|False``, decided by what ``nova_xen.driver.XenAPIDriver``
actually implements: a feature is True only when the driver overrides every
``ComputeDriver`` method the feature needs (the base class raises
NotImplementedError), has the capabilities it needs, and uses the Nova
modules it cannot work without.  devstack/plugin.sh (``stack test-config``)
writes the answers into tempest.conf, so the flags follow the driver as it
grows instead of a list kept by hand.

Whether the deployment allows a feature (a second compute for migrations, a
console proxy) is the plugin's business, not this script's.

Run with a Python that can import nova and nova_xen.
"""

import importlib
import sys

# option: (ComputeDriver methods, capabilities, modules the driver must use)
FEATURES = {
    'pause': (('pause', 'unpause'), (), ()),
    'suspend': (('suspend', 'resume'), (), ()),
    'rescue': (('rescue', 'unrescue'), (), ()),
    'snapshot': (('snapshot',), (), ()),
    # shelve = power off + snapshot; unshelve spawns from the snapshot
    'shelve': (('snapshot', 'power_off', 'power_on'), (), ()),
    'resize': (('migrate_disk_and_power_off', 'finish_migration',
                'confirm_migration', 'finish_revert_migration'), (), ()),
    'cold_migration': (('migrate_disk_and_power_off', 'finish_migration',
                        'confirm_migration', 'finish_revert_migration'),
                       (), ()),
    'live_migration': (('live_migration',
                        'check_can_live_migrate_destination',
                        'check_can_live_migrate_source',
                        'pre_live_migration'), (), ()),
    'console_output': (('get_console_output',), (), ()),
    'vnc_console': (('get_vnc_console',), (), ()),
    'spice_console': (('get_spice_console',), (), ()),
    'serial_console': (('get_serial_console',), (), ()),
    'change_password': (('set_admin_password',), (), ()),
    'interface_attach': (('attach_interface', 'detach_interface'),
                         ('supports_attach_interface',), ()),
    'swap_volume': (('swap_volume',), (), ()),
    'volume_multiattach': (('attach_volume', 'detach_volume'),
                           ('supports_multiattach',), ()),
    # a config drive is built with nova.virt.configdrive
    'config_drive': ((), (), ('nova.virt.configdrive',)),
    # Nova's volume encryptors (os-brick) work on a block device of the
    # compute host; xapi attaches volumes as SRs in dom0
    'attach_encrypted_volume': (('attach_volume',), (),
                                ('os_brick.encryptors',)),
}


def overrides(cls, base, name):
    """The driver implements ``name`` (a stub that refuses does not)."""
    method = getattr(cls, name, None)
    return method is not getattr(base, name, None) and \
        not getattr(method, 'unsupported', False)


def uses(module_name):
    """Whether a loaded nova_xen module refers to ``module_name``."""
    target = sys.modules.get(module_name)
    for name, module in list(sys.modules.items()):
        if module is None or name.split('.')[0] != 'nova_xen':
            continue
        for value in list(vars(module).values()):
            if target is not None and value is target:
                return True
            if getattr(value, '__module__', None) == module_name:
                return True
    return False


def features(cls, base):
    result = {}
    for option, (methods, capabilities, modules) in sorted(FEATURES.items()):
        result[option] = (
            all(overrides(cls, base, m) for m in methods) and
            all(cls.capabilities.get(c) for c in capabilities) and
            all(uses(m) for m in modules))
    return result


def main():
    base = importlib.import_module('nova.virt.driver').ComputeDriver
    cls = importlib.import_module('nova_xen.driver').XenAPIDriver
    for option, supported in sorted(features(cls, base).items()):
        print(option, supported)
    return 0


if __name__ == '__main__':
    sys.exit(main())
