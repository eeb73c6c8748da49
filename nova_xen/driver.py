"""XenAPIDriver: Nova's ComputeDriver for a host of an XCP-ng/XenServer pool.

A thin façade: each ComputeDriver call is mapped onto the modules that hold
the logic (session, host, vmops, storage, network, images).  Load it with
``compute_driver = xenapi.XenAPIDriver``.
"""

import json

from nova.compute import task_states
from nova import exception
from nova.image import glance
from nova import objects
from nova.virt import driver
from nova.virt import hardware
from nova.virt import node as virt_node
from oslo_log import log as logging

from nova_xen import conf as xen_conf
from nova_xen import consoles
from nova_xen import diagnostics
from nova_xen import errors
from nova_xen import host as host_mod
from nova_xen import hostactions
from nova_xen import evacuate
from nova_xen import events
from nova_xen import imagecache
from nova_xen import interfaces
from nova_xen import images
from nova_xen import migration
from nova_xen import network
from nova_xen import ovn
from nova_xen import pci
from nova_xen import portfilter
from nova_xen import power
from nova_xen import reclaim
from nova_xen import reconcile
from nova_xen import rescue as rescue_mod
from nova_xen import resize
from nova_xen import session as session_mod
from nova_xen import snapshot as snapshot_mod
from nova_xen import storage
from nova_xen import vgpu
from nova_xen import vmops
from nova_xen import volumes
from nova_xen import xenstore

LOG = logging.getLogger(__name__)
CONF = xen_conf.CONF


class XenAPIDriver(driver.ComputeDriver):
    """Runs instances as VMs of one host of a xapi pool."""

    capabilities = dict(driver.ComputeDriver.capabilities, **{
        'has_imagecache': True,
        'supports_evacuate': True,
        'supports_migrate_to_same_host': False,
        'supports_attach_interface': True,
        'supports_device_tagging': False,
        'supports_multiattach': False,
        'supports_extend_volume': True,
        'supports_image_type_raw': True,
        'supports_image_type_vhd': True,
        'supports_vtpm': True, 'supports_stateless_firmware': True,
    })

    def __init__(self, virtapi, read_only=False):
        super(XenAPIDriver, self).__init__(virtapi)
        self._session = None
        self._host = None
        self._sr = None
        self._index = None
        self._vmops = None
        self._reclaimer = None

    # -- start and stop --------------------------------------------------

    def init_host(self, host):
        opts = CONF.xenserver
        self._session = session_mod.Session(
            opts.connection_url, opts.connection_username,
            opts.connection_password, concurrent=opts.connection_concurrent,
            login_timeout=opts.login_timeout, call_timeout=opts.call_timeout,
            task_timeout=opts.task_timeout, ca_file=opts.ca_file,
            insecure=opts.insecure).connect()
        self._host = host_mod.Host(self._session).discover()
        self._node_identity()
        self._host.check_plugins()
        self._sr = self._host.instance_sr()
        self._isolation = network.start_on_host(self._session, self._host)
        # Neutron's chassis for this host, dom0's integration bridge: said,
        # never waited for
        self._ovn = ovn.StartupReport(self._session, self._host).start()
        self._index = events.VMWatcher(self._session, self._host.ref,
                                       emit=self.emit_event,
                                       new_domain=self._isolation.apply)
        self._index.start()
        self._reclaimer = reclaim.Reclaimer(self._session, self._isolation)
        self._reclaimer.start()
        self._images = images.handler(self._session, self._host)
        self._cache = imagecache.ImageCache(self._session, self._host,
                                            self._images)
        self._volumes = volumes.VolumeOps(self._session, self._host,
                                          self._index)
        self._vmops = vmops.VMOps(self._session, self._host, self._index,
                                  self._images, self._isolation, self.virtapi,
                                  cache=self._cache, volumes=self._volumes)
        self._snapshots = snapshot_mod.Snapshots(self._session, self._host,
                                                 self._index, self._images)
        self._rescue = rescue_mod.Rescue(self._session, self._host,
                                         self._index, self._images,
                                         self._isolation, lambda: self._sr)
        self._power = power.PowerOps(self._session, self._host, self._index,
                                     isolation=self._isolation)
        self._interfaces = interfaces.Interfaces(self._session, self._vmops,
                                                 self._isolation)
        self._consoles = consoles.Consoles(self._session, self._index)
        self._diagnostics = diagnostics.Diagnostics(self._session,
                                                    self._index)
        self._host_cpu = diagnostics.HostCPU(self._session, self._host)
        self._migration = migration.LiveMigration(
            self._session, self._host, self._index, self._isolation,
            lambda: self._sr)
        self._resize = resize.Resize(self._session, self._host, self._index,
                                     self._isolation, self._vmops,
                                     self._power, lambda: self._sr)
        self._reclaimer.sweeps.append(self._resize.reap)
        self._reclaimer.sweeps.append(self._volumes.retry_leftovers)
        # ports whose security or allowed address pairs changed in Neutron
        self._reclaimer.sweeps.append(portfilter.Refresh(
            self._session, self._host, self._index, self._isolation))
        self._evacuation = evacuate.Evacuation(self._session, self._host,
                                               self._index, self._isolation)
        self._host_actions = hostactions.HostActions(self._session,
                                                     self._host)
        self._host_actions.warn_if_disabled()
        LOG.info('nova-xen ready: host %s, instance SR %s',
                 self._host.nodename, self._sr)

    def _node_identity(self):
        """Nova 34 wants the compute node's uuid in a compute_id file
        from the second start on; it writes it for drivers whose node
        uuid it makes, not for one that names its node (the XenServer
        host's uuid): this one writes it, and refuses a file that names
        another host."""
        found = virt_node.read_local_node_uuid()
        if found is None:
            virt_node.write_local_node_uuid(self._host.uuid)
        elif found != self._host.uuid:
            raise errors.StartupError(reason=(
                'This nova-compute managed XenServer host %s (its compute_id '
                'file in [DEFAULT]state_path says so) and is now configured '
                'for host %s (%s): one nova-compute manages one host for '
                'good; give this one back its [xenserver] settings, or a '
                'new state_path and host name' % (
                    found, self._host.uuid, self._host.nodename)))

    def process_instances_at_startup(self, context, instances):
        reconcile.Reconciler(self._session, self._host, self._index,
                             self._isolation, self._resize).run(
            context, {instance.uuid for instance in instances})
        return instances

    def cleanup_host(self, host):
        if self._reclaimer is not None:
            self._reclaimer.stop()
        if self._index is not None:
            self._index.stop()
        if self._session is not None:
            self._session.close()

    # -- the node and its resources --------------------------------------

    def get_available_nodes(self, refresh=False):
        return [self._host.nodename]

    def get_nodenames_by_uuid(self, refresh=False):
        """The compute node is the XenServer host, named by its uuid (not
        by a compute_id file of the domU nova-compute happens to run in)."""
        return {self._host.uuid: self._host.nodename}

    def get_available_resource(self, nodename):
        return self._host.available_resource(self._sr)

    def update_provider_tree(self, provider_tree, nodename, allocations=None):
        current = provider_tree.data(nodename).inventory
        record, inventory = self._host.inventory(
            self._sr, current, foreign_memory=self._index.foreign_memory())
        provider_tree.update_inventory(nodename, inventory)
        traits = host_mod.cpu_traits(record['cpu_info'])
        firmware_traits, secure_boot = self._vmops.firmware.traits()
        host_mod.set_traits(provider_tree, nodename,
                            dict(traits, **firmware_traits))
        self.capabilities = dict(self.capabilities,
                                 supports_secure_boot=secure_boot)
        # the XenAPI pool, as a placement aggregate of its own uuid (added
        # to, never replacing, the aggregates nova-api mirrors there)
        provider_tree.add_aggregates(nodename, self._host.pool_uuid)
        self._vmops.gpus.update_provider_tree(provider_tree, nodename)

    def get_host_ip_addr(self):
        return self._host.address

    def get_host_cpu_stats(self):
        """For Nova's ``cpu.virt_driver`` monitor: see diagnostics.HostCPU
        (busy time is ``user``; xapi does not split kernel or I/O wait)."""
        return self._host_cpu.stats()

    # -- instances -------------------------------------------------------

    def list_instances(self):
        return self._index.names()

    def list_instance_uuids(self):
        return self._index.uuids()

    def instance_exists(self, instance):
        return self._index.lookup(instance.uuid) is not None

    def get_info(self, instance, use_cache=True):
        if instance.vm_state == 'rescued':
            state = self._rescue.power_state(instance)
            if state is not None:
                return hardware.InstanceInfo(state=vmops.POWER_STATES[state])
        return self._vmops.get_info(instance)

    def spawn(self, context, instance, image_meta, injected_files,
              admin_password, allocations, network_info=None,
              block_device_info=None, power_on=True, accel_info=None):
        self._vmops.spawn(context, instance, image_meta, network_info,
                          self._sr, power_on=power_on,
                          allocations=allocations,
                          injected_files=injected_files,
                          admin_password=admin_password,
                          block_device_info=block_device_info)

    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True):
        self._rescue.discard(instance)
        self._vmops.destroy(instance, destroy_disks=destroy_disks)
        # the volumes stay in Cinder; their SRs go from the pool
        for bdm in volumes.mapping(block_device_info):
            self._volumes.disconnect(bdm['connection_info'])
        if instance.task_state == task_states.DELETING and \
                self._index.has_resize_vms(instance.uuid):
            # a resize whose finish failed left the original behind (the
            # watcher knows every VM a resize keeps: no look-up otherwise)
            self._resize.forget_originals(instance)

    def cleanup(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, migrate_data=None, destroy_vifs=True,
                destroy_secrets=True):
        # destroy() already removed the VM; this catches disks left over.
        # After a live migration (migrate_data) xapi has moved or removed
        # the VM and its disks itself: nothing of the instance is ours.
        if destroy_disks and migrate_data is None:
            self._vmops.destroy(instance, destroy_disks=True)

    # -- volumes -----------------------------------------------------------

    def get_volume_connector(self, instance):
        return self._volumes.connector()

    def attach_volume(self, context, connection_info, instance, mountpoint,
                      disk_bus=None, device_type=None, encryption=None):
        if encryption:
            raise NotImplementedError(
                'nova-xen: encrypted volumes are not supported: the guest '
                'sees the LUN as xapi plugs it, with no host-side '
                'decryption')
        self._volumes.attach(connection_info, instance, mountpoint)

    def detach_volume(self, context, connection_info, instance, mountpoint,
                      encryption=None):
        self._volumes.detach(connection_info, instance)

    def extend_volume(self, context, connection_info, instance,
                      requested_size):
        self._volumes.extend(connection_info, requested_size)

    def manage_image_cache(self, context, all_instances):
        # usage is read from the pool (clones name their cached image), so
        # instances of every compute sharing the SR count
        self._cache.manage(self._sr)

    def cache_image(self, context, image_id):
        image_meta = objects.ImageMeta.from_image_ref(
            context, glance.API(), image_id)
        return self._cache.prefetch(context, image_meta, self._sr)

    def default_root_device_name(self, instance, image_meta, root_bdm):
        return '/dev/xvda'

    def get_device_name_for_instance(self, instance, bdms, block_device_obj):
        """The name the guest will see: /dev/xvd<letter> of the first
        userdevice xapi allows that no block device mapping claims."""
        vm = self._index.lookup(instance.uuid)
        return storage.device_name_for(
            self._session, vm, [bdm.device_name for bdm in bdms],
            block_device_obj.get('device_name'))

    def get_instance_disk_info(self, instance, block_device_info=None):
        """The instance's disks as JSON (what nova hands to the destination
        of a block migration): one entry per VDI it owns."""
        return json.dumps(storage.disk_info(self._session,
                                            self._vmops.vm_ref(instance),
                                            instance.uuid))

    def plug_vifs(self, instance, network_info):
        pass

    def unplug_vifs(self, instance, network_info):
        pass

    # -- power -----------------------------------------------------------

    def reboot(self, context, instance, network_info, reboot_type,
               block_device_info=None, bad_volumes_callback=None,
               accel_info=None, share_info=None):
        self._power.reboot(instance, reboot_type)

    def power_off(self, instance, timeout=0, retry_interval=0):
        self._power.power_off(instance, timeout, retry_interval)

    def power_on(self, context, instance, network_info,
                 block_device_info=None, accel_info=None, share_info=None):
        self._power.power_on(instance)

    def pause(self, instance):
        self._power.pause(instance)

    def unpause(self, instance):
        self._power.unpause(instance)

    def suspend(self, context, instance):
        pci.refuse_move(instance, 'suspend')
        vgpu.refuse_move(instance, 'suspend')
        self._power.suspend(instance)

    def resume(self, context, instance, network_info, block_device_info=None,
               share_info=None):
        self._power.resume(instance)

    def poll_rebooting_instances(self, timeout, instances):
        power.reboot_stuck_hard(timeout, instances)

    def resume_state_on_host_boot(self, context, instance, network_info,
                                  share_info, block_device_info=None):
        self._power.power_on(instance)

    # -- consoles and diagnostics ------------------------------------------

    def get_console_output(self, context, instance):
        return self._consoles.console_output(instance)

    def get_vnc_console(self, context, instance):
        return self._consoles.vnc_console(instance)

    def get_diagnostics(self, instance):
        return self._diagnostics.legacy(instance)

    def get_instance_diagnostics(self, instance):
        return self._diagnostics.instance(instance)

    def snapshot(self, context, instance, image_id, update_task_state):
        self._snapshots.snapshot(context, instance, image_id,
                                 update_task_state)

    # -- network interfaces ------------------------------------------------

    def attach_interface(self, context, instance, image_meta, vif):
        self._interfaces.attach(instance, vif)

    def detach_interface(self, context, instance, vif):
        self._interfaces.detach(instance, vif)

    # -- resize and cold migration (resize.py) -----------------------------

    def migrate_disk_and_power_off(self, context, instance, dest, flavor,
                                   network_info, block_device_info=None,
                                   timeout=0, retry_interval=0):
        return self._resize.migrate_disk_and_power_off(
            instance, dest, flavor, timeout, retry_interval)

    def finish_migration(self, context, migration, instance, disk_info,
                         network_info, image_meta, resize_instance,
                         allocations, block_device_info=None, power_on=True,
                         share_info=None):
        self._resize.finish_migration(instance, disk_info, network_info,
                                      image_meta, power_on,
                                      block_device_info=block_device_info,
                                      allocations=allocations)

    def confirm_migration(self, context, migration, instance, network_info):
        self._resize.confirm(instance)

    def finish_revert_migration(self, context, instance, network_info,
                                migration, block_device_info=None,
                                power_on=True, share_info=None):
        self._resize.finish_revert(instance, power_on)

    # -- evacuate (evacuate.py) ----------------------------------------------

    def instance_on_disk(self, instance):
        return self._evacuation.on_disk(instance)

    def rebuild(self, context, instance, image_meta, injected_files,
                admin_password, allocations, bdms, detach_block_devices,
                attach_block_devices, network_info=None, evacuate=False,
                block_device_info=None, preserve_ephemeral=False,
                accel_uuids=None, reimage_boot_volume=False):
        if not evacuate:
            # Nova's own rebuild: destroy, then spawn from the new image
            raise NotImplementedError()
        if volumes.mapping(block_device_info):
            raise exception.NovaException(volumes.NOT_MOVED % 'evacuated')
        self._evacuation.check(instance)
        # the task states and block devices of Nova's own rebuild
        detach_block_devices(context, bdms)
        instance.task_state = task_states.REBUILD_BLOCK_DEVICE_MAPPING
        instance.save(expected_task_state=[task_states.REBUILDING])
        attach_block_devices(context, instance, bdms)
        instance.task_state = task_states.REBUILD_SPAWNING
        instance.save(
            expected_task_state=[task_states.REBUILD_BLOCK_DEVICE_MAPPING])
        self._evacuation.take_over(instance)

    # -- live migration (migration.py) -------------------------------------

    def check_can_live_migrate_destination(self, context, instance,
                                           src_compute_info, dst_compute_info,
                                           block_migration=False,
                                           disk_over_commit=False):
        return self._migration.check_destination(
            instance, src_compute_info, block_migration, disk_over_commit)

    def check_source_migrate_data_at_dest(self, ctxt, instance, migrate_data,
                                          migration, limits, allocs):
        """What goes back to nova-conductor: nova's own class only."""
        return self._migration.check_data_for_conductor(migrate_data)

    def cleanup_live_migration_destination_check(self, context,
                                                 dest_check_data):
        self._migration.end_check(dest_check_data)

    def check_can_live_migrate_source(self, context, instance,
                                      dest_check_data, block_device_info=None):
        pci.refuse_move(instance, 'live-migrate')
        vgpu.refuse_move(instance, 'live-migrate')
        if volumes.mapping(block_device_info) and \
                migration.is_storage_move(dest_check_data):
            # XenMotion inside a pool keeps the LUNs (the destination
            # plugs them); a storage move could not take them along
            raise exception.MigrationPreCheckError(
                reason=volumes.NOT_MOVED % 'live-migrated with a storage '
                'move (to another pool, or between local SRs)')
        return self._migration.check_source(instance, dest_check_data)

    def pre_live_migration(self, context, instance, block_device_info,
                           network_info, disk_info, migrate_data):
        # the instance's volumes are plugged on this host before it comes
        for bdm in volumes.mapping(block_device_info):
            self._volumes.connect(bdm['connection_info'])
        return self._migration.pre(instance, network_info, migrate_data)

    def post_live_migration(self, context, instance, block_device_info,
                            migrate_data=None):
        # the source: its hold on the volumes' targets goes
        for bdm in volumes.mapping(block_device_info):
            self._volumes.release(bdm['connection_info'])

    def live_migration(self, context, instance, dest, post_method,
                       recover_method, block_migration=False,
                       migrate_data=None):
        self._migration.migrate(context, instance, dest, post_method,
                                recover_method, block_migration,
                                migrate_data)

    def live_migration_abort(self, instance):
        self._migration.abort(instance)

    def post_live_migration_at_source(self, context, instance, network_info):
        self._migration.post_at_source(instance)

    def post_live_migration_at_destination(self, context, instance,
                                           network_info,
                                           block_migration=False,
                                           block_device_info=None):
        self._migration.post_at_destination(instance)

    def rollback_live_migration_at_destination(self, context, instance,
                                               network_info,
                                               block_device_info,
                                               destroy_disks=True,
                                               migrate_data=None):
        self._migration.rollback_at_destination(instance, migrate_data)
        for bdm in volumes.mapping(block_device_info):
            self._volumes.release(bdm['connection_info'])

    # -- rescue, password --------------------------------------------------

    def rescue(self, context, instance, network_info, image_meta,
               rescue_password, block_device_info, share_info):
        self._rescue.rescue(context, instance, network_info, image_meta,
                            rescue_password)

    def unrescue(self, context, instance):
        self._rescue.unrescue(instance)

    def set_admin_password(self, instance, new_pass):
        """The guest agent reads it from its xenstore: see xenstore.py."""
        xenstore.write_password(self._session, instance,
                                self._vmops.vm_ref(instance), new_pass)

    # -- the host ------------------------------------------------------------

    def get_host_uptime(self):
        return self._host_actions.uptime()

    def set_host_enabled(self, enabled):
        return self._host_actions.set_enabled(enabled)

    def host_maintenance_mode(self, host, mode):
        return self._host_actions.maintenance(mode)

    def host_power_action(self, action):
        return self._host_actions.power_action(action)


def _unsupported(feature, why):
    def refuse(self, *args, **kwargs):
        raise NotImplementedError('nova-xen: %s is not supported: %s'
                                  % (feature, why))
    refuse.__name__ = feature
    refuse.unsupported = True      # devstack/tools/driver_features.py
    return refuse


# Calls nova makes that this driver does not serve yet; each says so in
# one sentence (see doc/support-matrix.md) instead of a bare
# NotImplementedError from nova's base class.
for _name, _feature, _why in (
        ('swap_volume', 'swapping a volume',
         'xapi cannot copy an attached disk into another LUN'),
        ('block_stats', 'per-volume I/O counters',
         'Nova polls them only with volume_usage_poll_interval, which '
         'xapi\'s RRDs do not feed per volume'),
        ('trigger_crash_dump', 'triggering a crash dump',
         'xapi has no NMI call in its API'),
        ('get_spice_console', 'SPICE consoles', 'xapi offers VNC (RFB) only'),
        ('get_serial_console', 'interactive serial consoles',
         'use the console log or the VNC console'),
        ('get_mks_console', 'MKS consoles', 'they are VMware\'s'),
        ('quiesce', 'quiescing the guest for a snapshot',
         'XenServer 8 and XCP-ng 8.3 have no quiesced snapshots'),
        ('unquiesce', 'quiescing the guest for a snapshot',
         'XenServer 8 and XCP-ng 8.3 have no quiesced snapshots'),
        ('get_all_volume_usage', 'volume usage counters',
         'xapi\'s RRDs do not feed them per volume'),
        ('volume_snapshot_create', 'snapshots of attached volumes',
         'only for volumes on a file share the compute mounts (Cinder\'s '
         'NFS/GlusterFS drivers); iSCSI volumes snapshot in Cinder'),
        ('volume_snapshot_delete', 'snapshots of attached volumes',
         'only for volumes on a file share the compute mounts (Cinder\'s '
         'NFS/GlusterFS drivers); iSCSI volumes snapshot in Cinder'),
        ('check_instance_shared_storage_local', 'probing shared instance '
         'storage', 'disks live in xapi SRs, not in a directory of the '
         'compute'),
        ('check_instance_shared_storage_remote', 'probing shared instance '
         'storage', 'disks live in xapi SRs, not in a directory of the '
         'compute'),
        ('live_migration_force_complete', 'forcing a live migration to '
         'complete', 'xapi\'s VM.pool_migrate has no post-copy or '
         'pause-and-copy switch; abort it instead'),
        ('mount_share', 'Manila shares', 'xapi has no virtiofs'),
        ('umount_share', 'Manila shares', 'xapi has no virtiofs'),
        ('is_share_mounted', 'Manila shares', 'xapi has no virtiofs'),
        ('power_update_event', 'power update events',
         'Nova sends them only to the Ironic driver'),
        ('soft_delete', 'soft delete', 'not implemented'),
        ('restore', 'restoring a soft-deleted server', 'not implemented')):
    setattr(XenAPIDriver, _name, _unsupported(_feature, _why))
