"""Power operations: reboot, stop/start, pause, suspend.

Clean operations ask the guest (through xapi), again every retry
interval, and fall back to the hard ones when the guest does not answer
in time: the task is cancelled and the hard operation follows, as Nova's
timeouts ask.  Every new domain the driver starts (start, resume, hard
reboot) starts paused and runs only once its VIFs have their isolation
rules; a guest rebooting itself (or a soft reboot) gets a new domain from
xapi directly, whose rules follow within moments (the VM watcher).
"""

import time

from nova import exception
from oslo_log import log as logging

from nova_xen import errors
from nova_xen.conf import CONF

LOG = logging.getLogger(__name__)


def start(session, vm, host_ref, paused=False):
    """VM.start_on the compute's host, within [xenserver]running_timeout."""
    session.call_async('VM.start_on', vm, host_ref, paused, False,
                       timeout=CONF.xenserver.running_timeout)


def halt(session, vm):
    """Hard shutdown, unless the VM is halted already."""
    if session.call('VM.get_power_state', vm) != 'Halted':
        session.call_async('VM.hard_shutdown', vm)


def start_filtered(session, vm, host_ref, apply_rules, resume=False):
    """Start (or resume) ``vm`` paused, put the isolation rules on the new
    domain's VIFs (``apply_rules(vm)``), then let the guest run: it never
    sends a frame without them."""
    if resume:
        session.call_async('VM.resume_on', vm, host_ref, True, False)
    else:
        start(session, vm, host_ref, paused=True)
    apply_rules(vm)
    session.call_async('VM.unpause', vm)


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

    def _ask(self, instance, vm, clean, timeout, retry_interval=0):
        """Ask the guest (``clean``) for up to ``timeout`` seconds, asking
        again every ``retry_interval`` seconds; True once it complied."""
        deadline = time.monotonic() + (timeout or 0)
        asked = 0
        while timeout and timeout > 0:
            left = deadline - time.monotonic()
            if asked and left < 1:
                break
            wait = min(retry_interval, left) if retry_interval else left
            asked += 1
            try:
                self.session.call_async(clean, vm, timeout=max(wait, 1))
                return True
            except errors.XenAPIError as exc:
                if exc.xapi_code != 'TIMEOUT':
                    LOG.warning('%s failed (%s)', clean, exc,
                                instance=instance)
                    return False
                LOG.info('the guest did not answer %s within %d s (request '
                         '%d)', clean, max(wait, 1), asked, instance=instance)
            except exception.InstanceInvalidState as exc:
                LOG.warning('%s refused (%s)', clean, exc, instance=instance)
                return False
        return False

    def _start(self, instance, vm, resume=False):
        start_filtered(self.session, vm, self.host.ref,
                       lambda vm: self._done(instance, vm), resume=resume)
        self.watcher.refresh_vm(vm)

    # -- Nova's calls ------------------------------------------------------

    def reboot(self, instance, reboot_type):
        vm = self._vm(instance)
        state = self._state(vm)
        if state == 'Running' and reboot_type == 'SOFT' and self._ask(
                instance, vm, 'VM.clean_reboot',
                CONF.xenserver.soft_reboot_timeout):
            self._done(instance, vm)
            return
        # hard: the domain goes and a new one starts paused, so that its
        # VIFs have their isolation rules before the guest runs; a reboot
        # ends with the instance running, whatever it was
        if state != 'Halted':
            LOG.info('hard reboot: stopping the domain', instance=instance)
            self.session.call_async('VM.hard_shutdown', vm)
        self._start(instance, vm)

    def power_off(self, instance, timeout=0, retry_interval=0):
        vm = self._vm(instance)
        state = self._state(vm)
        if state == 'Halted':
            return
        if not (state == 'Running' and self._ask(
                instance, vm, 'VM.clean_shutdown', timeout, retry_interval)):
            halt(self.session, vm)
        self._done(instance, vm)

    def power_on(self, instance):
        vm = self._vm(instance)
        state = self._state(vm)
        if state == 'Halted':
            self._start(instance, vm)
        elif state == 'Suspended':
            self._start(instance, vm, resume=True)
        elif state == 'Paused':
            self.session.call_async('VM.unpause', vm)
            self._done(instance, vm)

    # pause, unpause, suspend and resume look at xapi's power state first:
    # Nova's view may be stale (a change behind its back), and asking xapi
    # for a transition from the wrong state fails with VM_BAD_POWER_STATE
    # where the user only wants the server in the state asked for

    def pause(self, instance):
        vm = self._vm(instance)
        if self._state(vm) != 'Paused':
            self.session.call_async('VM.pause', vm)
        self._done(instance, vm)

    def unpause(self, instance):
        vm = self._vm(instance)
        if self._state(vm) == 'Running':
            LOG.info('unpause: the VM runs already', instance=instance)
        else:
            self.session.call_async('VM.unpause', vm)
        self._done(instance, vm)

    def suspend(self, instance):
        vm = self._vm(instance)
        if self._state(vm) != 'Suspended':
            self.session.call_async('VM.suspend', vm)
        self._done(instance, vm)

    def resume(self, instance):
        vm = self._vm(instance)
        state = self._state(vm)
        if state == 'Running':
            LOG.info('resume: the VM runs already', instance=instance)
            self._done(instance, vm)
        elif state == 'Paused':
            self.session.call_async('VM.unpause', vm)
            self._done(instance, vm)
        else:
            self._start(instance, vm, resume=state == 'Suspended')
