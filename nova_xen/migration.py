"""Live migration inside a XenAPI pool: XenMotion (``VM.pool_migrate``).

A pool is the domain where a running VM moves without its disks: both
hosts see the SR that holds them.  Nova's calls, by side:

* destination: ``check_destination`` (same pool, not the same host, the
  disks' SRs plugged here, memory free here), then ``pre`` and, after the
  move, ``post_at_destination``;
* source: ``check_source`` (the guest runs and xapi would move it),
  ``migrate`` (``VM.pool_migrate``, then Nova's post or recover method),
  ``abort`` (cancels the task), ``post_at_source``.

What goes to the conductor is nova's own ``LibvirtLiveMigrateData`` with
generic fields only (``block_migration``, ``is_shared_block_storage``,
``is_shared_instance_path``): nova-conductor never loads this driver, so
it could not deserialize a class of ours.  ``is_shared_instance_path``
tells Nova there is nothing to clean up on either side afterwards: xapi
moved the VM itself.

Isolation rules follow the VM: as soon as ``VM.pool_migrate`` returns, the
source asks the destination's dom0 to filter the new domain's VIFs (the
destination's VM watcher does the same when it sees the domain appear,
whichever comes first) and removes the rule tables from its own dom0.
xapi resumes the guest on the destination before the call returns, so a
guest can send unfiltered for the time between the two (one plugin call
per VIF on the destination); xapi offers no hook to pause it there.

Storage XenMotion (block migration inside a pool between local SRs, and
across pools) is not implemented yet: it is refused with a sentence.
"""

import sys
import threading

from nova.compute import utils as compute_utils
from nova import exception
from nova import objects
from oslo_log import log as logging

from nova_xen import errors
from nova_xen import storage

LOG = logging.getLogger(__name__)
MIB = 1024 * 1024


def refuse(reason):
    """A precheck's refusal: the conductor tries the next host."""
    return exception.MigrationPreCheckError(reason=reason)


class LiveMigration(object):
    def __init__(self, session, host, watcher, isolation):
        self.session = session
        self.host = host
        self.watcher = watcher
        self.isolation = isolation
        self._tasks = {}            # instance uuid -> pool_migrate task
        self._aborted = set()
        self._lock = threading.Lock()

    # -- destination -----------------------------------------------------

    def check_destination(self, instance, source_uuid, block_migration,
                          disk_over_commit):
        session = self.session
        if source_uuid == self.host.uuid:
            raise refuse('the source and the destination are the same '
                         'XenServer host (%s)' % self.host.nodename)
        try:
            session.call('host.get_by_uuid', source_uuid)
        except Exception:
            raise refuse(
                'XenServer host %s is not in the pool of %s (%s): live '
                'migration across pools (storage XenMotion) is not '
                'implemented yet' % (source_uuid, self.host.nodename,
                                     self.host.pool_uuid))
        vm, record = self.watcher.anywhere(instance.uuid)
        if vm is None:
            raise refuse('instance %s has no VM in pool %s'
                         % (instance.uuid, self.host.pool_uuid))
        unseen = self._srs_not_plugged_here(vm)
        if block_migration:
            raise refuse(
                'block migration was asked for, but inside a pool this '
                'driver moves VMs whose disks are on a shared SR (VM.'
                'pool_migrate); live-migrate without block migration (or '
                'with "auto")')
        if unseen:
            raise refuse(
                'the disks of the instance are on SR %s, which host %s does '
                'not see; block migration inside a pool (between local '
                'SRs) is not implemented yet' % (', '.join(sorted(unseen)),
                                                 self.host.nodename))
        needed = int(session.call('VM.get_memory_static_max', vm))
        free = int(session.call('host.compute_free_memory', self.host.ref))
        if needed > free:
            raise refuse('host %s has %d MiB of memory free; the instance '
                         'needs %d MiB' % (self.host.nodename, free // MIB,
                                           needed // MIB))
        data = objects.LibvirtLiveMigrateData()
        data.block_migration = False
        data.is_shared_block_storage = True
        data.is_shared_instance_path = True
        if disk_over_commit is not None:
            data.disk_over_commit = disk_over_commit
        return data

    def _srs_not_plugged_here(self, vm):
        """uuids of the SRs of the VM's disks with no plugged PBD here."""
        session = self.session
        srs = set()
        for vdi in storage.vdis_of_vm(session, vm):
            srs.add(session.call('VDI.get_SR', vdi))
        unseen = set()
        for sr in srs:
            plugged = [pbd for pbd in session.call('SR.get_PBDs', sr)
                       if session.call('PBD.get_host', pbd) == self.host.ref
                       and session.call('PBD.get_currently_attached', pbd)]
            if not plugged:
                unseen.add(session.call('SR.get_uuid', sr))
        return unseen

    def pre(self, migrate_data):
        """Nothing to prepare inside a pool: networks and SRs are the
        pool's.  (The destination's watcher will filter the new domain.)"""
        return migrate_data

    def post_at_destination(self, instance):
        vm, _ = self.watcher.anywhere(instance.uuid)
        if vm is None:
            return
        self.watcher.refresh_vm(vm)
        self.isolation.apply(vm)

    # -- source ----------------------------------------------------------

    def check_source(self, instance, dest_check_data):
        vm = self.watcher.lookup(instance.uuid)
        if vm is None:
            raise refuse('instance %s has no VM on host %s'
                         % (instance.uuid, self.host.nodename))
        record = self.session.call('VM.get_record', vm)
        if record['power_state'] != 'Running':
            raise refuse(
                'the VM is %s: xapi live-migrates only running VMs '
                '(VM.pool_migrate); unpause or start the server first'
                % record['power_state'].lower())
        if 'pool_migrate' not in record['allowed_operations']:
            raise refuse(
                'xapi would not live-migrate this VM now (allowed '
                'operations: %s): an HVM guest needs its PV drivers for '
                'XenMotion' % ', '.join(sorted(record['allowed_operations'])))
        return dest_check_data

    def migrate(self, context, instance, dest, post_method, recover_method,
                block_migration, migrate_data):
        """VM.pool_migrate to the destination's XenServer host; then Nova's
        post method, or on any failure its recover method (the instance
        stays on the source, ACTIVE, with a fault naming the step)."""
        session = self.session
        vm = self.watcher.lookup(instance.uuid)
        step = 'find the destination host'
        try:
            if vm is None:
                raise exception.InstanceNotFound(instance_id=instance.uuid)
            dest_ref = self._destination(context, migrate_data)
            step = 'move the VM (VM.pool_migrate)'
            LOG.info('live-migrating to %s (VM.pool_migrate)', dest,
                     instance=instance)
            session.call_async('VM.pool_migrate', vm, dest_ref,
                               {'live': 'true'},
                               on_task=lambda task: self._started(instance,
                                                                  task))
        except Exception as exc:
            aborted = self._finished(instance)
            self._failed(context, instance, step, exc, aborted)
            recover_method(context, instance, dest, migrate_data,
                           migration_status='cancelled' if aborted
                           else 'error')
            return
        self._finished(instance)
        self._after_move(instance, vm, dest_ref)
        post_method(context, instance, dest, block_migration, migrate_data)

    def _destination(self, context, migrate_data):
        """The destination's XenServer host: its compute node's uuid."""
        migration = migrate_data.migration
        node = objects.ComputeNode.get_by_host_and_nodename(
            context, migration.dest_compute, migration.dest_node)
        return self.session.call('host.get_by_uuid', node.uuid)

    def _after_move(self, instance, vm, dest_ref):
        """The VM runs on the destination: it belongs there from now on
        (affinity: a halted VM is its affinity host's), its VIFs get their
        rules in the destination's dom0 and lose them in ours."""
        session = self.session
        try:
            self.isolation.apply(vm, force=True)
        except Exception as exc:
            # the destination's watcher applies them too
            LOG.warning('could not filter the VIFs on the destination yet: '
                        '%s', exc, instance=instance)
        try:
            session.call('VM.set_affinity', vm, dest_ref)
        except Exception as exc:
            LOG.warning('could not set the VM\'s affinity to its new host: '
                        '%s', exc, instance=instance)
        self.remove_source_rules(instance, vm)
        self.watcher.refresh_vm(vm)

    def remove_source_rules(self, instance, vm=None):
        vm = vm or self.watcher.anywhere(instance.uuid)[0]
        if vm is None:
            return
        for vif in self.session.call('VM.get_VIFs', vm):
            vif_uuid = self.session.call('VIF.get_uuid', vif)
            try:
                self.isolation.remove_table(vif_uuid, self.host.ref)
            except Exception as exc:
                # the reclaimer's sweep removes it once the VIF is gone; a
                # table without devices filters nothing meanwhile
                LOG.warning('could not remove the rules of VIF %s from the '
                            'source: %s', vif_uuid, exc, instance=instance)

    def _failed(self, context, instance, step, exc, aborted):
        if aborted:
            LOG.info('live migration aborted; the instance stays here',
                     instance=instance)
            return
        text = 'Live migration failed at step "%s": %s' % (step, exc)
        LOG.error('%s; the instance stays on %s', text, self.host.nodename,
                  instance=instance)
        fault = errors.XenAPIError('live_migration', getattr(
            exc, 'details', None) or [exc.__class__.__name__],
            message=text)
        try:
            compute_utils.add_instance_fault_from_exc(
                context, instance, fault, sys.exc_info())
        except Exception:
            LOG.exception('could not record the fault', instance=instance)

    # -- abort -----------------------------------------------------------

    def _started(self, instance, task):
        with self._lock:
            self._tasks[instance.uuid] = task

    def _finished(self, instance):
        """Forget the task; True if it was aborted."""
        with self._lock:
            self._tasks.pop(instance.uuid, None)
            if instance.uuid in self._aborted:
                self._aborted.discard(instance.uuid)
                return True
        return False

    def abort(self, instance):
        with self._lock:
            task = self._tasks.get(instance.uuid)
            if task is None:
                raise exception.NovaException(
                    'no live migration of instance %s is running on host %s'
                    % (instance.uuid, self.host.nodename))
            self._aborted.add(instance.uuid)
        LOG.info('aborting the live migration (task.cancel)',
                 instance=instance)
        self.session.call('task.cancel', task)
