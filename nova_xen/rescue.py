"""Rescue: boot a rescue VM from the rescue image with the instance's disk.

The instance's VM is shut down; a second VM (``<name>-rescue``, tagged
``nova_rescue_of``) boots the rescue image and gets the instance's root
disk as its second disk (xvdb), read-write, with the same interfaces.
Unrescue removes the rescue VM and its disk and starts the instance again.
"""

from nova import exception
from oslo_log import log as logging

from nova_xen import events
from nova_xen import network
from nova_xen import power
from nova_xen import storage
from nova_xen import vmops
from nova_xen import xenstore

LOG = logging.getLogger(__name__)
TAG = events.RESCUE_TAG
GIB = 1024 ** 3


def remove(session, isolation, rescue):
    """A rescue VM goes, with the disk it booted from (never the
    instance's own disk, attached to it as xvdb)."""
    own = [vdi for vdi in storage.vdis_of_vm(session, rescue)
           if session.call('VDI.get_other_config', vdi)
           .get('nova_role') == 'rescue']
    _destroy_vm(session, isolation, rescue)
    for vdi in own:
        storage.destroy_vdi(session, vdi)


def _destroy_vm(session, isolation, vm):
    power.halt(session, vm)
    isolation.remove(vm)
    session.call('VM.destroy', vm)


def rescue_vms(watcher):
    """{ref: record} of every rescue VM of the pool (the VM watcher keeps
    them)."""
    return {ref: record for ref, record in watcher.rescue_vms().items()
            if record['other_config'].get(TAG)}


class Rescue(object):
    def __init__(self, session, host, watcher, images, isolation, sr_of):
        self.session = session
        self.host = host
        self.watcher = watcher
        self.images = images
        self.isolation = isolation
        self.sr_of = sr_of       # () -> the SR for instance disks

    def rescue_vm(self, instance):
        """The instance's rescue VM, or None: from the VM watcher's cache,
        into which rescue() puts the VM it makes at once."""
        return self._rescue_record(instance)[0]

    def _rescue_record(self, instance):
        for ref, record in rescue_vms(self.watcher).items():
            if record['other_config'].get(TAG) == instance.uuid:
                return ref, record
        return None, None

    def rescue(self, context, instance, network_info, image_meta,
               password=None):
        session = self.session
        vm = self.watcher.lookup(instance.uuid)
        if vm is None:
            raise exception.InstanceNotFound(instance_id=instance.uuid)
        if self.rescue_vm(instance) is not None:
            raise exception.InstanceNotRescuable(
                instance_id=instance.uuid, reason='already rescued')
        root = storage.root_vdi(session, vm)
        stream, fmt, size = self.images.open(context, instance, image_meta)
        created = []
        rescue = None
        try:
            # as big as the instance's own root disk when the image's
            # virtual size is not known beforehand (a VHD)
            vdi = storage.create_vdi(
                session, self.sr_of(), instance, 'rescue',
                max(size, instance.flavor.root_gb * GIB))
            created.append(vdi)
            self.images.write(stream, fmt, int(image_meta.size), vdi,
                              self.host.address)
            power.halt(session, vm)
            record = vmops.vm_record(instance, image_meta, self.host.ref)
            record['name_label'] = '%s-rescue' % instance.name
            record['other_config'] = {TAG: instance.uuid,
                                      'nova_role': 'rescue'}
            rescue = session.call('VM.create', record)
            self.watcher.refresh_vm(rescue)
            storage.create_vbd(session, rescue, vdi, 'root', bootable=True)
            storage.create_vbd(session, rescue, root, 'rescue')
            network.create_vifs(session, rescue, instance, network_info)
            power.start_filtered(session, rescue, self.host.ref,
                                 self.isolation.apply)
            self.watcher.refresh_vm(rescue)
            if password:
                # for the rescue image's guest agent, as at boot
                xenstore.write_password(session, instance, rescue, password)
        except Exception:
            LOG.exception('rescue failed; restoring the instance',
                          instance=instance)
            self._remove(rescue, created)
            if session.call('VM.get_power_state', vm) == 'Halted':
                power.start_filtered(session, vm, self.host.ref,
                                     self.isolation.apply)
            raise
        finally:
            stream.close()
        self.watcher.refresh_vm(vm)

    def unrescue(self, instance):
        session = self.session
        self.discard(instance)
        vm = self.watcher.lookup(instance.uuid)
        if vm is not None and \
                session.call('VM.get_power_state', vm) == 'Halted':
            power.start_filtered(session, vm, self.host.ref,
                                 self.isolation.apply)
            self.watcher.refresh_vm(vm)

    def _remove(self, rescue, vdis):
        session = self.session
        if rescue is not None:
            _destroy_vm(session, self.isolation, rescue)
            self.watcher.gone(rescue)
        for vdi in vdis:
            storage.destroy_vdi(session, vdi)

    def discard(self, instance):
        """The instance goes while rescued: its rescue VM goes too."""
        rescue = self.rescue_vm(instance)
        if rescue is not None:
            remove(self.session, self.isolation, rescue)
            self.watcher.gone(rescue)

    def power_state(self, instance):
        """The rescue VM's power state, from the VM watcher's cache."""
        rescue, record = self._rescue_record(instance)
        return None if rescue is None else record['power_state']
