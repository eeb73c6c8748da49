"""Start-up reconciliation: what a crash or a lost delete left in the pool.

Every object the driver creates is tagged with its instance's UUID.  At
start-up, the instances Nova has on this host are compared with the tagged
objects the pool holds:

* a halted VM of this host, or a disk attached to no VM, whose instance
  Nova has deleted (or never had) is clearly orphaned: it is reported and,
  with ``[xenserver]reap_orphans`` (the default), removed;
* a running VM whose instance is gone is only reported (Nova's own
  ``running_deleted_instance_action`` decides what to do with it);
* anything whose instance lives on another host is left alone;
* a rescue VM of this host whose instance is not (or no longer) rescued
  is removed with its rescue disk (the instance's own disk stays).
"""

from nova import context as nova_context
from nova import exception
from nova import objects
from oslo_log import log as logging

from nova_xen.conf import CONF
from nova_xen import events
from nova_xen import rescue
from nova_xen import resize
from nova_xen import storage

LOG = logging.getLogger(__name__)
# what _vm_state says of an instance Nova deleted, or never had
DELETED = 'deleted'
UNKNOWN = 'unknown to Nova'


class Reconciler(object):
    def __init__(self, session, host, watcher, isolation, resizes=None):
        self.session = session
        self.host = host
        self.watcher = watcher
        self.isolation = isolation
        self.resizes = resizes        # resize.Resize

    def _gone(self, context, uuid):
        """True when Nova has deleted (or never had) the instance."""
        return self._vm_state(uuid) in (DELETED, UNKNOWN)

    def run(self, context, known_uuids):
        """Report and (maybe) remove orphans; returns what was found."""
        reap = CONF.xenserver.reap_orphans
        found = {'vms': [], 'vdis': [], 'removed': []}
        for vm, record in self.watcher.all_instances().items():
            uuid = record['other_config']['nova_uuid']
            if uuid in known_uuids or \
                    not events.owned_by(record, self.host.ref):
                continue
            if not self._gone(context, uuid):
                LOG.warning('VM %s of instance %s is on this host but Nova '
                            'places the instance elsewhere; leaving it',
                            record['name_label'], uuid)
                continue
            found['vms'].append(vm)
            if record['power_state'] != 'Halted':
                LOG.warning('VM %s still runs although instance %s was '
                            'deleted; left to running_deleted_instance_action',
                            record['name_label'], uuid)
                continue
            LOG.warning('orphaned VM %s of deleted instance %s%s',
                        record['name_label'], uuid,
                        ': removing it' if reap else '')
            if reap:
                self._remove_vm(vm, uuid)
                found['removed'].append(vm)
        self._rescues(found, reap)
        if self.resizes is not None:
            self._resize_originals(found)
        for vdi, record in self.session.call('VDI.get_all_records').items():
            uuid = record['other_config'].get('nova_uuid')
            if not uuid or record['VBDs'] or uuid in known_uuids or \
                    not record['managed'] or not self._gone(context, uuid):
                continue
            found['vdis'].append(vdi)
            LOG.warning('orphaned %s disk %s of deleted instance %s%s',
                        record['other_config'].get('nova_role', ''),
                        record['uuid'], uuid, ': removing it' if reap else '')
            if reap:
                storage.destroy_vdi(self.session, vdi)
                found['removed'].append(vdi)
        return found

    def _rescues(self, found, reap):
        """Rescue VMs whose instance is no longer rescued (an unrescue or a
        delete lost in a crash): they hold the instance's disk."""
        for vm, record in rescue.rescue_vms(self.watcher).items():
            if events.host_of(record) != self.host.ref:
                continue
            uuid = record['other_config'][rescue.TAG]
            state = self._vm_state(uuid)
            if state == 'rescued':
                continue
            found['vms'].append(vm)
            LOG.warning('rescue VM %s of instance %s is left over (the '
                        'instance is %s)%s', record['name_label'], uuid,
                        state, ': removing it' if reap else '')
            if reap:
                rescue.remove(self.session, self.isolation, vm)
                self.watcher.gone(vm)
                found['removed'].append(vm)

    def _resize_originals(self, found):
        """Originals (and clones) of resizes this host's compute kept:
        watched by the reclaimer, which removes them once their instance
        is deleted (at once for those already gone)."""
        for vm, record in self.watcher.resize_vms().items():
            other = record['other_config']
            uuid = other.get(resize.ORIGINAL) or other.get(resize.TRANSFER)
            if not uuid or events.host_of(record) != self.host.ref:
                continue
            name = other.get('nova_instance_name')
            if name:
                self.resizes.keep_watching(uuid, name)
        found['removed'].extend(self.resizes.reap())

    def _vm_state(self, uuid):
        try:
            instance = objects.Instance.get_by_uuid(
                nova_context.get_admin_context(read_deleted='yes'), uuid)
        except exception.InstanceNotFound:
            return UNKNOWN
        return DELETED if instance.deleted else instance.vm_state

    def _remove_vm(self, vm, uuid):
        disks = [vdi for vdi in storage.vdis_of_vm(self.session, vm)
                 if self.session.call('VDI.get_other_config', vdi)
                 .get('nova_uuid') == uuid]
        self.isolation.remove(vm)
        self.session.call('VM.destroy', vm)
        self.watcher.forget(vm)
        for vdi in disks:
            storage.destroy_vdi(self.session, vdi)
