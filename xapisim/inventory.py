"""What a freshly installed XCP-ng 8.3 pool holds, written into the database.

Per host: the host record with its metrics, CPUs, control domain, the
management PIF on eth0 and a local ext SR.  Per pool: the pool record, the
pool-wide network on eth0, the host-internal management network, a shared
NFS SR (the pool's default SR) and the XCP-ng Tools ISO SR.  With real
dom0 networking (``--dom0-network``) the hosts have a second NIC, eth1
(the provider LAN), with its pool-wide network on ``xenbr1``.
"""

import time

from xapisim.db import now_datetime
from xapisim.schema import NULL_REF

API_VERSION = (2, 21)
DOM0_MEMORY = 2 * 1024 ** 3
GIB = 1024 ** 3
MIB = 1024 ** 2

SOFTWARE_VERSION = {
    'product_brand': 'XCP-ng',
    'product_version': '8.3.0',
    'product_version_text': '8.3',
    'product_version_text_short': '8.3',
    'platform_name': 'XCP',
    'platform_version': '3.4.0',
    'build_number': 'release/yangtze/master/58',
    'xapi': '24.19',
    'xapi_build': '24.19.2',
    'xen': '4.17.5-3',
    'linux': '4.19.0+1',
    'xencenter_min': '2.21',
    'xencenter_max': '2.21',
    'network_backend': 'openvswitch',
    'db_schema': '5.780',
}

SM_TYPES = {
    'ext': ('Local EXT3 VHD', ['SR_PROBE', 'SR_UPDATE', 'VDI_CREATE',
                               'VDI_DELETE', 'VDI_ATTACH', 'VDI_DETACH',
                               'VDI_UPDATE', 'VDI_CLONE', 'VDI_SNAPSHOT',
                               'VDI_RESIZE', 'VDI_MIRROR', 'VDI_GENERATE_CONFIG',
                               'THIN_PROVISIONING']),
    'nfs': ('NFS VHD', ['SR_PROBE', 'SR_UPDATE', 'VDI_CREATE', 'VDI_DELETE',
                        'VDI_ATTACH', 'VDI_DETACH', 'VDI_UPDATE', 'VDI_CLONE',
                        'VDI_SNAPSHOT', 'VDI_RESIZE', 'VDI_MIRROR',
                        'VDI_GENERATE_CONFIG', 'THIN_PROVISIONING']),
    'iso': ('ISO', ['VDI_CREATE', 'VDI_DELETE', 'VDI_ATTACH', 'VDI_DETACH',
                    'SR_SCAN', 'SR_ATTACH', 'SR_DETACH']),
    'lvmoiscsi': ('LVHD over iSCSI', ['SR_PROBE', 'SR_UPDATE', 'VDI_CREATE',
                                      'VDI_DELETE', 'VDI_ATTACH', 'VDI_DETACH',
                                      'VDI_CLONE', 'VDI_SNAPSHOT', 'VDI_RESIZE',
                                      'VDI_MIRROR', 'VDI_GENERATE_CONFIG']),
}


def populate(pool):
    db = pool.db
    opts = pool.options
    for sm_type, (name, caps) in SM_TYPES.items():
        db.create('SM', {'name_label': name, 'type': sm_type,
                         'vendor': 'XCP-ng', 'copyright': '', 'version': '1.0',
                         'required_api_version': '1.0', 'capabilities': caps,
                         'features': {c: 1 for c in caps},
                         'driver_filename': '/opt/xensource/sm/%sSR' % sm_type,
                         'required_cluster_stack': []})
    pool_network = db.create('network', {
        'name_label': 'Pool-wide network associated with eth0',
        'bridge': 'xenbr0', 'MTU': 1500, 'managed': True,
        'other_config': {}})
    db.create('network', {
        'name_label': 'Host internal management network',
        'name_description': 'Network on which guests will be assigned a '
                            'private link-local IP address',
        'bridge': 'xenapi', 'MTU': 1500, 'managed': True,
        'other_config': {'is_guest_installer_network': 'true',
                         'is_host_internal_management_network': 'true',
                         'ip_begin': '169.254.0.1', 'ip_end': '169.254.255.254',
                         'netmask': '255.255.0.0'}})
    provider_network = None
    if opts.dom0_network:
        provider_network = db.create('network', {
            'name_label': 'Pool-wide network associated with eth1',
            'bridge': 'xenbr1', 'MTU': 1500, 'managed': True,
            'other_config': {}})
    for host in pool.hosts:
        _add_host(pool, host, pool_network)
        if provider_network is not None:
            _add_pif(pool, host, provider_network, 'eth1', 2, ip='')
    shared_sr = pool.storage.create_sr(
        name_label='NFS storage', sr_type='nfs', shared=True,
        size=opts.sr_size_gib * GIB, hosts=pool.hosts,
        device_config={'server': '127.0.0.1',
                       'serverpath': '/export/xapisim/%s' % pool.uuid})
    pool.storage.create_sr(
        name_label='XCP-ng Tools', sr_type='iso', shared=True, size=0,
        hosts=pool.hosts, content_type='iso',
        device_config={'location': '/opt/xensource/packages/iso',
                       'legacy_mode': 'true'},
        other_config={'xenserver_tools_sr': 'true'})
    master = pool.master
    db.create('pool', {
        'name_label': pool.name_label, 'name_description': '',
        'master': master.ref, 'default_SR': shared_sr,
        'suspend_image_SR': shared_sr, 'crash_dump_SR': master.local_sr,
        'other_config': {'memory-ratio-hvm': '0.25',
                         'memory-ratio-pv': '0.25'},
        'ha_enabled': False, 'tags': [], 'gui_config': {},
        # XCP-ng's v6d lifts every restriction but Corosync's
        'restrictions': {'restrict_pool_size': 'false',
                         'restrict_vtpm': 'false'},
        'cpu_info': {'cpu_count': str(opts.host_cpus * len(pool.hosts)),
                     'socket_count': str(len(pool.hosts)),
                     'vendor': 'GenuineIntel'},
        'uuid': pool.uuid})


def _add_host(pool, host, pool_network):
    db = pool.db
    opts = pool.options
    total = opts.vm_memory_mib * MIB + DOM0_MEMORY
    metrics = db.create('host_metrics', {
        'memory_total': total, 'memory_free': total - DOM0_MEMORY,
        'live': True, 'last_updated': now_datetime(), 'other_config': {}})
    host.ref = db.create('host', {
        'uuid': host.uuid,
        'name_label': host.name_label,
        'name_description': 'Default install',
        'hostname': host.name_label,
        'address': host.address,
        'enabled': True,
        'API_version_major': API_VERSION[0],
        'API_version_minor': API_VERSION[1],
        'API_version_vendor': 'XenSource',
        'software_version': dict(SOFTWARE_VERSION, hostname=host.name_label,
                                 date=time.strftime('%Y-%m-%d')),
        'capabilities': ['xen-3.0-x86_64', 'hvm-3.0-x86_32',
                         'hvm-3.0-x86_32p', 'hvm-3.0-x86_64'],
        'cpu_info': {'cpu_count': str(opts.host_cpus),
                     'socket_count': '1', 'vendor': 'GenuineIntel',
                     'speed': '2394.454', 'modelname': 'Intel(R) Xeon(R) '
                     'Silver 4214 CPU @ 2.20GHz', 'family': '6',
                     'model': '85', 'stepping': '7',
                     'flags': 'fpu de tsc msr pae mce cx8 apic sep mca cmov '
                              'pat clflush mmx fxsr sse sse2 ht syscall nx '
                              'lm constant_tsc rep_good nopl pni pclmulqdq '
                              'ssse3 fma cx16 sse4_1 sse4_2 x2apic movbe '
                              'popcnt aes xsave avx f16c rdrand hypervisor '
                              'lahf_lm abm avx2 bmi1 bmi2 erms',
                     'features_pv': '1fc9cbf5-f6f83203-2991cbf5-00000123',
                     'features_hvm': '1fcbfbff-f7fa3223-2d93fbff-00000423'},
        'metrics': metrics,
        'memory_overhead': 0,
        'sched_policy': 'credit',
        'supported_bootloaders': ['pygrub', 'eliloader'],
        'other_config': {'agent_start_time': '%.0f.' % time.time(),
                         'boot_time': '%.0f.' % (time.time() - 3600),
                         'iscsi_iqn': 'iqn.2024-01.org.xcp-ng:%s'
                                      % host.uuid[:8],
                         'xapisim_dom0_root': host.dom0_root},
        'edition': 'xcp-ng',
        'license_params': {},
        'external_auth_type': '', 'external_auth_service_name': '',
        'external_auth_configuration': {},
        'power_on_mode': '', 'power_on_config': {},
        'local_cache_sr': NULL_REF,
        'chipset_info': {'iommu': 'true'},
        'ssl_legacy': False,
        'guest_VCPUs_params': {},
        'display': 'enabled',
        'virtual_hardware_platform_versions': [0, 1, 2],
        'control_domain': NULL_REF,
        'tags': [], 'logging': {}, 'bios_strings': {},
        'license_server': {'address': 'localhost', 'port': '27000'},
        'cpu_configuration': {},
        'iscsi_iqn': 'iqn.2024-01.org.xcp-ng:%s' % host.uuid[:8],
        'multipathing': False,
        'uefi_certificates': '', 'https_only': False,
        'tls_verification_enabled': True,
    })
    for n in range(opts.host_cpus):
        db.create('host_cpu', {'host': host.ref, 'number': n,
                               'vendor': 'GenuineIntel', 'speed': 2394,
                               'modelname': 'Intel(R) Xeon(R) Silver 4214',
                               'family': 6, 'model': 85, 'stepping': '7',
                               'flags': '', 'features': '',
                               'utilisation': 0.0, 'other_config': {}})
    dom0 = db.create('VM', {
        'name_label': 'Control domain on host: %s' % host.name_label,
        'name_description': 'The domain which manages physical devices '
                            'and manages other domains',
        'power_state': 'Running', 'is_control_domain': True,
        'is_a_template': False, 'domid': 0, 'resident_on': host.ref,
        'affinity': host.ref, 'user_version': 1,
        'memory_static_max': DOM0_MEMORY, 'memory_dynamic_max': DOM0_MEMORY,
        'memory_dynamic_min': DOM0_MEMORY, 'memory_static_min': DOM0_MEMORY,
        'memory_target': DOM0_MEMORY, 'VCPUs_max': 4, 'VCPUs_at_startup': 4,
        'VCPUs_params': {}, 'actions_after_shutdown': 'destroy',
        'actions_after_reboot': 'restart', 'actions_after_crash': 'restart',
        'PV_bootloader': '', 'PV_kernel': '', 'PV_ramdisk': '', 'PV_args': '',
        'PV_bootloader_args': '', 'PV_legacy_args': '',
        'HVM_boot_policy': '', 'HVM_boot_params': {}, 'platform': {},
        'PCI_bus': '', 'other_config': {'storage_driver_domain':
                                        'OpaqueRef:NULL'},
        'recommendations': '', 'domain_type': 'pv'})
    db.set('host', host.ref, control_domain=dom0)
    _add_pif(pool, host, pool_network, 'eth0', 1, ip=host.address)
    host.local_sr = pool.storage.create_sr(
        name_label='Local storage', sr_type='ext', shared=False,
        size=opts.sr_size_gib * GIB, hosts=[host],
        device_config={'device': '/dev/sda3'},
        other_config={'i18n-key': 'local-storage',
                      'i18n-original-value-name_label': 'Local storage',
                      'xapisim_host': host.uuid})


def _add_pif(pool, host, network, device, number, ip):
    """A physical NIC of the host; with ``ip`` its management interface."""
    pool.db.create('PIF', {
        'device': device, 'network': network, 'host': host.ref,
        'MAC': '02:00:00:%02x:%02x:%02x' % (pool.index, host.index, number),
        'MTU': 1500, 'VLAN': -1, 'physical': True, 'currently_attached': True,
        'ip_configuration_mode': 'Static' if ip else 'None', 'IP': ip,
        'netmask': '255.0.0.0' if ip else '', 'gateway': '', 'DNS': '',
        'management': bool(ip), 'managed': True, 'other_config': {},
        'primary_address_type': 'IPv4'})
