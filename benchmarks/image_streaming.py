"""How fast each image handler streams a Glance image into a VDI.

Run from the repository root, with the py3 tox environment (it has Nova)::

    .tox/py3/bin/python benchmarks/image_streaming.py [--mib 512]
        [--formats raw,vhd] [--parallel 2]

An image of ``--mib`` MiB of random bytes (raw; or a dynamic VHD holding
every block of the same bytes) is served by a Glance stand-in (a separate
process sending the file with ``sendfile``, Glance's record carrying md5
``checksum`` and a sha512 multihash as Glance computes them), and written
into a VDI of a simulated pool along each path:

* ``dd``                      the same bytes from one file to another (100 %);
* ``direct import``           ``PUT /import_raw_vdi`` of the file, sent with
  ``sendfile`` by this process (xapisim's own import rate);
* ``dom0 plugin``             ``host.call_plugin(nova_xen_images.py,
  download_image)`` as Dom0PluginHandler.write calls it: dom0 fetches,
  verifies and writes the image;
* ``vdi_remote_stream``       RemoteStreamHandler.open/write in a fresh
  Python process with Nova's own Glance client (as in nova-compute).

Each is printed as MiB/s and as a percentage of the direct import and of
``dd`` (one run each, after one unmeasured warm-up of every path), with the
peak RSS of the dom0 plugin's process (VmHWM, polled from /proc while it
runs) and the growth of nova-compute's peak RSS while it streams.
``--parallel N`` also times N plugin downloads at once (N spawns).
"""

import argparse
import hashlib
import http.server
import json
import multiprocessing
import os
import re
import resource
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

import xapisim  # noqa: E402
from xapisim import vhd as simvhd  # noqa: E402

MIB = 1024 * 1024
PLUGINS_DIR = os.path.join(HERE, 'dom0_plugins', 'etc', 'xapi.d', 'plugins')
PY36 = os.environ.get('XAPISIM_PY36',
                      '/root/.pyenv/versions/3.6.15/bin/python3.6')
TOKEN = 'bench-token-0123456789'


# -- the Glance stand-in (its own process) ------------------------------

class _GlanceHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *args):
        pass

    def do_GET(self):
        match = re.match(r'^/v2/images/([0-9a-f-]{36})(/file)?$', self.path)
        images = self.server.images
        if self.headers.get('X-Auth-Token') != TOKEN or not match or \
                match.group(1) not in images:
            self.send_response(404)
            self.send_header('Content-Length', '0')
            self.end_headers()
            return
        record = images[match.group(1)]
        if not match.group(2):
            body = json.dumps(dict(record, path=None)).encode()
            self.send_response(200)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header('Content-Type', 'application/octet-stream')
        self.send_header('Content-Length', str(record['size']))
        self.send_header('Connection', 'close')
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        with open(record['path'], 'rb') as src:
            try:
                self.connection.sendfile(src)
            except OSError:
                pass


class _GlanceServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def _serve_glance(images, ready):
    server = _GlanceServer(('127.0.0.1', 0), _GlanceHandler)
    server.images = images
    ready.put(server.server_address[1])
    server.serve_forever()


def start_glance(images):
    ready = multiprocessing.Queue()
    proc = multiprocessing.Process(target=_serve_glance, args=(images, ready),
                                   daemon=True)
    proc.start()
    return proc, 'http://127.0.0.1:%d' % ready.get(timeout=30)


# -- images ---------------------------------------------------------------

def make_images(tmp, size):
    """{format: Glance record with 'path'} of a raw image and a VHD."""
    raw = os.path.join(tmp, 'image.raw')
    with open(raw, 'wb') as out:
        for _ in range(size // (64 * MIB)):
            out.write(os.urandom(64 * MIB))
        out.write(os.urandom(size % (64 * MIB)))
    vhd = os.path.join(tmp, 'image.vhd')
    with open(raw, 'rb') as src, open(vhd, 'wb') as out:
        def block(idx):
            src.seek(idx * simvhd.BLOCK_SIZE)
            return src.read(simvhd.BLOCK_SIZE)
        entries = (size + simvhd.BLOCK_SIZE - 1) // simvhd.BLOCK_SIZE
        for piece in simvhd.write_vhd(size, range(entries), block):
            out.write(piece)
    images = {}
    for fmt, path in (('raw', raw), ('vhd', vhd)):
        md5, sha512 = hashlib.md5(), hashlib.sha512()
        with open(path, 'rb') as src:
            for piece in iter(lambda: src.read(8 * MIB), b''):
                md5.update(piece)
                sha512.update(piece)
        images[fmt] = {
            'id': str(uuid.uuid4()), 'status': 'active', 'path': path,
            'size': os.path.getsize(path), 'disk_format': fmt,
            'container_format': 'bare', 'checksum': md5.hexdigest(),
            'os_hash_algo': 'sha512', 'os_hash_value': sha512.hexdigest(),
            'virtual_size': None, 'visibility': 'public',
            'min_disk': 0, 'min_ram': 0, 'name': 'bench-' + fmt,
            'protected': False, 'tags': [], 'owner': 'bench',
            'created_at': '2026-12-03T00:00:00Z',
            'updated_at': '2026-12-03T00:00:00Z'}
    return images


# -- the paths --------------------------------------------------------------

def dd(path, tmp):
    out = os.path.join(tmp, 'dd.out')
    start = time.monotonic()
    subprocess.run(['dd', 'if=' + path, 'of=' + out, 'bs=1M', 'status=none'],
                   check=True)
    took = time.monotonic() - start
    os.unlink(out)
    return took


def direct_import(session, vdi, path, fmt):
    size = os.path.getsize(path)
    with session.http_session() as sid:
        host = urllib.parse.urlsplit(session.url).hostname
        conn = session.http_connection(host, timeout=600)
        query = urllib.parse.urlencode({'session_id': sid, 'vdi': vdi,
                                        'format': fmt})
        start = time.monotonic()
        conn.putrequest('PUT', '/import_raw_vdi?' + query)
        conn.putheader('Content-Length', str(size))
        conn.endheaders()
        with open(path, 'rb') as src:
            conn.sock.sendfile(src)
        conn.getresponse().read()
        conn.close()
        return time.monotonic() - start


class PeakRss(object):
    """The largest VmHWM of processes running ``needle``, polled."""

    def __init__(self, needle):
        self.needle = needle.encode()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self):
        while not self._stop.wait(0.005):
            for pid in os.listdir('/proc'):
                if not pid.isdigit():
                    continue
                try:
                    with open('/proc/%s/cmdline' % pid, 'rb') as fh:
                        if self.needle not in fh.read():
                            continue
                    with open('/proc/%s/status' % pid) as fh:
                        for line in fh:
                            if line.startswith('VmHWM:'):
                                self.peak = max(self.peak,
                                                int(line.split()[1]))
                except OSError:
                    pass

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.peak / 1024.0


def plugin_params(image, glance_url, vdi_uuid, max_size):
    return {'image_id': image['id'], 'endpoints': [glance_url],
            'token': TOKEN, 'vdi_uuid': vdi_uuid,
            'disk_format': image['disk_format'],
            'container_format': 'bare', 'size': image['size'],
            'max_virtual_size': max_size,
            'checksum': {'algorithm': image['os_hash_algo'],
                         'value': image['os_hash_value']},
            'verify_tls': True}


def dom0_plugin(session, host, params_list):
    rss = PeakRss('nova_xen_images.py')
    start = time.monotonic()
    errors = []

    def one(params):
        try:
            session.call_plugin(host, 'nova_xen_images.py', 'download_image',
                                params, long_running=True)
        except Exception as exc:
            errors.append(exc)
    threads = [threading.Thread(target=one, args=(p,)) for p in params_list]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.monotonic() - start
    peak = rss.stop()
    if errors:
        raise errors[0]
    return took, peak


def remote_stream(world, glance_url, image, vdi, address):
    """RemoteStreamHandler in a fresh process: (seconds, RSS growth MiB)."""
    job = {'world': world, 'glance': glance_url, 'image': image,
           'vdi': vdi, 'address': address}
    out = subprocess.check_output(
        [sys.executable, os.path.abspath(__file__), '--remote-child',
         json.dumps(job)], cwd=HERE,
        env=dict(os.environ, PYTHONWARNINGS='ignore'))
    found = json.loads(out.decode().strip().splitlines()[-1])
    return found['seconds'], found['rss_growth_mib']


def _remote_child(job):
    """What nova-compute does with image_handler = vdi_remote_stream."""
    import types

    from nova import context as nova_context
    from nova import objects

    from nova_xen.conf import CONF
    from nova_xen import images
    from nova_xen import session as session_mod

    objects.register_all()
    CONF([], project='nova')
    CONF.set_override('api_servers', [job['glance']], 'glance')
    CONF.set_override('image_handler', 'vdi_remote_stream', 'xenserver')
    world = job['world']
    session = session_mod.Session(world['pools'][0]['master'],
                                  world['username'],
                                  world['password']).connect()
    image = dict(job['image'])
    meta = objects.ImageMeta.from_dict({
        'id': image['id'], 'name': image['name'], 'size': image['size'],
        'disk_format': image['disk_format'], 'container_format': 'bare',
        'status': 'active', 'checksum': image['checksum']})
    ctx = nova_context.RequestContext('bench-user', 'bench-project',
                                      auth_token=TOKEN)
    instance = types.SimpleNamespace(flavor=types.SimpleNamespace(root_gb=0))
    handler = images.RemoteStreamHandler(session)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    stream, fmt, _ = handler.open(ctx, instance, meta)
    handler.write(stream, fmt, int(meta.size), job['vdi'], job['address'])
    took = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    session.close()
    print(json.dumps({'seconds': took,
                      'rss_growth_mib': (after - before) / 1024.0}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--mib', type=int, default=512)
    parser.add_argument('--formats', default='raw,vhd')
    parser.add_argument('--parallel', type=int, default=2,
                        help='also time this many plugin downloads at once '
                             '(0: not)')
    parser.add_argument('--plugin-python', default=None,
                        help='the Python that runs the dom0 plugins '
                             '(default: a Python 3.6, as in XCP-ng 8.3\'s '
                             'dom0, if there is one; this machine\'s 3.6 '
                             'has no OpenSSL hashlib, which dom0\'s has)')
    parser.add_argument('--remote-child', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.remote_child:
        return _remote_child(json.loads(args.remote_child))
    from nova_xen import session as session_mod
    size = args.mib * MIB
    python = args.plugin_python or (
        PY36 if os.path.exists(PY36) else sys.executable)
    print('dom0 plugins run with %s' % python)
    rows = []
    with tempfile.TemporaryDirectory(prefix='image-bench-') as tmp:
        images = make_images(tmp, size)
        glance, glance_url = start_glance(
            dict((image['id'], image) for image in images.values()))
        try:
            with xapisim.running(plugins_dir=PLUGINS_DIR,
                                 plugin_python=python,
                                 sr_size_gib=max(64, 8 * args.mib // 1024)
                                 ) as world:
                session = session_mod.Session(
                    world['pools'][0]['master'], world['username'],
                    world['password']).connect()
                host = session.call('host.get_all')[0]
                address = session.call('host.get_address', host)
                sr = session.call('pool.get_default_SR',
                                  session.call('pool.get_all')[0])

                def new_vdi():
                    return session.call('VDI.create', {
                        'SR': sr, 'virtual_size': str(size), 'type': 'user',
                        'sharable': False, 'read_only': False,
                        'other_config': {}, 'name_label': 'bench',
                        'name_description': '', 'sm_config': {},
                        'xenstore_data': {}, 'tags': []})

                for fmt in args.formats.split(','):
                    image = images[fmt]
                    for warm in (True, False):
                        got = {}
                        got['dd'] = (dd(image['path'], tmp), None)
                        vdi = new_vdi()
                        got['direct import'] = (direct_import(
                            session, vdi, image['path'], fmt), None)
                        session.call('VDI.destroy', vdi)
                        vdi = new_vdi()
                        got['dom0 plugin'] = dom0_plugin(session, host, [
                            plugin_params(image, glance_url,
                                          session.call('VDI.get_uuid', vdi),
                                          size)])
                        session.call('VDI.destroy', vdi)
                        if args.parallel > 1 and not warm:
                            vdis = [new_vdi() for _ in range(args.parallel)]
                            took, peak = dom0_plugin(session, host, [
                                plugin_params(image, glance_url,
                                              session.call('VDI.get_uuid', v),
                                              size) for v in vdis])
                            got['dom0 plugin x%d' % args.parallel] = (
                                took / args.parallel, peak)
                            for v in vdis:
                                session.call('VDI.destroy', v)
                        vdi = new_vdi()
                        got['vdi_remote_stream'] = remote_stream(
                            world, glance_url, image, vdi, address)
                        session.call('VDI.destroy', vdi)
                    rows.append((fmt, got))
                session.close()
        finally:
            glance.terminate()
    print('%d MiB image (random bytes), one run per path, dom0 plugin under '
          '%s, checksum sha512' % (args.mib, os.path.basename(python)))
    print('%-4s %-22s %8s %9s %10s %8s %10s' % (
        'fmt', 'path', 'seconds', 'MiB/s', 'vs import', 'vs dd',
        'peak MiB'))
    for fmt, got in rows:
        base_dd = got['dd'][0]
        base_import = got['direct import'][0]
        for name, (took, peak) in got.items():
            print('%-4s %-22s %8.3f %9.1f %9.0f%% %7.0f%% %10s' % (
                fmt, name, took, args.mib / took, 100.0 * base_import / took,
                100.0 * base_dd / took,
                '' if peak is None else '%.1f' % peak))
    print('peak MiB: dom0 plugin: the plugin process\'s VmHWM (x N: the '
          'largest of the N); vdi_remote_stream: growth of the process\'s '
          'peak RSS while streaming. x N: seconds per image with N at once.')


if __name__ == '__main__':
    main()
