"""Instance snapshots: the root disk, as a VHD image in Glance.

xapi snapshots the root VDI (a copy-on-write child on VHD-based SRs), the
image handler streams it to Glance as ``disk_format=vhd``, and the
snapshot VDI is removed whatever happens.
"""

from nova.compute import task_states
from nova import exception
from oslo_log import log as logging

from nova_xen import storage

LOG = logging.getLogger(__name__)


class Snapshots(object):
    def __init__(self, session, host, watcher, image_handler):
        self.session = session
        self.host = host
        self.watcher = watcher
        self.images = image_handler

    def snapshot(self, context, instance, image_id, update_task_state):
        vm = self.watcher.lookup(instance.uuid)
        if vm is None:
            # as nova's other drivers say of an instance without a domain
            raise exception.InstanceNotRunning(instance_id=instance.uuid)
        update_task_state(task_state=task_states.IMAGE_PENDING_UPLOAD)
        snap = self.session.call_async('VDI.snapshot',
                                       self._root_vdi(vm), {})
        try:
            self.session.call('VDI.add_to_other_config', snap,
                              'nova_snapshot_of', instance.uuid)
            update_task_state(task_state=task_states.IMAGE_UPLOADING,
                              expected_state=task_states.IMAGE_PENDING_UPLOAD)
            metadata = {'disk_format': 'vhd', 'container_format': 'bare',
                        'properties': {'hypervisor_type': 'xen'}}
            self.images.upload(context, image_id, metadata, snap,
                               self.host.address)
            LOG.info('snapshot uploaded to image %s', image_id,
                     instance=instance)
        finally:
            storage.destroy_vdi(self.session, snap)

    def _root_vdi(self, vm):
        """The VDI behind the VM's first disk (xvda): its VBDs in one
        call."""
        vbds = self.session.call('VBD.get_all_records_where',
                                 'field "VM" = "%s"' % vm)
        for record in vbds.values():
            if record['userdevice'] == storage.DEVICES['root'] and \
                    record['VDI'] != storage.NULL:
                return record['VDI']
        raise exception.NovaException('VM %s has no root disk' % vm)
