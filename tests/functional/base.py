"""In-process Nova (API, conductor, scheduler, compute, placement) driving
nova-xen against a simulated XCP-ng pool."""


import fixtures
from oslo_db import exception as db_exc
from oslo_db.sqlalchemy import exc_filters
from sqlalchemy import exc as sqla_exc
from nova.tests.functional.api import client
from nova.tests.functional import integrated_helpers

import nova_xen.conf  # noqa: F401  registers [xenserver]

from tests.functional import fixtures as xen_fixtures
from tests.functional import glance_http
from tests import polling

MIB = 1024 * 1024

# seconds a wait for a state or an event polls before it fails: a safety
# net, never a guess of how long anything takes (nova's own helpers give up
# after 5 to 20 s, which an operation on a loaded 2-core machine can take)
WAIT = 120
POLL = 0.5


@exc_filters.filters('sqlite', sqla_exc.OperationalError,
                     r'.*database is locked.*')
def _sqlite_locked_is_a_deadlock(error, match, engine_name, is_disconnect):
    """Nova's tests keep its databases in SQLite files in WAL mode; in
    native threading mode a writer whose transaction read before another
    thread's commit is refused at once ('database is locked': its snapshot
    is stale, no busy timeout helps), where MySQL would report a deadlock
    that Nova's DB API retries (wrap_db_retry(retry_on_deadlock)).  Seen
    on a loaded machine: a resize's migration.save() in finish_resize put
    the server in ERROR.  Here it is that deadlock, and retried alike."""
    raise db_exc.DBDeadlock(error)


def _graceful_shutdown_before_stop_goes_on(service):
    """nova's Service.stop runs its manager's graceful shutdown (for
    nova-compute: the driver's cleanup_host, which logs sessions out) in a
    thread it waits 0 s for in tests; whatever that thread does after the
    test's clean-up has moved on (on a busy machine) reaches nova's real
    shutdown_all_executors, which fails the test and the tests after it in
    the process.  Here stop waits for it."""
    service.manager.graceful_shutdown(service._get_manager_shutdown_timeout())


class XenAPIFunctionalTestCase(integrated_helpers._IntegratedTestBase):
    compute_driver = 'xenapi.XenAPIDriver'
    ADMIN_API = True
    microversion = 'latest'
    REQUIRES_LOCKING = True

    #: options for the simulated pool (see python -m xapisim --help)
    xapisim_options = {'guest_delay': 0.01}
    #: Glance's API (for the dom0 plugins) over HTTPS with its own CA
    glance_tls = False

    def _setup_services(self):
        self.useFixture(fixtures.MonkeyPatch(
            'nova.service.Service._run_manager_graceful_shutdown',
            _graceful_shutdown_before_stop_goes_on))
        # the test process is no Xen domU: nothing to read in /sys/hypervisor
        self.useFixture(fixtures.MockPatch('nova_xen.host._domu_uuid',
                                           return_value=None))
        self.xapi = self.useFixture(
            xen_fixtures.XapisimFixture(**self.xapisim_options))
        self.flags(compute_driver=self.compute_driver)
        self.flags(api_paste_config=xen_fixtures.api_paste_config(),
                   group='wsgi')
        # Glance's HTTP API, for the dom0 image plugin
        tls_dir = None
        if self.glance_tls:
            tls_dir = self.useFixture(fixtures.TempDir()).path
        self.glance_http = glance_http.GlanceHTTP(self.glance, tls_dir)
        self.addCleanup(self.glance_http.stop)
        self.flags(api_servers=[self.glance_http.url], group='glance')
        self.flags(connection_url=self.xapi.url,
                   connection_username=self.xapi.username,
                   connection_password=self.xapi.password,
                   ca_file=self.xapi.ca_file,
                   group='xenserver')
        # Neutron's agents (none: a Neutron not known to use ML2/OVN), which
        # the driver's ML2/OVN checks ask through nova's Neutron client
        # (the fixture's; credentials as a deployment has them)
        self.flags(auth_type='password', group='neutron')
        self.neutron_agents = []
        xen_fixtures.serve_agents(self.neutron, self.neutron_agents)
        super(XenAPIFunctionalTestCase, self)._setup_services()
        self._give_requests_a_token()

    def start_service(self, name, host=None, **kwargs):
        service = super(XenAPIFunctionalTestCase, self).start_service(
            name, host=host, **kwargs)
        report = getattr(getattr(getattr(service, 'manager', None), 'driver',
                                 None), '_ovn', None)
        if name == 'compute' and report is not None:
            # the start-up's ML2/OVN checks run beside it: done before the
            # test goes on (they call xapi and the dom0 plugins)
            self.assertTrue(report.done.wait(WAIT),
                            'the ML2/OVN start-up checks did not end')
        return service

    def _give_requests_a_token(self):
        """Requests carry a Keystone token, as behind keystonemiddleware
        (the dom0 image plugin hands it to Glance)."""
        import nova.api.auth
        stub = nova.api.auth.NovaKeystoneContext._create_context
        token = self.glance_http.token

        def with_token(env, **kwargs):
            ctx = stub(env, **kwargs)
            ctx.auth_token = token
            return ctx
        self.useFixture(fixtures.MonkeyPatch(
            'nova.api.auth.NovaKeystoneContext._create_context', with_token))

    def setUp(self):
        super(XenAPIFunctionalTestCase, self).setUp()
        wait = self.notifier.wait_for_versioned_notifications

        def generous(event_type, n_events=1, timeout=10.0):
            return wait(event_type, n_events, max(timeout, WAIT))
        self.notifier.wait_for_versioned_notifications = generous

    # -- nova's waits, with WAIT as their limit ------------------------

    def poll(self, check, what, seconds=WAIT):
        """The first true value of ``check()``, tried every POLL s; a
        failure saying ``what`` did not happen within ``seconds``."""
        return polling.until(check, what, seconds, POLL)

    def _wait_for_server_parameter(self, server, expected_params,
                                   max_retries=10, **kwargs):
        return super(XenAPIFunctionalTestCase, self) \
            ._wait_for_server_parameter(
                server, expected_params,
                max_retries=max(max_retries, int(WAIT / POLL)), **kwargs)

    def _wait_until_deleted(self, server):
        initially_in_error = server.get('status') == 'ERROR'

        def gone():
            try:
                status = self.api.get_server(server['id'])['status']
            except client.OpenStackApiNotFoundException:
                return True
            if status == 'ERROR' and not initially_in_error:
                self.fail('server %s went to ERROR instead of going'
                          % server['id'])
            return False
        self.poll(gone, 'server %s deleted' % server['id'])

    def _wait_for_migration_status(self, server, expected_statuses):
        api = getattr(self, 'admin_api', self.api)
        statuses = [status.lower() for status in expected_statuses]

        def found():
            for migration in api.api_get('/os-migrations').body[
                    'migrations']:
                if migration['instance_uuid'] == server['id'] and \
                        migration['status'].lower() in statuses:
                    return migration
        return self.poll(found, 'a migration of server %s in status %s'
                         % (server['id'], expected_statuses))

    def _wait_for_instance_action_event(self, server, action_name,
                                        event_name, event_result):
        api = getattr(self, 'admin_api', self.api)

        def found():
            for action in api.get_instance_actions(server['id']):
                if action['action'] != action_name:
                    continue
                for event in api.get_instance_action_details(
                        server['id'], action['request_id'])['events']:
                    if event['event'] == event_name and \
                            (event['result'] or '').lower() == \
                            event_result.lower():
                        return event
        return self.poll(found, 'event %s (%s) of action %s of server %s'
                         % (event_name, event_result, action_name,
                            server['id']))

    def _wait_for_volume_attach(self, server_id, volume_id):
        def attached():
            try:
                return self.api.get_server_volume(server_id, volume_id)
            except client.OpenStackApiNotFoundException:
                return None
        self.poll(attached, 'volume %s attached to server %s'
                  % (volume_id, server_id))

    def _wait_for_volume_detach(self, server_id, volume_id):
        def detached():
            try:
                self.api.get_server_volume(server_id, volume_id)
            except client.OpenStackApiNotFoundException:
                return True
            return False
        self.poll(detached, 'volume %s detached from server %s'
                  % (volume_id, server_id))

    def _setup_compute_service(self):
        return self._start_compute(self.xapi.pool['hosts'][0]['name_label'])

    # -- helpers ---------------------------------------------------------

    def use_local_srs(self):
        """Each compute keeps its instances' disks on its own host's local
        SR (call before the computes start)."""
        for sr, record in self.xapi.x.SR.get_all_records().items():
            if not record['shared'] and record['type'] == 'ext':
                self.xapi.x.SR.add_to_other_config(sr, 'nova-disks', 'local')
        self.flags(sr_matching_filter='other-config:nova-disks=local',
                   group='xenserver')

    def image_with(self, data, **kwargs):
        return xen_fixtures.glance_image(self.glance, data, **kwargs)

    def flavor(self, name='m1.tiny'):
        for flavor in self.api.get_flavors():
            if flavor['name'] == name:
                return self.api.get_flavor(flavor['id'])
        raise AssertionError('no flavor %s' % name)

    def boot(self, image_id, flavor='m1.tiny', expected_state='ACTIVE',
             networks=None):
        flavor_id = self.flavor(flavor)['id']
        if networks is None:
            networks = [{'uuid': self.neutron.network_1['id']}]
        return self._create_server(image_uuid=image_id, flavor_id=flavor_id,
                                   networks=networks,
                                   expected_state=expected_state)


def reclaimer_passes(test, driver, passes=2, seconds=300):
    """Wait until ``driver``'s reclaimer has made ``passes`` more passes:
    with two, at least one of them began after this call (what it had to
    do then, it has done, or tried)."""
    reclaimer = driver._reclaimer
    target = reclaimer.passes + passes
    try:
        polling.until(lambda: reclaimer.passes >= target,
                      'the reclaimer making %d passes' % passes, seconds,
                      0.1)
    except AssertionError:
        test.fail('the reclaimer made %d passes in %d s, not %d' % (
            reclaimer.passes - target + passes, seconds, passes))


def wait_for_migrations(test, server_id, statuses, seconds=300):
    """Wait until the server's migrations, oldest first, have ``statuses``
    (a migration still running does not match); returns them."""
    seen = []

    def matched():
        found = sorted(test.api.api_get(
            '/os-migrations?instance_uuid=%s' % server_id
        ).body['migrations'], key=lambda m: m['id'])
        seen[:] = [m['status'] for m in found]
        return (found,) if seen == list(statuses) else None
    try:
        return polling.until(matched, 'the migrations of server %s'
                             % server_id, seconds, 0.2)[0]
    except AssertionError:
        test.fail('the migrations of server %s are %s, not %s' % (
            server_id, seen, list(statuses)))


def wait_for_allocations_gone(test, migration_uuid):
    """Nova saves a live migration completed, then removes the
    allocations the migration held on the source: wait for that (a leak
    never gets there)."""
    test.poll(lambda: not test.placement.get(
        '/allocations/%s' % migration_uuid).body['allocations'],
        'the allocations of migration %s going' % migration_uuid)
