#!/usr/bin/env python3
"""nova-xen's image plugin: Glance images into VDIs and VDIs into Glance.

host.call_plugin(host, 'nova_xen_images.py', fn, {'params': json.dumps(p)})

download_image  p = {image_id, endpoints: [Glance base URL, ...] (tried in
    order), token (sent as X-Auth-Token only), vdi_uuid (the empty VDI to
    fill), disk_format: raw|vhd, container_format: bare|tgz|ovf (raw: bare,
    tgz; vhd: bare, tgz, ovf), checksum: {algorithm: sha512|sha256|md5,
    value: hex}, size (bytes Glance holds), max_virtual_size, verify_tls
    (true), ca_bundle (absolute dom0 path or PEM text), retries (3, 0..10),
    timeout (60 s, per network operation)}
    -> {virtual_size, bytes, format: raw|vhd, checksum_verified: true}
  A tgz holds one raw file, or one VHD, or a chain 0.vhd..N.vhd (0 the
  leaf; legacy snap/image/base.vhd; swap.vhd is ignored), in any order.
upload_image  p = {image_id (a queued image), endpoints, token, vdi_uuid,
    disk_format: vhd|raw, container_format: bare|ovf (ovf: vhd in a tgz as
    0.vhd), properties ({name: value} set first), verify_tls, ca_bundle,
    retries, timeout}
    -> {size, checksum_md5, os_hash_algo: 'sha512', os_hash_value,
        virtual_size}

The image is read from Glance once and written into the VDI as it is
checked (see dom0_plugins/README.md, "How an image is checked"): one
thread reads it, a second hashes it with Glance's multihash algorithm (md5
when Glance has only ``checksum``), this one parses it (gzip, tar, VHD) and
sends it to xapi's /import_raw_vdi, a few 2 MiB chunks queued in between.
What the first bytes tell (VHD footer, header and block table, a tar
member's name, type and size, the virtual size against the VDI and
max_virtual_size) is refused before a byte reaches the VDI.  What only the
end tells (the checksum, the byte count, the VHD footer copy, a later tar
member, the chain's completeness) can fail once bytes were written: the
last piece of the import under way is held back until then, so that xapi
gets fewer bytes than announced and its import task fails, and the first
4 MiB of the VDI are then zeroed; nova-compute destroys the VDI.  Staging
in dom0 was not chosen: its disk is small and shared with logs.  VHDs go
through xapi's /import_raw_vdi as dynamic VHDs; in a chain, each VHD is
imported without the sectors that a VHD nearer the leaf, already
imported, holds, so that each sector ends with the nearest one's bytes
whatever order the tar has, and sectors no VHD holds keep what the (new,
empty) VDI held.  Memory stays bounded: the queued chunks, a VHD block or
two, and per-VHD-block tables (a few bytes per 2 MiB block).
Glance is spoken by nova_xen_glance.py, tar/gzip/VHD by
nova_xen_diskformats.py, both installed beside this plugin.

Errors ([code, params]), besides the library's NOVA_XEN_INVALID_ARGUMENT
[name, reason] and NOVA_XEN_PLUGIN_ERROR [class, message]:
  NOVA_XEN_GLANCE_UNAUTHORIZED [image]  401, never retried
  NOVA_XEN_GLANCE_FORBIDDEN [image]     403, never retried
  NOVA_XEN_IMAGE_NOT_FOUND [image]      404, never retried
  NOVA_XEN_IMAGE_NO_DATA [image]        204: the image holds no data
  NOVA_XEN_IMAGE_NOT_QUEUED [image, status]  upload into a non-queued image
  NOVA_XEN_GLANCE_ERROR [image, http status, reason]  other HTTP answers
  NOVA_XEN_GLANCE_UNAVAILABLE [image, reason]  connection failures, 5xx,
      408, 429: retried on every endpoint, `retries` more rounds
  NOVA_XEN_GLANCE_TLS_ERROR [image, host, reason]  never retried
  NOVA_XEN_IMAGE_TRUNCATED [image, received, expected]  after retries
  NOVA_XEN_IMAGE_SIZE_MISMATCH [image, claimed size, actual]
  NOVA_XEN_IMAGE_TOO_LARGE [image, size, max_virtual_size]
  NOVA_XEN_IMAGE_CHECKSUM_MISMATCH [image, algorithm, expected, actual]
  NOVA_XEN_IMAGE_INVALID [image, reason]  bad tar, bad VHD, bad chain
  NOVA_XEN_IMAGE_CHANGED [image]  no longer raised (the image is read
      once); kept for drivers that know it
  NOVA_XEN_UPLOAD_MISMATCH [image, field, glance's, ours]
  NOVA_XEN_VDI_NOT_FOUND [vdi uuid]
  NOVA_XEN_VDI_IMPORT_FAILED / NOVA_XEN_VDI_EXPORT_FAILED [vdi uuid,
      xapi's error code, params...]
  NOVA_XEN_XAPI_ERROR [call, xapi's error code, params...]
The token never appears in a result, an error or a log line.
"""

import contextlib
import hashlib
import http.client
import json
import re
import time
import urllib.parse
import zlib

import XenAPI
import XenAPIPlugin

import nova_xen_diskformats as disk
import nova_xen_dom0lib as lib
import nova_xen_glance as glance

MAX_CHAIN = 32
WIPE = 4 << 20          # zeroed at the start of a VDI after a late refusal
FORMATS = {'raw': ('bare', 'tgz'), 'vhd': ('bare', 'tgz', 'ovf')}
HEX_LENGTHS = {'md5': 32, 'sha256': 64, 'sha512': 128}
TOKEN_RE = re.compile(r'^[\x21-\x7e]+$')
PROPERTY_RE = re.compile(r'^[A-Za-z0-9_.:-]{1,255}$')
GLANCE_OWNED = ('id', 'status', 'size', 'virtual_size', 'checksum', 'file',
                'os_hash_algo', 'os_hash_value', 'locations', 'direct_url',
                'created_at', 'updated_at', 'schema', 'self', 'tags')
PATCH_TYPE = 'application/openstack-images-v2.1-json-patch'


class Job(object):
    """The validated arguments of one call."""


# -- arguments -----------------------------------------------------------

def _job(session, params, allowed):
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise lib.InvalidArgument(unknown[0], 'is not a known argument')
    job = Job()
    job.session = session
    job.image_id = lib.arg(params, 'image_id', 'uuid')
    endpoints = lib.arg(params, 'endpoints', 'list', max_len=16)
    if not endpoints:
        raise lib.InvalidArgument('endpoints', 'is empty')
    endpoints = [glance.endpoint(e, 'endpoints[%d]' % i)
                 for i, e in enumerate(endpoints)]
    token = lib.arg(params, 'token', 'str', max_len=16384)
    if not TOKEN_RE.match(token):
        raise lib.InvalidArgument('token', 'must be printable ASCII')
    job.vdi_uuid = lib.arg(params, 'vdi_uuid', 'uuid')
    job.disk_format = lib.arg(params, 'disk_format', 'str',
                              choices=('raw', 'vhd'))
    job.container = lib.arg(params, 'container_format', 'str',
                            choices=FORMATS[job.disk_format])
    retries = lib.arg(params, 'retries', 'int', 3, min=0, max=10)
    job.timeout = lib.arg(params, 'timeout', 'int', 60, min=1, max=3600)
    tls = glance.tls_context(lib.arg(params, 'verify_tls', 'bool', True),
                             lib.arg(params, 'ca_bundle', 'str', None,
                                     max_len=1 << 20))
    job.glance = glance.Glance(job.image_id, endpoints, token, tls,
                               job.timeout, retries)
    return job


def _download_job(session, params):
    job = _job(session, params, (
        'image_id', 'endpoints', 'token', 'vdi_uuid', 'disk_format',
        'container_format', 'checksum', 'size', 'max_virtual_size',
        'verify_tls', 'ca_bundle', 'retries', 'timeout'))
    checksum = lib.arg(params, 'checksum', 'dict')
    try:
        job.algorithm = lib.arg(checksum, 'algorithm', 'str',
                                choices=sorted(HEX_LENGTHS))
        job.checksum = lib.arg(checksum, 'value', 'str').lower()
    except lib.InvalidArgument as exc:
        raise lib.InvalidArgument('checksum.' + exc.name, exc.reason)
    if not re.match('^[0-9a-f]{%d}$' % HEX_LENGTHS[job.algorithm],
                    job.checksum):
        raise lib.InvalidArgument('checksum.value', 'is not a %s digest'
                                  % job.algorithm)
    job.size = lib.arg(params, 'size', 'int', min=0, max=disk.MAX_SIZE)
    job.max_size = lib.arg(params, 'max_virtual_size', 'int',
                           min=disk.SECTOR, max=disk.MAX_SIZE)
    return job


# -- xapi ------------------------------------------------------------------

def _xapi(job, call, *args):
    fn = job.session.xenapi
    for part in call.split('.'):
        fn = getattr(fn, part)
    try:
        return fn(*args)
    except XenAPI.Failure as exc:
        lib.fail('NOVA_XEN_XAPI_ERROR', call, *exc.details)


def _vdi_size(job):
    try:
        vdi = job.session.xenapi.VDI.get_by_uuid(job.vdi_uuid)
    except XenAPI.Failure as exc:
        if exc.details[:1] == ['UUID_INVALID']:
            lib.fail('NOVA_XEN_VDI_NOT_FOUND', job.vdi_uuid)
        lib.fail('NOVA_XEN_XAPI_ERROR', 'VDI.get_by_uuid', *exc.details)
    return int(_xapi(job, 'VDI.get_virtual_size', vdi))


class _Transfer(object):
    """/import_raw_vdi or /export_raw_vdi on the local xapi, with a task.

    xapi answers 200 before it moves a byte: only the task tells the
    outcome, which ``_outcome`` waits for before destroying the task.
    """

    def __init__(self, job, method, path, fmt, length=None):
        self.job = job
        self.done = False
        self.code = 'NOVA_XEN_VDI_%s_FAILED' % (
            'IMPORT' if method == 'PUT' else 'EXPORT')
        self.task = _xapi(job, 'task.create', 'nova-xen image transfer',
                          job.image_id)
        self.conn = lib.UnixHTTPConnection(timeout=job.timeout)
        query = urllib.parse.urlencode([
            ('session_id', job.session._session), ('vdi', job.vdi_uuid),
            ('format', fmt), ('task_id', self.task)])
        try:
            self.conn.putrequest(method, '%s?%s' % (path, query),
                                 skip_accept_encoding=True)
            if length is not None:
                self.conn.putheader('Content-Type', 'application/octet-stream')
                self.conn.putheader('Content-Length', str(length))
            self.conn.endheaders()
        except OSError as exc:
            self._outcome('cannot reach xapi: %s' % exc)

    def close(self):
        # a response holds the socket open even after conn.close()
        if getattr(self, 'resp', None) is not None:
            self.resp.close()
        self.conn.close()

    def abort(self):
        if self.done:
            return
        self.done = True
        self.close()
        try:
            self._wait()
        finally:
            self._destroy()

    def _wait(self):
        deadline = time.time() + self.job.timeout
        pause = 0.01
        while True:
            status = _xapi(self.job, 'task.get_status', self.task)
            if status not in ('pending', 'cancelling'):
                return status
            if time.time() > deadline:
                return 'timed out waiting for xapi'
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def _destroy(self):
        try:
            self.job.session.xenapi.task.destroy(self.task)
        except XenAPI.Failure:
            pass

    def _outcome(self, problem):
        self.done = True
        self.close()
        try:
            status = self._wait()
            if status == 'success' and problem is None:
                return
            error = []
            if status in ('failure', 'cancelled'):
                error = _xapi(self.job, 'task.get_error_info', self.task)
            lib.fail(self.code, self.job.vdi_uuid,
                     *(error or [problem or status]))
        finally:
            self._destroy()


class XapiImport(_Transfer):
    """xapi answers before it reads the body: wait for that answer first,
    so that a refusal is known before any byte is sent."""

    def __init__(self, job, fmt, length):
        _Transfer.__init__(self, job, 'PUT', '/import_raw_vdi', fmt, length)
        try:
            head = self.conn.sock.makefile('rb')
            try:
                status = head.readline(1024).split(b' ')[1:2]
                while head.readline(8192) not in (b'\r\n', b'\n', b''):
                    pass
            finally:
                head.close()
        except OSError as exc:
            status = [str(exc).encode()]
        if status != [b'200']:
            self._outcome('xapi answered %s'
                          % b''.join(status).decode('ascii', 'replace'))

    def write(self, data):
        try:
            self.conn.send(data)
        except OSError as exc:
            self._outcome('xapi closed the connection: %s' % exc)

    def finish(self):
        self._outcome(None)


class XapiExport(_Transfer):
    def __init__(self, job, fmt):
        _Transfer.__init__(self, job, 'GET', '/export_raw_vdi', fmt)
        try:
            self.resp = self.conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            self._outcome('no answer from xapi: %s' % exc)
        if self.resp.status != 200:
            self._outcome('xapi answered %d' % self.resp.status)

    def read(self, n):
        try:
            return self.resp.read(n)
        except (OSError, http.client.HTTPException) as exc:
            self._outcome('export interrupted: %s' % exc)

    def finish(self):
        self._outcome(None)


class HeldImport(object):
    """An import whose last piece waits until no later check can fail.

    The constructor sends every piece but the last; ``complete`` sends it
    and waits for xapi's verdict, ``abort`` hangs up instead: xapi then
    has fewer bytes than it was promised, and its task fails.
    """

    def __init__(self, job, fmt, length, pieces):
        self.job = job
        self.target = XapiImport(job, fmt, length)
        self.held = None
        try:
            for piece in pieces:
                if self.held is not None:
                    job.touched = True
                    self.target.write(self.held)
                self.held = piece
        except BaseException:
            self.target.abort()
            raise

    def complete(self):
        try:
            if self.held is not None:
                self.job.touched = True
                self.target.write(self.held)
        except BaseException:
            self.target.abort()
            raise
        self.target.finish()

    def abort(self):
        self.target.abort()


# -- download --------------------------------------------------------------

def _files(job, body):
    """(name, size, reader) of each file of the image; bare: the image."""
    if job.container == 'bare':
        yield '', job.size, disk.Bounded(body, job.size)
        return
    src = disk.Gunzip(body) if body.peek(2) == b'\x1f\x8b' else body
    for item in disk.tar_files(src):
        yield item


def _vhd_files(job, body):
    """(name, rank in the chain, VhdReader) of each VHD of the image."""
    seen = []
    for name, size, reader in _files(job, body):
        if job.container != 'bare':
            if not name.endswith('.vhd'):
                raise disk.Invalid('unexpected file %r in a VHD image' % name)
            if name == 'swap.vhd':
                continue
            if name in seen:
                raise disk.Invalid('%r appears twice' % name)
            if len(seen) == MAX_CHAIN:
                raise disk.Invalid('more than %d VHDs' % MAX_CHAIN)
        rank = disk.chain_rank(seen, name)
        seen.append(name)
        yield name, rank, disk.VhdReader(reader, size, job.max_size)


def _write_raw(job, body, pending):
    """A raw image's one file into the VDI; its size."""
    files = _files(job, body)
    for name, size, reader in files:
        if size > job.max_size:
            raise disk.TooLarge(size, job.max_size)
        break
    else:
        raise disk.Invalid('the image holds no file')
    pending.append(HeldImport(job, 'raw', size, disk.iter_chunks(reader)))
    for _ in files:
        raise disk.Invalid('the image holds more than one file')
    body.finish()
    return size


def _write_vhds(job, body, pending):
    """Each VHD into the VDI as it streams past; the chain's size.

    A VHD's sectors that a VHD nearer the leaf, already written, holds
    are left out: whatever order the tar has, each sector ends up with
    the value of the nearest VHD to the leaf that holds it.
    """
    members = []
    for name, rank, vhd in _vhd_files(job, body):
        # its headers are sound: what came before may be completed
        while pending:
            pending.pop().complete()
        member = disk.Member(vhd, name, rank)
        children = [m for m in members if m.rank < rank]
        keep = mask = None
        if children:
            mask = disk.chain_mask(children)
            keep = disk.keep_blocks(vhd, mask)
        if keep is None or any(keep):
            pending.append(HeldImport(job, 'vhd', *disk.vhd_image(
                vhd, keep, mask, member.note)))
        else:
            for idx, bitmap, _ in vhd.blocks():
                member.note(idx, bitmap)
        members.append(member)
    body.finish()
    return disk.check_chain(members)


def _download(job, url):
    """One GET of the image, written into the VDI as it is checked."""
    resp = job.glance.request(url, 'GET', '/file')
    body = glance.Download(job.image_id, resp, job.size, job.algorithm,
                           job.checksum)
    pending = []
    try:
        try:
            if job.disk_format == 'raw':
                size = _write_raw(job, body, pending)
            else:
                size = _write_vhds(job, body, pending)
        except (disk.Invalid, disk.TooLarge):
            # a corrupted download is told as such, not as a bad image
            body.finish()
            raise
        while pending:
            pending.pop().complete()
        return size
    except BaseException:
        while pending:
            pending.pop().abort()
        raise
    finally:
        body.close()


def _wipe(job):
    """After a late refusal: zeros over the start of the VDI (partition
    tables, boot loader, the first file system's superblock), so that
    what was written of a refused image is nothing a VM could boot.  Best
    effort: nova-compute destroys the VDI anyway."""
    length = min(WIPE, job.vdi_size)
    try:
        target = XapiImport(job, 'raw', length)
        zeros = bytes(min(length, 1 << 20))
        sent = 0
        while sent < length:
            target.write(zeros[:length - sent])
            sent += min(len(zeros), length - sent)
        target.finish()
    except Exception as exc:
        lib.log('image %s: could not wipe VDI %s: %s', job.image_id,
                job.vdi_uuid, exc)


@contextlib.contextmanager
def _refusals(job):
    try:
        yield
    except disk.Invalid as exc:
        lib.fail('NOVA_XEN_IMAGE_INVALID', job.image_id, str(exc))
    except disk.TooLarge as exc:
        lib.fail('NOVA_XEN_IMAGE_TOO_LARGE', job.image_id, exc.size,
                 exc.limit)


def download_image(session, params):
    job = _download_job(session, params)
    job.vdi_size = _vdi_size(job)
    job.max_size = min(job.max_size, job.vdi_size)
    job.touched = False
    if job.disk_format == 'raw' and job.container == 'bare' and \
            job.size > job.max_size:
        lib.fail('NOVA_XEN_IMAGE_TOO_LARGE', job.image_id, job.size,
                 job.max_size)
    try:
        with _refusals(job):
            virtual_size = job.glance.with_retries(
                lambda url: _download(job, url))
    except BaseException:
        if job.touched:
            _wipe(job)
        raise
    return {'virtual_size': virtual_size, 'bytes': job.size,
            'format': job.disk_format, 'checksum_verified': True}


# -- upload ----------------------------------------------------------------

def _upload_job(session, params):
    job = _job(session, params, (
        'image_id', 'endpoints', 'token', 'vdi_uuid', 'disk_format',
        'container_format', 'properties', 'verify_tls', 'ca_bundle',
        'retries', 'timeout'))
    if job.container not in ('bare', 'ovf'):
        raise lib.InvalidArgument('container_format', 'must be bare or ovf')
    job.properties = lib.arg(params, 'properties', 'dict', {})
    for key, value in job.properties.items():
        if not PROPERTY_RE.match(key) or key in GLANCE_OWNED:
            raise lib.InvalidArgument('properties', 'cannot set %r' % key)
        if not isinstance(value, str) or len(value) > 65535:
            raise lib.InvalidArgument('properties', '%r must be a string'
                                      % key)
    return job


class Sender(object):
    """Chunked transfer-encoding to Glance, hashing what it sends."""

    def __init__(self, conn):
        self.conn, self.size = conn, 0
        self.md5, self.sha512 = hashlib.md5(), hashlib.sha512()

    def send(self, data):
        if data:
            self.md5.update(data)
            self.sha512.update(data)
            self.size += len(data)
            self.conn.send(b'%x\r\n' % len(data) + data + b'\r\n')


def _send_ovf(job, export, sender):
    """xapi's VHD export as 0.vhd in a tar.gz, as nova's old driver made."""
    gz = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    try:
        length, pieces = disk.vhd_image(
            disk.VhdReader(export, None, disk.MAX_SIZE))
        sender.send(gz.compress(disk.tar_header(b'0.vhd', length)))
        sent = 0
        for piece in pieces:
            sent += len(piece)
            sender.send(gz.compress(piece))
    except disk.Invalid as exc:
        lib.fail('NOVA_XEN_VDI_EXPORT_FAILED', job.vdi_uuid, str(exc))
    if sent != length:
        lib.fail('NOVA_XEN_VDI_EXPORT_FAILED', job.vdi_uuid, 'VHD size')
    end = b'\0' * (-length % disk.SECTOR + 2 * disk.SECTOR)
    end += b'\0' * (-(disk.SECTOR + length + len(end)) % 10240)
    sender.send(gz.compress(end) + gz.flush())


def _stream_vdi(job, sender):
    export = XapiExport(job, job.disk_format)
    try:
        if job.container == 'ovf':
            _send_ovf(job, export, sender)
        else:
            for piece in disk.iter_chunks(export):
                sender.send(piece)
        if job.disk_format == 'raw' and sender.size != job.virtual_size:
            lib.fail('NOVA_XEN_VDI_EXPORT_FAILED', job.vdi_uuid,
                     'exported %d of %d bytes' % (sender.size,
                                                  job.virtual_size))
    except BaseException:
        export.abort()
        raise
    export.finish()


def _upload_once(job, url):
    conn, prefix, host = job.glance.connect(url)
    sender = Sender(conn)
    try:
        try:
            conn.putrequest('PUT', '%s/v2/images/%s/file' % (
                prefix, job.image_id), skip_accept_encoding=True)
            for key, value in job.glance.headers({
                    'Transfer-Encoding': 'chunked',
                    'Content-Type': 'application/octet-stream'}).items():
                conn.putheader(key, value)
            conn.endheaders()
        except Exception as exc:
            job.glance.transport_error(host, exc)
        try:
            _stream_vdi(job, sender)
            conn.send(b'0\r\n\r\n')
        except OSError:
            pass  # Glance stopped reading: its answer tells why
        try:
            resp = conn.getresponse()
        except Exception as exc:
            job.glance.transport_error(host, exc)
        job.glance.check_status(resp, (200, 201, 204))
        return sender
    finally:
        conn.close()


def upload_image(session, params):
    job = _upload_job(session, params)
    job.virtual_size = _vdi_size(job)
    images = job.glance
    status = images.with_retries(images.record).get('status')
    if status != 'queued':
        lib.fail('NOVA_XEN_IMAGE_NOT_QUEUED', job.image_id, status)
    if job.properties:
        patch = json.dumps([{'op': 'add', 'path': '/' + key, 'value': value}
                            for key, value in sorted(job.properties.items())])
        images.with_retries(lambda url: images.record(
            url, 'PATCH', patch.encode(), {'Content-Type': PATCH_TYPE}))
    sent = images.with_retries(lambda url: _upload_once(job, url))
    result = {'size': sent.size, 'checksum_md5': sent.md5.hexdigest(),
              'os_hash_algo': 'sha512',
              'os_hash_value': sent.sha512.hexdigest(),
              'virtual_size': job.virtual_size}
    record = images.with_retries(images.record)
    for field, ours in (('size', result['size']),
                        ('checksum', result['checksum_md5']),
                        ('os_hash_value', result['os_hash_value'])):
        if record.get(field) is not None and record[field] != ours:
            lib.fail('NOVA_XEN_UPLOAD_MISMATCH', job.image_id, field,
                     record[field], ours)
    return result


# -- entry -----------------------------------------------------------------

def _guarded(fn):
    """No failure, whatever its origin, may carry the token."""
    def call(session, params):
        token = params.get('token')
        secret = token if isinstance(token, str) and len(token) >= 4 else None

        def scrub(text):
            return text.replace(secret, '***') if secret else text
        try:
            return fn(session, params)
        except XenAPIPlugin.Failure as exc:
            exc.params = [scrub(str(p)) for p in exc.params]
            raise
        except (lib.InvalidArgument, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:
            lib.fail('NOVA_XEN_PLUGIN_ERROR', exc.__class__.__name__,
                     scrub(str(exc)))
    call.__name__ = fn.__name__
    return call


if __name__ == '__main__':
    lib.main({'download_image': _guarded(download_image),
              'upload_image': _guarded(upload_image)})
