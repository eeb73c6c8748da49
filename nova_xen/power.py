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


def reboot_stuck_hard(timeout, instances):
    """Instances stuck rebooting for ``[DEFAULT]reboot_timeout`` seconds
    get a hard reboot through Nova's API (so that their task state is
    Nova's again), as a hypervisor that lost the request would need."""
    if not instances:
        return
    # nova's API and context, at run time only (nova-xen-manage imports
    # this module; nova's context pulls eventlet in)
    from nova.compute import api as compute_api
    from nova import context as nova_context
    api = compute_api.API()
    context = nova_context.get_admin_context()
    for instance in instances:
        LOG.warning('the reboot has not finished in %d s: rebooting hard',
                    timeout, instance=instance)
        try:
            api.reboot(context, instance, 'HARD')
        except Exception as exc:
            LOG.error('hard reboot of a stuck reboot failed: %s', exc,
                      instance=instance)


# what a VM is like once it has no domain
NO_DOMAIN = {'domid': '-1', 'resident_on': 'OpaqueRef:NULL'}


def actual_state(exc):
    """The power state xapi reported in a VM_BAD_POWER_STATE refusal
    ('Halted', ...), or None for any other failure."""
    if getattr(exc, 'xapi_code', None) == 'VM_BAD_POWER_STATE' and \
            len(getattr(exc, 'params', ())) >= 3:
        return exc.params[2].capitalize()
    return None


def start(session, vm, host_ref, paused=False):
    """VM.start_on the compute's host, within [xenserver]running_timeout."""
    without_detached_volumes(session, vm)
    session.call_async('VM.start_on', vm, host_ref, paused, False,
                       timeout=CONF.xenserver.running_timeout)


def without_detached_volumes(session, vm):
    """Before ``vm`` starts or resumes: the VBDs of volumes detached from
    it that xapi would not destroy then (session.leftovers, for the
    reclaimer) go now, for xapi plugs every VBD of a VM that starts, and a
    detached volume must not come back (Cinder may have removed its LUN,
    or attached it elsewhere).  If one still cannot go, the VM does not
    start."""
    for vbd in session.leftovers.refs('VBD'):
        try:
            if session.call('VBD.get_VM', vbd) != vm:
                continue
            session.call('VBD.destroy', vbd)
        except exception.NotFound:
            pass
        except Exception as exc:
            raise exception.NovaException(
                'the VBD %s of a volume detached from this server is still '
                'there (%s): the server starts once it is removed (nova-xen '
                'tries again every %d s)' % (
                    vbd, errors.why(exc), CONF.xenserver.reclaim_interval))
        session.leftovers.discard('VBD', vbd)


def halt(session, vm):
    """Hard shutdown, unless the VM is halted already: xapi's refusal says
    so (no power state is read first)."""
    try:
        session.call_async('VM.hard_shutdown', vm)
    except exception.InstanceInvalidState as exc:
        if actual_state(exc) != 'Halted':
            raise


def paused_domain(session, watcher, vm, known, host_ref):
    """The record of the new, paused domain of ``vm`` on ``host_ref``
    (``known``: the VM's domids before the start, watcher.domids): the
    watcher's event brings it, without a call; read (and cached) if the
    event is late."""
    record = watcher.wait_domain(vm, known, host_ref)
    if record is None:
        record = session.call('VM.get_record', vm)
        watcher.remember(vm, record)
    return record


def start_filtered(session, vm, host_ref, apply_rules, resume=False,
                   watcher=None):
    """Start (or resume) ``vm`` paused, put the isolation rules on the new
    domain's VIFs (``apply_rules(vm, record=...)``), then let the guest
    run: it never sends a frame without them.  With the VM ``watcher``,
    the new domain's record comes from its event (paused_domain);
    without, ``apply_rules`` reads it (record None)."""
    known = watcher.domids(vm) if watcher is not None else None
    if resume:
        without_detached_volumes(session, vm)
        session.call_async('VM.resume_on', vm, host_ref, True, False)
    else:
        start(session, vm, host_ref, paused=True)
    record = None
    if watcher is not None:
        record = paused_domain(session, watcher, vm, known, host_ref)
    apply_rules(vm, record=record)
    # unpausing a domain is immediate: no task to wait for
    session.call('VM.unpause', vm)


class PowerOps(object):
    """Each operation starts from the power state in the VM watcher's
    cache (no read); where that may be stale by a few milliseconds, xapi's
    refusal (VM_BAD_POWER_STATE, which names the actual state) decides.
    What an operation leaves is written into the cache, not read back; a
    new domain's record comes with the watcher's event of it (read once
    if that is late), for its isolation rules."""

    def __init__(self, session, host, watcher, isolation=None):
        self.session = session
        self.host = host
        self.watcher = watcher
        self.isolation = isolation    # network.Isolation

    def _vm(self, instance):
        vm, record = self.watcher.record(instance.uuid)
        if vm is None:
            raise exception.InstanceNotFound(instance_id=instance.uuid)
        return vm, record['power_state']

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

    def _run(self, instance, vm):
        """Let a paused domain run: its rules go on first (unless they
        are on already: the watcher's record says which domain it is)."""
        if self.isolation is not None:
            _, record = self.watcher.record(instance.uuid)
            self.isolation.apply(vm, record=record)
        self.session.call('VM.unpause', vm)
        self.watcher.assume(vm, power_state='Running')

    def _start(self, instance, vm, resume=False):
        """A new domain, started paused; its record (the watcher's, or
        read once) gives the rules their domain; then it runs."""
        start_filtered(self.session, vm, self.host.ref, self._apply_rules,
                       resume=resume, watcher=self.watcher)
        self.watcher.assume(vm, power_state='Running')

    def _apply_rules(self, vm, record=None):
        if self.isolation is not None:
            self.isolation.apply(vm, record=record)

    def _new_domain(self, vm, known):
        """The VM's new running domain (``known``: its domids before the
        soft reboot) gets its rules, with the record from the watcher's
        event of it (read, and cached, only if that event is late)."""
        record = self.watcher.wait_domain(vm, known, self.host.ref,
                                          power_state='Running')
        if record is None:
            record = self.session.call('VM.get_record', vm)
            self.watcher.remember(vm, record)
        if self.isolation is not None:
            self.isolation.apply(vm, record=record)

    def _halt(self, vm):
        halt(self.session, vm)
        self.watcher.assume(vm, power_state='Halted', **NO_DOMAIN)

    def _to_running(self, instance, vm, state):
        """Whatever ``state`` the VM is in, it ends running; a state the
        cache had wrong is corrected by xapi's refusal, once."""
        try:
            self._from(instance, vm, state)
        except exception.InstanceInvalidState as exc:
            actual = actual_state(exc)
            if actual is None or actual == state:
                raise
            LOG.info('the VM is %s, not %s', actual, state,
                     instance=instance)
            self._from(instance, vm, actual)

    def _from(self, instance, vm, state):
        if state == 'Halted':
            self._start(instance, vm)
        elif state == 'Suspended':
            self._start(instance, vm, resume=True)
        elif state == 'Paused':
            self._run(instance, vm)
        else:
            LOG.info('the VM runs already', instance=instance)

    # -- Nova's calls ------------------------------------------------------

    def reboot(self, instance, reboot_type):
        vm, state = self._vm(instance)
        known = self.watcher.domids(vm)
        if state == 'Running' and reboot_type == 'SOFT' and self._ask(
                instance, vm, 'VM.clean_reboot',
                CONF.xenserver.soft_reboot_timeout):
            # xapi gave it a new domain, running: its rules follow now
            self._new_domain(vm, known)
            return
        # hard: the domain goes and a new one starts paused, so that its
        # VIFs have their isolation rules before the guest runs; a reboot
        # ends with the instance running, whatever it was
        if state != 'Halted':
            LOG.info('hard reboot: stopping the domain', instance=instance)
            self._halt(vm)
        self._to_running(instance, vm, 'Halted')

    def power_off(self, instance, timeout=0, retry_interval=0):
        vm, state = self._vm(instance)
        if state == 'Halted':
            return
        if not (state == 'Running' and self._ask(
                instance, vm, 'VM.clean_shutdown', timeout, retry_interval)):
            halt(self.session, vm)
        self.watcher.assume(vm, power_state='Halted', **NO_DOMAIN)

    def power_on(self, instance):
        vm, state = self._vm(instance)
        self._to_running(instance, vm, state)

    # Nova's view may be stale (a change behind its back), and asking xapi
    # for a transition from the wrong state fails with VM_BAD_POWER_STATE
    # where the user only wants the server in the state asked for: the
    # cache says where it starts, xapi's refusal where it really was

    def pause(self, instance):
        vm, state = self._vm(instance)
        if state == 'Paused':
            return
        try:
            self.session.call('VM.pause', vm)
        except exception.InstanceInvalidState as exc:
            if actual_state(exc) != 'Paused':
                raise
        self.watcher.assume(vm, power_state='Paused')

    def unpause(self, instance):
        vm, state = self._vm(instance)
        if state == 'Running':
            LOG.info('unpause: the VM runs already', instance=instance)
            return
        try:
            self._run(instance, vm)
        except exception.InstanceInvalidState as exc:
            if actual_state(exc) != 'Running':
                raise
            LOG.info('unpause: the VM runs already', instance=instance)
            self.watcher.assume(vm, power_state='Running')

    def suspend(self, instance):
        vm, state = self._vm(instance)
        if state == 'Suspended':
            return
        try:
            self.session.call_async('VM.suspend', vm)
        except exception.InstanceInvalidState as exc:
            if actual_state(exc) != 'Suspended':
                raise
        self.watcher.assume(vm, power_state='Suspended', **NO_DOMAIN)

    def resume(self, instance):
        vm, state = self._vm(instance)
        self._to_running(instance, vm, state)
