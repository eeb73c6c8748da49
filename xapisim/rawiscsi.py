"""SM's ``iscsi`` SR type (RawISCSISR): one VDI per LUN of a real target.

The simulated host logs in to the iSCSI target its PBD's device_config
names (``target``, ``port`` (3260), ``targetIQN``, ``chapuser``,
``chappassword``), with the host's ``iscsi_iqn`` as initiator name, and
stays logged in while the PBD is plugged, as dom0's open-iscsi does.  It
fails as SM's RawISCSISR fails, with ``SR_BACKEND_FAILURE_<n>`` and
xapi's three parameters ``['', <SM's text [opterr=...]>, <stderr>]``:

- 95 no ``target``; 142 a bad ``port``; 96 no ``targetIQN`` (the
  targets the portal offers, as XML, in the third parameter); 97 the
  host has no iSCSI IQN;
- 141 nothing answers at ``target:port``;
- 83 the portal does not offer ``targetIQN`` (``[opterr=check target
  settings]``; the offered targets as XML in the third parameter);
- 68 the login (or a discovery that needs CHAP) is refused: wrong or
  missing CHAP credentials, an initiator the target does not allow.

A scan lists the target's LUNs (REPORT LUNS), keeps the disks (INQUIRY)
and makes one VDI per LUN: uuid from the MD5 of the LUN's SCSI id (as
SM's ``gen_uuid_from_string(getuniqueserial(...))``), ``location`` the
same, ``sm_config`` ``LUNid``, ``SCSIid`` and ``backend-kind=vbd``,
``virtual_size`` from READ CAPACITY.

CHAP secrets never reach a log line or an error parameter.
"""

import hashlib
import socket
import sys
import threading
import xml.dom.minidom

from xapisim import iscsi
from xapisim.errors import XapiError, sm_error

SR_TYPE = 'iscsi'
CONNECT_TIMEOUT = 10.0


def vdi_uuid(scsi_id):
    """SM's VDI uuid for a LUN: the MD5 of its SCSI id, as a uuid."""
    h = hashlib.md5(scsi_id.encode()).hexdigest()
    return '%s-%s-%s-%s-%s' % (h[:8], h[8:12], h[12:16], h[16:20], h[20:32])


class Config(object):
    """A PBD's device_config, checked as RawISCSISR's ``load`` checks it."""

    def __init__(self, device_config, initiator):
        dc = device_config
        if not dc.get('target'):
            raise sm_error('ConfigTargetMissing')
        if not initiator:
            raise sm_error('ConfigISCSIIQNMissing')
        self.initiator = initiator
        self.host = dc['target'].split(',')[0]
        try:
            self.port = int(dc.get('port') or iscsi.DEFAULT_PORT)
        except ValueError:
            raise sm_error('ISCSIPort')
        if not 0 < self.port <= 65535:
            raise sm_error('ISCSIPort')
        self.chap = None
        if dc.get('chapuser') and dc.get('chappassword'):
            self.chap = (dc['chapuser'], dc['chappassword'])
        self.target_iqn = dc.get('targetIQN', '')

    def __repr__(self):
        # what a log line may show: never the secret
        return '%s:%d %s (initiator %s, %s)' % (
            self.host, self.port, self.target_iqn or '-', self.initiator,
            'CHAP user %s' % self.chap[0] if self.chap else 'no CHAP')


def targets_xml(offered, config):
    """What RawISCSISR prints on stderr when the IQN is wrong or missing:
    each target the portal offers, then the portal itself with IQN '*'."""
    dom = xml.dom.minidom.Document()
    root = dom.createElement('iscsi-target-iqns')
    dom.appendChild(root)
    entries = [(address, iqn) for iqn, addresses in offered
               for address in addresses]
    entries.append(('%s:%d' % (config.host, config.port), '*'))
    for index, (address, iqn) in enumerate(entries):
        host, port = iscsi.portal_of(address)
        tgt = dom.createElement('TGT')
        root.appendChild(tgt)
        fields = [('Index', str(index)), ('IPAddress', host)]
        if port != iscsi.DEFAULT_PORT:
            fields.append(('Port', str(port)))
        fields.append(('TargetIQN', iqn))
        for name, text in fields:
            node = dom.createElement(name)
            node.appendChild(dom.createTextNode(text))
            tgt.appendChild(node)
    return dom.toprettyxml()


class Lun(object):
    def __init__(self, lun, size, scsi_id):
        self.lun = lun
        self.size = size
        self.scsi_id = scsi_id
        self.uuid = vdi_uuid(scsi_id)


class Initiators(object):
    """A pool's iSCSI sessions: one per plugged PBD of an ``iscsi`` SR."""

    def __init__(self, verbose=False):
        self.verbose = verbose
        self.lock = threading.Lock()
        self.sessions = {}      # PBD ref -> (Config, iscsi.Session)

    def log(self, text):
        if self.verbose:
            sys.stderr.write('iscsi: %s\n' % text)

    # -- PBD.plug / PBD.unplug -------------------------------------------

    def attach(self, pbd, device_config, initiator):
        """Discovery and login, or the SR_BACKEND_FAILURE SM raises."""
        config = Config(device_config, initiator)
        self.log('attach %s' % config)
        try:
            socket.create_connection((config.host, config.port),
                                     CONNECT_TIMEOUT).close()
        except OSError:
            raise sm_error('ISCSITarget')
        try:
            offered = iscsi.discover(config.host, config.port, initiator,
                                     config.chap, CONNECT_TIMEOUT)
        except iscsi.PortalUnreachable:
            raise sm_error('ISCSITarget')
        except iscsi.IscsiError as exc:
            self.log('discovery at %s:%d failed: %s'
                     % (config.host, config.port, exc))
            raise sm_error('ISCSILogin')
        if not config.target_iqn:
            raise sm_error('ConfigTargetIQNMissing',
                           stderr=targets_xml(offered, config))
        if config.target_iqn not in [iqn for iqn, _ in offered]:
            raise sm_error('ISCSIDiscovery', 'check target settings',
                           targets_xml(offered, config))
        session = self._login(config)
        with self.lock:
            old = self.sessions.pop(pbd, None)
            self.sessions[pbd] = (config, session)
        if old is not None:
            old[1].logout()

    def _login(self, config):
        try:
            return iscsi.Session(config.host, config.port, config.initiator,
                                 config.target_iqn, config.chap,
                                 CONNECT_TIMEOUT)
        except iscsi.PortalUnreachable:
            raise sm_error('ISCSITarget')
        except iscsi.IscsiError as exc:
            self.log('login to %s failed: %s' % (config.target_iqn, exc))
            raise sm_error('ISCSILogin')

    def detach(self, pbd):
        with self.lock:
            entry = self.sessions.pop(pbd, None)
        if entry is not None:
            self.log('logout %s' % entry[0])
            entry[1].logout()

    def close(self):
        with self.lock:
            entries = list(self.sessions.values())
            self.sessions.clear()
        for _, session in entries:
            session.logout()

    # -- what a plugged PBD sees -------------------------------------------

    def session(self, pbds):
        """A live session through one of ``pbds`` (logged in again if
        the connection dropped), or SRUnavailable."""
        with self.lock:
            entries = [(pbd, self.sessions[pbd]) for pbd in pbds
                       if pbd in self.sessions]
        for pbd, (config, session) in entries:
            if session.alive:
                return session
        for pbd, (config, session) in entries:
            try:
                fresh = self._login(config)
            except XapiError:
                continue
            with self.lock:
                self.sessions[pbd] = (config, fresh)
            return fresh
        raise sm_error('SRUnavailable')

    def config_of(self, pbds):
        """The Config one of ``pbds`` logged in with (None if none is
        plugged): what another session to the same LUNs needs
        (``xapisim.lunfile``)."""
        with self.lock:
            for pbd in pbds:
                if pbd in self.sessions:
                    return self.sessions[pbd][0]
        return None

    def luns(self, pbds):
        """The target's disks, as SM's scan sees them.  A connection the
        target dropped is logged in again once (open-iscsi reconnects)."""
        for attempt in (1, 2):
            session = self.session(pbds)
            try:
                return self._disks(session)
            except iscsi.ScsiError as exc:
                failure = exc
                break
            except iscsi.IscsiError as exc:
                failure = exc
                session.logout()
        self.log('scan of %r failed: %s' % (session, failure))
        raise sm_error('SRUnavailable')

    @staticmethod
    def _disks(session):
        found = []
        for lun in session.report_luns():
            if session.device_type(lun) != iscsi.DISK:
                continue
            found.append(Lun(lun, session.size(lun), session.scsi_id(lun)))
        return found
