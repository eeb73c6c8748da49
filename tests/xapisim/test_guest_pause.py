"""VM.pause and VM.unpause of a simulated guest (xapisim.guestboot).

A paused Xen domain runs no vCPU: its netfront takes no packet, nothing
in it answers a ping or an SSH client.  After VM.unpause it goes on: the
same processes, addresses, routes and leases (Tempest's
test_server_connectivity_pause_unpause).
What test_guest_boot needs, these tests need: without it they fail,
saying why; they never skip.
"""

import socket
import subprocess

from xapisim import netns

from tests.xapisim.dom0net_base import wait_for
from tests.xapisim.test_guest_boot import GuestBootCase

ADDRESS = "ip -4 -o addr show dev eth0 | awk '{print $4}'"
# a paused guest's silence is checked for this long: an answer from a
# running one comes at once
SILENCE = 3


class PausedGuestTest(GuestBootCase):
    pools = 1
    hosts = 1

    def answers_ping(self, address, deadline):
        """Whether ``address`` answers a ping from the provider LAN within
        ``deadline`` seconds (iputils' ping ends at the first answer)."""
        return subprocess.call(
            ['ip', 'netns', 'exec', self.lan, 'ping', '-n', '-c1', '-w',
             str(deadline), address], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL) == 0

    def assert_silent(self, address):
        """Neither ping nor an SSH connection gets an answer."""
        self.assertFalse(self.answers_ping(address, SILENCE),
                         'a paused guest answered a ping')
        with netns.inside(self.lan):
            sock = socket.socket()
        sock.settimeout(SILENCE)
        try:
            with self.assertRaises(OSError,
                                   msg='a paused guest accepted SSH'):
                sock.connect((address, 22))
        finally:
            sock.close()

    def test_a_paused_guest_answers_nothing_and_goes_on_after_unpause(self):
        vm, _ = self.server('tempest-server-p1')
        host = self.start_on(vm)
        ns = self.guest_ns(vm)
        address = self.address(vm)
        self.assertTrue(self.answers_ping(address, 60))
        client = self.ssh(address)
        self.execute(client, 'echo kept > /run/state')
        dropbear = self.execute(client, 'cat /run/dropbear.pid').strip()
        network = (self.execute(client, ADDRESS),
                   self.execute(client, 'ip route'))
        self.assertIn('default via', network[1])

        self.x.VM.pause(vm)
        self.assertEqual('Paused', self.x.VM.get_power_state(vm))
        self.assert_silent(address)

        self.x.VM.unpause(vm)
        self.assertEqual('Running', self.x.VM.get_power_state(vm))
        self.assertTrue(self.answers_ping(address, 60))
        # the same SSH session, server, addresses, routes and files
        self.assertEqual(dropbear, self.execute(
            client, 'cat /run/dropbear.pid').strip())
        self.assertEqual(network, (self.execute(client, ADDRESS),
                                   self.execute(client, 'ip route')))
        self.assertEqual('kept\n', self.execute(self.ssh(address),
                                                'cat /run/state'))
        log = self.console_log(vm)
        self.assertEqual(1, log.count('SSH server listening'), log)

        # a paused VM shut down leaves no process, device or namespace
        self.x.VM.pause(vm)
        domid = self.x.VM.get_domid(vm)
        pids = netns.pids_in([ns])
        self.assertTrue(pids)
        self.x.VM.hard_shutdown(vm)
        self.assert_unplugged(host, domid, ns)
        self.assertEqual([], [pid for pid in pids if netns.alive(pid)])

    def test_a_vm_started_paused_runs_once_unpaused(self):
        vm, _ = self.server('tempest-server-p2', fixed='198.51.100.78')
        host = self.host_ref()
        self.x.VM.start_on(vm, host, True, False)
        self.assertEqual('Paused', self.x.VM.get_power_state(vm))
        self.assert_silent('198.51.100.78')
        self.x.VM.unpause(vm)
        self.assertTrue(self.answers_ping('198.51.100.78', 60))
        wait_for('the guest is up', lambda: 'SSH server listening' in
                 self.console_log(vm))
        client = self.ssh('198.51.100.78')
        dropbear = self.execute(client, 'cat /run/dropbear.pid').strip()
        client.close()
        # a paused VM rebooted runs a new guest
        self.x.VM.pause(vm)
        self.x.VM.hard_reboot(vm)
        self.assertEqual('Running', self.x.VM.get_power_state(vm))
        self.assertFalse(netns.alive(int(dropbear)))
        self.assertTrue(self.answers_ping('198.51.100.78', 60))
        wait_for('the guest is up again', lambda: 'SSH server listening'
                 in self.console_log(vm))
        client = self.ssh('198.51.100.78')
        self.assertNotEqual(dropbear, self.execute(
            client, 'cat /run/dropbear.pid').strip())
