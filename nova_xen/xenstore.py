"""What the driver writes into a running guest's xenstore (vm-data/...).

xapi copies a VM's ``xenstore_data`` into the guest's xenstore only when
a domain is created, and keeps it in its database for every pool
administrator to read.  Secrets therefore go another way: the host
plugin writes them into the running domain's own xenstore, which only
that guest and dom0 can read.
"""

from nova import exception

from nova_xen import consoles
from nova_xen import errors


def write_password(session, instance, vm, password):
    """``vm-data/admin_password`` of the running domain of ``vm``."""
    record = session.call('VM.get_record', vm)
    domid = int(record['domid'])
    if record['power_state'] not in ('Running', 'Paused') or domid < 1:
        raise exception.InstancePasswordSetFailed(
            instance=instance.uuid, reason='the server is %s, not running'
            % record['power_state'].lower())
    try:
        session.call_plugin(record['resident_on'], consoles.HOST_PLUGIN,
                            'vm_data_write', {'domid': domid,
                                              'key': 'admin_password',
                                              'value': password})
    except errors.PluginError as exc:
        raise exception.InstancePasswordSetFailed(
            instance=instance.uuid, reason=errors.describe(exc.details))
