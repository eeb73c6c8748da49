"""What happens to a domain when a VM runs: domids, devices, metrics, consoles.

A simulated guest boots instantly (after ``--guest-delay``), writes a
console log in its host's dom0 (``/var/log/xen/guest/console.<domid>``),
reports PV drivers through ``VM_guest_metrics`` and cooperates with clean
shutdowns unless the control interface tells it otherwise.  With real
dom0 networking (``xapisim.dom0net``) its VIFs are plugged for real where
their devices appear in the host's sysfs, and a paused domain's guest
is cut off from its networks until it is unpaused.
"""

import os
import shutil
import threading

from xapisim.api import common
from xapisim.api import devices
from xapisim.api import memory
from xapisim.api.vbd import attach_vbd
from xapisim.db import now_datetime
from xapisim.errors import XapiError
from xapisim.schema import NULL_REF

_domid_lock = threading.Lock()


def next_domid(pool, host):
    with _domid_lock:
        pool.domids[host] = pool.domids.get(host, 0) + 1
        return pool.domids[host]


def behaviour(pool, vm):
    """The control interface's overrides for this guest."""
    defaults = {'clean_shutdown': 'ok', 'pv_drivers': True,
                'console': 'Welcome to the xapisim guest.\n'}
    uuid = pool.db.get('VM', vm, 'uuid')
    defaults.update(pool.guest.get(uuid, {}))
    return defaults


def console_log_path(pool, host_ref, domid):
    host = pool.host_by_ref(host_ref)
    return os.path.join(host.dom0_root, 'var', 'log', 'xen', 'guest',
                        'console.%d' % domid)


def vif_devices(pool, vm, host_ref, domid, devices=None, present=True):
    """The dom0 network devices of a domain's VIFs, in the host's sysfs.

    Netback names a VIF's backend device vif<domid>.<device>; an HVM guest
    also has the emulated tap<domid>.<device>.  Plugins that filter guest
    traffic look for them in /sys/class/net, as in a real dom0.
    """
    db = pool.db
    host = pool.host_by_ref(host_ref)
    if host is None or domid is None or domid < 0:
        return
    row = db.row('VM', vm)
    if devices is None:
        devices = [db.get('VIF', vif, 'device') for vif in row['VIFs']]
    kinds = ('vif', 'tap') if row['HVM_boot_policy'] else ('vif',)
    for device in devices:
        for kind in kinds:
            path = os.path.join(host.dom0_root, 'sys', 'class', 'net',
                                '%s%d.%s' % (kind, domid, device))
            if present:
                os.makedirs(path, exist_ok=True)
            elif os.path.isdir(path):
                os.rmdir(path)


def attach_networks(pool, vm, host_ref, networks=None):
    """xapi's Network.attach_for_vm before a domain is built on a host (or
    a VIF plugged) for the networks of the VM's VIFs (or ``networks``).

    xapi makes no bridge for an unmanaged network: dom0 must have it
    already (xapi_network.ml: ``BRIDGE_NOT_AVAILABLE``).  With real dom0
    networking a managed network's missing bridge is made.
    """
    db = pool.db
    host = pool.host_by_ref(host_ref)
    if host is None:
        return
    with db.lock:
        if networks is None:
            networks = [db.get('VIF', vif, 'network')
                        for vif in db.get('VM', vm, 'VIFs')]
        records = [db.record('network', n) for n in networks
                   if db.exists('network', n)]
    for rec in records:
        if not rec['managed'] and not dom0_has_bridge(pool, host,
                                                      rec['bridge']):
            raise XapiError('BRIDGE_NOT_AVAILABLE', rec['bridge'])
    net = pool.world.dom0net
    if net is not None:
        net.make_bridges(host, [rec for rec in records if rec['managed']])


def dom0_has_bridge(pool, host, bridge):
    """Whether the dom0 of ``host`` (a ``world.Host``) has ``bridge``, as
    xcp-networkd's Bridge.get_all says: with real dom0 networking, a
    bridge of its Open vSwitch; else a directory in its ``sys/class/net``
    (where ``--dom0-bridges`` puts one each)."""
    net = pool.world.dom0net
    if net is not None:
        return bridge in net.bridges(host)
    return os.path.isdir(os.path.join(host.dom0_root, 'sys', 'class', 'net',
                                      bridge))


def _domain_up(pool, vm, host, domid, source=None, power_state='Halted',
               attach=False):
    """The domain's VIFs are plugged (``attach``: their networks attached
    first, as for a reboot, whose old domain took the bridges of its
    internal networks with it); if they cannot be, the domain goes (the
    VM back in ``power_state``)."""
    net = pool.world.dom0net
    if net is None:
        return
    try:
        if attach:
            attach_networks(pool, vm, host)
        net.domain_up(pool, vm, host, domid, source)
    except XapiError:
        destroy_domain(pool, vm, power_state)
        raise


def xenstore_dir(pool, host_ref, domid):
    """Where the host's simulated xenstore keeps ``/local/domain/<domid>``
    (a file per node: xapisim/dom0/xenstore-write)."""
    host = pool.host_by_ref(host_ref)
    return os.path.join(host.dom0_root, 'var', 'lib', 'xapisim', 'xenstore',
                        'local', 'domain', str(domid))


def _domain_down(pool, vm, host, domid):
    if domid is not None and domid > 0 and pool.host_by_ref(host):
        # xenstored forgets a dead domain's nodes (vm-data/admin_password
        # with them)
        shutil.rmtree(xenstore_dir(pool, host, domid), ignore_errors=True)
    net = pool.world.dom0net
    if net is not None and domid is not None and domid >= 0:
        net.domain_down(pool, vm, host, domid)


def create_domain(pool, vm, host, paused=False, arriving_from=None):
    """The VM becomes a running (or paused) domain on ``host``.

    ``arriving_from`` (pool, VM): a migration's source, whose devices the
    new domain takes over when the source's domain goes.
    """
    db = pool.db
    domid = next_domid(pool, host)
    with db.lock:
        # read under the lock: a VBD made meanwhile is plugged with the
        # rest (or made after the VM runs)
        row = db.row('VM', vm)
        previous = row['power_state']
        # as xenopsd decides: an unspecified type follows HVM_boot_policy
        domain_type = row['domain_type']
        if domain_type == 'unspecified':
            domain_type = 'hvm' if row['HVM_boot_policy'] else 'pv'
        db.set('VM', vm, power_state='Paused' if paused else 'Running',
               domid=domid, resident_on=host,
               scheduled_to_be_resident_on=NULL_REF,
               memory_target=row['memory_dynamic_max'])
        for vbd in row['VBDs']:
            attach_vbd(db, vbd)
        for vif in row['VIFs']:
            db.set('VIF', vif, currently_attached=True)
        db.set('VM_metrics', row['metrics'], start_time=now_datetime(),
               memory_actual=row['memory_dynamic_max'],
               VCPUs_number=row['VCPUs_at_startup'],
               VCPUs_utilisation={i: 0.0 for i in
                                  range(row['VCPUs_at_startup'])},
               state=['running'], last_updated=now_datetime(),
               current_domain_type=domain_type,
               hvm=domain_type != 'pv')
        _create_consoles(pool, vm, host)
        devices.domain_built(pool, vm, host)
        memory.refresh_metrics(db, host)
        vif_devices(pool, vm, host, domid)
    source = None
    if arriving_from is not None:
        src_pool, src_vm = arriving_from
        source = (src_pool, src_pool.db.get('VM', src_vm, 'resident_on'),
                  src_pool.db.get('VM', src_vm, 'domid'))
    # the boot log first: a guest that boots (guestboot) appends to it
    _write_console_log(pool, vm, host, domid)
    _domain_up(pool, vm, host, domid, source, previous)
    if paused:
        try:
            pause_domain(pool, vm)
        except XapiError:
            destroy_domain(pool, vm, previous)
            raise
    _report_guest_metrics(pool, vm)


def pause_domain(pool, vm):
    """The domain's vCPUs stop: with real dom0 networking nothing reaches
    its guest or leaves it until ``unpause_domain``."""
    net = pool.world.dom0net
    if net is not None:
        net.pause(pool, vm)


def unpause_domain(pool, vm):
    """The domain's vCPUs run again: its guest goes on where it was."""
    net = pool.world.dom0net
    if net is not None:
        net.unpause(pool, vm)


def receive_domain(pool, vm, host):
    """A live migration's new domain on ``host`` (same pool), its
    devices plugged before the source's go (``leave_domain``): its domid."""
    db = pool.db
    with db.lock:
        source = db.get('VM', vm, 'resident_on')
        old_domid = db.get('VM', vm, 'domid')
    domid = next_domid(pool, host)
    if domid == old_domid:
        # a new domain: make the change visible even when the
        # destination's counter happens to match the source's
        domid = next_domid(pool, host)
    vif_devices(pool, vm, host, domid)
    net = pool.world.dom0net
    if net is not None:
        try:
            net.domain_up(pool, vm, host, domid, (pool, source, old_domid))
        except XapiError:
            vif_devices(pool, vm, host, domid, present=False)
            raise
    return domid


def leave_domain(pool, vm, host, domid):
    """The source's domain of a live migration goes."""
    vif_devices(pool, vm, host, domid, present=False)
    _domain_down(pool, vm, host, domid)


def _create_consoles(pool, vm, host_ref):
    db = pool.db
    host = pool.host_by_ref(host_ref)
    for protocol in ('rfb', 'vt100'):
        console = db.create('console', {'protocol': protocol, 'VM': vm,
                                        'location': '', 'other_config': {}})
        uuid = db.get('console', console, 'uuid')
        db.set('console', console,
               location='http://%s:%d/console?uuid=%s'
               % (host.address, host.port or 80, uuid))


def _write_console_log(pool, vm, host, domid):
    db = pool.db
    name = db.get('VM', vm, 'name_label')
    text = ('[    0.000000] Linux version 6.1.0-xapisim (domid %d)\n'
            '[    0.000000] Command line: root=/dev/xvda1 console=hvc0\n'
            '[    1.024000] xen_netfront: Initialising Xen virtual ethernet '
            'driver\n'
            '%s login: \n' % (domid, name)) + behaviour(pool, vm)['console']
    path = console_log_path(pool, host, domid)
    with open(path, 'w') as fh:
        fh.write(text)


def _report_guest_metrics(pool, vm):
    """The guest agent reports (or, without PV drivers, nothing does);
    what the VM may do follows (xapi's check_op_for_feature)."""
    db = pool.db
    if not behaviour(pool, vm)['pv_drivers']:
        common.refresh_vm_allowed(db, vm)
        return
    networks = {}
    for vif in db.get('VM', vm, 'VIFs'):
        row = db.row('VIF', vif)
        for i, ip in enumerate(row['ipv4_allowed']):
            networks['%s/ipv4/%d' % (row['device'], i)] = ip
        for i, ip in enumerate(row['ipv6_allowed']):
            networks['%s/ipv6/%d' % (row['device'], i)] = ip
    gm = db.create('VM_guest_metrics', {
        'os_version': {'name': 'xapisim Linux 6.1', 'distro': 'xapisim',
                       'major': '6', 'minor': '1',
                       'uname': '6.1.0-xapisim'},
        'PV_drivers_version': {'major': '9', 'minor': '4', 'micro': '0',
                               'build': '1'},
        'PV_drivers_up_to_date': True, 'PV_drivers_detected': True,
        'memory': {}, 'disks': {}, 'networks': networks,
        'other': {'feature-shutdown': '1', 'feature-suspend': '1',
                  'feature-poweroff': '1', 'feature-reboot': '1',
                  'feature-vcpu-hotplug': '1', 'has-vendor-device': '0',
                  'platform-feature-multiprocessor-suspend': '1'},
        'last_updated': now_datetime(), 'other_config': {}, 'live': True,
        'can_use_hotplug_vbd': 'yes', 'can_use_hotplug_vif': 'yes'})
    db.set('VM', vm, guest_metrics=gm)
    common.refresh_vm_allowed(db, vm)


def destroy_domain(pool, vm, power_state='Halted'):
    """The domain is gone: the VM is Halted (or Suspended)."""
    db = pool.db
    with db.lock:
        row = db.row('VM', vm)
        host = row['resident_on']
        vif_devices(pool, vm, host, row['domid'], present=False)
        _domain_down(pool, vm, host, row['domid'])
        for vbd in row['VBDs']:
            db.set('VBD', vbd, currently_attached=False)
        for vif in row['VIFs']:
            db.set('VIF', vif, currently_attached=False)
        for console in list(row['consoles']):
            db.destroy('console', console)
        devices.domain_gone(pool, vm)
        gm = row['guest_metrics']
        db.set('VM', vm, power_state=power_state, domid=-1,
               resident_on=NULL_REF, scheduled_to_be_resident_on=NULL_REF,
               guest_metrics=NULL_REF)
        if gm != NULL_REF and db.exists('VM_guest_metrics', gm):
            db.destroy('VM_guest_metrics', gm)
        if db.exists('VM_metrics', row['metrics']):
            db.set('VM_metrics', row['metrics'], state=['halted'],
                   VCPUs_utilisation={}, last_updated=now_datetime())
        if host != NULL_REF and db.exists('host', host):
            memory.refresh_metrics(db, host)
        common.refresh_vm_allowed(db, vm)


def reboot_domain(pool, vm):
    """A new domain replaces the old one; the VM stays Running."""
    db = pool.db
    with db.lock:
        row = db.row('VM', vm)
        host = row['resident_on']
        domid = next_domid(pool, host)
        gm = row['guest_metrics']
        vif_devices(pool, vm, host, row['domid'], present=False)
        _domain_down(pool, vm, host, row['domid'])
        db.set('VM', vm, domid=domid, power_state='Running',
               guest_metrics=NULL_REF)
        vif_devices(pool, vm, host, domid)
        _write_console_log(pool, vm, host, domid)
        _domain_up(pool, vm, host, domid, attach=True)
        if gm != NULL_REF and db.exists('VM_guest_metrics', gm):
            db.destroy('VM_guest_metrics', gm)
        db.set('VM_metrics', row['metrics'], start_time=now_datetime(),
               state=['running'], last_updated=now_datetime())
    _report_guest_metrics(pool, vm)
