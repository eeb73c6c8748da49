"""Which VMs of the pool are this compute's instances.

A VM belongs to an instance when ``other_config['nova_uuid']`` names it,
and to this compute when it runs on this host (or, halted, has this host
as its affinity).  The index maps instance UUIDs to VM references and is
refreshed from xapi when asked for a UUID it does not know.
"""

import threading

NULL = 'OpaqueRef:NULL'
OWNED_EXPR = ('field "is_a_template" = "false" and '
              'field "is_control_domain" = "false"')


def owned_by(record, host_ref):
    if 'nova_uuid' not in record['other_config']:
        return False
    resident = record['resident_on']
    if resident != NULL:
        return resident == host_ref
    return record['affinity'] == host_ref


class InstanceIndex(object):
    def __init__(self, session, host_ref):
        self.session = session
        self.host_ref = host_ref
        self._lock = threading.Lock()
        self._vms = {}      # instance uuid -> VM ref
        self._names = {}    # instance uuid -> VM name_label

    def refresh(self):
        records = self.session.call('VM.get_all_records_where', OWNED_EXPR)
        vms = {}
        names = {}
        for ref, record in records.items():
            if owned_by(record, self.host_ref):
                uuid = record['other_config']['nova_uuid']
                vms[uuid] = ref
                names[uuid] = record['name_label']
        with self._lock:
            self._vms = vms
            self._names = names
        return records

    def add(self, instance_uuid, vm, name):
        with self._lock:
            self._vms[instance_uuid] = vm
            self._names[instance_uuid] = name

    def remove(self, instance_uuid):
        with self._lock:
            self._vms.pop(instance_uuid, None)
            self._names.pop(instance_uuid, None)

    def lookup(self, instance_uuid):
        with self._lock:
            vm = self._vms.get(instance_uuid)
        if vm is None:
            self.refresh()
            with self._lock:
                vm = self._vms.get(instance_uuid)
        return vm

    def uuids(self):
        self.refresh()
        with self._lock:
            return list(self._vms)

    def names(self):
        self.refresh()
        with self._lock:
            return list(self._names.values())
