"""What Nova asks of the XenServer host itself: enable/disable, maintenance,
uptime, power actions.

Disabling a compute service in Nova (``PUT /os-services``, or the older
``os-hosts`` API) means "schedule nothing new here": Nova keeps the
``COMPUTE_STATUS_DISABLED`` trait of the node's resource provider in step
and calls ``set_host_enabled``.  xapi's ``host.disable`` means more: xapi
then refuses every VM start on the host (``HOST_DISABLED``), so a stopped
server could not be started, a hard reboot or a resize revert onto the
host would fail.  So by default a disabled service changes nothing in
xapi; ``[xenserver]disable_host_with_service`` restores what Nova's old
XenAPI driver did.  Maintenance mode is the explicit request to empty the
host, and disables it in xapi.

What nova-xen disables in xapi it marks in the host's ``other_config``
(``nova_xen_disabled``: ``service`` or ``maintenance``), and it enables
only a host it disabled itself for the same reason: a host an operator
disabled by hand (``xe host-disable``), or for maintenance, stays so
when the service is enabled again.
"""

from oslo_log import log as logging

from nova_xen.conf import CONF
from nova_xen import consoles

LOG = logging.getLogger(__name__)

# host other_config key: why nova-xen disabled the host in xapi
MARK = 'nova_xen_disabled'
SERVICE, MAINTENANCE = 'service', 'maintenance'


def disabled(record):
    """None if the host ``record`` is enabled in xapi; else why nova-xen
    disabled it ('service', 'maintenance'), or '' (not nova-xen)."""
    if record['enabled']:
        return None
    return record['other_config'].get(MARK, '')


class HostActions(object):
    def __init__(self, session, host):
        self.session = session
        self.host = host

    def _record(self):
        return self.session.call('host.get_record', self.host.ref)

    def warn_if_disabled(self):
        """At start-up (the host's record as discovered): a host disabled
        in xapi starts no VM at all."""
        why = disabled(self.host.record)
        if why is None:
            return
        if why:
            how = ('by nova-xen, for %s; nova-xen enables it again when '
                   'that ends' % why.replace(',', ' and '))
        else:
            how = ('not by nova-xen; xe host-enable uuid=%s enables it'
                   % self.host.uuid)
        LOG.warning('XenServer host %s is disabled in xapi (%s): xapi '
                    'starts no VM on it, so starting, hard-rebooting or '
                    'reverting a resize of a server here fails',
                    self.host.nodename, how)

    def set_enabled(self, enabled):
        """Nova enabled or disabled this compute service."""
        if CONF.xenserver.disable_host_with_service:
            self._set_xapi_enabled(enabled, SERVICE)
        elif not enabled:
            LOG.info('compute service disabled: Nova schedules no new '
                     'server to host %s; its XenServer host stays enabled '
                     'in xapi, so the servers there keep working '
                     '([xenserver]disable_host_with_service)',
                     self.host.nodename)
        else:
            # a host disabled with the service before the option was
            # turned off comes back with it
            self._set_xapi_enabled(True, SERVICE)
        return 'enabled' if enabled else 'disabled'

    def maintenance(self, mode):
        """Maintenance: xapi starts no VM on the host (host.disable);
        the servers there stay: live-migrate them first."""
        self._set_xapi_enabled(not mode, MAINTENANCE)
        return 'on_maintenance' if mode else 'off_maintenance'

    def _set_xapi_enabled(self, enabled, reason):
        """Disable the host in xapi for ``reason``, or take ``reason``
        back: the host is enabled again once no reason of nova-xen's is
        left.  A host disabled by someone else is left alone."""
        session, ref = self.session, self.host.ref
        record = self._record()
        marked = record['other_config'].get(MARK)
        if marked is None and (enabled or not record['enabled']):
            # nothing of nova-xen's to take back; or an operator's
            # disable, whose enable is theirs too
            return
        reasons = set(filter(None, (marked or '').split(',')))
        if enabled:
            reasons.discard(reason)
        else:
            reasons.add(reason)
        session.call('host.remove_from_other_config', ref, MARK)
        if reasons:
            session.call('host.add_to_other_config', ref, MARK,
                         ','.join(sorted(reasons)))
        if not enabled and record['enabled']:
            session.call('host.disable', ref)
            LOG.info('XenServer host %s disabled in xapi (%s)',
                     self.host.nodename, reason)
        elif enabled and not record['enabled']:
            if reasons:
                LOG.info('XenServer host %s stays disabled in xapi (%s)',
                         self.host.nodename, ', '.join(sorted(reasons)))
            else:
                session.call('host.enable', ref)
                LOG.info('XenServer host %s enabled in xapi again',
                         self.host.nodename)

    def uptime(self):
        return self.session.call_plugin(self.host.ref,
                                        consoles.HOST_PLUGIN,
                                        'host_uptime')['text']

    def power_action(self, action):
        raise NotImplementedError(
            'nova-xen does not %s XenServer hosts; use xe host-%s or '
            'XCP-ng Center' % (action, action))
