"""Rescue, unrescue, password and the host through Nova's API."""

import os

from tests.functional import base
from tests.functional.test_boot import pattern

MIB = 1024 * 1024


class RescueTest(base.XenAPIFunctionalTestCase):

    def setUp(self):
        super(RescueTest, self).setUp()
        self.data = pattern(MIB, seed=b'the-instance')
        self.server = self.boot(self.image_with(self.data))
        self.vm, record = self.xapi.vm_of(self.server['id'])
        self.root = self.xapi.x.VBD.get_VDI(record['VBDs'][0])
        self.x = self.xapi.x

    def xenstore_node(self, host, domid, key):
        """vm-data/<key> of a domain, as the simulated dom0 keeps it."""
        dom0 = self.x.host.get_other_config(host)['xapisim_dom0_root']
        with open(os.path.join(dom0, 'var', 'lib', 'xapisim', 'xenstore',
                               'local', 'domain', str(domid), 'vm-data',
                               key)) as fh:
            return fh.read()

    def rescue_vms(self):
        return [r for r in self.x.VM.get_all_records().values()
                if r['other_config'].get('nova_rescue_of') ==
                self.server['id']]

    def test_rescue_boots_the_rescue_image_with_the_disk_attached(self):
        rescue_data = pattern(MIB, seed=b'rescue-image')
        rescue_image = self.image_with(rescue_data, name='rescue')
        self.api.post_server_action(
            self.server['id'], {'rescue': {'rescue_image_ref': rescue_image,
                                           'adminPass': 'rescue-me-42'}})
        self._wait_for_state_change(self.server, 'RESCUE')
        self.assertEqual('Halted', self.x.VM.get_power_state(self.vm))
        rescues = self.rescue_vms()
        self.assertEqual(1, len(rescues))
        rescue = rescues[0]
        self.assertEqual('Running', rescue['power_state'])
        # the rescue password, for the rescue guest's agent
        self.assertEqual('rescue-me-42', self.xenstore_node(
            rescue['resident_on'], rescue['domid'], 'admin_password'))
        disks = {self.x.VBD.get_userdevice(v): self.x.VBD.get_VDI(v)
                 for v in rescue['VBDs']}
        self.assertEqual(self.root, disks['1'])       # the instance's disk
        self.assertEqual(rescue_data,
                         self.xapi.vdi_bytes(disks['0'], len(rescue_data)))
        server = self.api.get_server(self.server['id'])
        self.assertEqual(1, server['OS-EXT-STS:power_state'])   # running

        self.api.post_server_action(self.server['id'], {'unrescue': None})
        self._wait_for_state_change(self.server, 'ACTIVE')
        self.assertEqual([], self.rescue_vms())
        self.assertEqual('Running', self.x.VM.get_power_state(self.vm))
        self.assertEqual(self.data, self.xapi.vdi_bytes(self.root,
                                                        len(self.data)))
        self._delete_server(self.server)
        self.assertEqual({'VM': [], 'VDI': [], 'VBD': [], 'VIF': []},
                         self.xapi.objects_of(self.server['id']))

    def test_deleting_a_rescued_server_removes_both_vms(self):
        self.api.post_server_action(self.server['id'], {'rescue': {}})
        self._wait_for_state_change(self.server, 'RESCUE')
        self._delete_server(self.server)
        self.assertEqual([], self.rescue_vms())
        self.assertEqual({'VM': [], 'VDI': [], 'VBD': [], 'VIF': []},
                         self.xapi.objects_of(self.server['id']))

    def test_change_password_reaches_the_domains_xenstore_only(self):
        secret = 's3cr3t!-' + self.server['id'][:8]
        self.api.post_server_action(
            self.server['id'], {'changePassword': {'adminPass': secret}})
        # in the running domain's xenstore, where its guest agent reads it
        self.assertEqual(secret, self.xenstore_node(
            self.x.VM.get_resident_on(self.vm), self.x.VM.get_domid(self.vm),
            'admin_password'))
        # not in xapi's database, nor in any log line
        record = self.x.VM.get_record(self.vm)
        self.assertNotIn(secret, str(record))
        self.assertNotIn(secret, self.stdlog.logger.output)


class HostTest(base.XenAPIFunctionalTestCase):
    """The host actions of Nova's API (os-hosts, before 2.43; the
    hypervisor uptime) reach the XenServer host."""

    def setUp(self):
        super(HostTest, self).setUp()
        self.host = self.xapi.x.host.get_by_uuid(
            self.xapi.pool['hosts'][0]['uuid'])
        self.api.microversion = '2.42'

    def put(self, body):
        return self.api.api_put('/os-hosts/%s' % self.compute.host,
                                body).body

    def test_enable_disable_and_maintenance(self):
        # a disabled service only stops Nova's scheduling (see
        # test_service_disable): xapi's host stays enabled
        self.assertEqual('disabled', self.put({'status': 'disable'})['status'])
        self.assertTrue(self.xapi.x.host.get_enabled(self.host))
        self.assertEqual('enabled', self.put({'status': 'enable'})['status'])
        self.assertTrue(self.xapi.x.host.get_enabled(self.host))
        # maintenance empties the host: xapi starts no VM there
        self.assertEqual('on_maintenance', self.put(
            {'maintenance_mode': 'enable'})['maintenance_mode'])
        self.assertFalse(self.xapi.x.host.get_enabled(self.host))
        self.assertEqual('off_maintenance', self.put(
            {'maintenance_mode': 'disable'})['maintenance_mode'])
        self.assertTrue(self.xapi.x.host.get_enabled(self.host))

    def test_uptime(self):
        self.api.microversion = '2.87'
        hypervisor = self.api.api_get('/os-hypervisors').body[
            'hypervisors'][0]
        uptime = self.api.api_get('/os-hypervisors/%s/uptime'
                                  % hypervisor['id']).body['hypervisor']
        self.assertIn('load average', uptime['uptime'])

    def test_power_actions_are_refused_clearly(self):
        resp = self.api.api_get('/os-hosts/%s/reboot' % self.compute.host,
                                check_response_status=[501])
        self.assertEqual(501, resp.status)
        # the driver's own sentence, for the operator in the compute log
        self.assertIn('nova-xen does not reboot XenServer hosts; use xe '
                      'host-reboot', self.stdlog.logger.output)
        self.assertTrue(self.xapi.x.host.get_enabled(self.host))


class RescueFromVHDTest(base.XenAPIFunctionalTestCase):
    """A VHD rescue image: its virtual size is only known to dom0."""

    def test_rescue_with_a_vhd_image(self):
        from xapisim import vhd
        server = self.boot(self.image_with(pattern(MIB)))
        data = pattern(MIB, seed=b'vhd-rescue')
        padded = data + b'\0' * (2 * MIB - len(data))
        image = b''.join(vhd.write_vhd(2 * MIB, [0], lambda i: padded))
        rescue_image = self.image_with(image, disk_format='vhd',
                                       name='vhd-rescue')
        self.api.post_server_action(
            server['id'], {'rescue': {'rescue_image_ref': rescue_image}})
        self._wait_for_state_change(server, 'RESCUE')
        rescue = [r for r in self.xapi.x.VM.get_all_records().values()
                  if r['other_config'].get('nova_rescue_of') ==
                  server['id']][0]
        disks = {self.xapi.x.VBD.get_userdevice(v): self.xapi.x.VBD.get_VDI(v)
                 for v in rescue['VBDs']}
        self.assertEqual(data, self.xapi.vdi_bytes(disks['0'], len(data)))
