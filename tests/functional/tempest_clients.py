"""tempest.lib's compute service clients against the in-process Nova.

nova's OSAPIFixture serves the compute API through wsgi-intercept at a
made-up host (``http://<uuid>:80/v2.1``): its RequestsInterceptor replaces
the connection class of urllib3's HTTP connection pools, and requests'
urllib3 is urllib3 itself, so tempest.lib's RestClient (a urllib3
PoolManager) reaches the same WSGI app when it is given the same URL.
:class:`InProcessAuthProvider` gives it that URL and, instead of a
Keystone token, the headers the fixture's stubbed keystone context reads
(X-Auth-User, X-Auth-Project-Id, X-Roles).

Only tempest.lib here: tempest.config would register its options in the
global oslo.config object that nova uses.
"""

import re
import time
import urllib.parse

from tempest.lib import auth
from tempest.lib import exceptions as lib_exc
from tempest.lib.services import compute

REGION = 'RegionOne'


class InProcessAuthProvider(auth.AuthProvider):
    """A fixed token and user, and the in-process API's base URL."""

    def __init__(self, base_url, user, project_id, roles,
                 token='nova-xen-tempest-token'):
        credentials = auth.KeystoneV3Credentials(
            username=user, user_id=user, password='unused',
            user_domain_name='Default', project_id=project_id)
        self._base_url = base_url
        self.user = user
        self.project_id = project_id
        self.roles = list(roles)
        self.token = token
        super(InProcessAuthProvider, self).__init__(credentials)

    def _get_auth(self):
        return self.token, {'user': {'id': self.user},
                            'project': {'id': self.project_id}}

    def _fill_credentials(self, auth_data_body):
        pass

    def is_expired(self, auth_data):
        return False

    def base_url(self, filters, auth_data=None):
        service = filters.get('service')
        if service != 'compute':
            raise lib_exc.EndpointNotFound('only compute is served in '
                                           'process, not %s' % service)
        return auth.apply_url_filters(self._base_url, filters)

    def _decorate_request(self, filters, method, url, headers=None,
                          body=None, auth_data=None):
        token, _ = auth_data or self.get_auth()
        base_url = self.base_url(filters, auth_data)
        headers = dict(headers or {})
        headers.update({'X-Auth-Token': token,
                        'X-Auth-User': self.user,
                        'X-User-Id': self.user,
                        'X-Auth-Project-Id': self.project_id,
                        'X-Roles': ','.join(self.roles)})
        if url:
            full = '/'.join([base_url, url])
            parts = list(urllib.parse.urlparse(full))
            parts[2] = re.sub('/{2,}', '/', parts[2])
            url = urllib.parse.urlunparse(parts)
        else:
            url = base_url
        return url, headers, body


class ComputeClients(object):
    """The compute service clients of one user of the in-process API."""

    def __init__(self, base_url, user, project_id, roles,
                 build_interval=0.1, build_timeout=120):
        self.auth_provider = InProcessAuthProvider(base_url, user,
                                                   project_id, roles)
        kwargs = {'build_interval': build_interval,
                  'build_timeout': build_timeout}
        args = (self.auth_provider, 'compute', REGION)
        self.servers = compute.ServersClient(*args, **kwargs)
        self.flavors = compute.FlavorsClient(*args, **kwargs)
        self.images = compute.ImagesClient(*args, **kwargs)
        self.hypervisors = compute.HypervisorClient(*args, **kwargs)


def wait_for_server_status(client, server_id, status, timeout=None):
    """Wait until the server has ``status`` and no task; return it.

    As tempest.common.waiters.wait_for_server_status (which needs
    tempest.config); ERROR fails at once, with the fault.
    """
    deadline = time.time() + (timeout or client.build_timeout)
    while True:
        server = client.show_server(server_id)['server']
        task = server.get('OS-EXT-STS:task_state')
        if server['status'] == status and task is None:
            return server
        if server['status'] == 'ERROR' and status != 'ERROR':
            raise AssertionError('server %s went to ERROR (waiting for %s): '
                                 '%s' % (server_id, status,
                                         server.get('fault')))
        if time.time() > deadline:
            raise lib_exc.TimeoutException(
                'server %s is %s (task %s), not %s, after %s s' % (
                    server_id, server['status'], task, status,
                    timeout or client.build_timeout))
        time.sleep(client.build_interval)


def wait_for_server_termination(client, server_id, timeout=None):
    deadline = time.time() + (timeout or client.build_timeout)
    while True:
        try:
            server = client.show_server(server_id)['server']
        except lib_exc.NotFound:
            return
        if server['status'] == 'ERROR':
            raise AssertionError('server %s went to ERROR while deleted: %s'
                                 % (server_id, server.get('fault')))
        if time.time() > deadline:
            raise lib_exc.TimeoutException(
                'server %s still exists (%s) after %s s'
                % (server_id, server['status'],
                   timeout or client.build_timeout))
        time.sleep(client.build_interval)
