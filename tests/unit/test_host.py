"""Finding the compute's host, its SR and its resources in a live pool."""

from unittest import mock

import fixtures
from nova import conf as nova_conf
from oslo_config import fixture as config_fixture
import testtools

import xapisim

from nova_xen import conf as xen_conf
from nova_xen import errors
from nova_xen import host as host_mod
from nova_xen import session as session_mod
from tests import records

NOVA_CONF = nova_conf.CONF


class HostTestCase(testtools.TestCase):
    @classmethod
    def setUpClass(cls):
        super(HostTestCase, cls).setUpClass()
        cls.sim = xapisim.Simulator(hosts=2, vm_memory_mib=8192,
                                    sr_size_gib=50, host_cpus=4)
        cls.pool = cls.sim.describe()['pools'][0]

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()
        super(HostTestCase, cls).tearDownClass()

    def setUp(self):
        super(HostTestCase, self).setUp()
        self.conf = self.useFixture(config_fixture.Config(xen_conf.CONF))
        self.conf.config(connection_url=self.pool['master'],
                         group='xenserver')
        self.useFixture(_no_domu())
        self.session = session_mod.Session(self.pool['master'], 'root',
                                           'xapisim').connect()
        self.addCleanup(self.session.close)

    def host(self):
        return host_mod.Host(self.session).discover()


def _no_domu():
    return fixtures.MockPatch('nova_xen.host._domu_uuid', return_value=None)


class DiscoverTest(HostTestCase):

    def test_the_url_names_the_host(self):
        host = self.host()
        self.assertEqual(self.pool['hosts'][0]['uuid'], host.uuid)
        self.assertEqual('127.0.0.2', host.address)
        self.assertEqual(self.pool['hosts'][0]['name_label'], host.nodename)

    def test_a_member_url_names_the_member_although_calls_go_to_master(self):
        member = self.pool['hosts'][1]
        self.conf.config(connection_url=member['url'], group='xenserver')
        sess = session_mod.Session(member['url'], 'root', 'xapisim').connect()
        self.addCleanup(sess.close)
        host = host_mod.Host(sess).discover()
        self.assertEqual(member['uuid'], host.uuid)
        self.assertEqual(self.pool['master'], sess.url)

    def test_host_uuid_option_wins(self):
        member = self.pool['hosts'][1]
        self.conf.config(host_uuid=member['uuid'], group='xenserver')
        self.assertEqual(member['uuid'], self.host().uuid)

    def test_unknown_host_uuid_lists_the_pool(self):
        self.conf.config(host_uuid='9b9d0a84-0000-4000-8000-000000000000',
                         group='xenserver')
        e = self.assertRaises(errors.StartupError, self.host)
        self.assertIn('9b9d0a84-0000-4000-8000-000000000000', str(e))
        for h in self.pool['hosts']:
            self.assertIn(h['uuid'], str(e))

    def test_the_domu_we_run_in_names_the_host(self):
        x = self.session
        vm = x.call('VM.create', _vm_record('compute-domu'))
        self.addCleanup(x.call, 'VM.destroy', vm)
        member = self.pool['hosts'][1]
        member_ref = x.call('host.get_by_uuid', member['uuid'])
        x.call('VM.start_on', vm, member_ref, False, False)
        self.addCleanup(x.call, 'VM.hard_shutdown', vm)
        uuid = x.call('VM.get_uuid', vm)
        with mock.patch('nova_xen.host._domu_uuid', return_value=uuid):
            self.assertEqual(member['uuid'], self.host().uuid)


class StorageTest(HostTestCase):

    def test_default_sr(self):
        host = self.host()
        sr = host.instance_sr()
        pool = self.session.call('pool.get_all')[0]
        self.assertEqual(self.session.call('pool.get_default_SR', pool), sr)

    def test_other_config_filter(self):
        host = self.host()
        local = [r for r, rec in self.session.call(
            'SR.get_all_records').items() if rec['type'] == 'ext' and
            rec['PBDs'] and self.session.call(
                'PBD.get_host', rec['PBDs'][0]) == host.ref][0]
        self.session.call('SR.add_to_other_config', local, 'nova', 'yes')
        self.addCleanup(self.session.call, 'SR.remove_from_other_config',
                        local, 'nova')
        self.conf.config(sr_matching_filter='other-config:nova=yes',
                         group='xenserver')
        self.assertEqual(local, host.instance_sr())

    def test_sr_of_another_host_is_refused(self):
        host = self.host()
        other = self.pool['hosts'][1]['uuid']
        other_ref = self.session.call('host.get_by_uuid', other)
        theirs = [r for r, rec in self.session.call(
            'SR.get_all_records').items() if rec['type'] == 'ext' and
            self.session.call('PBD.get_host', rec['PBDs'][0]) == other_ref][0]
        self.session.call('SR.add_to_other_config', theirs, 'nova', 'theirs')
        self.addCleanup(self.session.call, 'SR.remove_from_other_config',
                        theirs, 'nova')
        self.conf.config(sr_matching_filter='other-config:nova=theirs',
                         group='xenserver')
        e = self.assertRaises(errors.StartupError, host.instance_sr)
        self.assertIn('is not attached to host', str(e))

    def test_bad_filter(self):
        self.conf.config(sr_matching_filter='label:foo', group='xenserver')
        e = self.assertRaises(errors.StartupError, self.host().instance_sr)
        self.assertIn('sr_matching_filter', str(e))

    def test_no_sr_matches(self):
        self.conf.config(sr_matching_filter='other-config:none=here',
                         group='xenserver')
        e = self.assertRaises(errors.StartupError, self.host().instance_sr)
        self.assertIn('No SR has other_config none=here', str(e))


class ResourcesTest(HostTestCase):

    def test_inventory_from_host_and_sr(self):
        host = self.host()
        sr = host.instance_sr()
        record, inv = host.inventory(sr, {})
        self.assertEqual(4, inv['VCPU']['total'])
        self.assertEqual(8192 + 2048, inv['MEMORY_MB']['total'])
        self.assertEqual(50, inv['DISK_GB']['total'])
        # dom0 is reserved, with nova's own reserve on top
        self.assertEqual(2048 + NOVA_CONF.reserved_host_memory_mb,
                         inv['MEMORY_MB']['reserved'])

    def test_memory_of_vms_nova_does_not_own_is_reserved(self):
        host = self.host()
        x = self.session
        vm = x.call('VM.create', _vm_record('not-nova', memory_mib=512))
        self.addCleanup(x.call, 'VM.destroy', vm)
        x.call('VM.start_on', vm, host.ref, False, False)
        self.addCleanup(x.call, 'VM.hard_shutdown', vm)
        nova_vm = x.call('VM.create', _vm_record('nova', memory_mib=1024,
                                                 nova=True))
        self.addCleanup(x.call, 'VM.destroy', nova_vm)
        x.call('VM.start_on', nova_vm, host.ref, False, False)
        self.addCleanup(x.call, 'VM.hard_shutdown', nova_vm)
        _, inv = host.inventory(host.instance_sr(), {})
        # dom0 and the VM nova does not own; the nova VM is an allocation
        self.assertEqual(2048 + 512 + NOVA_CONF.reserved_host_memory_mb,
                         inv['MEMORY_MB']['reserved'])

    def test_allocation_ratios_and_reserved_follow_nova_config(self):
        nconf = self.useFixture(config_fixture.Config(NOVA_CONF))
        nconf.config(cpu_allocation_ratio=4.0, reserved_host_memory_mb=256,
                     reserved_host_disk_mb=2048, reserved_host_cpus=1)
        host = self.host()
        _, inv = host.inventory(host.instance_sr(), {})
        self.assertEqual(4.0, inv['VCPU']['allocation_ratio'])
        self.assertEqual(1, inv['VCPU']['reserved'])
        self.assertEqual(2048 + 256, inv['MEMORY_MB']['reserved'])
        self.assertEqual(2, inv['DISK_GB']['reserved'])

    def test_available_resource(self):
        host = self.host()
        res = host.available_resource(host.instance_sr())
        self.assertEqual(4, res['vcpus'])
        self.assertEqual('xen', res['hypervisor_type'])
        self.assertEqual(host.nodename, res['hypervisor_hostname'])
        self.assertIn('avx2', res['cpu_info'])

    def test_cpu_traits(self):
        traits = host_mod.cpu_traits({'flags': 'sse sse2 avx2 aes'})
        self.assertTrue(traits['HW_CPU_X86_AVX2'])
        self.assertTrue(traits['HW_CPU_X86_AESNI'])
        self.assertFalse(traits['HW_CPU_X86_AVX512F'])


def _vm_record(name, memory_mib=256, nova=False):
    return records.vm_record(name, memory_mib, other_config={
        'nova_uuid': 'x'} if nova else {})
