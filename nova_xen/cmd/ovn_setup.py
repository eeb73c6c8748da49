"""``nova-xen-manage ovn-setup``: dom0's Open vSwitch as ML2/OVN needs it.

For the XenServer host this nova-compute manages (found as nova-compute
finds it, from nova.conf), over XenAPI only:

- the chassis identity ovn-controller reads from the ``external_ids`` of
  dom0's ``Open_vSwitch`` row (``system-id``, ``hostname`` =
  ``[DEFAULT]host``, ``ovn-remote``, Geneve with ``ovn-encap-ip`` = the IP
  of this host's PIF on the tunnel network, ``ovn-bridge``,
  ``ovn-bridge-mappings`` onto xapi's PIF bridges), through the
  ``nova_xen_ovs.py`` plugin;
- dom0's firewall: Geneve (UDP 6081); in remote mode also OVSDB and
  OpenFlow, through xapi's ``firewall-port`` (via the same plugin);
- in remote mode (ovn-controller in the domU, driving dom0's switch over
  TLS): the pool's CA certificate ``sdn-controller-ca.pem``
  (``pool.certificate_install``), the pool's ``SDN_controller`` as
  ``pssl`` (xapi then sets dom0's OVSDB manager and SSL), the integration
  bridge's passive OpenFlow target and ``ovn-bridge-remote``.

Everything is planned first (nothing changes while something is wrong:
every problem is said, the exit status is 1); then each change is made
and said in a line.  A second run changes nothing and says so;
``--dry-run`` says what would change.
"""

import argparse
import ipaddress
import re
import sys

from oslo_config import cfg

from nova_xen.cmd import check
from nova_xen import conf as xen_conf
from nova_xen import errors
from nova_xen import network as network_mod
from nova_xen import ovn
from nova_xen import session as session_mod

SDN_CA = 'sdn-controller-ca.pem'
GENEVE = {'port': 6081, 'protocol': 'udp'}
OVSDB_PORT = 6640       # dom0's OVSDB for a pssl SDN controller (xapi's)
MODES = ('remote', 'in-dom0')
_REMOTE_RE = re.compile(r'^(tcp|ssl):[A-Za-z0-9.:\[\]-]+:[0-9]{1,5}\Z|'
                        r'^unix:/[A-Za-z0-9_./-]+\Z')
_PHYSNET_RE = re.compile(r'^[A-Za-z0-9_.-]{1,64}\Z')


class Problem(Exception):
    """Something the command cannot do: a sentence saying why and what to
    do instead."""


def parse_mappings(text):
    """``physnet:bridge[,physnet:bridge]`` as [(physnet, bridge)]."""
    pairs = []
    for item in filter(None, (text or '').split(',')):
        physnet, sep, bridge = item.strip().partition(':')
        if not sep or not _PHYSNET_RE.match(physnet) or not bridge:
            raise Problem('--bridge-mappings: %r is not physnet:bridge '
                          '(e.g. physnet1:xenbr1)' % item)
        if physnet in [p for p, _ in pairs]:
            raise Problem('--bridge-mappings names physical network %s '
                          'twice' % physnet)
        pairs.append((physnet, bridge))
    return pairs


class Plan(object):
    """What this run finds, changes and cannot do; ``say`` prints a line
    (the password of nova.conf never reaches it)."""

    def __init__(self, say, dry_run):
        self.say = say
        self.dry_run = dry_run
        self.problems = []
        self.changes = 0
        self.steps = []     # (description, function making the change)

    def problem(self, text):
        self.problems.append(text)
        self.say('CANNOT %s' % text)

    def ok(self, text):
        self.say('OK %s' % text)

    def change(self, texts, make):
        """``make()`` makes the changes ``texts`` (a sentence or a list
        of them) says."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        self.changes += len(texts)
        self.steps.append((texts, make))
        for text in texts if self.dry_run else ():
            self.say('WOULD %s' % text)

    def run(self):
        """Make the changes, in order; stops at the first that fails."""
        for texts, make in self.steps:
            make()
            for text in texts:
                self.say('CHANGED %s' % text)


class OvnSetup(object):
    """The planning and the changes for one host."""

    def __init__(self, session, host, host_name, bridge, args):
        self.session = session
        self.host = host            # nova_xen.host.Host, discovered
        self.host_name = host_name  # [DEFAULT]host
        self.bridge = bridge        # [xenserver]ovs_integration_bridge
        self.args = args

    def _plugin(self, fn, **params):
        return self.session.call_plugin(self.host.ref, ovn.OVS_PLUGIN, fn,
                                        params)

    def plan(self, plan):
        args = self.args
        try:
            status = self._plugin('ovs_status', bridge=self.bridge)
        except errors.PluginError as exc:
            plan.problem(self._plugin_sentence(exc))
            return
        plan.ok('dom0 of %s runs Open vSwitch %s; bridges %s' % (
            self.host.nodename, status['ovs_version'] or '(version unknown)',
            ', '.join(status['bridges']) or 'none'))
        current = status['external_ids']
        wanted = {
            'system-id': args.system_id or current.get('system-id') or
            self.host.uuid,
            'hostname': self.host_name,
            'ovn-remote': args.sb_remote,
            'ovn-encap-type': 'geneve',
            'ovn-bridge': self.bridge,
        }
        encap_ip = self._encap_ip(plan)
        if encap_ip:
            wanted['ovn-encap-ip'] = encap_ip
        mappings = self._mappings(plan, status['bridges'])
        if mappings:
            wanted['ovn-bridge-mappings'] = mappings
        if args.mode == 'remote':
            wanted['ovn-bridge-remote'] = args.bridge_remote or \
                'ssl:%s:%d' % (self._address(self.host.address),
                               args.openflow_port)
            self._pool_controller(plan)
        elif current.get('ovn-bridge-remote'):
            plan.problem(
                'dom0\'s external_ids:ovn-bridge-remote is %s (from a remote '
                'set-up): an ovn-controller in dom0 would reach br-int '
                'through it; remove it in dom0 (ovs-vsctl remove '
                'Open_vSwitch . external_ids ovn-bridge-remote) or use '
                '--mode remote' % current['ovn-bridge-remote'])
        if current.get('system-id') and \
                current['system-id'] != wanted['system-id']:
            plan.say('NOTE external_ids:system-id changes from %s: Neutron '
                     'then sees a new chassis and the old one stays in the '
                     'southbound database until deleted (ovn-sbctl '
                     'chassis-del %s)' % (current['system-id'],
                                          current['system-id']))
        self._external_ids(plan, wanted)
        if args.mode == 'remote':
            self._integration_bridge(plan)
        self._firewall(plan)

    # -- the pieces ------------------------------------------------------

    def _plugin_sentence(self, exc):
        reason = exc.params[0] if exc.params else errors.why(exc)
        if exc.xapi_code == 'NOVA_XEN_OVS_UNAVAILABLE':
            return ('read the Open vSwitch of host %s\'s dom0: %s; ML2/OVN '
                    'needs dom0\'s network backend to be openvswitch'
                    % (self.host.nodename, reason))
        if exc.xapi_code == 'XENAPI_MISSING_PLUGIN':
            return ('call the %s plugin: it is not installed in the dom0 of '
                    'host %s (install nova-xen\'s dom0 plugins)'
                    % (ovn.OVS_PLUGIN, self.host.nodename))
        return 'use the %s plugin on host %s: %s' % (
            ovn.OVS_PLUGIN, self.host.nodename, errors.why(exc))

    @staticmethod
    def _address(text):
        return '[%s]' % text if ':' in text else text

    def _pif_on(self, net_ref):
        pifs = self.session.call('network.get_PIFs', net_ref)
        for pif in pifs:
            record = self.session.call('PIF.get_record', pif)
            if record['host'] == self.host.ref:
                return record
        return None

    def _encap_ip(self, plan):
        """The IP Geneve tunnels end at: --encap-ip, or the IP of this
        host's PIF on --encap-network (default: its management PIF)."""
        args = self.args
        if args.encap_ip:
            try:
                return str(ipaddress.ip_address(args.encap_ip))
            except ValueError:
                plan.problem('use --encap-ip %r: not an IP address'
                             % args.encap_ip)
                return None
        pifs = self.session.call('PIF.get_all_records_where',
                                 'field "host" = "%s"' % self.host.ref)
        if args.encap_network:
            nets = self.session.call('network.get_all_records')
            matches = [ref for ref, net in nets.items()
                       if args.encap_network in (net['uuid'], net['bridge'],
                                                 net['name_label'])]
            if len(matches) != 1:
                plan.problem(
                    'find --encap-network %r: %s xapi networks have that '
                    'uuid, bridge or name' % (args.encap_network,
                                              len(matches) or 'no'))
                return None
            mine = [p for p in pifs.values() if p['network'] == matches[0]]
            where = 'on network %s' % args.encap_network
        else:
            mine = [p for p in pifs.values() if p['management']]
            where = 'for management'
        if not mine:
            plan.problem('find a PIF of host %s %s: Geneve tunnels need an '
                         'address of this host (--encap-network, or '
                         '--encap-ip)' % (self.host.nodename, where))
            return None
        pif = mine[0]
        address = pif['IP'] or next(
            (a.split('/')[0] for a in pif.get('IPv6') or () if a), '')
        if not address:
            plan.problem('use PIF %s of host %s %s: it has no IP address '
                         '(give it one: xe pif-reconfigure-ip, or pass '
                         '--encap-ip)' % (pif['device'], self.host.nodename,
                                          where))
            return None
        return address

    def _mappings(self, plan, bridges):
        """ovn-bridge-mappings, each bridge one of xapi's PIF bridges of
        this host that exists in dom0."""
        try:
            pairs = parse_mappings(self.args.bridge_mappings)
        except Problem as exc:
            plan.problem(str(exc))
            return None
        good = []
        for physnet, bridge in pairs:
            nets = network_mod.networks_of_bridge(self.session, bridge)
            pif = next((p for p in (self._pif_on(ref) for ref in nets)
                        if p is not None), None)
            if bridge not in bridges:
                plan.problem(
                    'map %s onto %s: dom0 of host %s has no bridge %s (its '
                    'bridges: %s); a provider network maps onto the bridge '
                    'of a PIF\'s xapi network (xenbrN)' % (
                        physnet, bridge, self.host.nodename, bridge,
                        ', '.join(bridges) or 'none'))
            elif pif is None:
                plan.problem(
                    'map %s onto %s: %s is not the bridge of a PIF of host '
                    '%s, so its traffic would never leave the host; use the '
                    'bridge of a PIF\'s xapi network (xenbrN)'
                    % (physnet, bridge, bridge, self.host.nodename))
            else:
                good.append('%s:%s' % (physnet, bridge))
        if len(good) != len(pairs):
            return None
        return ','.join(good)

    def _pool_controller(self, plan):
        """The pool's CA certificate and its SDN_controller (pssl)."""
        args = self.args
        installed = self.session.call('pool.certificate_list')
        if SDN_CA in installed:
            plan.ok('the pool has CA certificate %s (XenAPI does not show '
                    'its content: to replace it, xe '
                    'pool-certificate-uninstall name=%s, then run again)'
                    % (SDN_CA, SDN_CA))
        elif not args.ovsdb_ca:
            plan.problem(
                'let dom0\'s OVSDB trust ovn-controller: the pool has no CA '
                'certificate %s; pass --ovsdb-ca with the CA that signed '
                'the client certificate of this domU\'s ovn-controller'
                % SDN_CA)
        else:
            pem = self._read_pem(plan, args.ovsdb_ca)
            if pem is not None:
                plan.change('install CA certificate %s in the pool (from %s)'
                            % (SDN_CA, args.ovsdb_ca),
                            lambda: self.session.call(
                                'pool.certificate_install', SDN_CA, pem))
        controllers = self.session.call('SDN_controller.get_all_records')
        for record in controllers.values():
            if record['protocol'] == 'pssl':
                plan.ok('the pool\'s SDN controller is pssl: dom0\'s OVSDB '
                        'listens for TLS clients on %d' % OVSDB_PORT)
                return
            plan.problem(
                'make the pool\'s SDN controller pssl:%d: the pool already '
                'has one (%s %s:%s), a single slot that Xen Orchestra\'s '
                'SDN controller also uses; forget it (xe '
                'sdn-controller-forget) only if nothing uses it, or run '
                'ovn-controller in dom0 (--mode in-dom0)' % (
                    OVSDB_PORT, record['protocol'],
                    record['address'] or '*', record['port']))
            return
        plan.change('introduce the pool\'s SDN controller pssl:%d (xapi '
                    'makes dom0\'s OVSDB listen for TLS clients on every '
                    'host of the pool and opens the port)' % OVSDB_PORT,
                    lambda: self.session.call('SDN_controller.introduce',
                                              'pssl', '', '0'))

    @staticmethod
    def _read_pem(plan, path):
        try:
            with open(path) as fh:
                text = fh.read()
        except OSError as exc:
            plan.problem('read --ovsdb-ca %s: %s' % (path, exc.strerror))
            return None
        if '-----BEGIN CERTIFICATE-----' not in text:
            plan.problem('use --ovsdb-ca %s: it holds no PEM certificate'
                         % path)
            return None
        return text

    def _external_ids(self, plan, wanted):
        try:
            found = self._plugin('set_external_ids', external_ids=wanted,
                                 dry_run=True)
        except errors.PluginError as exc:
            plan.problem(self._plugin_sentence(exc))
            return
        changing = {c['key'] for c in found['changes']}
        for key in sorted(set(wanted) - changing):
            plan.ok('external_ids:%s=%s' % (key, wanted[key]))
        if found['changes']:
            plan.change(['external_ids:%s=%s (was %s)' % (
                c['key'], c['new'], 'unset' if c['old'] is None
                else c['old']) for c in found['changes']],
                lambda: self._plugin('set_external_ids',
                                     external_ids=wanted))

    def _integration_bridge(self, plan):
        # on every address of dom0, as xapi's pssl OVSDB listens: the
        # domU may reach dom0 through another network than xapi's
        # management address (and the firewall opens the port anyway)
        target = 'pssl:%d' % self.args.openflow_port
        try:
            found = self._plugin('integration_bridge', bridge=self.bridge,
                                 controller=target, dry_run=True)
        except errors.PluginError as exc:
            plan.problem(self._plugin_sentence(exc))
            return
        if not found['changes']:
            plan.ok('%s: fail_mode secure, OpenFlow target %s' % (
                self.bridge, target))
        else:
            plan.change(found['changes'], lambda: self._plugin(
                'integration_bridge', bridge=self.bridge, controller=target))

    def _firewall(self, plan):
        args = self.args
        if args.skip_firewall:
            plan.say('SKIPPED dom0 firewall (--skip-firewall): open %s '
                     'yourself' % self._port_list(self._ports()))
            return
        ports = self._ports()
        try:
            found = self._plugin('open_ports', ports=ports, dry_run=True)
        except errors.PluginError as exc:
            if exc.xapi_code == 'NOVA_XEN_FIREWALL_UNAVAILABLE':
                plan.problem('open %s in the firewall of host %s\'s dom0: '
                             '%s; or pass --skip-firewall once they are '
                             'open' % (self._port_list(ports),
                                       self.host.nodename, exc.params[0]))
            else:
                plan.problem(self._plugin_sentence(exc))
            return
        if found['open']:
            plan.ok('dom0 firewall: %s open' % self._port_list(found['open']))
        if found['opened']:
            opening = found['opened']
            plan.change('dom0 firewall: open %s' % self._port_list(opening),
                        lambda: self._plugin('open_ports', ports=opening))

    def _ports(self):
        ports = [dict(GENEVE)]
        if self.args.mode == 'remote':
            ports += [{'port': OVSDB_PORT, 'protocol': 'tcp'},
                      {'port': self.args.openflow_port, 'protocol': 'tcp'}]
        return ports

    @staticmethod
    def _port_list(ports):
        return ', '.join('%s %d' % (p['protocol'], p['port']) for p in ports)


USAGE = 'nova-xen-manage ovn-setup --sb-remote ssl:IP:6642 [options]'
DESCRIPTION = """\
Set up dom0's Open vSwitch of the XenServer host this nova-compute
manages for ML2/OVN, over XenAPI only: the chassis external_ids
(hostname = [DEFAULT]host), Geneve, provider bridge mappings, dom0's
firewall, and in remote mode the pool's SDN controller and CA
certificate.  Reads nova.conf as nova-compute does.  Says each change in
a line (CHANGED, or WOULD with --dry-run), each thing it cannot do
(CANNOT: then nothing is changed); a second run changes nothing."""


def parser():
    p = argparse.ArgumentParser(
        prog='nova-xen-manage ovn-setup', usage=USAGE,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='exit status: 0 done (or nothing to do); 1 a problem, '
        'nothing changed, or a change failed; 2 wrong usage.')
    p.add_argument('--sb-remote', required=True, metavar='REMOTE',
                   help='the OVN southbound database, as ovn-controller '
                   'connects to it (external_ids:ovn-remote), e.g. '
                   'ssl:192.0.2.10:6642')
    p.add_argument('--mode', choices=MODES, default='remote',
                   help='where this host\'s ovn-controller runs: remote '
                   '(default: in this domU, driving dom0\'s switch over '
                   'TLS through local proxies, see the README) or in-dom0')
    p.add_argument('--encap-network', metavar='NETWORK',
                   help='the xapi network (uuid, bridge or name) whose PIF '
                   'address Geneve tunnels end at (default: the management '
                   'PIF\'s)')
    p.add_argument('--encap-ip', metavar='IP',
                   help='the tunnel address itself (instead of a PIF\'s)')
    p.add_argument('--bridge-mappings', metavar='PHYSNET:BRIDGE[,...]',
                   help='provider networks onto xapi\'s PIF bridges, e.g. '
                   'physnet1:xenbr1; each bridge must exist in dom0')
    p.add_argument('--system-id', metavar='ID',
                   help='the chassis name (default: the one set, else the '
                   'xapi host uuid)')
    p.add_argument('--ovsdb-ca', metavar='PEM',
                   help='remote mode: the CA that signed ovn-controller\'s '
                   'client certificate, installed as the pool\'s %s'
                   % SDN_CA)
    p.add_argument('--openflow-port', type=int, default=6653,
                   metavar='PORT', help='remote mode: the integration '
                   'bridge\'s OpenFlow TLS port (default 6653)')
    p.add_argument('--bridge-remote', metavar='REMOTE',
                   help='remote mode: how ovn-controller reaches br-int '
                   '(external_ids:ovn-bridge-remote; default '
                   'ssl:<dom0 address>:<openflow port>; e.g. a unix: '
                   'socket of a local TLS proxy)')
    p.add_argument('--skip-firewall', action='store_true',
                   help='leave dom0\'s firewall alone (ports opened '
                   'otherwise)')
    p.add_argument('--dry-run', action='store_true',
                   help='say what would change, change nothing')
    p.add_argument('--config-file', action='append', default=[],
                   metavar='FILE', help='nova.conf (default: as '
                   'nova-compute finds it, /etc/nova/nova.conf)')
    p.add_argument('--config-dir', action='append', default=[],
                   metavar='DIR')
    return p


def main(argv, say=print):
    """``nova-xen-manage ovn-setup ARGS``: the exit status."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code
    oslo = []
    for path in args.config_file:
        oslo += ['--config-file', path]
    for path in args.config_dir:
        oslo += ['--config-dir', path]
    try:
        xen_conf.CONF(oslo, project='nova', prog='nova-xen-manage ovn-setup')
    except cfg.Error as exc:
        print('nova-xen-manage ovn-setup: %s' % exc, file=sys.stderr)
        return 2
    return run(args, say)


def run(args, say=print):
    """Read nova.conf, plan, change; the exit status."""
    conf = xen_conf.CONF
    checks = check.StartupChecks(conf)
    secret = conf.xenserver.connection_password

    def out(line):
        say(line.replace(secret, '***') if secret else line)
    plan = Plan(out, args.dry_run)
    try:
        if args.sb_remote and not all(_REMOTE_RE.match(r) for r in
                                      args.sb_remote.split(',')):
            raise Problem('--sb-remote %r: give the OVN southbound database '
                          'as ssl:IP:PORT (or tcp:, unix:), comma-separated'
                          % args.sb_remote)
        if args.bridge_remote and not _REMOTE_RE.match(args.bridge_remote):
            raise Problem('--bridge-remote %r: give it as ssl:IP:PORT (or '
                          'tcp:, unix:)' % args.bridge_remote)
        session_mod.check_url(conf.xenserver.connection_url)
        checks.tls()
        session = checks.login()[1]
    except (Problem, errors.StartupError) as exc:
        out('CANNOT %s' % exc)
        return 1
    except Exception as exc:
        out('CANNOT log in to xapi: %s' % errors.why(exc))
        return 1
    try:
        checks.session = session
        host = checks.discover()[1]
        out('host %s (%s) for nova-compute host %s; ovn-controller %s' % (
            host.nodename, host.uuid, conf.host,
            'in this domU, driving dom0\'s Open vSwitch remotely'
            if args.mode == 'remote' else 'in dom0'))
        OvnSetup(session, host, conf.host,
                 conf.xenserver.ovs_integration_bridge, args).plan(plan)
        if plan.problems:
            out('nothing changed: %d problem%s above' % (
                len(plan.problems), 's' if len(plan.problems) > 1 else ''))
            return 1
        if not plan.changes:
            out('nothing to change: host %s is set up for ML2/OVN'
                % host.nodename)
            return 0
        if plan.dry_run:
            out('dry run: %d change%s would be made' % (
                plan.changes, 's' if plan.changes > 1 else ''))
            return 0
        plan.run()
        out('%d change%s made' % (plan.changes,
                                  's' if plan.changes > 1 else ''))
        return 0
    except Exception as exc:
        out('FAILED %s' % check._sentence(exc))
        return 1
    finally:
        session.close()
