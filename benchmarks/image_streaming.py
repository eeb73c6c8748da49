"""How fast each image handler streams a Glance image into a VDI.

Run from the repository root, with the py3 tox environment (it has Nova)::

    .tox/py3/bin/python benchmarks/image_streaming.py [--mib 512]
        [--formats raw,vhd] [--parallel 2] [--rounds 1]
        [--plugin-python PYTHON] [--tmp DIR] [--stand-in-nice 10]

An image of ``--mib`` MiB of random bytes (raw; or a dynamic VHD holding
every block of the same bytes) is served by a Glance stand-in (a separate
process sending the file with ``sendfile``, Glance's record carrying md5
``checksum`` and a sha512 multihash as Glance computes them), and written
into a VDI of a simulated pool along each path:

* ``dd``                      the same bytes from one file to another;
* ``direct import``           ``PUT /import_raw_vdi`` of the file, sent with
  ``sendfile`` by this process (xapisim's own import rate);
* ``dom0 plugin``             ``host.call_plugin(nova_xen_images.py,
  download_image)`` as Dom0PluginHandler.write calls it: dom0 fetches,
  verifies and writes the image;
* ``vdi_remote_stream``       RemoteStreamHandler.open/write in a fresh
  Python process with Nova's own Glance client (as in nova-compute).

A path that verifies Glance's sha512 as it streams cannot outrun one
core's sha512 in the Python that runs it: just before each path, the same
round measures that rate (the ``sha512`` rows: the Python of the dom0
plugins for the plugin, this Python for ``vdi_remote_stream``), over the
same bytes in the pieces that path hashes.  Each path is printed as
MiB/s, as a percentage of the direct import, of that sha512 rate, of
min(direct import, sha512) (the ceiling; the goal is 90 %) and of ``dd``;
with the CPU time of the process that streams (the plugin's, polled from
/proc; nova-compute's while it streams) as a multiple of the sha512's own
over the same bytes, and its peak RSS (the plugin's VmHWM; the growth of
nova-compute's).  ``--parallel N`` also times N plugin downloads at once
(N spawns).  One warm-up round is not kept; each figure is the median of
``--rounds`` measured rounds.

What the machine adds is kept out of the figures where it can be.  In a
virtual machine whose memory the host reclaims (free page reporting),
the first write to a freshly allocated page costs a fault in the host:
xapisim's import of 512 MiB into a new VDI took 0.15 s to 3 s of system
time.  So the files live in memory (``--tmp``, /dev/shm when it has room),
and every path writes into VDIs that were written once before the first
round (as a thick-provisioned SR's blocks are there before an import).
The Glance stand-in and xapi's side of an import stand in for other
machines (Glance's) and for xapi's own tools in dom0: on a machine of 2
cores they take CPU from the path they serve, so they run at a lower
priority (``--stand-in-nice``: the Glance stand-in's process and
xapisim's threads that move VDI bytes; 0 lets them compete as equals) and
take the CPU the path leaves.  The dom0 plugin, the path measured, runs
at the normal priority.
"""

import argparse
import hashlib
import json
import os
import re
import resource
import shutil
import statistics
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

from cpu_watch import Pipeline, PluginWatch, child_running  # noqa: E402
from glance_standin import TOKEN, start_glance  # noqa: E402

MIB = 1024 * 1024
PLUGINS_DIR = os.path.join(HERE, 'dom0_plugins', 'etc', 'xapi.d', 'plugins')
PY36 = os.environ.get('XAPISIM_PY36',
                      '/root/.pyenv/versions/3.6.15/bin/python3.6')


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


# -- the ceiling: one core's sha512 -------------------------------------

# hashes the file argv[1] read in pieces of argv[2] bytes, each hashed in
# slices of argv[3] bytes (as the path measured does); prints MiB/s of the
# hashing alone (reading the file is not timed), by the clock and by the
# CPU time it took
HASH_RATE = r"""
import hashlib, sys, time
path, piece, piece_slice = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
buf = memoryview(bytearray(piece))
digest, took, cpu, total = hashlib.sha512(), 0.0, 0.0, 0
with open(path, 'rb', buffering=0) as src:
    while True:
        got = src.readinto(buf)
        if not got:
            break
        start, start_cpu = time.perf_counter(), time.process_time()
        for at in range(0, got, piece_slice):
            digest.update(buf[at:min(got, at + piece_slice)])
        took += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        total += got
print(total / took / (1 << 20), total / cpu / (1 << 20))
"""


def _constant(path, name):
    """An integer constant (``NAME = 2 << 20``) of a module's source."""
    with open(path) as src:
        found = re.search(r'^%s = ([0-9 <>*]+)' % name, src.read(), re.M)
    return int(eval(found.group(1)))


def hashing():
    """(piece, slice) of how each path hashes the image: the plugin as
    nova_xen_glance.py reads and hashes; as nova-compute's reader
    (nova_xen/glance_stream.py) receives and hashes."""
    glance_py = os.path.join(PLUGINS_DIR, 'nova_xen_glance.py')
    plugin = _constant(glance_py, 'CHUNK')
    plugin_slice = _constant(glance_py, 'HASH_SLICE')
    remote = _constant(os.path.join(HERE, 'nova_xen', 'glance_stream.py'),
                       'CHUNK')
    return {'plugin': (plugin, plugin_slice), 'remote': (remote, remote)}


class HashRate(float):
    """MiB/s of one core's sha512 (by the clock); ``cpu``: by its CPU
    time."""


def hash_rate(python, path, piece, piece_slice):
    """MiB/s of one core's sha512 in ``python`` over the file's bytes."""
    out = subprocess.check_output([python, '-c', HASH_RATE, path,
                                   str(piece), str(piece_slice)])
    by_clock, by_cpu = out.decode().split()
    rate = HashRate(by_clock)
    rate.cpu = float(by_cpu)
    return rate


# -- the paths --------------------------------------------------------------

def dd(path, tmp):
    """Seconds to copy ``path`` over a file of the same size written
    before (not truncated: its pages are reused, as a VDI's are)."""
    out = os.path.join(tmp, 'dd.out')
    start = time.monotonic()
    subprocess.run(['dd', 'if=' + path, 'of=' + out, 'bs=1M', 'status=none',
                    'conv=notrunc'], check=True)
    return time.monotonic() - start


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
    watch = PluginWatch('nova_xen_images.py')
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
    peak, cpu, busiest = watch.stop()
    if errors:
        raise errors[0]
    return took, peak, cpu, busiest


def remote_stream(world, glance_url, image, vdi, address):
    """RemoteStreamHandler in a fresh process: (seconds, RSS growth MiB)."""
    job = {'world': world, 'glance': glance_url, 'image': image,
           'vdi': vdi, 'address': address}
    out = subprocess.check_output(
        [sys.executable, os.path.abspath(__file__), '--remote-child',
         json.dumps(job)], cwd=HERE,
        env=dict(os.environ, PYTHONWARNINGS='ignore'))
    found = json.loads(out.decode().strip().splitlines()[-1])
    return (found['seconds'], found['rss_growth_mib'], found['cpu'],
            found['busiest'])


def _remote_child(job):
    """What nova-compute does with image_handler = vdi_remote_stream."""
    import types

    from nova import context as nova_context
    from nova import objects

    from nova_xen.conf import CONF
    from nova_xen import glance_stream
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
    # the record as Nova's image API returns it (the stand-in serves no
    # JSON schemas for Nova's client; one small GET either way)
    images.glance_record = lambda context, image_id: dict(image)
    instance = types.SimpleNamespace(flavor=types.SimpleNamespace(root_gb=0))
    handler = images.RemoteStreamHandler(session)
    # the CPU time of the threads that stream: nova-compute's reader
    # receives in one and hashes in another; this one sends
    threads = {}

    def timed(name, work):
        def run(stream, *args):
            began = time.thread_time()
            try:
                return work(stream, *args)
            finally:
                threads[name] = time.thread_time() - began
        return run
    reader = glance_stream.GlanceReader
    reader._receive = timed('receive', reader._receive)
    reader._hash = timed('hash', reader._hash)
    began = time.thread_time()
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic()
    stream, fmt, _ = handler.open(ctx, instance, meta)
    handler.write(stream, fmt, int(meta.size), job['vdi'], job['address'])
    took = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    threads['send'] = time.thread_time() - began
    session.close()
    print(json.dumps({
        'busiest': max(threads.values()),
        'seconds': took,
        'rss_growth_mib': (after.ru_maxrss - before.ru_maxrss) / 1024.0,
        'cpu': (after.ru_utime + after.ru_stime - before.ru_utime -
                before.ru_stime)}))


def measure(args, python, pieces, images, tmp, glance_url, glance_pid):
    """Every path, for each format: [(format, {path: Timed}), ...] per
    round (after one warm-up round, not kept)."""
    from nova_xen import session as session_mod
    size = args.mib * MIB
    rounds = []
    with xapisim.running(plugins_dir=PLUGINS_DIR, plugin_python=python,
                         sr_size_gib=max(64, 8 * args.mib // 1024),
                         state_dir=os.path.join(tmp, 'xapisim'),
                         transfer_nice=args.stand_in_nice) as world:
        session = session_mod.Session(
            world['pools'][0]['master'], world['username'],
            world['password']).connect()
        host = session.call('host.get_all')[0]
        address = session.call('host.get_address', host)
        sr = session.call('pool.get_default_SR',
                          session.call('pool.get_all')[0])

        def create_vdi():
            return session.call('VDI.create', {
                'SR': sr, 'virtual_size': str(size), 'type': 'user',
                'sharable': False, 'read_only': False,
                'other_config': {}, 'name_label': 'bench',
                'name_description': '', 'sm_config': {},
                'xenstore_data': {}, 'tags': []})

        sim_pid = child_running(b'xapisim')
        # the VDIs every path writes into, each written once now
        spare = []
        for _ in range(max(1, args.parallel)):
            spare.append(create_vdi())
            direct_import(session, spare[-1], images['raw']['path'], 'raw')
        shutil.copyfile(images['vhd']['path'], os.path.join(tmp, 'dd.out'))

        def new_vdi():
            return spare.pop()

        def plugin(image, count):
            vdis = [new_vdi() for _ in range(count)]
            pipeline = Pipeline(sim_pid, glance_pid, True)
            took, peak, cpu, busiest = dom0_plugin(session, host, [
                plugin_params(image, glance_url,
                              session.call('VDI.get_uuid', v), size)
                for v in vdis])
            used = pipeline.used()
            spare.extend(vdis)
            return Timed(took / count, peak, cpu / count, used / count,
                         busiest)

        for number in range(args.rounds + 1):
            got_round = []
            for fmt in args.formats.split(','):
                image = images[fmt]
                got = {'dd': Timed(dd(image['path'], tmp))}
                vdi = new_vdi()
                pipeline = Pipeline(sim_pid, os.getpid(), False)
                took = direct_import(session, vdi, image['path'], fmt)
                got['direct import'] = Timed(took, pipeline=pipeline.used())
                spare.append(vdi)
                got[PLUGIN_HASH] = hash_rate(python, image['path'],
                                             *pieces['plugin'])
                got['dom0 plugin'] = plugin(image, 1)
                if args.parallel > 1 and number:
                    got['dom0 plugin x%d' % args.parallel] = plugin(
                        image, args.parallel)
                got[REMOTE_HASH] = hash_rate(sys.executable, image['path'],
                                             *pieces['remote'])
                vdi = new_vdi()
                pipeline = Pipeline(sim_pid, glance_pid, False)
                took, peak, cpu, busiest = remote_stream(
                    world, glance_url, image, vdi, address)
                got['vdi_remote_stream'] = Timed(
                    took, peak, cpu, pipeline.used() + cpu, busiest)
                spare.append(vdi)
                got_round.append((fmt, got))
            if number:
                rounds.append(got_round)
        session.close()
    return rounds


PLUGIN_HASH = 'sha512, plugin\'s Python'
REMOTE_HASH = 'sha512, nova-compute\'s'
# the sha512 rate each path is held against
CEILING = {'dom0 plugin': PLUGIN_HASH, 'vdi_remote_stream': REMOTE_HASH}


class Timed(object):
    def __init__(self, seconds, peak=None, cpu=None, pipeline=None,
                 busiest=None):
        self.seconds, self.peak, self.cpu = seconds, peak, cpu
        self.pipeline = pipeline     # CPU seconds of all its processes
        self.busiest = busiest       # CPU seconds of its busiest thread


def _figures(args, got, name):
    """{figure: value} of one path in one round."""
    item = got[name]
    if not isinstance(item, Timed):
        return {'MiB/s': item}
    rate = args.mib / item.seconds
    direct = args.mib / got['direct import'].seconds
    found = {'seconds': item.seconds, 'MiB/s': rate,
             'import': 100.0 * rate / direct,
             'dd': 100.0 * rate / (args.mib / got['dd'].seconds)}
    hashed = got.get(CEILING.get(name))
    if hashed is not None:
        found['sha512'] = 100.0 * rate / hashed
        found['ceiling'] = 100.0 * rate / min(hashed, direct)
    if item.peak is not None:
        found['peak'] = item.peak
    if item.pipeline:
        # what two cores allow at that much CPU per byte
        found['cores'] = 2 * args.mib / item.pipeline
    own = got.get(CEILING.get(name.split(' x')[0]))
    if item.cpu is not None and own is not None:
        # the path's CPU seconds against the hash's own, same bytes
        found['cpu'] = item.cpu / (args.mib / own.cpu)
        # its busiest thread's: the one that hashes does more (reads,
        # hands over), and can go no faster than its CPU allows
        found['thread'] = item.busiest / (args.mib / own.cpu)
    return found


def report(args, python, pieces, rounds, tmp):
    print('%d MiB image (random bytes), dom0 plugin under %s, %s '
          'for nova-compute, checksum sha512; median of %d round(s); files '
          'in %s; Glance stand-in and xapisim at nice %d'
          % (args.mib, python, sys.executable, len(rounds),
             os.path.dirname(tmp), args.stand_in_nice))
    print('%-4s %-24s %7s %8s %7s %7s %8s %6s %7s %7s %6s %8s' % (
        'fmt', 'path', 'seconds', 'MiB/s', 'import', 'sha512', 'ceiling',
        'dd', 'CPU', 'thread', 'peak', '2 cores'))
    for index, (fmt, first) in enumerate(rounds[0]):
        for name in first:
            figures = [_figures(args, r[index][1], name) for r in rounds]

            def median(key, form, width):
                values = [f[key] for f in figures if key in f]
                if not values:
                    return ' ' * width
                return (form % statistics.median(values)).rjust(width)
            print('%-4s %-24s %s %s %s %s %s %s %s %s %s %s' % (
                fmt, name, median('seconds', '%.3f', 7),
                median('MiB/s', '%.1f', 8), median('import', '%.0f%%', 7),
                median('sha512', '%.0f%%', 7), median('ceiling', '%.0f%%', 8),
                median('dd', '%.0f%%', 6), median('cpu', '%.2fx', 7),
                median('thread', '%.2fx', 7), median('peak', '%.1f', 6),
                median('cores', '%.0f', 8)))
    print('import, dd: %% of the direct import\'s, of dd\'s MiB/s; sha512: '
          '%% of one core\'s sha512 in the Python running the path (the '
          'sha512 rows), over the same bytes in the same pieces (plugin: %d '
          'KiB reads, hashed in %d KiB slices; nova-compute: its reader\'s '
          '%d KiB chunks), measured just before the path; '
          'ceiling: %% of min(direct import, sha512), the goal 90 %%'
          % (pieces['plugin'][0] >> 10, pieces['plugin'][1] >> 10,
             pieces['remote'][0] >> 10))
    print('CPU, thread: CPU seconds of the plugin\'s process, or of '
          'nova-compute\'s while it streams, and of its busiest thread (the '
          'one that hashes), as a multiple of the sha512\'s own CPU time '
          'over the same bytes (1.00x: nothing but the hash; the path can '
          'go no faster than sha512 / thread). peak: MiB, the plugin '
          'process\'s VmHWM, or the growth of nova-compute\'s peak RSS '
          'while it streams. x N: N plugin downloads at once, seconds and '
          'CPU per image. 2 cores: the MiB/s at which every process of the '
          'path (the streaming one, xapisim\'s import, the Glance stand-in) '
          'would use two cores in full, at the CPU per byte they used: what '
          'this machine allows, whatever the ceiling.')


def in_memory(args):
    """/dev/shm if it holds what the run writes (the two images, the dd
    copy, the VDIs), else None (the system's temporary directory)."""
    need = (4 + max(1, args.parallel)) * args.mib * MIB
    try:
        found = os.statvfs('/dev/shm')
    except OSError:
        return None
    if found.f_bavail * found.f_frsize < need or \
            not os.access('/dev/shm', os.W_OK):
        print('/dev/shm has no room for %d MiB: files on disk, where fresh '
              'pages may cost more' % (need // MIB))
        return None
    return '/dev/shm'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--mib', type=int, default=512)
    parser.add_argument('--formats', default='raw,vhd')
    parser.add_argument('--rounds', type=int, default=1,
                        help='measured rounds (after a warm-up): each '
                             'figure is the median')
    parser.add_argument('--parallel', type=int, default=2,
                        help='also time this many plugin downloads at once '
                             '(0: not)')
    parser.add_argument('--plugin-python', default=None,
                        help='the Python that runs the dom0 plugins '
                             '(default: a Python 3.6, as in XCP-ng 8.3\'s '
                             'dom0, if there is one; this machine\'s 3.6 '
                             'has no OpenSSL hashlib, which dom0\'s has)')
    parser.add_argument('--tmp', default=None,
                        help='where the images, the copies and xapisim\'s '
                             'SR live (default: /dev/shm if it has room, '
                             'else the system\'s temporary directory)')
    parser.add_argument('--stand-in-nice', type=int, default=10,
                        help='niceness of the Glance stand-in and of xapisim '
                             '(0: they compete with nova-compute as equals)')
    parser.add_argument('--remote-child', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.remote_child:
        return _remote_child(json.loads(args.remote_child))
    python = args.plugin_python or (
        PY36 if os.path.exists(PY36) else sys.executable)
    pieces = hashing()
    with tempfile.TemporaryDirectory(prefix='image-bench-',
                                     dir=args.tmp or in_memory(args)) as tmp:
        images = make_images(tmp, args.mib * MIB)
        glance, glance_url = start_glance(
            dict((image['id'], image) for image in images.values()),
            args.stand_in_nice)
        try:
            rounds = measure(args, python, pieces, images, tmp, glance_url,
                             glance.pid)
        finally:
            glance.terminate()
    report(args, python, pieces, rounds, tmp)


if __name__ == '__main__':
    main()
