"""A Python client for xapisim's control interface (tests, benchmarks)."""

import base64
import json
import ssl
import urllib.request


class ControlError(Exception):
    pass


class Control(object):
    """Talks to ``/_xapisim/`` on one host; acts on that host's pool."""

    def __init__(self, url, username='root', password='xapisim',
                 ca_file=None):
        self.url = url.rstrip('/')
        self._context = ssl.create_default_context(cafile=ca_file) \
            if url.startswith('https') else None
        token = base64.b64encode(('%s:%s' % (username, password)).encode())
        self._auth = 'Basic ' + token.decode()

    def _request(self, method, action, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request('%s/_xapisim/%s' % (self.url, action),
                                     data=data, method=method)
        req.add_header('Authorization', self._auth)
        if data is not None:
            req.add_header('Content-Type', 'application/json')
        try:
            with urllib.request.urlopen(req, timeout=60,
                                        context=self._context) as resp:
                return json.loads(resp.read().decode() or 'null')
        except urllib.error.HTTPError as exc:
            raise ControlError('%s %s: HTTP %d %s' % (
                method, action, exc.code, exc.read().decode(errors='replace')))

    def describe(self):
        return self._request('GET', 'describe')

    def calls(self):
        return self._request('GET', 'calls')

    def reset_calls(self):
        return self._request('POST', 'calls/reset', {})

    def fail(self, message, error, nth=1, times=1):
        """The ``nth`` call of ``message`` (and ``times``-1 more) fails.

        ``message`` is an XML-RPC message (``VM.start``) or a point inside
        an operation (``VM.migrate_send/copy``: the list is
        ``xapisim.faults.POINTS``), where ``nth`` counts the passages.
        """
        return self._request('POST', 'fault', {
            'message': message, 'error': list(error), 'nth': nth,
            'times': times})

    def delay(self, message, seconds, nth=1, times=1):
        return self._request('POST', 'fault', {
            'message': message, 'delay': seconds, 'nth': nth, 'times': times})

    def faults(self):
        return self._request('GET', 'faults')

    def clear_faults(self):
        return self._request('POST', 'faults/clear', {})

    def set_latency(self, ms):
        return self._request('POST', 'latency', {'ms': ms})

    def restart_xapi(self):
        return self._request('POST', 'restart', {})

    def move_master(self, host_uuid):
        return self._request('POST', 'move_master', {'host_uuid': host_uuid})

    def host_live(self, host_uuid, live):
        """Mark a host of the pool dead (False) or alive again (True)."""
        return self._request('POST', 'host_live', {'host_uuid': host_uuid,
                                                   'live': live})

    def guest(self, vm_uuid, **behaviour):
        body = dict(behaviour, vm_uuid=vm_uuid)
        return self._request('POST', 'guest', body)

    def guest_action(self, vm_uuid, action):
        return self._request('POST', 'guest_action',
                             {'vm_uuid': vm_uuid, 'action': action})

    def guest_netns(self, vm_uuid):
        """The network namespace of a running VM's guest (a world with
        real dom0 networking): its NICs are ``eth<VIF device>``."""
        return self._request('POST', 'guest_netns',
                             {'vm_uuid': vm_uuid})['netns']

    def create_vms(self, count, running=False, memory_mib=64,
                   name_prefix='bulk-', other_config=None, instances=False):
        """``instances``: each VM tagged as a nova-xen instance of its own
        (other_config nova_uuid), placed on the master host."""
        return self._request('POST', 'vms', {
            'count': count, 'running': running, 'memory_mib': memory_mib,
            'name_prefix': name_prefix, 'other_config': other_config or {},
            'instances': instances})

    def write_vdi(self, vdi_uuid, data, offset=0):
        """``data`` written into the VDI at ``offset``, as by its VM."""
        return self._request('POST', 'vdi_write', {
            'vdi_uuid': vdi_uuid, 'offset': offset,
            'data': base64.b64encode(data).decode()})

    def secureboot_certs(self, files=('PK', 'KEK', 'db', 'dbx'),
                         host_uuids=None):
        """As ``secureboot-certs install`` leaves dom0: these auth files
        (no others) on every host, or on ``host_uuids``; () clears them.
        Returns the pool's readiness."""
        body = {'files': list(files)}
        if host_uuids is not None:
            body['host_uuids'] = list(host_uuids)
        return self._request('POST', 'secureboot_certs', body)['readiness']

    def set_restrictions(self, **restrictions):
        return self._request('POST', 'restrictions', {'set': restrictions})

    def guest_firmware(self, vm_uuid, efi_variables=None, tpm=None):
        """The running guest writes UEFI variables ({name: value}) or its
        TPM state (bytes)."""
        body = {'vm_uuid': vm_uuid, 'efi_variables': efi_variables or {}}
        if tpm is not None:
            body['tpm'] = base64.b64encode(tpm).decode()
        return self._request('POST', 'guest_firmware', body)
