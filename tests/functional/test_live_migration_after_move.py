"""A live migration whose VM has moved is finished, whatever step after
the move fails: the migration completes, the server is ACTIVE on the
destination, placement holds nothing of the migration on the source, and
the step that failed is done by the reclaimer once xapi or dom0 lets
it."""

import contextlib
import fcntl
import os

import fixtures

from xapisim.client import Control

from tests.functional import base
from tests.functional import test_live_migration as lm
from tests.functional.test_leftovers import Reclaiming

BUSY = ['INTERNAL_ERROR', 'xapi is busy']
FLAVOR = {'VCPU': 1, 'MEMORY_MB': 512, 'DISK_GB': 1}     # m1.tiny


@contextlib.contextmanager
def nft_failing(x, host):
    """Every nft command in ``host``'s dom0 fails while inside (its
    ruleset cannot be read): the isolation plugin cannot apply, remove
    or list rules there."""
    state = os.path.join(x.host.get_other_config(host)['xapisim_dom0_root'],
                         'var', 'lib', 'xapisim', 'nft')
    os.makedirs(state, exist_ok=True)
    ruleset = os.path.join(state, 'ruleset.json')
    aside = ruleset + '.aside'

    def swap(broken):
        # under nft's own lock: no command runs meanwhile
        fd = os.open(os.path.join(state, 'lock'), os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if broken:
                if os.path.exists(ruleset):
                    os.rename(ruleset, aside)
                os.mkdir(ruleset)
            else:
                os.rmdir(ruleset)
                if os.path.exists(aside):
                    os.rename(aside, ruleset)
        finally:
            os.close(fd)
    swap(True)
    try:
        yield
    finally:
        swap(False)


class _AfterMove(Reclaiming):

    def reclaimers_passed(self):
        for service in self.computes.values():
            base.reclaimer_passes(self, service.manager.driver)

    def usages(self, host_uuid):
        return {rc: used for rc, used in self._get_provider_usages(
            host_uuid).items() if used}

    def completed_migrations(self, number):
        """The last of the server's ``number`` migrations, once they have
        all completed."""
        return base.wait_for_migrations(self, self.server['id'],
                                        ['completed'] * number)[-1]

    def assertMovedAndAccounted(self, migration, source_uuid, dest_uuid,
                                dest_host):
        """Nova has the server ACTIVE on the destination; placement holds
        the flavor there and nothing of the move on the source."""
        server = self._wait_for_state_change(self.server, 'ACTIVE')
        self.assertEqual(dest_host, server['OS-EXT-SRV-ATTR:host'])
        self.assertNotIn('fault', server)
        base.wait_for_allocations_gone(self, migration['uuid'])
        self.assertEqual({}, self.usages(source_uuid))
        self.assertEqual(FLAVOR, self.usages(dest_uuid))
        return server


class CrossPoolAfterMoveTest(_AfterMove, lm._TwoPools):
    """Storage XenMotion to the other pool and back, with a failure after
    each move."""

    def setUp(self):
        super(CrossPoolAfterMoveTest, self).setUp()
        pools = self.xapi.world['pools']
        self.pools = [
            {'x': self.xapi.x, 'control': self.xapi.control,
             'host': self.source, 'uuid': pools[0]['hosts'][0]['uuid']},
            {'x': self.y, 'control': Control(
                pools[1]['master'], self.xapi.username, self.xapi.password),
             'host': self.second.host, 'uuid': pools[1]['hosts'][0]['uuid']}]

    def test_a_failure_at_each_step_after_the_move_finishes_it(self):
        cases = [
            # (what fails, in which pool)
            ('VM.set_affinity', 'destination'),
            ('nft', 'destination'),
            ('nft', 'source'),
        ]
        for number, (what, side) in enumerate(cases, 1):
            with self.subTest(what=what, side=side):
                src, dst = self.pools[(number - 1) % 2], \
                    self.pools[number % 2]
                failing = {'source': src, 'destination': dst}[side]
                with contextlib.ExitStack() as failures:
                    if what == 'nft':
                        x = failing['x']
                        failures.enter_context(nft_failing(
                            x, x.host.get_all()[0]))
                    else:
                        failing['control'].fail(what, BUSY)
                    lm.live_migrate(self)
                    migration = self.completed_migrations(number)
                    self.assertMovedAndAccounted(migration, src['uuid'],
                                                 dst['uuid'], dst['host'])
                # the VM runs in the destination pool, its affinity and
                # rules follow, the source's rules go (what failed, once
                # each compute's reclaimer has passed)
                self.reclaimers_passed()
                x = dst['x']
                host = x.host.get_all()[0]
                (vm,) = self.objects_in(x)['VM']
                self.assertEqual(host, x.VM.get_resident_on(vm))
                self.assertEqual(host, x.VM.get_affinity(vm))
                vif = x.VIF.get_uuid(x.VM.get_VIFs(vm)[0])
                self.assertEqual([vif], list(self.rules_in(x)))
                self.assertEqual({}, self.rules_in(src['x']))
                self.assertEqual({'VM': [], 'VDI': [], 'VIF': []},
                                 self.objects_in(src['x']))
        self._delete_server(self._wait_for_state_change(self.server,
                                                        'ACTIVE'))
        for pool in self.pools:
            self.assertEqual({}, self.usages(pool['uuid']))
            self.assertEqual({'VM': [], 'VDI': [], 'VIF': []},
                             self.objects_in(pool['x']))
            self.assertEqual({}, self.rules_in(pool['x']))


class InPoolAfterMoveTest(_AfterMove, lm._TwoHosts):
    """XenMotion to the other host of the pool and back, with a failure
    after each move."""

    def test_a_failure_at_each_step_after_the_move_finishes_it(self):
        hosts = {self.x.host.get_by_uuid(h['uuid']): h for h in self.hosts}
        services = {h['uuid']: self.driver_host(h['uuid'])
                    for h in self.hosts}
        cases = [
            # both the source's and the destination's
            ('VM.set_affinity', {'times': 2}),
            # the source's look at the VIFs after the move (the first
            # call, before the move, reads them for their rule tables)
            ('VIF.get_uuid', {'nth': 2}),
            ('nft', 'destination'),
            ('nft', 'source'),
        ]
        for number, (what, how) in enumerate(cases, 1):
            src_ref = self.x.VM.get_resident_on(self.vm)
            dst_ref = [r for r in hosts if r != src_ref][0]
            src, dst = hosts[src_ref]['uuid'], hosts[dst_ref]['uuid']
            with self.subTest(what=what, how=how):
                with contextlib.ExitStack() as failures:
                    if what == 'nft':
                        failures.enter_context(nft_failing(
                            self.x, src_ref if how == 'source' else dst_ref))
                    else:
                        self.xapi.control.fail(what, BUSY, **how)
                    lm.live_migrate(self)
                    migration = self.completed_migrations(number)
                    self.assertMovedAndAccounted(migration, src, dst,
                                                 services[dst])
                self.reclaimers_passed()
                self.assertEqual(dst_ref, self.x.VM.get_resident_on(self.vm))
                self.assertEqual(dst_ref, self.x.VM.get_affinity(self.vm))
                self.assertEqual([self.vif_uuid], list(self.rules(dst_ref)))
                self.assertEqual({}, self.rules(src_ref))
                self.xapi.control.clear_faults()
        self._delete_server(self._wait_for_state_change(self.server,
                                                        'ACTIVE'))
        for host in self.hosts:
            self.assertEqual({}, self.usages(host['uuid']))
        self.assertEqual({'VM': [], 'VDI': [], 'VBD': [], 'VIF': []},
                         self.xapi.objects_of(self.server['id']))
        self.assertEqual({}, self.rules(self.refs[0]))
        self.assertEqual({}, self.rules(self.refs[1]))

    def test_a_retry_before_nova_records_the_move_waits_for_it(self):
        """The destination's reclaimer retries the affinity while Nova has
        not yet recorded the move (the instance's node is still the
        source's): the step is not done then, and it is done once Nova has
        the instance here."""
        by_ref = {self.x.host.get_by_uuid(h['uuid']): h['uuid']
                  for h in self.hosts}
        src, dst = by_ref[self.src_ref], by_ref[self.dst_ref]
        dest = self.computes[self.driver_host(dst)].manager
        held = []
        post_at_destination = dest.driver.post_live_migration_at_destination

        def then_reclaimer_passes(*args, **kwargs):
            # the window between the driver's return and Nova's save of
            # the instance as the destination's: let the reclaimer pass
            post_at_destination(*args, **kwargs)
            held.append(dest.driver._reclaimer.passes)
            base.reclaimer_passes(self, dest.driver)
        self.useFixture(fixtures.MockPatchObject(
            dest.driver, 'post_live_migration_at_destination',
            side_effect=then_reclaimer_passes))
        # the source's try and the destination's first one
        self.xapi.control.fail('VM.set_affinity', BUSY, times=2)
        lm.live_migrate(self)
        migration = self.completed_migrations(1)
        self.assertEqual(1, len(held))
        self.assertMovedAndAccounted(migration, src, dst,
                                     self.driver_host(dst))
        self.reclaimers_passed()
        self.assertEqual(self.dst_ref, self.x.VM.get_affinity(self.vm))
        self.assertEqual([self.vif_uuid], list(self.rules(self.dst_ref)))

    def driver_host(self, host_uuid):
        """The nova-compute service host managing a XenServer host."""
        for name, service in self.computes.items():
            if service.manager.driver._host.uuid == host_uuid:
                return name
        raise AssertionError('no compute for host %s' % host_uuid)
