"""Compute API tests that also look at the pool through XenAPI."""

from oslo_config import cfg
from tempest.api.compute import base
from tempest.common import waiters
from tempest import config

from nova_xen_tempest import xapi

CONF = config.CONF

MIB = 1024 * 1024


class XenAPIComputeTest(base.BaseV2ComputeAdminTest):
    """A compute API test with ``cls.xapi``, a XenAPI view of the pool
    (of the pools, when [xenapi]connection_url names several).

    Skipped when tempest.conf has no [xenapi]connection_url: then the
    tests could only repeat tempest's own compute API tests.
    """

    @classmethod
    def skip_checks(cls):
        # first, so that this is the reason given whatever else is missing
        try:
            url = CONF.xenapi.connection_url
        except (AttributeError, cfg.NoSuchOptError):
            raise cls.skipException(
                'tempest.conf has no [xenapi] group: the nova_xen tempest '
                'plugin is not registered (pip install nova-xen)')
        if not url:
            raise cls.skipException(
                '[xenapi]connection_url is not set in tempest.conf: the '
                'nova-xen tests need XenAPI access to the pool master')
        super(XenAPIComputeTest, cls).skip_checks()

    @classmethod
    def resource_setup(cls):
        super(XenAPIComputeTest, cls).resource_setup()
        cls.xapi = xapi.Xapi.from_conf(CONF.xenapi)
        cls.addClassResourceCleanup(cls.xapi.close)

    @classmethod
    def create_active_server(cls, **kwargs):
        """A server of this class, ACTIVE, seen by admin (host details)."""
        server = cls.create_test_server(wait_until='ACTIVE', **kwargs)
        return cls.admin_servers_client.show_server(server['id'])['server']

    def vm_of(self, server):
        """The server's VM record; fails when xapi has none."""
        vm, record = self.xapi.vm_of(server['id'])
        self.assertIsNotNone(
            vm, 'no VM in xapi has other_config nova_uuid=%s' % server['id'])
        return vm, record

    def assert_runs_where_nova_says(self, server, record):
        """Running, on the xapi host whose hostname Nova reports."""
        self.assertEqual('Running', record['power_state'])
        host = self.xapi.host_of(record)
        self.assertIsNotNone(host, 'VM %s runs nowhere' % record['uuid'])
        self.assertEqual(server['OS-EXT-SRV-ATTR:hypervisor_hostname'],
                         host['hostname'])

    def flavor_of(self, server):
        """The server's flavor: vcpus, ram (MiB), disk (GiB)."""
        flavor = server['flavor']
        if 'id' in flavor:     # before microversion 2.47
            flavor = self.flavors_client.show_flavor(flavor['id'])['flavor']
        return flavor

    def wait_for_server(self, server_id, status):
        waiters.wait_for_server_status(self.servers_client, server_id,
                                       status)
