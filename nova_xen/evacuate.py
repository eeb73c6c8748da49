"""Evacuate: a failed host's instances restart on another host of its pool.

The VM record and its disks belong to the pool, not to the host: when a
host is down (Nova's service down, and xapi reporting the host dead or
disabled), this host takes over the instance's VM itself -- xapi forgets
the domain the dead host ran (``VM.power_state_reset``; on a host xapi
still sees alive but disabled, ``VM.hard_shutdown`` stops it for good),
the VM's affinity becomes this host, and it starts here, isolation rules
first.  That is Nova's "rebuild on shared storage": the instance keeps its
disks, its VIFs (their Neutron ports follow) and its uuid.

Refused, with a sentence and nothing changed: a VM in another pool, disks
on an SR this host does not see (a local SR of the failed host), a source
host xapi reports alive and enabled.

When the failed host's nova-compute comes back, it finds the VM owned by
this host (events.owned_by: resident here, or halted with affinity here):
Nova's start-up clean-up of evacuated instances, which destroys what the
driver still lists, finds nothing to destroy.
"""

from nova import exception
from oslo_log import log as logging

from nova_xen import events
from nova_xen import power
from nova_xen import storage

LOG = logging.getLogger(__name__)


class Evacuation(object):
    def __init__(self, session, host, watcher, isolation):
        self.session = session
        self.host = host
        self.watcher = watcher
        self.isolation = isolation

    def _unseen(self, vm):
        """Names of the SRs of the VM's disks this host does not see."""
        return {self.session.call('SR.get_name_label', sr)
                for sr in self.host.unseen_srs(vm)}

    def on_disk(self, instance):
        """Nova's instance_on_disk: the VM is in this pool and this host
        sees every one of its disks."""
        vm, _ = self.watcher.anywhere(instance.uuid)
        return vm is not None and not self._unseen(vm)

    def _refuse(self, instance, reason):
        LOG.error('cannot evacuate here: %s', reason, instance=instance)
        return exception.NovaException(
            'nova-xen cannot evacuate instance %s to host %s: %s'
            % (instance.uuid, self.host.nodename, reason))

    def check(self, instance):
        """Refuse (nothing changed) what cannot be evacuated here; else
        (VM, failed host, whether xapi still sees that host alive)."""
        session = self.session
        vm, record = self.watcher.anywhere(instance.uuid)
        if vm is None:
            raise self._refuse(instance, (
                'its VM is not in pool %s (evacuation restarts a VM on '
                'another host of its own pool, from its disks)'
                % self.host.pool_uuid))
        failed = events.host_of(record)
        unseen = self._unseen(vm)
        if unseen:
            raise self._refuse(instance, (
                'its disks are on SR %s, which this host does not see '
                '(a local SR of the failed host): they are out of reach '
                'until that host is back' % ', '.join(sorted(unseen))))
        live = enabled = False
        if failed not in (storage.NULL, self.host.ref):
            enabled = session.call('host.get_enabled', failed)
            live = session.call('host_metrics.get_live', session.call(
                'host.get_metrics', failed))
            if live and enabled:
                raise self._refuse(instance, (
                    'xapi reports its host %s alive and enabled: stop the '
                    'host (or disable it: xe host-disable) first'
                    % session.call('host.get_name_label', failed)))
        return vm, failed, live

    def take_over(self, instance):
        session = self.session
        vm, failed, live = self.check(instance)
        state = session.call('VM.get_power_state', vm)
        if state != 'Halted':
            if live:
                LOG.warning('host %s is disabled but alive: stopping the '
                            'VM there for good', failed, instance=instance)
                session.call_async('VM.hard_shutdown', vm)
            else:
                LOG.warning('host %s is dead: xapi forgets the domain it '
                            'ran (VM.power_state_reset)', failed,
                            instance=instance)
                session.call('VM.power_state_reset', vm)
        session.call('VM.set_affinity', vm, self.host.ref)
        self.watcher.refresh_vm(vm)
        power.start_filtered(session, vm, self.host.ref,
                             self.isolation.apply)
        self.watcher.refresh_vm(vm)
        LOG.info('evacuated from a failed host: runs on %s with its own '
                 'disks', self.host.nodename, instance=instance)
