"""One simulated host's dom0 network: a namespace with its Open vSwitch.

As in XCP-ng's dom0 (network backend ``openvswitch``): an ovsdb-server
and an ovs-vswitchd (here on the userspace datapath, ``datapath_type``
``netdev``: this machine has no OVS kernel module), their files under the
host's dom0 directory (``var/run/openvswitch`` is ``OVS_RUNDIR``, so that
each instance has its own ``db.sock`` and ``<bridge>.mgmt`` sockets), a
bridge per plugged PIF as xcp-networkd makes it (``xenbr0`` on ``eth0``
holding the host's underlay address, ``xenbr1`` on ``eth1``, the
provider LAN), xapi's ``/etc/xensource/xapi-ssl.pem`` (what the
SDN controller's TLS presents: ``ovsdb-server`` takes its managers and
their TLS from the database, as ``ovs-ctl`` starts it), the bridges xapi
does not make (``--dom0-bridges``, br-int by default, fail mode secure as
ovn-controller makes it), and ovs-xapi-sync (``xapisim.xapisync``).
``eth0`` and ``eth1`` are veths whose other ends sit on Linux bridges in
the world's shared "fabric" and "provider LAN" namespaces.
"""

import os
import socket
import subprocess
import time

from xapisim import netns
from xapisim.netns import Dom0NetError
from xapisim.xapisync import XapiSync

SCHEMA = '/usr/share/openvswitch/vswitch.ovsschema'
# how long a daemon may take to serve on a loaded machine
START_TIMEOUT = 120.0
VSCTL_TIMEOUT = 60
# xcp-networkd's bridge for each PIF device: (device, bridge)
PIF_BRIDGES = (('eth0', 'xenbr0'), ('eth1', 'xenbr1'))
XAPI_PEM = os.path.join('etc', 'xensource', 'xapi-ssl.pem')


class HostDom0(object):
    """The dom0 network of one simulated ``Host``."""

    def __init__(self, world_net, host, number):
        self.world_net = world_net
        self.host = host
        self.number = number            # 1.. across the world
        run = world_net.run
        self.netns = run.name('h%d-%d' % (host.pool.index + 1,
                                          host.index + 1))
        # the name of its ports on the fabric and LAN bridges
        self.link_name = 'h%d-%d' % (host.pool.index + 1, host.index + 1)
        root = host.dom0_root
        self.rundir = os.path.join(root, 'var', 'run', 'openvswitch')
        self.dbdir = os.path.join(root, 'etc', 'openvswitch')
        self.logdir = os.path.join(root, 'var', 'log', 'openvswitch')
        self.db_sock = os.path.join(self.rundir, 'db.sock')
        self.underlay_ip = world_net.underlay_address(number)
        self.processes = []
        self.sync = None

    # -- what others need to know --------------------------------------

    @property
    def ovsdb(self):
        return 'unix:' + self.db_sock

    def env(self):
        """The environment of a process using this host's switch: its
        ``ovs-vsctl`` (with no ``--db``) talks to this instance."""
        return {'OVS_RUNDIR': self.rundir, 'OVS_DBDIR': self.dbdir,
                'OVS_LOGDIR': self.logdir}

    def describe(self):
        net = self.world_net
        return {'netns': self.netns, 'ovs_rundir': self.rundir,
                'ovs_dbdir': self.dbdir, 'ovs_logdir': self.logdir,
                'ovsdb': self.ovsdb,
                'ovs_vswitchd_ctl': os.path.join(self.rundir,
                                                 'ovs-vswitchd.ctl'),
                'underlay_ip': self.underlay_ip,
                'underlay_prefixlen': net.underlay.prefixlen,
                'underlay_bridge': 'xenbr0', 'underlay_device': 'eth0',
                'provider_bridge': 'xenbr1', 'provider_device': 'eth1',
                'datapath_type': 'netdev'}

    # -- commands --------------------------------------------------------

    def vsctl(self, *args, **kwargs):
        return netns.run(['ovs-vsctl', '--db=' + self.ovsdb,
                          '--timeout=%d' % VSCTL_TIMEOUT] + list(args),
                         **kwargs)

    def ip(self, *args, **kwargs):
        return netns.ip(self.netns, *args, **kwargs)

    def bridges(self):
        return set(self.vsctl('list-br').split())

    def interfaces(self, bridge):
        """What xcp-networkd's Bridge.get_interfaces sees on it."""
        return self.vsctl('list-ifaces', bridge).split()

    def create_bridge(self, bridge, network_uuid):
        """A bridge as xcp-networkd creates one for a xapi network:
        ``standalone`` (ovs-xapi-sync then applies the network's fail
        mode), ``xs-network-uuids`` naming its network."""
        self.vsctl('--', '--may-exist', 'add-br', bridge,
                   '--', 'set', 'bridge', bridge, 'datapath_type=netdev',
                   'fail_mode=standalone',
                   '--', 'br-set-external-id', bridge, 'xs-network-uuids',
                   network_uuid)
        self.ip('link', 'set', bridge, 'up')

    def destroy_bridge(self, bridge):
        self.vsctl('--if-exists', 'del-br', bridge)

    # -- life ----------------------------------------------------------

    def start(self, pif_networks):
        """Namespace, daemons, PIF bridges and links, ovs-xapi-sync.

        ``pif_networks``: the uuid of the xapi network of each PIF device.
        """
        for path in (self.rundir, self.dbdir, self.logdir):
            os.makedirs(path, exist_ok=True)
        netns.add_netns(self.netns, ipv6=False)
        conf = os.path.join(self.dbdir, 'conf.db')
        if os.path.exists(conf):
            os.unlink(conf)
        netns.run(['ovsdb-tool', 'create', conf, SCHEMA])
        self._write_xapi_pem()
        # as XCP-ng's ovs-ctl starts it: the managers (xapi's SDN
        # controller sets pssl:6640) and their TLS from the SSL table
        self._daemon('ovsdb-server', [
            conf, '--remote=punix:' + self.db_sock,
            '--remote=db:Open_vSwitch,Open_vSwitch,manager_options',
            '--private-key=db:Open_vSwitch,SSL,private_key',
            '--certificate=db:Open_vSwitch,SSL,certificate',
            '--bootstrap-ca-cert=db:Open_vSwitch,SSL,ca_cert'])
        self._wait_for_socket(self.db_sock, 'ovsdb-server')
        # one handler and revalidator thread: two cores are shared by all
        self.vsctl('--no-wait', 'init', '--', 'set', 'Open_vSwitch', '.',
                   'other_config:n-handler-threads=1',
                   'other_config:n-revalidator-threads=1')
        self._daemon('ovs-vswitchd', [self.ovsdb])
        self.sync = XapiSync(self.host, self.db_sock)
        self.sync.start()
        for device, bridge in PIF_BRIDGES:
            # add-br waits until ovs-vswitchd has made it: it serves
            self.create_bridge(bridge, pif_networks[device])
            shared = self.world_net.shared_netns[device]
            netns.run(['ip', 'link', 'add', device, 'netns', self.netns,
                       'type', 'veth', 'peer', 'name', self.link_name,
                       'netns', shared])
            netns.ethtool_tx_off(self.netns, device)
            netns.ethtool_tx_off(shared, self.link_name)
            netns.ip(shared, 'link', 'set', self.link_name, 'master', 'br0',
                     'up')
            self.vsctl('add-port', bridge, device)
            self.ip('link', 'set', device, 'up')
        for bridge in self.host.pool.options.dom0_bridges:
            # what xapi did not make (--dom0-bridges): br-int as
            # ovn-controller makes it
            self.vsctl('--', '--may-exist', 'add-br', bridge,
                       '--', 'set', 'bridge', bridge, 'datapath_type=netdev',
                       'fail_mode=secure')
            self.ip('link', 'set', bridge, 'up')
        self.ip('addr', 'add', '%s/%d' % (self.underlay_ip,
                                          self.world_net.underlay.prefixlen),
                'dev', 'xenbr0')

    def _write_xapi_pem(self):
        """``/etc/xensource/xapi-ssl.pem``: xapi's key and certificate
        in one file (what the SDN controller's ``set-ssl`` names)."""
        _, cert, key = self.world_net.certificates
        path = os.path.join(self.host.dom0_root, XAPI_PEM)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(key) as fh:
            pem = fh.read()
        with open(cert) as fh:
            pem += fh.read()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w') as fh:
            fh.write(pem)

    def _daemon(self, name, args):
        pidfile = os.path.join(self.rundir, name + '.pid')
        self.world_net.run.add_pidfile(pidfile)
        log = os.path.join(self.logdir, name + '.log')
        argv = ['ip', 'netns', 'exec', self.netns, name] + args + [
            '--pidfile=' + pidfile,
            '--unixctl=' + os.path.join(self.rundir, name + '.ctl'),
            '--log-file=' + log, '-vconsole:off', '-vfile:info',
            '--no-chdir']
        env = dict(os.environ, **self.env())
        # ip netns exec execs the daemon: this is its pid, and the
        # simulator (its parent) reaps it when it stops
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        proc.xapisim_log = log
        proc.xapisim_name = name
        self.processes.append(proc)
        return proc

    def _wait_for_socket(self, path, name):
        proc = self.processes[-1]
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise Dom0NetError('%s of %s exited (%s): %s' % (
                    name, self.host.name_label, proc.returncode,
                    _tail(proc.xapisim_log)))
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(path)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise Dom0NetError('%s of %s does not serve on %s'
                                       % (name, self.host.name_label, path))
                time.sleep(0.02)
            finally:
                sock.close()

    def stop(self):
        if self.sync is not None:
            self.sync.stop()
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.processes):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.processes = []


def _tail(path, lines=5):
    try:
        with open(path) as fh:
            return ' | '.join(fh.read().splitlines()[-lines:])
    except OSError:
        return '(no log)'
