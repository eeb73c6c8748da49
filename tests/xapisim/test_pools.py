"""Pools and hosts: what a freshly installed XCP-ng 8.3 pool looks like."""

import datetime
import unittest
import urllib.parse

import XenAPI

from tests.xapisim.base import MIB, SimTestCase


def _address(url):
    return urllib.parse.urlsplit(url).hostname


class TwoPoolsTest(SimTestCase):
    pools = 2
    hosts = 2
    sim_options = {'host_cpus': 4, 'guest_delay': 0.01}

    def test_every_host_on_its_own_loopback_address_one_port(self):
        hosts = [h for p in self.world['pools'] for h in p['hosts']]
        self.assertEqual(4, len(hosts))
        addresses = [h['address'] for h in hosts]
        self.assertEqual(4, len(set(addresses)))
        for address in addresses:
            parts = address.split('.')
            self.assertEqual(['127', '0', '0'], parts[:3], address)
            self.assertGreaterEqual(int(parts[3]), 2)
        ports = set(urllib.parse.urlsplit(h['url']).port for h in hosts)
        self.assertEqual(1, len(ports), hosts)
        for h in hosts:
            self.assertEqual(h['address'], _address(h['url']))

    def test_each_pool_answers_on_its_master(self):
        uuids = set()
        for described in self.world['pools']:
            x = self.login(described['master']).xenapi
            pool = x.pool.get_all()
            self.assertEqual(1, len(pool))
            self.assertEqual(described['uuid'], x.pool.get_uuid(pool[0]))
            self.assertEqual(described['name_label'],
                             x.pool.get_name_label(pool[0]))
            host_uuids = sorted(x.host.get_uuid(h) for h in x.host.get_all())
            self.assertEqual(sorted(h['uuid'] for h in described['hosts']),
                             host_uuids)
            uuids.update(host_uuids)
        self.assertEqual(4, len(uuids))

    def test_pool_get_master_is_the_described_master(self):
        for described in self.world['pools']:
            x = self.login(described['master']).xenapi
            master = x.pool.get_master(x.pool.get_all()[0])
            self.assertEqual(_address(described['master']),
                             x.host.get_address(master))
            self.assertEqual(described['hosts'][0]['uuid'],
                             x.host.get_uuid(master))

    def test_slave_refuses_login_naming_its_master(self):
        described = self.world['pools'][1]
        session = XenAPI.Session(described['hosts'][1]['url'])
        with self.assertRaises(XenAPI.Failure) as ctx:
            session.login_with_password(self.world['username'],
                                        self.world['password'])
        self.assertEqual(['HOST_IS_SLAVE', _address(described['master'])],
                         ctx.exception.details)

    def test_host_address_and_management_pif(self):
        for h in self.world['pools'][0]['hosts']:
            host = self.x.host.get_by_uuid(h['uuid'])
            record = self.x.host.get_record(host)
            self.assertEqual(h['address'], record['address'])
            self.assertEqual(h['name_label'], record['name_label'])
            pifs = [self.x.PIF.get_record(p) for p in record['PIFs']]
            management = [p for p in pifs if p['management']]
            self.assertEqual(1, len(management))
            self.assertEqual(h['address'], management[0]['IP'])

    def test_default_sr_is_shared_and_seen_by_every_host(self):
        sr = self.x.pool.get_default_SR(self.pool_ref())
        record = self.x.SR.get_record(sr)
        self.assertTrue(record['shared'])
        self.assertEqual('user', record['content_type'])
        hosts = sorted(self.x.PBD.get_host(p) for p in record['PBDs']
                       if self.x.PBD.get_currently_attached(p))
        self.assertEqual(sorted(self.x.host.get_all()), hosts)

    def test_each_host_has_a_local_sr(self):
        for host in self.x.host.get_all():
            local = [pbd for pbd in self.x.host.get_PBDs(host)
                     if not self.x.SR.get_shared(self.x.PBD.get_SR(pbd))]
            self.assertEqual(1, len(local), host)
            sr = self.x.PBD.get_SR(local[0])
            self.assertEqual([local[0]], self.x.SR.get_PBDs(sr))

    def test_software_version_is_xcp_ng_8_3(self):
        for host in self.x.host.get_all():
            version = self.x.host.get_software_version(host)
            self.assertEqual('XCP-ng', version['product_brand'])
            self.assertEqual('8.3.0', version['product_version'])
            self.assertTrue(all(isinstance(v, str) for v in version.values()))

    def test_api_version(self):
        for host in self.x.host.get_all():
            record = self.x.host.get_record(host)
            self.assertEqual('2', record['API_version_major'])
            self.assertEqual('21', record['API_version_minor'])
            self.assertEqual('2', self.x.host.get_API_version_major(host))

    def test_servertime_is_now(self):
        host = self.x.pool.get_master(self.pool_ref())
        before = datetime.datetime.now(datetime.timezone.utc).replace(
            microsecond=0)
        value = self.x.host.get_servertime(host)
        after = datetime.datetime.now(datetime.timezone.utc)
        when = datetime.datetime.strptime(
            value.value, '%Y%m%dT%H:%M:%SZ').replace(
                tzinfo=datetime.timezone.utc)
        # the time of the call, to the second, however long it took; the
        # wall clock may be stepped (as NTP does) between the readings:
        # a few seconds' slack, where a wrong zone is hours off
        slack = datetime.timedelta(seconds=5)
        self.assertTrue(before - slack <= when <= after + slack,
                        (before, value.value, after))

    def test_host_cpus(self):
        for host in self.x.host.get_all():
            cpus = [c for c in self.x.host_cpu.get_all_records().values()
                    if c['host'] == host]
            self.assertEqual(4, len(cpus))
            self.assertEqual(['0', '1', '2', '3'],
                             sorted(c['number'] for c in cpus))
            self.assertEqual(sorted(c['uuid'] for c in cpus), sorted(
                self.x.host_cpu.get_uuid(c)
                for c in self.x.host.get_host_CPUs(host)))
            self.assertEqual('4', self.x.host.get_cpu_info(host)['cpu_count'])

    def test_host_metrics(self):
        for host in self.x.host.get_all():
            metrics = self.x.host_metrics.get_record(
                self.x.host.get_metrics(host))
            self.assertTrue(metrics['live'])
            total = int(metrics['memory_total'])
            free = int(metrics['memory_free'])
            self.assertGreater(total, free)
            self.assertGreater(free, 0)
            self.assertEqual(free, int(self.x.host.compute_free_memory(host)))

    def test_free_memory_falls_by_a_started_vm(self):
        hosts = self.x.host.get_all()
        host = hosts[-1]
        before = int(self.x.host.compute_free_memory(host))
        vm = self.new_vm(name='eats-memory', memory_mib=1024)
        self.x.VM.start_on(vm, host, False, False)
        during = int(self.x.host.compute_free_memory(host))
        self.assertGreaterEqual(before - during, 1024 * MIB)
        # overhead is small next to the guest's RAM
        self.assertLess(before - during, 1100 * MIB)
        metrics = self.x.host.get_metrics(host)
        self.assertEqual(during,
                         int(self.x.host_metrics.get_memory_free(metrics)))
        self.x.VM.hard_shutdown(vm)
        self.assertEqual(before, int(self.x.host.compute_free_memory(host)))

    def test_vm_too_big_for_free_memory(self):
        host = self.x.host.get_all()[0]
        free = int(self.x.host.compute_free_memory(host))
        vm = self.new_vm(name='too-big', memory_mib=free // MIB + 1)
        details = self.assertFailure('HOST_NOT_ENOUGH_FREE_MEMORY',
                                     self.x.VM.start_on, vm, host, False,
                                     False)
        self.assertEqual(str(free), details[2])
        self.assertGreater(int(details[1]), free)

    def test_control_domain_per_host(self):
        for host in self.x.host.get_all():
            dom0 = self.x.host.get_control_domain(host)
            record = self.x.VM.get_record(dom0)
            self.assertTrue(record['is_control_domain'])
            self.assertEqual('0', record['domid'])
            self.assertEqual(host, record['resident_on'])
            self.assertEqual('Running', record['power_state'])


if __name__ == '__main__':
    unittest.main()
