"""VIFs for Neutron ports.

A Neutron port of type ``ovs`` joins the xapi network of the OVS
integration bridge (``[xenserver]ovs_integration_bridge``), where the
Neutron agent in dom0 finds it by ``other_config['nicira-iface-id']``; a
port of type ``bridge`` joins the xapi network of the bridge Neutron names.
"""

import threading
import weakref

from nova import exception
from oslo_log import log as logging

from nova_xen.conf import CONF
from nova_xen import errors

LOG = logging.getLogger(__name__)

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


def find_network_by_bridge(session, bridge):
    known = _known(session)
    network = known.get(bridge)
    if network is None:
        found = session.call('network.get_all_records_where',
                             'field "bridge" = "%s"' % bridge)
        network = next(iter(found), None)
        if network is not None:
            known[bridge] = network
    return network


def integration_network(session, create=True):
    """The xapi network of the OVS integration bridge (created if absent,
    unless ``create`` is false: then None)."""
    bridge = CONF.xenserver.ovs_integration_bridge
    with _network_lock:
        network = _networks.get(session, {}).get(bridge)
    if network is not None:
        return network
    with _network_lock:
        network = None
        found = session.call('network.get_all_records_where',
                             'field "bridge" = "%s"' % bridge)
        network = next(iter(found), None)
        if network is None and create:
            LOG.info('creating xapi network for integration bridge %s',
                     bridge)
            network = session.call('network.create', {
                'name_label': 'nova-xen integration bridge %s' % bridge,
                'name_description': 'VIFs of Neutron OVS ports',
                'bridge': bridge, 'MTU': '1500',
                'other_config': {'nova_role': 'integration-bridge'}})
        if network is not None:
            _networks.setdefault(session, {})[bridge] = network
        return network


def network_for_vif(session, vif, create=True):
    if vif['type'] == 'bridge':
        bridge = vif['network'].get('bridge')
        network = find_network_by_bridge(session, bridge) if bridge else None
    else:
        bridge = CONF.xenserver.ovs_integration_bridge
        network = integration_network(session, create)
    if network is None:
        raise exception.NetworkNotFoundForBridge(bridge=bridge)
    return network


def mtu(vif):
    value = (vif['network'].get('meta') or {}).get('mtu')
    return str(int(value)) if value else '1500'


def fixed_ips(vif):
    """(IPv4 addresses, IPv6 addresses) of a Neutron port."""
    v4, v6 = [], []
    for subnet in vif['network'].get('subnets') or []:
        for ip in subnet.get('ips') or []:
            (v6 if ip.get('version') == 6 or ':' in ip['address']
             else v4).append(ip['address'])
    return v4, v6


def create_vif(session, vm, instance, vif, device):
    try:
        return _create_vif(session, vm, instance, vif, device)
    except exception.NotFound:
        # the network we knew is gone (an operator removed it): look again
        forget_networks(session)
        return _create_vif(session, vm, instance, vif, device)


def _create_vif(session, vm, instance, vif, device):
    network = network_for_vif(session, vif)
    v4, v6 = fixed_ips(vif)
    return session.call('VIF.create', {
        'VM': vm,
        'network': network,
        'device': str(device),
        'MAC': vif['address'],
        'MTU': mtu(vif),
        'other_config': {'nicira-iface-id': vif['id'],
                         'neutron-port-id': vif['id'],
                         'nova_uuid': instance.uuid,
                         'nova_role': 'vif'},
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
    return [create_vif(session, vm, instance, vif, device)
            for device, vif in enumerate(network_info or [])]


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


class Isolation(object):
    """Anti-spoofing rules in dom0 for every VIF of a running VM.

    The ``nova_xen_isolation.py`` plugin filters on the VIF's dom0
    devices (vif<domid>.<n>, and tap<domid>.<n> for HVM guests), whose
    names change with every new domain: rules are re-applied after each
    start, reboot, resume or migration, by the driver or by the VM
    watcher when a domain changes behind Nova's back.
    """

    PLUGIN = 'nova_xen_isolation.py'

    def __init__(self, session, host):
        self.session = session
        self.host = host
        self._applied = {}      # VM ref -> domid whose devices have rules
        self._lock = threading.Lock()
        self._vm_locks = {}     # VM ref -> lock: one apply at a time
        # VM ref -> {VIF ref: what its rules need}: a VIF's uuid, device,
        # MAC and addresses do not change; a new domain needs only its
        # domid (and the VM's list of VIFs) to be read
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
            devices = ['vif%d.%s' % (domid, vif['device'])]
            if hvm:
                devices.append('tap%d.%s' % (domid, vif['device']))
            calls.append({'vif_uuid': vif['uuid'], 'devices': devices,
                          'mac': vif['mac'], 'ipv4': vif['ipv4'],
                          'ipv6': vif['ipv6']})
        _all_at_once([
            lambda args=args: self._call(record['resident_on'],
                                         'apply_rules', args)
            for args in calls])
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
                          'ipv6': rec['ipv6_allowed']}
            if rec['currently_attached']:
                plugged.append(facts[ref])
        with self._lock:
            self._vifs[vm] = facts
        return plugged

    def remove(self, vm, host_ref=None):
        """Drop the rules of every VIF of ``vm`` (before it is destroyed)."""
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
        with self._lock:
            for facts in self._vifs.values():
                for ref, known in list(facts.items()):
                    if known['uuid'] == vif_uuid:
                        del facts[ref]
        self._call(host_ref or self.host.ref, 'remove_rules',
                   {'vif_uuid': vif_uuid})

    def check(self):
        """At start-up: dom0 of this host can filter (nft is installed)."""
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
        return self._call(host_ref or self.host.ref, 'list_rules')['vifs']

    def _call(self, host_ref, fn, args=None):
        """The plugin runs nft in a process dom0 starts for the call: as a
        task, which holds no pooled connection while it runs (a domain's
        every start, reboot, resume, move and removal makes these calls,
        and many may run at once)."""
        return self.session.call_plugin(host_ref, self.PLUGIN, fn, args,
                                        as_task=True)
