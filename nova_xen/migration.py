"""Live migration: XenMotion inside a pool, storage XenMotion otherwise.

* **pool**: both hosts are in one pool and the destination sees the SR of
  every disk: ``VM.pool_migrate`` moves the running VM, no disk copy (also
  when block migration was asked for: there is nothing to copy).
* **storage**: the destination is in another pool, or does not see the
  disks' SRs (local SRs): the destination's pool hands out a receive token
  (``host.migrate_receive``) and the source's xapi sends the VM and its
  disks there (``VM.migrate_send``), mapping each disk to the
  destination's instance SR and each VIF to the network of its Neutron
  port there.  It needs ``block_migration`` (or ``auto``).

Nova's calls, by side: destination ``check_destination`` (refusals are
``MigrationPreCheckError``: the conductor tries the next host; nothing has
changed on either side), source ``check_source`` (xapi's own
``VM.assert_can_migrate`` for a storage move, with a token made for the
check and logged out after it), destination ``pre`` (the receive token of
the move), source ``migrate`` (then Nova's post or recover method; a
failure leaves the instance running on the source with a fault naming the
step and xapi's reason), ``abort`` (``task.cancel``), destination
``post_at_destination`` or ``rollback_at_destination``.

The receive token holds a live session of the destination pool: it
travels only between the two nova-computes (migrate_data.py), never
through the conductor and never into a log line; the destination logs
the session out when the move succeeded, failed, or was only checked.

Isolation rules follow the VM: as soon as xapi returns, the destination's
dom0 filters the new domain's VIFs (the source asks for it inside a pool;
the destination's VM watcher does it as the domain appears, in any case)
and the source's dom0 loses the VIFs' tables.  xapi resumes the guest on
the destination before the call returns and offers no hook to keep it
paused there, so a guest can send unfiltered for as long as one plugin
call per VIF takes.  Nothing after the move fails the migration: a step
that fails is retried by the reclaimer (aftermove.py).
"""

import json
import threading

from nova.compute import utils as compute_utils
from nova import context as nova_context
from nova import exception
from nova import objects
from oslo_log import log as logging

from nova_xen import aftermove
from nova_xen.conf import CONF
from nova_xen import errors
from nova_xen import migrate_data as md
from nova_xen import network
from nova_xen import power
from nova_xen import storage

LOG = logging.getLogger(__name__)
MIB = 1024 * 1024


# where a VM is after a migration call failed
STAYED, MOVED, UNKNOWN = 'stayed', 'moved', 'unknown'


def _safe(exc, migrate_data):
    """An error's text without the receive token's session (xapi's token
    carries it in ``session_id`` and in its URLs)."""
    text = str(exc)
    if is_storage_move(migrate_data):
        token = migrate_data.token
        secret = token.get('session_id')
        if secret:
            for value in token.values():
                if isinstance(value, str) and secret in value:
                    text = text.replace(value, md.HIDDEN)
            text = text.replace(secret, md.HIDDEN)
    return text


def _move_data(data, storage_move, disk_over_commit):
    """The generic fields Nova's manager reads: a storage move copies the
    disks and leaves something to undo at the destination if it fails."""
    data.block_migration = storage_move
    data.is_shared_block_storage = not storage_move
    data.is_shared_instance_path = not storage_move
    if disk_over_commit is not None:
        data.disk_over_commit = disk_over_commit
    return data


def _node_uuid(context, host, node):
    """A compute node's uuid: its XenServer host's."""
    return objects.ComputeNode.get_by_host_and_nodename(context, host,
                                                        node).uuid


def refuse(reason):
    """A precheck's refusal: the conductor tries the next host."""
    return exception.MigrationPreCheckError(reason=reason)


def _as_precheck(side, check, *args):
    """Run a check; an unexpected failure (xapi refusing a call) is a
    refusal too, so that the conductor tries another host."""
    try:
        return check(*args)
    except exception.MigrationPreCheckError:
        raise
    except Exception as exc:
        LOG.exception('the live-migration check of %s failed', side)
        raise refuse('the check of %s failed: %s' % (side, exc))


def is_storage_move(migrate_data):
    return isinstance(migrate_data, md.XenLiveMigrateData)


class LiveMigration(object):
    def __init__(self, session, host, watcher, isolation, sr_of):
        self.session = session
        self.host = host
        self.watcher = watcher
        self.isolation = isolation
        self.sr_of = sr_of          # the instance SR of this compute
        self._tasks = {}            # instance uuid -> running migration task
        self._aborted = set()
        # instance uuid -> (receive session ref, whether the instance comes
        # from another pool), for the move a pre() prepared here
        self._receiving = {}
        self._lock = threading.Lock()
        self.after = aftermove.AfterMove(session, host, watcher, isolation)

    # -- destination: checks ---------------------------------------------

    def check_destination(self, instance, src_compute_info, block_migration,
                          disk_over_commit):
        return _as_precheck('the destination', self._check_destination,
                            instance, src_compute_info, block_migration,
                            disk_over_commit)

    def _check_destination(self, instance, src_compute_info,
                           block_migration, disk_over_commit):
        source_uuid = src_compute_info['uuid']
        if source_uuid == self.host.uuid:
            raise refuse('the source and the destination are the same '
                         'XenServer host (%s)' % self.host.nodename)
        self._check_memory(instance)
        in_pool = self.host.in_pool(source_uuid)
        if not in_pool:
            # inside a pool xapi levels the CPU features of its hosts
            self._check_cpu(src_compute_info)
        if in_pool:
            vm, _ = self.watcher.anywhere(instance.uuid)
            if vm is None:
                raise refuse('instance %s has no VM in pool %s'
                             % (instance.uuid, self.host.pool_uuid))
            unseen = self._srs_not_plugged_here(vm)
            if not unseen:
                if block_migration:
                    LOG.info('block migration was asked for, but host %s '
                             'sees the shared SR of every disk: XenMotion '
                             'moves the VM alone (VM.pool_migrate)',
                             self.host.nodename, instance=instance)
                # nothing to clean on either side afterwards: xapi moved
                # the VM (is_shared_instance_path True)
                return _move_data(objects.LibvirtLiveMigrateData(), False,
                                  disk_over_commit)
            if block_migration is False:
                raise refuse(
                    'the disks of the instance are on SR %s, which host %s '
                    'does not see: only a block migration (or "auto") can '
                    'move them' % (', '.join(sorted(unseen)),
                                   self.host.nodename))
        elif block_migration is False:
            raise refuse(
                'host %s is in another XenAPI pool (%s): only a block '
                'migration (storage XenMotion; or "auto") can move the '
                'instance there' % (self.host.nodename, self.host.pool_uuid))
        # is_shared_instance_path False: Nova then tells the destination
        # when the move failed (rollback_at_destination), where the receive
        # session goes
        data = _move_data(md.XenLiveMigrateData(), True, disk_over_commit)
        # a check changes nothing: no network is made for it
        self._fill(data, instance.get_network_info(), create=False)
        return data

    def _check_cpu(self, src_compute_info):
        """The destination has every CPU feature the source's guests may
        use (inside a pool xapi levels them; across pools it does not)."""
        try:
            source = set(json.loads(src_compute_info['cpu_info'])[
                'features'])
        except (KeyError, TypeError, ValueError):
            return
        here = set(self.session.call('host.get_cpu_info', self.host.ref)
                   .get('flags', '').split())
        missing = sorted(source - here)
        if missing:
            raise refuse('host %s lacks CPU features the source offers its '
                         'guests: %s' % (self.host.nodename,
                                         ', '.join(missing[:10])))

    def _check_memory(self, instance):
        needed = instance.flavor.memory_mb * MIB
        free = int(self.session.call('host.compute_free_memory',
                                     self.host.ref))
        if needed > free:
            raise refuse('host %s has %d MiB of memory free; the instance '
                         'needs %d MiB' % (self.host.nodename, free // MIB,
                                           needed // MIB))

    def _srs_not_plugged_here(self, vm):
        """uuids of the SRs of the VM's disks with no plugged PBD here."""
        return {self.session.call('SR.get_uuid', sr)
                for sr in self.host.unseen_srs(vm)}

    def _fill(self, data, network_info, create=True):
        """The destination's side of a storage move, and a receive token;
        returns the token's session."""
        session = self.session
        data.xen_pool_uuid = self.host.pool_uuid
        data.xen_host = self.host.ref
        data.xen_sr = self.sr_of()
        data.xen_networks = {
            vif['id']: network.network_for_vif(session, vif, create)
            for vif in network_info or []}
        try:
            token = self.host.receive_token()
        except exception.NotFound as exc:
            raise refuse(str(exc))
        data.xen_receive_token = json.dumps(token)
        return token['session_id']

    def end_check(self, dest_check_data):
        """The check's receive token is no longer needed."""
        if is_storage_move(dest_check_data):
            self.session.logout_session(dest_check_data.token['session_id'])

    def check_data_for_conductor(self, data):
        return md.plain(data) if is_storage_move(data) else data

    # -- source: check -----------------------------------------------------

    def check_source(self, instance, dest_check_data):
        return _as_precheck('the source', self._check_source, instance,
                            dest_check_data)

    def _check_source(self, instance, dest_check_data):
        vm = self.watcher.lookup(instance.uuid)
        if vm is None:
            raise refuse('instance %s has no VM on host %s'
                         % (instance.uuid, self.host.nodename))
        record = self.session.call('VM.get_record', vm)
        if record['power_state'] != 'Running':
            raise refuse(
                'the VM is %s: xapi live-migrates only running VMs; '
                'unpause or start the server first'
                % record['power_state'].lower())
        operation = 'migrate_send' if is_storage_move(dest_check_data) \
            else 'pool_migrate'
        if operation not in record['allowed_operations']:
            raise refuse(
                'xapi would not live-migrate this VM now (allowed '
                'operations: %s): an HVM guest needs its PV drivers for '
                'XenMotion' % ', '.join(sorted(record['allowed_operations'])))
        if is_storage_move(dest_check_data):
            vdi_map, vif_map = self._maps(vm, dest_check_data)
            try:
                self.session.call('VM.assert_can_migrate', vm,
                                  dest_check_data.token, True, vdi_map,
                                  vif_map, {}, {})
            except Exception as exc:
                raise refuse('xapi would not move the VM to pool %s: %s'
                             % (dest_check_data.xen_pool_uuid, exc))
        return dest_check_data

    def _maps(self, vm, data):
        """vdi_map (every disk of the VM to the destination's SR) and
        vif_map (every VIF to the network of its port there)."""
        session = self.session
        vdi_map = {vdi: data.xen_sr
                   for vdi in storage.vdis_of_vm(session, vm)}
        vif_map = {}
        if data.xen_pool_uuid == self.host.pool_uuid:
            # inside a pool the VIFs keep their networks (xapi refuses a
            # vif_map there)
            return vdi_map, vif_map
        for vif in session.call('VM.get_VIFs', vm):
            port = session.call('VIF.get_other_config', vif).get(
                'neutron-port-id')
            if port in data.xen_networks:
                vif_map[vif] = data.xen_networks[port]
        return vdi_map, vif_map

    # -- destination: before and after -----------------------------------

    def pre(self, instance, network_info, migrate_data):
        """For a storage move: the destination's SR, networks and the
        receive token of the move itself."""
        if not migrate_data.obj_attr_is_set('block_migration') or \
                not migrate_data.block_migration:
            return migrate_data
        data = md.extend(migrate_data)
        from_elsewhere = self.watcher.anywhere(instance.uuid)[0] is None
        session_ref = self._fill(data, network_info)
        with self._lock:
            earlier = self._receiving.get(instance.uuid)
            self._receiving[instance.uuid] = (session_ref, from_elsewhere)
        if earlier is not None:
            self.session.logout_session(earlier[0])
        return data

    def _received(self, instance_uuid):
        """Log the move's receive session out; True if the instance came
        from another pool."""
        with self._lock:
            session_ref, from_elsewhere = self._receiving.pop(
                instance_uuid, (None, False))
        if session_ref is not None:
            self.session.logout_session(session_ref)
        return from_elsewhere

    def post_at_destination(self, instance):
        self._received(instance.uuid)
        self.after.at_destination(instance)

    def post_at_source(self, instance):
        self.after.post_at_source(instance)

    def rollback_at_destination(self, instance, migrate_data=None):
        """The move failed: the receive session goes and, for an instance
        of another pool, whatever a half-done move left of it here (never
        a running VM: that would be the instance itself)."""
        with self._lock:
            entry = self._receiving.pop(instance.uuid, None)
        if entry is None:
            # this nova-compute restarted since pre(): what Nova hands back
            if not is_storage_move(migrate_data):
                return
            entry = (migrate_data.token.get('session_id'),
                     not self.host.in_pool(self._source_host(instance)))
        session_ref, from_elsewhere = entry
        if session_ref:
            self.session.logout_session(session_ref)
        if not from_elsewhere:
            return
        leftovers = self.session.leftovers
        for vm in aftermove.vms_by_tag(self.session, instance.uuid):
            try:
                state = self.session.call('VM.get_power_state', vm)
            except exception.NotFound:
                continue
            if state == 'Running':
                LOG.warning('VM %s of the instance runs in pool %s after a '
                            'failed migration: left alone', vm,
                            self.host.pool_uuid, instance=instance)
                continue
            LOG.warning('removing VM %s that the failed migration left in '
                        'pool %s', vm, self.host.pool_uuid, instance=instance)
            try:
                self.isolation.remove(vm)
            except Exception as exc:
                LOG.debug('rules of %s: %s', vm, exc)
            try:
                power.halt(self.session, vm)
                self.session.call('VM.destroy', vm)
            except exception.NotFound:
                pass
            except Exception as exc:
                leftovers.add('VM', vm, exc)
            self.watcher.forget(vm)
        for vdi in storage.vdis_of_instance(self.session, instance.uuid):
            storage.destroy_vdi(self.session, vdi)

    def _source_host(self, instance):
        return _node_uuid(nova_context.get_admin_context(), instance.host,
                          instance.node)

    # -- source: the move --------------------------------------------------

    def migrate(self, context, instance, dest, post_method, recover_method,
                block_migration, migrate_data):
        session = self.session
        vm = self.watcher.lookup(instance.uuid)
        storage_move = is_storage_move(migrate_data)
        other_pool = storage_move and \
            migrate_data.xen_pool_uuid != self.host.pool_uuid
        step = 'find the VM'
        vif_uuids = []
        dest_ref = None
        self._begin(instance)
        try:
            if vm is None:
                raise exception.InstanceNotFound(instance_id=instance.uuid)
            vif_uuids = [session.call('VIF.get_uuid', vif)
                         for vif in session.call('VM.get_VIFs', vm)]
            timeout = CONF.xenserver.migration_timeout or float('inf')
            if storage_move:
                step = 'map the disks and networks'
                vdi_map, vif_map = self._maps(vm, migrate_data)
                dest_ref = migrate_data.xen_host
                step = 'move the VM and its disks (VM.migrate_send)'
                LOG.info('live-migrating to %s with its disks (storage '
                         'XenMotion to pool %s)', dest,
                         migrate_data.xen_pool_uuid, instance=instance)
                if other_pool:
                    self.watcher.leaving(instance.uuid)
                session.call_async('VM.migrate_send', vm, migrate_data.token,
                                   True, vdi_map, vif_map, {}, {},
                                   timeout=timeout,
                                   on_task=self._started(instance),
                                   on_progress=self._progress(
                                       vm, migrate_data, vdi_map))
            else:
                step = 'find the destination host'
                dest_ref = self._destination(context, migrate_data)
                step = 'move the VM (VM.pool_migrate)'
                LOG.info('live-migrating to %s (VM.pool_migrate)', dest,
                         instance=instance)
                session.call_async('VM.pool_migrate', vm, dest_ref,
                                   {'live': 'true'}, timeout=timeout,
                                   on_task=self._started(instance),
                                   on_progress=self._progress(
                                       vm, migrate_data, {}))
        except Exception as exc:
            aborted = self._finished(instance)
            outcome = self._outcome(vm, dest_ref, other_pool)
            if outcome == MOVED:
                # xapi did the move; only its answer was lost
                LOG.warning('the migration call failed (%s), but the VM has '
                            'moved: finishing the migration', _safe(
                                exc, migrate_data), instance=instance)
            else:
                self.watcher.leaving(instance.uuid, False)
                self._failed(context, instance, step, exc, aborted,
                             migrate_data)
                if outcome == UNKNOWN:
                    # neither here for sure nor there: no rollback may
                    # destroy what could be the only copy (the instance
                    # goes to ERROR, the migration to error)
                    raise
                recover_method(context, instance, dest, migrate_data,
                               migration_status='cancelled' if aborted
                               else 'error')
                return
        else:
            self._finished(instance)
        self.after.at_source(instance, vm, dest_ref, vif_uuids,
                             not other_pool)
        post_method(context, instance, dest, block_migration, migrate_data)

    def _outcome(self, vm, dest_ref, other_pool):
        """After a failed call: did the VM stay, move, or is it unknown?"""
        if vm is None:
            return STAYED
        try:
            record = self.session.call('VM.get_record', vm)
        except exception.NotFound:
            # xapi removes the source VM only once it runs elsewhere
            return MOVED if other_pool else UNKNOWN
        except Exception:
            return UNKNOWN
        if record['resident_on'] == self.host.ref:
            return STAYED
        if dest_ref is not None and record['resident_on'] == dest_ref:
            return MOVED
        return UNKNOWN

    def _progress(self, vm, migrate_data, vdi_map):
        """What Nova's migration record shows while xapi moves the VM
        (GET /servers/{id}/migrations): xapi reports one fraction for the
        whole task, applied to the memory and to the disks it copies."""
        migration = migrate_data.migration if migrate_data.obj_attr_is_set(
            'migration') else None
        if migration is None:
            return None
        memory = int(self.session.call('VM.get_memory_static_max', vm))
        disks = sum(int(self.session.call('VDI.get_virtual_size', vdi))
                    for vdi in vdi_map)

        def update(fraction):
            for kind, total in (('memory', memory), ('disk', disks)):
                done = int(total * fraction)
                # Nova's API has no zero here: "none yet" is null
                setattr(migration, kind + '_total', total or None)
                setattr(migration, kind + '_processed', done or None)
                setattr(migration, kind + '_remaining',
                        (total - done) or None)
            migration.save()
        return update

    def _destination(self, context, migrate_data):
        """The destination's XenServer host: its compute node's uuid."""
        migration = migrate_data.migration
        return self.session.call('host.get_by_uuid', _node_uuid(
            context, migration.dest_compute, migration.dest_node))

    def _failed(self, context, instance, step, exc, aborted, migrate_data):
        if aborted:
            LOG.info('live migration aborted; the instance stays here',
                     instance=instance)
            return
        text = 'Live migration failed at step "%s": %s' % (
            step, _safe(exc, migrate_data))
        LOG.error('%s; the instance stays on %s', text, self.host.nodename,
                  instance=instance)
        fault = errors.XenAPIError('live_migration', getattr(
            exc, 'details', None) or [exc.__class__.__name__],
            message=text)
        try:
            # no traceback: its text would hold the error's own words
            compute_utils.add_instance_fault_from_exc(context, instance,
                                                      fault)
        except Exception:
            LOG.exception('could not record the fault', instance=instance)

    # -- abort -----------------------------------------------------------

    def _begin(self, instance):
        with self._lock:
            self._tasks[instance.uuid] = None
            self._aborted.discard(instance.uuid)

    def _started(self, instance):
        def remember(task):
            with self._lock:
                self._tasks[instance.uuid] = task
                cancel = instance.uuid in self._aborted
            if cancel:
                # aborted before xapi's task existed
                self.session.call('task.cancel', task)
        return remember

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
            if instance.uuid not in self._tasks:
                raise exception.NovaException(
                    'no live migration of instance %s is running on host %s'
                    % (instance.uuid, self.host.nodename))
            self._aborted.add(instance.uuid)
            task = self._tasks[instance.uuid]
        LOG.info('aborting the live migration (task.cancel)',
                 instance=instance)
        if task is not None:
            self.session.call('task.cancel', task)
