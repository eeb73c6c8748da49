"""Power operations: reboot, stop/start, pause, suspend.

Clean operations ask the guest (through xapi) and fall back to the hard
ones when the guest does not answer in time: the task is cancelled and
the hard operation follows, as Nova's timeouts ask.
"""

from nova import exception
from oslo_log import log as logging

from nova_xen import errors
from nova_xen.conf import CONF

LOG = logging.getLogger(__name__)


def start(session, vm, host_ref, paused=False):
    """VM.start_on the compute's host, within [xenserver]running_timeout."""
    session.call_async('VM.start_on', vm, host_ref, paused, False,
                       timeout=CONF.xenserver.running_timeout)


class PowerOps(object):
    def __init__(self, session, host, watcher, vifs=None):
        self.session = session
        self.host = host
        self.watcher = watcher
        self.vifs = vifs          # called with the VM after its domain changed

    def _vm(self, instance):
        vm = self.watcher.lookup(instance.uuid)
        if vm is None:
            raise exception.InstanceNotFound(instance_id=instance.uuid)
        return vm

    def _state(self, vm):
        return self.session.call('VM.get_power_state', vm)

    def _done(self, instance, vm):
        """After the domain changed: refresh the cache, re-plug the VIFs."""
        self.watcher.refresh_vm(vm)
        if self.vifs is not None:
            self.vifs(vm)

    def _clean_or_hard(self, instance, vm, clean, hard, timeout):
        """Try ``clean`` for ``timeout`` seconds, then ``hard``."""
        if timeout and timeout > 0:
            try:
                self.session.call_async(clean, vm, timeout=timeout)
                return
            except errors.XenAPIError as exc:
                LOG.warning('%s did not complete (%s); using %s', clean, exc,
                            hard, instance=instance)
            except exception.InstanceInvalidState as exc:
                LOG.warning('%s refused (%s); using %s', clean, exc, hard,
                            instance=instance)
        self.session.call_async(hard, vm)

    # -- Nova's calls ------------------------------------------------------

    def reboot(self, instance, reboot_type):
        vm = self._vm(instance)
        state = self._state(vm)
        if state == 'Running':
            timeout = CONF.xenserver.soft_reboot_timeout \
                if reboot_type == 'SOFT' else 0
            self._clean_or_hard(instance, vm, 'VM.clean_reboot',
                                'VM.hard_reboot', timeout)
        elif state == 'Paused':
            self.session.call_async('VM.hard_reboot', vm)
        else:
            # a reboot ends with the instance running, whatever it was
            if state == 'Suspended':
                self.session.call_async('VM.hard_shutdown', vm)
            start(self.session, vm, self.host.ref)
        self._done(instance, vm)

    def power_off(self, instance, timeout=0, retry_interval=0):
        vm = self._vm(instance)
        state = self._state(vm)
        if state == 'Halted':
            return
        if state == 'Running':
            self._clean_or_hard(instance, vm, 'VM.clean_shutdown',
                                'VM.hard_shutdown', timeout)
        else:
            self.session.call_async('VM.hard_shutdown', vm)
        self._done(instance, vm)

    def power_on(self, instance):
        vm = self._vm(instance)
        state = self._state(vm)
        if state == 'Halted':
            start(self.session, vm, self.host.ref)
        elif state == 'Suspended':
            self.session.call_async('VM.resume_on', vm, self.host.ref, False,
                                    False)
        elif state == 'Paused':
            self.session.call_async('VM.unpause', vm)
        self._done(instance, vm)

    def pause(self, instance):
        vm = self._vm(instance)
        self.session.call_async('VM.pause', vm)
        self._done(instance, vm)

    def unpause(self, instance):
        vm = self._vm(instance)
        self.session.call_async('VM.unpause', vm)
        self._done(instance, vm)

    def suspend(self, instance):
        vm = self._vm(instance)
        self.session.call_async('VM.suspend', vm)
        self._done(instance, vm)

    def resume(self, instance):
        vm = self._vm(instance)
        self.session.call_async('VM.resume_on', vm, self.host.ref, False,
                                False)
        self._done(instance, vm)
