"""A live migration once xapi has moved the VM: what follows never fails it.

When ``VM.pool_migrate`` or ``VM.migrate_send`` has returned, the VM runs
on the destination, and Nova must be told so.  A driver call after that
which raised (xapi busy, a dom0 plugin failing) would make Nova put the
server in ERROR, the migration in ``error``, and keep the migration's
allocation of the source's resources in placement for good (Nova frees
it only when the migration completes).  So each step after the move is
tried once and, if it fails, logged and handed to the reclaimer
(``session.deferred``, reclaim.py), which tries it again every
``[xenserver]reclaim_interval`` s until it is done or has nothing left
to do (the VM is gone, runs on another host, or Nova has the instance
on another host now):

* destination: the VM's affinity (a halted VM is its affinity host's: no
  compute would own it once stopped) and its isolation rules;
* source: the rule tables of the VM's VIFs in its dom0 (what it cannot
  remove, the reclaimer's sweep of tables whose VM runs elsewhere does)
  and, in a pool, a first try at the rules and affinity on the
  destination (whose own compute does both, too); its hold on the
  volumes' targets (volumes.py, deferred likewise).
"""

import functools
import time

from nova import context as nova_context
from nova import exception
from nova import objects
from nova.compute import task_states
from oslo_log import log as logging

from nova_xen import storage

LOG = logging.getLogger(__name__)
NULL = storage.NULL


class NotYet(Exception):
    """A step that must wait for Nova to catch up: retried later."""


def vms_by_tag(session, instance_uuid):
    """Every VM of the pool tagged for the instance."""
    return [ref for ref, rec in session.call(
        'VM.get_all_records_where',
        'field "is_a_template" = "false"').items()
        if rec['other_config'].get('nova_uuid') == instance_uuid]


class AfterMove(object):
    def __init__(self, session, host, watcher, isolation):
        self.session = session
        self.host = host
        self.watcher = watcher
        self.isolation = isolation

    # -- source ----------------------------------------------------------

    def at_source(self, instance, vm, dest_ref, vif_uuids, same_pool):
        """Right after the move: in a pool, the destination gets the VM's
        rules and affinity at once (its compute does both too, later);
        here the VM's VIFs lose their rule tables."""
        if same_pool:
            started = time.monotonic()
            try:
                self.isolation.apply(vm, force=True)
                LOG.info('isolation rules in place on the destination %d ms '
                         'after xapi reported the move done',
                         (time.monotonic() - started) * 1000,
                         instance=instance)
            except Exception as exc:
                # the destination's watcher and compute apply them too
                LOG.warning('could not filter the VIFs on the destination '
                            'yet: %s', exc, instance=instance)
            try:
                self.session.call('VM.set_affinity', vm, dest_ref)
            except Exception as exc:
                LOG.warning('could not set the VM\'s affinity to its new '
                            'host (the destination sets it): %s', exc,
                            instance=instance)
            self.watcher.refresh_vm(vm)
        # (to another pool the VM is gone: the watcher's "del" event
        # drops it and its leaving mark)
        self.remove_rules(instance, vif_uuids)

    def remove_rules(self, instance, vif_uuids):
        for vif_uuid in vif_uuids:
            try:
                self.isolation.remove_table(vif_uuid, self.host.ref)
            except Exception as exc:
                # the reclaimer's sweep removes it once the VIF is gone or
                # its VM runs elsewhere; a table without devices filters
                # nothing meanwhile
                LOG.warning('could not remove the rules of VIF %s from the '
                            'source: %s', vif_uuid, exc, instance=instance)

    def post_at_source(self, instance):
        """Inside a pool the VM is still known here: make sure no table of
        its VIFs is left in this dom0."""
        vm, _ = self.watcher.anywhere(instance.uuid)
        if vm is None:
            return
        try:
            vif_uuids = [self.session.call('VIF.get_uuid', vif)
                         for vif in self.session.call('VM.get_VIFs', vm)]
        except Exception as exc:
            LOG.warning('could not list the VIFs of the VM that moved (%s): '
                        'the reclaimer removes their rule tables here',
                        exc, instance=instance)
            return
        self.remove_rules(instance, vif_uuids)

    # -- destination -----------------------------------------------------

    def at_destination(self, instance):
        """The VM runs here: its affinity and rules, now or later."""
        self.session.deferred.attempt(
            ('settle', instance.uuid),
            'give the VM of instance %s its affinity and isolation rules on '
            'host %s' % (instance.uuid, self.host.nodename),
            functools.partial(self._settle, instance.uuid),
            retry=functools.partial(self._settle, instance.uuid,
                                    check_nova=True),
            instance=instance)

    def _settle(self, instance_uuid, check_nova=False):
        if check_nova and not self._nova_has_it_here(instance_uuid):
            return
        vm, _ = self.watcher.anywhere(instance_uuid)
        if vm is None:
            found = vms_by_tag(self.session, instance_uuid)
            if not found:
                return
            vm = found[0]
        record = self.session.call('VM.get_record', vm)
        if record['resident_on'] not in (NULL, self.host.ref):
            return          # moved on since
        if record['affinity'] != self.host.ref:
            # a halted VM belongs to its affinity host
            self.session.call('VM.set_affinity', vm, self.host.ref)
        self.watcher.refresh_vm(vm)
        self.isolation.apply(vm, record=record)

    def _nova_has_it_here(self, instance_uuid):
        """Nova's instance is (still) on this compute node.  While the live
        migration that brought it is still running, Nova has not recorded
        the move yet (it does once the driver's
        ``post_live_migration_at_destination`` has returned): not yet, ask
        again on the next pass."""
        try:
            instance = objects.Instance.get_by_uuid(
                nova_context.get_admin_context(), instance_uuid)
        except exception.InstanceNotFound:
            return False
        if instance.node == self.host.nodename:
            return True
        if instance.task_state == task_states.MIGRATING:
            raise NotYet('Nova has not recorded the move of instance %s to '
                         'host %s yet' % (instance_uuid, self.host.nodename))
        return False
