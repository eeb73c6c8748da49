"""What the real dom0 networking tests share (test_dom0_network,
test_dom0_lifecycle): xapisim plugs VIFs as XCP-ng's scripts do.

A world with ``dom0_network='ovs'``: each host a network namespace with
its own Open vSwitch (userspace datapath), each running VM a guest
namespace whose ``eth<n>`` is the peer of ``vif<domid>.<n>`` in its
host's dom0.  Checked through the real XenAPI client, the switches'
databases and real frames between the guests.  These tests need root and
the Debian packages openvswitch-switch, iproute2 and ethtool (``./run
tests`` installs them): without them they fail, saying why; they never
skip.
"""

import json
import os
import select
import socket
import subprocess
import time

import XenAPI

from xapisim import netns

from tests import polling
from tests import records
from tests.xapisim.base import SimTestCase
from tests.xapisim.test_plugins import PLUGINS

# generous bounds for a loaded machine: the waits end when the state is
# reached, these only bound a failure
WAIT = 60.0
TENANT = '203.0.113.%d/24'
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def wait_for(what, probe, timeout=WAIT):
    """``probe()``'s first true value; fails after ``timeout``."""
    return polling.until(probe, what, timeout)


def run(argv):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=120)
    if proc.returncode != 0:
        raise AssertionError('%s: %s' % (' '.join(argv),
                                         proc.stderr.decode()))
    return proc.stdout.decode()


def links(ns):
    """The network devices of namespace ``ns``, by name."""
    return {link['ifname']: link
            for link in json.loads(run(['ip', '-n', ns, '-j', 'link']))}


def exchange(sender_ns, receiver_ns, address, port=5005, timeout=WAIT):
    """A UDP datagram from ``sender_ns`` reaches ``address`` in
    ``receiver_ns``; sent again every 0.2 s (ARP, learning and tunnels may
    drop the first ones) until it arrives; the source it came from."""
    with netns.inside(receiver_ns):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with netns.inside(sender_ns):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind((address, port))
        payload = os.urandom(8).hex().encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            tx.sendto(payload, (address, port))
            if select.select([rx], [], [], 0.2)[0]:
                data, source = rx.recvfrom(100)
                if data == payload:
                    return source[0]
        raise AssertionError('no datagram from %s reached %s in %s'
                             % (sender_ns, address, receiver_ns))
    finally:
        rx.close()
        tx.close()


class Dom0NetworkTestCase(SimTestCase):
    pools = 2
    hosts = 2
    sim_options = {'dom0_network': 'ovs', 'guest_delay': 0.01,
                   'plugins_dir': PLUGINS}

    # -- the world ---------------------------------------------------------

    def host_desc(self, pool=0, index=0):
        return self.world['pools'][pool]['hosts'][index]

    def host_ref(self, pool=0, index=0, x=None):
        return (x or self.x).host.get_by_uuid(self.host_desc(pool,
                                                             index)['uuid'])

    def desc_of(self, host_ref, x=None):
        uuid = (x or self.x).host.get_uuid(host_ref)
        for pool in self.world['pools']:
            for host in pool['hosts']:
                if host['uuid'] == uuid:
                    return host
        raise AssertionError('no host %s' % uuid)

    def vsctl(self, host, *args):
        return run(['ovs-vsctl', '--db=' + host['dom0']['ovsdb'],
                    '--timeout=60'] + list(args))

    def interface(self, host, name):
        """An Interface row's name, external_ids, ofport (None: no row)."""
        out = json.loads(self.vsctl(
            host, '--format=json', '--columns=external_ids,ofport', 'find',
            'Interface', 'name=%s' % name))
        if not out['data']:
            return None
        ids, ofport = out['data'][0]
        return {'external_ids': dict(ids[1]), 'ofport': ofport}

    def bridge(self, host, name):
        out = json.loads(self.vsctl(
            host, '--format=json', '--columns=fail_mode,external_ids,'
            'other_config,datapath_type', 'find', 'Bridge', 'name=%s' % name))
        if not out['data']:
            return None
        fail_mode, ids, other, datapath = out['data'][0]
        return {'fail_mode': fail_mode if isinstance(fail_mode, str)
                else None, 'external_ids': dict(ids[1]),
                'other_config': dict(other[1]), 'datapath_type': datapath}

    def vif_ports(self, host):
        out = json.loads(self.vsctl(host, '--format=json', '--columns=name',
                                    'list', 'Interface'))
        return sorted(row[0] for row in out['data']
                      if row[0].startswith('vif'))

    def guest_ns(self, vm, x=None):
        uuid = (x or self.x).VM.get_uuid(vm)
        return self.control().guest_netns(uuid)

    # -- objects ---------------------------------------------------------

    def new_network(self, x=None, **extra):
        x = x or self.x
        record = {'name_label': 'dom0net-test', 'name_description': '',
                  'MTU': '1500', 'other_config': {}}
        record.update(extra)
        net = x.network.create(record)
        session = self.session if x is self.x else None

        def destroy():
            try:
                (session.xenapi if session else x).network.destroy(net)
            except XenAPI.Failure:
                pass
        self.addCleanup(destroy)
        return net

    def vm_with_vifs(self, networks, x=None, vm_other_config=None,
                     vif_other_config=None, **extra):
        x = x or self.x
        vm = x.VM.create(records.vm_record(
            'dom0net', 128, 1, other_config=vm_other_config, **extra))
        self.addCleanup(self.remove_vm_in, x, vm)
        for device, net in enumerate(networks):
            x.VIF.create({
                'VM': vm, 'network': net, 'device': str(device), 'MAC': '',
                'MTU': '1500',
                'other_config': dict((vif_other_config or {}).get(device,
                                                                  {})),
                'qos_algorithm_type': '', 'qos_algorithm_params': {}})
        return vm

    def vifs(self, vm, x=None):
        x = x or self.x
        return sorted((x.VIF.get_record(v) for v in x.VM.get_VIFs(vm)),
                      key=lambda r: int(r['device']))

    def start_on(self, vm, pool=0, index=0, x=None):
        (x or self.x).VM.start_on(vm, self.host_ref(pool, index, x), False,
                                  False)
        return self.host_desc(pool, index)

    def assert_unplugged(self, host, domid, guest_ns=None, devices=(0,)):
        """No port, no device of domain ``domid`` in ``host``'s dom0."""
        for n in devices:
            name = 'vif%s.%d' % (domid, n)
            self.assertIsNone(self.interface(host, name))
            self.assertNotIn(name, links(host['dom0']['netns']))
        if guest_ns is not None:
            self.assertNotIn(guest_ns, netns.list_netns(guest_ns))

    def iface_id(self, host, name):
        row = self.interface(host, name)
        return row and row['external_ids'].get('iface-id')
