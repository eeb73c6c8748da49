"""A dom0 made of network namespaces, for testing isolation rules for real.

``Lab`` builds, in namespaces of its own (unique names, removed by
``destroy``): a "dom0" namespace with a Linux bridge, and for each guest
a namespace whose ``eth0`` is the far end of a veth pair whose dom0 end
is named like a Xen VIF (``vif5.0``).  Frames are sent and captured with
raw AF_PACKET sockets opened inside the namespaces (``setns`` on this
thread only, then back), and the plugin runs as xapi runs it, as a
process, under ``ip netns exec <dom0>``.

Only links inside these namespaces carry the frames: nothing leaves the
machine, and the addresses used are documentation ranges.
"""

import json
import os
import select
import socket
import subprocess
import sys
import time
import uuid
import xmlrpc.client

from xapisim.netns import NETNS_DIR, inside

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PLUGINS_DIR = os.path.join(ROOT, 'dom0_plugins', 'etc', 'xapi.d', 'plugins')
DOM0_MODULES = os.path.join(ROOT, 'xapisim', 'dom0')
# dom0's Python: XCP-ng 8.3 runs plugins with 3.6
PY36 = os.environ.get('XAPISIM_PY36',
                      '/root/.pyenv/versions/3.6.15/bin/python3.6')
PLUGIN_PYTHON = PY36 if os.path.exists(PY36) else sys.executable

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
PACKAGES = 'iproute2 nftables'


class LabUnavailable(Exception):
    """This machine cannot build the namespaces: say why and what to do."""


class PluginFailure(Exception):
    def __init__(self, description):
        Exception.__init__(self, description)
        self.description = description


def ip(*args):
    proc = subprocess.run(('ip',) + args, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError('ip %s: %s' % (' '.join(args),
                                          proc.stderr.decode().strip()))
    return proc.stdout.decode()


def packet_socket(netns, ifname):
    """A raw AF_PACKET socket on ``ifname`` of namespace ``netns``."""
    with inside(netns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW,
                             socket.htons(ETH_P_ALL))
        try:
            sock.bind((ifname, 0))
        except OSError:
            sock.close()
            raise
    return sock


class Lab(object):
    def __init__(self):
        tag = uuid.uuid4().hex[:8]
        self.dom0 = 'nxdom0-' + tag
        self.tag = tag
        self.guests = []

    # -- building ----------------------------------------------------------

    def build(self):
        problems = []
        if os.geteuid() != 0:
            problems.append('the isolation tests must run as root '
                            '(they create network namespaces)')
        for tool in ('ip', 'nft'):
            if not _which(tool):
                problems.append('%s is not installed' % tool)
        if problems:
            raise LabUnavailable('; '.join(problems) +
                                 ': run as root with the Debian packages: '
                                 + PACKAGES)
        try:
            self._add_netns(self.dom0)
            ip('-n', self.dom0, 'link', 'add', 'br0', 'type', 'bridge',
               'mcast_snooping', '0')
            ip('-n', self.dom0, 'link', 'set', 'br0', 'up')
        except (RuntimeError, OSError) as exc:
            self.destroy()
            raise LabUnavailable('cannot build network namespaces here '
                                 '(%s): the isolation tests need root with '
                                 'CAP_NET_ADMIN/CAP_SYS_ADMIN and iproute2'
                                 % exc)

    def _add_netns(self, name):
        ip('netns', 'add', name)
        # no IPv6 of their own: the namespaces stay silent, every frame
        # seen is one a test sent
        with inside(name):
            for conf in ('all', 'default'):
                with open('/proc/sys/net/ipv6/conf/%s/disable_ipv6' % conf,
                          'w') as fh:
                    fh.write('1')

    def add_guest(self, number):
        name = 'nxg%d-%s' % (number, self.tag)
        self.guests.append(name)
        self._add_netns(name)
        return name

    def plug(self, device, guest, guest_mac, guest_if='eth0'):
        """A veth "VIF": ``device`` in dom0's bridge, ``guest_if`` in guest."""
        ip('-n', self.dom0, 'link', 'add', device, 'type', 'veth', 'peer',
           'name', guest_if, 'netns', guest)
        ip('-n', guest, 'link', 'set', guest_if, 'address', guest_mac, 'up')
        ip('-n', self.dom0, 'link', 'set', device, 'master', 'br0', 'up')

    def unplug(self, device):
        ip('-n', self.dom0, 'link', 'del', device)

    def destroy(self):
        for name in [self.dom0] + self.guests:
            if os.path.exists(os.path.join(NETNS_DIR, name)):
                subprocess.run(['ip', 'netns', 'del', name],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.guests = []

    # -- dom0 -----------------------------------------------------------

    def plugin(self, fn, params, env=None, raw=None):
        """Call the isolation plugin in dom0 as xapi does: the result."""
        args = {'params': raw if raw is not None else json.dumps(params)}
        request = xmlrpc.client.dumps(('OpaqueRef:isolation-test', args), fn)
        environ = {'PATH': os.environ.get('PATH', '/usr/sbin:/usr/bin'),
                   'PYTHONPATH': DOM0_MODULES, 'PYTHONDONTWRITEBYTECODE': '1',
                   'LANG': 'C.UTF-8'}
        environ.update(env or {})
        proc = subprocess.run(
            ['ip', 'netns', 'exec', self.dom0, PLUGIN_PYTHON,
             os.path.join(PLUGINS_DIR, 'nova_xen_isolation.py'), request],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environ,
            timeout=60)
        if proc.returncode != 0:
            raise AssertionError('plugin exited %d: %s %s' % (
                proc.returncode, proc.stdout.decode(), proc.stderr.decode()))
        (result,), _ = xmlrpc.client.loads(proc.stdout.decode())
        if result.get('Status') != 'Success':
            raise PluginFailure(result.get('ErrorDescription'))
        return json.loads(result['Value'])

    def nft_ruleset(self):
        proc = subprocess.run(['ip', 'netns', 'exec', self.dom0, 'nft',
                               'list', 'ruleset'], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=30, check=True)
        return proc.stdout.decode()

    # -- traffic ----------------------------------------------------------

    def exchange(self, frames, sender, receiver, end, sender_if='eth0',
                 timeout=60.0):
        """Send ``frames`` then ``end`` from sender; the frames received.

        Frames travel in order along one path, so once ``end`` (a frame
        the rules let through) has arrived, every earlier frame that
        was going to arrive has.
        """
        rx = packet_socket(receiver, 'eth0')
        tx = packet_socket(sender, sender_if)
        try:
            for frame in list(frames) + [end]:
                tx.send(frame)
            received = []
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([rx], [], [], left)[0]:
                    raise AssertionError(
                        'the end frame never reached %s: the lab lost '
                        'connectivity (received %d frames)'
                        % (receiver, len(received)))
                data, addr = rx.recvfrom(65535)
                if addr[2] == PACKET_OUTGOING:
                    continue
                if data == end:
                    return received
                received.append(data)
        finally:
            rx.close()
            tx.close()


def _which(tool):
    for d in os.environ.get('PATH', '').split(os.pathsep) + ['/usr/sbin',
                                                             '/sbin']:
        if d and os.access(os.path.join(d, tool), os.X_OK):
            return True
    return False
