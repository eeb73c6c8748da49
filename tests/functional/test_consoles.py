"""Console output, the VNC console and diagnostics through Nova's API."""

import re
import socket
import struct

from tests.functional import base
from tests.functional.test_boot import pattern

MIB = 1024 * 1024


class ConsoleTest(base.XenAPIFunctionalTestCase):

    def setUp(self):
        super(ConsoleTest, self).setUp()
        self.server = self.boot(self.image_with(pattern(MIB)))
        self.vm, self.record = self.xapi.vm_of(self.server['id'])

    def test_console_output_is_the_guests_log(self):
        marker = 'xapisim guest says hello to nova-xen\n'
        self.xapi.control.guest(self.record['uuid'], console=marker)
        self._reboot_server(self.server, hard=True)
        output = self.api.post_server_action(
            self.server['id'], {'os-getConsoleOutput': {'length': 50}})
        self.assertIn('hello to nova-xen', output['output'])
        self.assertIn('Linux version', output['output'])

    def console(self, length=50):
        return self.api.post_server_action(
            self.server['id'],
            {'os-getConsoleOutput': {'length': length}})['output']

    def test_a_stopped_server_shows_its_last_console(self):
        # as Tempest's test_get_console_output_server_id_in_shutoff_status
        # and its scenarios' log_console_output expect: the log dom0 keeps
        # of the domain that ran, not a 409
        marker = 'the last words of domain %s\n' % self.record['domid']
        self.xapi.control.guest(self.record['uuid'], console=marker)
        self._reboot_server(self.server, hard=True)
        vm, running = self.xapi.vm_of(self.server['id'])
        for action, state in (('os-stop', 'SHUTOFF'),
                              ('suspend', 'SUSPENDED')):
            if action == 'suspend':
                self.api.post_server_action(self.server['id'],
                                            {'os-start': None})
                self._wait_for_state_change(self.server, 'ACTIVE')
                vm, running = self.xapi.vm_of(self.server['id'])
            self.api.post_server_action(self.server['id'], {action: None})
            self._wait_for_state_change(self.server, state)
            self.assertEqual('-1', self.xapi.vm_of(self.server['id'])[1]
                             ['domid'])
            output = self.console()
            self.assertIn('Linux version 6.1.0-xapisim (domid %s)'
                          % running['domid'], output)
            self.assertEqual(3, len(self.console(length=3).split('\n')))
        self.assertIn('the last words', output)

    def test_vnc_console_connects_to_the_vms_framebuffer(self):
        self.flags(enabled=True, group='vnc')
        body = self.api.api_post(
            '/servers/%s/remote-consoles' % self.server['id'],
            {'remote_console': {'protocol': 'vnc', 'type': 'novnc'}}).body
        url = body['remote_console']['url']
        token = re.search(r'token(?:=|%3D)([0-9a-f-]+)', url).group(1)
        # nova's response schema says internal_access_path is a UUID (true
        # of its fake driver only); production nova only warns about it
        self.flags(response_validation='warn', group='api')
        info = self.admin_api.api_get(
            '/os-console-auth-tokens/%s' % token).body['console']
        # what nova-novncproxy does with the connection details
        sock = socket.create_connection((info['host'], int(info['port'])),
                                        timeout=60)
        sock.sendall(('CONNECT %s HTTP/1.1\r\n\r\n'
                      % info['internal_access_path']).encode())
        head = b''
        while b'\r\n\r\n' not in head:
            head += sock.recv(1)
        self.assertTrue(head.startswith(b'HTTP/1.1 200'), head)
        self.assertEqual(b'RFB 003.008\n', sock.recv(12))
        sock.sendall(b'RFB 003.008\n')
        self.assertEqual(b'\x01\x01', sock.recv(2))
        sock.sendall(b'\x01')
        self.assertEqual(b'\x00\x00\x00\x00', sock.recv(4))
        sock.sendall(b'\x01')
        init = sock.recv(24)
        width, height = struct.unpack('>HH', init[:4])
        name_len = struct.unpack('>I', init[20:24])[0]
        name = sock.recv(name_len).decode()
        sock.close()
        self.assertEqual((640, 480), (width, height))
        self.assertEqual(self.record['name_label'], name)

    def test_diagnostics_carry_rrd_counters(self):
        self.api.microversion = '2.48'
        diags = self.api.api_get('/servers/%s/diagnostics'
                                 % self.server['id']).body
        self.assertEqual('xenapi', diags['driver'])
        self.assertEqual('running', diags['state'])
        self.assertEqual(1, diags['num_cpus'])
        self.assertEqual(1, len(diags['cpu_details']))
        self.assertGreaterEqual(diags['cpu_details'][0]['utilisation'], 0)
        self.assertEqual(int(self.record['memory_static_max']) // MIB,
                         diags['memory_details']['maximum'])
        self.assertGreater(diags['memory_details']['used'], 0)
        port = self.neutron.list_ports(
            True, device_id=self.server['id'])['ports'][0]
        self.assertEqual(port['mac_address'],
                         diags['nic_details'][0]['mac_address'])
        self.assertGreater(diags['nic_details'][0]['rx_rate'], 0)
        self.assertEqual(1, len(diags['disk_details']))

    def test_legacy_diagnostics_name_the_data_sources(self):
        self.api.microversion = '2.47'
        diags = self.api.api_get('/servers/%s/diagnostics'
                                 % self.server['id']).body
        self.assertIn('cpu0', diags)
        self.assertIn('memory', diags)
        self.assertIn('vbd_xvda_read', diags)
        self.assertIn('vif_0_rx', diags)
