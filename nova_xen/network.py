"""VIFs for Neutron ports.

A Neutron port of type ``ovs`` joins the xapi network of the integration
bridge Neutron names in its binding (``vif_details['bridge_name']``:
ML2/OVN's chassis ``ovn-bridge``, br-int by default), else of
``[xenserver]ovs_integration_bridge``.  ovn-controller owns that bridge
and finds the VIF's dom0 device by its ``iface-id``, which XCP-ng's
ovs-xapi-sync copies from the VIF's ``other_config['nicira-iface-id']``.
The xapi network is unmanaged (xapi neither creates nor destroys the
bridge) with ``vswitch-controller-fail-mode=secure`` (else xapi's
ovs-xapi-sync and networkd set ``standalone`` on the bridge).  A port of
type ``bridge`` joins the xapi network of the bridge Neutron names.
"""

import threading
import weakref

from nova import exception
from oslo_log import log as logging

from nova_xen.conf import CONF
from nova_xen import errors
from nova_xen import portfilter

LOG = logging.getLogger(__name__)

INTEGRATION_ROLE = 'integration-bridge'
FAIL_MODE = 'vswitch-controller-fail-mode'

_network_lock = threading.Lock()
# session -> {bridge: xapi network}: networks are looked up once, not for
# every VIF (a network that goes is forgotten: see create_vif)
_networks = weakref.WeakKeyDictionary()


def _known(session):
    with _network_lock:
        return _networks.setdefault(session, {})


def forget_networks(session):
    with _network_lock:
        _networks.pop(session, None)


def networks_of_bridge(session, bridge):
    """{ref: record} of the xapi networks whose bridge is ``bridge``."""
    return session.call('network.get_all_records_where',
                        'field "bridge" = "%s"' % bridge)


def find_network_by_bridge(session, bridge):
    known = _known(session)
    network = known.get(bridge)
    if network is None:
        network = next(iter(networks_of_bridge(session, bridge)), None)
        if network is not None:
            known[bridge] = network
    return network


def integration_bridge(vif=None):
    """The bridge of an ``ovs`` port: the one Neutron's binding names,
    else ``[xenserver]ovs_integration_bridge``."""
    details = (vif or {}).get('details') or {}
    return details.get('bridge_name') or CONF.xenserver.ovs_integration_bridge


def integration_problem(record, bridge):
    """What is wrong with the xapi network ``record`` of an integration
    bridge, in a sentence short enough for an instance fault, or None."""
    if record['managed']:
        if record['other_config'].get('nova_role') == INTEGRATION_ROLE:
            return ('xapi manages the network of bridge %s (an older '
                    'nova-xen made it, uuid %s), so it would make and unmake '
                    'the bridge ovn-controller owns: nova-compute replaces '
                    'it with an unmanaged one when it starts and no VIF is '
                    'on it (%d are)' % (bridge, record['uuid'],
                                        len(record['VIFs'])))
        return ('xapi manages the network of bridge %s, so it would make and '
                'unmake the bridge ovn-controller owns: xe network-destroy '
                'uuid=%s; nova-compute makes an unmanaged one'
                % (bridge, record['uuid']))
    if record['other_config'].get(FAIL_MODE) != 'secure':
        return ('the xapi network of bridge %s (uuid %s) has no other_config '
                '%s=secure: ovs-xapi-sync then sets the bridge to fail mode '
                'standalone, a learning switch without isolation whenever '
                'its controller is away; nova-compute sets it when it starts'
                % (bridge, record['uuid'], FAIL_MODE))
    return None


def integration_network(session, bridge=None, create=True):
    """The xapi network of an integration bridge (by default
    ``[xenserver]ovs_integration_bridge``), made unmanaged and secure if
    absent, unless ``create`` is false (then None: nothing is changed)."""
    bridge = bridge or CONF.xenserver.ovs_integration_bridge
    with _network_lock:
        network = _networks.get(session, {}).get(bridge)
    if network is not None:
        return network
    with _network_lock:
        found = networks_of_bridge(session, bridge)
        network, record = next(iter(found.items()), (None, None))
        if create:
            network = _adopt(session, bridge, network, record)
        if network is not None:
            _networks.setdefault(session, {})[bridge] = network
        return network


def _adopt(session, bridge, network, record):
    """The network ``record`` of ``bridge`` made fit for VIFs, or a new
    one; IntegrationNetworkUnfit if it is managed by xapi and not made by
    nova-xen (nothing is changed then)."""
    if record is not None:
        problem = integration_problem(record, bridge)
        if problem is None:
            return network
        ours = record['other_config'].get('nova_role') == INTEGRATION_ROLE
        if record['managed'] and not ours:
            # xapi would make and unmake the bridge ovn-controller owns:
            # no VIF of ours goes there
            raise errors.IntegrationNetworkUnfit(reason=problem)
        if not record['managed'] or record['VIFs']:
            # an older nova-xen's network with VIFs stays until they go
            LOG.warning('%s', problem)
            if record['other_config'].get(FAIL_MODE) != 'secure':
                session.call('network.add_to_other_config', network,
                             FAIL_MODE, 'secure')
            return network
        LOG.warning('replacing the managed xapi network %s of bridge %s '
                    '(an older nova-xen made it, no VIF is on it) with an '
                    'unmanaged one', record['uuid'], bridge)
        try:
            session.call('network.destroy', network)
        except exception.NotFound:
            pass        # another nova-compute of the pool replaced it
    LOG.info('creating the xapi network of integration bridge %s', bridge)
    try:
        return session.call('network.create', {
            'name_label': 'nova-xen integration bridge %s' % bridge,
            'name_description': 'VIFs of Neutron OVS/OVN ports; the bridge '
                                'belongs to ovn-controller (unmanaged: xapi '
                                'neither creates nor destroys it)',
            'bridge': bridge, 'MTU': '1500', 'managed': False,
            'other_config': {'nova_role': INTEGRATION_ROLE,
                             FAIL_MODE: 'secure'}})
    except errors.XenAPIError as exc:
        if exc.xapi_code != 'BRIDGE_NAME_EXISTS':
            raise
        # another nova-compute of the pool made it meanwhile
        return next(iter(networks_of_bridge(session, bridge)))


def network_for_vif(session, vif, create=True):
    if vif['type'] == 'bridge':
        bridge = vif['network'].get('bridge')
        network = find_network_by_bridge(session, bridge) if bridge else None
    else:
        bridge = integration_bridge(vif)
        network = integration_network(session, bridge, create)
    if network is None:
        raise exception.NetworkNotFoundForBridge(bridge=bridge)
    return network


def neutron_mtu(vif):
    """The MTU Neutron gives the port's network, or None."""
    value = (vif['network'].get('meta') or {}).get('mtu')
    return str(int(value)) if value else None


def mtu(vif):
    return neutron_mtu(vif) or '1500'


def fixed_ips(vif):
    """(IPv4 addresses, IPv6 addresses) of a Neutron port."""
    v4, v6 = [], []
    for subnet in vif['network'].get('subnets') or []:
        for ip in subnet.get('ips') or []:
            (v6 if ip.get('version') == 6 or ':' in ip['address']
             else v4).append(ip['address'])
    return v4, v6


def create_vif(session, vm, instance, vif, device, ports=None):
    """A VIF for the Neutron port ``vif``; ``ports``: what
    portfilter.lookup said of it (asked here if not given)."""
    if ports is None:
        ports = portfilter.lookup([vif['id']])
    try:
        return _create_vif(session, vm, instance, vif, device, ports)
    except exception.NotFound:
        # the network we knew is gone (an operator removed it): look again
        forget_networks(session)
        return _create_vif(session, vm, instance, vif, device, ports)


def _create_vif(session, vm, instance, vif, device, ports):
    network = network_for_vif(session, vif)
    v4, v6 = fixed_ips(vif)
    other_config = {'nicira-iface-id': vif['id'],
                    'neutron-port-id': vif['id'],
                    'nova_uuid': instance.uuid,
                    'nova_role': 'vif'}
    # port security and allowed address pairs, for the isolation rules
    other_config.update(ports.get(vif['id']) or {})
    if neutron_mtu(vif):
        # what xapi hands xenopsd for the dom0 device: other_config's mtu,
        # else the network's (VIF.MTU only reports the plugged device's)
        other_config['mtu'] = neutron_mtu(vif)
    return session.call('VIF.create', {
        'VM': vm,
        'network': network,
        'device': str(device),
        'MAC': vif['address'],
        'MTU': mtu(vif),
        'other_config': other_config,
        'qos_algorithm_type': '',
        'qos_algorithm_params': {},
        'locking_mode': 'network_default',
        # the addresses the isolation rules allow, kept with the VIF so
        # that rules can be re-applied whenever its domain changes
        'ipv4_allowed': v4,
        'ipv6_allowed': v6,
    })


def vifs_of(session, vm):
    """{VIF ref: record} of every VIF of ``vm``, in one call."""
    return session.call('VIF.get_all_records_where',
                        'field "VM" = "%s"' % vm)


def vif_of_port(session, vm, port_id):
    """The VIF of ``vm`` for a Neutron port, or None."""
    for vif, record in vifs_of(session, vm).items():
        if record['other_config'].get('neutron-port-id') == port_id:
            return vif
    return None


def free_device(session, vm):
    allowed = session.call('VM.get_allowed_VIF_devices', vm)
    if not allowed:
        raise exception.InterfaceAttachFailed(
            instance_uuid=session.call('VM.get_uuid', vm))
    return allowed[0]


def create_vifs(session, vm, instance, network_info):
    network_info = network_info or []
    ports = portfilter.lookup([vif['id'] for vif in network_info])
    return [create_vif(session, vm, instance, vif, device, ports)
            for device, vif in enumerate(network_info)]


def _all_at_once(actions):
    """Run ``actions`` side by side (each VIF's rules are one plugin call,
    and a guest that just moved runs unfiltered until the last is done);
    raise the first failure once all have ended."""
    if len(actions) < 2:
        for action in actions:
            action()
        return
    failures = []

    def run(action):
        try:
            action()
        except Exception as exc:
            failures.append(exc)
    threads = [threading.Thread(target=run, args=(action,),
                                name='nova-xen-isolation')
               for action in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def start_on_host(session, host):
    """nova-compute's start on ``host`` (a host.Host): the xapi network of
    the integration bridge, and the isolation rules' check (nftables in
    dom0) or, with them off, the removal of the rules a run left; the
    Isolation."""
    try:
        integration_network(session)
    except errors.IntegrationNetworkUnfit as exc:
        # said here, and by every spawn that would use it
        LOG.warning('%s', exc)
    isolation = Isolation(session, host)
    isolation.check()
    isolation.sweep_leftovers()
    return isolation


class Isolation(object):
    """Anti-spoofing rules in dom0 for every VIF of a running VM.

    The ``nova_xen_isolation.py`` plugin filters on the VIF's dom0
    devices (vif<domid>.<n>, and tap<domid>.<n> for HVM guests), whose
    names change with every new domain: rules are re-applied after each
    start, reboot, resume or migration, by the driver or by the VM
    watcher when a domain changes behind Nova's back.

    With ``[xenserver]isolation_rules = false`` nothing here calls the
    plugin (``sweep_leftovers`` excepted, once at start-up): no rules,
    and no need for nftables in dom0.
    """

    PLUGIN = 'nova_xen_isolation.py'

    def __init__(self, session, host):
        self.session = session
        self.host = host
        self.enabled = CONF.xenserver.isolation_rules
        self._applied = {}      # VM ref -> domid whose devices have rules
        self._lock = threading.Lock()
        self._vm_locks = {}     # VM ref -> lock: one apply at a time
        # VM ref -> {VIF ref: what its rules need}: a VIF's uuid, device,
        # MAC and addresses do not change, nor its port's security and
        # pairs but through portfilter.Refresh, which re-reads them (force);
        # a new domain needs only its domid (and the VM's VIFs) to be read
        self._vifs = {}

    def _vm_lock(self, vm):
        with self._lock:
            return self._vm_locks.setdefault(vm, threading.Lock())

    def apply(self, vm, force=False, record=None):
        """The driver (after starting a domain) and the VM watcher (seeing
        a new domain) may both ask: one applies, the other finds it done.
        ``record``: the VM's record as the caller has it (the watcher's,
        or one it has just read), so that it is not read again; ``force``
        reads the VM and its VIFs afresh (a VIF was just plugged)."""
        if not self.enabled:
            return
        with self._vm_lock(vm):
            self._apply(vm, force, record)

    def _apply(self, vm, force, record):
        if force or record is None or not all(
                key in record for key in ('domid', 'power_state', 'VIFs',
                                          'HVM_boot_policy', 'resident_on')):
            record = self.session.call('VM.get_record', vm)
        domid = int(record['domid'])
        if record['power_state'] not in ('Running', 'Paused') or domid < 0:
            return
        with self._lock:
            if not force and self._applied.get(vm) == domid:
                return
        hvm = bool(record['HVM_boot_policy'])
        calls = []
        for vif in self._vif_facts(vm, record['VIFs'], force):
            if vif['pairs'] is None:
                # port security off: no rules, and none left from before
                calls.append(('remove_rules', {'vif_uuid': vif['uuid']}))
                continue
            devices = ['vif%d.%s' % (domid, vif['device'])]
            if hvm:
                devices.append('tap%d.%s' % (domid, vif['device']))
            v4, v6, macs = vif['pairs']
            args = {'vif_uuid': vif['uuid'], 'devices': devices,
                    'mac': vif['mac'], 'ipv4': vif['ipv4'] + v4,
                    'ipv6': vif['ipv6'] + v6}
            if macs:
                args['macs'] = macs
            calls.append(('apply_rules', args))
        _all_at_once([
            lambda fn=fn, args=args: self._call(record['resident_on'],
                                                fn, args)
            for fn, args in calls])
        with self._lock:
            self._applied[vm] = domid

    def _vif_facts(self, vm, refs, fresh=False):
        """What the rules of each plugged VIF of ``vm`` need (``refs``:
        its VIFs).  Known VIFs are not read again: a new domain plugs
        every VIF of its VM; VIFs read afresh must be plugged."""
        with self._lock:
            known = dict(self._vifs.get(vm, {}))
        if not fresh and all(ref in known for ref in refs):
            return [known[ref] for ref in refs]
        facts, plugged = {}, []
        for ref, rec in vifs_of(self.session, vm).items():
            facts[ref] = {'uuid': rec['uuid'], 'device': rec['device'],
                          'mac': rec['MAC'].lower(),
                          'ipv4': rec['ipv4_allowed'],
                          'ipv6': rec['ipv6_allowed'],
                          'pairs': portfilter.allowed(rec['other_config'])}
            if rec['currently_attached']:
                plugged.append(facts[ref])
        with self._lock:
            self._vifs[vm] = facts
        return plugged

    def remove(self, vm, host_ref=None):
        """Drop the rules of every VIF of ``vm`` (before it is destroyed)."""
        if not self.enabled:
            return
        with self._lock:
            self._applied.pop(vm, None)
            self._vm_locks.pop(vm, None)
            known = self._vifs.pop(vm, None)
        if known is None:
            uuids = [rec['uuid']
                     for rec in vifs_of(self.session, vm).values()]
        else:
            uuids = [facts['uuid'] for facts in known.values()]
        for uuid in uuids:
            self.remove_table(uuid, host_ref)

    def remove_table(self, vif_uuid, host_ref=None):
        """Drop the rule table of one VIF (the reclaimer's sweep)."""
        if not self.enabled:
            return
        with self._lock:
            for facts in self._vifs.values():
                for ref, known in list(facts.items()):
                    if known['uuid'] == vif_uuid:
                        del facts[ref]
        self._call(host_ref or self.host.ref, 'remove_rules',
                   {'vif_uuid': vif_uuid})

    def check(self):
        """At start-up: dom0 of this host can filter (nft is installed)."""
        if not self.enabled:
            return
        try:
            self.rules()
        except errors.PluginError as exc:
            if exc.xapi_code != 'NOVA_XEN_ISOLATION_UNAVAILABLE':
                raise
            raise errors.StartupError(reason=(
                'Network isolation cannot work on host %s: %s. Install the '
                'nftables package in its dom0 (see the nova-xen dom0 plugins '
                'README).' % (self.host.nodename, exc.params[0]
                              if exc.params else exc.xapi_code)))

    def rules(self, host_ref=None):
        """{VIF uuid: [device]} with rules in dom0 ({} when they are off)."""
        if not self.enabled:
            return {}
        return self._call(host_ref or self.host.ref, 'list_rules')['vifs']

    def _call(self, host_ref, fn, args=None):
        """The plugin runs nft in a process dom0 starts for the call: as a
        task, which holds no pooled connection while it runs (a domain's
        every start, reboot, resume, move and removal makes these calls,
        and many may run at once)."""
        return self.session.call_plugin(host_ref, self.PLUGIN, fn, args,
                                        as_task=True)

    def sweep_leftovers(self):
        """With the rules off, once at start-up: remove the tables a run
        with them on left in this host's dom0 (best effort: without nft
        or the plugin there are none to remove)."""
        if self.enabled:
            return 0
        try:
            tables = self._call(self.host.ref, 'list_rules')['vifs']
            for vif_uuid in sorted(tables):
                self._call(self.host.ref, 'remove_rules',
                           {'vif_uuid': vif_uuid})
        except Exception as exc:
            LOG.debug('isolation rules are off; none removed: %s', exc)
            return 0
        if tables:
            LOG.info('isolation rules are off ([xenserver]isolation_rules): '
                     'removed the rules of %d VIFs from dom0 of %s',
                     len(tables), self.host.nodename)
        return len(tables)
