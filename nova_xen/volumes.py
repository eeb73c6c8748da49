"""Cinder volumes as xapi SRs: an ``iscsi`` SR (one VDI per LUN) per target.

A volume's ``connection_info`` (``driver_volume_type`` ``iscsi``, what
Cinder's iSCSI drivers hand out) names a portal, a target IQN, a LUN and,
for CHAP, a user and a secret.  The SR of that target has a uuid derived
from portal and IQN, so every host and every pool agree on it; it is
introduced once (``SR.introduce``, type ``iscsi``: sm's RawISCSISR), its
PBD for this host plugged (xapi's SM logs into the target from dom0) and
scanned; the LUN's VDI (``sm_config['LUNid']``) is attached to the VM with
a VBD tagged with the volume id, hot-plugged when the VM runs.  Detach
reverses it, and the SR is forgotten when no VBD uses it any more.

Nothing here logs or raises a CHAP secret: errors name the target (portal
and IQN) and xapi's reason.
"""

import collections
import threading
import uuid

from nova import exception
from nova.virt import driver as virt_driver
from oslo_log import log as logging

from nova_xen.conf import CONF
from nova_xen import errors
from nova_xen import reclaim
from nova_xen import storage

LOG = logging.getLogger(__name__)

SUPPORTED = ('iscsi',)
SECRET = 'nova_chap_secret'     # on a PBD: the uuid of its CHAP secret
# the namespace of the SR uuids this driver derives (its own constant)
SR_NAMESPACE = uuid.UUID('4c8b3f1e-6d0e-5a4b-9b1e-7a7e0f3d2c11')
NULL = storage.NULL
NOT_MOVED = ('a server with Cinder volumes attached cannot be %s by '
             'nova-xen yet: detach its volumes first (a volume-backed '
             'server cannot move)')


class Target(object):
    """Where a volume lives, from its connection_info."""

    def __init__(self, connection_info):
        kind = connection_info.get('driver_volume_type')
        data = connection_info.get('data') or {}
        self.volume_id = data.get('volume_id') or connection_info.get(
            'serial')
        if kind not in SUPPORTED:
            raise exception.VolumeDriverNotFound(driver_type=kind)
        portal = data.get('target_portal') or ''
        self.host, _, port = portal.rpartition(':')
        if not self.host:
            self.host, port = portal, '3260'
        self.host = self.host.strip('[]')
        self.port = port or '3260'
        self.iqn = data.get('target_iqn')
        if not self.host or not self.iqn:
            raise exception.VolumeAttachFailed(
                volume_id=self.volume_id, reason='its connection_info names '
                'no target portal or IQN')
        self.lun = str(data.get('target_lun', 0))
        self.auth = None
        if (data.get('auth_method') or '').upper() == 'CHAP':
            self.auth = (data.get('auth_username') or '',
                         data.get('auth_password') or '')

    @property
    def sr_uuid(self):
        return str(uuid.uuid5(SR_NAMESPACE, '%s/%s/%s' % (
            self.host, self.port, self.iqn)))

    def device_config(self, secret_uuid=None):
        """sm's iscsi SR's device_config; the CHAP password by the uuid of
        a xapi secret holding it (``chappassword_secret``), so that it is
        not in the PBD's device_config for every xapi client to read."""
        config = {'target': self.host, 'port': self.port,
                  'targetIQN': self.iqn}
        if self.auth:
            config['chapuser'] = self.auth[0]
            config['chappassword_secret'] = secret_uuid
        return config

    def scrub(self, text):
        """``text`` without the CHAP secret, whatever said it."""
        if self.auth and self.auth[1]:
            text = text.replace(self.auth[1], '***')
        return text

    def __str__(self):
        # never the secret
        return '%s on %s:%s' % (self.iqn, self.host, self.port)


class VolumeOps(object):
    def __init__(self, session, host, index):
        self.session = session
        self.host = host
        self.index = index
        self._guard = threading.Lock()
        self._locks = collections.defaultdict(threading.Lock)
        self._iqn = None
        # SRs a failed clean-up left: {SR ref: (SR uuid, why)}, retried by
        # the reclaimer (retry_leftovers) until they are gone or used again
        self._left = {}

    # -- what Cinder needs to know about this host ---------------------------

    def connector(self, my_block_storage_ip=None):
        if self._iqn is None:
            record = self.session.call('host.get_record', self.host.ref)
            self._iqn = record.get('iscsi_iqn') or \
                record['other_config'].get('iscsi_iqn', '')
            self._multipath = bool(record.get('multipathing'))
            self._hostname = record['hostname']
        connector = {'ip': my_block_storage_ip or self.host.address,
                     'host': self._hostname,
                     'multipath': self._multipath,
                     'platform': 'x86_64', 'os_type': 'linux2'}
        if self._iqn:
            connector['initiator'] = self._iqn
        return connector

    # -- attach and detach -------------------------------------------------

    def connect(self, connection_info):
        """The VDI of a volume's LUN, its SR introduced and plugged here
        if it was not; (vdi, sr)."""
        target = Target(connection_info)
        with self._lock(target.sr_uuid):
            made = []
            try:
                sr = self._sr(target, made)
                # in use again: no leftover for the reclaimer
                with self._guard:
                    self._left.pop(sr, None)
                self.session.call('SR.scan', sr)
                vdi = self._lun_vdi(sr, target)
            except Exception as exc:
                self._undo(made)
                raise exception.VolumeAttachFailed(
                    volume_id=target.volume_id,
                    reason='target %s: %s' % (target, target.scrub(
                        errors.why(exc))))
        return vdi, sr

    def attach(self, connection_info, instance, mountpoint):
        """Attach a volume to the instance's VM (hot-plugged if it runs,
        present at its next start otherwise)."""
        target = Target(connection_info)
        vm, record = self.index.record(instance.uuid)
        if vm is None:
            raise exception.InstanceNotFound(instance_id=instance.uuid)
        vdi, sr = self.connect(connection_info)
        vbd = None
        try:
            vbd = self.create_vbd(vm, vdi, target.volume_id,
                                  userdevice(mountpoint))
            if record['power_state'] == 'Running':
                self.session.call('VBD.plug', vbd)
        except Exception as exc:
            if vbd is not None:
                _quietly(self.session.call, 'VBD.destroy', vbd)
            self.disconnect_sr(sr)
            raise exception.VolumeAttachFailed(
                volume_id=target.volume_id,
                reason='target %s: %s' % (target,
                                          target.scrub(errors.why(exc))))
        LOG.info('volume %s attached as %s', target.volume_id, mountpoint,
                 instance=instance)

    def create_vbd(self, vm, vdi, volume_id, device, bootable=False):
        return storage.create_vbd(
            self.session, vm, vdi, 'volume', bootable=bootable,
            userdevice=device, other_config={'nova_volume_id': volume_id})

    def detach(self, connection_info, instance):
        target = Target(connection_info)
        vm = self.index.lookup(instance.uuid)
        sr = self._find_sr(target)
        if sr is None:
            LOG.warning('volume %s: its SR is gone already', target.volume_id,
                        instance=instance)
            return
        held = None
        if vm is not None:
            for vbd in self._vbds_of(vm, target.volume_id):
                if self.session.call('VBD.get_currently_attached', vbd):
                    # a failure here: the guest still has the disk, and
                    # Nova keeps the volume attached
                    self.session.call('VBD.unplug', vbd)
                try:
                    self.session.call('VBD.destroy', vbd)
                except exception.NotFound:
                    pass
                except Exception as exc:
                    # the guest no longer sees the disk: the detach is
                    # done; the VBD is the reclaimer's (and is never
                    # plugged again: power.without_detached_volumes), the
                    # SR goes after it
                    held = exc
                    self.session.leftovers.add(reclaim.VBD, vbd,
                                               errors.why(exc))
        if held is not None:
            self._leave(sr, held)
        else:
            self.disconnect_sr(sr)
        LOG.info('volume %s detached', target.volume_id, instance=instance)

    def extend(self, connection_info, size):
        """Cinder grew the LUN: a rescan gives its VDI the new size.  A
        running guest sees it at its next boot (xapi does not resize a
        plugged disk under a guest)."""
        target = Target(connection_info)
        sr = self._find_sr(target)
        if sr is None:
            raise exception.VolumeNotFound(volume_id=target.volume_id)
        self.session.call('SR.scan', sr)
        vdi = self._lun_vdi(sr, target)
        now = int(self.session.call('VDI.get_virtual_size', vdi))
        if now < size:
            raise exception.NovaException(
                'volume %s: target %s still shows %d bytes, not %d, after a '
                'rescan' % (target.volume_id, target, now, size))
        LOG.info('volume %s now %d bytes', target.volume_id, now)

    def disconnect(self, connection_info):
        """Forget a volume's SR if nothing uses it (after the VM went)."""
        try:
            target = Target(connection_info)
        except exception.VolumeDriverNotFound:
            return
        sr = self._find_sr(target)
        if sr is not None:
            self.disconnect_sr(sr)

    def release(self, connection_info):
        """This host's hold on a volume's target (its PBD), once no VM
        here uses it (after a live migration away, or a rolled back one
        to here); the SR goes too when no VBD uses it at all.  Never
        fails the move it follows: what xapi refuses now, the reclaimer
        does later (session.deferred)."""
        try:
            target = Target(connection_info)
        except exception.VolumeDriverNotFound:
            return
        self.session.deferred.attempt(
            ('release', target.sr_uuid),
            'let go of the target %s on host %s' % (target,
                                                    self.host.nodename),
            lambda: self._release(target))

    def _release(self, target):
        try:
            sr = self._find_sr(target)
            if sr is None:
                return
            with self._lock(target.sr_uuid):
                if self._used_here(sr):
                    return      # a VM of this host uses the target (again)
                pbds = self.session.call(
                    'PBD.get_all_records_where',
                    'field "SR"="%s" and field "host"="%s"'
                    % (sr, self.host.ref))
                for pbd, record in pbds.items():
                    if record['currently_attached']:
                        self.session.call('PBD.unplug', pbd)
        except exception.NotFound:
            raise
        except Exception as exc:
            raise exception.NovaException(target.scrub(errors.why(exc)))
        self.disconnect_sr(sr)

    def _used_here(self, sr):
        """A VM running on this host has a disk of ``sr``."""
        for vdi in self.session.call('SR.get_VDIs', sr):
            for vbd in self.session.call('VDI.get_VBDs', vdi):
                vm = self.session.call('VBD.get_VM', vbd)
                if self.session.call('VM.get_resident_on', vm) == \
                        self.host.ref:
                    return True
        return False

    def disconnect_sr(self, sr):
        """Unplug and forget ``sr`` unless a VBD still uses its VDIs.  An
        SR xapi will not unplug or forget now is left to the reclaimer
        (the volume is off the guest already: that is no failure of the
        caller's)."""
        try:
            self._disconnect_sr(sr)
        except exception.NotFound:
            pass
        except Exception as exc:
            self._leave(sr, exc)

    def _disconnect_sr(self, sr):
        waiting = self.session.leftovers.refs(reclaim.VBD)
        for vdi in self.session.call('SR.get_VDIs', sr):
            vbds = self.session.call('VDI.get_VBDs', vdi)
            if waiting.intersection(vbds):
                raise exception.NovaException(
                    'a VBD of a detached volume still uses it')
            if vbds:
                return      # in use (attached again)
        secrets = []
        for pbd in self.session.call('SR.get_PBDs', sr):
            record = self.session.call('PBD.get_record', pbd)
            if record['other_config'].get(SECRET):
                secrets.append(record['other_config'][SECRET])
            if record['currently_attached']:
                self.session.call('PBD.unplug', pbd)
        self.session.call('SR.forget', sr)
        for secret_uuid in secrets:
            try:
                secret = self.session.call('secret.get_by_uuid', secret_uuid)
            except errors.XenAPIError as exc:
                if exc.xapi_code == 'UUID_INVALID':
                    continue       # gone already
                raise
            reclaim.destroy(self.session, reclaim.SECRET, secret)

    # -- leftovers ------------------------------------------------------------

    def _leave(self, sr, exc):
        """A volume SR a clean-up could not remove: the reclaimer's."""
        why = errors.why(exc)
        try:
            uuid_ = self.session.call('SR.get_uuid', sr)
        except Exception:
            uuid_ = None
        with self._guard:
            new = sr not in self._left
            self._left[sr] = (uuid_, why)
        if new:
            LOG.warning('could not remove the volume SR %s (%s); nova-xen '
                        'tries again every %d s', sr, why,
                        CONF.xenserver.reclaim_interval)

    def retry_leftovers(self):
        """The reclaimer's sweep: each volume SR a failed detach or undo
        left is unplugged and forgotten now, unless a VBD uses it again
        (an attach of its volume took it back meanwhile)."""
        with self._guard:
            left = dict(self._left)
        done = []
        for sr, (uuid_, why) in sorted(left.items()):
            with self._lock(uuid_ or sr):
                with self._guard:
                    if sr not in self._left:
                        continue       # connected again meanwhile
                try:
                    self._disconnect_sr(sr)
                except exception.NotFound:
                    LOG.info('volume SR %s left over earlier (%s) is gone',
                             sr, why)
                except Exception as exc:
                    LOG.debug('volume SR %s still cannot be removed: %s', sr,
                              errors.why(exc))
                    continue
                else:
                    LOG.info('reclaimed volume SR %s, left over earlier (%s)',
                             sr, why)
            with self._guard:
                self._left.pop(sr, None)
            done.append(('SR', sr))
        return done

    # -- helpers -------------------------------------------------------------

    def _lock(self, key):
        with self._guard:
            return self._locks[key]

    def _find_sr(self, target):
        try:
            return self.session.call('SR.get_by_uuid', target.sr_uuid)
        except errors.XenAPIError as exc:
            if exc.xapi_code == 'UUID_INVALID':
                return None
            raise

    def _sr(self, target, made):
        """The target's SR with a plugged PBD for this host."""
        sr = self._find_sr(target)
        if sr is None:
            sr = self.session.call(
                'SR.introduce', target.sr_uuid,
                'Cinder volume %s' % target.volume_id,
                'iSCSI target %s (nova-xen)' % target, 'iscsi', '', False,
                {})
            made.append(('SR', sr))
        pbds = self.session.call(
            'PBD.get_all_records_where',
            'field "SR"="%s" and field "host"="%s"' % (sr, self.host.ref))
        if pbds:
            pbd, record = sorted(pbds.items())[0]
            if record['currently_attached']:
                return sr
        else:
            other = {'nova_role': 'volume'}
            secret_uuid = None
            if target.auth:
                secret = self.session.call('secret.create', {
                    'value': target.auth[1],
                    'other_config': {'nova_role': 'volume-chap'}})
                made.append(('secret', secret))
                secret_uuid = self.session.call('secret.get_uuid', secret)
                other[SECRET] = secret_uuid
            pbd = self.session.call('PBD.create', {
                'host': self.host.ref, 'SR': sr,
                'device_config': target.device_config(secret_uuid),
                'other_config': other})
            made.append(('PBD', pbd))
        self.session.call('PBD.plug', pbd)
        made.append(('plugged', pbd))
        return sr

    def _lun_vdi(self, sr, target):
        found = self.session.call('VDI.get_all_records_where',
                                  'field "SR"="%s"' % sr)
        for ref, record in sorted(found.items()):
            if str(record['sm_config'].get('LUNid')) == target.lun:
                return ref
        raise exception.VolumeAttachFailed(
            volume_id=target.volume_id,
            reason='LUN %s of target %s is not in its SR after a scan'
                   % (target.lun, target))

    def _undo(self, made):
        """Remove what a failed connect made; what xapi refuses to remove
        now goes to the reclaimer (an SR this call introduced, a secret)."""
        for kind, ref in reversed(made):
            if kind == 'plugged':
                _quietly(self.session.call, 'PBD.unplug', ref)
            elif kind == 'PBD':
                _quietly(self.session.call, 'PBD.destroy', ref)
            elif kind == 'SR':
                failed = _quietly(self.session.call, 'SR.forget', ref)
                if failed is not None:
                    self._leave(ref, failed)
            elif kind == 'secret':
                reclaim.destroy(self.session, reclaim.SECRET, ref)

    def _vbds_of(self, vm, volume_id):
        found = []
        for vbd in self.session.call('VM.get_VBDs', vm):
            other = self.session.call('VBD.get_other_config', vbd)
            if other.get('nova_volume_id') == volume_id:
                found.append(vbd)
        return found


def userdevice(mountpoint):
    """'/dev/xvdc' -> '2'."""
    letter = (mountpoint or '').rstrip('0123456789')[-1:]
    if not letter.isalpha():
        raise exception.InvalidDevicePath(path=mountpoint)
    return str(ord(letter.lower()) - ord('a'))


def mapping(block_device_info):
    """The volumes of a block_device_info, root first."""
    volumes = list(virt_driver.block_device_info_get_mapping(
        block_device_info))
    return sorted(volumes, key=lambda bdm: (
        bdm.get('boot_index') is None or bdm.get('boot_index') < 0,
        bdm.get('boot_index') or 0))


def root_volume(block_device_info):
    """The boot volume's mapping, or None (boots from an image)."""
    for bdm in mapping(block_device_info):
        if bdm.get('boot_index') == 0 or \
                bdm.get('mount_device') in ('/dev/xvda', 'xvda'):
            return bdm
    return None


def _quietly(call, *args):
    """``call(*args)``; its failure logged and returned (None if none)."""
    try:
        call(*args)
    except exception.NotFound:
        return None
    except Exception as exc:
        LOG.warning('volume clean-up: %s failed: %s', args[0],
                    errors.why(exc))
        return exc
    return None
