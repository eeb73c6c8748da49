"""An instance's consoles: its log (through dom0) and its graphical console.

The console log is read in dom0 by the ``nova_xen_host.py`` plugin: the
last bytes of ``/var/log/xen/guest/console.<domid>``, compressed on the
way.  The VNC console is xapi's own ``rfb`` console: nova-novncproxy
connects to xapi, asks ``CONNECT /console?...`` and then speaks RFB.
"""

import base64
import urllib.parse
import zlib

from nova.console import type as ctype
from nova import exception

from nova_xen import errors

HOST_PLUGIN = 'nova_xen_host.py'
CONSOLE_LOG_BYTES = 100 * 1024
# xapi's plain-HTTP port, where it serves CONNECT /console without TLS
XAPI_HTTP_PORT = 80


class Consoles(object):
    def __init__(self, session, watcher):
        self.session = session
        self.watcher = watcher

    def _running_vm(self, instance):
        vm, record = self.watcher.record(instance.uuid)
        if vm is None:
            raise exception.InstanceNotFound(instance_id=instance.uuid)
        if record['power_state'] not in ('Running', 'Paused'):
            raise exception.InstanceNotReady(instance_id=instance.uuid)
        return vm, record

    def console_output(self, instance):
        """The last bytes of the guest's console log.  A server that
        stopped (shut off, suspended) shows the log of its latest domain,
        which dom0 keeps, as long as this nova-compute saw that domain (a
        restart forgets it: then the server is not ready until it runs)."""
        vm, record = self.watcher.record(instance.uuid)
        if vm is None:
            raise exception.InstanceNotFound(instance_id=instance.uuid)
        if record['power_state'] in ('Running', 'Paused'):
            host, domid = record['resident_on'], int(record['domid'])
        else:
            last = self.watcher.last_domain(vm)
            if last is None:
                raise exception.InstanceNotReady(instance_id=instance.uuid)
            host, domid = last
        try:
            reply = self.session.call_plugin(
                host, HOST_PLUGIN, 'console_log',
                {'domid': domid, 'max_bytes': CONSOLE_LOG_BYTES})
        except errors.PluginError as exc:
            if 'NOVA_XEN_NO_CONSOLE_LOG' in str(exc):
                raise exception.ConsoleNotAvailable()
            raise
        data = zlib.decompress(base64.b64decode(reply['data']))
        return data.decode('utf-8', 'replace')

    def vnc_console(self, instance):
        vm, record = self._running_vm(instance)
        for console in self.session.call('VM.get_consoles', vm):
            rec = self.session.call('console.get_record', console)
            if rec['protocol'] == 'rfb':
                break
        else:
            raise exception.ConsoleTypeUnavailable(console_type='vnc')
        location = urllib.parse.urlsplit(rec['location'])
        port = location.port if location.scheme == 'http' and \
            location.port else XAPI_HTTP_PORT
        with self.session.http_session() as session_id:
            path = '/console?%s&session_id=%s' % (location.query, session_id)
        return ctype.ConsoleVNC(host=location.hostname, port=port,
                                internal_access_path=path)
