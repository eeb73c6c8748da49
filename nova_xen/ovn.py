"""What ML2/OVN needs of a nova-xen compute, checked in a sentence each.

Neutron's OVN mechanism driver binds a port to host H only if an "OVN
Controller agent" whose host is H is alive: an ovn-controller whose
chassis hostname (dom0's Open vSwitch ``external_ids:hostname``) is
this nova-compute's ``[DEFAULT]host``.  ovn-controller owns dom0's
integration bridge (it creates it, fail mode secure), where the VIFs go.
Two checks, used by nova-compute's start-up (a WARNING each: Neutron or
ovn-controller may come up after nova-compute) and by ``nova-xen-manage
check`` (a FAIL line):

- ``chassis``: Neutron's agents API (``GET /v2.0/agents``), with the
  ``[neutron]`` credentials of nova.conf, as nova-compute talks to
  Neutron;
- ``dom0_bridge``: dom0's Open vSwitch, read by the ``nova_xen_ovs.py``
  plugin, and the bridge's xapi network.

Whether their findings are failures depends on whether Neutron uses
ML2/OVN: ``[xenserver]neutron_backend``, or (``auto``) whether Neutron
lists OVN agents of any host.
"""

import threading

from oslo_log import log as logging

from nova_xen.conf import CONF
from nova_xen import errors
from nova_xen import network
from nova_xen import portfilter

LOG = logging.getLogger(__name__)

# neutron/common/ovn/constants.py: the agents a port binds to, and all
CONTROLLER_TYPES = ('OVN Controller agent', 'OVN Controller Gateway agent')
AGENT_TYPES = CONTROLLER_TYPES + ('OVN Metadata agent', 'OVN Neutron agent')
OVS_PLUGIN = 'nova_xen_ovs.py'
GUIDE = 'see "Networking with ML2/OVN" in the nova-xen README'


class Finding(object):
    """What a check found: ``facts`` (a sentence), ``problems`` (one
    sentence each), and whether Neutron uses ML2/OVN (``ovn``: True,
    False, or None when it cannot be told).  Problems are failures where
    Neutron uses ML2/OVN, or when ``fails`` says so."""

    def __init__(self, facts, problems=(), ovn=None, fails=None):
        self.facts = facts
        self.problems = list(problems)
        self.ovn = ovn
        self._fails = fails

    @property
    def failed(self):
        fails = self.ovn is True if self._fails is None else self._fails
        return bool(self.problems) and fails

    def text(self):
        if not self.problems:
            return self.facts
        if not self.failed:
            return '%s (what would matter with ML2/OVN: %s)' % (
                self.facts, '; '.join(self.problems))
        return '; '.join(self.problems)


def _agents(client, **filters):
    return client.list_agents(**filters).get('agents') or []


def chassis(host_name, client=None, backend=None):
    """Neutron's OVN chassis for ``host_name`` (this compute's
    ``[DEFAULT]host``): a Finding."""
    backend = backend or CONF.xenserver.neutron_backend
    if backend == 'other':
        return Finding('not checked: [xenserver]neutron_backend = other',
                       ovn=False)
    try:
        client = client or portfilter.neutron_client()
        mine = _agents(client, host=host_name)
        everyone = mine
        if not any(a.get('agent_type') in CONTROLLER_TYPES for a in mine):
            everyone = _agents(client)
    except Exception as exc:
        return Finding('', ['cannot ask Neutron for the agents of host %s '
                            'with the [neutron] credentials of nova.conf: %s'
                            % (host_name, errors.why(exc))],
                       ovn=True if backend == 'ovn' else None, fails=True)
    ours = [a for a in mine if a.get('agent_type') in CONTROLLER_TYPES and
            a.get('host') == host_name]
    if ours:
        alive = [a for a in ours if a.get('alive')]
        agent = (alive or ours)[0]
        config = agent.get('configurations') or {}
        name = config.get('chassis_name') or agent.get('id')
        if not alive:
            return Finding('', [
                'Neutron\'s OVN chassis %s for host %s is not alive: Neutron '
                'refuses to bind ports to a dead agent; is its ovn-controller '
                'running and connected to the OVN southbound database?'
                % (name, host_name)], ovn=True)
        mappings = config.get('bridge-mappings')
        return Finding('Neutron has OVN chassis %s for host %s (%s, alive%s)'
                       % (name, host_name, agent.get('agent_type'),
                          '; bridge mappings %s' % mappings
                          if mappings else ''), ovn=True)
    ovn_agents = [a for a in everyone if a.get('agent_type') in AGENT_TYPES]
    if ovn_agents or backend == 'ovn':
        hosts = sorted({a.get('host') for a in ovn_agents
                        if a.get('agent_type') in CONTROLLER_TYPES})
        where = ''
        if hosts:
            where = '; its OVN chassis are on host%s %s' % (
                's' if len(hosts) > 1 else '', ', '.join(hosts[:8]) +
                (', ...' if len(hosts) > 8 else ''))
        return Finding('', [
            'Neutron has no OVN chassis for host %s (nothing would bind its '
            'ports)%s: run ovn-controller for this compute\'s XenServer host '
            'with external_ids:hostname=%s in its dom0\'s Open vSwitch, '
            '%s' % (host_name, where, host_name, GUIDE)], ovn=True)
    types = sorted({a.get('agent_type') for a in everyone})
    if types:
        return Finding('not ML2/OVN: Neutron lists no OVN agent, only %s '
                       '(set [xenserver]neutron_backend to say which)'
                       % ', '.join(types), ovn=False)
    return Finding('Neutron lists no agent at all: with ML2/OVN no '
                   'ovn-controller has registered yet, and nothing binds '
                   'ports (set [xenserver]neutron_backend = ovn to make '
                   'this a failure, = other to skip it)', ovn=None)


def xapi_network(session, bridge):
    """The xapi network of ``bridge``: (facts, problems); nothing is
    changed."""
    found = network.networks_of_bridge(session, bridge)
    if not found:
        return ('no xapi network has bridge %s yet: nova-compute creates it '
                '(unmanaged, fail mode secure) when it starts' % bridge), []
    record = next(iter(found.values()))
    problem = network.integration_problem(record, bridge)
    facts = '%s is xapi network %r (%s)' % (
        bridge, record['name_label'],
        'managed by xapi' if record['managed'] else 'unmanaged')
    if problem is None:
        return facts, []
    if not record['managed'] or (not record['VIFs'] and record[
            'other_config'].get('nova_role') == network.INTEGRATION_ROLE):
        # what nova-compute puts right itself when it starts
        return '%s; %s' % (facts, problem), []
    return facts, [problem]


def dom0_bridge(session, host, bridge, host_name, ovn=None):
    """dom0's Open vSwitch on ``host`` (a host.Host) as OVN needs it for
    ``bridge``, and the bridge's xapi network: a Finding."""
    facts, problems = xapi_network(session, bridge)
    node = host.nodename
    try:
        status = session.call_plugin(host.ref, OVS_PLUGIN, 'ovs_status',
                                     {'bridge': bridge})
    except errors.PluginError as exc:
        reason = exc.params[0] if exc.params else errors.why(exc)
        if exc.xapi_code == 'NOVA_XEN_OVS_UNAVAILABLE':
            problems.append('cannot read the Open vSwitch of host %s\'s dom0: '
                            '%s' % (node, reason))
        else:
            problems.append('the %s plugin failed on host %s: %s' % (
                OVS_PLUGIN, node, errors.why(exc)))
        return Finding(facts, problems, ovn)
    ids = status['external_ids']
    if not status['exists']:
        problems.append(
            'dom0 of host %s has no bridge %s: start ovn-controller for this '
            'host (it creates it), %s; until then no VM with a port on it '
            'starts there (xapi: BRIDGE_NOT_AVAILABLE)' % (node, bridge,
                                                           GUIDE))
    elif status['fail_mode'] != 'secure':
        problems.append(
            'bridge %s in dom0 of host %s is in fail mode %s: whenever its '
            'controller (ovn-controller) is away, Open vSwitch then runs it '
            'as a learning switch forwarding between all its ports, with no '
            'ACLs and no isolation between networks; ovn-controller sets it '
            'to secure when it connects, and xapi leaves it so only if the '
            'bridge\'s xapi network has other_config '
            'vswitch-controller-fail-mode=secure (nova-compute makes it so)'
            % (bridge, node, status['fail_mode'] or
               'unset (Open vSwitch\'s default, standalone)'))
    if ids.get('hostname') and ids['hostname'] != host_name:
        problems.append(
            'dom0 of host %s names its OVN chassis host %r '
            '(external_ids:hostname of its Open vSwitch), not this '
            'nova-compute\'s [DEFAULT]host %r: the chassis would not bind '
            'this compute\'s ports; in its dom0: ovs-vsctl set Open_vSwitch '
            '. external_ids:hostname=%s' % (node, ids['hostname'], host_name,
                                            host_name))
    if not ids.get('ovn-remote') and ovn:
        problems.append(
            'the Open vSwitch of host %s\'s dom0 has no external_ids:'
            'ovn-remote: no ovn-controller is set up for it, %s'
            % (node, GUIDE))
    if status['exists']:
        facts += '; %s in dom0 of %s: fail_mode %s, datapath %s' % (
            bridge, node, status['fail_mode'] or 'unset',
            status['datapath_type'] or 'system')
    if ids:
        facts += '; chassis %s' % ', '.join(
            '%s=%s' % item for item in sorted(ids.items()))
    if not ids.get('hostname') and ids.get('ovn-remote'):
        facts += ('; external_ids:hostname unset: ovn-controller names the '
                  'chassis after the machine it runs on, which must be %s'
                  % host_name)
    return Finding(facts, problems, ovn)


class StartupReport(object):
    """nova-compute's start-up: both checks in a thread of their own (a
    Neutron that does not answer never holds up the start), each problem
    a WARNING; ``done`` is set once they have run."""

    def __init__(self, session, host, host_name=None):
        self.session = session
        self.host = host
        self.host_name = host_name or CONF.host
        self.done = threading.Event()
        self.findings = []

    def start(self):
        threading.Thread(target=self.run, name='nova-xen-ovn-check',
                         daemon=True).start()
        return self

    def run(self):
        try:
            found = chassis(self.host_name)
            self.findings.append(found)
            bridge = dom0_bridge(self.session, self.host,
                                 CONF.xenserver.ovs_integration_bridge,
                                 self.host_name, found.ovn)
            self.findings.append(bridge)
            for finding in (found, bridge):
                if finding.failed:
                    for problem in finding.problems:
                        LOG.warning('ML2/OVN: %s', problem)
                else:
                    LOG.info('ML2/OVN: %s', finding.text())
        except Exception:
            LOG.exception('ML2/OVN: the start-up checks failed')
        finally:
            self.done.set()
