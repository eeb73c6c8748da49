"""The minicloud's smoke check: servers through Nova, seen in xapisim.

Run by ``tools/minicloud.sh smoke`` with the minicloud's venv Python:

1. the dom0 plugins answer on every host of every xapisim pool
   (``nova_xen_version.py get_version``);
2. one server on each nova-compute (``openstack server create
   --availability-zone nova:HOST --wait``) is ACTIVE there, and xapisim
   (through the XenAPI client, on that compute's pool) has a running VM
   tagged with the server's UUID on that compute's host, with the flavor's
   memory and vCPUs, a root disk on the pool's default SR, one VIF with
   the Neutron port's MAC on the xapi network of the integration bridge,
   and the VIF's isolation rules in that host's dom0;
3. Neutron's port is bound to that compute (vif_type ovs) and ACTIVE,
   with ML2/OVN (``--ovn-sb``) claimed by that compute's chassis in the
   OVN southbound database, and that nova-compute got its
   network-vif-plugged event;
4. with two computes or more, the first server live-migrates to every
   other compute in turn (block migration: xapi's VM.pool_migrate inside
   a pool, storage XenMotion to another pool), and each time runs on the
   destination's host, in the destination's pool only, with its rules
   there and none left on the source, its port bound to the destination
   (and claimed by the destination's chassis);
5. the first server's VNC console answers through nova-novncproxy:
   Nova's URL and token, the proxy's ``CONNECT /console`` to xapi, and
   the RFB banner of the guest's console, over a WebSocket as a browser
   would open it;
6. ``openstack server delete --wait`` leaves nothing in any pool tagged
   with a server's UUID, and no port in Neutron.

Prints every check; exits 1 if one failed.
"""

import argparse
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.parse

import XenAPI

import checklog  # noqa: E402  (this script's own directory)
import ovn_check  # noqa: E402

MIB = 1024 * 1024
VERSION_PLUGIN = 'nova_xen_version.py'
ISOLATION_PLUGIN = 'nova_xen_isolation.py'


def first_websocket_message(host, port, path, origin):
    """Open a WebSocket as noVNC does (binary subprotocol) and return the
    first message the server sends: for a VNC console, the RFB banner."""
    sock = socket.create_connection((host, port), timeout=30)
    with sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(('GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket'
                      '\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n'
                      'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: '
                      'binary\r\nOrigin: %s\r\n\r\n'
                      % (path, host, port, key, origin)).encode())
        reader = sock.makefile('rb')
        status = reader.readline()
        if b' 101 ' not in status:
            raise ValueError('no WebSocket: %r' % status.strip())
        while reader.readline() not in (b'\r\n', b''):
            pass
        head = reader.read(2)
        if len(head) < 2:
            raise ValueError('the proxy closed the WebSocket')
        length = head[1] & 0x7f
        if length == 126:
            length = struct.unpack('>H', reader.read(2))[0]
        elif length == 127:
            length = struct.unpack('>Q', reader.read(8))[0]
        if head[0] & 0x0f == 8:
            raise ValueError('the proxy closed the WebSocket: %r'
                             % reader.read(length))
        return reader.read(length)


class Compute(object):
    """A line of the minicloud's compute table (etc/computes)."""

    def __init__(self, line):
        (self.service, self.host, self.spec, self.xapi_host,
         self.host_uuid, self.master, self.pool) = line.split()


class Smoke(checklog.Checks):

    def __init__(self, args):
        self.args = args
        self.failed = 0
        self.started = time.time()
        with open(args.computes) as f:
            self.computes = [Compute(line) for line in f if line.strip()]
        with open(args.xapi_json) as f:
            self.world = json.load(f)
        self.sessions = {}
        # ML2/OVN: each compute host's chassis (its system-id)
        self.chassis = {}
        if args.ovn_chassis:
            self.chassis = {host: system_id for _, host, system_id in
                            ovn_check.read_chassis(args.ovn_chassis)}

    def openstack(self, *argv, json_out=True):
        cmd = [self.args.openstack] + list(argv)
        if json_out:
            cmd += ['-f', 'json']
        self.say('$ openstack %s' % ' '.join(argv))
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError('openstack %s failed (%d): %s'
                               % (' '.join(argv), out.returncode,
                                  out.stderr.strip()[-2000:]))
        return json.loads(out.stdout) if json_out else out.stdout

    # -- xapisim ---------------------------------------------------------

    def xapi(self, master):
        """The XenAPI proxy of the pool whose master is ``master``."""
        if master not in self.sessions:
            session = XenAPI.Session(master)
            session.xenapi.login_with_password(
                self.world['username'], self.world['password'], '2.0',
                'minicloud-smoke')
            self.sessions[master] = session
        return self.sessions[master].xenapi

    def logout(self):
        for session in self.sessions.values():
            try:
                session.xenapi.session.logout()
            except Exception:
                pass

    def plugin(self, x, host_ref, plugin, fn):
        return json.loads(x.host.call_plugin(host_ref, plugin, fn,
                                             {'params': '{}'}))

    def check_plugins(self):
        for pool in self.world['pools']:
            x = self.xapi(pool['master'])
            for host in pool['hosts']:
                ref = x.host.get_by_uuid(host['uuid'])
                try:
                    reply = self.plugin(x, ref, VERSION_PLUGIN, 'get_version')
                    self.check(bool(reply.get('api_version')),
                               'dom0 plugins on %s (%s, %s): API %s'
                               % (host['name_label'], pool['name_label'],
                                  host['address'], reply.get('api_version')))
                except XenAPI.Failure as exc:
                    self.check(False, 'dom0 plugins on %s (%s): %s'
                               % (host['name_label'], pool['name_label'],
                                  exc))

    def objects_of(self, x, uuid):
        left = {}
        for cls in ('VM', 'VDI', 'VIF'):
            records = getattr(x, cls).get_all_records()
            left[cls] = [ref for ref, r in records.items()
                         if r['other_config'].get('nova_uuid') == uuid]
        vms = set(left['VM'])
        left['VBD'] = [ref for ref, r in x.VBD.get_all_records().items()
                       if r['VM'] in vms or r['VDI'] in left['VDI']]
        return left

    def rules_on(self, x, host_ref):
        """VIF uuids with isolation rules in that host's dom0."""
        return set(self.plugin(x, host_ref, ISOLATION_PLUGIN,
                               'list_rules').get('vifs', {}))

    def check_vm(self, compute, server, flavor, ports):
        """The server's VM runs on the compute's host, in its pool only;
        returns the uuids of its VIFs."""
        x = self.xapi(compute.master)
        for other in {c.master for c in self.computes} - {compute.master}:
            elsewhere = self.objects_of(self.xapi(other), server['id'])
            self.check(not any(elsewhere.values()),
                       'nothing tagged nova_uuid=%s in the pool of %s'
                       % (server['id'], other))
        left = self.objects_of(x, server['id'])
        if not self.check(len(left['VM']) == 1,
                          'pool %s has 1 VM tagged nova_uuid=%s (found %d)'
                          % (compute.pool, server['id'], len(left['VM']))):
            return []
        vm = x.VM.get_record(left['VM'][0])
        host = x.host.get_record(vm['resident_on'])
        self.check(vm['power_state'] == 'Running'
                   and host['uuid'] == compute.host_uuid,
                   'VM %s "%s" is %s on host %s (%s), the host of %s'
                   % (vm['uuid'], vm['name_label'], vm['power_state'],
                      host['name_label'], host['address'], compute.host))
        self.check(int(vm['memory_static_max']) == flavor['ram'] * MIB,
                   'memory_static_max %d MiB = flavor %s ram %d MiB'
                   % (int(vm['memory_static_max']) // MIB, flavor['name'],
                      flavor['ram']))
        self.check(int(vm['VCPUs_max']) == flavor['vcpus'],
                   'VCPUs_max %s = flavor vcpus %d'
                   % (vm['VCPUs_max'], flavor['vcpus']))
        default_sr = x.pool.get_default_SR(x.pool.get_all()[0])
        disks = []
        for vbd in vm['VBDs']:
            rec = x.VBD.get_record(vbd)
            if rec['type'] != 'Disk':
                continue
            vdi = x.VDI.get_record(rec['VDI'])
            disks.append('%s %s %d MiB on SR %s' % (
                rec['userdevice'], vdi['other_config'].get('nova_role', '?'),
                int(vdi['virtual_size']) // MIB,
                x.SR.get_name_label(vdi['SR'])))
            if rec['userdevice'] == '0':
                self.check(vdi['SR'] == default_sr,
                           'root disk (userdevice 0) is on the default SR '
                           'of %s' % compute.pool)
        self.check(bool(disks), 'disks: %s' % '; '.join(disks))
        vifs = [x.VIF.get_record(v) for v in vm['VIFs']]
        self.check(len(vifs) == len(ports) == 1,
                   '%d VIF for %d Neutron port' % (len(vifs), len(ports)))
        rules = self.rules_on(x, vm['resident_on'])
        for vif in vifs:
            port = next((p for p in ports
                         if p['id'] == vif['other_config'].get(
                             'neutron-port-id')), None)
            if not self.check(port is not None,
                              'VIF %s carries neutron-port-id %s'
                              % (vif['device'], vif['other_config'].get(
                                  'neutron-port-id'))):
                continue
            bridge = x.network.get_bridge(vif['network'])
            self.check(vif['MAC'].lower() == port['mac_address'].lower(),
                       'VIF MAC %s = port MAC' % vif['MAC'])
            self.check(bridge == 'br-int',
                       'VIF on xapi network of bridge %s' % bridge)
            ips = [ip['ip_address'] for ip in port['fixed_ips']]
            self.check(sorted(vif['ipv4_allowed']) == sorted(ips),
                       'VIF ipv4_allowed %s = port fixed IPs'
                       % vif['ipv4_allowed'])
            self.check(bool(vif['currently_attached']),
                       'VIF currently attached')
            self.check(vif['uuid'] in rules,
                       'isolation rules of VIF %s in the dom0 of %s'
                       % (vif['uuid'], host['name_label']))
        return [vif['uuid'] for vif in vifs]

    def check_ports(self, server, compute):
        ports = self.openstack('port', 'list', '--server', server['id'],
                               '--long')
        ports = [self.openstack('port', 'show', p['ID']) for p in ports]
        for port in ports:
            self.check(port['binding_vif_type'] == 'ovs'
                       and port['status'] == 'ACTIVE'
                       and port['binding_host_id'] == compute.host,
                       'port %s: vif_type %s, status %s, host %s'
                       % (port['id'], port['binding_vif_type'],
                          port['status'], port['binding_host_id']))
            if self.args.ovn_sb:
                claimer = ovn_check.claimed_by(self.args.ovn_sb, port['id'])
                self.check(claimer == self.chassis.get(compute.host),
                           'port %s claimed in the OVN southbound database '
                           'by chassis %s (%s\'s: %s)' % (
                               port['id'], claimer, compute.host,
                               self.chassis.get(compute.host)))
        return ports

    def check_events(self, compute, ports):
        path = os.path.join(self.args.log_dir, '%s.log' % compute.service)
        with open(path, errors='replace') as f:
            log = f.read()
        for port in ports:
            event = 'network-vif-plugged-%s' % port['id']
            self.check('Received event %s' % event in log,
                       '%s received %s from Neutron' % (compute.service,
                                                        event))

    # -- the steps ---------------------------------------------------------

    def boot(self, compute, image, flavor, name):
        started = time.time()
        server = self.openstack(
            'server', 'create', '--image', image['id'], '--flavor',
            flavor['id'], '--network', self.args.network,
            '--availability-zone', 'nova:%s' % compute.host, '--wait', name)
        self.check(server['status'] == 'ACTIVE'
                   and server.get('OS-EXT-SRV-ATTR:host') == compute.host,
                   'server %s %s is %s after %.1f s on %s (%s)'
                   % (name, server['id'], server['status'],
                      time.time() - started,
                      server.get('OS-EXT-SRV-ATTR:host'),
                      server.get('addresses')))
        return server

    def live_migrate(self, server, source, dest, flavor):
        """``server`` from ``source`` to ``dest``, checked on both sides."""
        x_source = self.xapi(source.master)
        vm = self.objects_of(x_source, server['id'])['VM'][0]
        source_ref = x_source.VM.get_resident_on(vm)
        vif_uuids = [x_source.VIF.get_uuid(v)
                     for v in x_source.VM.get_VIFs(vm)]
        same_pool = source.master == dest.master
        started = time.time()
        try:
            # block migration: xapi moves the VM alone when the destination
            # sees its SR (inside a pool), with its disks otherwise
            self.openstack('--os-compute-api-version', '2.30', 'server',
                           'migrate', '--live-migration', '--host', dest.host,
                           '--block-migration', '--wait', server['id'],
                           json_out=False)
        except RuntimeError as exc:
            self.check(False, str(exc))
        shown = self.openstack('server', 'show', server['id'])
        moved = self.check(
            shown['status'] == 'ACTIVE'
            and shown.get('OS-EXT-SRV-ATTR:host') == dest.host,
            'live migration %s -> %s (%s) in %.1f s: server %s on %s'
            % (source.host, dest.host, 'XenMotion inside %s' % dest.pool
               if same_pool else 'storage XenMotion to %s' % dest.pool,
               time.time() - started, shown['status'],
               shown.get('OS-EXT-SRV-ATTR:host')))
        if not moved:
            migrations = self.openstack(
                '--os-compute-api-version', '2.59', 'server', 'migration',
                'list', '--server', server['id'])
            self.say('     migrations: %s' % json.dumps(migrations))
            self.say('     see %s/%s.log and %s/%s.log'
                     % (self.args.log_dir, source.service,
                        self.args.log_dir, dest.service))
            return False
        ports = self.check_ports(server, dest)
        self.check_vm(dest, shown, flavor, ports)
        left = self.rules_on(x_source, source_ref) & set(vif_uuids)
        self.check(not left, 'no isolation rules of the server\'s VIFs left '
                   'on %s (%s)' % (source.xapi_host, ', '.join(left) or
                                   'none'))
        return True

    def check_console(self, server):
        url = self.openstack('console', 'url', 'show', '--novnc',
                             server['id'])['url']
        parts = urllib.parse.urlsplit(url)
        # vnc_lite.html?path=%3Ftoken%3D...: the page opens ws://.../?token=
        path = urllib.parse.parse_qs(parts.query).get('path', ['/'])[0]
        try:
            banner = first_websocket_message(
                parts.hostname, parts.port, '/' + path.lstrip('/'),
                origin='%s://%s' % (parts.scheme, parts.netloc))
        except (OSError, ValueError) as exc:
            banner = ('%s: %s' % (exc.__class__.__name__, exc)).encode()
        self.check(banner.startswith(b'RFB 003.'),
                   'the VNC console of %s answers through nova-novncproxy '
                   '(%s): %r' % (server['id'], url.split('?')[0], banner))

    def delete(self, server):
        started = time.time()
        self.openstack('server', 'delete', '--wait', server['id'],
                       json_out=False)
        self.check(True, 'server %s deleted in %.1f s'
                   % (server['id'], time.time() - started))
        for master in sorted({c.master for c in self.computes}):
            left = self.objects_of(self.xapi(master), server['id'])
            self.check(not any(left.values()),
                       'nothing tagged nova_uuid=%s left in the pool of %s '
                       '(%s)' % (server['id'], master, ', '.join(
                           '%d %s' % (len(v), k)
                           for k, v in sorted(left.items()))))
        remaining = self.openstack('port', 'list', '--device-id',
                                   server['id'])
        self.check(not remaining, 'no Neutron port left for server %s'
                   % server['id'])

    def run(self):
        a = self.args
        flavor = self.openstack('flavor', 'show', a.flavor)
        image = self.openstack('image', 'show', a.image)
        self.check(image['disk_format'] == 'vhd' or a.image_any_format,
                   'image %s (%s) is %s/%s' % (image['name'], image['id'],
                                               image['disk_format'],
                                               image['container_format']))
        servers = []
        try:
            self.check_plugins()
            for compute in self.computes:
                self.say('--- %s: nova-compute %s, xapisim host %s of %s'
                         % (compute.service, compute.host, compute.xapi_host,
                            compute.pool))
                name = 'smoke-%s-%d' % (compute.host, int(time.time()))
                try:
                    server = self.boot(compute, image, flavor, name)
                except RuntimeError as exc:
                    self.check(False, str(exc))
                    continue
                servers.append(server)
                ports = self.check_ports(server, compute)
                self.check_vm(compute, server, flavor, ports)
                self.check_events(compute, ports)
                events = self.openstack('server', 'event', 'list',
                                        server['id'])
                self.say('     server events: %s'
                         % ', '.join(e['Action'] for e in events))
            if servers:
                self.check_console(servers[0])
            if len(self.computes) >= 2 and servers and \
                    servers[0].get('OS-EXT-SRV-ATTR:host') == \
                    self.computes[0].host:
                source = self.computes[0]
                for dest in self.computes[1:]:
                    self.say('--- live migration of %s: %s -> %s'
                             % (servers[0]['id'], source.host, dest.host))
                    if not self.live_migrate(servers[0], source, dest,
                                             flavor):
                        break
                    source = dest
        finally:
            try:
                for server in servers:
                    self.delete(server)
            finally:
                self.logout()
        self.say('%s: %d check(s) failed' % ('FAILED' if self.failed
                                             else 'PASSED', self.failed))
        return 1 if self.failed else 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--openstack', default='openstack')
    p.add_argument('--xapi-json', required=True)
    p.add_argument('--computes', required=True,
                   help='the compute table minicloud.sh up wrote')
    p.add_argument('--log-dir', required=True,
                   help='the services\' logs: nova-computes\' events')
    p.add_argument('--image', required=True)
    p.add_argument('--flavor', default='m1.tiny')
    p.add_argument('--network', required=True)
    p.add_argument('--image-any-format', action='store_true')
    p.add_argument('--ovn-sb', help='ML2/OVN: the southbound database '
                   '(unix:PATH); each port must be claimed by its host\'s '
                   'chassis')
    p.add_argument('--ovn-chassis', help='ML2/OVN: the chassis table '
                   '(computes.py --chassis)')
    return Smoke(p.parse_args()).run()


if __name__ == '__main__':
    sys.exit(main())
