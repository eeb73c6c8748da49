"""How many pings a live-migrated server misses, in the running minicloud.

Run as root, against a minicloud that ``tools/minicloud.sh up`` started
(ML2/OVN, xapisim with real dom0 networks and booting guests), with the
minicloud's venv Python, from the repository root::

    OS_CLIENT_CONFIG_FILE=.minicloud/clouds.yaml OS_CLOUD=devstack-admin \\
        .minicloud/venv/bin/python3 benchmarks/migration_packet_loss.py \\
        [--minicloud-dir .minicloud] [--interval-ms 10]

It makes a Geneve tenant network with OVN's DHCP and a security group
that lets ICMP in, boots server A (the pinger) on the last compute and
server B on the first, waits until both are ACTIVE and both guests hold
their DHCP lease, then, from A's guest network namespace (``ip netns
exec``; a raw-ICMP sender of this script's own, one echo request every
``--interval-ms``), pings B while B live-migrates (block migration, as
``tools/minicloud/smoke.py`` does it):

1. inside pool-1, compute1 -> compute2 (XenMotion, ``VM.pool_migrate``);
2. across pools, compute2 -> compute3 (storage XenMotion).

For each it prints the echo requests sent in the migration window (from
the request to Nova until the server is ACTIVE on the destination, or
later, until B answers again), how many of them got no reply, the longest
time between two answered requests, and whether B's port ends up claimed
by the destination's chassis in OVN's southbound database.

What the figure is: the outage of the simulated data path (the dom0
veth's hand-over from the source's Open vSwitch to the destination's,
ovn-controller's claim of the port there, the Geneve tunnel from A's host
to the new one) as xapisim does a migration.  What it is not: a Xen
guest's pause and memory copy (xapisim moves no memory; the guest's
namespace simply stays), and no gratuitous ARP or RARP is sent (xapisim's
guest sends none; Neutron's ``[ovn] live_migration_activation_strategy``
is empty in the minicloud, so OVN claims the port when the destination's
VIF appears, not on a RARP).  Across pools the guest's root disk is a new
file, so xapisim restarts the guest's init (as ``guestboot`` documents):
its DHCP client drops its address and leases it again, which is part of
that figure and would not happen to a real guest.

Leaves nothing behind: servers, security group, network are deleted.
"""

import argparse
import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time

import openstack
import XenAPI

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, 'tools', 'minicloud'))

import ovn_check  # noqa: E402
from xapisim.client import Control  # noqa: E402

BUILD_LIMIT = 600
MIGRATE_LIMIT = 600
# how long B may take to answer again once Nova reports the move done
RECOVER_LIMIT = 120
LEASE_LIMIT = 120
NAME = 'pingloss'
CIDR = '10.30.0.0/24'
ICMP_ECHO, ICMP_REPLY = 8, 0
# what xapisim's guest writes on its console when its init starts again
RESTARTED = 'root disk moved: restarting'


def say(text):
    print('%s %s' % (time.strftime('%H:%M:%S'), text), flush=True)


# -- the pinger, run in A's guest namespace --------------------------------

def checksum(data):
    if len(data) % 2:
        data += b'\0'
    total = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xffff)
    total += total >> 16
    return ~total & 0xffff


def echo_request(ident, number):
    payload = struct.pack('!Qd', number, time.monotonic()) + b'x' * 40
    head = struct.pack('!BBHHH', ICMP_ECHO, 0, 0, ident, number & 0xffff)
    return struct.pack('!BBHHH', ICMP_ECHO, 0,
                       checksum(head + payload), ident,
                       number & 0xffff) + payload


def pinger(target, interval):
    """Echo requests to ``target`` every ``interval`` s until stdin
    closes; prints "S number time" for each sent, "R number time" for each
    reply (time.monotonic(), the same clock as the parent's)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW,
                         socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xffff
    out_lock = threading.Lock()
    stop = threading.Event()

    def emit(line):
        with out_lock:
            sys.stdout.write(line + '\n')
            sys.stdout.flush()

    def receive():
        while not stop.is_set():
            ready, _, _ = select.select([sock], [], [], 0.2)
            if not ready:
                continue
            data = sock.recv(2048)
            now = time.monotonic()
            ihl = (data[0] & 0x0f) * 4
            icmp = data[ihl:]
            if len(icmp) < 16:
                continue
            kind, _, _, rid, _ = struct.unpack('!BBHHH', icmp[:8])
            if kind != ICMP_REPLY or rid != ident:
                continue
            number = struct.unpack('!Q', icmp[8:16])[0]
            emit('R %d %.6f' % (number, now))

    def watch_stdin():
        sys.stdin.read()
        stop.set()

    threading.Thread(target=receive, daemon=True).start()
    threading.Thread(target=watch_stdin, daemon=True).start()
    start = time.monotonic()
    number = 0
    while not stop.is_set():
        due = start + number * interval
        delay = due - time.monotonic()
        if delay > 0:
            stop.wait(delay)
            if stop.is_set():
                break
        try:
            sock.sendto(echo_request(ident, number), (target, 0))
        except OSError as exc:
            # no route (B's address gone from A's view): counts as lost
            emit('X %d %s' % (number, exc.errno))
        emit('S %d %.6f' % (number, time.monotonic()))
        number += 1
    time.sleep(0.5)     # the last replies
    return 0


class Pings(object):
    """The pinger child and what it reported."""

    def __init__(self, netns, target, interval):
        self.interval = interval
        self.sent = {}
        self.replies = {}
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            ['ip', 'netns', 'exec', netns, sys.executable,
             os.path.abspath(__file__), '--pinger', target,
             '--interval-ms', str(interval * 1000)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            universal_newlines=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            words = line.split()
            if len(words) != 3 or words[0] not in 'SR':
                continue
            with self.lock:
                table = self.sent if words[0] == 'S' else self.replies
                table.setdefault(int(words[1]), float(words[2]))

    def answered_after(self, moment):
        """B answered a request sent after ``moment``."""
        with self.lock:
            return any(self.sent.get(n, 0) > moment for n in self.replies)

    def stop(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.reader.join(timeout=30)

    def figures(self, begin, end):
        """For the requests sent in [begin, end]: how many, how many got no
        reply, the longest time (s) between two answered requests and when
        it began (s after ``begin``), and the longest time between two
        requests sent (the sender's own stalls on a busy machine)."""
        with self.lock:
            window = sorted(n for n, t in self.sent.items()
                            if begin <= t <= end)
            lost = [n for n in window if n not in self.replies]
            # the requests answered just before and after bound the gap
            answered = sorted(n for n in self.replies if n in self.sent)
            before = [n for n in answered if self.sent[n] < begin][-1:]
            after = [n for n in answered if self.sent[n] > end][:1]
            marks = [self.sent[n] for n in
                     before + [n for n in window if n in self.replies] +
                     after]
            sends = [self.sent[n] for n in window]
        gap, gap_at = max(((b - a, a - begin)
                           for a, b in zip(marks, marks[1:])),
                          default=(0.0, 0.0))
        stall = max((b - a for a, b in zip(sends, sends[1:])), default=0.0)
        return len(window), len(lost), gap, gap_at, stall


# -- the minicloud -----------------------------------------------------------

class Compute(object):
    """A line of the minicloud's compute table (etc/computes)."""

    def __init__(self, line):
        (self.service, self.host, self.spec, self.xapi_host,
         self.host_uuid, self.master, self.pool) = line.split()


class Bench(object):

    def __init__(self, args):
        self.args = args
        d = args.minicloud_dir
        with open(os.path.join(d, 'etc', 'computes')) as f:
            self.computes = [Compute(line) for line in f if line.strip()]
        with open(os.path.join(d, 'xapisim.json')) as f:
            self.world = json.load(f)
        self.sb = 'unix:' + os.path.join(d, 'run', 'ovn', 'sb.sock')
        self.chassis = {host: system_id for _, host, system_id in
                        ovn_check.read_chassis(
                            os.path.join(d, 'etc', 'ovn-chassis'))}
        self.conn = openstack.connect()
        self.sessions = {}

    def xapi(self, master):
        if master not in self.sessions:
            session = XenAPI.Session(master)
            session.xenapi.login_with_password(
                self.world['username'], self.world['password'], '2.0',
                'migration-packet-loss')
            self.sessions[master] = session
        return self.sessions[master].xenapi

    def guest_netns(self, server):
        """The guest namespace of the server's running VM (any pool)."""
        for master in sorted({c.master for c in self.computes}):
            x = self.xapi(master)
            for rec in x.VM.get_all_records().values():
                if rec['other_config'].get('nova_uuid') == server.id and \
                        rec['power_state'] == 'Running':
                    control = Control(master, self.world['username'],
                                      self.world['password'])
                    return control.guest_netns(rec['uuid'])
        raise RuntimeError('no running VM for server %s' % server.id)

    def address(self, server):
        port = list(self.conn.network.ports(device_id=server.id))[0]
        return port, port.fixed_ips[0]['ip_address']

    def wait_lease(self, server, netns, ip):
        deadline = time.monotonic() + LEASE_LIMIT
        while time.monotonic() < deadline:
            out = subprocess.run(
                ['ip', 'netns', 'exec', netns, 'ip', '-4', '-o', 'addr',
                 'show'], stdout=subprocess.PIPE,
                universal_newlines=True).stdout
            if ' %s/' % ip in out:
                return
            time.sleep(0.5)
        raise RuntimeError('the guest of %s has no lease of %s after %d s'
                           % (server.id, ip, LEASE_LIMIT))

    def boot(self, name, compute, image, flavor, net, group):
        server = self.conn.compute.create_server(
            name=name, image_id=image.id, flavor_id=flavor.id,
            networks=[{'uuid': net.id}], security_groups=[{'name': group}],
            availability_zone='nova:%s' % compute.host)
        return server

    def wait_active(self, server, host, limit):
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            server = self.conn.compute.get_server(server.id)
            if server.status == 'ERROR':
                raise RuntimeError('server %s is ERROR: %s'
                                   % (server.id, server.fault))
            if server.status == 'ACTIVE' and server.task_state is None and \
                    server.compute_host == host:
                return server
            time.sleep(0.5)
        raise RuntimeError('server %s not ACTIVE on %s after %d s (%s on %s)'
                           % (server.id, host, limit, server.status,
                              server.compute_host))

    def migrate(self, server, dest):
        subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), 'openstack'),
             '--os-compute-api-version', '2.30', 'server',
             'migrate', '--live-migration', '--host', dest.host,
             '--block-migration', server.id], check=True,
            stdout=subprocess.DEVNULL)
        return self.wait_active(server, dest.host, MIGRATE_LIMIT)

    def measure(self, label, pinger_ns, target_ip, server, source, dest):
        pings = Pings(pinger_ns, target_ip, self.args.interval_ms / 1000.0)
        try:
            warm = time.monotonic()
            deadline = warm + 60
            while not pings.answered_after(warm):
                if time.monotonic() > deadline or pings.proc.poll() is not \
                        None:
                    raise RuntimeError('%s: B (%s) does not answer A before '
                                       'the migration' % (label, target_ip))
                time.sleep(0.1)
            steady = time.monotonic()
            time.sleep(1)      # a second of steady answers before
            begin = time.monotonic()
            server = self.migrate(server, dest)
            done = time.monotonic()
            deadline = done + RECOVER_LIMIT
            while not pings.answered_after(done) and \
                    time.monotonic() < deadline:
                time.sleep(0.1)
            recovered = pings.answered_after(done)
            end = time.monotonic()
            time.sleep(1)      # a second of answers after
        finally:
            pings.stop()
        sent, lost, gap, gap_at, stall = pings.figures(begin, end)
        base_sent, base_lost = pings.figures(steady, begin)[:2]
        port, _ = self.address(server)
        claimer = ovn_check.claimed_by(self.sb, port.id)
        console = self.conn.compute.get_server_console_output(server)
        restarts = console.get('output', '').count(RESTARTED)
        say('%s: %s -> %s: migration %.1f s; %d echo requests sent in the '
            'window (%.1f s), %d lost (%.1f%%), longest gap %.0f ms '
            '(from %.1f s after the request; longest between two sends: '
            '%.0f ms); B %s; port %s claimed by %s (%s\'s chassis: %s); '
            'B\'s guest init restarted %d time(s) so far; in the second '
            'before the request: %d sent, %d lost' % (
                label, source.host, dest.host, done - begin, sent,
                end - begin, lost, 100.0 * lost / max(sent, 1), gap * 1000,
                gap_at, stall * 1000,
                'answers again' if recovered else
                'does NOT answer %d s after' % RECOVER_LIMIT, port.id,
                claimer, dest.host, 'yes' if claimer == self.chassis.get(
                    dest.host) else 'NO', restarts, base_sent, base_lost))
        return server

    def run(self):
        a = self.args
        c1, c2, c3 = self.computes[:3]
        if c1.pool != c2.pool or c3.pool == c1.pool:
            raise RuntimeError('expected two computes of one pool and one of '
                               'another: %s' % [(c.host, c.pool)
                                                for c in self.computes])
        conn = self.conn
        flavor = conn.compute.find_flavor(a.flavor, ignore_missing=False)
        if a.image:
            image = conn.image.find_image(a.image, ignore_missing=False)
        else:
            image = [i for i in conn.image.images()
                     if i.disk_format == 'vhd'][0]
        stamp = '%s-%d' % (NAME, int(time.time()))
        made = {}
        try:
            net = made['net'] = conn.network.create_network(name=stamp)
            made['subnet'] = conn.network.create_subnet(
                network_id=net.id, name=stamp, ip_version=4, cidr=CIDR,
                enable_dhcp=True)
            group = made['group'] = conn.network.create_security_group(
                name=stamp, description='ICMP in, for %s' % __file__)
            conn.network.create_security_group_rule(
                security_group_id=group.id, direction='ingress',
                ethertype='IPv4', protocol='icmp')
            say('network %s (%s, %s, DHCP), security group %s (ICMP in)'
                % (net.name, net.provider_network_type, CIDR, group.name))
            a_server = made['a'] = self.boot(stamp + '-a', c3, image, flavor,
                                             net, group.name)
            b_server = made['b'] = self.boot(stamp + '-b', c1, image, flavor,
                                             net, group.name)
            a_server = self.wait_active(a_server, c3.host, BUILD_LIMIT)
            b_server = self.wait_active(b_server, c1.host, BUILD_LIMIT)
            a_ns = self.guest_netns(a_server)
            b_ns = self.guest_netns(b_server)
            _, a_ip = self.address(a_server)
            _, b_ip = self.address(b_server)
            self.wait_lease(a_server, a_ns, a_ip)
            self.wait_lease(b_server, b_ns, b_ip)
            say('A %s on %s (%s, netns %s), B %s on %s (%s); every %g ms'
                % (a_server.id, c3.host, a_ip, a_ns, b_server.id, c1.host,
                   b_ip, a.interval_ms))
            b_server = self.measure('XenMotion inside %s' % c1.pool, a_ns,
                                    b_ip, b_server, c1, c2)
            self.measure('storage XenMotion to %s' % c3.pool, a_ns, b_ip,
                         b_server, c2, c3)
        finally:
            for key in ('a', 'b'):
                if key in made:
                    conn.compute.delete_server(made[key].id)
            for key in ('a', 'b'):
                if key in made:
                    conn.compute.wait_for_delete(made[key], wait=300)
            if 'group' in made:
                conn.network.delete_security_group(made['group'].id)
            if 'net' in made:
                conn.network.delete_network(made['net'].id)
            for session in self.sessions.values():
                session.xenapi.session.logout()
        return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--minicloud-dir', default=os.path.join(HERE, '.minicloud'))
    p.add_argument('--image', help='default: the first VHD image in Glance')
    p.add_argument('--flavor', default='m1.tiny')
    p.add_argument('--interval-ms', type=float, default=10.0)
    p.add_argument('--pinger', metavar='ADDRESS',
                   help=argparse.SUPPRESS)   # the child in A's namespace
    args = p.parse_args()
    if args.pinger:
        return pinger(args.pinger, args.interval_ms / 1000.0)
    return Bench(args).run()


if __name__ == '__main__':
    sys.exit(main())
