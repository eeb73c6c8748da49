"""In-process Nova (API, conductor, scheduler, compute, placement) driving
nova-xen against a simulated XCP-ng pool."""

import time

import fixtures
from nova.tests.functional import integrated_helpers

import nova_xen.conf  # noqa: F401  registers [xenserver]

from tests.functional import fixtures as xen_fixtures
from tests.functional import glance_http
from tests.functional import waits

MIB = 1024 * 1024


class XenAPIFunctionalTestCase(waits.PatientWaits,
                               integrated_helpers._IntegratedTestBase):
    compute_driver = 'xenapi.XenAPIDriver'
    ADMIN_API = True
    microversion = 'latest'
    REQUIRES_LOCKING = True

    #: options for the simulated pool (see python -m xapisim --help)
    xapisim_options = {'guest_delay': 0.01}
    #: Glance's API (for the dom0 plugins) over HTTPS with its own CA
    glance_tls = False

    def _setup_services(self):
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
        super(XenAPIFunctionalTestCase, self)._setup_services()
        self._give_requests_a_token()

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
    deadline = time.monotonic() + seconds
    while reclaimer.passes < target:
        if time.monotonic() > deadline:
            test.fail('the reclaimer made %d passes in %d s, not %d' % (
                reclaimer.passes - target + passes, seconds, passes))
        time.sleep(0.1)


def wait_for_migrations(test, server_id, statuses, seconds=300):
    """Wait until the server's migrations, oldest first, have ``statuses``
    (a migration still running does not match); returns them."""
    deadline = time.monotonic() + seconds
    while True:
        found = sorted(test.api.api_get(
            '/os-migrations?instance_uuid=%s' % server_id
        ).body['migrations'], key=lambda m: m['id'])
        if [m['status'] for m in found] == list(statuses):
            return found
        if time.monotonic() > deadline:
            test.fail('the migrations of server %s are %s, not %s' % (
                server_id, [m['status'] for m in found], list(statuses)))
        time.sleep(0.2)
