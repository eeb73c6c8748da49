"""VIFs for Neutron ports.

A Neutron port of type ``ovs`` joins the xapi network of the OVS
integration bridge (``[xenserver]ovs_integration_bridge``), where the
Neutron agent in dom0 finds it by ``other_config['nicira-iface-id']``; a
port of type ``bridge`` joins the xapi network of the bridge Neutron names.
"""

import threading

from nova import exception
from oslo_log import log as logging

from nova_xen.conf import CONF
from nova_xen import errors

LOG = logging.getLogger(__name__)

_network_lock = threading.Lock()


def find_network_by_bridge(session, bridge):
    found = session.call('network.get_all_records_where',
                         'field "bridge" = "%s"' % bridge)
    return next(iter(found), None)


def integration_network(session, create=True):
    """The xapi network of the OVS integration bridge (created if absent,
    unless ``create`` is false: then None)."""
    bridge = CONF.xenserver.ovs_integration_bridge
    with _network_lock:
        network = find_network_by_bridge(session, bridge)
        if network is None and create:
            LOG.info('creating xapi network for integration bridge %s',
                     bridge)
            network = session.call('network.create', {
                'name_label': 'nova-xen integration bridge %s' % bridge,
                'name_description': 'VIFs of Neutron OVS ports',
                'bridge': bridge, 'MTU': '1500',
                'other_config': {'nova_role': 'integration-bridge'}})
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


def vif_of_port(session, vm, port_id):
    """The VIF of ``vm`` for a Neutron port, or None."""
    for vif in session.call('VM.get_VIFs', vm):
        other = session.call('VIF.get_other_config', vif)
        if other.get('neutron-port-id') == port_id:
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

    def _vm_lock(self, vm):
        with self._lock:
            return self._vm_locks.setdefault(vm, threading.Lock())

    def apply(self, vm, force=False):
        """The driver (after starting a domain) and the VM watcher (seeing
        a new domain) may both ask: one applies, the other finds it done."""
        with self._vm_lock(vm):
            self._apply(vm, force)

    def _apply(self, vm, force):
        record = self.session.call('VM.get_record', vm)
        domid = int(record['domid'])
        if record['power_state'] not in ('Running', 'Paused') or domid < 0:
            return
        with self._lock:
            if not force and self._applied.get(vm) == domid:
                return
        hvm = bool(record['HVM_boot_policy'])
        calls = []
        for vif in record['VIFs']:
            rec = self.session.call('VIF.get_record', vif)
            if not rec['currently_attached']:
                continue
            devices = ['vif%d.%s' % (domid, rec['device'])]
            if hvm:
                devices.append('tap%d.%s' % (domid, rec['device']))
            calls.append({'vif_uuid': rec['uuid'], 'devices': devices,
                          'mac': rec['MAC'].lower(),
                          'ipv4': rec['ipv4_allowed'],
                          'ipv6': rec['ipv6_allowed']})
        _all_at_once([
            lambda args=args: self.session.call_plugin(
                record['resident_on'], self.PLUGIN, 'apply_rules', args)
            for args in calls])
        with self._lock:
            self._applied[vm] = domid

    def remove(self, vm, host_ref=None):
        """Drop the rules of every VIF of ``vm`` (before it is destroyed)."""
        with self._lock:
            self._applied.pop(vm, None)
            self._vm_locks.pop(vm, None)
        for vif in self.session.call('VM.get_VIFs', vm):
            self.remove_table(self.session.call('VIF.get_uuid', vif),
                              host_ref)

    def remove_table(self, vif_uuid, host_ref=None):
        """Drop the rule table of one VIF (the reclaimer's sweep)."""
        self.session.call_plugin(host_ref or self.host.ref, self.PLUGIN,
                                 'remove_rules', {'vif_uuid': vif_uuid})

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
        return self.session.call_plugin(host_ref or self.host.ref,
                                        self.PLUGIN, 'list_rules')['vifs']
