"""What a storage XenMotion carries between the two nova-computes.

``XenLiveMigrateData`` travels only between the destination and the
source compute (the check legs and ``pre_live_migration``'s answer), both
of which load this driver and so know the class.  What reaches
nova-conductor is always nova's own ``LibvirtLiveMigrateData`` with
generic fields (``plain``): conductor never loads this driver and could
not deserialize a class of ours.

The receive token of ``host.migrate_receive`` holds a live session of the
destination pool (in ``session_id`` and in its URLs): it is kept in a
field that never shows in a repr, and Nova logs migrate data at DEBUG
level through that repr.
"""

import json

from nova.objects import base as obj_base
from nova.objects import fields
from nova.objects import migrate_data
from oslo_versionedobjects import fields as ovo_fields

HIDDEN = "'<hidden>'"


class _HiddenString(ovo_fields.String):
    """A string whose repr never shows its value."""

    def stringify(self, value):
        return HIDDEN


class HiddenStringField(ovo_fields.AutoTypedField):
    AUTO_TYPE = _HiddenString()


@obj_base.NovaObjectRegistry.register
class XenLiveMigrateData(migrate_data.LibvirtLiveMigrateData):
    # the version of the nova class it extends, whose compatibility code
    # it inherits; fields of its own are never backported
    VERSION = migrate_data.LibvirtLiveMigrateData.VERSION

    fields = dict(migrate_data.LibvirtLiveMigrateData.fields, **{
        # the destination pool: its uuid, host, SR for the disks, and the
        # network of each Neutron port
        'xen_pool_uuid': fields.StringField(),
        'xen_host': fields.StringField(),
        'xen_sr': fields.StringField(),
        'xen_networks': fields.DictOfStringsField(),
        # host.migrate_receive's token, as JSON
        'xen_receive_token': HiddenStringField(),
    })

    @property
    def token(self):
        return json.loads(self.xen_receive_token)


def _generic_fields(data, out):
    """``out`` with every field of nova's class that is set in ``data``."""
    for name in migrate_data.LibvirtLiveMigrateData.fields:
        if data.obj_attr_is_set(name):
            setattr(out, name, getattr(data, name))
    return out


def plain(data):
    """Nova's LibvirtLiveMigrateData with the generic fields of ``data``
    (for nova-conductor)."""
    return _generic_fields(data, migrate_data.LibvirtLiveMigrateData())


def extend(data):
    """A XenLiveMigrateData holding every field set in ``data``."""
    return _generic_fields(data, XenLiveMigrateData())
