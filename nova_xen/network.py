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

LOG = logging.getLogger(__name__)

_network_lock = threading.Lock()


def find_network_by_bridge(session, bridge):
    found = session.call('network.get_all_records_where',
                         'field "bridge" = "%s"' % bridge)
    return next(iter(found), None)


def integration_network(session):
    """The xapi network of the OVS integration bridge (created if absent)."""
    bridge = CONF.xenserver.ovs_integration_bridge
    with _network_lock:
        network = find_network_by_bridge(session, bridge)
        if network is None:
            LOG.info('creating xapi network for integration bridge %s',
                     bridge)
            network = session.call('network.create', {
                'name_label': 'nova-xen integration bridge %s' % bridge,
                'name_description': 'VIFs of Neutron OVS ports',
                'bridge': bridge, 'MTU': '1500',
                'other_config': {'nova_role': 'integration-bridge'}})
        return network


def network_for_vif(session, vif):
    if vif['type'] == 'bridge':
        bridge = vif['network'].get('bridge')
        network = find_network_by_bridge(session, bridge) if bridge else None
        if network is None:
            raise exception.NetworkNotFoundForBridge(bridge=bridge)
        return network
    return integration_network(session)


def mtu(vif):
    value = (vif['network'].get('meta') or {}).get('mtu')
    return str(int(value)) if value else '1500'


def create_vif(session, vm, instance, vif, device):
    network = network_for_vif(session, vif)
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
    })


def create_vifs(session, vm, instance, network_info):
    return [create_vif(session, vm, instance, vif, device)
            for device, vif in enumerate(network_info or [])]
