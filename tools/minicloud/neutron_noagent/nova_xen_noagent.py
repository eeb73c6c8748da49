"""An ML2 mechanism driver that binds ports without any agent.

For tools/minicloud.sh, where nova-compute drives a simulated XCP-ng pool
and no Open vSwitch, OVN or DHCP agent runs.  Every port bound to a host
on a flat, local or VLAN segment gets ``binding:vif_type = ovs``, as
Neutron's Open vSwitch driver would give it, so that nova-xen plugs its
VIF into the xapi network of the OVS integration bridge.  The port goes
ACTIVE at once (nothing else would ever report it up), which makes Neutron
send Nova the ``network-vif-plugged`` event.

Live migration: Nova binds the port to the destination host as well (an
inactive binding, which this driver binds as any other) and activates
that binding once the VM has moved.  Neutron then sets the port DOWN
until the agent of the new host reports the VIF up; here the driver does
it, as it did at the first binding, so the port is ACTIVE again on the
destination (and Neutron sends Nova network-vif-plugged once more).

    [ml2]
    mechanism_drivers = nova_xen_noagent
"""

from neutron_lib.api.definitions import portbindings
from neutron_lib import constants
from neutron_lib.plugins import directory
from neutron_lib.plugins.ml2 import api
from oslo_config import cfg
from oslo_log import log as logging

LOG = logging.getLogger(__name__)
NAME = 'nova_xen_noagent'     # the entry point of neutron.ml2.mechanism_drivers

OPTS = [
    cfg.StrOpt('integration_bridge', default='br-int',
               help='bridge_name in the vif_details of bound ports'),
    cfg.ListOpt('network_types', default=['flat', 'local', 'vlan'],
                help='segment types this driver binds'),
]
cfg.CONF.register_opts(OPTS, 'nova_xen_noagent')


class NoAgentMechanismDriver(api.MechanismDriver):
    """Binds every port with a host to its first bindable segment."""

    def initialize(self):
        conf = cfg.CONF.nova_xen_noagent
        self.network_types = set(conf.network_types)
        self.vif_details = {
            portbindings.CAP_PORT_FILTER: True,
            portbindings.OVS_HYBRID_PLUG: False,
            portbindings.VIF_DETAILS_BRIDGE_NAME: conf.integration_bridge,
            portbindings.VIF_DETAILS_CONNECTIVITY: self.connectivity,
            'datapath_type': 'system',
        }
        LOG.info('nova_xen_noagent: binding %s ports as ovs on %s',
                 ', '.join(sorted(self.network_types)),
                 conf.integration_bridge)

    @property
    def connectivity(self):
        return portbindings.CONNECTIVITY_L2

    def bind_port(self, context):
        vnic = context.current.get(portbindings.VNIC_TYPE,
                                   portbindings.VNIC_NORMAL)
        if vnic != portbindings.VNIC_NORMAL:
            LOG.debug('not binding port %s: vnic_type %s',
                      context.current['id'], vnic)
            return
        for segment in context.segments_to_bind:
            if segment[api.NETWORK_TYPE] in self.network_types:
                context.set_binding(segment[api.ID],
                                    portbindings.VIF_TYPE_OVS,
                                    dict(self.vif_details),
                                    status=constants.PORT_STATUS_ACTIVE)
                LOG.debug('bound port %s on host %s to segment %s',
                          context.current['id'], context.host,
                          segment[api.ID])
                return
        LOG.debug('not binding port %s: no %s segment in %s',
                  context.current['id'], '/'.join(sorted(self.network_types)),
                  context.segments_to_bind)

    def update_port_postcommit(self, context):
        """A binding of ours became the port's active binding without being
        bound again (Nova activated it at the end of a live migration):
        the VIF is up on that host, as an agent there would report."""
        port = context.current
        levels = context.binding_levels or []
        if (port['status'] != constants.PORT_STATUS_DOWN
                or not port.get('admin_state_up', True)
                or not context.host
                or context.vif_type != portbindings.VIF_TYPE_OVS
                or not levels
                or levels[-1][api.BOUND_DRIVER] != NAME):
            return
        LOG.debug('port %s is active on host %s now: reporting it up',
                  port['id'], context.host)
        try:
            directory.get_plugin().update_port_status(
                context.plugin_context, port['id'],
                constants.PORT_STATUS_ACTIVE, context.host)
        except Exception:
            # the port stays DOWN; the activation itself succeeded
            LOG.exception('could not set port %s ACTIVE on host %s',
                          port['id'], context.host)
