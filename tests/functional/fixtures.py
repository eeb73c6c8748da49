"""Fixtures that put a simulated XCP-ng pool beside an in-process Nova."""

import collections
import contextlib
import hashlib
import http.client
import io
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse
import xmlrpc.client

import fixtures
import XenAPI

import xapisim
from xapisim import vhd
from xapisim.client import Control


def api_paste_config():
    """nova's api-paste.ini as installed next to the nova package."""
    candidates = [os.path.join(sys.prefix, 'etc', 'nova', 'api-paste.ini')]
    import nova
    here = os.path.dirname(os.path.abspath(nova.__file__))
    candidates.append(os.path.join(os.path.dirname(here), 'etc', 'nova',
                                   'api-paste.ini'))
    for path in candidates:
        if os.path.exists(path):
            return path
    raise RuntimeError('nova api-paste.ini not found in %s' % candidates)


def rules_in(x, host=None):
    """{VIF uuid: [dom0 device, ...]} with isolation rules on a host (the
    pool's first, by default) of the pool a XenAPI proxy ``x`` talks to."""
    host = host or x.host.get_all()[0]
    return json.loads(x.host.call_plugin(
        host, 'nova_xen_isolation.py', 'list_rules',
        {'params': '{}'}))['vifs']


def serve_agents(neutron, agents):
    """Give nova's NeutronFixture Neutron's agents API (``list_agents``,
    filtered by field as Neutron filters; a list value matches any of its
    items), answering from ``agents``, a list the test may change."""
    def list_agents(**filters):
        filters.pop('fields', None)
        return {'agents': [
            dict(agent) for agent in agents
            if all(agent.get(key) in (value if isinstance(value, list)
                                      else [value])
                   for key, value in filters.items())]}
    neutron.list_agents = list_agents


class PluginsCopy(fixtures.Fixture):
    """A copy of the dom0 plugins directory that a test may alter (modes
    kept), for xapisim's ``plugins_dir``."""

    def _setUp(self):
        import shutil
        import tempfile
        from xapisim.plugins import default_plugins_dir
        self.path = tempfile.mkdtemp(prefix='nova-xen-plugins-')
        self.addCleanup(shutil.rmtree, self.path, True)
        source = default_plugins_dir()
        for name in os.listdir(source):
            if os.path.isfile(os.path.join(source, name)):
                shutil.copy2(os.path.join(source, name), self.path)

    def edit(self, plugin, old, new):
        """Replace ``old`` (which must be there) by ``new`` in a plugin."""
        path = os.path.join(self.path, plugin)
        with open(path) as fh:
            text = fh.read()
        if old not in text:
            raise AssertionError('%r not in %s' % (old, plugin))
        with open(path, 'w') as fh:
            fh.write(text.replace(old, new))


class XapisimFixture(fixtures.Fixture):
    """A xapisim world in its own process, with a client for the test."""

    def __init__(self, **options):
        super(XapisimFixture, self).__init__()
        self.options = options

    def _setUp(self):
        stack = contextlib.ExitStack()
        self.addCleanup(stack.close)
        self.world = stack.enter_context(xapisim.running(**self.options))
        self.pool = self.world['pools'][0]
        self.url = self.pool['master']
        self.username = self.world['username']
        self.password = self.world['password']
        self.ca_file = self.world.get('ca_file')
        self.session = XenAPI.Session(self.url, transport=self._transport())
        self.session.login_with_password(self.username, self.password,
                                         '2.21', 'nova-xen-tests')
        self.addCleanup(self._logout)
        self.x = self.session.xenapi
        self.control = Control(self.url, self.username, self.password,
                               ca_file=self.ca_file)

    def _logout(self):
        try:
            self.x.session.logout()
        except Exception:
            pass

    # -- what a test looks at ------------------------------------------

    def vm_of(self, instance_uuid):
        """The VM record tagged for an instance, or None."""
        for ref, record in self.x.VM.get_all_records().items():
            if record['other_config'].get('nova_uuid') == instance_uuid:
                return ref, record
        return None

    def objects_of(self, instance_uuid):
        """Every VM, VDI, VBD and VIF that still mentions the instance."""
        left = {}
        for cls in ('VM', 'VDI', 'VIF'):
            records = getattr(self.x, cls).get_all_records()
            left[cls] = [ref for ref, r in records.items()
                         if r['other_config'].get('nova_uuid') ==
                         instance_uuid]
        vms = set(left['VM'])
        left['VBD'] = [ref for ref, r in self.x.VBD.get_all_records().items()
                       if r['VM'] in vms or r['VDI'] in left['VDI']]
        return left

    def image_cache(self):
        """{image id: [VDI ref, ...]} of the pool's cached images."""
        found = {}
        for ref, r in self.x.VDI.get_all_records().items():
            image = r['other_config'].get('nova_image_cache')
            if image:
                found.setdefault(image, []).append(ref)
        return found

    def vdis_besides_the_cache(self):
        """Every VDI but cached images and the hidden base copies their
        clones made (what the SR holds for instances and others)."""
        return {ref for ref, r in self.x.VDI.get_all_records().items()
                if r['managed'] and
                'nova_image_cache' not in r['other_config']}

    def isolation_rules(self, host=None):
        """{VIF uuid: [dom0 device, ...]} with isolation rules on a host."""
        return rules_in(self.x, host)

    def login(self, url):
        """A XenAPI session on another pool of the world (its master's
        URL), logged out at clean-up."""
        session = XenAPI.Session(url, transport=self._transport())
        session.login_with_password(self.username, self.password, '2.21',
                                    'nova-xen-tests')
        self.addCleanup(lambda: session.xenapi.session.logout())
        return session

    def _transport(self):
        if self.ca_file:
            return xmlrpc.client.SafeTransport(
                context=ssl.create_default_context(cafile=self.ca_file))
        return None

    def vdi_bytes(self, vdi, length):
        """The first ``length`` bytes of a VDI (exported as VHD)."""
        return self.vdi_bytes_in(self.session, vdi, length)

    def vdi_bytes_in(self, session, vdi, length):
        """The same, for a VDI of the pool of ``session`` (see login)."""
        x = session.xenapi
        size = int(x.VDI.get_virtual_size(vdi))
        data = bytearray(min(length, size))
        address = x.host.get_address(x.pool.get_master(x.pool.get_all()[0]))
        port = urllib.parse.urlsplit(self.url).port
        if self.ca_file:
            conn = http.client.HTTPSConnection(
                address, port, timeout=120,
                context=ssl.create_default_context(cafile=self.ca_file))
        else:
            conn = http.client.HTTPConnection(address, port, timeout=120)
        conn.request('GET', '/export_raw_vdi?session_id=%s&vdi=%s&format=vhd'
                     % (session._session, vdi))
        resp = conn.getresponse()
        assert resp.status == 200, resp.status

        def write(offset, chunk):
            if offset < len(data):
                end = min(len(data), offset + len(chunk))
                data[offset:end] = chunk[:end - offset]
        vhd.read_vhd(resp.read, size, write)
        conn.close()
        return bytes(data)


def glance_image(glance, data, disk_format='raw', container_format='bare',
                 name='xen-test-image', **extra):
    """Register an image with bytes in nova's GlanceFixture."""
    meta = {'name': name, 'status': 'active', 'disk_format': disk_format,
            'container_format': container_format, 'size': len(data),
            'min_ram': 0, 'min_disk': 0, 'visibility': 'public',
            'protected': False, 'properties': {},
            # what Glance computes when the data is uploaded
            'checksum': hashlib.md5(data).hexdigest(),
            'os_hash_algo': 'sha512',
            'os_hash_value': hashlib.sha512(data).hexdigest()}
    meta.update(extra)
    return glance.create(None, meta, data=io.BytesIO(data))['id']


class Handlers(fixtures.Fixture):
    """Handlers (methods) of a compute manager, counted: how many calls of
    each have returned, and how many run now.  An operation Nova runs in
    the background (a build) is over when its handler has returned."""

    def __init__(self, manager, names):
        super(Handlers, self).__init__()
        self.manager = manager
        self.names = names

    def _setUp(self):
        self._cond = threading.Condition()
        self.returned = collections.Counter()
        self.running = 0
        for name in self.names:
            self.useFixture(fixtures.MockPatchObject(
                self.manager, name,
                new=self._counted(name, getattr(self.manager, name))))

    def _counted(self, name, handler):
        def counted(*args, **kwargs):
            with self._cond:
                self.running += 1
            try:
                return handler(*args, **kwargs)
            finally:
                with self._cond:
                    self.running -= 1
                    self.returned[name] += 1
                    self._cond.notify_all()
        return counted

    def wait(self, name=None, count=0, limit=120):
        """Until ``name`` has returned ``count`` times and none runs; a
        failure after ``limit`` seconds (a safety net: the handlers return
        well before)."""
        deadline = time.monotonic() + limit
        with self._cond:
            while self.running or (name and self.returned[name] < count):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        '%s has not returned within %d s (returned: %s, '
                        'running: %d)' % (name or 'a handler', limit,
                                          dict(self.returned), self.running))
                self._cond.wait(left)
