"""What Neutron lets a port send, for the isolation rules in dom0.

Nova's network_info does not carry a port's ``port_security_enabled`` or
its ``allowed_address_pairs``, so the driver asks Neutron for them (one
``list_ports`` for the ports of a spawn, a rescue or an attach) and keeps
them in the VIF's other_config beside its fixed IPs (``ipv4_allowed``,
``ipv6_allowed``), where the isolation rules read them whenever they are
re-applied:

- port security off (a router or firewall VM): the VIF gets no rules;
- allowed address pairs (a VRRP address, a network a VM routes for):
  their addresses or networks are allowed as sources, and their MACs.

Neutron tells Nova of a change to a port only by a ``network-changed``
event, which nova-compute handles by refreshing its network info cache
without calling the driver.  So the reclaimer's every pass
(``[xenserver]reclaim_interval``, 60 s by default) reads the ports of the
VMs running on this host again, in one Neutron call per 100 ports, and
re-applies the rules of a VM whose ports changed: a change reaches dom0
within one interval (plus the pass's own time).

When Neutron cannot be asked at a spawn, the VIF gets the strict rules
(its fixed IPs and MAC only) until a pass can read its port.
"""

import ipaddress
import json

from oslo_log import log as logging

from nova_xen.conf import CONF

LOG = logging.getLogger(__name__)

# VIF other_config keys: 'false' when the port's security is off; the
# allowed address pairs as JSON [[address or network, MAC or null], ...]
SECURITY = 'nova_port_security'
PAIRS = 'nova_allowed_address_pairs'
KEYS = (SECURITY, PAIRS)
FIELDS = ['id', 'port_security_enabled', 'allowed_address_pairs']
# ports per list_ports call (their ids go in the URL)
CHUNK = 100


def neutron_client():
    """An admin client of Neutron from nova.conf's ``[neutron]`` section,
    made as nova-compute makes it."""
    from nova import context as nova_context
    from nova.network import neutron as neutron_api
    if not CONF.neutron.auth_type:
        raise ValueError('[neutron] auth_type is not set: nova-compute has '
                         'no credentials for Neutron')
    return neutron_api.get_client(nova_context.get_admin_context(),
                                  admin=True)


def _pair(pair):
    """[address or network, MAC or None] of one allowed address pair, in
    the form the isolation plugin takes (host bits cleared, as Neutron
    accepts ``10.0.0.5/24`` and OVN allows the network)."""
    net = ipaddress.ip_network(pair['ip_address'], strict=False)
    address = (str(net.network_address) if net.num_addresses == 1
               else str(net))
    mac = pair.get('mac_address')
    return [address, mac.lower() if mac else None]


def config_of(port):
    """The VIF other_config entries that say what ``port`` may send."""
    secure = port.get('port_security_enabled', True) is not False
    pairs = sorted((_pair(pair)
                    for pair in port.get('allowed_address_pairs') or []),
                   key=lambda pair: (pair[0], pair[1] or ''))
    return {SECURITY: 'true' if secure else 'false',
            PAIRS: json.dumps(pairs, separators=(',', ':'))}


def read_ports(port_ids, client=None):
    """{port id: config_of(port)} of the ports Neutron has among
    ``port_ids``; raises what the Neutron client raises."""
    port_ids = sorted(set(port_ids))
    found = {}
    if not port_ids:
        return found
    client = client or neutron_client()
    for start in range(0, len(port_ids), CHUNK):
        reply = client.list_ports(id=port_ids[start:start + CHUNK],
                                  fields=FIELDS)
        for port in reply.get('ports') or []:
            found[port['id']] = config_of(port)
    return found


def lookup(port_ids):
    """What read_ports says, or {} (with a warning) when Neutron cannot be
    asked: the VIFs then get the strict rules until a reclaimer pass
    reads their ports.  Nothing is asked with the isolation rules off."""
    if not CONF.xenserver.isolation_rules:
        return {}
    try:
        return read_ports(port_ids)
    except Exception as exc:
        LOG.warning('cannot read port security and allowed address pairs '
                    'of ports %s from Neutron (%s): their VIFs allow their '
                    'fixed IPs and MAC only until the reclaimer reads them',
                    ', '.join(sorted(port_ids)), exc)
        return {}


def allowed(other_config):
    """(IPv4 pairs, IPv6 pairs, MACs of pairs) a VIF's rules allow besides
    its fixed IPs and MAC, or None when its port's security is off."""
    if other_config.get(SECURITY) == 'false':
        return None
    v4, v6, macs = [], [], []
    for address, mac in json.loads(other_config.get(PAIRS) or '[]'):
        found = v6 if ':' in address else v4
        if address not in found:
            found.append(address)
        if mac and mac not in macs:
            macs.append(mac)
    return v4, v6, macs


class Refresh(object):
    """The reclaimer's sweep that keeps the VIFs of the VMs running on
    this host in step with their ports in Neutron."""

    def __init__(self, session, host, watcher, isolation):
        self.session = session
        self.host = host
        self.watcher = watcher
        self.isolation = isolation
        self._failing = False

    def __call__(self):
        """One pass; returns [('port filter', VIF uuid)] it changed."""
        if not self.isolation.enabled:
            return []
        running = {ref for ref, rec in self.watcher.all_instances().items()
                   if rec['resident_on'] == self.host.ref and
                   rec['power_state'] in ('Running', 'Paused')}
        if not running:
            return []
        vifs = {ref: rec for ref, rec in
                self.session.call('VIF.get_all_records').items()
                if rec['VM'] in running and
                rec['other_config'].get('neutron-port-id')}
        try:
            ports = read_ports(rec['other_config']['neutron-port-id']
                               for rec in vifs.values())
        except Exception as exc:
            # said once until Neutron answers again, not every pass
            (LOG.debug if self._failing else LOG.warning)(
                'cannot read the ports of this host\'s VMs from Neutron: '
                '%s; their isolation rules stay as they are', exc)
            self._failing = True
            return []
        self._failing = False
        changed, vms = [], set()
        for ref, rec in sorted(vifs.items()):
            other = rec['other_config']
            now = ports.get(other['neutron-port-id'])
            if now is None or all(other.get(key) == now[key]
                                  for key in KEYS):
                continue
            for key in KEYS:
                self.session.call('VIF.remove_from_other_config', ref, key)
                self.session.call('VIF.add_to_other_config', ref, key,
                                  now[key])
            LOG.info('port %s of VIF %s changed in Neutron (port security '
                     '%s, allowed address pairs %s): re-applying the '
                     'isolation rules', other['neutron-port-id'],
                     rec['uuid'], 'on' if now[SECURITY] == 'true' else 'off',
                     now[PAIRS])
            changed.append(('port filter', rec['uuid']))
            vms.add(rec['VM'])
        for vm in sorted(vms):
            self.isolation.apply(vm, force=True)
        return changed
