#!/usr/bin/env python3
"""nova-xen's Open vSwitch plugin: dom0's switch as ML2/OVN needs it.

With Neutron's ML2/OVN, ovn-controller (in dom0, or in nova-compute's
domU driving dom0's Open vSwitch remotely) owns the integration bridge
br-int and reads its chassis identity from the ``external_ids`` of
dom0's ``Open_vSwitch`` row.  nova-compute (start-up checks,
``nova-xen-manage check``) reads them here; ``set_external_ids``,
``integration_bridge`` and ``open_ports`` are for a setup command that
writes them through XenAPI only (``nova-xen-manage ovn-setup``).

    host.call_plugin(host, 'nova_xen_ovs.py', FN, {'params': JSON})

ovs_status {"bridge": "br-int"}
    -> {"bridge": name, "exists": bool, "fail_mode": "secure",
       "standalone" or "" (none set: OVS then acts as standalone),
       "datapath_type": "" (system) or "netdev", "controller": [target],
       "bridges": [every bridge's name], "external_ids": {the OVN keys
       of the Open_vSwitch row that are set}, "ovs_version": str}
set_external_ids {"external_ids": {key: value}, "dry_run": false}
    -> {"changes": [{"key", "old" (null: unset), "new"}]}: the keys of
       the Open_vSwitch row whose value differs, set in one transaction
       (none with dry_run).  Only the keys in OVN_KEYS are accepted.
integration_bridge {"bridge": "br-int", "controller": "pssl:6653",
    "dry_run": false}
    -> {"changes": [what was (or would be) done, one sentence each]}:
       the bridge exists with fail_mode secure, in-band control off and
       exactly this OpenFlow controller target (for an ovn-controller
       that reaches dom0's switch from outside, OVN >= 24.09's
       ovn-bridge-remote).
open_ports {"ports": [{"port": 6081, "protocol": "udp"}], "dry_run": false}
    -> {"opened": [...], "open": [...]}: ports opened now (or that would
       be) through xapi's own /etc/xapi.d/plugins/firewall-port script
       (iptables' xapi-INPUT chain, saved), and ports an ACCEPT rule
       already opens.

Errors: NOVA_XEN_INVALID_ARGUMENT [name, reason];
NOVA_XEN_OVS_UNAVAILABLE [reason] (no ovs-vsctl, or its database does
not answer: dom0 runs the Linux bridge backend, or ovsdb-server is
down); NOVA_XEN_OVS_FAILED [exit status, message];
NOVA_XEN_FIREWALL_UNAVAILABLE [reason] (no firewall-port script or no
iptables: a dom0 whose xapi uses firewalld); NOVA_XEN_FIREWALL_FAILED
[command, exit status, message].

ovs-vsctl runs without ``--db``: the default socket,
``$OVS_RUNDIR/db.sock`` (``/var/run/openvswitch`` in dom0).
``NOVA_XEN_OVS_VSCTL``, ``NOVA_XEN_IPTABLES`` and
``NOVA_XEN_FIREWALL_PORT`` in the environment name the commands to use
(a simulator's; xapi never sets them).  Runs on Python 3.6.
"""

import json
import os
import re

import nova_xen_dom0lib as lib

# The keys of the Open_vSwitch row ovn-controller reads (ovn-controller(8)).
OVN_KEYS = ('system-id', 'hostname', 'ovn-remote', 'ovn-encap-type',
            'ovn-encap-ip', 'ovn-bridge', 'ovn-bridge-mappings',
            'ovn-bridge-remote', 'ovn-bridge-datapath-type',
            'ovn-cms-options')
FIREWALL_PORT = '/etc/xapi.d/plugins/firewall-port'
# chains whose ACCEPT rules open a port of dom0 (XCP-ng's iptables setup:
# RH-Firewall-1-INPUT, and xapi-INPUT where firewall-port adds rules)
INPUT_CHAINS = ('INPUT', 'RH-Firewall-1-INPUT', 'xapi-INPUT')
VSCTL_TIMEOUT = 10
MAX_PORTS = 8

_BRIDGE_RE = re.compile(r'^[A-Za-z0-9_.-]{1,15}\Z')
# what a value of ours may hold: addresses, lists, mappings, options;
# never a quote, a backslash or white space (ovs-vsctl parses values)
_VALUE_RE = re.compile(r'^[A-Za-z0-9_.:,=/@\[\]-]{1,1024}\Z')
_CONTROLLER_RE = re.compile(r'^p(tcp|ssl):[0-9]{1,5}(:[0-9A-Fa-f.:\[\]]+)?\Z')


# -- arguments ------------------------------------------------------------

def _only(params, names):
    for name in sorted(params):
        if name not in names:
            raise lib.InvalidArgument(name, 'is not an argument of this call')


def _bridge(params):
    bridge = lib.arg(params, 'bridge', 'str', max_len=15)
    if not _BRIDGE_RE.match(bridge):
        raise lib.InvalidArgument('bridge', 'must be a bridge name (letters, '
                                  'digits, _ . -; up to 15)')
    return bridge


def _external_ids(params):
    wanted = lib.arg(params, 'external_ids', 'dict')
    if not wanted:
        raise lib.InvalidArgument('external_ids', 'must name at least one key')
    for key, value in sorted(wanted.items()):
        if key not in OVN_KEYS:
            raise lib.InvalidArgument('external_ids', '%s is not one of %s'
                                      % (key, ', '.join(OVN_KEYS)))
        if not isinstance(value, str) or not _VALUE_RE.match(value):
            raise lib.InvalidArgument(
                'external_ids', 'the value of %s must be 1 to 1024 letters, '
                'digits or _ . : , = / @ [ ] -' % key)
    return wanted


def _ports(params):
    ports = lib.arg(params, 'ports', 'list', max_len=MAX_PORTS)
    if not ports:
        raise lib.InvalidArgument('ports', 'must list at least one port')
    found = []
    for item in ports:
        if not isinstance(item, dict) or sorted(item) != ['port', 'protocol']:
            raise lib.InvalidArgument('ports', 'each must be {"port": N, '
                                      '"protocol": "tcp" or "udp"}')
        port = lib.arg(item, 'port', 'int', min=1, max=65535)
        protocol = lib.arg(item, 'protocol', 'str', choices=('tcp', 'udp'))
        if (port, protocol) not in found:
            found.append((port, protocol))
    return found


# -- ovs-vsctl ------------------------------------------------------------

def _vsctl(args, write=False):
    """Run ovs-vsctl on dom0's database; its stdout."""
    vsctl = lib.find_command('ovs-vsctl', 'NOVA_XEN_OVS_VSCTL')
    if vsctl is None:
        lib.fail('NOVA_XEN_OVS_UNAVAILABLE',
                 'ovs-vsctl is not installed in dom0: it runs the Linux '
                 'bridge network backend, not Open vSwitch')
    # --no-wait: the database is what ovn-controller reads; nothing here
    # needs ovs-vswitchd to have applied it
    argv = [vsctl, '--timeout=%d' % VSCTL_TIMEOUT] + \
        (['--no-wait'] if write else []) + args
    status, out, err = lib.run(argv, timeout=VSCTL_TIMEOUT + 20)
    message = err.decode('utf-8', 'replace').strip()[-2000:]
    if status is None:
        lib.fail('NOVA_XEN_OVS_UNAVAILABLE', 'ovs-vsctl did not answer in '
                 '%d seconds' % (VSCTL_TIMEOUT + 20))
    if status != 0:
        if 'database connection failed' in message or status < 0:
            # killed by a signal: ovs-vsctl's own --timeout (SIGALRM)
            lib.fail('NOVA_XEN_OVS_UNAVAILABLE', message or
                     'ovs-vsctl timed out: ovsdb-server does not answer')
        lib.fail('NOVA_XEN_OVS_FAILED', status, message)
    return out.decode('utf-8', 'replace')


def _atom(value):
    """An OVSDB JSON datum as Python: a set as a list, a map as a dict."""
    if isinstance(value, list) and len(value) == 2:
        kind, body = value
        if kind == 'set':
            return [_atom(v) for v in body]
        if kind == 'map':
            return dict((_atom(k), _atom(v)) for k, v in body)
        if kind in ('uuid', 'named-uuid'):
            return body
    return value


def _scalar(value):
    """An optional column (a set of at most one) as its value, or ''."""
    value = _atom(value)
    if isinstance(value, list):
        return value[0] if value else ''
    return value


def _tables(text):
    """Each table a ``--format=json list`` printed: a list of rows."""
    tables = []
    for line in text.splitlines():
        if not line.strip():
            continue
        doc = json.loads(line)
        tables.append([dict(zip(doc['headings'], row))
                       for row in doc['data']])
    return tables


def _read():
    """(Open_vSwitch row, {bridge: row}, {controller uuid: target})."""
    out = _vsctl(['--format=json',
                  '--', '--columns=external_ids,ovs_version',
                  'list', 'Open_vSwitch',
                  '--', '--columns=name,fail_mode,datapath_type,controller',
                  'list', 'Bridge',
                  '--', '--columns=_uuid,target', 'list', 'Controller'])
    switch, bridges, controllers = _tables(out)
    if not switch:
        lib.fail('NOVA_XEN_OVS_FAILED', 0, 'the Open_vSwitch table is '
                 'empty: the database was never initialised')
    targets = dict((_atom(c['_uuid']), _atom(c['target']))
                   for c in controllers)
    return (switch[0], dict((b['name'], b) for b in bridges), targets)


def ovs_status(session, params):
    _only(params, ('bridge',))
    name = _bridge(params)
    switch, bridges, targets = _read()
    external_ids = _atom(switch['external_ids'])
    bridge = bridges.get(name)
    controller = []
    if bridge is not None:
        uuids = _atom(bridge['controller'])
        uuids = uuids if isinstance(uuids, list) else [uuids]
        controller = sorted(targets.get(u, u) for u in uuids)
    return {
        'bridge': name,
        'exists': bridge is not None,
        'fail_mode': _scalar(bridge['fail_mode']) if bridge else '',
        'datapath_type': bridge['datapath_type'] if bridge else '',
        'controller': controller,
        'bridges': sorted(bridges),
        'external_ids': dict((k, v) for k, v in external_ids.items()
                             if k in OVN_KEYS),
        'ovs_version': _scalar(switch['ovs_version']),
    }


def set_external_ids(session, params):
    _only(params, ('external_ids', 'dry_run'))
    wanted = _external_ids(params)
    dry_run = lib.arg(params, 'dry_run', 'bool', False)
    switch, _, _ = _read()
    current = _atom(switch['external_ids'])
    changes = [{'key': key, 'old': current.get(key), 'new': value}
               for key, value in sorted(wanted.items())
               if current.get(key) != value]
    if changes and not dry_run:
        # values are quoted: ovs-vsctl would split "a:b,c" otherwise
        _vsctl(['set', 'Open_vSwitch', '.'] +
               ['external_ids:%s="%s"' % (c['key'], c['new'])
                for c in changes], write=True)
        for change in changes:
            lib.log('ovs: external_ids:%s=%s (was %s)', change['key'],
                    change['new'], change['old'])
    return {'changes': changes}


def integration_bridge(session, params):
    _only(params, ('bridge', 'controller', 'dry_run'))
    name = _bridge(params)
    controller = lib.arg(params, 'controller', 'str', max_len=64)
    if not _CONTROLLER_RE.match(controller):
        raise lib.InvalidArgument('controller', 'must be a passive OpenFlow '
                                  'target: pssl:PORT[:IP] or ptcp:PORT[:IP]')
    dry_run = lib.arg(params, 'dry_run', 'bool', False)
    _, bridges, targets = _read()
    bridge = bridges.get(name)
    changes, args = [], []
    if bridge is None:
        changes.append('create bridge %s (fail_mode secure, in-band control '
                       'off)' % name)
        args += ['--', '--may-exist', 'add-br', name,
                 '--', 'set', 'Bridge', name, 'fail_mode=secure',
                 'other_config:disable-in-band=true']
        current = []
    else:
        if _scalar(bridge['fail_mode']) != 'secure':
            changes.append('set fail_mode secure on %s (was %s)' % (
                name, _scalar(bridge['fail_mode']) or 'unset'))
            args += ['--', 'set', 'Bridge', name, 'fail_mode=secure']
        uuids = _atom(bridge['controller'])
        uuids = uuids if isinstance(uuids, list) else [uuids]
        current = sorted(targets.get(u, u) for u in uuids)
    if current != [controller]:
        changes.append('set the OpenFlow controller of %s to %s (was %s)' % (
            name, controller, ', '.join(current) or 'none'))
        args += ['--', 'set-controller', name, controller]
    if args and not dry_run:
        _vsctl(args, write=True)
        for change in changes:
            lib.log('ovs: %s', change)
    return {'changes': changes}


# -- dom0's firewall ------------------------------------------------------

def _iptables():
    path = lib.find_command('iptables', 'NOVA_XEN_IPTABLES')
    if path is None:
        lib.fail('NOVA_XEN_FIREWALL_UNAVAILABLE', 'iptables is not '
                 'installed in dom0: open the ports with its own firewall')
    return path


def _firewall_port():
    path = os.environ.get('NOVA_XEN_FIREWALL_PORT') or FIREWALL_PORT
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        lib.fail('NOVA_XEN_FIREWALL_UNAVAILABLE', 'xapi\'s %s script is '
                 'missing: this dom0 manages its firewall otherwise '
                 '(firewalld): open the ports with it' % FIREWALL_PORT)
    return path


def _accepted(iptables):
    """{(port, protocol)} an ACCEPT rule of an input chain opens."""
    status, out, err = lib.run([iptables, '-w', '-S'], timeout=30)
    if status != 0:
        lib.fail('NOVA_XEN_FIREWALL_FAILED', 'iptables -S', status,
                 err.decode('utf-8', 'replace').strip()[-2000:])
    found = set()
    for line in out.decode('utf-8', 'replace').splitlines():
        words = line.split()
        if len(words) < 2 or words[0] != '-A' or words[1] not in INPUT_CHAINS:
            continue
        if '-j' not in words or words[words.index('-j') + 1:][:1] != \
                ['ACCEPT']:
            continue
        if '-p' not in words or '--dport' not in words:
            continue
        protocol = words[words.index('-p') + 1:][:1]
        port = words[words.index('--dport') + 1:][:1]
        if protocol and port and port[0].isdigit():
            found.add((int(port[0]), protocol[0]))
    return found


def open_ports(session, params):
    _only(params, ('ports', 'dry_run'))
    ports = _ports(params)
    dry_run = lib.arg(params, 'dry_run', 'bool', False)
    iptables = _iptables()
    script = _firewall_port()
    accepted = _accepted(iptables)
    opened, already = [], []
    for port, protocol in ports:
        entry = {'port': port, 'protocol': protocol}
        if (port, protocol) in accepted:
            already.append(entry)
            continue
        opened.append(entry)
        if dry_run:
            continue
        status, _, err = lib.run([script, 'open', str(port), protocol],
                                 timeout=60)
        if status != 0:
            lib.fail('NOVA_XEN_FIREWALL_FAILED',
                     'firewall-port open %d %s' % (port, protocol), status,
                     err.decode('utf-8', 'replace').strip()[-2000:])
        lib.log('firewall: opened %s %d', protocol, port)
    if opened and not dry_run:
        missing = [e for e in opened
                   if (e['port'], e['protocol']) not in _accepted(iptables)]
        if missing:
            lib.fail('NOVA_XEN_FIREWALL_FAILED', 'firewall-port open', 0,
                     'no ACCEPT rule for %s afterwards' % ', '.join(
                         '%s %d' % (e['protocol'], e['port'])
                         for e in missing))
    return {'opened': opened, 'open': already}


if __name__ == '__main__':
    lib.main({'ovs_status': ovs_status, 'set_external_ids': set_external_ids,
              'integration_bridge': integration_bridge,
              'open_ports': open_ports})
