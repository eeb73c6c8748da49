"""Instance lifecycle: spawn, destroy, power state.

A spawn is a sequence of named steps.  Everything a step creates is
recorded; if a later step fails, what was created is removed in reverse
order and the error names the step and xapi's reason.  Nothing is left in
the pool: no VM, VDI, VBD or VIF.
"""

import contextlib

from nova.compute import power_state
from nova import conf as nova_conf
from nova import exception
from nova.virt import hardware
from oslo_log import log as logging

from nova_xen import configdrive
from nova_xen import errors
from nova_xen import firmware as firmware_mod
from nova_xen import images
from nova_xen import network
from nova_xen import pci
from nova_xen import power
from nova_xen import storage
from nova_xen import vgpu
from nova_xen import volumes as volumes_mod

CONF = nova_conf.CONF

LOG = logging.getLogger(__name__)

MIB = 1024 * 1024
GIB = 1024 * MIB

POWER_STATES = {
    'Halted': power_state.SHUTDOWN,
    'Running': power_state.RUNNING,
    'Paused': power_state.PAUSED,
    'Suspended': power_state.SUSPENDED,
}

# Errors that already tell the user what is wrong with the request.
_PASS_THROUGH = (exception.ImageUnacceptable, exception.FlavorDiskTooSmall,
                 exception.ImageNotFound, firmware_mod.FirmwareUnsupported)


class Undo(object):
    """What a spawn created, to be removed if it fails."""

    def __init__(self, session, isolation=None):
        self.session = session
        self.isolation = isolation
        self.vm = None
        self.vdis = []
        # more to undo once VM and disks are gone: (what, callable)
        self.after = []

    def rollback(self, instance):
        """Remove everything, each piece on its own: one failure (xapi
        refusing, the isolation plugin unusable) never leaves the rest."""
        session = self.session
        vm = self.vm
        if vm is not None:
            _attempt(instance, 'stop the VM', lambda: power.halt(session, vm))
            if self.isolation is not None:
                _attempt(instance, 'remove its isolation rules',
                         lambda: self.isolation.remove(vm))
            _attempt(instance, 'destroy the VM',
                     lambda: session.call('VM.destroy', vm),
                     leftover=(session, 'VM', vm))
        for vdi in reversed(self.vdis):
            _attempt(instance, 'destroy VDI %s' % vdi,
                     lambda vdi=vdi: storage.destroy_vdi(session, vdi))
        for what, action in reversed(self.after):
            _attempt(instance, what, action)


def _attempt(instance, what, action, leftover=None):
    """Run one clean-up action; a failure is logged, never raised, and
    what it leaves (``leftover``: session, kind, ref) is reclaimed later."""
    try:
        action()
    except exception.NotFound:
        pass
    except Exception as exc:
        LOG.error('cleaning up a failed spawn: could not %s: %s', what, exc,
                  instance=instance)
        if leftover is not None:
            session, kind, ref = leftover
            session.leftovers.add(kind, ref, exc)


class VMOps(object):
    def __init__(self, session, host, index, image_handler, isolation,
                 virtapi, cache=None, volumes=None):
        self.virtapi = virtapi
        self.cache = cache
        self.volumes = volumes
        self.session = session
        self.host = host
        self.index = index
        self.images = image_handler
        self.isolation = isolation
        self.firmware = firmware_mod.PoolFirmware(session)
        self.gpus = vgpu.Gpus(session, host)

    # -- spawn -----------------------------------------------------------

    def spawn(self, context, instance, image_meta, network_info, sr,
              power_on=True, injected_files=None, admin_password=None,
              block_device_info=None, allocations=None):
        undo = Undo(self.session, self.isolation)
        step = Step()
        try:
            self._spawn(context, instance, image_meta, network_info, sr,
                        power_on, undo, step, injected_files, admin_password,
                        block_device_info, allocations)
        except _PASS_THROUGH:
            undo.rollback(instance)
            raise
        except Exception as exc:
            LOG.error('spawn failed at step "%s": %s', step.name, exc,
                      instance=instance)
            undo.rollback(instance)
            raise errors.SpawnFailed(step=step.name, reason=str(exc))

    def _spawn(self, context, instance, image_meta, network_info, sr,
               power_on, undo, step, injected_files, admin_password,
               block_device_info=None, allocations=None):
        session = self.session
        flavor = instance.flavor
        with step('check the PCI devices'):
            pci.check_ports(network_info)
            pci.check_claimed(session, self.host.ref, instance)
        # refused before anything is made
        plan = self.firmware_plan(instance, image_meta)
        attached = self.connect_volumes(block_device_info, undo, step)
        disks = []
        if not any(bootable for _, _, _, bootable in attached):
            root = None
            if self.cache is not None:
                root = self.cache.root_disk(context, instance, image_meta,
                                            sr, flavor.root_gb * GIB, undo,
                                            step)
            if root is None:
                root = self._import_root(context, instance, image_meta, sr,
                                         undo, step)
            disks.append((root, 'root', True))
        for role, size_bytes in (('ephemeral', flavor.ephemeral_gb * GIB),
                                 ('swap', flavor.swap * MIB)):
            if size_bytes:
                with step('create the %s disk' % role):
                    vdi = storage.create_vdi(session, sr, instance, role,
                                             size_bytes)
                    undo.vdis.append(vdi)
                    disks.append((vdi, role, False))
        if configdrive.required(instance):
            with step('create the config drive'):
                # a local file: nova-compute streams it, whatever the handler
                vdi = configdrive.create(
                    context, session, images.RemoteStreamHandler(session),
                    sr, instance,
                    injected_files, admin_password, network_info,
                    self.host.address)
                undo.vdis.append(vdi)
                disks.append((vdi, 'config-drive', False))
        self.assemble(instance, image_meta, network_info, disks, power_on,
                      undo, step, volumes=attached, firmware=plan,
                      allocations=allocations)

    def firmware_plan(self, instance, image_meta, state=None):
        """(request, Secure Boot ready, a move's firmware state): what
        ``assemble`` gives the VM; raises what xapi cannot honour."""
        request = firmware_mod.request_of(instance, image_meta)
        return request, self.firmware.check(request), state

    def connect_volumes(self, block_device_info, undo, step):
        """The VDIs of the instance's Cinder volumes, their SRs plugged:
        [(vdi, userdevice, volume id, bootable)], the boot volume first."""
        attached = []
        for bdm in volumes_mod.mapping(block_device_info):
            info = bdm['connection_info']
            with step('connect volume %s' % info.get('data', {}).get(
                    'volume_id', '')):
                vdi, sr = self.volumes.connect(info)
                undo.after.append(
                    ('forget the SR of a volume',
                     lambda sr=sr: self.volumes.disconnect_sr(sr)))
            root = bdm is volumes_mod.root_volume(block_device_info)
            device = '0' if root else volumes_mod.userdevice(
                bdm['mount_device'])
            attached.append((vdi, device, info['data'].get('volume_id'),
                             root))
        return attached

    def _import_root(self, context, instance, image_meta, sr, undo, step):
        """A root disk of its own, the image streamed into it."""
        with step('check the image'):
            stream, fmt, size = self.images.open(context, instance,
                                                 image_meta)
        try:
            with step('create the root disk'):
                root_size = max(size, instance.flavor.root_gb * GIB)
                root = storage.create_vdi(self.session, sr, instance, 'root',
                                          root_size)
                undo.vdis.append(root)
            with step('import the image'):
                self.images.write(stream, fmt, int(image_meta.size), root,
                                  self.host.address)
        finally:
            stream.close()
        return root

    def assemble(self, instance, image_meta, network_info, disks, power_on,
                 undo, step, volumes=(), firmware=None, allocations=None):
        """The VM of an instance whose disks exist (``disks``: (VDI, role,
        bootable) tuples), with its VIFs and vTPM; started if ``power_on``.
        A spawn and the destination of a resize both end here
        (``firmware``: firmware_plan's answer)."""
        session = self.session
        request, ready, state = firmware or self.firmware_plan(instance,
                                                               image_meta)
        with step('create the VM'):
            vm = session.call('VM.create', self.firmware.apply(
                vm_record(instance, image_meta, self.host.ref), request,
                ready, state))
            undo.vm = vm
        with step('create the vTPM'):
            self.firmware.create_vtpm(vm, request, state)
        with step('attach the disks'):
            for vdi, role, bootable in disks:
                storage.create_vbd(session, vm, vdi, role, bootable=bootable,
                                   read_only=role == 'config-drive')
            for vdi, device, volume_id, bootable in volumes:
                self.volumes.create_vbd(vm, vdi, volume_id, device,
                                        bootable=bootable)
        with step('create the network interfaces'):
            network.create_vifs(session, vm, instance, network_info)
        if vgpu.requested(allocations):
            with step('create the vGPUs'):
                self.gpus.create(instance, vm, allocations)
        if power_on:
            self._start(instance, vm, network_info, step)
            if vgpu.requested(allocations):
                with step('check the vGPUs'):
                    self.gpus.check_placed(instance, vm)
        else:
            self.index.refresh_vm(vm)
        return vm

    def _start(self, instance, vm, network_info, step):
        """Start the VM once its ports are wired and filtered.

        The domain is created paused: its VIF devices appear in dom0, where
        the isolation rules go on them (and where Neutron wires them); the
        guest runs only then, and, for ports Neutron has not reported up
        yet, once it says network-vif-plugged (as libvirt waits).
        """
        session = self.session
        events = vif_plug_events(network_info)
        timeout = CONF.vif_plugging_timeout
        wait = bool(events) and bool(timeout)
        try:
            with self.virtapi.wait_for_instance_event(
                    instance, events if wait else [], timeout=timeout,
                    error_callback=_neutron_failed):
                with step('start the VM'):
                    known = self.index.domids(vm)
                    power.start(session, vm, self.host.ref, paused=True)
                with step('apply network isolation'):
                    # the new domain's record: the VM watcher's event of
                    # it, or read if that is late
                    record = power.paused_domain(session, self.index, vm,
                                                 known, self.host.ref)
                    self.isolation.apply(vm, record=record)
        except exception.InstanceEventTimeout:
            if CONF.vif_plugging_is_fatal:
                raise exception.VirtualInterfaceCreateException()
            LOG.warning('Neutron did not report every port plugged in %s s; '
                        'starting anyway', timeout, instance=instance)
        with step('unpause the VM'):
            # immediate: no task to wait for
            session.call('VM.unpause', vm)
        self.index.assume(vm, power_state='Running')

    # -- destroy ---------------------------------------------------------

    def destroy(self, instance, destroy_disks=True):
        """From what the VM watcher knows of the VM (its power state, its
        host): a halted VM is not stopped, and if it was not halted after
        all, xapi's refusal to destroy it says so."""
        session = self.session
        vm, record = self.index.record(instance.uuid)
        if vm is None:
            LOG.warning('VM not found in the pool; removing what is left of '
                        'it', instance=instance)
            if destroy_disks:
                for vdi in storage.vdis_of_instance(session, instance.uuid):
                    storage.destroy_vdi(session, vdi)
            return
        # Nova is deleting it: its halt is no "stopped by itself" event
        # (which would send Nova a stop racing the delete)
        self.index.leaving(instance.uuid)
        try:
            if record['power_state'] != 'Halted':
                power.halt(session, vm)
            self._remove_rules(instance, vm, record['resident_on'])
            vdis = []
            if destroy_disks:
                # the VM's VBDs in one call; the disks tagged as the
                # instance's are its own
                vbds = session.call('VBD.get_all_records_where',
                                    'field "VM" = "%s"' % vm)
                vdis = [rec['VDI'] for rec in vbds.values()
                        if rec['VDI'] != storage.NULL and session.call(
                            'VDI.get_other_config', rec['VDI']).get(
                                'nova_uuid') == instance.uuid]
            try:
                session.call('VM.destroy', vm)
            except exception.InstanceInvalidState as exc:
                if power.actual_state(exc) in (None, 'Halted'):
                    raise
                # it had started meanwhile: stop it, then destroy it
                power.halt(session, vm)
                session.call('VM.destroy', vm)
        except exception.NotFound:
            LOG.warning('VM disappeared while being destroyed',
                        instance=instance)
            vdis = []
        except Exception:
            self.index.leaving(instance.uuid, False)
            raise
        self.index.forget(vm)
        self.index.leaving(instance.uuid, False)
        if destroy_disks:
            for vdi in vdis:
                storage.destroy_vdi(session, vdi)

    def _remove_rules(self, instance, vm, resident):
        """The VM is halted: its dom0 devices, and so its rules' hooks,
        are gone; what is left is bookkeeping, which must not keep the
        instance from being deleted."""
        try:
            self.isolation.remove(
                vm, resident if resident != storage.NULL else None)
        except exception.NotFound:
            raise
        except Exception as exc:
            LOG.warning('could not remove the isolation rules of its VIFs: '
                        '%s', exc, instance=instance)

    # -- state -----------------------------------------------------------

    def vm_ref(self, instance):
        vm = self.index.lookup(instance.uuid)
        if vm is None:
            raise exception.InstanceNotFound(instance_id=instance.uuid)
        return vm

    def get_info(self, instance):
        """From the watcher's cache: no XenAPI call."""
        vm, record = self.index.record(instance.uuid)
        if vm is None:
            raise exception.InstanceNotFound(instance_id=instance.uuid)
        return hardware.InstanceInfo(state=POWER_STATES.get(
            record['power_state'], power_state.NOSTATE), internal_id=vm)


def vif_plug_events(network_info):
    """network-vif-plugged events to wait for: ports not yet active."""
    return [('network-vif-plugged', vif['id'])
            for vif in network_info or [] if vif.get('active', True) is False]


def _neutron_failed(event_name, instance):
    LOG.error('Neutron reported a failure on event %s', event_name,
              instance=instance)
    if CONF.vif_plugging_is_fatal:
        raise exception.VirtualInterfaceCreateException()


class Step(object):
    """The name of the step a spawn is in, for its error message."""

    def __init__(self):
        self.name = 'start'

    @contextlib.contextmanager
    def __call__(self, name):
        self.name = name
        yield


def xenstore_data(instance):
    """What the guest reads under vm-data/ in its xenstore."""
    data = {'vm-data/hostname': instance.hostname or '',
            'vm-data/uuid': instance.uuid,
            'vm-data/name': instance.display_name or ''}
    for key, value in (instance.metadata or {}).items():
        data['vm-data/meta/%s' % key] = str(value)
    return data


def vm_record(instance, image_meta, host_ref):
    """VM.create's record for an instance (HVM unless the image says PV)."""
    flavor = instance.flavor
    memory = str(flavor.memory_mb * MIB)
    props = image_meta.properties
    pv = props.get('hw_vm_mode') == 'xen'
    windows = (props.get('os_type') or instance.os_type) == 'windows'
    platform = {'acpi': '1', 'apic': 'true', 'pae': 'true', 'nx': 'true',
                'timeoffset': '0', 'viridian': 'true' if windows else 'false',
                'device-model': 'qemu-upstream-compat'}
    return {
        'name_label': instance.name,
        'name_description': instance.display_name or '',
        'user_version': '0',
        'is_a_template': False,
        'affinity': host_ref,
        'memory_static_max': memory,
        'memory_dynamic_max': memory,
        'memory_dynamic_min': memory,
        'memory_static_min': memory,
        'VCPUs_max': str(flavor.vcpus),
        'VCPUs_at_startup': str(flavor.vcpus),
        'VCPUs_params': {},
        'actions_after_shutdown': 'destroy',
        'actions_after_reboot': 'restart',
        'actions_after_crash': 'destroy',
        'PV_bootloader': 'pygrub' if pv else '',
        'PV_kernel': '', 'PV_ramdisk': '', 'PV_args': '',
        'PV_bootloader_args': '', 'PV_legacy_args': '',
        'HVM_boot_policy': '' if pv else 'BIOS order',
        'HVM_boot_params': {} if pv else {'order': 'dc'},
        'platform': platform,
        'PCI_bus': '',
        'other_config': dict(pci.other_config(instance),
                             nova_uuid=instance.uuid, nova_role='instance',
                             nova_instance_name=instance.name),
        'xenstore_data': xenstore_data(instance),
        'recommendations': '',
        'domain_type': 'pv' if pv else 'hvm',
        'tags': [],
        'blocked_operations': {},
    }
