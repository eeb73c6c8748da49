"""A resize to another pool: the clone the source sends, and its arrival.

The source stops the VM and keeps it, hidden, as the original (its VM and
disks tagged ``nova_resize_of``: resize.py); for a destination in another
pool it also clones it (copy-on-write) without VIFs or swap, and re-tags
the clone and its disks ``nova_resize_transfer``.  The destination sends
that clone over with ``VM.migrate_send``, called in the source pool with
a session the source handed it, takes its disks and drops its record.

Each object is removed by whichever side made it when a step fails, found
by what it is (the clone's ref, its uuid), never only by a tag a
half-done step may already have changed: a clone's disks carry the
original's tag until they are re-tagged one by one (``CLONE_KEYS``).
What xapi will not remove now is the reclaimer's.
"""

import functools

from nova import exception
from oslo_log import log as logging

from nova_xen.conf import CONF
from nova_xen import errors
from nova_xen import firmware
from nova_xen import events
from nova_xen import power
from nova_xen import reclaim
from nova_xen import session as session_mod
from nova_xen import storage

LOG = logging.getLogger(__name__)

NULL = storage.NULL
# other_config tags of a kept original, of a clone on its way to a pool
ORIGINAL, TRANSFER = events.RESIZE_TAGS
# a clone's disks: the original's tag, or re-tagged for the transfer
CLONE_KEYS = (ORIGINAL, TRANSFER)
# the disks that move, in the order the VM gets them (swap is made anew)
MOVED = ('root', 'ephemeral', 'config-drive')


def retag(session, kind, ref, old_key, new_key, name=None):
    """Move the instance's uuid from one other_config key to another."""
    other = session.call('%s.get_other_config' % kind, ref)
    uuid = other.pop(old_key, None)
    if uuid is None:
        return
    other[new_key] = uuid
    session.call('%s.set_other_config' % kind, ref, other)
    if name is not None:
        session.call('%s.set_name_label' % kind, ref, name)


def find_tagged(session, name, key, instance_uuid):
    """VMs named ``name`` whose other_config[key] is the instance's."""
    found = session.call('VM.get_by_name_label', name)
    return [vm for vm in found
            if session.call('VM.get_other_config', vm).get(key) ==
            instance_uuid]


def remove_vm_and_disks(session, vm, keys, instance_uuid):
    """A hidden original or a clone, with its disks that one of ``keys``
    ties to the instance (a clone's disks are tagged as the original's
    until they are re-tagged for the transfer, one by one).  What xapi
    will not remove now is the reclaimer's (session.leftovers)."""
    vdis = [vdi for vdi in storage.vdis_of_vm(session, vm)
            if any(session.call('VDI.get_other_config', vdi).get(key) ==
                   instance_uuid for key in keys)]
    try:
        power.halt(session, vm)
        session.call('VM.destroy', vm)
    except exception.NotFound:
        pass
    except Exception as exc:
        session.leftovers.add(reclaim.VM, vm, exc)
    for vdi in vdis:
        storage.destroy_vdi(session, vdi)


class Transfer(object):
    def __init__(self, session, host, sr_of):
        self.session = session
        self.host = host
        self.sr_of = sr_of          # the instance SR of this compute

    # -- source ------------------------------------------------------------

    def clone(self, instance, vm, made):
        """The halted VM's clone for another pool (``made['clone']`` as
        soon as it exists: whatever fails after, the undo removes it),
        without VIFs, vGPUs or swap, it and its disks tagged for the transfer."""
        session = self.session
        # Cinder volumes do not travel: the destination plugs the same
        # LUNs in its own pool.  xapi would clone every disk of the VM
        # (and cannot clone a LUN), so the original lets go of its volume
        # VBDs for the clone and takes them back at once
        detached = []
        try:
            for vbd, record in storage.vbd_records(session, vm,
                                                   volumes=True).items():
                session.call('VBD.destroy', vbd)
                detached.append(record)
            made['clone'] = session.call_async(
                'VM.clone', vm, instance.name + '-transfer')
        finally:
            reattached = self._reattach(instance, vm, detached)
        if not reattached:
            raise exception.NovaException(
                'a volume of the original could not be attached again')
        clone = made['clone']
        for vif in session.call('VM.get_VIFs', clone):
            session.call('VIF.destroy', vif)
        # xapi's clone copies the vGPUs too: the destination makes its own
        # from its allocation, in its pool's GPU groups
        for vgpu in session.call('VM.get_VGPUs', clone):
            session.call('VGPU.destroy', vgpu)
        retag(session, 'VM', clone, ORIGINAL, TRANSFER)
        for vbd in session.call('VM.get_VBDs', clone):
            vdi = session.call('VBD.get_VDI', vbd)
            if vdi == NULL:
                continue
            role = session.call('VDI.get_other_config', vdi).get(
                'nova_role')
            if role in MOVED:
                retag(session, 'VDI', vdi, ORIGINAL, TRANSFER)
            else:
                # swap: made anew at the destination, not sent
                session.call('VBD.destroy', vbd)
                storage.destroy_vdi(session, vdi)

    def _reattach(self, instance, vm, records):
        """The original's volume VBDs back; one xapi will not make now is
        made by the reclaimer (the resize fails: the original runs again
        and must have its volumes).  False if one waits for it."""
        done = True
        for record in records:
            volume_id = record['other_config'].get('nova_volume_id')
            done = self.session.deferred.attempt(
                ('volume VBD', vm, volume_id),
                'attach volume %s to the original VM again' % volume_id,
                functools.partial(self._reattach_one, vm, record),
                instance=instance) and done
        return done

    def _reattach_one(self, vm, record):
        volume_id = record['other_config'].get('nova_volume_id')
        found = [vbd for vbd, r in storage.vbd_records(
            self.session, vm, volumes=True).items()
            if r['other_config'].get('nova_volume_id') == volume_id]
        vbd = found[0] if found else storage.create_vbd(
            self.session, vm, record['VDI'], 'volume',
            bootable=record['bootable'], userdevice=record['userdevice'],
            other_config=record['other_config'])
        state = self.session.call('VM.get_power_state', vm)
        # (read after the state: a start plugs every VBD the VM has)
        if state in ('Running', 'Paused') and not self.session.call(
                'VBD.get_currently_attached', vbd):
            # the failed resize's undo has started the original meanwhile
            self.session.call('VBD.plug', vbd)

    # -- destination ---------------------------------------------------------

    def remote(self, transfer):
        opts = CONF.xenserver
        return session_mod.HandedSession(
            transfer['url'], transfer['session'],
            login_timeout=opts.login_timeout, call_timeout=opts.call_timeout,
            task_timeout=opts.task_timeout, ca_file=opts.ca_file,
            insecure=opts.insecure)

    def receive(self, instance, info, remote, undo, step):
        """The clone comes over from the source pool (its xapi sends it,
        disks into this host's instance SR); its VDIs stay, its record
        goes."""
        session = self.session
        uuid = info['transfer']['vm']
        with step('find the clone in the source pool'):
            clone = remote.call('VM.get_by_uuid', uuid)
            vdi_map = {vdi: self.sr_of()
                       for vdi in storage.vdis_of_vm(remote, clone)}
        with step('get a receive token'):
            token = self.host.receive_token()
        # whatever of the clone reaches this pool goes if the resize fails
        # (also when xapi's answer is lost): the disks it has not taken
        # yet still carry the transfer's tag
        undo.after.append(('remove the clone sent here', lambda: (
            session.deferred.attempt(
                ('remove', uuid), 'remove the clone %s sent to this pool by '
                'a failed resize' % uuid,
                lambda: self._drop_received(instance, uuid),
                instance=instance))))
        try:
            with step('send the disks over (VM.migrate_send)'):
                remote.call_async('VM.migrate_send', clone, token, False,
                                  vdi_map, {}, {}, {})
        finally:
            session.logout_session(token['session_id'])
        with step('take the disks of the clone'):
            here = session.call('VM.get_by_uuid', uuid)
            # and its UEFI variables and vTPM state (its VTPM is not
            # unique: VM.clone copied the contents, migrate_send carried
            # them)
            info['firmware'] = firmware.PoolFirmware(session).read_state(
                here)
            vdis = {}
            for vdi in storage.vdis_of_vm(session, here):
                undo.vdis.append(vdi)
                role = session.call('VDI.get_other_config', vdi).get(
                    'nova_role')
                storage.tag_vdi(session, instance, vdi, role)
                vdis[role] = vdi
            session.call('VM.destroy', here)
        return vdis

    def _drop_received(self, instance, uuid):
        try:
            here = self.session.call('VM.get_by_uuid', uuid)
        except errors.XenAPIError as exc:
            if exc.xapi_code == 'UUID_INVALID':
                return
            raise
        remove_vm_and_disks(self.session, here, CLONE_KEYS, instance.uuid)

    def drop_remote_clone(self, instance, info, remote):
        try:
            clone = remote.call('VM.get_by_uuid', info['transfer']['vm'])
            remove_vm_and_disks(remote, clone, CLONE_KEYS, instance.uuid)
        except exception.NotFound:
            pass
        except Exception as exc:
            LOG.error('could not remove the clone in the source pool: %s '
                      '(the source\'s reclaimer removes it once Nova ends '
                      'the resize)', exc, instance=instance)
