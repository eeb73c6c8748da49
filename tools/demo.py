"""The main job: boot a server through Nova on a simulated XCP-ng pool.

Starts a simulated pool (xapisim, two hosts) and a Nova (API, conductor,
scheduler, placement, and a nova-compute with compute_driver =
xenapi.XenAPIDriver for each host, all in this process), uploads an image,
boots a server through Nova's REST API, shows Nova's view and xapi's view
of it side by side and live-migrates it to the other host of the pool
(XenMotion).  Then either deletes it and shows that nothing is left in the
pool (default), or, with
--keep, leaves everything running and opens a Python prompt with ``nova``
(the REST client), ``xapi`` (a XenAPI session) and ``server`` at hand.

    python tools/demo.py [--keep]
"""

import argparse
import code
import logging
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from tests.functional import base  # noqa: E402

MIB = 1024 * 1024
GIB = 1024 * MIB
IMAGE_TEXT = b'nova-xen demo disk: hello from Glance\n'


def image_bytes():
    data = bytearray(4 * MIB)
    data[0:len(IMAGE_TEXT)] = IMAGE_TEXT
    data[510:512] = b'\x55\xaa'          # a boot signature, for show
    return bytes(data)


def columns(left_title, left, right_title, right):
    width = max([len(left_title)] + [len(k) + len(str(v)) + 2
                                     for k, v in left]) + 4
    lines = ['%-*s%s' % (width, left_title, right_title),
             '%-*s%s' % (width, '-' * (width - 4), '-' * (width - 4))]
    for i in range(max(len(left), len(right))):
        a = '%s: %s' % left[i] if i < len(left) else ''
        b = '%s: %s' % right[i] if i < len(right) else ''
        lines.append('%-*s%s' % (width, a, b))
    return '\n'.join(lines)


class Demo(base.XenAPIFunctionalTestCase):
    xapisim_options = {'hosts': 2, 'guest_delay': 0.1}
    keep = False

    def say(self, text):
        sys.stdout.write(text + '\n')
        sys.stdout.flush()

    def runTest(self):
        started = time.time()
        pool = self.xapi.pool
        self.say('1. Simulated XCP-ng pool %s is up: master %s, hosts %s'
                 % (pool['name_label'], pool['master'],
                    ', '.join(h['name_label'] for h in pool['hosts'])))
        # a nova-compute for each host of the pool
        self.flags(host_uuid=pool['hosts'][1]['uuid'], group='xenserver')
        self._start_compute(pool['hosts'][1]['name_label'])
        self.say('2. Nova is up; nova-computes %s use xenapi.XenAPIDriver'
                 % ', '.join('"%s"' % h for h in sorted(self.computes)))
        image = self.image_with(image_bytes(), name='demo-raw-image')
        self.say('3. Image %s (raw, %d MiB) is in Glance' % (image, 4))
        self.say('4. POST /servers ...')
        server = self.boot(image, flavor='m1.small')
        self.say('   server %s is %s after %.1f s'
                 % (server['id'], server['status'], time.time() - started))
        self.show(server)
        source = server['OS-EXT-SRV-ATTR:host']
        self.say('\n6. POST /servers/%s/action os-migrateLive ...'
                 % server['id'])
        moving = time.time()
        server = self._live_migrate(server)
        vm, record = self.xapi.vm_of(server['id'])
        self.say('   XenMotion (VM.pool_migrate) from %s to %s in %.1f s: '
                 'Nova says host %s, xapi says resident_on %s'
                 % (source, server['OS-EXT-SRV-ATTR:host'],
                    time.time() - moving, server['OS-EXT-SRV-ATTR:host'],
                    self.xapi.x.host.get_name_label(record['resident_on'])))
        self.say('\n7. POST /servers/%s/action resize to m1.medium, then '
                 'confirmResize ...' % server['id'])
        moving = time.time()
        self.flags(allow_resize_to_same_host=True)
        self.api.post_server_action(server['id'], {'resize': {
            'flavorRef': self.flavor('m1.medium')['id']}})
        server = self._wait_for_state_change(server, 'VERIFY_RESIZE')
        server = self._confirm_resize(server)
        vm, record = self.xapi.vm_of(server['id'])
        root = self.xapi.x.VBD.get_VDI(record['VBDs'][0])
        self.say('   %s in %.1f s: Nova says flavor %s on %s; xapi says '
                 '%s MiB, %s vCPUs, root VDI %d GiB, on %s, %s'
                 % (server['status'], time.time() - moving,
                    server['flavor']['original_name'],
                    server['OS-EXT-SRV-ATTR:host'],
                    int(record['memory_static_max']) // MIB,
                    record['VCPUs_max'],
                    int(self.xapi.x.VDI.get_virtual_size(root)) // GIB,
                    self.xapi.x.host.get_name_label(record['resident_on']),
                    record['power_state']))
        if self.keep:
            return self.interact(server)
        self.say('\n8. DELETE /servers/%s ...' % server['id'])
        self._delete_server(server)
        left = self.xapi.objects_of(server['id'])
        self.say('   left in the pool for this server: %s'
                 % ', '.join('%d %s' % (len(v), k) for k, v in
                             sorted(left.items())))
        assert not any(left.values()), left
        self.say('\nDone in %.1f s. Run with --keep to keep the server and '
                 'explore it from a Python prompt.' % (time.time() - started))

    def show(self, server):
        x = self.xapi.x
        vm, record = self.xapi.vm_of(server['id'])
        host = x.host.get_record(record['resident_on'])
        root = [x.VBD.get_VDI(v) for v in record['VBDs']
                if x.VBD.get_userdevice(v) == '0'][0]
        head = self.xapi.vdi_bytes(root, len(IMAGE_TEXT))
        vif = x.VIF.get_record(record['VIFs'][0])
        flavor = self.api.get_flavor(server['flavor'].get('id') or
                                     self.flavor('m1.small')['id'])
        nova = [
            ('id', server['id']),
            ('name', server['name']),
            ('status', server['status']),
            ('power state', {1: 'Running'}.get(
                server['OS-EXT-STS:power_state'],
                server['OS-EXT-STS:power_state'])),
            ('host', server['OS-EXT-SRV-ATTR:hypervisor_hostname']),
            ('flavor', '%s (%d MiB, %d vCPU, %d GB)' % (
                server['flavor']['original_name'], flavor['ram'],
                flavor['vcpus'], flavor['disk'])),
            ('address', ', '.join(a['addr'] for n in server['addresses']
                                  .values() for a in n)),
            ('MAC', ', '.join(a['OS-EXT-IPS-MAC:mac_addr'] for n in
                              server['addresses'].values() for a in n)),
        ]
        xapi = [
            ('VM uuid', record['uuid']),
            ('name_label', record['name_label']),
            ('other_config nova_uuid', record['other_config']['nova_uuid']),
            ('power_state', record['power_state']),
            ('resident_on', '%s (%s)' % (host['name_label'],
                                         host['address'])),
            ('memory / VCPUs', '%d MiB / %s' % (
                int(record['memory_static_max']) // MIB,
                record['VCPUs_max'])),
            ('root VDI', '%d GiB, starts %r' % (
                int(x.VDI.get_virtual_size(root)) // 1024 // MIB,
                head.decode().strip())),
            ('VIF', '%s on bridge %s' % (vif['MAC'], x.network.get_bridge(
                vif['network']))),
        ]
        self.say('\n5. The same server, seen from both sides:\n')
        self.say(columns("Nova's view (GET /servers/ID)", nova,
                         "xapi's view (XenAPI VM record)", xapi))

    def interact(self, server):
        self.say('\nEverything keeps running until you leave the prompt '
                 '(Ctrl-D); then it is all removed.\n'
                 'XenAPI: %s  user %s  password %s\n'
                 'Try:  nova.get_servers()   xapi.VM.get_all_records()   '
                 'nova.delete_server(server["id"])'
                 % (self.xapi.url, self.xapi.username, self.xapi.password))
        code.interact(banner='', local={'nova': self.api, 'xapi': self.xapi.x,
                                        'server': server, 'demo': self})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--keep', action='store_true',
                        help='keep the server and open a Python prompt')
    args = parser.parse_args(argv)
    Demo.keep = args.keep
    # nova logs its shutdown after the test's log capture has ended
    logging.getLogger('nova.thread_pool_factory').setLevel(logging.WARNING)
    result = unittest.TestResult()
    Demo('runTest').run(result)
    for _, trace in result.errors + result.failures:
        sys.stderr.write(trace)
    return 0 if result.wasSuccessful() else 1


if __name__ == '__main__':
    sys.exit(main())
