"""What the nova-xen tests ask xapi, behind Nova's back.

No tempest import here: the functional tests (tests/functional) use the
same helpers with the XenAPI session of their simulated pool.
"""

import base64
import json
import ssl
import time
import urllib.parse
import xmlrpc.client
import zlib

import XenAPI

HOST_PLUGIN = 'nova_xen_host.py'
API_VERSION = ('2', '21')
ORIGINATOR = 'nova-xen-tempest'


def _transport(url, ca_file=None, insecure=False):
    if urllib.parse.urlsplit(url).scheme != 'https':
        return None
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cafile=ca_file)
    return xmlrpc.client.SafeTransport(context=context)


def connect(url, username, password, ca_file=None, insecure=False):
    """A logged-in XenAPI session with the pool master of ``url``.

    A pool member answers HOST_IS_SLAVE with its master's address: the
    session then goes to the master, with the same scheme and port.
    """
    session = XenAPI.Session(url, transport=_transport(url, ca_file,
                                                       insecure))
    try:
        session.login_with_password(username, password or '',
                                    '.'.join(API_VERSION), ORIGINATOR)
    except XenAPI.Failure as exc:
        if exc.details[:1] != ['HOST_IS_SLAVE']:
            raise
        parts = urllib.parse.urlsplit(url)
        netloc = exc.details[1]
        if parts.port:
            netloc = '%s:%d' % (netloc, parts.port)
        return connect(urllib.parse.urlunsplit(parts._replace(
            netloc=netloc)), username, password, ca_file, insecure)
    return session


class Xapi(object):
    """Questions about the VMs of Nova's instances, as XenAPI calls.

    ``x`` is a session's ``xenapi`` proxy; ``session`` (optional) is the
    session itself, logged out by :meth:`close`.
    """

    def __init__(self, x, session=None):
        self.x = x
        self.session = session

    @classmethod
    def from_conf(cls, group):
        """From tempest.conf's [xenapi] group: one pool's view, or a
        :class:`Pools` view when it names several pool masters."""
        urls = group.connection_url
        if isinstance(urls, str):
            urls = [urls]
        views = []
        try:
            for url in urls:
                session = connect(url, group.connection_username,
                                  group.connection_password,
                                  ca_file=group.ca_file,
                                  insecure=group.insecure)
                views.append(cls(session.xenapi, session))
        except Exception:
            for view in views:
                view.close()
            raise
        return views[0] if len(views) == 1 else Pools(views)

    def close(self):
        if self.session is not None:
            try:
                self.x.session.logout()
            except Exception:
                pass

    # -- VMs -----------------------------------------------------------------

    def vms_of(self, instance_uuid):
        """Every VM (not template, not snapshot) tagged for the instance."""
        return [(ref, rec) for ref, rec in self.x.VM.get_all_records().items()
                if rec['other_config'].get('nova_uuid') == instance_uuid and
                not rec['is_a_template'] and not rec['is_a_snapshot']]

    def vm_of(self, instance_uuid):
        """(ref, record) of the instance's VM; (None, None) if it has none.

        More than one VM for an instance is a driver bug: AssertionError.
        """
        vms = self.vms_of(instance_uuid)
        if len(vms) > 1:
            raise AssertionError('%d VMs are tagged nova_uuid=%s: %s' % (
                len(vms), instance_uuid, [r['uuid'] for _, r in vms]))
        return vms[0] if vms else (None, None)

    def wait_for_power_state(self, vm, state, timeout=60, interval=0.5):
        """Wait until VM.power_state is ``state``; return the record."""
        deadline = time.time() + timeout
        while True:
            record = self.x.VM.get_record(vm)
            if record['power_state'] == state:
                return record
            if time.time() > deadline:
                raise AssertionError('VM %s is %s in xapi, not %s, after %d s'
                                     % (record['uuid'], record['power_state'],
                                        state, timeout))
            time.sleep(interval)

    def hostnames(self):
        """The hostname of every host of the pool."""
        return [rec['hostname'] for rec in self.x.host.get_all_records(
        ).values()]

    def host_of(self, record):
        """The host record a VM runs on (resident_on), or None."""
        if record['resident_on'] in ('', 'OpaqueRef:NULL'):
            return None
        return self.x.host.get_record(record['resident_on'])

    def disks(self, record):
        """{userdevice: VDI record} of the VM's disk VBDs."""
        disks = {}
        for vbd in record['VBDs']:
            vbd_rec = self.x.VBD.get_record(vbd)
            if vbd_rec['type'] != 'Disk' or vbd_rec['empty'] or \
                    vbd_rec['VDI'] == 'OpaqueRef:NULL':
                continue
            disks[vbd_rec['userdevice']] = self.x.VDI.get_record(
                vbd_rec['VDI'])
        return disks

    def vifs(self, record):
        """The VM's VIF records, by device number."""
        vifs = [self.x.VIF.get_record(vif) for vif in record['VIFs']]
        return sorted(vifs, key=lambda v: int(v['device']))

    def snapshot_vdis_of(self, instance_uuid):
        """Snapshot VDIs the driver made of the instance and left behind."""
        return [rec['uuid'] for rec in self.x.VDI.get_all_records().values()
                if rec['other_config'].get('nova_snapshot_of') ==
                instance_uuid]

    # -- dom0 ------------------------------------------------------------------

    def dom0_console_log(self, record, max_bytes=64 * 1024):
        """The last bytes of the guest's console log, read in dom0.

        Read by nova-xen's own dom0 plugin, as the driver reads it for
        os-getConsoleOutput.
        """
        text = self.x.host.call_plugin(
            record['resident_on'], HOST_PLUGIN, 'console_log',
            {'params': json.dumps({'domid': int(record['domid']),
                                   'max_bytes': max_bytes})})
        data = zlib.decompress(base64.b64decode(json.loads(text)['data']))
        return data.decode('utf-8', 'replace')


class Pools(object):
    """The questions of :class:`Xapi` over several pools (a cloud whose
    nova-computes manage hosts of several pools): a VM is looked for in
    every pool, and what follows about it is asked of its pool."""

    def __init__(self, views):
        self.views = views
        self._pool_of = {}          # VM ref or uuid -> its pool's view

    def close(self):
        for view in self.views:
            view.close()

    def _remember(self, view, found):
        for ref, rec in found:
            self._pool_of[ref] = self._pool_of[rec['uuid']] = view
        return found

    def _view(self, vm_or_record):
        key = vm_or_record['uuid'] if isinstance(vm_or_record, dict) \
            else vm_or_record
        view = self._pool_of.get(key)
        if view is None:
            raise AssertionError('VM %s was not found through vm_of or '
                                 'vms_of first' % key)
        return view

    def vms_of(self, instance_uuid):
        return [vm for view in self.views
                for vm in self._remember(view, view.vms_of(instance_uuid))]

    def vm_of(self, instance_uuid):
        vms = self.vms_of(instance_uuid)
        if len(vms) > 1:
            raise AssertionError('%d VMs are tagged nova_uuid=%s: %s' % (
                len(vms), instance_uuid, [r['uuid'] for _, r in vms]))
        return vms[0] if vms else (None, None)

    def wait_for_power_state(self, vm, state, **kwargs):
        return self._view(vm).wait_for_power_state(vm, state, **kwargs)

    def hostnames(self):
        return [name for view in self.views for name in view.hostnames()]

    def host_of(self, record):
        return self._view(record).host_of(record)

    def disks(self, record):
        return self._view(record).disks(record)

    def vifs(self, record):
        return self._view(record).vifs(record)

    def snapshot_vdis_of(self, instance_uuid):
        return [uuid for view in self.views
                for uuid in view.snapshot_vdis_of(instance_uuid)]

    def dom0_console_log(self, record, **kwargs):
        return self._view(record).dom0_console_log(record, **kwargs)
