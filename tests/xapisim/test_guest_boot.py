"""The simulated guest boots like a cloud image (xapisim.guestboot).

A world with real dom0 networking; a DHCP server (busybox udhcpd) on the
provider LAN, where the test also stands to SSH in with the key of the
VM's config drive, as Tempest would.  These tests need root and the
Debian packages openvswitch-switch, iproute2, ethtool, udhcpc,
dropbear-bin and busybox (``./run tests`` installs them): without them
they fail, saying why; they never skip.
"""

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import types
import unittest
from unittest import mock
import uuid as uuidlib
import zlib

import paramiko
import XenAPI

from xapisim import guest as domains
from xapisim import guestboot
from xapisim import isofs
from xapisim import lunfile
from xapisim import netns

from tests.iscsi_target import TgtTarget
from tests.xapisim.base import MIB
from tests.xapisim.dom0net_base import ROOT, Dom0NetworkTestCase, run, \
    wait_for

HOST_PLUGINS = os.path.join(ROOT, 'dom0_plugins', 'etc', 'xapi.d', 'plugins')
SERVER = '198.51.100.1'
PROLOGUE = 'set -eu -o pipefail; PATH=$PATH:/sbin:/usr/sbin; '


def config_drive_iso(directory, hostname, public_key, network_data=None):
    """The bytes of a config drive as Nova's builder makes it."""
    latest = os.path.join(directory, 'cd', 'openstack', 'latest')
    os.makedirs(latest)
    meta = {'uuid': 'c0ffee', 'hostname': hostname, 'name': hostname,
            'public_keys': {'tempest-key': public_key},
            'meta': {'role': 'test'}}
    with open(os.path.join(latest, 'meta_data.json'), 'w') as fh:
        json.dump(meta, fh)
    with open(os.path.join(latest, 'network_data.json'), 'w') as fh:
        json.dump(network_data or {'links': [], 'networks': [],
                                   'services': []}, fh)
    iso = os.path.join(directory, 'config.iso')
    # nova.virt.configdrive.ConfigDriveBuilder's genisoimage arguments
    run(['genisoimage', '-o', iso, '-ldots', '-allow-lowercase',
         '-allow-multidot', '-l', '-publisher', 'xapisim tests', '-quiet',
         '-J', '-r', '-V', 'config-2', os.path.join(directory, 'cd')])
    with open(iso, 'rb') as fh:
        return fh.read()


class GuestBootCase(Dom0NetworkTestCase):
    """A world with a DHCP server on its provider LAN, and servers built
    as Nova builds them."""
    # nova-xen's own host plugin answers console-log
    sim_options = dict(Dom0NetworkTestCase.sim_options,
                       plugins_dir=HOST_PLUGINS, plugin_python=sys.executable)

    @classmethod
    def setUpClass(cls):
        super(GuestBootCase, cls).setUpClass()
        cls.tmp = tempfile.mkdtemp(prefix='guestboot-test-')
        provider = cls.world['dom0_network']['provider']
        cls.lan, bridge = provider['netns'], provider['bridge']
        run(['ip', '-n', cls.lan, 'addr', 'add', SERVER + '/24', 'dev',
             bridge])
        conf = os.path.join(cls.tmp, 'udhcpd.conf')
        with open(conf, 'w') as fh:
            fh.write('start 198.51.100.100\nend 198.51.100.199\n'
                     'interface %s\nlease_file %s/leases\n'
                     'pidfile %s/udhcpd.pid\noption subnet 255.255.255.0\n'
                     'option router %s\noption dns %s\noption lease 600\n'
                     % (bridge, cls.tmp, cls.tmp, SERVER, SERVER))
        open(os.path.join(cls.tmp, 'leases'), 'w').close()
        # -a: wait 50 ms, not 2 s, for an answer to the ARP probe of an
        # address it offers (nothing else holds addresses of its range)
        cls.dhcpd = subprocess.Popen(
            ['ip', 'netns', 'exec', cls.lan, 'busybox', 'udhcpd', '-f',
             '-a', '50', conf], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        cls.key = paramiko.ECDSAKey.generate()
        cls.public_key = '%s %s tempest' % (cls.key.get_name(),
                                            cls.key.get_base64())

    @classmethod
    def tearDownClass(cls):
        cls.dhcpd.terminate()
        cls.dhcpd.wait()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        super(GuestBootCase, cls).tearDownClass()

    # -- a server as Nova builds it ----------------------------------------

    def lan_network(self):
        return self.x.network.get_by_name_label(
            'Pool-wide network associated with eth1')[0]

    def server(self, hostname, root=None, config_drive=True, fixed=None):
        """A VM with a 64 MiB root disk (or ``root``), a config drive
        (userdevice 3, read-only) and a NIC on the provider LAN (given
        the address ``fixed`` by network_data.json, as for a subnet
        without DHCP)."""
        vm = self.vm_with_vifs([self.lan_network()])
        if root is None:
            root = self.new_vdi(64 * MIB, name_label='root')
        self.new_vbd(vm, root, '0')
        network_data = None
        if fixed:
            mac = self.vifs(vm)[0]['MAC']
            network_data = {
                'links': [{'id': 'tap0', 'type': 'ovs', 'mtu': 1500,
                           'ethernet_mac_address': mac, 'vif_id': 'x'}],
                'networks': [{'id': 'network0', 'type': 'ipv4',
                              'link': 'tap0', 'ip_address': fixed,
                              'netmask': '255.255.255.0',
                              'routes': [{'network': '0.0.0.0',
                                          'netmask': '0.0.0.0',
                                          'gateway': SERVER}]}],
                'services': []}
        if config_drive:
            data = config_drive_iso(tempfile.mkdtemp(dir=self.tmp),
                                    hostname, self.public_key, network_data)
            vdi = self.new_vdi(len(data), name_label='config-2')
            self.control().write_vdi(self.x.VDI.get_uuid(vdi), data)
            self.new_vbd(vm, vdi, '3', mode='RO', bootable=False)
        return vm, root

    def config_drive(self, vm):
        """The VDI of the VM's config drive (userdevice 3)."""
        return [self.x.VBD.get_VDI(v) for v in self.x.VM.get_VBDs(vm)
                if self.x.VBD.get_userdevice(v) == '3'][0]

    def console_log(self, vm, x=None):
        """What ``nova console-log`` shows (nova-xen's host plugin)."""
        x = x or self.x
        record = x.VM.get_record(vm)
        reply = x.host.call_plugin(
            record['resident_on'], 'nova_xen_host.py', 'console_log',
            {'params': json.dumps({'domid': int(record['domid']),
                                   'max_bytes': 65536})})
        reply = json.loads(reply)
        return zlib.decompress(base64.b64decode(reply['data'])).decode()

    def address(self, vm, after='', x=None):
        """The address the guest's DHCP client got in its current domain,
        once its SSH server is up (from its console log, after the line
        ``after`` if given)."""
        def up():
            log = self.console_log(vm, x)
            if after:
                if after not in log:
                    return None
                log = log[log.rindex(after):]
            lease = re.search(r'lease of ([0-9.]+)/\d+ obtained on eth0', log)
            if lease and 'SSH server listening on port 22' in log:
                return lease.group(1)
            return None
        return wait_for('the guest of %s is up' % vm, up)

    def ssh(self, address):
        """An SSH session into the guest from the provider LAN, as root
        with the config drive's key."""
        with netns.inside(self.lan):
            sock = socket.create_connection((address, 22), 60)
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        client.connect(address, username='root', pkey=self.key, sock=sock,
                       allow_agent=False, look_for_keys=False, timeout=60)
        self.addCleanup(client.close)
        return client

    def password_login(self, address, password):
        """An SSH session as root with ``password`` only (Tempest's
        test_change_server_password)."""
        with netns.inside(self.lan):
            sock = socket.create_connection((address, 22), 60)
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        self.addCleanup(client.close)
        client.connect(address, username='root', password=password,
                       sock=sock, allow_agent=False, look_for_keys=False,
                       timeout=60)
        return client

    def set_password(self, vm, password):
        """nova-xen's set_admin_password: its host plugin writes
        vm-data/admin_password into the running domain's xenstore; then
        the guest's agent has taken it (a new line in the console)."""
        done = 'password agent: root password set'
        before = self.console_log(vm).count(done)
        record = self.x.VM.get_record(vm)
        self.x.host.call_plugin(
            record['resident_on'], 'nova_xen_host.py', 'vm_data_write',
            {'params': json.dumps({'domid': int(record['domid']),
                                   'key': 'admin_password',
                                   'value': password})})
        wait_for('the guest took the password',
                 lambda: self.console_log(vm).count(done) > before)

    def execute(self, client, command):
        """``command`` run as Tempest's RemoteClient runs it: its output."""
        _, stdout, stderr = client.exec_command(PROLOGUE + command,
                                                timeout=60)
        out = stdout.read().decode()
        status = stdout.channel.recv_exit_status()
        self.assertEqual(0, status, '%s: %s' % (command,
                                                stderr.read().decode()))
        return out

    def stamped(self, hostname):
        """A server started on the first host that wrote a timestamp as
        Tempest's create_timestamp does (target_dir /tmp): VM, root VDI,
        the timestamp."""
        vm, root = self.server(hostname)
        self.start_on(vm, 0, 0)
        client = self.ssh(self.address(vm))
        self.execute(client, 'sudo sh -c "date > /tmp/timestamp; sync"')
        stamp = self.execute(client, 'sudo cat /tmp/timestamp')
        client.close()
        return vm, root, stamp

    @staticmethod
    def disks(lsblk):
        """What Tempest's get_disks keeps: the lines whose TYPE is disk."""
        lines = lsblk.splitlines()
        pos = lines[0].find('TYPE')
        return [line.split()[0] for line in lines[1:]
                if line[pos:pos + 4] == 'disk']


class GuestBootTest(GuestBootCase):
    pools = 1
    hosts = 2

    def test_boots_with_the_config_drive_and_keeps_tmp_over_a_reboot(self):
        # Nova's config drive names it <hostname>.<[api]dhcp_domain>;
        # cloud-init keeps the first label
        vm, _ = self.server('tempest-server-1.novalocal')
        # more VCPUs than the machine has CPUs (two on CI)
        self.x.VM.set_VCPUs_max(vm, '3')
        self.x.VM.set_VCPUs_at_startup(vm, '3')
        started = time.monotonic()
        self.start_on(vm, 0, 0)
        client = self.ssh(self.address(vm))
        self.assertEqual('tempest-server-1\n',
                         self.execute(client, 'hostname'))
        # Tempest's vcpus check, and its boot time (get_boot_time)
        self.assertEqual('3\n', self.execute(
            client, 'grep -c ^processor /proc/cpuinfo'))
        # (up since it started, its boot time counted from a whole second
        # of the machine's uptime)
        self.assertLessEqual(
            int(self.execute(client, 'cut -f1 -d. /proc/uptime')),
            time.monotonic() - started + 1)
        self.assertEqual(['xvda', 'xvdd'],
                         self.disks(self.execute(client, 'lsblk -lb --nodeps')))
        self.assertEqual('/dev/xvdd\n', self.execute(
            client, 'blkid -L config-2 -o device'))
        self.assertEqual(self.public_key + '\n', self.execute(
            client, 'cat /root/.ssh/authorized_keys'))
        # Tempest's test_server_basic_ops reads the config drive so
        self.execute(client, 'sudo mount /dev/xvdd /mnt')
        meta = json.loads(self.execute(
            client, 'sudo cat /mnt/openstack/latest/meta_data.json'))
        self.assertEqual({'role': 'test'}, meta['meta'])
        self.assertIn('services', json.loads(self.execute(
            client, 'sudo cat /mnt/openstack/latest/network_data.json')))
        self.execute(client, 'sudo umount /mnt')
        self.assertEqual('', self.execute(client, 'ls /mnt'))
        # Tempest's ping_host from the guest (busybox's ping)
        self.assertIn('1 packets received', self.execute(
            client, 'ping -c1 -w30 -s56 %s' % SERVER))
        mac = self.vifs(vm)[0]['MAC']
        self.assertIn(mac, self.execute(
            client, "ip addr | awk '/ether/ {print $2}'"))
        # Tempest's renew_lease (udhcpc) and write_to_console
        pid = self.execute(client, 'cat /var/run/udhcpc.eth0.pid').strip()
        self.execute(client, 'sudo /bin/kill -USR1 %s' % pid)
        self.execute(client, 'sudo sh -c "echo \\"from the guest\\" '
                             '>/dev/console"')
        wait_for('what the guest wrote to /dev/console in its log',
                 lambda: '\nfrom the guest\n' in self.console_log(vm))
        # Tempest's create_timestamp (target_dir /tmp)
        self.execute(client, 'sudo sh -c "date > /tmp/timestamp; sync"')
        stamp = self.execute(client, 'sudo cat /tmp/timestamp')
        self.assertEqual('nameserver %s\n' % SERVER, self.execute(
            client, 'cat /etc/resolv.conf'))
        # the machine's own files are untouched
        self.assertFalse(os.path.exists('/tmp/timestamp'))
        for path in ('/etc/resolv.conf', '/root/.ssh/authorized_keys'):
            if os.path.exists(path):
                with open(path) as fh:
                    text = fh.read()
                self.assertNotIn(SERVER, text)
                self.assertNotIn(self.key.get_base64(), text)
        self.assertNotEqual('tempest-server-1',
                            subprocess.check_output(['hostname']).decode()
                            .strip())
        domid = self.x.VM.get_domid(vm)
        client.close()
        before = time.monotonic()
        self.x.VM.clean_reboot(vm)
        self.assertNotEqual(domid, self.x.VM.get_domid(vm))
        client = self.ssh(self.address(vm))
        self.assertEqual(stamp, self.execute(client,
                                             'sudo cat /tmp/timestamp'))
        # booted again: up since the reboot
        self.assertLessEqual(
            int(self.execute(client, 'cut -f1 -d. /proc/uptime')),
            time.monotonic() - before + 1)
        log = self.console_log(vm)
        self.assertIn('config drive on /dev/xvdd: hostname tempest-server-1',
                      log)
        self.assertIn('Linux version', log)

    def test_hot_plugged_volume_shows_in_lsblk(self):
        vm, _ = self.server('tempest-server-2')
        self.start_on(vm, 0, 0)
        client = self.ssh(self.address(vm))
        # Tempest's count of disks (AttachVolumeShelveTestJSON)
        count = "grep -c -E '[vs]d.$' /proc/partitions"
        self.assertEqual('2\n', self.execute(client, count))
        volume = self.new_vdi(8 * MIB, name_label='volume')
        vbd = self.new_vbd(vm, volume, '1', bootable=False)
        self.x.VBD.plug(vbd)
        self.assertEqual('3\n', self.execute(client, count))
        # as Linux prints it: major, minor, 1 KiB blocks, name
        self.assertEqual(
            'major minor  #blocks  name\n\n'
            ' 202        0      65536 xvda\n'
            ' 202       16       8192 xvdb\n'
            ' 202       48 %10d xvdd\n'
            % (int(self.x.VDI.get_virtual_size(self.config_drive(vm))) //
               1024), self.execute(client, 'cat /proc/partitions'))
        listing = self.execute(client, 'lsblk -lb --nodeps')
        self.assertEqual(['xvda', 'xvdb', 'xvdd'], self.disks(listing))
        self.assertRegex(listing, r'(?m)^xvdb .* %d .*disk' % (8 * MIB))
        # the volume's bytes are the VDI's
        self.control().write_vdi(self.x.VDI.get_uuid(volume), b'volume!')
        self.assertEqual('volume!', self.execute(
            client, 'head -c 7 /dev/xvdb'))
        # Tempest's create_timestamp on a volume (make_fs, mkdir, mount),
        # with a file system this machine's kernel mounts
        self.execute(client, 'sudo mkfs -t ext4 /dev/xvdb')
        self.execute(client, 'sudo mkdir -p /mnt/xvdb')
        self.execute(client, 'sudo mount /dev/xvdb /mnt/xvdb')
        self.execute(client, 'sudo sh -c "date > /mnt/xvdb/timestamp; sync"')
        self.execute(client, 'sudo umount /mnt/xvdb')
        superblock = self.sim.world.pools[0].storage.read(
            self.sim.world.pools[0].db.ref_of_uuid(
                'VDI', self.x.VDI.get_uuid(volume)), 1024 + 56, 2)
        self.assertEqual(b'\x53\xef', superblock)
        self.x.VBD.unplug(vbd)
        self.assertEqual(['xvda', 'xvdd'], self.disks(
            self.execute(client, 'lsblk -lb --nodeps')))
        self.assertEqual('2\n', self.execute(client, count))
        self.assertFalse(self.execute(client, 'ls /dev').count('xvdb'))

    def test_a_timestamp_travels_with_a_snapshot_of_the_root_disk(self):
        vm, root, stamp = self.stamped('tempest-server-3')
        snapshot = self.destroy_later('VDI', self.x.VDI.snapshot(root, {}))
        copy = self.destroy_later('VDI', self.x.VDI.clone(snapshot, {}))
        other, _ = self.server('tempest-server-4', root=copy)
        self.start_on(other, 0, 1)
        client = self.ssh(self.address(other))
        self.assertEqual('tempest-server-4\n',
                         self.execute(client, 'hostname'))
        self.assertEqual(stamp, self.execute(client,
                                             'sudo cat /tmp/timestamp'))

    def test_the_guest_keeps_running_through_a_live_migration(self):
        vm, _ = self.server('tempest-server-5')
        self.start_on(vm, 0, 0)
        client = self.ssh(self.address(vm))
        self.execute(client, 'echo kept > /tmp/state')
        self.x.VM.pool_migrate(vm, self.host_ref(0, 1), {'live': 'true'})
        self.assertEqual(self.host_ref(0, 1), self.x.VM.get_resident_on(vm))
        # the same SSH session, the same guest
        self.assertEqual('kept\n', self.execute(client, 'cat /tmp/state'))
        self.assertIn('xapisim-guest: dropbear', self.console_log(vm))

    def test_the_admin_password_nova_xen_writes_lets_root_in(self):
        vm, _ = self.server('tempest-server-9')
        self.start_on(vm, 0, 0)
        address = self.address(vm)
        # root starts locked: no password gets in
        for password in ('', 'password', 'Newpass1234'):
            with self.assertRaises(paramiko.AuthenticationException):
                self.password_login(address, password)
        self.set_password(vm, 'Newpass1234')
        client = self.password_login(address, 'Newpass1234')
        self.assertEqual('tempest-server-9\n',
                         self.execute(client, 'hostname'))
        # never the machine's hashes
        shadow = self.execute(client, 'cat /etc/shadow')
        with open('/etc/shadow') as fh:
            self.assertNotEqual(fh.read(), shadow)
        self.assertEqual('*', [line.split(':')[1]
                               for line in shadow.splitlines()
                               if line.startswith('daemon:')][0])
        # a live migration keeps it; a new one, set in the new domain,
        # replaces it
        domid = self.x.VM.get_domid(vm)
        self.x.VM.pool_migrate(vm, self.host_ref(0, 1), {'live': 'true'})
        self.password_login(address, 'Newpass1234')
        self.set_password(vm, 'an0ther secret')
        self.password_login(address, 'an0ther secret')
        with self.assertRaises(paramiko.AuthenticationException):
            self.password_login(address, 'Newpass1234')
        # the keys still get in
        self.ssh(address)
        # the passwords are in no log, console or file of the guest's
        files = [os.path.join(d, f) for d, _, fs in
                 os.walk(os.path.join(
                     self.sim.world.state_dir, 'guests',
                     self.x.VM.get_uuid(vm))) for f in fs]
        self.assertIn('console.log', [os.path.basename(f) for f in files])
        for name in files:
            if os.path.isfile(name) and not os.path.islink(name):
                with open(name, 'rb') as fh:
                    data = fh.read()
                for secret in (b'Newpass1234', b'an0ther secret'):
                    self.assertNotIn(secret, data, name)
        # nor in the xenstore of the domain that is gone
        self.assertFalse(os.path.exists(domains.xenstore_dir(
            self.sim.world.pools[0], self.host_ref(0, 0), int(domid))))

    def test_a_storage_migration_moves_the_files_with_the_disk(self):
        vm, root, stamp = self.stamped('tempest-server-6')
        # storage XenMotion of every disk to another SR the pool has
        here = self.x.VDI.get_SR(root)
        dest = self.host_ref(0, 1)
        there = [sr for sr in self.x.SR.get_all()
                 if sr != here and self.x.SR.get_content_type(sr) == 'user'
                 and dest in [self.x.PBD.get_host(p)
                              for p in self.x.SR.get_PBDs(sr)]][0]
        vdi_map = {self.x.VBD.get_VDI(vbd): there
                   for vbd in self.x.VM.get_VBDs(vm)}
        token = self.x.host.migrate_receive(dest, self.pool_network(), {})
        self.x.VM.migrate_send(vm, token, True, vdi_map, {}, {}, {})
        moved = self.x.VBD.get_VDI(self.x.VM.get_VBDs(vm)[0])
        self.assertEqual(there, self.x.VDI.get_SR(moved))
        # the guest runs on the moved bytes: what it writes lands there
        client = self.ssh(self.address(vm, 'root disk moved: restarting'))
        self.assertEqual(stamp, self.execute(client,
                                             'sudo cat /tmp/timestamp'))
        self.assertEqual(['xvda', 'xvdd'],
                         self.disks(self.execute(client, 'lsblk -lb --nodeps')))

    def test_a_fixed_address_from_network_data_json(self):
        vm, _ = self.server('tempest-server-8', fixed='198.51.100.77')
        self.start_on(vm, 0, 0)
        wait_for('the guest is up', lambda: 'SSH server listening' in
                 self.console_log(vm))
        log = self.console_log(vm)
        self.assertIn('network_data.json: 198.51.100.77/24 on eth0, '
                      'gateway %s' % SERVER, log)
        # cloud-init runs no DHCP client on a NIC with a fixed address
        self.assertNotIn('udhcpc: started on eth0', log)
        client = self.ssh('198.51.100.77')
        self.assertEqual('198.51.100.77/24\n', self.execute(
            client, "ip -4 -o addr show dev eth0 | awk '{print $4}'"))
        self.assertIn('default via %s dev eth0' % SERVER,
                      self.execute(client, 'ip route'))

    def test_without_a_config_drive_no_key_gets_in_and_halt_cleans_up(self):
        vm, root = self.server('unused', config_drive=False)
        self.start_on(vm, 0, 0)
        guest = self.guest_ns(vm)
        address = self.address(vm)
        log = self.console_log(vm)
        self.assertIn('no config drive: hostname localhost, no SSH keys', log)
        with self.assertRaises(paramiko.AuthenticationException):
            self.ssh(address)
        path = self.sim.world.state_dir
        self.x.VM.hard_shutdown(vm)
        self.assertEqual([], netns.list_netns(guest))
        # no loop device is left on the root disk's file
        files = [os.path.join(d, f) for d, _, fs in os.walk(path)
                 for f in fs if f.endswith('.img')]
        self.assertTrue(files)
        for name in files:
            # the kernel lets go of an auto-cleared loop device as the
            # last mount of it goes
            wait_for('no loop device on %s' % name,
                     lambda: run(['losetup', '-j', name]) == '')


class TargetGuestCase(GuestBootCase):
    """A guest world with an iSCSI target (tgtd: tests/iscsi_target.py)
    for the class."""

    @classmethod
    def setUpClass(cls):
        super(TargetGuestCase, cls).setUpClass()
        cls.tgt = TgtTarget()
        cls.tgt.setUp()
        cls.addClassCleanup(cls.tgt.cleanUp)


class LunRootGuestTest(TargetGuestCase):
    """Boot from volume: the root disk is a LUN of an iSCSI SR (tgtd,
    tests/iscsi_target.py), whose bytes have no file on this machine."""
    pools = 1
    hosts = 1

    def lun_vdi(self):
        target = self.tgt.add_target(luns=[64 * MIB], chap=True)
        self.addCleanup(self.tgt.remove_target, target)
        sr = self.x.SR.introduce(str(uuidlib.uuid4()), 'volume', '',
                                 'iscsi', '', True, {})
        pbd = self.x.PBD.create({'host': self.host_ref(0, 0), 'SR': sr,
                                 'device_config': target.device_config(),
                                 'other_config': {}})
        self.addCleanup(self.x.SR.forget, sr)
        self.addCleanup(self.x.PBD.unplug, pbd)
        self.x.PBD.plug(pbd)
        self.x.SR.scan(sr)
        return self.x.SR.get_VDIs(sr)[0]

    def test_a_root_disk_on_an_iscsi_sr_boots_with_tmp_on_tmpfs(self):
        # where xapisim cannot serve the LUN as a file (no FUSE here:
        # tests/xapisim/test_guest_lun.py has the LUN's own bytes)
        vm, _ = self.server('tempest-server-10.novalocal',
                            root=self.lun_vdi())
        self.addCleanup(self.x.VM.hard_shutdown, vm)
        with mock.patch.object(lunfile, 'problem',
                               return_value='no /dev/fuse'):
            self.start_on(vm, 0, 0)
        client = self.ssh(self.address(vm))
        self.assertEqual('tempest-server-10\n',
                         self.execute(client, 'hostname'))
        self.assertIn('root disk /dev/xvda is on an iscsi SR, whose bytes '
                      'have no file here: /tmp and /mnt are not kept',
                      self.console_log(vm))
        self.assertEqual('tmpfs\n', self.execute(client,
                                                 'stat -f -c %T /tmp'))
        self.execute(client, 'sudo sh -c "date > /tmp/timestamp; sync"')
        self.assertEqual(['xvda', 'xvdd'],
                         self.disks(self.execute(client, 'lsblk -lb --nodeps')))


class CrossPoolGuestTest(GuestBootCase):
    pools = 2
    hosts = 1

    def test_a_cross_pool_migration_boots_the_guest_on_the_copied_disks(self):
        vm, _, stamp = self.stamped('tempest-server-7')
        uuid = self.x.VM.get_uuid(vm)
        other = XenAPI.Session(self.world['pools'][1]['master'])
        other.login_with_password(self.world['username'],
                                  self.world['password'], '2.21', 'test')
        self.addCleanup(other.xenapi.session.logout)
        y = other.xenapi
        sr = y.pool.get_default_SR(y.pool.get_all()[0])
        lan = y.network.get_by_name_label(
            'Pool-wide network associated with eth1')[0]
        token = y.host.migrate_receive(
            self.host_ref(1, 0, y), y.network.get_by_name_label(
                'Pool-wide network associated with eth0')[0], {})
        self.x.VM.migrate_send(
            vm, token, True,
            {self.x.VBD.get_VDI(v): sr for v in self.x.VM.get_VBDs(vm)},
            {v: lan for v in self.x.VM.get_VIFs(vm)}, {}, {})
        arrived = y.VM.get_by_uuid(uuid)
        self.addCleanup(self.remove_vm_in, y, arrived)
        client = self.ssh(self.address(arrived, 'root disk moved: restarting',
                                       x=y))
        self.assertEqual('tempest-server-7\n',
                         self.execute(client, 'hostname'))
        self.assertEqual(stamp, self.execute(client,
                                             'sudo cat /tmp/timestamp'))


class StateDirectoryTest(unittest.TestCase):

    def test_a_state_directory_mounted_nodev_is_refused_saying_why(self):
        state = tempfile.mkdtemp(prefix='guestboot-nodev-')
        self.addCleanup(shutil.rmtree, state, True)
        run(['mount', '-t', 'tmpfs', '-o', 'nodev,size=4m', 'tmpfs', state])
        self.addCleanup(run, ['umount', state])
        world = types.SimpleNamespace(state_dir=state)
        gos = guestboot.GuestOS(world, 'a-vm-uuid', 'no-netns')
        with self.assertRaisesRegex(OSError, 'is on a file system mounted '
                                    'nodev.*give --state-dir elsewhere'):
            guestboot.prepare_dir(gos)
        self.assertFalse(os.path.exists(gos.path('dev')))


class DhcpScriptTest(unittest.TestCase):
    """The guest's udhcpc script, run as udhcpc runs it, in a namespace
    with two NICs."""

    def setUp(self):
        self.ns = 'xsim-gbt-dhcp-%d' % os.getpid()
        run(['ip', 'netns', 'add', self.ns])
        self.addCleanup(run, ['ip', 'netns', 'delete', self.ns])
        for nic in ('eth0', 'eth1'):
            run(['ip', '-n', self.ns, 'link', 'add', nic, 'type', 'veth',
                 'peer', 'name', 'peer-' + nic])
            run(['ip', '-n', self.ns, 'link', 'set', 'peer-' + nic, 'up'])
        guest = tempfile.mkdtemp(prefix='guestboot-dhcp-')
        self.addCleanup(shutil.rmtree, guest, True)
        with open(os.path.join(guestboot.SCRIPTS, 'udhcpc.script')) as fh:
            text = fh.read().replace('@GUEST@', guest)
        self.script = os.path.join(guest, 'udhcpc.script')
        with open(self.script, 'w') as fh:
            fh.write(text)

    def event(self, event, nic, address, router):
        # (its own /run, as the guest's: the script keeps the leased
        # address there)
        run(['ip', 'netns', 'exec', self.ns, 'sh', '-c',
             'mount -t tmpfs tmpfs /run && interface=%s ip=%s mask=24 '
             'router=%s sh %s %s' % (nic, address, router, self.script,
                                     event)])

    def test_only_eth0s_lease_sets_the_default_route(self):
        # as udhcpc runs it: deconfig first (the NIC goes up), then the
        # lease; eth1's lease comes last
        for nic, address, router in (('eth0', '203.0.113.10', '203.0.113.1'),
                                     ('eth1', '198.18.0.10', '198.18.0.1')):
            self.event('deconfig', nic, '', '')
            self.event('bound', nic, address, router)
        self.event('renew', 'eth1', '198.18.0.10', '198.18.0.1')
        self.assertEqual(
            'default via 203.0.113.1 dev eth0',
            run(['ip', '-n', self.ns, 'route', 'show', 'default']).strip())
        self.assertIn('198.18.0.10/24', run(['ip', '-n', self.ns, '-4',
                                             'addr', 'show', 'eth1']))


class IsoReaderTest(unittest.TestCase):
    """xapisim.isofs reads a config drive as genisoimage writes it."""

    def image(self, *options):
        tmp = tempfile.mkdtemp(prefix='isofs-test-')
        self.addCleanup(shutil.rmtree, tmp, True)
        latest = os.path.join(tmp, 'cd', 'openstack', 'latest')
        os.makedirs(latest)
        with open(os.path.join(latest, 'meta_data.json'), 'w') as fh:
            fh.write('{"hostname": "Mixed-Case.example"}')
        iso = os.path.join(tmp, 'config.iso')
        run(['genisoimage', '-o', iso, '-quiet', '-V', 'config-2'] +
            list(options) + [os.path.join(tmp, 'cd')])
        return iso

    def test_joliet_and_rock_ridge_names(self):
        for options in (('-J', '-r'), ('-r',), ('-J',)):
            image = isofs.open_file(self.image(*options))
            self.assertEqual('config-2', image.volume_id)
            self.assertEqual(b'{"hostname": "Mixed-Case.example"}',
                             image.read('openstack/latest/meta_data.json'),
                             options)
            self.assertIsNone(image.read('openstack/latest/user_data'))
            self.assertIsNone(image.read('openstack/latest'))

    def test_extract_makes_the_tree(self):
        target = tempfile.mkdtemp(prefix='isofs-out-')
        self.addCleanup(shutil.rmtree, target, True)
        self.assertEqual(0, isofs.main(['isofs.py', 'extract',
                                        self.image('-J', '-r'), target]))
        with open(os.path.join(target, 'openstack', 'latest',
                               'meta_data.json')) as fh:
            self.assertIn('Mixed-Case', fh.read())

    def test_bytes_that_are_no_iso_image_say_so(self):
        with tempfile.NamedTemporaryFile() as fh:
            fh.write(b'\0' * 40960)
            fh.flush()
            with self.assertRaisesRegex(isofs.IsoError,
                                        'no ISO 9660 primary volume'):
                isofs.open_file(fh.name)
