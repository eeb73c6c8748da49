"""nova-xen-manage: the pool aggregates it plans, and ``check`` against a
live simulated pool.

What ``pools sync`` sends to Nova through openstacksdk is tested against
nova's in-process API in tests/functional/test_manage.py; here a cloud in
memory answers as Nova and Placement would (Nova mirrors each host
aggregate into placement under the aggregate's uuid).
"""

import configparser
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

import fixtures
from oslo_config import fixture as config_fixture
import testtools

import xapisim
from xapisim.plugins import default_plugins_dir

from nova_xen.cmd import check
from nova_xen.cmd import manage
from nova_xen.cmd import pools
from nova_xen import conf as xen_conf
from tests import fake_neutron

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

P1 = '1a2b3c4d-0000-4000-8000-000000000001'
P2 = '5e6f7a8b-0000-4000-8000-000000000002'
META = pools.META


def node(host, pool=None, xen=True, uuid_=None, state='up', extra=(),
         provider=True):
    """A compute node whose provider is in ``pool`` (and ``extra``)."""
    aggregates = None
    if provider:
        aggregates = frozenset(([pool] if pool else []) + list(extra))
    return pools.Compute(host, host + '.example.com',
                         uuid_ or str(uuid.uuid4()), state, 'enabled', xen,
                         aggregates if xen else None)


def aggregate(name, pool=None, hosts=(), az=None, id_=None, **metadata):
    if pool:
        metadata[META] = pool
    if az:
        metadata['availability_zone'] = az
    return pools.Aggregate(id_ or abs(hash(name)) % 1000, name,
                           str(uuid.uuid4()), list(hosts), metadata, az)


def texts(changes, done=True):
    return [c.text(done) for c in changes]


class SurveyTest(testtools.TestCase):
    """What a run would change, and what it cannot fix."""

    def test_an_empty_cloud(self):
        survey = pools.Survey([], [])
        self.assertEqual([], survey.findings)
        self.assertEqual('0 pools, 0 nova-xen compute hosts',
                         survey.summary())

    def test_a_new_pool_gets_an_aggregate_with_its_hosts(self):
        survey = pools.Survey([node('cpu-2', P1), node('cpu-1', P1)], [])
        self.assertEqual([
            'created aggregate xenapi-pool-1a2b3c4d for pool %s' % P1,
            'added host cpu-1 to aggregate xenapi-pool-1a2b3c4d',
            'added host cpu-2 to aggregate xenapi-pool-1a2b3c4d',
        ], texts(survey.changes))
        self.assertEqual(['pool %s has no aggregate (its hosts: cpu-1, cpu-2)'
                          % P1], [s for s, _ in survey.findings])
        self.assertEqual([], survey.unresolved)

    def test_nova_aggregates_mirrored_in_placement_are_not_pools(self):
        agg = aggregate('xenapi-pool-1a2b3c4d', P1, ['cpu-1', 'cpu-2'])
        other = aggregate('ssd', hosts=['cpu-1'])
        survey = pools.Survey(
            [node('cpu-1', P1, extra=[agg.uuid, other.uuid]),
             node('cpu-2', P1, extra=[agg.uuid])], [agg, other])
        self.assertEqual([], survey.findings)
        self.assertEqual({'cpu-1': P1, 'cpu-2': P1}, survey.pool_of)

    def test_a_host_that_changed_pool_moves_out_then_in(self):
        old = aggregate('xenapi-pool-1a2b3c4d', P1, ['cpu-1', 'cpu-2'])
        new = aggregate('rack-b', P2, ['cpu-3'])
        survey = pools.Survey(
            [node('cpu-1', P1, extra=[old.uuid]),
             node('cpu-2', P2, extra=[old.uuid]),
             node('cpu-3', P2, extra=[new.uuid])], [old, new])
        self.assertEqual([
            'removed host cpu-2 from aggregate xenapi-pool-1a2b3c4d: its '
            'XenServer host is in pool %s' % P2,
            'added host cpu-2 to aggregate rack-b',
        ], texts(survey.changes))
        self.assertIn('host cpu-2 is in aggregate xenapi-pool-1a2b3c4d of '
                      'pool %s, but its XenServer host is in pool %s'
                      % (P1, P2), [s for s, _ in survey.findings])

    def test_a_host_in_no_pool_is_reported_and_left_where_it_is(self):
        agg = aggregate('xenapi-pool-1a2b3c4d', P1, ['cpu-1', 'cpu-2'])
        computes = [node('cpu-1', P1, extra=[agg.uuid]),
                    node('cpu-2', None, extra=[agg.uuid], uuid_=P2)]
        survey = pools.Survey(computes, [agg])
        self.assertEqual([], survey.changes)
        self.assertEqual(['host cpu-2 (node cpu-2.example.com, %s) is in no '
                          'XenAPI pool: its resource provider is in no pool '
                          'aggregate (its XenServer host left its pool, or '
                          'its nova-compute has not reported yet)' % P2],
                         survey.unresolved)
        self.assertEqual(['cpu-2'], survey.unplaced)

    def test_a_compute_without_provider(self):
        survey = pools.Survey([node('cpu-1', provider=False)], [])
        self.assertEqual([], survey.changes)
        self.assertIn('has no resource provider in placement: its '
                      'nova-compute has not reported yet',
                      survey.unresolved[0])

    def test_unknown_placement_aggregates_make_the_pool_ambiguous(self):
        stray = str(uuid.uuid4())
        survey = pools.Survey([node('cpu-1', P1, extra=[stray])], [])
        self.assertEqual([], survey.changes)
        self.assertIn('several placement aggregates that are no Nova host '
                      'aggregates', survey.unresolved[0])
        self.assertIn(P1, survey.unresolved[0])
        self.assertIn(stray, survey.unresolved[0])
        # one of them is already a pool's aggregate: that is the pool
        agg = aggregate('xenapi-pool-1a2b3c4d', P1)
        survey = pools.Survey([node('cpu-1', P1, extra=[stray])], [agg])
        self.assertEqual({'cpu-1': P1}, survey.pool_of)
        self.assertEqual(['added host cpu-1 to aggregate '
                          'xenapi-pool-1a2b3c4d'], texts(survey.changes))

    def test_two_aggregates_claiming_one_pool(self):
        a = aggregate('a', P1, ['cpu-1'])
        b = aggregate('b', P1)
        survey = pools.Survey([node('cpu-1', P1), node('cpu-2', P1)], [a, b])
        self.assertEqual([], survey.changes)
        self.assertEqual(['aggregates a, b all claim pool %s (metadata '
                          'xenapi_pool_uuid): remove the key from all but one '
                          'of them' % P1], survey.unresolved)

    def test_the_aggregate_of_a_pool_no_compute_reports(self):
        stale = aggregate('old', P2, ['cpu-1'])
        computes = [node('cpu-1', P1, extra=[stale.uuid])]
        survey = pools.Survey(computes, [stale])
        self.assertEqual([
            'created aggregate xenapi-pool-1a2b3c4d for pool %s' % P1,
            'removed host cpu-1 from aggregate old: its XenServer host is in '
            'pool %s' % P1,
            'added host cpu-1 to aggregate xenapi-pool-1a2b3c4d',
        ], texts(survey.changes))
        self.assertEqual(['aggregate old claims pool %s, which no compute '
                          'reports: nova-xen-manage pools sync --prune '
                          'deletes it' % P2], survey.unresolved)
        survey = pools.Survey(computes, [stale], prune=True)
        self.assertEqual('deleted aggregate old: no compute reports pool %s'
                         % P2, texts(survey.changes)[-1])
        self.assertEqual([], survey.unresolved)

    def test_prune_keeps_an_aggregate_whose_host_has_not_reported(self):
        stale = aggregate('old', P2, ['cpu-1'])
        survey = pools.Survey([node('cpu-1', None)], [stale], prune=True)
        self.assertEqual([], survey.changes)
        self.assertIn('aggregate old claims pool %s, which no compute '
                      'reports: kept while cpu-1, in it, has not reported its '
                      'pool' % P2, survey.unresolved)

    def test_other_hosts_are_removed_from_a_pool_aggregate(self):
        agg = aggregate('xenapi-pool-1a2b3c4d', P1,
                        ['cpu-1', 'kvm-1', 'gone'])
        survey = pools.Survey([node('cpu-1', P1, extra=[agg.uuid]),
                               node('kvm-1', xen=False)], [agg])
        self.assertEqual([
            'removed host gone from aggregate xenapi-pool-1a2b3c4d: Nova has '
            'no compute node on it',
            'removed host kvm-1 from aggregate xenapi-pool-1a2b3c4d: it is no '
            'nova-xen compute host',
        ], texts(survey.changes))

    def test_names(self):
        survey = pools.Survey([node('cpu-1', P1)], [],
                              names={P1: 'rack-a'})
        self.assertEqual('created aggregate rack-a for pool %s' % P1,
                         texts(survey.changes)[0])
        # an existing aggregate is renamed; the name of another is refused
        agg = aggregate('xenapi-pool-1a2b3c4d', P1, ['cpu-1'])
        computes = [node('cpu-1', P1, extra=[agg.uuid])]
        survey = pools.Survey(computes, [agg], names={P1: 'rack-a'})
        self.assertEqual(['renamed aggregate xenapi-pool-1a2b3c4d to rack-a'],
                         texts(survey.changes))
        survey = pools.Survey(computes, [agg, aggregate('rack-a')],
                              names={P1: 'rack-a'})
        self.assertEqual([], survey.changes)
        self.assertIn('cannot be renamed rack-a: another aggregate has that '
                      'name', survey.unresolved[0])

    def test_an_aggregate_of_the_name_without_metadata_is_adopted(self):
        agg = aggregate('xenapi-pool-1a2b3c4d', hosts=['kvm-1'])
        survey = pools.Survey([node('cpu-1', P1), node('kvm-1', xen=False)],
                              [agg])
        self.assertEqual([
            'set xenapi_pool_uuid=%s on aggregate xenapi-pool-1a2b3c4d' % P1,
            'removed host kvm-1 from aggregate xenapi-pool-1a2b3c4d: it is no '
            'nova-xen compute host',
            'added host cpu-1 to aggregate xenapi-pool-1a2b3c4d',
        ], texts(survey.changes))
        # ... unless it stands for another pool
        survey = pools.Survey([node('cpu-1', P1)],
                              [aggregate('rack', P2)], names={P1: 'rack'})
        self.assertEqual([], survey.changes)
        self.assertIn('pool %s has no aggregate, and aggregate rack, its '
                      'name, stands for pool %s: choose another name with '
                      '--name %s=NAME' % (P1, P2, P1), survey.unresolved)

    def test_availability_zones(self):
        survey = pools.Survey([node('cpu-1', P1)], [], az=True)
        self.assertEqual('created aggregate xenapi-pool-1a2b3c4d for pool %s, '
                         'in availability zone xenapi-pool-1a2b3c4d' % P1,
                         texts(survey.changes)[0])
        # an existing one: hosts out first, then the zone, then hosts in
        agg = aggregate('rack-a', P1, ['cpu-1', 'cpu-9'], az='az1')
        survey = pools.Survey(
            [node('cpu-1', P1), node('cpu-2', P1), node('cpu-9', P2)],
            [agg, aggregate('rack-b', P2, ['cpu-9'], az='rack-b')], az=True)
        self.assertEqual([
            'removed host cpu-9 from aggregate rack-a: its XenServer host is '
            'in pool %s' % P2,
            'set availability zone rack-a on aggregate rack-a',
            'added host cpu-2 to aggregate rack-a',
        ], texts(survey.changes))
        # without the option, zones are left alone
        agg = aggregate('rack-a', P1, ['cpu-1'], az='az1')
        self.assertEqual([], pools.Survey([node('cpu-1', P1)], [agg]).findings)

    def test_a_host_with_nodes_in_two_pools(self):
        survey = pools.Survey([node('cpu-1', P1), node('cpu-1', P2)], [])
        self.assertEqual([], survey.changes)
        self.assertIn('host cpu-1 has nodes in several pools (%s, %s)'
                      % (P1, P2), survey.unresolved[0])

    def test_change_sentences_before_and_after(self):
        change = pools.Change('add', P1, None, 'rack-a', 'cpu-1')
        self.assertEqual('add host cpu-1 to aggregate rack-a',
                         change.text(done=False))
        self.assertEqual('added host cpu-1 to aggregate rack-a', change.text())

    def test_parse_name(self):
        self.assertEqual((P1, 'rack a'), pools.parse_name(
            P1.upper() + '= rack a '))
        for bad in ('rack-a', P1 + '=', '1a2b3c4d=rack-a', '=rack'):
            self.assertRaises(ValueError, pools.parse_name, bad)


class FakeCloud(object):
    """Nova and Placement in memory, as pools.Cloud sees them: aggregates
    are mirrored into the providers' aggregates, as nova-api does."""

    def __init__(self, computes, fail=None):
        self.computes_ = list(computes)
        self.aggregates_ = {}
        self.fail = fail or {}
        self.calls = []

    def computes(self):
        mirrored = []
        for c in self.computes_:
            extra = {a.uuid for a in self.aggregates_.values()
                     if c.host in a.hosts}
            mirrored.append(c._replace(provider_aggregates=(
                c.provider_aggregates | extra
                if c.provider_aggregates is not None else None)))
        return mirrored

    def aggregates(self):
        return list(self.aggregates_.values())

    def move(self, host, pool):
        self.computes_ = [c._replace(provider_aggregates=frozenset([pool]))
                          if c.host == host else c for c in self.computes_]

    def apply(self, change, target):
        self.calls.append(change.action)
        if change.action in self.fail:
            raise pools.Error(self.fail[change.action])
        if change.action == 'create':
            agg = aggregate(change.name, change.pool, az=change.az,
                            id_=len(self.calls))
            self.aggregates_[agg.id] = agg
            return agg.id
        agg = self.aggregates_[target]
        if change.action == 'add':
            agg.hosts.append(change.host)
        elif change.action == 'remove':
            agg.hosts.remove(change.host)
        elif change.action == 'delete':
            del self.aggregates_[target]
        elif change.action == 'adopt':
            agg.metadata[META] = change.pool
        elif change.action == 'rename':
            self.aggregates_[target] = agg._replace(name=change.name)
        elif change.action == 'set_az':
            self.aggregates_[target] = agg._replace(
                availability_zone=change.az)


class SyncTest(testtools.TestCase):
    """pools.sync and pools.show: what they print and their exit status."""

    def run_sync(self, cloud, **kwargs):
        lines = []
        rc = pools.sync(cloud, lines.append, sleep=lambda s: None, **kwargs)
        return rc, lines

    def test_a_second_run_changes_nothing_and_says_so(self):
        cloud = FakeCloud([node('cpu-1', P1), node('cpu-2', P1)])
        rc, lines = self.run_sync(cloud)
        self.assertEqual(0, rc)
        self.assertEqual(3, len(lines))
        rc, lines = self.run_sync(cloud)
        self.assertEqual((0, ['nothing to change: 1 pool, 2 nova-xen compute '
                              'hosts']), (rc, lines))

    def test_a_moved_host_and_prune(self):
        cloud = FakeCloud([node('cpu-1', P1), node('cpu-2', P1)])
        self.run_sync(cloud)
        cloud.move('cpu-1', P2)
        cloud.move('cpu-2', P2)
        rc, lines = self.run_sync(cloud)
        self.assertEqual(0, rc)
        self.assertEqual([
            'created aggregate xenapi-pool-5e6f7a8b for pool %s' % P2,
            'removed host cpu-1 from aggregate xenapi-pool-1a2b3c4d: its '
            'XenServer host is in pool %s' % P2,
            'removed host cpu-2 from aggregate xenapi-pool-1a2b3c4d: its '
            'XenServer host is in pool %s' % P2,
            'added host cpu-1 to aggregate xenapi-pool-5e6f7a8b',
            'added host cpu-2 to aggregate xenapi-pool-5e6f7a8b',
            'unresolved: aggregate xenapi-pool-1a2b3c4d claims pool %s, which '
            'no compute reports: nova-xen-manage pools sync --prune deletes '
            'it' % P1,
        ], lines)
        self.assertEqual(1, self.run_sync(cloud, strict=True)[0])
        rc, lines = self.run_sync(cloud, prune=True)
        self.assertEqual((0, ['deleted aggregate xenapi-pool-1a2b3c4d: no '
                              'compute reports pool %s' % P1]), (rc, lines))
        self.assertEqual(['xenapi-pool-5e6f7a8b'],
                         [a.name for a in cloud.aggregates()])

    def test_a_failed_change_is_said_and_the_others_made(self):
        cloud = FakeCloud([node('cpu-1', P1)],
                          fail={'create': 'Aggregate xenapi-pool-1a2b3c4d '
                                'already exists.'})
        rc, lines = self.run_sync(cloud)
        self.assertEqual(1, rc)
        self.assertEqual([
            'FAILED to create aggregate xenapi-pool-1a2b3c4d for pool %s: '
            'Aggregate xenapi-pool-1a2b3c4d already exists.' % P1,
            'FAILED to add host cpu-1 to aggregate xenapi-pool-1a2b3c4d: '
            'aggregate xenapi-pool-1a2b3c4d was not created',
        ], lines)

    def test_dry_run(self):
        cloud = FakeCloud([node('cpu-1', P1)])
        rc, lines = self.run_sync(cloud, dry_run=True)
        self.assertEqual([
            'would create aggregate xenapi-pool-1a2b3c4d for pool %s' % P1,
            'would add host cpu-1 to aggregate xenapi-pool-1a2b3c4d'], lines)
        self.assertEqual([], cloud.calls)

    def test_wait_for_computes_to_report_their_pool(self):
        cloud = FakeCloud([node('cpu-1', None)])
        looks = []

        def sleep(seconds):
            looks.append(seconds)
            if len(looks) == 2:
                cloud.move('cpu-1', P1)
        lines = []
        rc = pools.sync(cloud, lines.append, wait=60, sleep=sleep)
        self.assertEqual(0, rc)
        self.assertEqual([pools.WAIT_STEP] * 2, looks)
        self.assertEqual('waiting up to 60 s for cpu-1 to report its pool',
                         lines[0])
        self.assertEqual('added host cpu-1 to aggregate xenapi-pool-1a2b3c4d',
                         lines[-1])

    def test_names_of_pools_nobody_reports(self):
        rc, lines = self.run_sync(FakeCloud([]), names={P2: 'rack-b'})
        self.assertEqual(['note: --name %s=rack-b: no compute reports this '
                          'pool' % P2, 'nothing to change: 0 pools, 0 '
                          'nova-xen compute hosts'], lines)

    def test_list(self):
        cloud = FakeCloud([node('cpu-1', P1, uuid_=P1),
                           node('cpu-2', None, uuid_=P2, state='down')])
        self.run_sync(cloud)
        lines = []
        self.assertEqual(0, pools.show(cloud, lines.append))
        self.assertEqual([
            'pool %s: aggregate xenapi-pool-1a2b3c4d' % P1,
            '    host cpu-1  node cpu-1.example.com  %s  up, enabled' % P1,
            'in no known pool:',
            '    host cpu-2  node cpu-2.example.com  %s  down, enabled' % P2,
            'mismatch: host cpu-2 (node cpu-2.example.com, %s) is in no '
            'XenAPI pool: its resource provider is in no pool aggregate (its '
            'XenServer host left its pool, or its nova-compute has not '
            'reported yet)' % P2,
            '1 pool, 2 nova-xen compute hosts, 1 mismatch',
        ], lines)
        self.assertEqual(1, pools.show(cloud, lines.append, strict=True))


class CommandLineTest(testtools.TestCase):

    def main(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = manage.main(list(argv))
            except SystemExit as exc:
                rc = exc.code
        return rc, out.getvalue(), err.getvalue()

    def test_the_console_script(self):
        parser = configparser.ConfigParser()
        parser.read(os.path.join(REPO, 'setup.cfg'))
        scripts = parser.get('options.entry_points', 'console_scripts')
        self.assertIn('nova-xen-manage = nova_xen.cmd.manage:main',
                      scripts.splitlines())
        self.assertIn('nova_xen.cmd',
                      parser.get('options', 'packages').split())

    def test_help(self):
        rc, out, _ = self.main('--help')
        self.assertEqual(0, rc)
        for command in ('pools sync', 'pools list', 'check'):
            self.assertIn(command, out)
        rc, out, _ = self.main('pools', 'sync', '--help')
        self.assertEqual(0, rc)
        for option in ('--os-cloud', '--availability-zone-per-pool',
                       '--name POOL_UUID=NAME', '--prune', '--wait'):
            self.assertIn(option, out)

    def test_wrong_usage(self):
        rc, _, err = self.main('pools', 'sync', '--name', 'rack-a')
        self.assertEqual(2, rc)
        self.assertIn("'rack-a': give POOL_UUID=NAME", err)
        self.assertEqual(2, self.main('pools')[0])

    def test_no_such_cloud(self):
        self.useFixture(fixtures.EnvironmentVariable(
            'OS_CLIENT_CONFIG_FILE', os.path.join(REPO, 'no-clouds.yaml')))
        rc, out, err = self.main('pools', 'list', '--os-cloud', 'nowhere')
        self.assertEqual((1, ''), (rc, out))
        self.assertEqual('nova-xen-manage: Cloud nowhere was not found.\n',
                         err)


# -- check, against a live xapisim -------------------------------------------

PASSWORD = 'Pa55-w0rd-of-the-pool'
CHECKS = ['compute_driver', 'connection_url', 'TLS', 'login', 'host',
          'dom0 plugins', 'instance SR', 'OVN chassis', 'integration bridge',
          'network isolation']
NOVA_HOST = 'compute-1'


class CheckTestCase(testtools.TestCase):
    sim_options = {}

    @classmethod
    def setUpClass(cls):
        super(CheckTestCase, cls).setUpClass()
        cls.plugins = tempfile.mkdtemp(prefix='nova-xen-plugins-')
        source = default_plugins_dir()
        for name in os.listdir(source):
            if os.path.isfile(os.path.join(source, name)):
                shutil.copy2(os.path.join(source, name), cls.plugins)
        cls.sim = xapisim.Simulator(hosts=2, password=PASSWORD,
                                    plugins_dir=cls.plugins,
                                    **cls.sim_options)
        cls.world = cls.sim.describe()
        cls.pool = cls.world['pools'][0]
        # Neutron's agents API, for the OVN chassis check
        cls.neutron = fake_neutron.FakeNeutron()

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()
        cls.neutron.stop()
        shutil.rmtree(cls.plugins, True)
        super(CheckTestCase, cls).tearDownClass()

    def setUp(self):
        super(CheckTestCase, self).setUp()
        # the parsed nova.conf is forgotten after each test, and so is the
        # auth plugin nova keeps for [neutron]
        self.useFixture(config_fixture.Config(xen_conf.CONF))
        from nova import service_auth
        service_auth.reset_globals()
        self.addCleanup(service_auth.reset_globals)
        self.neutron.agents = []
        self.neutron.fail_with = None
        self.neutron.requests[:] = []
        self.useFixture(fixtures.MockPatch('nova_xen.host._domu_uuid',
                                           return_value=None))

    def nova_conf(self, neutron=True, **xenserver):
        options = {'connection_url': self.pool['hosts'][1]['url'],
                   'connection_password': PASSWORD}
        options.update(xenserver)
        default = {'compute_driver': options.pop('compute_driver',
                                                 'xenapi.XenAPIDriver'),
                   'host': options.pop('host', NOVA_HOST)}
        path = self.useFixture(fixtures.TempDir()).join('nova.conf')
        with open(path, 'w') as fh:
            for section, values in (
                    ('DEFAULT', default), ('xenserver', options),
                    ('neutron', self.neutron.nova_conf() if neutron
                     else {})):
                fh.write('[%s]\n' % section)
                for key, value in values.items():
                    if value is not None:
                        fh.write('%s = %s\n' % (key, value))
        return path

    def check(self, neutron=True, **xenserver):
        """Run the checks in this process; (exit status, {check: line})."""
        lines = []
        rc = check.main(['--config-file',
                         self.nova_conf(neutron=neutron, **xenserver)],
                        out=lines.append)
        self.assertEqual(CHECKS, [line.split(':')[0].split(' ', 1)[1]
                                  for line in lines])
        return rc, {line.split(':')[0].split(' ', 1)[1]: line
                    for line in lines}

    def assertStatus(self, status, lines, *names):
        for name in names:
            self.assertTrue(lines[name].startswith(status + ' '),
                            lines[name])


class CheckTest(CheckTestCase):

    def test_a_good_config(self):
        rc, lines = self.check()
        self.assertEqual(0, rc, lines)
        self.assertStatus('OK', lines, *CHECKS)
        member, master = self.pool['hosts'][1], self.pool['hosts'][0]
        self.assertEqual('OK login: as root; pool master %s' % master['url'],
                         lines['login'])
        self.assertEqual('OK host: %s (%s, address %s) of pool %s' % (
            member['name_label'], member['uuid'], member['address'],
            self.pool['uuid']), lines['host'])
        self.assertEqual('OK dom0 plugins: plugin API 1.2 on %s'
                         % member['name_label'], lines['dom0 plugins'])
        self.assertIn('attached to %s' % member['name_label'],
                      lines['instance SR'])
        self.assertEqual('OK network isolation: dom0 of %s can filter '
                         '(nftables)' % member['name_label'],
                         lines['network isolation'])

    def test_nothing_is_changed_in_the_pool(self):
        self.check(ovs_integration_bridge='br-check')
        rc, lines = self.check(ovs_integration_bridge='br-check')
        self.assertIn('no xapi network has bridge br-check yet',
                      lines['integration bridge'])

    def test_the_wrong_password(self):
        """The console script, in a process of its own."""
        secret = 'Not-The-Password-42'
        env = dict(os.environ, PYTHONPATH=REPO)
        proc = subprocess.run(
            [sys.executable, '-m', 'nova_xen.cmd.manage', 'check',
             '--config-file', self.nova_conf(connection_password=secret)],
            capture_output=True, text=True, env=env, timeout=120)
        self.assertEqual(1, proc.returncode, proc.stderr)
        lines = proc.stdout.splitlines()
        self.assertIn('FAIL login: xapi at %s refused the credentials of user '
                      "'root' (SESSION_AUTHENTICATION_FAILED). Check "
                      '[xenserver]connection_username and '
                      'connection_password.' % self.pool['master'], lines)
        self.assertEqual([
            'SKIP host: login failed',
            'SKIP dom0 plugins: host failed',
            'SKIP instance SR: host failed'], lines[-6:-3])
        self.assertTrue(lines[-3].startswith('OK OVN chassis: '), lines[-3])
        self.assertEqual([
            'SKIP integration bridge: dom0 plugins failed',
            'SKIP network isolation: dom0 plugins failed'], lines[-2:])
        self.assertNotIn(secret, proc.stdout + proc.stderr)
        self.assertNotIn('Eventlet is deprecated', proc.stderr)

    def test_a_missing_url(self):
        rc, lines = self.check(connection_url=None, compute_driver=None)
        self.assertEqual(1, rc)
        self.assertEqual('FAIL compute_driver: [DEFAULT]compute_driver is not '
                         'set: set it to xenapi.XenAPIDriver for nova-compute '
                         'to load nova-xen', lines['compute_driver'])
        self.assertEqual('FAIL connection_url: Set [xenserver]connection_url '
                         'to the URL of the pool master, for example '
                         'https://xcp-ng-1.example.com',
                         lines['connection_url'])
        # Neutron is asked all the same: nothing of xapi is needed for that
        self.assertStatus('SKIP', lines, *[c for c in CHECKS[2:]
                                           if c != 'OVN chassis'])
        self.assertStatus('OK', lines, 'OVN chassis')

    def test_an_unknown_host_uuid(self):
        rc, lines = self.check(host_uuid='00000000-0000-4000-8000-000000000000')
        self.assertEqual(1, rc)
        self.assertIn('FAIL host: No host of the pool has [xenserver]host_uuid'
                      '=00000000-0000-4000-8000-000000000000',
                      lines['host'])
        self.assertStatus('OK', lines, 'login', 'OVN chassis')
        self.assertEqual('SKIP instance SR: host failed', lines['instance SR'])
        self.assertEqual('SKIP integration bridge: dom0 plugins failed',
                         lines['integration bridge'])

    def test_a_host_disabled_in_xapi_is_said(self):
        import XenAPI
        member = self.pool['hosts'][1]
        x = XenAPI.Session(self.pool['master'])
        x.xenapi.login_with_password('root', PASSWORD)
        ref = x.xenapi.host.get_by_uuid(member['uuid'])
        x.xenapi.host.disable(ref)
        self.addCleanup(x.xenapi.session.logout)
        self.addCleanup(x.xenapi.host.enable, ref)
        rc, lines = self.check()
        self.assertEqual(0, rc, lines)
        self.assertTrue(lines['host'].endswith(
            '; disabled in xapi (not by nova-xen: xe host-enable enables '
            'it): xapi starts no VM on it'), lines['host'])

    def test_an_sr_filter_that_matches_nothing(self):
        rc, lines = self.check(sr_matching_filter='other-config:no=such')
        self.assertEqual(1, rc)
        self.assertEqual('FAIL instance SR: No SR has other_config no=such '
                         '([xenserver]sr_matching_filter)',
                         lines['instance SR'])
        self.assertStatus('OK', lines, 'dom0 plugins', 'network isolation')

    def test_missing_plugins(self):
        version = os.path.join(self.plugins, 'nova_xen_version.py')
        os.rename(version, version + '.away')
        self.addCleanup(os.rename, version + '.away', version)
        rc, lines = self.check()
        self.assertEqual(1, rc)
        self.assertIn('FAIL dom0 plugins: The nova-xen dom0 plugins do not '
                      'answer on host %s' % self.pool['hosts'][1]['name_label'],
                      lines['dom0 plugins'])
        self.assertIn('dom0_plugins/install.sh root@%s'
                      % self.pool['hosts'][1]['address'],
                      lines['dom0 plugins'])
        self.assertEqual('SKIP network isolation: dom0 plugins failed',
                         lines['network isolation'])
        self.assertStatus('OK', lines, 'host', 'instance SR')

    def test_dom0_without_nftables(self):
        isolation = os.path.join(self.plugins, 'nova_xen_isolation.py')
        shutil.copy2(isolation, isolation + '.orig')
        self.addCleanup(os.rename, isolation + '.orig', isolation)
        with open(isolation) as fh:
            text = fh.read()
        self.assertIn("lib.find_command('nft', 'NOVA_XEN_NFT')", text)
        with open(isolation, 'w') as fh:
            fh.write(text.replace("lib.find_command('nft', 'NOVA_XEN_NFT')",
                                  'None'))
        rc, lines = self.check()
        self.assertEqual(1, rc)
        self.assertIn('FAIL network isolation: Network isolation cannot work '
                      'on host %s' % self.pool['hosts'][1]['name_label'],
                      lines['network isolation'])
        self.assertIn('Install the nftables package in its dom0',
                      lines['network isolation'])
        # with the rules off, nftables is not needed
        rc, lines = self.check(isolation_rules='false')
        self.assertEqual(0, rc, lines)
        self.assertEqual('OK network isolation: off ([xenserver]'
                         'isolation_rules = false): no rules, nftables not '
                         'needed in dom0', lines['network isolation'])

    def test_the_password_is_never_printed(self):
        lines = []
        checks = check.Checks(lines.append, secret=PASSWORD)

        def leaky():
            raise RuntimeError('login %s refused' % PASSWORD)
        checks.run('login', leaky)
        self.assertEqual(['FAIL login: RuntimeError: login *** refused'],
                         lines)


class TLSCheckTest(CheckTestCase):
    sim_options = {'tls': True}

    def test_the_pools_ca(self):
        rc, lines = self.check(ca_file=self.world['ca_file'])
        self.assertEqual(0, rc, lines)
        self.assertEqual('OK TLS: verified with ca_file %s'
                         % self.world['ca_file'], lines['TLS'])

    def test_a_ca_file_that_cannot_be_read(self):
        rc, lines = self.check(ca_file='/nonexistent/pool-ca.pem')
        self.assertEqual(1, rc)
        self.assertEqual('FAIL TLS: Cannot read [xenserver]ca_file '
                         '/nonexistent/pool-ca.pem: No such file or directory. '
                         'Set it to the PEM file of the CA that signed the '
                         'pool\'s certificate.', lines['TLS'])
        self.assertEqual('SKIP login: TLS failed', lines['login'])

    def test_a_ca_file_that_holds_no_certificate(self):
        path = self.useFixture(fixtures.TempDir()).join('not-a-ca.pem')
        with open(path, 'w') as fh:
            fh.write('-----BEGIN CERTIFICATE-----\nnonsense\n'
                     '-----END CERTIFICATE-----\n')
        rc, lines = self.check(ca_file=path)
        self.assertEqual(1, rc)
        self.assertIn('FAIL TLS: [xenserver]ca_file %s holds no usable CA '
                      'certificate' % path, lines['TLS'])

    def test_the_wrong_ca(self):
        # the system trust store does not know the pool's CA
        rc, lines = self.check()
        self.assertEqual(1, rc)
        self.assertEqual('OK TLS: verified with the system trust store',
                         lines['TLS'])
        self.assertIn('FAIL login: TLS verification of %s failed'
                      % self.pool['hosts'][1]['url'], lines['login'])
        self.assertIn('CERTIFICATE_VERIFY_FAILED', lines['login'])
