"""``nova-xen-manage check``: nova-compute's start-up checks, from a shell.

The same calls as ``XenAPIDriver.init_host``, in its order, reading the
same nova.conf: one line per check, ``OK <check>: <what was found>`` or
``FAIL <check>: <the sentence nova-compute would stop with>``; a check
whose premise failed is ``SKIP``.  Nothing is changed in the pool (the
integration network, which nova-compute creates when it is missing, is
only looked for).  The password is never printed.

Two checks are warnings at nova-compute's start-up (Neutron and
ovn-controller may come up after it) and failures here: ``OVN chassis``
(Neutron has an alive OVN chassis for this compute's ``[DEFAULT]host``)
and the dom0 half of ``integration bridge`` (the bridge exists in fail
mode secure, its chassis hostname is this compute's); both only where
Neutron uses ML2/OVN (``[xenserver]neutron_backend``, see ovn.py).

Run it where nova-compute runs: which host it manages may depend on the
domU it runs in (``/sys/hypervisor/uuid``).
"""

import logging
import sys

import nova.conf  # noqa: F401  registers nova's options ([DEFAULT]...)
from oslo_config import cfg
from oslo_utils import importutils

from nova_xen import conf as xen_conf
from nova_xen import errors
from nova_xen import host as host_mod
from nova_xen import hostactions
from nova_xen import network
from nova_xen import ovn
from nova_xen import session as session_mod

USAGE = 'nova-xen-manage check [--config-file FILE ...] [--config-dir DIR]'
DESCRIPTION = ('Run the checks nova-xen makes when nova-compute starts, '
               'with the [xenserver] options of nova.conf (by default '
               '/etc/nova/nova.conf, as nova-compute reads it).  Exit status '
               '1 when one fails.')
DRIVER = 'xenapi.XenAPIDriver'


class Checks(object):
    """Runs checks in order, prints one line each, remembers failures."""

    def __init__(self, out, secret=None):
        self._out = out
        self._secret = secret
        self.passed = set()
        self.failed = []

    def run(self, name, check, needs=()):
        """``check()`` returns (what it found, a value for later checks);
        the value, or None when it failed or was skipped."""
        missing = [n for n in needs if n not in self.passed]
        if missing:
            self._say('SKIP %s: %s failed' % (name, ', '.join(missing)))
            return None
        try:
            found, value = check()
        except Exception as exc:
            self.failed.append(name)
            self._say('FAIL %s: %s' % (name, _sentence(exc)))
            return None
        self.passed.add(name)
        self._say('OK %s: %s' % (name, found))
        return value

    def _say(self, line):
        if self._secret:
            line = line.replace(self._secret, '***')
        self._out(line)


def _sentence(exc):
    text = str(exc) or exc.__class__.__name__
    if isinstance(exc, (errors.StartupError, errors.XenAPIError,
                        errors.PluginError)):
        return text
    return '%s: %s' % (exc.__class__.__name__, text)


class StartupChecks(object):
    """init_host's checks, one method each: (what was found, a value)."""

    def __init__(self, conf):
        self.conf = conf
        self.opts = conf.xenserver
        self.session = None
        self.host = None
        self.ovn = None     # whether Neutron uses ML2/OVN (None: unknown)

    def run(self, out):
        """Every check, in init_host's order; the Checks."""
        checks = Checks(out, self.opts.connection_password)
        checks.run('compute_driver', self.driver)
        checks.run('connection_url', self.url)
        checks.run('TLS', self.tls, needs=['connection_url'])
        self.session = checks.run('login', self.login, needs=['TLS'])
        self.host = checks.run('host', self.discover, needs=['login'])
        checks.run('dom0 plugins', self.plugins, needs=['host'])
        checks.run('instance SR', self.sr, needs=['host'])
        checks.run('OVN chassis', self.chassis)
        checks.run('integration bridge', self.bridge,
                   needs=['dom0 plugins'])
        checks.run('network isolation', self.isolation,
                   needs=['dom0 plugins'])
        if self.session is not None:
            self.session.close()
        return checks

    def driver(self):
        driver = self.conf.compute_driver
        if driver != DRIVER:
            raise errors.StartupError(reason=(
                '[DEFAULT]compute_driver is %s: set it to %s for nova-compute '
                'to load nova-xen' % (repr(driver) if driver else 'not set',
                                      DRIVER)))
        try:
            # as nova-compute loads it: nova.virt.<name>
            cls = importutils.import_class('nova.virt.' + DRIVER)
        except ImportError as exc:
            raise errors.StartupError(reason=(
                'nova cannot load %s (%s): install nova-xen in nova\'s '
                'Python environment (pip install nova-xen)' % (DRIVER, exc)))
        return '%s is %s.%s' % (DRIVER, cls.__module__, cls.__name__), cls

    def url(self):
        return session_mod.check_url(self.opts.connection_url), None

    def tls(self):
        opts = self.opts
        if not opts.connection_url.startswith('https'):
            return ('not used: the URL is http://, the password travels in '
                    'clear text'), None
        session_mod.tls_context(opts.ca_file, opts.insecure)
        if opts.insecure:
            return 'not verified (insecure = true)', None
        return 'verified with %s' % ('ca_file %s' % opts.ca_file
                                     if opts.ca_file
                                     else 'the system trust store'), None

    def login(self):
        opts = self.opts
        session = session_mod.Session(
            opts.connection_url, opts.connection_username,
            opts.connection_password, concurrent=1,
            login_timeout=opts.login_timeout, call_timeout=opts.call_timeout,
            task_timeout=opts.task_timeout, ca_file=opts.ca_file,
            insecure=opts.insecure).connect()
        return 'as %s; pool master %s' % (opts.connection_username,
                                          session.url), session

    def discover(self):
        host = host_mod.Host(self.session).discover()
        found = '%s (%s, address %s) of pool %s' % (
            host.nodename, host.uuid, host.address, host.pool_uuid)
        why = hostactions.disabled(host.record)
        if why is not None:
            found += ('; disabled in xapi (%s): xapi starts no VM on it'
                      % ('by nova-xen, for ' + why.replace(',', ' and ')
                         if why else 'not by nova-xen: xe host-enable '
                         'enables it'))
        return found, host

    def plugins(self):
        version = self.host.check_plugins()
        return 'plugin API %s on %s' % (version, self.host.nodename), None

    def sr(self):
        record = self.session.call('SR.get_record', self.host.instance_sr())
        return '%s (%s, type %s, sr_matching_filter = %s), attached to %s' % (
            record['name_label'], record['uuid'], record['type'],
            self.opts.sr_matching_filter, self.host.nodename), None

    def chassis(self):
        found = ovn.chassis(self.conf.host)
        self.ovn = found.ovn
        if found.failed:
            raise errors.StartupError(reason=found.text())
        return found.text(), None

    def bridge(self):
        found = ovn.dom0_bridge(self.session, self.host,
                                self.opts.ovs_integration_bridge,
                                self.conf.host, self.ovn)
        if found.failed:
            raise errors.StartupError(reason=found.text())
        return found.text(), None

    def isolation(self):
        if not self.opts.isolation_rules:
            return ('off ([xenserver]isolation_rules = false): no rules, '
                    'nftables not needed in dom0'), None
        network.Isolation(self.session, self.host).check()
        return 'dom0 of %s can filter (nftables)' % self.host.nodename, None


def main(argv, out=print):
    """Parse nova.conf as nova-compute does, run the checks; exit status."""
    conf = xen_conf.CONF
    try:
        conf(argv, project='nova', prog='nova-xen-manage check', usage=USAGE,
             description=DESCRIPTION)
    except cfg.Error as exc:
        print('nova-xen-manage check: %s' % exc, file=sys.stderr)
        return 2
    # nova's Neutron client says on every use that neutronclient is
    # deprecated: nothing an operator running a check can act on
    logging.getLogger('neutronclient.v2_0.client').setLevel(logging.ERROR)
    return 1 if StartupChecks(conf).run(out).failed else 0
