"""The config drive: Nova's ``config-2`` ISO in a VDI attached read-only."""

import os
import tempfile

from nova.api.metadata import base as instance_metadata
from nova.virt import configdrive

from nova_xen import storage


def required(instance):
    return configdrive.required_by(instance)


def create(context, session, images, sr, instance, injected_files,
           admin_password, network_info, host_address):
    """Build the ISO and import it into a new VDI; returns the VDI."""
    extra_md = {'admin_pass': admin_password} if admin_password else {}
    metadata = instance_metadata.InstanceMetadata(
        instance, content=injected_files, extra_md=extra_md,
        network_info=network_info)
    with tempfile.TemporaryDirectory(prefix='nova-xen-cd-') as tmp:
        path = os.path.join(tmp, 'configdrive.iso')
        with configdrive.ConfigDriveBuilder(instance_md=metadata) as cdb:
            cdb.make_drive(path)
        size = os.path.getsize(path)
        vdi = storage.create_vdi(session, sr, instance, 'config-drive', size,
                                 name='%s config drive' % instance.name)
        try:
            images.write(open(path, 'rb'), 'raw', size, vdi, host_address)
        except Exception:
            storage.destroy_vdi(session, vdi)
            raise
    return vdi
