"""Resize and cold migration: xapi moves the bytes, no ssh between hosts.

Nova's calls, by side:

* source ``migrate_disk_and_power_off``: a smaller root or ephemeral disk
  is refused before anything changes; the VM stops and is kept, hidden, as
  the original a revert goes back to (named ``<name>-orig``, its VM and
  VDIs tagged ``nova_resize_of`` instead of ``nova_uuid``: nothing counts
  it as the instance any more).  ``disk_info`` (JSON, handed by Nova to the
  destination) names the original's disks.  For a destination in another
  pool the source also clones the halted VM (copy-on-write, without VIFs,
  tagged ``nova_resize_transfer``) and hands out a session of its pool
  with which the destination sends that clone over.
* destination ``finish_migration``: the disks come to its instance SR --
  in one pool with ``VDI.clone`` where this host sees the original's SR
  (shared storage, or the same host) and ``VDI.copy`` otherwise; from
  another pool with ``VM.migrate_send`` of the clone, called in the source
  pool with the handed session and a receive token of this host.  Root and
  ephemeral disks then grow to the new flavor, swap is made anew at its
  new size, and the VM is built for the new flavor (``vmops.assemble``),
  with VGPUs of the type and GPU group of the destination's allocation
  (vgpu.py; checked after the start to be on a pGPU that allocation
  counts), and started, isolation rules first, if it ran before.
* source ``confirm_migration``: the original (and a clone a failure left)
  goes.
* destination ``destroy`` (Nova's), then source ``finish_revert_migration``:
  the new VM, its disks and VGPUs go; the original gets its name and tags
  back and starts again, with its isolation rules and its own VGPUs
  (placement gives the source's allocation back), if it ran before.

A failure on the source puts the original back as it was (running if it
ran) and Nova keeps the instance there, with a fault naming the step and
xapi's reason (``InstanceFaultRollback``).  A failure on the destination
removes everything made there and the clone in the source pool; Nova sets
the instance to ERROR (its rule for a failed finish), drops the source's
allocation, and the original stays hidden on the source until the
instance is deleted, without its VGPUs (removed with the session the
destination has of the source's pool).  What xapi will
not remove or give back at once, the reclaimer does (a clone the
destination could not remove in the source pool: the source's, once Nova
has ended the resize).  The clone itself: transfer.py.
"""

import functools
import json
import threading

from nova.compute import task_states
from nova import context as nova_context
from nova import exception
from nova import objects
from oslo_log import log as logging

from nova_xen import errors
from nova_xen import power
from nova_xen import storage
from nova_xen import transfer
from nova_xen import vgpu
from nova_xen import vmops

LOG = logging.getLogger(__name__)

GIB = 1024 ** 3
MIB = 1024 ** 2
NULL = storage.NULL
ORIGINAL, TRANSFER = transfer.ORIGINAL, transfer.TRANSFER
CLONE_KEYS = transfer.CLONE_KEYS
# what a resize keeps in the source pool: (the VM's tag, its name's
# suffix, the tags of its disks)
KEPT = ((ORIGINAL, '-orig', (ORIGINAL,)), (TRANSFER, '-transfer', CLONE_KEYS))
MOVED = transfer.MOVED
FORMAT = 1


def _refuse(reason):
    """Nova keeps the instance where it was, as it was, with this fault."""
    return exception.InstanceFaultRollback(
        inner_exception=exception.ResizeError(reason=reason))


def check_sizes(instance, flavor, disks):
    """A disk xapi would have to shrink is refused (VDI.resize only
    grows): before anything changes."""
    checks = (('root', flavor.root_gb), ('ephemeral', flavor.ephemeral_gb))
    for role, new_gb in checks:
        if role not in disks or (role == 'root' and not new_gb):
            continue
        size = disks[role][1]
        if new_gb * GIB < size:
            raise _refuse(
                'flavor %s has a %d GiB %s disk; the instance\'s is %.1f '
                'GiB and xapi cannot shrink a disk: pick a flavor with a '
                'disk at least as large'
                % (flavor.name, new_gb, role, size / float(GIB)))


def nova_instance(uuid):
    """Nova's instance (deleted ones too), or None."""
    try:
        return objects.Instance.get_by_uuid(
            nova_context.get_admin_context(read_deleted='yes'), uuid)
    except exception.InstanceNotFound:
        return None


class Resize(object):
    def __init__(self, session, host, watcher, isolation, vms, power_ops,
                 sr_of):
        self.session = session
        self.host = host
        self.watcher = watcher
        self.isolation = isolation
        self.vms = vms                  # vmops.VMOps
        self.power = power_ops
        self.sr_of = sr_of
        self.transfers = transfer.Transfer(session, host, sr_of)
        # instance uuid -> session handed to another pool's compute
        self._handed = {}
        # instance uuid -> name: originals kept here, until confirm/revert
        self._kept = {}
        self._lock = threading.Lock()

    # -- source ------------------------------------------------------------

    def migrate_disk_and_power_off(self, instance, dest, flavor, timeout,
                                   retry_interval):
        session = self.session
        vm = self.watcher.lookup(instance.uuid)
        if vm is None:
            raise exception.InstanceNotFound(instance_id=instance.uuid)
        disks = storage.disks_by_role(session, vm)
        check_sizes(instance, flavor, disks)
        in_pool = self.host.peer(dest) is not None
        was = session.call('VM.get_power_state', vm)
        resident = session.call('VM.get_resident_on', vm)
        step = vmops.Step()
        hidden = handed = None
        made = {}           # the clone for another pool, once it exists
        try:
            with step('stop the VM'):
                self.power.power_off(instance, timeout, retry_interval)
            with step('remove its isolation rules'):
                if resident != NULL:
                    self.isolation.remove(vm, resident)
            with step('keep the original for a revert'):
                hidden = vm
                self._hide(instance, vm)
            info = {'format': FORMAT, 'pool': self.host.pool_uuid,
                    'original': session.call('VM.get_uuid', vm),
                    'disks': [{'role': role,
                               'vdi': session.call('VDI.get_uuid', vdi)}
                              for role in MOVED if role in disks
                              for vdi in [disks[role][0]]]}
            if not in_pool:
                with step('clone the stopped VM for the other pool'):
                    self.transfers.clone(instance, vm, made)
                with step('open a session for the destination'):
                    handed = session.hand_out()
                info['transfer'] = {'url': session.url, 'session': handed,
                                    'vm': session.call('VM.get_uuid',
                                                       made['clone'])}
                with self._lock:
                    self._handed[instance.uuid] = handed
        except Exception as exc:
            LOG.error('resize failed at step "%s": %s; the instance stays '
                      'here as it was', step.name, exc, instance=instance)
            self._undo_source(instance, vm, hidden, made.get('clone'),
                              handed, was != 'Halted')
            raise _refuse('resize failed at step "%s": %s'
                          % (step.name, exc))
        with self._lock:
            self._kept[instance.uuid] = instance.name
        LOG.info('stopped and kept as %s-orig; its disks go to %s (%s)',
                 instance.name, dest,
                 'this pool' if in_pool else 'another pool',
                 instance=instance)
        return json.dumps(info)

    def _hide(self, instance, vm):
        session = self.session
        for vdi, _ in storage.disks_by_role(session, vm).values():
            transfer.retag(session, 'VDI', vdi, 'nova_uuid', ORIGINAL)
        transfer.retag(session, 'VM', vm, 'nova_uuid', ORIGINAL,
                       name=instance.name + '-orig')
        self.watcher.forget(vm)

    def _unhide(self, instance, vm):
        session = self.session
        transfer.retag(session, 'VM', vm, ORIGINAL, 'nova_uuid',
                       name=instance.name)
        for vdi, _ in storage.disks_by_role(session, vm).values():
            transfer.retag(session, 'VDI', vdi, ORIGINAL, 'nova_uuid')
        self.watcher.refresh_vm(vm)

    def _undo_source(self, instance, vm, hidden, clone, handed, start):
        """Put the original back as it was; what xapi will not let go of
        or change now is the reclaimer's (the clone, the original's name
        and tags)."""
        session = self.session
        if handed is not None:
            session.logout_session(handed)
        if clone is not None:
            # its disks carry the original's tag or, re-tagged already,
            # the transfer's
            session.deferred.attempt(
                ('remove', clone),
                'remove the clone %s a failed resize made' % clone,
                lambda: transfer.remove_vm_and_disks(
                    session, clone, CLONE_KEYS, instance.uuid),
                instance=instance)
        if hidden is not None or start:
            session.deferred.attempt(
                ('give back', instance.uuid),
                'give the original VM %s of instance %s back' % (
                    vm, instance.uuid),
                functools.partial(self._give_back, instance, vm,
                                  hidden is not None, start),
                retry=functools.partial(self._give_back, instance, vm,
                                        hidden is not None, start,
                                        check_nova=True),
                instance=instance)
        with self._lock:
            self._handed.pop(instance.uuid, None)

    def _give_back(self, instance, vm, unhide, start, check_nova=False):
        if check_nova:
            # later: only for an instance Nova still has here, active
            now = nova_instance(instance.uuid)
            if now is None or now.deleted or now.host != instance.host:
                return
            start = start and now.vm_state == 'active'
        if unhide:
            self._unhide(instance, vm)
        if start:
            self._start(vm)

    def _start(self, vm):
        if self.session.call('VM.get_power_state', vm) == 'Halted':
            power.start_filtered(self.session, vm, self.host.ref,
                                 self.isolation.apply)
        self.watcher.refresh_vm(vm)

    def _original(self, instance):
        found = transfer.find_tagged(self.session, instance.name + '-orig',
                                     ORIGINAL, instance.uuid)
        return found[0] if found else None

    def _drop_transfer(self, instance):
        """A clone for another pool that never left, and the session."""
        with self._lock:
            handed = self._handed.pop(instance.uuid, None)
            self._kept.pop(instance.uuid, None)
        if handed is not None:
            self.session.logout_session(handed)
        for clone in transfer.find_tagged(
                self.session, instance.name + '-transfer', TRANSFER,
                instance.uuid):
            transfer.remove_vm_and_disks(self.session, clone, CLONE_KEYS,
                                         instance.uuid)

    def confirm(self, instance):
        self._drop_transfer(instance)
        vm = self._original(instance)
        if vm is None:
            LOG.info('confirm: no original left to remove', instance=instance)
            return
        self._remove(vm, (ORIGINAL,), instance.uuid)
        LOG.info('resize confirmed: the original VM and its disks are gone',
                 instance=instance)

    def _remove(self, vm, keys, uuid):
        """remove_vm_and_disks, and the targets of the VM's volumes when
        nothing else in this pool uses them (the instance went to another
        pool, or was deleted)."""
        srs = {self.session.call('VDI.get_SR', record['VDI'])
               for record in storage.vbd_records(
                   self.session, vm, volumes=True).values()}
        transfer.remove_vm_and_disks(self.session, vm, keys, uuid)
        for sr in srs:
            if self.vms.volumes is not None:
                self.vms.volumes.disconnect_sr(sr)

    def finish_revert(self, instance, power_on):
        self._drop_transfer(instance)
        vm = self._original(instance)
        if vm is None:
            raise exception.InstanceNotFound(instance_id=instance.uuid)
        self._unhide(instance, vm)
        if power_on:
            self._start(vm)
            # its own vGPUs, made from the allocation placement gives back
            # to the source
            self.vms.gpus.check_placed(instance, vm)
        LOG.info('resize reverted: the original VM is back%s',
                 ' and running' if power_on else '', instance=instance)

    def keep_watching(self, instance_uuid, name):
        """An original found at start-up (reconcile.py)."""
        with self._lock:
            self._kept[instance_uuid] = name

    def reap(self):
        """The reclaimer's sweep: originals kept here for instances Nova
        has since deleted (a finish that failed at the destination, then a
        delete there: in another pool, no call reaches this compute), and
        a clone for another pool once the resize is no longer under way
        (the destination failed, and could not remove it)."""
        with self._lock:
            kept = dict(self._kept)
            handed = set(self._handed)
        done = []
        for uuid, name in kept.items():
            instance = nova_instance(uuid)
            if instance is None or instance.deleted:
                kinds = KEPT
            elif uuid in handed and instance.task_state not in \
                    task_states.resizing_states:
                kinds = KEPT[1:]
                with self._lock:
                    session_ref = self._handed.pop(uuid, None)
                if session_ref is not None:
                    self.session.logout_session(session_ref)
            else:
                continue
            for key, suffix, keys in kinds:
                for vm in transfer.find_tagged(self.session, name + suffix,
                                               key, uuid):
                    LOG.info('removing VM %s%s of instance %s: %s', name,
                             suffix, uuid, 'its resize is over'
                             if kinds is not KEPT else 'it was deleted')
                    self._remove(vm, keys, uuid)
                    done.append(('VM', vm))
            if kinds is KEPT:
                with self._lock:
                    self._kept.pop(uuid, None)
        return done

    def forget_originals(self, instance):
        """A deleted instance leaves no original or clone in this pool
        (a resize whose finish failed left them)."""
        for key, suffix, keys in KEPT:
            for vm in transfer.find_tagged(
                    self.session, instance.name + suffix, key,
                    instance.uuid):
                LOG.info('removing the %s VM a resize left', suffix[1:],
                         instance=instance)
                self._remove(vm, keys, instance.uuid)

    # -- destination ---------------------------------------------------------

    def finish_migration(self, instance, disk_info, network_info,
                         image_meta, power_on, block_device_info=None,
                         allocations=None):
        info = json.loads(disk_info)
        if info.get('format') != FORMAT:
            raise exception.ResizeError(
                reason='disk_info of another nova-xen version: %r'
                % sorted(info))
        undo = vmops.Undo(self.session, self.isolation)
        step = vmops.Step()
        remote = None
        try:
            with step('check the firmware'):
                plan = self.vms.firmware_plan(instance, image_meta)
            if info['pool'] == self.host.pool_uuid:
                vdis = self._copy_in_pool(instance, info, undo, step)
                with step('read the UEFI variables and vTPM state'):
                    # the original (halted, kept for a revert) holds them
                    info['firmware'] = self.vms.firmware.read_state(
                        self.session.call('VM.get_by_uuid',
                                          info['original']))
            else:
                remote = self.transfers.remote(info['transfer'])
                vdis = self.transfers.receive(instance, info, remote, undo,
                                              step)
            disks = self._fit(instance, vdis, undo, step)
            # Cinder volumes: the same LUNs, plugged on this host too
            attached = self.vms.connect_volumes(block_device_info, undo,
                                                step)
            if any(bootable for _, _, _, bootable in attached):
                disks = [d for d in disks if d[1] != 'root']
            # the vGPUs of the destination's allocation (vgpu.py)
            vm = self.vms.assemble(
                instance, image_meta, network_info, disks, False, undo, step,
                volumes=attached, firmware=plan[:2] + (info['firmware'],),
                allocations=allocations)
            if power_on:
                with step('start the VM'):
                    self._start(vm)
                if vgpu.requested(allocations):
                    with step('check the vGPUs'):
                        self.vms.gpus.check_placed(instance, vm)
        except Exception as exc:
            LOG.error('finishing the resize failed at step "%s": %s',
                      step.name, exc, instance=instance)
            undo.rollback(instance)
            if remote is not None:
                self.transfers.drop_remote_clone(instance, info, remote)
            self._drop_original_vgpus(instance, info, remote)
            raise errors.MoveFailed(what='resize', step=step.name,
                                    reason=str(exc))
        finally:
            if remote is not None:
                remote.close()
        LOG.info('resized: %d vCPUs, %d MiB, root disk %d GiB, on host %s',
                 instance.flavor.vcpus, instance.flavor.memory_mb,
                 instance.flavor.root_gb, self.host.nodename,
                 instance=instance)

    def _drop_original_vgpus(self, instance, info, remote):
        """A failed finish: Nova gives up the source's allocation (the
        server stays here, in ERROR), so the original kept for a revert
        that can no longer come lets go of its vGPUs too."""
        session = remote if remote is not None else self.session
        try:
            original = session.call('VM.get_by_uuid', info['original'])
            for vgpu_ref in session.call('VM.get_VGPUs', original):
                session.call('VGPU.destroy', vgpu_ref)
        except Exception as exc:
            # it goes with the original when the server is deleted
            LOG.error('could not remove the vGPUs of the original VM on the '
                      'source: %s', exc, instance=instance)

    def _copy_in_pool(self, instance, info, undo, step):
        """{role: VDI} on this host: clones where it sees the original's
        SR, copies into its instance SR otherwise."""
        session = self.session
        vdis = {}
        for disk in info['disks']:
            role = disk['role']
            with step('copy the %s disk' % role):
                vdi = session.call('VDI.get_by_uuid', disk['vdi'])
                if self.host.sees(session.call('VDI.get_SR', vdi)):
                    new = session.call_async('VDI.clone', vdi, {})
                else:
                    new = session.call_async('VDI.copy', vdi, self.sr_of(),
                                             NULL, NULL)
                undo.vdis.append(new)
                storage.tag_vdi(session, instance, new, role)
                vdis[role] = new
        return vdis

    def _fit(self, instance, vdis, undo, step):
        """The disks at the new flavor's sizes: (VDI, role, bootable)."""
        session = self.session
        flavor = instance.flavor
        wanted = {'root': flavor.root_gb * GIB,
                  'ephemeral': flavor.ephemeral_gb * GIB}
        for role, size in wanted.items():
            if role in vdis and size > int(session.call(
                    'VDI.get_virtual_size', vdis[role])):
                with step('grow the %s disk' % role):
                    session.call('VDI.resize', vdis[role], str(size))
        sr = self.sr_of()
        for role, size in (('ephemeral', wanted['ephemeral']),
                           ('swap', flavor.swap * MIB)):
            if size and role not in vdis:
                with step('create the %s disk' % role):
                    vdis[role] = storage.create_vdi(session, sr, instance,
                                                    role, size)
                    undo.vdis.append(vdis[role])
        order = ('root', 'ephemeral', 'swap', 'config-drive')
        return [(vdis[role], role, role == 'root') for role in order
                if role in vdis]
