"""ML2/OVN's remote mode, end to end with real packets.

The README's operator guide, run as an operator runs it against a
simulated pool of two hosts with real dom0 networking: OVN central (NB,
SB, northd on unix sockets in a temporary directory); certificates made
with openssl (a CA for ovn-controller's client certificate); ``nova-xen-
manage ovn-setup --mode remote`` for the first host (the pool's CA and
SDN controller, so that dom0's OVSDB listens for TLS clients on 6640;
br-int's passive OpenFlow target on 6653) and ``--mode in-dom0`` for the
second; the first host's ovn-controller in a "domU" network namespace
outside dom0, reaching dom0's OVSDB and br-int over TLS through local
proxies (OVN 23.03, Debian 12's, has no ``ovn-bridge-remote`` and applies
its own TLS keys only after it has read the database: the guide's step
3), the second's in its dom0.  Then a server on each host, each VIF's
``nicira-iface-id`` a logical switch port with OVN's native DHCP: each
port is claimed by its host's chassis, each guest (xapisim's cloud-image
boot, udhcpc) gets its address from OVN's DHCP and the first pings the
second over the Geneve tunnel between the two dom0s.

Needs root and the Debian packages openvswitch-switch, ovn-central,
ovn-host, socat, openssl, iproute2, ethtool, udhcpc and dropbear-bin
(``./run tests`` installs them): without them it fails, saying why; it
never skips.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from xapisim import netns

from tests.xapisim.base import MIB
from tests.xapisim.dom0net_base import ROOT, run, wait_for
from tests.xapisim.test_guest_boot import GuestBootCase

TENANT = '203.0.113.0/24'
GATEWAY = '203.0.113.1'
ADDRESSES = ('203.0.113.10', '203.0.113.11')
# the "domU" where the first host's nova-compute and ovn-controller run,
# on the pool's management fabric (the underlay, in namespaces only)
DOMU_ADDRESS = '192.0.2.200/24'
OVSDB_PORT = 6640       # xapi's pssl SDN controller
OPENFLOW_PORT = 6653    # ovn-setup's default
NOVA_HOSTS = ('compute-remote', 'compute-dom0')


def tail(path, lines=8):
    try:
        with open(path) as fh:
            return ' | '.join(fh.read().splitlines()[-lines:])
    except OSError:
        return '(no log at %s)' % path


class OvnRemoteModeTest(GuestBootCase):
    pools = 1
    hosts = 2

    # the programs of the Debian packages this test needs beyond the
    # other dom0 network tests'
    PROGRAMS = (('ovn-northd', 'ovn-central'), ('ovn-controller', 'ovn-host'),
                ('socat', 'socat'), ('openssl', 'openssl'),
                ('busybox', 'busybox'))

    def setUp(self):
        missing = sorted({package for program, package in self.PROGRAMS
                          if not shutil.which(program)})
        if missing:
            self.fail('ML2/OVN\'s remote mode needs the Debian packages %s '
                      '(./run tests installs them)' % ', '.join(missing))
        super(OvnRemoteModeTest, self).setUp()
        self.dir = tempfile.mkdtemp(prefix='ovr-%d-' % os.getpid())
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.procs = []
        self.addCleanup(self.stop_processes)
        self.nb = 'unix:' + os.path.join(self.dir, 'nb.sock')
        self.sb = 'unix:' + os.path.join(self.dir, 'sb.sock')
        self.start_central()

    # -- processes ---------------------------------------------------------

    def spawn(self, name, argv, netns_name=None, env=None):
        """A daemon of this test in the foreground (its log in the test's
        directory); stopped at clean-up."""
        log = os.path.join(self.dir, name + '.log')
        if netns_name:
            argv = ['ip', 'netns', 'exec', netns_name] + argv
        with open(log, 'ab') as out:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                env=dict(os.environ, **(env or {})))
        proc.log = log
        self.procs.append(proc)
        return proc

    def stop_processes(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def wait(self, what, probe):
        """``probe()``'s first true value; a failure shows what the
        test's daemons logged last."""
        try:
            return wait_for(what, probe)
        except AssertionError as exc:
            logs = '\n'.join('%s: %s' % (os.path.basename(p.log), tail(p.log))
                             for p in self.procs)
            raise AssertionError('%s\n%s' % (exc, logs))

    def alive(self, proc):
        """``proc`` still runs (else the failure says why)."""
        if proc.poll() is not None:
            raise AssertionError('%s exited (%s): %s' % (
                proc.args, proc.returncode, tail(proc.log)))
        return True

    def daemon(self, name, *args, **kwargs):
        """An OVS/OVN daemon: its pid file (and control socket) here."""
        ctl = [] if args[0] == 'ovn-controller' else [
            '--unixctl=' + os.path.join(self.dir, name + '.ctl')]
        return self.spawn(name, list(args) + ctl + [
            '--pidfile=' + os.path.join(self.dir, name + '.pid'),
            '-vconsole:info', '-vsyslog:off'], **kwargs)

    # -- OVN central -------------------------------------------------------

    def start_central(self):
        procs = []
        for db in ('nb', 'sb'):
            path = os.path.join(self.dir, db + '.db')
            run(['ovsdb-tool', 'create', path,
                 '/usr/share/ovn/ovn-%s.ovsschema' % db])
            procs.append(self.daemon(
                'ovsdb-' + db, 'ovsdb-server', path,
                '--remote=punix:' + os.path.join(self.dir, db + '.sock')))
        procs.append(self.daemon('northd', 'ovn-northd',
                                 '--ovnnb-db=' + self.nb,
                                 '--ovnsb-db=' + self.sb))
        for db, proc in ((self.nb, procs[0]), (self.sb, procs[1])):
            self.wait('OVSDB on %s' % db, lambda: self.alive(proc) and
                      subprocess.run(['ovsdb-client', 'list-dbs', db],
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL).returncode
                      == 0)

    def nbctl(self, *args):
        return run(['ovn-nbctl', '--db=' + self.nb, '--timeout=60'] +
                   list(args)).strip()

    def sbctl(self, *args):
        return run(['ovn-sbctl', '--db=' + self.sb, '--timeout=60'] +
                   list(args)).strip()

    # -- the operator's side -------------------------------------------------

    def openssl(self, *args):
        run(['openssl'] + list(args))

    def certificates(self):
        """A CA and ovn-controller's client key and certificate it signs
        (the guide's step 1): (ca, key, cert)."""
        pki = os.path.join(self.dir, 'pki')
        os.makedirs(pki)
        ca, ca_key = os.path.join(pki, 'ca.pem'), os.path.join(pki, 'ca.key')
        key = os.path.join(pki, 'client.key')
        csr = os.path.join(pki, 'client.csr')
        cert = os.path.join(pki, 'client.pem')
        ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
              '-nodes']
        self.openssl('req', '-x509', *ec, '-keyout', ca_key, '-out', ca,
                     '-days', '2', '-subj', '/CN=ovn-controller CA')
        self.openssl('req', *ec, '-keyout', key, '-out', csr, '-subj',
                     '/CN=ovn-controller-%s' % NOVA_HOSTS[0])
        self.openssl('x509', '-req', '-in', csr, '-CA', ca, '-CAkey',
                     ca_key, '-CAcreateserial', '-days', '2', '-out', cert)
        return ca, key, cert

    def stranger(self):
        """A self-signed client key and certificate: (key, cert)."""
        key = os.path.join(self.dir, 'pki', 'stranger.key')
        cert = os.path.join(self.dir, 'pki', 'stranger.pem')
        self.openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt',
                     'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key,
                     '-out', cert, '-days', '2', '-subj', '/CN=stranger')
        return key, cert

    def nova_conf(self, index):
        host = self.host_desc(0, index)
        path = os.path.join(self.dir, 'nova-%d.conf' % index)
        with open(path, 'w') as fh:
            fh.write('[DEFAULT]\nhost = %s\n[xenserver]\n'
                     'connection_url = %s\nconnection_username = %s\n'
                     'connection_password = %s\nhost_uuid = %s\n' % (
                         NOVA_HOSTS[index], host['url'],
                         self.world['username'], self.world['password'],
                         host['uuid']))
        return path

    def ovn_setup(self, index, *args):
        """``nova-xen-manage ovn-setup`` for host ``index``, as an
        operator runs it: its lines (it succeeded)."""
        proc = subprocess.run(
            [sys.executable, '-m', 'nova_xen.cmd.manage', 'ovn-setup',
             '--config-file', self.nova_conf(index), '--sb-remote', self.sb,
             '--encap-ip', self.host_desc(0, index)['dom0']['underlay_ip']]
            + list(args), cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, timeout=300)
        out = proc.stdout.decode()
        self.assertEqual(0, proc.returncode, out)
        self.assertNotIn('CANNOT', out)
        return out.splitlines()

    def domu(self):
        """A namespace outside dom0 on the pool's management fabric: its
        name and its run directory."""
        name = 'ovr-%d-domu' % os.getpid()
        netns.clean_up_netns(name)
        netns.add_netns(name, ipv6=False)
        self.addCleanup(netns.clean_up_netns, name)
        fabric = self.world['dom0_network']['fabric']['netns']
        peer = 'ovr%d' % (os.getpid() % 100000)
        run(['ip', 'link', 'add', 'eth0', 'netns', name, 'type', 'veth',
             'peer', 'name', peer, 'netns', fabric])
        netns.ethtool_tx_off(name, 'eth0')
        netns.ip(fabric, 'link', 'set', peer, 'master', 'br0', 'up')
        netns.ip(name, 'addr', 'add', DOMU_ADDRESS, 'dev', 'eth0')
        netns.ip(name, 'link', 'set', 'eth0', 'up')
        rundir = os.path.join(self.dir, 'domu')
        os.makedirs(rundir)
        return name, rundir

    def tls_proxy(self, name, domu, sock, address, port, tls):
        """``socat`` in the domU: a local unix socket to dom0's TLS
        listener, with ovn-controller's client certificate, checking
        dom0's (xapi's) against the pool's CA bundle."""
        ca, key, cert = tls
        proc = self.spawn(name, [
            'socat', 'UNIX-LISTEN:%s,fork,unlink-early' % sock,
            'OPENSSL:%s:%d,cert=%s,key=%s,cafile=%s' % (
                address, port, cert, key,
                self.world['dom0_network']['xapi_ca_file'])],
            netns_name=domu)
        self.wait('%s listens' % name,
                  lambda: self.alive(proc) and os.path.exists(sock))
        return proc

    # -- servers -----------------------------------------------------------

    def integration_network(self):
        """br-int's xapi network, as nova-xen makes it (unmanaged, fail
        mode secure: ovs-xapi-sync keeps the bridge's as ovn-controller
        wants it; nova_xen.network)."""
        return self.new_network(
            name_label='nova-xen integration bridge br-int', bridge='br-int',
            managed=False, other_config={
                'nova_role': 'integration-bridge',
                'vswitch-controller-fail-mode': 'secure'})

    def server(self, net, port):
        """A halted VM whose NIC is logical switch port ``port``."""
        vm = self.vm_with_vifs([net], vif_other_config={
            0: {'nicira-iface-id': port}})
        self.new_vbd(vm, self.new_vdi(8 * MIB, name_label='root'), '0')
        return vm

    def lease(self, vm):
        """The address the guest's DHCP client got, from its console log
        (what ``nova console-log`` shows)."""
        def leased():
            found = re.search(r'lease of ([0-9.]+)/\d+ obtained on eth0',
                              self.console_log(vm))
            return found and found.group(1)
        return self.wait('a DHCP lease in the console of %s' % vm, leased)

    def chassis_of(self, port):
        """The name of the chassis that claimed ``port`` (None: none)."""
        out = json.loads(self.sbctl('--format=json', '--columns=chassis',
                                    'find', 'Port_Binding',
                                    'logical_port=%s' % port))
        if not out['data']:
            return None
        ref = out['data'][0][0]
        if ref[0] != 'uuid':
            return None
        return self.sbctl('get', 'Chassis', ref[1], 'name').strip('"')

    # -- the test ----------------------------------------------------------

    def test_remote_chassis_claims_serves_dhcp_and_tunnels(self):
        hosts = [self.host_desc(0, i) for i in (0, 1)]
        tls = self.certificates()
        domu, rundir = self.domu()

        # the guide's step 2, for each host from its own compute
        db_sock = os.path.join(rundir, 'db.sock')
        mgmt = os.path.join(rundir, 'br-int.mgmt')
        lines = self.ovn_setup(0, '--mode', 'remote', '--ovsdb-ca', tls[0],
                               '--bridge-remote', 'unix:' + mgmt)
        self.assertIn('CHANGED introduce the pool\'s SDN controller '
                      'pssl:6640 (xapi makes dom0\'s OVSDB listen for TLS '
                      'clients on every host of the pool and opens the '
                      'port)', lines)
        self.ovn_setup(1, '--mode', 'in-dom0')

        # step 3: the first host's ovn-controller in the domU, through TLS
        # proxies to dom0's OVSDB and br-int; the second's in its dom0
        dom0_ip = hosts[0]['dom0']['underlay_ip']
        self.tls_proxy('ovsdb-proxy', domu, db_sock, dom0_ip, OVSDB_PORT,
                       tls)
        self.tls_proxy('openflow-proxy', domu, mgmt, dom0_ip,
                       OPENFLOW_PORT, tls)
        remote = self.daemon(
            'ovn-controller-remote', 'ovn-controller', 'unix:' + db_sock,
            netns_name=domu,
            # OVN 23.03 reaches br-int at $OVS_RUNDIR/br-int.mgmt
            env={'OVS_RUNDIR': rundir, 'OVN_RUNDIR': rundir})
        os.makedirs(os.path.join(self.dir, 'dom0'))
        local = self.daemon(
            'ovn-controller-dom0', 'ovn-controller', hosts[1]['dom0']['ovsdb'],
            netns_name=hosts[1]['dom0']['netns'],
            env={'OVS_RUNDIR': hosts[1]['dom0']['ovs_rundir'],
                 'OVN_RUNDIR': os.path.join(self.dir, 'dom0')})

        # each dom0 is a chassis named for its nova-compute's host
        for host, nova_host, proc in zip(hosts, NOVA_HOSTS, (remote, local)):
            self.wait('chassis %s in the southbound database' % nova_host,
                      lambda: self.alive(proc) and self.sbctl(
                          '--bare', '--columns=hostname', 'find', 'Chassis',
                          'name=%s' % host['uuid']) == nova_host)

        # dom0's OVSDB takes only clients the pool's CA signed (the proxy's
        # certificate, which it took, is)
        stranger = self.stranger()
        refused = subprocess.run(
            ['ip', 'netns', 'exec', domu, 'ovsdb-client', '-p', stranger[0],
             '-c', stranger[1], '-C',
             self.world['dom0_network']['xapi_ca_file'], 'list-dbs',
             'ssl:%s:%d' % (dom0_ip, OVSDB_PORT)], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, timeout=120)
        self.assertNotEqual(0, refused.returncode)
        self.assertNotIn(b'Open_vSwitch', refused.stdout)
        # the server's TLS alert: it knows no CA of that certificate
        self.assertIn(b'unknown ca', refused.stderr)

        # a tenant network with OVN's DHCP, a port for a server on each
        self.nbctl('ls-add', 'tenant')
        self.addCleanup(self.nbctl, '--if-exists', 'ls-del', 'tenant')
        dhcp = self.nbctl(
            'create', 'DHCP_Options', 'cidr=' + TENANT,
            'options:lease_time=3600', 'options:router=' + GATEWAY,
            'options:server_id=' + GATEWAY,
            'options:server_mac="fa:16:3e:00:00:01"', 'options:mtu=1442')
        net = self.integration_network()
        vms, ports = [], ('port-remote', 'port-dom0')
        for port, address in zip(ports, ADDRESSES):
            vm = self.server(net, port)
            mac = self.vifs(vm)[0]['MAC']
            self.nbctl('lsp-add', 'tenant', port,
                       '--', 'lsp-set-addresses', port,
                       '%s %s' % (mac, address),
                       '--', 'lsp-set-port-security', port,
                       '%s %s' % (mac, address),
                       '--', 'lsp-set-dhcpv4-options', port, dhcp)
            vms.append(vm)
        for index, vm in enumerate(vms):
            self.start_on(vm, 0, index)

        # each port claimed by its host's chassis (Neutron's port ACTIVE)
        for host, port in zip(hosts, ports):
            self.wait('%s claimed by %s' % (port, host['uuid']),
                      lambda: self.alive(remote) and self.alive(local) and
                      self.chassis_of(port) == host['uuid'])
            self.wait('%s up' % port,
                      lambda: self.nbctl('lsp-get-up', port) == 'up')
        # each guest's address from OVN's DHCP, with the network's MTU
        for vm, address in zip(vms, ADDRESSES):
            self.assertEqual(address, self.lease(vm))
        guest = self.guest_ns(vms[0])
        self.assertIn('mtu 1442', run(['ip', '-n', guest, 'link', 'show',
                                       'eth0']))

        # dom0 of the first host is driven from the domU: its OVSDB and
        # br-int's OpenFlow have connections from there, over TLS
        domu_ip = DOMU_ADDRESS.split('/')[0]

        def clients():
            # ss's columns: Recv-Q Send-Q local:port peer:port
            lines = run(['ip', 'netns', 'exec', hosts[0]['dom0']['netns'],
                         'ss', '-Htn', 'state', 'established',
                         '( sport = :%d or sport = :%d )' % (
                             OVSDB_PORT, OPENFLOW_PORT)]).splitlines()
            return {(w[3].rsplit(':', 1)[0], int(w[2].rsplit(':', 1)[1]))
                    for w in (line.split() for line in lines)}
        self.wait('connections from the domU to dom0\'s OVSDB and br-int',
                  lambda: clients() == {(domu_ip, OVSDB_PORT),
                                        (domu_ip, OPENFLOW_PORT)})

        # the first guest pings the second, across the Geneve tunnel the
        # remote chassis made in its dom0 (the only way between the two
        # br-int: no provider network is mapped)
        def pings():
            return subprocess.run(
                ['ip', 'netns', 'exec', guest, 'busybox', 'ping', '-c', '1',
                 '-W', '1', ADDRESSES[1]], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL).returncode == 0
        self.wait('a ping from %s to %s' % (ADDRESSES[0], ADDRESSES[1]),
                  pings)
        geneve = json.loads(run([
            'ovs-vsctl', '--db=' + hosts[0]['dom0']['ovsdb'],
            '--format=json', '--columns=options', 'find', 'Interface',
            'type=geneve']))
        self.assertEqual([hosts[1]['dom0']['underlay_ip']],
                         [dict(row[0][1])['remote_ip']
                          for row in geneve['data']])
