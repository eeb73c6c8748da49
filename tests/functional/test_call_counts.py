"""XenAPI calls per operation: each one makes at most twice the calls it
minimally needs (what the driver already knows is not read back from
xapi).  ``benchmarks/call_counts.py`` prints the same measurements as a
table."""

import collections
import threading
import xmlrpc.client

import fixtures
from nova import context as nova_context
from nova import objects

from tests.functional import base
from tests.functional import fixtures as xen_fixtures
from tests.functional.test_boot import pattern

MIB = 1024 * 1024
EVENT_FROM = 'event.from'

# The fewest XenAPI calls each operation needs, for a server with one
# disk and one VIF, each xapi operation counted once (an Async.X and the
# task.destroy that follows count as one: waiting for tasks is the
# session layer's business):
MINIMUM = collections.OrderedDict([
    # VDI.create, the image import (a plugin call), VM.create,
    # VBD.create, VIF.create, VM.start_on (paused), the VIF's isolation
    # rules (a plugin call), VM.unpause
    ('spawn', 8),
    # VM.clean_shutdown
    ('stop', 1),
    # VM.start_on (paused), isolation rules, VM.unpause
    ('start', 3),
    # VM.clean_reboot, isolation rules of the new domain
    ('soft reboot', 2),
    # VM.hard_shutdown, VM.start_on (paused), isolation rules, VM.unpause
    ('hard reboot', 4),
    # VM.pause
    ('pause', 1),
    # VM.unpause
    ('unpause', 1),
    # VM.suspend
    ('suspend', 1),
    # VM.resume_on (paused), isolation rules, VM.unpause
    ('resume', 3),
    # the root disk (the VM's VBDs), VDI.snapshot, the upload (a plugin
    # call), VDI.destroy
    ('snapshot', 4),
    # host metrics (memory) and SR record (disk): what the host is made
    # of (CPUs, flags, versions) is known since start-up, and the memory
    # of the VMs that are no instances in the VM watcher's cache
    ('resource update', 2),
    # every instance's power state is in the VM watcher's cache
    ('power-state sync', 0),
    # VM.hard_shutdown, its VIF's rules (a plugin call), the VM's disks,
    # VM.destroy, VDI.destroy
    ('destroy', 5),
])

# at most this many calls (event.from aside) per operation
BOUND = {name: max(2 * minimum, 1) for name, minimum in MINIMUM.items()}

# the compute manager's handler of each operation driven through Nova's
# API: the operation is over (every call it makes is made) once it has
# returned; the others are the test's own calls
HANDLER = {
    'spawn': '_do_build_and_run_instance',
    'stop': 'stop_instance',
    'start': 'start_instance',
    'soft reboot': 'reboot_instance',
    'hard reboot': 'reboot_instance',
    'pause': 'pause_instance',
    'unpause': 'unpause_instance',
    'suspend': 'suspend_instance',
    'resume': 'resume_instance',
    'snapshot': 'snapshot_instance',
    'destroy': 'terminate_instance',
}

# seconds no wait of the driver can last within a test: what it would
# otherwise give up on after a while (and so do more calls: ask the guest
# again, read a task, read a new domain's record), on a busy machine
NEVER = 3600


class ClientCalls(fixtures.Fixture):
    """XML-RPC messages this process sends (nova-compute's, here), by
    name as xapi counts them (``Async.X`` as ``X``): what xapi counts
    beyond these came from dom0 (the plugins' own calls)."""

    def _setUp(self):
        self._lock = threading.Lock()
        self.counts = collections.Counter()
        original = xmlrpc.client.ServerProxy._ServerProxy__request
        counts, lock = self.counts, self._lock

        def counted(proxy, methodname, params):
            name = methodname
            if name.startswith('Async.'):
                name = name[len('Async.'):]
            with lock:
                counts[name] += 1
            return original(proxy, methodname, params)
        self.useFixture(fixtures.MonkeyPatch(
            'xmlrpc.client.ServerProxy._ServerProxy__request', counted))

    def reset(self):
        with self._lock:
            self.counts.clear()

    def snapshot(self):
        with self._lock:
            return dict(self.counts)


def _others(calls):
    return sum(n for name, n in calls.items() if name != EVENT_FROM)


class Measured(object):
    """The calls of one operation."""

    def __init__(self, name, driver, xapi):
        self.name = name
        self.driver = driver        # {message: count} nova-compute sent
        self.xapi = xapi            # {message: count} xapi served

    @property
    def event_from(self):
        return self.driver.get(EVENT_FROM, 0)

    @property
    def calls(self):
        """The driver's calls but event.from."""
        return _others(self.driver)

    @property
    def dom0(self):
        """Calls xapi served for dom0 plugins (their own sessions)."""
        return max(_others(self.xapi) - self.calls, 0)

    @property
    def total(self):
        return sum(self.driver.values())

    @property
    def minimum(self):
        return MINIMUM[self.name]

    @property
    def ratio(self):
        return self.calls / self.minimum if self.minimum else None


class CallCounting(base.XenAPIFunctionalTestCase):
    """Drives each operation through Nova's API and counts its calls.

    An operation is over once the compute manager's handler of it has
    returned (HANDLER); no wait of the driver can time out meanwhile
    (NEVER), so that a busy machine makes no call more: the counts are
    the driver's, not the machine's."""

    def _setup_services(self):
        # no reclaimer pass in the middle of a measurement
        self.flags(reclaim_interval=NEVER, group='xenserver')
        # the guest is asked once and answers (a second request, or the
        # hard fallback, only when its answer is later than this)
        self.flags(shutdown_timeout=NEVER)
        self.flags(shutdown_retry_interval=NEVER, group='compute')
        self.flags(soft_reboot_timeout=NEVER, group='xenserver')
        # a task's end and a new domain's record come with their events
        # (not read, as after CHECK_EVERY or DOMAIN_WAIT without them)
        self.useFixture(fixtures.MonkeyPatch('nova_xen.tasks.CHECK_EVERY',
                                             NEVER))
        self.useFixture(fixtures.MonkeyPatch('nova_xen.events.DOMAIN_WAIT',
                                             NEVER))
        self.client = self.useFixture(ClientCalls())
        super(CallCounting, self)._setup_services()
        self.handlers = self.useFixture(xen_fixtures.Handlers(
            self.computes[self.compute.host].manager, set(HANDLER.values())))

    def measure(self, name, action):
        # whatever an earlier operation does is over
        self.handlers.wait()
        handler = HANDLER.get(name)
        returned = self.handlers.returned[handler]
        self.xapi.control.reset_calls()
        self.client.reset()
        result = action()
        self.handlers.wait(handler, returned + 1)
        measured = Measured(name, self.client.snapshot(),
                            self.xapi.control.calls())
        self.measured[name] = measured
        return result

    def _act(self, server, body, status):
        self.api.post_server_action(server['id'], body)
        self._wait_for_server_parameter(
            server, {'status': status, 'OS-EXT-STS:task_state': None})

    def _snapshot(self, server):
        self.api.microversion = '2.45'
        self.api.api_post('/servers/%s/action' % server['id'],
                          {'createImage': {'name': 'snap'}})
        self._wait_for_server_parameter(
            server, {'OS-EXT-STS:task_state': None, 'status': 'ACTIVE'})

    def measure_all(self):
        """Every operation of MINIMUM, once: {name: Measured}."""
        self.measured = collections.OrderedDict()
        image = self.image_with(pattern(MIB))
        # the image's first import, not measured (there is no image cache
        # yet: each spawn imports it)
        self._delete_server(self.boot(image))
        server = self.measure('spawn', lambda: self.boot(image))
        for name, body, status in (
                ('stop', {'os-stop': None}, 'SHUTOFF'),
                ('start', {'os-start': None}, 'ACTIVE'),
                ('soft reboot', {'reboot': {'type': 'SOFT'}}, 'ACTIVE'),
                ('hard reboot', {'reboot': {'type': 'HARD'}}, 'ACTIVE'),
                ('pause', {'pause': None}, 'PAUSED'),
                ('unpause', {'unpause': None}, 'ACTIVE'),
                ('suspend', {'suspend': None}, 'SUSPENDED'),
                ('resume', {'resume': None}, 'ACTIVE')):
            self.measure(name, lambda: self._act(server, body, status))
        self.measure('snapshot', lambda: self._snapshot(server))
        ctxt = nova_context.get_admin_context()
        manager = self.computes[self.compute.host].manager
        self.measure('resource update',
                     lambda: manager.update_available_resource(ctxt))
        instance = objects.Instance.get_by_uuid(ctxt, server['id'])
        self.assertEqual(1, manager.driver.get_info(instance).state)
        self.measure('power-state sync',
                     lambda: manager._sync_power_states(ctxt))
        self.measure('destroy', lambda: self._delete_server(server))
        return self.measured


class CallCountsTest(CallCounting):

    def test_each_operation_makes_at_most_twice_the_calls_it_needs(self):
        measured = self.measure_all()
        over = {name: (m.calls, BOUND[name], m.driver)
                for name, m in measured.items()
                if m.calls > BOUND[name]}
        self.assertEqual({}, over)


class StaleCacheTest(base.XenAPIFunctionalTestCase):
    """Operations start from the VM watcher's cache; when it lags behind
    xapi, xapi's refusal (VM_BAD_POWER_STATE) corrects it and the server
    still ends in the state asked for."""

    def setUp(self):
        super(StaleCacheTest, self).setUp()
        self.server = self.boot(self.image_with(pattern(MIB)))
        self.vm, _ = self.xapi.vm_of(self.server['id'])
        self.x = self.xapi.x
        self.driver = self.computes[self.compute.host].manager.driver
        self.instance = objects.Instance.get_by_uuid(
            nova_context.get_admin_context(), self.server['id'])
        # the cache stays as it is now, whatever xapi does: the watcher's
        # events are dropped (what the driver itself writes is kept)
        index = self.driver._index
        real = index._apply
        self.useFixture(fixtures.MockPatchObject(index, '_remove'))
        self.useFixture(fixtures.MockPatchObject(
            index, '_apply', lambda ref, record, emit: None if emit
            else real(ref, record, emit)))

    def cached(self, state):
        fields = {'power_state': state}
        if state in ('Halted', 'Suspended'):
            fields.update(domid='-1', resident_on='OpaqueRef:NULL')
        self.driver._index.assume(self.vm, **fields)

    def state(self):
        return self.x.VM.get_power_state(self.vm)

    def test_stop_of_a_vm_paused_behind_the_caches_back(self):
        self.x.VM.pause(self.vm)
        self.driver.power_off(self.instance, timeout=5)
        self.assertEqual('Halted', self.state())

    def test_pause_and_unpause_of_a_vm_already_there(self):
        self.x.VM.pause(self.vm)
        self.driver.pause(self.instance)
        self.assertEqual('Paused', self.state())
        self.x.VM.unpause(self.vm)
        self.driver.unpause(self.instance)
        self.assertEqual('Running', self.state())

    def test_start_of_a_vm_started_behind_the_caches_back(self):
        self.cached('Halted')
        self.driver.power_on(None, self.instance, None)
        self.assertEqual('Running', self.state())

    def test_start_of_a_vm_the_cache_thinks_suspended(self):
        self.x.VM.hard_shutdown(self.vm)
        self.cached('Suspended')
        self.driver.power_on(None, self.instance, None)
        self.assertEqual('Running', self.state())
        # its new domain got its rules before it ran
        vif_uuid = self.x.VIF.get_uuid(self.x.VM.get_VIFs(self.vm)[0])
        self.assertIn('vif%s.0' % self.x.VM.get_domid(self.vm),
                      self.xapi.isolation_rules()[vif_uuid])

    def test_delete_of_a_vm_the_cache_thinks_halted(self):
        self.cached('Halted')
        self.driver.destroy(None, self.instance, None)
        self.assertEqual({'VM': [], 'VDI': [], 'VBD': [], 'VIF': []},
                         self.xapi.objects_of(self.server['id']))
