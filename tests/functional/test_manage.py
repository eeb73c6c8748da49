"""nova-xen-manage pools against the in-process Nova and Placement.

The command runs as an operator runs it: openstacksdk reads a clouds.yaml
(``--os-cloud``) and talks HTTP to Nova's API and to Placement, which
nova's fixtures serve in this process through wsgi-intercept (it replaces
urllib3's connection class, which keystoneauth's requests session uses).
Keystone is not there: an ``admin_token`` cloud sends a fixed token, which
Placement's noauth2 middleware and (below) Nova's stubbed Keystone context
take for the admin, as keystonemiddleware would after checking it.

Two nova-computes drive the two hosts of one simulated pool; each one's
resource provider is in the placement aggregate of the pool's uuid.
"""

import contextlib
import io
import uuid

import fixtures

from nova_xen.cmd import manage

from tests.functional import base

TOKEN = 'admin'
CLOUD = 'nova-xen-test'


class PoolsTest(base.XenAPIFunctionalTestCase):
    xapisim_options = dict(base.XenAPIFunctionalTestCase.xapisim_options,
                           hosts=2)

    def setUp(self):
        super(PoolsTest, self).setUp()
        second = self.xapi.pool['hosts'][1]
        self.flags(host_uuid=second['uuid'], group='xenserver')
        self._start_compute(second['name_label'])
        self.pool = self.xapi.pool['uuid']
        self.hosts = sorted(h['name_label'] for h in self.xapi.pool['hosts'])
        self.nodes = {h['name_label']: h['uuid']
                      for h in self.xapi.pool['hosts']}
        self._admin_token()
        self._clouds_yaml()

    def _admin_token(self):
        """Nova takes the token for the admin of the API fixture's project
        (nova's stub reads the user and roles from headers a real
        keystonemiddleware would set from the token)."""
        import nova.api.auth
        stub = nova.api.auth.NovaKeystoneContext._create_context
        project = self.api_fixture.project_id

        def from_token(env, **kwargs):
            if env.get('HTTP_X_AUTH_TOKEN') == TOKEN:
                env.setdefault('HTTP_X_AUTH_USER', 'admin')
                env.setdefault('HTTP_X_AUTH_PROJECT_ID', project)
                env.setdefault('HTTP_X_ROLES', 'admin,member,reader')
            return stub(env, **kwargs)
        self.useFixture(fixtures.MonkeyPatch(
            'nova.api.auth.NovaKeystoneContext._create_context', from_token))

    def _clouds_yaml(self):
        path = self.useFixture(fixtures.TempDir()).join('clouds.yaml')
        with open(path, 'w') as fh:
            fh.write(
                'clouds:\n'
                '  %(cloud)s:\n'
                '    auth_type: admin_token\n'
                '    auth:\n'
                '      endpoint: %(compute)s\n'
                '      token: %(token)s\n'
                '    compute_endpoint_override: %(compute)s\n'
                '    placement_endpoint_override: %(placement)s\n'
                % {'cloud': CLOUD, 'token': TOKEN,
                   'compute': self.api_fixture.base_url,
                   'placement': self.placement_fixture.endpoint})
        self.useFixture(fixtures.EnvironmentVariable('OS_CLIENT_CONFIG_FILE',
                                                     path))
        self.useFixture(fixtures.EnvironmentVariable('OS_CLOUD'))

    # -- helpers ---------------------------------------------------------

    def manage(self, *argv):
        """``nova-xen-manage pools ... --os-cloud nova-xen-test``: (exit
        status, the lines it printed)."""
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = manage.main(['pools'] + list(argv) + ['--os-cloud', CLOUD])
        return rc, out.getvalue().splitlines()

    def aggregates(self):
        return {a['name']: a for a in self.api.api_get(
            '/os-aggregates').body['aggregates']}

    def provider_aggregates(self, host):
        return set(self.placement.get(
            '/resource_providers/%s/aggregates' % self.nodes[host],
            version='1.19').body['aggregates'])

    def move(self, host, pool):
        """The host's provider leaves its pool aggregate for ``pool``'s, as
        the driver of a host that joined another pool would report (Nova's
        own aggregates stay)."""
        url = '/resource_providers/%s/aggregates' % self.nodes[host]
        body = self.placement.get(url, version='1.19').body
        aggregates = set(body['aggregates']) - {self.pool} | {pool}
        self.placement.put(url, {
            'aggregates': sorted(aggregates),
            'resource_provider_generation':
                body['resource_provider_generation']}, version='1.19')

    # -- the tests -------------------------------------------------------

    def test_sync_list_move_prune(self):
        name = 'xenapi-pool-%s' % self.pool[:8]
        for host in self.hosts:
            self.assertEqual({self.pool}, self.provider_aggregates(host))
        rc, lines = self.manage('sync')
        self.assertEqual(0, rc, lines)
        self.assertEqual(
            ['created aggregate %s for pool %s' % (name, self.pool)] +
            ['added host %s to aggregate %s' % (h, name) for h in self.hosts],
            lines)
        aggregate = self.aggregates()[name]
        self.assertEqual(self.hosts, sorted(aggregate['hosts']))
        self.assertEqual({'xenapi_pool_uuid': self.pool},
                         aggregate['metadata'])
        self.assertIsNone(aggregate['availability_zone'])
        # Nova mirrored it into placement: a second aggregate on each
        # provider, which is not taken for a pool
        for host in self.hosts:
            self.assertEqual({self.pool, aggregate['uuid']},
                             self.provider_aggregates(host))
        self.assertEqual((0, ['nothing to change: 1 pool, 2 nova-xen compute '
                              'hosts']), self.manage('sync'))

        rc, lines = self.manage('list', '--strict')
        self.assertEqual(0, rc, lines)
        self.assertEqual('pool %s: aggregate %s' % (self.pool, name),
                         lines[0])
        for host, line in zip(self.hosts, lines[1:3]):
            self.assertEqual('    host %s  node %s  %s  up, enabled'
                             % (host, host, self.nodes[host]), line)
        self.assertEqual('1 pool, 2 nova-xen compute hosts, 0 mismatches',
                         lines[-1])

        # the second host's XenServer host is now in another pool
        moved, stays = self.hosts[1], self.hosts[0]
        other = str(uuid.uuid4())
        new_name = 'xenapi-pool-%s' % other[:8]
        self.move(moved, other)
        rc, lines = self.manage('list', '--strict')
        self.assertEqual(1, rc)
        self.assertIn('mismatch: host %s is in aggregate %s of pool %s, but '
                      'its XenServer host is in pool %s' % (
                          moved, name, self.pool, other), lines)
        self.assertIn('mismatch: pool %s has no aggregate (its hosts: %s)'
                      % (other, moved), lines)
        rc, lines = self.manage('sync')
        self.assertEqual(0, rc, lines)
        self.assertEqual([
            'created aggregate %s for pool %s' % (new_name, other),
            'removed host %s from aggregate %s: its XenServer host is in '
            'pool %s' % (moved, name, other),
            'added host %s to aggregate %s' % (moved, new_name),
        ], lines)
        aggregates = self.aggregates()
        self.assertEqual([stays], aggregates[name]['hosts'])
        self.assertEqual([moved], aggregates[new_name]['hosts'])
        self.assertEqual({'xenapi_pool_uuid': other},
                         aggregates[new_name]['metadata'])
        self.assertEqual({other, aggregates[new_name]['uuid']},
                         self.provider_aggregates(moved))
        self.assertEqual(0, self.manage('sync')[0])

        # the first one follows: the old pool's aggregate is left empty,
        # and only deleted when asked
        self.move(stays, other)
        rc, lines = self.manage('sync')
        self.assertEqual([
            'removed host %s from aggregate %s: its XenServer host is in '
            'pool %s' % (stays, name, other),
            'added host %s to aggregate %s' % (stays, new_name),
            'unresolved: aggregate %s claims pool %s, which no compute '
            'reports: nova-xen-manage pools sync --prune deletes it'
            % (name, self.pool),
        ], lines)
        self.assertEqual([], self.aggregates()[name]['hosts'])
        rc, lines = self.manage('sync', '--prune')
        self.assertEqual((0, ['deleted aggregate %s: no compute reports pool '
                              '%s' % (name, self.pool)]), (rc, lines))
        self.assertEqual([new_name], list(self.aggregates()))
        self.assertEqual(sorted(self.hosts),
                         sorted(self.aggregates()[new_name]['hosts']))

    def test_sync_with_a_name_and_an_availability_zone(self):
        rc, lines = self.manage('sync', '--availability-zone-per-pool',
                                '--name', '%s=rack-a' % self.pool)
        self.assertEqual(0, rc, lines)
        self.assertEqual('created aggregate rack-a for pool %s, in '
                         'availability zone rack-a' % self.pool, lines[0])
        aggregate = self.aggregates()['rack-a']
        self.assertEqual('rack-a', aggregate['availability_zone'])
        self.assertEqual(self.hosts, sorted(aggregate['hosts']))
        self.assertEqual({'xenapi_pool_uuid': self.pool,
                          'availability_zone': 'rack-a'},
                         aggregate['metadata'])
        zones = {z['zoneName']: z for z in self.api.api_get(
            '/os-availability-zone/detail').body['availabilityZoneInfo']}
        self.assertEqual(self.hosts, sorted(zones['rack-a']['hosts']))
        self.assertEqual((0, ['nothing to change: 1 pool, 2 nova-xen compute '
                              'hosts']),
                         self.manage('sync', '--availability-zone-per-pool',
                                     '--name', '%s=rack-a' % self.pool))
        # renamed: the zone follows the name
        rc, lines = self.manage('sync', '--availability-zone-per-pool',
                                '--name', '%s=rack-b' % self.pool)
        self.assertEqual((0, ['renamed aggregate rack-a to rack-b',
                              'set availability zone rack-b on aggregate '
                              'rack-b']), (rc, lines))
        self.assertEqual('rack-b',
                         self.aggregates()['rack-b']['availability_zone'])

    def test_names_and_masters_from_the_pools_own_xapi(self):
        self.useFixture(fixtures.EnvironmentVariable(
            'XENAPI_PASSWORD', self.xapi.password))
        name = self.xapi.pool['name_label']
        rc, lines = self.manage('sync', '--xenapi', self.xapi.url)
        self.assertEqual(0, rc, lines)
        self.assertEqual('created aggregate %s for pool %s' % (name,
                                                               self.pool),
                         lines[0])
        self.assertEqual(self.hosts, sorted(self.aggregates()[name]['hosts']))
        master = self.xapi.x.host.get_hostname(self.xapi.x.pool.get_master(
            self.xapi.x.pool.get_all()[0]))
        rc, lines = self.manage('list', '--xenapi', self.xapi.url)
        self.assertEqual(0, rc, lines)
        self.assertIn('pool %s (%s, master %s): aggregate %s'
                      % (self.pool, name, master, name), lines)
        self.assertNotIn(self.xapi.password, '\n'.join(lines))

    def test_xenapi_without_a_password_says_where_it_goes(self):
        self.useFixture(fixtures.EnvironmentVariable('XENAPI_PASSWORD'))
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc, lines = self.manage('sync', '--xenapi', self.xapi.url)
        self.assertEqual(1, rc)
        self.assertIn('--xenapi needs the password of root in '
                      '$XENAPI_PASSWORD', err.getvalue())
        self.assertEqual({}, self.aggregates())
