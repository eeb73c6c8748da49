"""Images from Glance into VDIs, and snapshots back.

Two handlers ([xenserver]image_handler):

* ``dom0_plugin`` (the default): the ``nova_xen_images.py`` plugin in
  dom0 fetches the image from Glance itself, once, and writes it through
  xapi's ``/import_raw_vdi`` as it checks its checksum and structure --
  raw, a VHD, or a tgz of a VHD chain as Nova's old XenAPI driver made
  them; snapshots go back the same way.
* ``vdi_remote_stream``: nova-compute downloads the image and streams it
  into the VDI through ``/import_raw_vdi`` (raw or a single VHD), checking
  Glance's multihash on the way in a thread of its own
  (``glance_stream.py``).

Either way the image is checked before any storage is used: a format
xapi can take, a virtual size within the flavor and the configured
maximum.  A check that needs the whole image (the checksum, the length)
fails before the last bytes reach xapi, whose import then fails; the
plugin's error codes say which check (REFUSALS below), and spawn destroys
the VDI.
"""

import itertools
import struct

from nova import exception
from nova.image import glance
from oslo_log import log as logging

from nova_xen import errors
from nova_xen.conf import CONF
from nova_xen import glance_stream

LOG = logging.getLogger(__name__)

GIB = 1024 ** 3
CHUNK = glance_stream.CHUNK
VHD_FOOTER = 512
SUPPORTED = {('raw', 'bare'): 'raw', ('vhd', 'bare'): 'vhd'}


def disk_format(image_meta):
    fmt = SUPPORTED.get((image_meta.disk_format, image_meta.container_format))
    if fmt is None:
        raise exception.ImageUnacceptable(
            image_id=image_meta.id,
            reason='disk_format %s with container_format %s is not '
                   'supported by the %s image handler (raw or vhd, bare)'
                   % (image_meta.disk_format, image_meta.container_format,
                      CONF.xenserver.image_handler))
    return fmt


def vhd_virtual_size(footer, image_id):
    if len(footer) < VHD_FOOTER or footer[:8] != b'conectix':
        raise exception.ImageUnacceptable(
            image_id=image_id, reason='the image claims disk_format vhd but '
                                      'does not start with a VHD footer')
    disk_type = struct.unpack('>I', footer[60:64])[0]
    if disk_type not in (3, 4):
        raise exception.ImageUnacceptable(
            image_id=image_id, reason='only dynamic VHDs can be streamed '
                                      '(disk type %d)' % disk_type)
    return struct.unpack('>Q', footer[48:56])[0]


def check_size(instance, image_id, virtual_size):
    limit = CONF.xenserver.max_image_size_gb * GIB
    if virtual_size > limit:
        raise exception.ImageUnacceptable(
            image_id=image_id, reason='its virtual size %d bytes exceeds '
            '[xenserver]max_image_size_gb (%d GiB)'
            % (virtual_size, CONF.xenserver.max_image_size_gb))
    root_gb = instance.flavor.root_gb
    if root_gb and virtual_size > root_gb * GIB:
        raise exception.FlavorDiskSmallerThanImage(
            flavor_size=root_gb * GIB, image_size=virtual_size)


def glance_record(context, image_id):
    """The image's record as Glance stores it (checksums included)."""
    return glance.API().get(context, image_id)


def glance_endpoints(context):
    """Glance's endpoints for dom0, each once, without a trailing slash.

    nova's ``get_api_servers`` cycles for ever over ``[glance]api_servers``
    (shuffled) or the catalog's one endpoint, the catalog's trimmed of its
    ``/v2`` to end in ``/``: it is read for as many entries as there are.
    """
    count = len(CONF.glance.api_servers or []) or 1
    found = []
    for endpoint in itertools.islice(glance.get_api_servers(context), count):
        if not endpoint:
            raise exception.GlanceConnectionFailed(
                server='(none)', reason='Glance has no endpoint in the '
                'service catalog and [glance]api_servers is not set')
        endpoint = str(endpoint).rstrip('/')
        if endpoint not in found:
            found.append(endpoint)
    return found


def glance_tls():
    """How dom0 verifies Glance: nova's own [glance] TLS options, the CA
    bundle (``cafile``, a file on the compute) passed as PEM text."""
    if CONF.glance.api_insecure or CONF.glance.insecure:
        return {'verify_tls': False}
    params = {'verify_tls': True}
    if CONF.glance.cafile:
        try:
            with open(CONF.glance.cafile) as fh:
                params['ca_bundle'] = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise exception.GlanceConnectionFailed(
                server='(all)', reason='cannot read [glance]cafile %s: %s'
                % (CONF.glance.cafile, getattr(exc, 'strerror', None) or exc))
    return params


class RemoteStreamHandler(object):
    """nova-compute streams the image into the VDI over HTTP."""

    def __init__(self, session):
        self.session = session

    def open(self, context, instance, image_meta):
        """Start the download; (stream, format, virtual size) once checked."""
        fmt = disk_format(image_meta)
        stream = self._stream(context, image_meta.id)
        try:
            if fmt == 'vhd':
                size = vhd_virtual_size(stream.peek(VHD_FOOTER),
                                        image_meta.id)
            else:
                size = int(image_meta.size or 0)
                if size <= 0:
                    raise exception.ImageUnacceptable(
                        image_id=image_meta.id, reason='the image has no size')
            check_size(instance, image_meta.id, size)
        except Exception:
            stream.close()
            raise
        return stream, fmt, size

    @staticmethod
    def _stream(context, image_id):
        if CONF.glance.verify_glance_signatures:
            # the signature check is Nova's: its own client downloads
            return glance_stream.ImageStream(context, image_id)
        return glance_stream.GlanceReader(
            context, image_id, glance_record(context, image_id),
            glance_endpoints(context))

    def write(self, stream, fmt, length, vdi, host_address):
        """Send ``length`` bytes into the VDI; raise unless xapi took them."""
        session = self.session
        task = session.call('task.create', 'nova-xen image import',
                            'streaming an image into a VDI')
        try:
            self._put(stream, fmt, length, vdi, host_address, task)
            record = session.call('task.get_record', task)
            if record['status'] != 'success':
                raise errors.XenAPIError(
                    'PUT /import_raw_vdi', record['error_info'] or
                    [record['status']])
        finally:
            stream.close()
            session.destroy_task(task)

    def _put(self, stream, fmt, length, vdi, host_address, task):
        session = self.session
        with session.http_session() as session_id:
            conn = session.http_connection(host_address)
            try:
                path = ('/import_raw_vdi?session_id=%s&vdi=%s&format=%s'
                        '&task_id=%s' % (session_id, vdi, fmt, task))
                conn.putrequest('PUT', path, skip_accept_encoding=True)
                conn.putheader('Content-Type', 'application/octet-stream')
                conn.putheader('Content-Length', str(length))
                conn.putheader('Connection', 'close')
                conn.endheaders()
                # the last piece waits for the end of the download, where
                # Glance's checksum is verified: a corrupted image leaves
                # xapi short of bytes, and its import fails
                sent, held = 0, None
                while sent < length:
                    chunk = stream.read(min(CHUNK, length - sent))
                    if not chunk:
                        raise errors.XenAPIError(
                            'PUT /import_raw_vdi', ['IMAGE_TRUNCATED',
                                                    str(sent), str(length)],
                            message='the image ended after %d of its %d '
                                    'bytes' % (sent, length))
                    if held is not None:
                        conn.send(held)
                    held = chunk
                    sent += len(chunk)
                if stream.read(1):
                    raise errors.XenAPIError(
                        'PUT /import_raw_vdi', ['IMAGE_TOO_LONG', str(length)],
                        message='the image holds more than the %d bytes '
                                'Glance reported' % length)
                if held is not None:
                    conn.send(held)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    raise errors.XenAPIError(
                        'PUT /import_raw_vdi',
                        ['HTTP_%d' % response.status, response.reason])
            finally:
                conn.close()

    def upload(self, context, image_id, metadata, vdi, host_address):
        """Stream a VDI, as one VHD, into the Glance image ``image_id``."""
        with self.session.http_session() as session_id:
            conn = self.session.http_connection(host_address)
            try:
                conn.request('GET', '/export_raw_vdi?session_id=%s&vdi=%s'
                             '&format=vhd' % (session_id, vdi))
                response = conn.getresponse()
                if response.status != 200:
                    raise errors.XenAPIError(
                        'GET /export_raw_vdi', ['HTTP_%d' % response.status,
                                                response.reason])
                glance.API().update(context, image_id, metadata,
                                    data=response, purge_props=False)
            finally:
                conn.close()


class _Plan(object):
    """What the dom0 plugin is to fetch; nothing to close."""

    def __init__(self, context, image_meta, record):
        self.context = context
        self.image_meta = image_meta
        self.record = record

    def close(self):
        pass


# The plugin's verdicts on the image itself (not on the host or Glance).
REFUSALS = frozenset('NOVA_XEN_' + code for code in (
    'IMAGE_INVALID', 'IMAGE_TOO_LARGE', 'IMAGE_CHECKSUM_MISMATCH',
    'IMAGE_SIZE_MISMATCH', 'IMAGE_NOT_FOUND', 'IMAGE_NO_DATA',
    'GLANCE_FORBIDDEN', 'IMAGE_CHANGED'))

PLUGIN_FORMATS = {('raw', 'bare'), ('raw', 'tgz'), ('vhd', 'bare'),
                  ('vhd', 'ovf'), ('vhd', 'tgz')}


class Dom0PluginHandler(object):
    """The dom0 plugin fetches and uploads images itself."""

    PLUGIN = 'nova_xen_images.py'

    def __init__(self, session, host):
        self.session = session
        self.host = host

    def open(self, context, instance, image_meta):
        """Check the image; (plan, format, virtual size) for write()."""
        if not context.auth_token:
            raise exception.ImageUnacceptable(
                image_id=image_meta.id,
                reason='the request carries no Keystone token that dom0 '
                       'could show Glance')
        fmt = (image_meta.disk_format, image_meta.container_format)
        if fmt not in PLUGIN_FORMATS:
            raise exception.ImageUnacceptable(
                image_id=image_meta.id,
                reason='disk_format %s with container_format %s is not '
                       'supported (raw: bare or tgz; vhd: bare, ovf or tgz)'
                       % fmt)
        record = glance_record(context, image_meta.id)
        if not (record.get('os_hash_value') or record.get('checksum')):
            raise exception.ImageUnacceptable(
                image_id=image_meta.id,
                reason='Glance holds no checksum for it: its bytes could '
                       'not be verified')
        # nova's image API does not pass Glance's virtual_size on: only a
        # raw image's size is known here; the plugin checks a VHD's own
        # virtual size against the disk it is given
        size = record.get('virtual_size') or (
            image_meta.virtual_size
            if image_meta.obj_attr_is_set('virtual_size') else None)
        if not size and fmt == ('raw', 'bare'):
            size = int(image_meta.size or 0)
        if size:
            check_size(instance, image_meta.id, int(size))
        elif not instance.flavor.root_gb:
            raise exception.ImageUnacceptable(
                image_id=image_meta.id,
                reason='its virtual size is unknown and the flavor has no '
                       'root disk size: set the image\'s virtual_size, or '
                       'use a flavor with a root disk')
        return _Plan(context, image_meta, record), fmt[0], int(size or 0)

    def write(self, plan, fmt, length, vdi, host_address):
        record = plan.record
        meta = plan.image_meta
        if record.get('os_hash_algo') and record.get('os_hash_value'):
            checksum = {'algorithm': record['os_hash_algo'],
                        'value': record['os_hash_value']}
        else:
            checksum = {'algorithm': 'md5', 'value': record['checksum']}
        size = int(self.session.call('VDI.get_virtual_size', vdi))
        params = {'image_id': meta.id,
                  'endpoints': glance_endpoints(plan.context),
                  'token': plan.context.auth_token,
                  'vdi_uuid': self.session.call('VDI.get_uuid', vdi),
                  'disk_format': meta.disk_format,
                  'container_format': meta.container_format,
                  'size': int(meta.size or 0),
                  'max_virtual_size': size,
                  'checksum': checksum}
        params.update(glance_tls())
        try:
            self.session.call_plugin(self.host.ref, self.PLUGIN,
                                     'download_image', params,
                                     long_running=True)
        except errors.PluginError as exc:
            if exc.xapi_code in REFUSALS:
                # the image itself is wrong: no other host would do better
                raise exception.ImageUnacceptable(
                    image_id=meta.id, reason='the dom0 image plugin refused '
                    'it: %s' % errors.describe(exc.details))
            raise

    def upload(self, context, image_id, metadata, vdi, host_address):
        glance.API().update(context, image_id, {
            'disk_format': metadata['disk_format'],
            'container_format': metadata['container_format']},
            purge_props=False)
        self.session.call_plugin(self.host.ref, self.PLUGIN, 'upload_image', {
            'image_id': image_id,
            'endpoints': glance_endpoints(context),
            'token': context.auth_token,
            'vdi_uuid': self.session.call('VDI.get_uuid', vdi),
            'disk_format': metadata['disk_format'],
            'container_format': metadata['container_format'],
            'properties': metadata.get('properties', {}),
            **glance_tls()}, long_running=True)


def handler(session, host):
    """The handler [xenserver]image_handler names."""
    if CONF.xenserver.image_handler == 'dom0_plugin':
        return Dom0PluginHandler(session, host)
    return RemoteStreamHandler(session)
