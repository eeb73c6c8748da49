"""python -m xapisim: serve simulated XCP-ng pools on loopback."""

import argparse
import json
import os
import signal
import sys
import threading

import xapisim
from xapisim.devices import DeviceError
from xapisim.netns import Dom0NetError


def parse(argv):
    """The Simulator's keyword arguments, as a namespace."""
    return parse_command(argv)[0]


def parse_command(argv):
    """(the Simulator's arguments, whether to stop with the parent)."""
    p = argparse.ArgumentParser(
        prog='python -m xapisim',
        description='Serve simulated XCP-ng pools over XenAPI on loopback. '
                    'Prints one JSON line describing them once serving.')
    p.add_argument('--pools', type=int, default=1)
    p.add_argument('--hosts', type=int, default=1, help='hosts per pool')
    p.add_argument('--state-dir', help='where VDI bytes and dom0 files live '
                   '(default: a temporary directory, removed on exit)')
    p.add_argument('--username', default='root')
    p.add_argument('--password', default='xapisim')
    p.add_argument('--plugins-dir', help='xapi plugins run by '
                   'host.call_plugin (default: the checkout\'s dom0 plugins)')
    p.add_argument('--latency-ms', type=float, default=0.0,
                   help='added to every XML-RPC call')
    p.add_argument('--vm-memory-mib', type=int, default=16384,
                   help='memory for guests on each host')
    p.add_argument('--sr-size-gib', type=int, default=100,
                   help='size of each storage repository')
    p.add_argument('--host-cpus', type=int, default=8)
    p.add_argument('--port', type=int, default=0,
                   help='port shared by all hosts (default: a free one)')
    p.add_argument('--plugin-python', help='interpreter for dom0 plugins '
                   '(default: this one)')
    p.add_argument('--guest-delay', type=float, default=0.05,
                   help='seconds a simulated guest takes to boot or stop')
    p.add_argument('--dom0-bridges', default='br-int',
                   help='comma-separated bridges every dom0 has that xapi '
                        'did not make (an ovn-controller\'s integration '
                        'bridge): a VM with a VIF on an unmanaged network '
                        'starts only where its bridge is one (a directory '
                        'in the dom0\'s sys/class/net; with --dom0-network '
                        'ovs, a bridge of its Open vSwitch)')
    p.add_argument('--devices', metavar='JSON_OR_FILE',
                   help='the PCI devices and GPUs of named hosts, as JSON '
                        'or a JSON file (see xapisim/devices.py and the '
                        'README): xapi\'s PCI, PGPU, GPU_group and '
                        'VGPU_type objects')
    p.add_argument('--transfer-nice', type=int, default=0,
                   help='niceness of the threads that import and export '
                        'VDI bytes over HTTP (a benchmark lets them yield)')
    p.add_argument('--tls', action='store_true',
                   help='serve HTTPS with a certificate signed by a CA made '
                        'for the run (its path is "ca_file" in the JSON line)')
    p.add_argument('--dom0-network', choices=('none', 'ovs'), default='none',
                   help='real dom0 networking: each host a network '
                        'namespace with its own Open vSwitch, VIFs plugged '
                        'as veths into guest namespaces (needs root and '
                        'openvswitch-switch, iproute2, ethtool)')
    p.add_argument('--exit-with-parent', action='store_true',
                   help='stop when the process that started this one ends')
    p.add_argument('--verbose', action='store_true',
                   help='log every HTTP request on stderr')
    args = p.parse_args(argv)
    if args.pools < 1 or args.hosts < 1 or args.pools * args.hosts > 200:
        p.error('--pools and --hosts must be at least 1 (200 hosts at most)')
    exit_with_parent = args.exit_with_parent
    del args.exit_with_parent
    return args, exit_with_parent


def main(argv=None):
    args, exit_with_parent = parse_command(
        sys.argv[1:] if argv is None else argv)
    parent = os.getppid() if exit_with_parent else None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        sim = xapisim.Simulator(**vars(args))
    except (OSError, Dom0NetError, DeviceError) as exc:
        sys.stderr.write('xapisim: cannot serve: %s\n' % exc)
        return 1
    sys.stdout.write(json.dumps(sim.describe()) + '\n')
    sys.stdout.flush()
    for pool in sim.describe()['pools']:
        sys.stderr.write('xapisim: pool %s master %s (%d hosts)\n'
                         % (pool['name_label'], pool['master'],
                            len(pool['hosts'])))
    while not stop.wait(0.5):
        if parent is not None and os.getppid() != parent:
            break       # whoever started it is gone: so is its world
    sim.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main())
