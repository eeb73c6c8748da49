"""Moving VMs: VM.pool_migrate inside a pool, VM.migrate_send across pools."""

import os
import unittest
import urllib.parse

import XenAPI

from tests.xapisim.base import MIB, SimTestCase


class MigrationTestCase(SimTestCase):
    pools = 2
    hosts = 2
    sim_options = {'guest_delay': 0.01}

    def host(self, index, x=None):
        pool = 1 if x is not None else 0
        uuid = self.world['pools'][pool]['hosts'][index]['uuid']
        return (x or self.x).host.get_by_uuid(uuid)

    def local_sr(self, host):
        for pbd in self.x.host.get_PBDs(host):
            sr = self.x.PBD.get_SR(pbd)
            if not self.x.SR.get_shared(sr) and \
                    self.x.SR.get_type(sr) != 'iso':
                return sr
        raise AssertionError('no local SR on %s' % host)

    def vm_with_disk(self, name, sr=None, vif=True):
        vm = self.new_vm(name=name, memory_mib=128)
        vdi = self.new_vdi(size=4 * MIB, sr=sr)
        self.new_vbd(vm, vdi)
        vif_ref = self.new_vif(vm) if vif else None
        return vm, vdi, vif_ref

    def dest(self):
        """A session on pool 2 and its migrate_receive token for host 2."""
        other = self.login(self.world['pools'][1]['master'])
        y = other.xenapi
        network = [n for n in y.network.get_all()
                   if y.network.get_bridge(n) == 'xenbr0'][0]
        host = self.host(1, y)
        token = y.host.migrate_receive(host, network, {})
        sr = y.pool.get_default_SR(y.pool.get_all()[0])
        self.dest_session = other
        return y, host, network, sr, token


class PoolMigrateTest(MigrationTestCase):

    def test_running_vm_moves_to_the_other_host(self):
        vm, _, _ = self.vm_with_disk('mover')
        self.x.VM.start_on(vm, self.host(0), False, False)
        before = self.x.VM.get_record(vm)
        self.x.VM.pool_migrate(vm, self.host(1), {'live': 'true'})
        after = self.x.VM.get_record(vm)
        self.assertEqual(self.host(0), before['resident_on'])
        self.assertEqual(self.host(1), after['resident_on'])
        self.assertEqual('Running', after['power_state'])
        self.assertNotEqual(before['domid'], after['domid'])
        self.assertNotEqual('-1', after['domid'])
        self.assertEqual(before['uuid'], after['uuid'])
        self.assertTrue(after['consoles'])
        new_address = self.world['pools'][0]['hosts'][1]['address']
        for console in after['consoles']:
            location = self.x.console.get_location(console)
            self.assertEqual(new_address,
                             urllib.parse.urlsplit(location).hostname)
        for vbd in after['VBDs']:
            self.assertTrue(self.x.VBD.get_currently_attached(vbd))

    def test_console_log_follows_the_domain(self):
        vm, _, _ = self.vm_with_disk('logger')
        self.x.VM.start_on(vm, self.host(0), False, False)
        self.x.VM.pool_migrate(vm, self.host(1), {})
        domid = int(self.x.VM.get_domid(vm))
        dom0 = self.x.host.get_other_config(
            self.host(1))['xapisim_dom0_root']
        path = os.path.join(dom0, 'var', 'log', 'xen', 'guest',
                            'console.%d' % domid)
        with open(path) as fh:
            self.assertIn('logger login:', fh.read())

    def test_free_memory_moves_with_the_vm(self):
        vm, _, _ = self.vm_with_disk('memory-mover')
        src, dst = self.host(0), self.host(1)
        self.x.VM.start_on(vm, src, False, False)
        src_before = int(self.x.host.compute_free_memory(src))
        dst_before = int(self.x.host.compute_free_memory(dst))
        self.x.VM.pool_migrate(vm, dst, {})
        gained = int(self.x.host.compute_free_memory(src)) - src_before
        lost = dst_before - int(self.x.host.compute_free_memory(dst))
        self.assertGreaterEqual(gained, 128 * MIB)
        self.assertEqual(gained, lost)

    def test_disk_on_local_sr_requires_sr(self):
        sr = self.local_sr(self.host(0))
        vm, _, _ = self.vm_with_disk('pinned', sr=sr)
        self.x.VM.start_on(vm, self.host(0), False, False)
        self.assertFailure(['VM_REQUIRES_SR', vm, sr],
                           self.x.VM.pool_migrate, vm, self.host(1), {})
        self.assertEqual(self.host(0), self.x.VM.get_resident_on(vm))
        self.assertEqual('Running', self.x.VM.get_power_state(vm))

    def test_halted_vm_cannot_pool_migrate(self):
        vm, _, _ = self.vm_with_disk('halted')
        self.assertFailure(['VM_BAD_POWER_STATE', vm, 'running', 'halted'],
                           self.x.VM.pool_migrate, vm, self.host(1), {})


class MigrateReceiveTest(MigrationTestCase):

    def test_token_names_the_receiving_host(self):
        y, host, _, _, token = self.dest()
        self.assertEqual({'SM', 'host', 'xenops', 'session_id', 'master'},
                         set(token))
        self.assertEqual(host, token['host'])
        address = self.world['pools'][1]['hosts'][1]['address']
        for key in ('SM', 'xenops'):
            parts = urllib.parse.urlsplit(token[key])
            self.assertEqual(address, parts.hostname)
            self.assertEqual({'session_id': [token['session_id']]},
                             urllib.parse.parse_qs(parts.query))
        self.assertEqual('/services/SM',
                         urllib.parse.urlsplit(token['SM']).path)
        self.assertEqual('/services/xenops',
                         urllib.parse.urlsplit(token['xenops']).path)
        self.assertEqual(self.world['pools'][1]['master'] + '/',
                         token['master'])

    def test_token_session_is_a_new_session_of_the_destination(self):
        token = self.dest()[4]
        self.assertNotEqual(self.dest_session._session, token['session_id'])
        session = XenAPI.Session(self.world['pools'][1]['master'])
        session._session = token['session_id']
        pools = session.xenapi.pool.get_all()
        self.assertEqual(self.world['pools'][1]['uuid'],
                         session.xenapi.pool.get_uuid(pools[0]))

    def test_network_without_pif_on_host(self):
        y = self.login(self.world['pools'][1]['master']).xenapi
        network = y.network.create({'name_label': 'private',
                                    'name_description': '', 'MTU': '1500',
                                    'other_config': {}})
        host = self.host(1, y)
        self.assertFailure(['HOST_CANNOT_ATTACH_NETWORK', host, network],
                           y.host.migrate_receive, host, network, {})


class CrossPoolMigrateTest(MigrationTestCase):

    def test_assert_can_migrate_with_full_maps(self):
        vm, vdi, vif = self.vm_with_disk('checked')
        self.x.VM.start_on(vm, self.host(0), False, False)
        y, _, network, sr, token = self.dest()
        self.assertEqual('', self.x.VM.assert_can_migrate(
            vm, token, True, {vdi: sr}, {vif: network}, {}))

    def test_assert_can_migrate_needs_every_vdi(self):
        vm, vdi, vif = self.vm_with_disk('no-vdi-map')
        self.x.VM.start_on(vm, self.host(0), False, False)
        y, _, network, sr, token = self.dest()
        self.assertFailure(['VDI_NOT_IN_MAP', vdi],
                           self.x.VM.assert_can_migrate, vm, token, True, {},
                           {vif: network}, {})

    def test_assert_can_migrate_needs_every_vif(self):
        vm, vdi, vif = self.vm_with_disk('no-vif-map')
        self.x.VM.start_on(vm, self.host(0), False, False)
        y, _, network, sr, token = self.dest()
        self.assertFailure(['VIF_NOT_IN_MAP', vif],
                           self.x.VM.assert_can_migrate, vm, token, True,
                           {vdi: sr}, {}, {})

    def write_vdi(self, vdi, data):
        task = self.x.task.create('upload', '')
        path = '/import_raw_vdi?session_id=%s&vdi=%s&task_id=%s' % (
            self.session._session, vdi, task)
        status, _ = self.http('PUT', path, data,
                              headers={'Content-Length': str(len(data))})
        self.assertEqual(200, status)
        self.assertEqual('success', self.wait_task(task)['status'])

    def test_migrate_send_moves_vm_and_bytes(self):
        vm, vdi, vif = self.vm_with_disk('traveller')
        data = os.urandom(64 * 1024) + b'xapisim' * 1000
        self.write_vdi(vdi, data)
        uuid = self.x.VM.get_uuid(vm)
        vdi_uuid = self.x.VDI.get_uuid(vdi)
        mac = self.x.VIF.get_MAC(vif)
        self.x.VM.start_on(vm, self.host(0), False, False)
        y, host, network, sr, token = self.dest()
        task = self.x.Async.VM.migrate_send(vm, token, True, {vdi: sr},
                                            {vif: network}, {})
        record = self.wait_task(task)
        self.assertEqual('success', record['status'], record['error_info'])

        # the destination: the same VM, running on the named host
        new_vm = y.VM.get_by_uuid(uuid)
        self.assertIn(new_vm, record['result'])
        moved = y.VM.get_record(new_vm)
        self.assertEqual('Running', moved['power_state'])
        self.assertEqual(host, moved['resident_on'])
        self.assertEqual('traveller', moved['name_label'])
        self.assertEqual(1, len(moved['VBDs']))
        self.assertEqual(1, len(moved['VIFs']))
        self.assertEqual(network, y.VIF.get_network(moved['VIFs'][0]))
        self.assertEqual(mac, y.VIF.get_MAC(moved['VIFs'][0]))
        new_vdi = y.VBD.get_VDI(moved['VBDs'][0])
        self.assertEqual(sr, y.VDI.get_SR(new_vdi))
        self.assertEqual(str(4 * MIB), y.VDI.get_virtual_size(new_vdi))
        status, body = self.http(
            'GET', '/export_raw_vdi?session_id=%s&vdi=%s&format=raw'
            % (self.dest_session._session, new_vdi),
            url=self.world['pools'][1]['master'])
        self.assertEqual(200, status)
        self.assertEqual(4 * MIB, len(body))
        self.assertEqual(data, body[:len(data)])
        self.assertEqual(b'\0' * (4 * MIB - len(data)), body[len(data):])

        # the source: the VM and its disk are gone
        self.assertFailure(['UUID_INVALID', 'VM', uuid],
                           self.x.VM.get_by_uuid, uuid)
        self.assertFailure(['UUID_INVALID', 'VDI', vdi_uuid],
                           self.x.VDI.get_by_uuid, vdi_uuid)
        self.assertFailure(['HANDLE_INVALID', 'VM', vm],
                           self.x.VM.get_record, vm)

    def test_migrate_send_with_missing_map_changes_nothing(self):
        vm, vdi, vif = self.vm_with_disk('stays-home')
        self.x.VM.start_on(vm, self.host(0), False, False)
        y, _, network, sr, token = self.dest()
        self.assertFailure(['VDI_NOT_IN_MAP', vdi], self.x.VM.migrate_send,
                           vm, token, True, {}, {vif: network}, {})
        uuid = self.x.VM.get_uuid(vm)
        self.assertEqual('Running', self.x.VM.get_power_state(vm))
        self.assertFailure(['UUID_INVALID', 'VM', uuid], y.VM.get_by_uuid,
                           uuid)


if __name__ == '__main__':
    unittest.main()
