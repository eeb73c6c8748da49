"""Network interfaces attached to and detached from a server that exists.

A VIF attached to a running VM is plugged (a hot-plug) and gets its
isolation rules at once; one that could not be plugged is destroyed
again, so that a failed attach leaves no VIF behind.  A detached VIF
loses its rule table first, then its device, then its record.
"""

from nova import exception
from oslo_log import log as logging

from nova_xen import network
from nova_xen import storage

LOG = logging.getLogger(__name__)


class Interfaces(object):
    def __init__(self, session, vmops, isolation):
        self.session = session
        self.vmops = vmops
        self.isolation = isolation

    def attach(self, instance, vif):
        vm = self.vmops.vm_ref(instance)
        session = self.session
        device = network.free_device(session, vm)
        ref = network.create_vif(session, vm, instance, vif, device)
        try:
            if session.call('VM.get_power_state', vm) == 'Running':
                session.call_async('VIF.plug', ref)
                self.isolation.apply(vm, force=True)
        except Exception:
            LOG.exception('could not plug the new VIF', instance=instance)
            if session.call('VIF.get_currently_attached', ref):
                session.call_async('VIF.unplug_force', ref)
            session.call('VIF.destroy', ref)
            raise exception.InterfaceAttachFailed(instance_uuid=instance.uuid)

    def detach(self, instance, vif):
        vm = self.vmops.vm_ref(instance)
        session = self.session
        ref = network.vif_of_port(session, vm, vif['id'])
        if ref is None:
            raise exception.NotFound('no VIF for port %s' % vif['id'])
        host = session.call('VM.get_resident_on', vm)
        self.isolation.remove_table(
            session.call('VIF.get_uuid', ref),
            None if host == storage.NULL else host)
        if session.call('VIF.get_currently_attached', ref):
            session.call_async('VIF.unplug', ref)
        session.call('VIF.destroy', ref)
