"""Images from Glance into VDIs.

The ``vdi_remote_stream`` handler downloads the image on nova-compute and
streams it, as it arrives, into the VDI through xapi's ``/import_raw_vdi``
on the host that owns the SR -- so it works on every SR type.  The image is
checked before any storage is used: its format must be one xapi imports
(raw, or a single VHD), and its virtual size must fit the flavor and the
configured maximum.
"""

import queue
import struct
import threading

from nova import exception
from nova.image import glance
from oslo_log import log as logging

from nova_xen import errors
from nova_xen.conf import CONF

LOG = logging.getLogger(__name__)

GIB = 1024 ** 3
CHUNK = 1024 * 1024
VHD_FOOTER = 512
SUPPORTED = {('raw', 'bare'): 'raw', ('vhd', 'bare'): 'vhd'}


class ImageStream(object):
    """Glance image bytes as a pull stream, downloaded in a thread.

    At most a few chunks are in memory at once, whatever the image size.
    """

    def __init__(self, context, image_id):
        self._queue = queue.Queue(maxsize=8)
        self._buffer = b''
        self._error = None
        self._done = False
        self._closed = False
        self._thread = threading.Thread(
            target=self._download, args=(context, image_id),
            name='image-download-%s' % image_id, daemon=True)
        self._thread.start()

    def _download(self, context, image_id):
        try:
            glance.API().download(context, image_id, data=self)
        except Exception as exc:   # reported to the reader
            self._error = exc
        finally:
            self._queue.put(None)

    def write(self, data):          # called by the Glance client
        view = memoryview(data)
        for start in range(0, len(view), CHUNK):
            if self._closed:
                raise IOError('the image is no longer wanted')
            self._queue.put(bytes(view[start:start + CHUNK]))

    def read(self, n=CHUNK):
        while len(self._buffer) < n and not self._done:
            chunk = self._queue.get()
            if chunk is None:
                self._done = True
                if self._error is not None:
                    raise self._error
            else:
                self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def close(self):
        """Stop the download (if still running) and wait for its thread."""
        self._closed = True
        while not self._done:
            if self._queue.get() is None:
                self._done = True
        self._thread.join()


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


class RemoteStreamHandler(object):
    """nova-compute streams the image into the VDI over HTTP."""

    def __init__(self, session):
        self.session = session

    def open(self, context, instance, image_meta):
        """Start the download; (stream, format, virtual size) once checked."""
        fmt = disk_format(image_meta)
        stream = ImageStream(context, image_meta.id)
        try:
            if fmt == 'vhd':
                head = stream.read(VHD_FOOTER)
                size = vhd_virtual_size(head, image_meta.id)
                stream._buffer = head + stream._buffer
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
            try:
                session.call('task.destroy', task)
            except Exception:
                LOG.debug('could not destroy import task %s', task)

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
                sent = 0
                while sent < length:
                    chunk = stream.read(min(CHUNK, length - sent))
                    if not chunk:
                        raise errors.XenAPIError(
                            'PUT /import_raw_vdi', ['IMAGE_TRUNCATED',
                                                    str(sent), str(length)],
                            message='the image ended after %d of its %d '
                                    'bytes' % (sent, length))
                    conn.send(chunk)
                    sent += len(chunk)
                if stream.read(1):
                    raise errors.XenAPIError(
                        'PUT /import_raw_vdi', ['IMAGE_TOO_LONG', str(length)],
                        message='the image holds more than the %d bytes '
                                'Glance reported' % length)
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
