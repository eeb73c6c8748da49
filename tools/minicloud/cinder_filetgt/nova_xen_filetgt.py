"""A Cinder volume driver for nova-xen's mini cloud: files exported by tgt.

Test infrastructure of tools/minicloud.sh, for a machine that has neither
device-mapper (LVM), configfs (LIO) nor an NFS client: each volume is a
sparse file, ``<filetgt_directory>/volume-<id>``, and Cinder's own target
helper for the userspace ``tgt`` daemon (``target_helper = tgtadm``,
``cinder.volume.targets.tgt.TgtAdm``) exports it as LUN 1 of a target of
its own, behind a CHAP account.  Nova therefore gets what Cinder's LVM
reference driver hands out, ``driver_volume_type: iscsi`` with
``target_portal``, ``target_iqn``, ``target_lun`` and CHAP, and a real
initiator can log in and read the volume.

Cinder loads it as ``volume_driver = nova_xen_filetgt.FileTgtDriver`` in a
backend section, which also holds TgtAdm's options (``volumes_dir``,
``target_ip_address``, ``target_port``...): Cinder reads a backend's
options from its own section (or ``[backend_defaults]``), never
``[DEFAULT]``.
"""

import os

from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils.imageutils import format_inspector
from oslo_utils import importutils
from oslo_utils import units

from cinder import exception
from cinder.image import image_utils
from cinder import interface
from cinder.volume import driver
from cinder.volume import volume_utils

LOG = logging.getLogger(__name__)

filetgt_opts = [
    cfg.StrOpt('filetgt_directory',
               default='$state_path/filetgt',
               help='Directory of the volume (and snapshot) files.'),
]


@interface.volumedriver
class FileTgtDriver(driver.VolumeDriver):
    """Volumes are sparse files; TgtAdm exports them over iSCSI."""

    VERSION = '1.0.0'
    CI_WIKI_NAME = 'nova-xen minicloud (not a product driver)'

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.configuration.append_config_values(filetgt_opts)
        self.backend_name = (self.configuration.safe_get(
            'volume_backend_name') or 'filetgt')
        helper = self.configuration.safe_get('target_helper')
        if helper != 'tgtadm':
            raise exception.InvalidConfigurationValue(
                option='target_helper', value=helper)
        self.target_driver = importutils.import_object(
            self.target_mapping[helper], configuration=self.configuration,
            executor=self._execute)
        self.protocol = 'iSCSI'

    @staticmethod
    def get_driver_options():
        return filetgt_opts

    # Files
    # -----

    @property
    def _directory(self):
        return self.configuration.filetgt_directory

    def _path(self, name):
        return os.path.join(self._directory, name)

    def local_path(self, volume):
        return self._path(volume.name)

    def _resize(self, path, size_gib):
        # never shrinks (an image written into the file may be bigger)
        if os.path.getsize(path) < size_gib * units.Gi:
            os.truncate(path, size_gib * units.Gi)

    def _copy(self, source, dest, size_gib):
        # sparse stays sparse: holes are not written
        self._execute('cp', '--sparse=always', source, dest)
        self._resize(dest, size_gib)

    def do_setup(self, context):
        os.makedirs(self._directory, exist_ok=True)

    def check_for_setup_error(self):
        if not os.access(self._directory, os.W_OK):
            raise exception.VolumeBackendAPIException(
                data='%s is not a writable directory' % self._directory)

    # Volumes and snapshots
    # ---------------------

    def create_volume(self, volume):
        with open(self.local_path(volume), 'wb') as f:
            f.truncate(volume.size * units.Gi)

    def delete_volume(self, volume):
        self._unlink(self.local_path(volume))

    def _unlink(self, path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            LOG.debug('%s was gone already', path)

    def extend_volume(self, volume, new_size):
        self._resize(self.local_path(volume), new_size)
        # an exported LUN shows its new size once tgt reads it again
        self.target_driver.extend_target(volume)

    def create_cloned_volume(self, volume, src_vref):
        self._copy(self.local_path(src_vref), self.local_path(volume),
                   volume.size)

    def create_snapshot(self, snapshot):
        self._execute('cp', '--sparse=always',
                      self.local_path(snapshot.volume),
                      self._path(snapshot.name))

    def delete_snapshot(self, snapshot):
        self._unlink(self._path(snapshot.name))

    def create_volume_from_snapshot(self, volume, snapshot):
        self._copy(self._path(snapshot.name), self.local_path(volume),
                   volume.size)

    # Images
    # ------
    #
    # Cinder 29's own path (download, then ``qemu-img info -f`` the format
    # its inspector names) fails for VHD images, nova-xen's: the inspector
    # says "vhd", qemu-img knows the format as "vpc".  clone_image, called
    # first, writes every image itself, so Cinder never takes that path.

    def clone_image(self, context, volume, image_location, image_meta,
                    image_service):
        self._write_image(context, volume, image_service, image_meta['id'])
        return None, True

    def copy_image_to_volume(self, context, volume, image_service, image_id,
                             disable_sparse=False):
        self._write_image(context, volume, image_service, image_id)

    def copy_volume_to_image(self, context, volume, image_service,
                             image_meta):
        volume_utils.upload_volume(context, image_service, image_meta,
                                   self.local_path(volume), volume)

    def _write_image(self, context, volume, image_service, image_id):
        """The image's disk, raw, into the volume's file."""
        with image_utils.temporary_file(prefix='filetgt-') as tmp:
            with open(tmp, 'wb') as f:
                image_service.download(context, image_id, f)
            found = format_inspector.detect_file_format(tmp)
            try:
                found.safety_check()
            except format_inspector.SafetyCheckFailed as exc:
                raise exception.ImageUnacceptable(image_id=image_id,
                                                  reason=exc)
            if found.virtual_size > volume.size * units.Gi:
                raise exception.ImageUnacceptable(
                    image_id=image_id, reason='%d bytes do not fit in %d GiB'
                    % (found.virtual_size, volume.size))
            self._execute(
                'qemu-img', 'convert', '-f',
                image_utils.QEMU_IMG_FORMAT_MAP.get(found.NAME, found.NAME),
                '-O', 'raw', tmp, self.local_path(volume))
        # qemu-img leaves the file at the image's size
        self._resize(self.local_path(volume), volume.size)

    # Exports: TgtAdm's, one target per volume
    # ----------------------------------------

    def create_export(self, context, volume, connector):
        export = self.target_driver.create_export(
            context, volume, self.local_path(volume))
        return {'provider_location': export['location'],
                'provider_auth': export['auth']}

    def ensure_export(self, context, volume):
        self.target_driver.ensure_export(context, volume,
                                         self.local_path(volume))

    def remove_export(self, context, volume):
        self.target_driver.remove_export(context, volume)

    def validate_connector(self, connector):
        return self.target_driver.validate_connector(connector)

    def initialize_connection(self, volume, connector, **kwargs):
        return self.target_driver.initialize_connection(volume, connector)

    def terminate_connection(self, volume, connector, **kwargs):
        self.target_driver.terminate_connection(volume, connector, **kwargs)
        # True: another attachment still uses the target (multiattach),
        # so the manager keeps the export
        return len(volume.volume_attachment) > 1

    # Stats
    # -----

    def _update_volume_stats(self):
        fs = os.statvfs(self._directory)
        self._stats = {
            'volume_backend_name': self.backend_name,
            'vendor_name': 'nova-xen',
            'driver_version': self.VERSION,
            'storage_protocol': self.protocol,
            'total_capacity_gb': fs.f_blocks * fs.f_frsize // units.Gi,
            'free_capacity_gb': fs.f_bavail * fs.f_frsize // units.Gi,
            'reserved_percentage': 0,
            'thin_provisioning_support': False,
            'thick_provisioning_support': True,
            'multiattach': True,
            'QoS_support': False,
        }
