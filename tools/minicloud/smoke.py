"""The minicloud's smoke check: a server through Nova, seen in xapisim.

Run by ``tools/minicloud.sh smoke`` with the minicloud's venv Python:

1. ``openstack server create --image IMAGE --flavor FLAVOR --network NET
   --wait`` gives ACTIVE;
2. xapisim (through the XenAPI client) has a running VM tagged with the
   server's UUID, with the flavor's memory and vCPUs, a root disk on the
   pool's default SR, and one VIF with the Neutron port's MAC on the xapi
   network of the integration bridge;
3. Neutron's port is bound (vif_type ovs) and ACTIVE, and nova-compute got
   its network-vif-plugged event;
4. ``openstack server delete --wait`` leaves nothing in the pool tagged
   with the server's UUID, and no port in Neutron.

Prints every check; exits 1 if one failed.
"""

import argparse
import json
import subprocess
import sys
import time

import XenAPI

MIB = 1024 * 1024


class Smoke(object):

    def __init__(self, args):
        self.args = args
        self.failed = 0
        self.started = time.time()

    def say(self, text):
        sys.stdout.write('[%5.1fs] %s\n' % (time.time() - self.started, text))
        sys.stdout.flush()

    def check(self, ok, text):
        self.say('%s %s' % ('ok  ' if ok else 'FAIL', text))
        if not ok:
            self.failed += 1
        return ok

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

    def xapi(self):
        with open(self.args.xapi_json) as f:
            world = json.load(f)
        pool = world['pools'][0]
        session = XenAPI.Session(pool['master'])
        session.xenapi.login_with_password(world['username'],
                                           world['password'], '2.0',
                                           'minicloud-smoke')
        return session, pool

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

    def check_vm(self, x, pool, server, flavor, ports):
        left = self.objects_of(x, server['id'])
        if not self.check(len(left['VM']) == 1,
                          'xapisim has 1 VM tagged nova_uuid=%s (found %d)'
                          % (server['id'], len(left['VM']))):
            return
        vm = x.VM.get_record(left['VM'][0])
        host = x.host.get_record(vm['resident_on'])
        self.check(vm['power_state'] == 'Running',
                   'VM %s "%s" is %s on host %s (%s)'
                   % (vm['uuid'], vm['name_label'], vm['power_state'],
                      host['name_label'], host['address']))
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
                           'root disk (userdevice 0) is on the default SR')
        self.check(bool(disks), 'disks: %s' % '; '.join(disks))
        vifs = [x.VIF.get_record(v) for v in vm['VIFs']]
        self.check(len(vifs) == len(ports) == 1,
                   '%d VIF for %d Neutron port' % (len(vifs), len(ports)))
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

    def check_events(self, path, ports):
        with open(path, errors='replace') as f:
            log = f.read()
        for port in ports:
            event = 'network-vif-plugged-%s' % port['id']
            self.check('Received event %s' % event in log,
                       'nova-compute received %s from Neutron' % event)

    def run(self):
        a = self.args
        name = 'smoke-%d' % int(time.time())
        flavor = self.openstack('flavor', 'show', a.flavor)
        image = self.openstack('image', 'show', a.image)
        self.check(image['disk_format'] == 'vhd' or a.image_any_format,
                   'image %s (%s) is %s/%s' % (image['name'], image['id'],
                                               image['disk_format'],
                                               image['container_format']))
        started = time.time()
        try:
            server = self.openstack(
                'server', 'create', '--image', image['id'], '--flavor',
                flavor['id'], '--network', a.network, '--wait', name)
        except RuntimeError as exc:
            self.check(False, str(exc))
            return 1
        self.check(server['status'] == 'ACTIVE',
                   'server %s %s is %s after %.1f s (host %s, %s)'
                   % (name, server['id'], server['status'],
                      time.time() - started,
                      server.get('OS-EXT-SRV-ATTR:host'),
                      server.get('addresses')))
        x_session, pool = self.xapi()
        x = x_session.xenapi
        try:
            ports = self.openstack('port', 'list', '--server', server['id'],
                                   '--long')
            ports = [self.openstack('port', 'show', p['ID']) for p in ports]
            for port in ports:
                self.check(port['binding_vif_type'] == 'ovs'
                           and port['status'] == 'ACTIVE',
                           'port %s: vif_type %s, status %s, host %s'
                           % (port['id'], port['binding_vif_type'],
                              port['status'], port['binding_host_id']))
            self.check_vm(x, pool, server, flavor, ports)
            if a.compute_log:
                self.check_events(a.compute_log, ports)
            events = self.openstack('server', 'event', 'list', server['id'])
            self.say('     server events: %s'
                     % ', '.join(e['Action'] for e in events))

            started = time.time()
            self.openstack('server', 'delete', '--wait', server['id'],
                           json_out=False)
            self.check(True, 'server deleted in %.1f s'
                       % (time.time() - started))
            left = self.objects_of(x, server['id'])
            self.check(not any(left.values()),
                       'nothing tagged nova_uuid=%s left in xapisim (%s)'
                       % (server['id'], ', '.join(
                           '%d %s' % (len(v), k)
                           for k, v in sorted(left.items()))))
            remaining = self.openstack('port', 'list', '--device-id',
                                       server['id'])
            self.check(not remaining, 'no Neutron port left for the server')
        finally:
            x_session.xenapi.session.logout()
        self.say('%s: %d check(s) failed' % ('FAILED' if self.failed
                                             else 'PASSED', self.failed))
        return 1 if self.failed else 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--openstack', default='openstack')
    p.add_argument('--xapi-json', required=True)
    p.add_argument('--image', required=True)
    p.add_argument('--flavor', default='m1.tiny')
    p.add_argument('--network', required=True)
    p.add_argument('--image-any-format', action='store_true')
    p.add_argument('--compute-log', help='nova-compute\'s log: look for '
                   'the network-vif-plugged events of the ports')
    return Smoke(p.parse_args()).run()


if __name__ == '__main__':
    sys.exit(main())
