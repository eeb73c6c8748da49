"""The ``[xenserver]`` configuration group.

Where an option of Nova's former in-tree XenAPI driver still means the same
thing it keeps its name, so an operator's old nova.conf keeps working.
"""

from oslo_config import cfg

GROUP = cfg.OptGroup(
    'xenserver', title='XenServer / XCP-ng options',
    help='How nova-compute reaches the xapi pool it manages (nova-xen).')

CONNECTION_OPTS = [
    cfg.URIOpt(
        'connection_url', schemes=['http', 'https'],
        help='URL of xapi on the pool master (or on any host of the pool: '
             'the driver follows HOST_IS_SLAVE to the master), for example '
             'https://xcp-ng-1.example.com. Credentials do not belong in '
             'the URL.'),
    cfg.StrOpt('connection_username', default='root',
               help='Username for the XenAPI session.'),
    cfg.StrOpt('connection_password', secret=True,
               help='Password for the XenAPI session.'),
    cfg.IntOpt('connection_concurrent', default=16, min=1,
               help='Maximum number of XenAPI calls in flight at once: '
                    'connections to the pool master, which share one '
                    'logged-in session. Waiting for tasks takes none of '
                    'them. For a host that builds many servers at once, '
                    'about three per concurrent build (nova\'s '
                    'max_concurrent_builds) keeps calls from queueing.'),
    cfg.IntOpt('login_timeout', default=10, min=1,
               help='Seconds to wait for xapi to answer a login.'),
    cfg.IntOpt('call_timeout', default=120, min=1,
               help='Seconds to wait for the answer to a synchronous XenAPI '
                    'call. Long operations run as tasks, bounded by '
                    'task_timeout.'),
    cfg.IntOpt('task_timeout', default=1800, min=1,
               help='Seconds to wait for a long XenAPI operation (a task: '
                    'VM start, VDI copy, migration) before cancelling it.'),
    cfg.StrOpt('ca_file',
               help='CA bundle that signed the pool\'s TLS certificates. '
                    'Default: the system trust store.'),
    cfg.BoolOpt('insecure', default=False,
                help='Do not verify xapi\'s TLS certificate. For tests only: '
                     'anyone on the path can impersonate the pool.'),
]

HOST_OPTS = [
    cfg.StrOpt('host_uuid',
               help='UUID of the XenServer/XCP-ng host this nova-compute '
                    'manages. Default: the host that runs this domU, else '
                    'the host named by connection_url, else the only host '
                    'of a one-host pool.'),
    cfg.StrOpt('sr_matching_filter', default='default-sr:true',
               help='Which SR holds instance disks: "default-sr:true" '
                    '(the pool\'s default SR) or "other-config:KEY=VALUE" '
                    '(the first SR whose other_config has KEY=VALUE). The '
                    'SR must be attached to the compute\'s host.'),
    cfg.StrOpt('ovs_integration_bridge', default='br-int',
               help='Integration bridge in dom0 for the VIFs of Neutron '
                    '"ovs" ports whose binding names none (ML2/OVN names '
                    'the chassis\' ovn-bridge, br-int by default, in '
                    'vif_details bridge_name, which wins). nova-compute '
                    'makes an xapi network for each such bridge, '
                    'unmanaged (xapi neither creates nor destroys the '
                    'bridge: ovn-controller owns it) and with '
                    'vswitch-controller-fail-mode=secure; the bridge '
                    'itself must exist in dom0 (ovn-controller creates '
                    'it) before a VM on it can start.'),
    cfg.BoolOpt('isolation_rules', default=True,
                help='Anti-spoofing rules (nftables in dom0, one table per '
                     'VIF: only the port\'s MAC and fixed IPs, DHCP, ARP '
                     'and neighbour discovery) on every VIF of a running '
                     'instance. Keep them as defence in depth; turn them '
                     'off where Neutron\'s own port security does this '
                     '(ML2/OVN). When false: no isolation plugin call at '
                     'start, reboot, resume or migration, nftables is not '
                     'needed in dom0, and the rules a previous run left on '
                     'this host are removed once at start-up.'),
    cfg.StrOpt('neutron_backend', default='auto',
               choices=[('auto', 'ML2/OVN when Neutron lists OVN agents '
                         '(of any host); otherwise the OVN checks only '
                         'report what they see'),
                        ('ovn', 'Neutron uses ML2/OVN: no OVN chassis for '
                         'this host, or a dom0 Open vSwitch not set up '
                         'for it, is a failure of nova-xen-manage check'),
                        ('other', 'Neutron uses another mechanism driver: '
                         'no OVN check')],
               help='Which Neutron backend the OVN checks of start-up and '
                    'nova-xen-manage check assume: whether Neutron has an '
                    'OVN chassis for this compute\'s [DEFAULT]host '
                    '(asked with the [neutron] credentials), and whether '
                    'dom0\'s integration bridge exists in fail mode '
                    'secure.'),
    cfg.IntOpt('running_timeout', default=60, min=1,
               help='Seconds to wait for a started VM to report Running.'),
    cfg.BoolOpt('reap_orphans', default=True,
                help='At start-up, remove halted VMs and unattached disks '
                     'tagged for instances Nova has deleted or never had '
                     '(what a crash mid-spawn or a lost delete leaves). '
                     'When false they are only reported in the log.'),
    cfg.IntOpt('migration_timeout', default=0, min=0,
               help='Seconds a live migration (its xapi task) may take '
                    'before it is cancelled; 0: no limit (an operator can '
                    'abort it: DELETE /servers/{id}/migrations/{id}).'),
    cfg.IntOpt('reclaim_interval', default=60, min=1,
               help='Seconds between two passes of the reclaimer, which '
                    'removes what a failed clean-up left (a disk, a VM or '
                    'a detached volume\'s VBD xapi would not destroy, a '
                    'task, isolation rules of VIFs that no longer exist) '
                    'and finishes what failed after a '
                    'live migration had moved the VM (its affinity, its '
                    'rules), while nova-compute runs. Each pass also '
                    're-reads the port security and allowed address pairs '
                    'of the ports of the VMs running here and re-applies '
                    'their isolation rules when they changed in Neutron: '
                    'the longest such a change takes to reach dom0.'),
    cfg.IntOpt('soft_reboot_timeout', default=120, min=1,
               help='Seconds a soft reboot waits for the guest to restart '
                    'cleanly before xapi reboots it hard.'),
    cfg.BoolOpt('disable_host_with_service', default=False,
                help='Also disable the XenServer host in xapi '
                     '(host.disable) when Nova disables this compute '
                     'service (os-services, os-hosts), as Nova\'s old XenAPI '
                     'driver did. xapi then starts no VM on the host: '
                     'starting a stopped server there, a hard reboot and a '
                     'resize revert onto it fail until the service is '
                     'enabled again. When false (the default) a disabled '
                     'service only stops Nova from scheduling new servers '
                     'to the host, and the servers there keep working. '
                     'Maintenance mode (os-hosts) always disables the host '
                     'in xapi.'),
]

IMAGE_OPTS = [
    cfg.StrOpt('image_handler', default='dom0_plugin',
               choices=[('dom0_plugin',
                         'the nova_xen_images.py plugin in dom0 fetches the '
                         'image from Glance, checks it, and writes it through '
                         'xapi\'s /import_raw_vdi; snapshots are uploaded '
                         'from dom0 too. Dom0 must reach Glance.'),
                        ('vdi_remote_stream',
                         'nova-compute downloads the image from Glance and '
                         'streams it into the VDI through xapi\'s '
                         '/import_raw_vdi (raw or single-VHD images); '
                         'snapshots are uploaded from nova-compute')],
               help='How images travel between Glance and VDIs.'),
    cfg.IntOpt('max_image_size_gb', default=512, min=1,
               help='Largest virtual size (GiB) an image may claim; larger '
                    'images are refused before any storage is used.'),
    cfg.StrOpt('cache_images', default='all',
               choices=[('all', 'every image is imported once per SR into '
                         'a cached base VDI that spawns clone'),
                        ('some', 'only images whose Glance property '
                         'cache_in_nova is true'),
                        ('none', 'every spawn imports its image')],
               help='Which images are kept on the instance SR as cached '
                    'base VDIs (cloned, copy-on-write, for each spawn). '
                    'Unused entries are removed by Nova\'s image cache '
                    'pass after [image_cache]'
                    'remove_unused_original_minimum_age_seconds.'),
    cfg.IntOpt('image_cache_max_chain_depth', default=10, min=1, max=29,
               help='How deep the storage chain of a cached image may be '
                    'when a spawn clones it: the cached VDI and each '
                    'parent below it (sm_config vhd-parent). A deeper '
                    'entry is retired and the image imported again. '
                    'XCP-ng\'s and XenServer\'s storage manager refuses '
                    'to clone or snapshot a disk whose chain is 30 deep '
                    '(SR_BACKEND_FAILURE_109, "The snapshot chain is too '
                    'long"); an instance\'s disk starts at most one level '
                    'deeper than the entry it was cloned from, and each '
                    'snapshot or clone of it (Nova snapshots, resize) needs '
                    'one more level while it exists, so keep this well '
                    'below 30. On VHD SRs an entry stays 2 deep however '
                    'many instances are cloned from it, unless something '
                    'writes into it; on QCOW2 SRs every clone adds a '
                    'level, so an image is imported again after this many '
                    'spawns at most.'),
]

ALL_OPTS = CONNECTION_OPTS + HOST_OPTS + IMAGE_OPTS


def register_opts(conf):
    conf.register_group(GROUP)
    conf.register_opts(ALL_OPTS, group=GROUP)


def list_opts():
    """For oslo-config-generator (entry point ``oslo.config.opts``)."""
    return [(GROUP, ALL_OPTS)]


CONF = cfg.CONF
register_opts(CONF)
