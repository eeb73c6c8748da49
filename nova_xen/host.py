"""The compute's own XenServer host: identity, resources, provider tree.

One nova-compute manages one host of a pool.  This module finds that host,
reports its CPUs, memory and instance storage to the resource tracker and
placement, and the CPU traits that are true for it.
"""

import json
import urllib.parse

from nova import conf as nova_conf
from nova import exception
from nova.objects import fields as obj_fields
from oslo_log import log as logging
from oslo_utils import versionutils
import os_resource_classes as orc

from nova_xen import errors
from nova_xen.conf import CONF
from nova_xen import pci
from nova_xen import storage

LOG = logging.getLogger(__name__)
NOVA_CONF = nova_conf.CONF

MIB = 1024 * 1024
GIB = 1024 * MIB
DOMU_UUID_FILE = '/sys/hypervisor/uuid'
VERSION_PLUGIN = 'nova_xen_version.py'
# the dom0 plugin API this driver speaks (nova_xen_dom0lib.API_VERSION):
# the same major version, at least this minor one (1.1 added
# nova_xen_ovs.py; 1.2: isolation rules take networks and more MACs, for
# allowed address pairs)
PLUGIN_API_VERSION = '1.2'

# /proc/cpuinfo flag -> os-traits HW_CPU_X86_* suffix
CPU_FLAG_TRAITS = {
    'avx': 'AVX', 'avx2': 'AVX2', 'pclmulqdq': 'CLMUL', 'fma': 'FMA3',
    'fma4': 'FMA4', 'f16c': 'F16C', 'mmx': 'MMX', 'sse': 'SSE',
    'sse2': 'SSE2', 'pni': 'SSE3', 'ssse3': 'SSSE3', 'sse4_1': 'SSE41',
    'sse4_2': 'SSE42', 'sse4a': 'SSE4A', 'xop': 'XOP', 'avx512f': 'AVX512F',
    'avx512cd': 'AVX512CD', 'avx512vl': 'AVX512VL', 'avx512bw': 'AVX512BW',
    'avx512dq': 'AVX512DQ', 'abm': 'ABM', 'bmi1': 'BMI', 'bmi2': 'BMI2',
    'tbm': 'TBM', 'aes': 'AESNI', 'sha_ni': 'SHA', 'rtm': 'TSX',
    'vmx': 'VMX', 'svm': 'SVM',
}


def cpu_traits(cpu_info):
    """{trait: present} for every CPU trait this driver manages."""
    flags = set(cpu_info.get('flags', '').split())
    return {'HW_CPU_X86_' + t: f in flags for f, t in CPU_FLAG_TRAITS.items()}


def _domu_uuid():
    try:
        with open(DOMU_UUID_FILE) as fh:
            return fh.read().strip()
    except OSError:
        return None


def speaks(found, needed):
    """Plugins of API ``found`` serve a driver that needs ``needed``:
    the same major version, and every call of its minor one (a minor
    version adds plugins or calls, never changes one)."""
    try:
        have = [int(part) for part in found.split('.')[:2]]
        want = [int(part) for part in needed.split('.')[:2]]
    except ValueError:
        return False
    return len(have) == 2 and have[0] == want[0] and have[1] >= want[1]


class Host(object):
    """The XenServer host this nova-compute manages."""

    def __init__(self, session):
        self.session = session
        self.ref = None
        self.uuid = None
        self.address = None
        self.nodename = None
        self.pool_uuid = None
        # the host's record as discovered: what it is made of (CPUs, CPU
        # flags, versions, its metrics object) does not change while its
        # xapi, and so this domU, runs
        self.record = None
        # (host metrics, SR record) of the latest resource update
        self._latest = None

    # -- finding ourselves ---------------------------------------------

    def discover(self):
        hosts = self.session.call('host.get_all_records')
        ref = self._pick(hosts)
        record = hosts[ref]
        self.ref = ref
        self.record = record
        self.uuid = record['uuid']
        self.address = record['address']
        self.nodename = record['hostname'] or record['name_label']
        # one pool per xapi: its uuid is the placement aggregate of its
        # hosts' resource providers
        self.pool_uuid = self.session.call('pool.get_uuid', self.session.call(
            'pool.get_all')[0])
        LOG.info('Managing XenServer host %s (%s, %s) of pool %s',
                 self.nodename, self.uuid, self.address, self.pool_uuid)
        return self

    def _pick(self, hosts):
        by_uuid = {r['uuid']: ref for ref, r in hosts.items()}
        known = ', '.join('%s (%s)' % (r['name_label'], r['uuid'])
                          for r in hosts.values())
        if CONF.xenserver.host_uuid:
            ref = by_uuid.get(CONF.xenserver.host_uuid)
            if ref is None:
                raise errors.StartupError(reason=(
                    'No host of the pool has [xenserver]host_uuid=%s; the '
                    'pool has %s.' % (CONF.xenserver.host_uuid, known)))
            return ref
        domu = _domu_uuid()
        if domu:
            try:
                vm = self.session.call('VM.get_by_uuid', domu)
                resident = self.session.call('VM.get_resident_on', vm)
                if resident in hosts:
                    return resident
            except Exception:
                LOG.debug('this domU (%s) is not a VM of this pool', domu)
        configured = urllib.parse.urlsplit(
            CONF.xenserver.connection_url).hostname
        for ref, record in hosts.items():
            if configured in (record['address'], record['hostname'],
                              record['name_label']):
                return ref
        if len(hosts) == 1:
            return next(iter(hosts))
        raise errors.StartupError(reason=(
            'Cannot tell which host of the pool this nova-compute manages: '
            'set [xenserver]host_uuid to one of %s.' % known))

    # -- the pool: who is in it, how to send a VM here ------------------

    def in_pool(self, host_uuid):
        """Whether the host of uuid ``host_uuid`` is in this pool."""
        try:
            self.session.call('host.get_by_uuid', host_uuid)
            return True
        except exception.NotFound:
            return False
        except errors.XenAPIError as exc:
            if exc.xapi_code == 'UUID_INVALID':
                return False
            raise

    def sees(self, sr):
        """Whether this host has a plugged PBD of ``sr``."""
        session = self.session
        return any(session.call('PBD.get_host', pbd) == self.ref and
                   session.call('PBD.get_currently_attached', pbd)
                   for pbd in session.call('SR.get_PBDs', sr))

    def unseen_srs(self, vm):
        """The SRs of ``vm``'s disks this host does not see (its Cinder
        volumes aside: a destination plugs their targets itself)."""
        session = self.session
        vdis = {r['VDI'] for r in storage.vbd_records(
            session, vm, volumes=False).values() if r['VDI'] != storage.NULL}
        return {sr for sr in {session.call('VDI.get_SR', vdi)
                              for vdi in vdis}
                if not self.sees(sr)}

    def peer(self, address):
        """The ref of the host of this pool at ``address`` (what Nova
        knows of a destination: its get_host_ip_addr), or None."""
        found = self.session.call('host.get_all_records_where',
                                  'field "address" = "%s"' % address)
        return next(iter(found), None)

    def receive_token(self):
        """A token for VM.migrate_send into this host (host.migrate_receive
        on its management network); it holds a session of this pool, to be
        logged out once the move is over."""
        pifs = self.session.call(
            'PIF.get_all_records_where', 'field "host" = "%s" and field '
            '"management" = "true"' % self.ref)
        if not pifs:
            raise exception.NotFound('host %s has no management interface '
                                     'to receive a VM on' % self.nodename)
        mgmt = list(pifs.values())[0]['network']
        return self.session.call('host.migrate_receive', self.ref, mgmt, {})

    # -- dom0 plugins ------------------------------------------------------

    def check_plugins(self):
        """The dom0 plugins are installed and speak our plugin API."""
        hint = ('install the plugins of this nova-xen release: '
                'dom0_plugins/install.sh root@%s' % self.address)
        try:
            reply = self.session.call_plugin(self.ref, VERSION_PLUGIN,
                                             'get_version')
        except errors.PluginError as exc:
            raise errors.StartupError(reason=(
                'The nova-xen dom0 plugins do not answer on host %s (%s); %s'
                % (self.nodename, exc, hint)))
        found = str(reply.get('api_version', '?'))
        if not speaks(found, PLUGIN_API_VERSION):
            raise errors.StartupError(reason=(
                'The dom0 plugins on host %s speak plugin API %s; this '
                'nova-xen needs %s: %s' % (self.nodename, found,
                                           PLUGIN_API_VERSION, hint)))
        LOG.info('dom0 plugins on %s: API %s', self.nodename, found)
        return found

    # -- storage ---------------------------------------------------------

    def instance_sr(self):
        """The SR for instance disks ([xenserver]sr_matching_filter)."""
        spec = CONF.xenserver.sr_matching_filter or ''
        kind, _, value = spec.partition(':')
        sr = None
        if kind == 'default-sr' and value == 'true':
            pool = self.session.call('pool.get_all')[0]
            sr = self.session.call('pool.get_default_SR', pool)
            if sr == 'OpaqueRef:NULL':
                raise errors.StartupError(reason=(
                    'The pool has no default SR; set one (xe pool-param-set '
                    'default-SR=...) or set [xenserver]sr_matching_filter to '
                    'other-config:KEY=VALUE'))
        elif kind == 'other-config' and '=' in value:
            key, _, wanted = value.partition('=')
            matching = [ref for ref, record in self.session.call(
                'SR.get_all_records').items()
                if record['other_config'].get(key) == wanted]
            # with local SRs, one matches on every host: this host's own
            attached = [ref for ref in matching if self._attached(ref)]
            sr = (attached or matching or [None])[0]
            if sr is None:
                raise errors.StartupError(reason=(
                    'No SR has other_config %s=%s ([xenserver]'
                    'sr_matching_filter)' % (key, wanted)))
        else:
            raise errors.StartupError(reason=(
                '[xenserver]sr_matching_filter must be "default-sr:true" or '
                '"other-config:KEY=VALUE", not %r' % spec))
        self._assert_attached(sr)
        return sr

    def _attached(self, sr):
        for pbd in self.session.call('SR.get_PBDs', sr):
            record = self.session.call('PBD.get_record', pbd)
            if record['host'] == self.ref and record['currently_attached']:
                return True
        return False

    def _assert_attached(self, sr):
        if self._attached(sr):
            return
        name = self.session.call('SR.get_name_label', sr)
        raise errors.StartupError(reason=(
            'SR %s is not attached to host %s; attach it or change '
            '[xenserver]sr_matching_filter' % (name, self.nodename)))

    # -- resources -------------------------------------------------------

    def _facts(self, sr):
        """(host record, host metrics, SR record): the metrics and the SR
        are read once per resource update (Nova's periodic task asks for
        the resources, then for the inventory)."""
        if self.record is None:
            self.record = self.session.call('host.get_record', self.ref)
        metrics = self.session.call('host_metrics.get_record',
                                    self.record['metrics'])
        sr_record = self.session.call('SR.get_record', sr)
        self._latest = (sr, metrics, sr_record)
        return self.record, metrics, sr_record

    def _reserved_memory_mb(self, foreign=None):
        """dom0 and VMs that nova does not own (``foreign``: their bytes,
        as the VM watcher knows them; else read), plus the configured
        reserve."""
        if foreign is None:
            resident = self.session.call(
                'VM.get_all_records_where',
                'field "resident_on" = "%s"' % self.ref)
            foreign = sum(int(r['memory_target'] or r['memory_static_max'])
                          for r in resident.values()
                          if 'nova_uuid' not in r['other_config'])
        return foreign // MIB + NOVA_CONF.reserved_host_memory_mb

    def available_resource(self, sr):
        record, metrics, sr_record = self._facts(sr)
        vcpus = len(record['host_CPUs'])
        memory_mb = int(metrics['memory_total']) // MIB
        free_mb = int(metrics['memory_free']) // MIB
        disk_gb = int(sr_record['physical_size']) // GIB
        used_gb = int(sr_record['virtual_allocation']) // GIB
        cpu = record['cpu_info']
        version = record['software_version'].get('xen', '0.0.0')
        return {
            'vcpus': vcpus,
            'memory_mb': memory_mb,
            'local_gb': disk_gb,
            'vcpus_used': 0,
            'memory_mb_used': memory_mb - free_mb,
            'local_gb_used': used_gb,
            'hypervisor_type': 'xen',
            'hypervisor_version': versionutils.convert_version_to_int(
                version.split('-')[0]),
            'hypervisor_hostname': self.nodename,
            # the compute node (and placement provider) is the XenServer
            # host: its uuid, whichever domU runs nova-compute for it
            'uuid': self.uuid,
            'cpu_info': json.dumps({
                'arch': obj_fields.Architecture.X86_64,
                'vendor': cpu.get('vendor', ''),
                'model': cpu.get('modelname', ''),
                'features': sorted(set(cpu.get('flags', '').split())),
                'topology': {'sockets': int(cpu.get('socket_count', 1)),
                             'cores': max(vcpus // max(
                                 int(cpu.get('socket_count', 1)), 1), 1),
                             'threads': 1}}),
            'disk_available_least': disk_gb - used_gb,
            'supported_instances': [
                (obj_fields.Architecture.X86_64, obj_fields.HVType.XEN,
                 obj_fields.VMMode.HVM),
                (obj_fields.Architecture.X86_64, obj_fields.HVType.XEN,
                 obj_fields.VMMode.XEN)],
            'numa_topology': None,
            'pci_passthrough_devices': pci.passthrough_devices_json(
                self.session, self.ref, record),
        }

    def inventory(self, sr, current, foreign_memory=None):
        """The provider's inventory: its totals as the latest resource
        update read them (Nova asks for the inventory right after, and
        again at each claim, when the totals have not changed);
        ``foreign_memory``: see _reserved_memory_mb."""
        if self._latest is not None and self._latest[0] == sr:
            record, (_, metrics, sr_record) = self.record, self._latest
        else:
            record, metrics, sr_record = self._facts(sr)
        vcpus = len(record['host_CPUs'])
        memory_mb = int(metrics['memory_total']) // MIB
        disk_gb = int(sr_record['physical_size']) // GIB
        ratios = _ratios(current)
        reserved_disk = _reserved_disk_gb()
        return record, {
            orc.VCPU: {'total': vcpus, 'min_unit': 1, 'max_unit': vcpus,
                       'step_size': 1, 'allocation_ratio': ratios[orc.VCPU],
                       'reserved': NOVA_CONF.reserved_host_cpus},
            orc.MEMORY_MB: {
                'total': memory_mb, 'min_unit': 1, 'max_unit': memory_mb,
                'step_size': 1, 'allocation_ratio': ratios[orc.MEMORY_MB],
                'reserved': min(self._reserved_memory_mb(foreign_memory),
                                memory_mb)},
            orc.DISK_GB: {'total': disk_gb, 'min_unit': 1,
                          'max_unit': disk_gb, 'step_size': 1,
                          'allocation_ratio': ratios[orc.DISK_GB],
                          'reserved': min(reserved_disk, disk_gb)},
        }


def set_traits(provider_tree, nodename, traits):
    """{trait: on}: add those on (that os-traits knows), remove the off."""
    import os_traits
    provider_tree.add_traits(nodename, *[
        t for t, on in traits.items() if on and hasattr(os_traits, t)])
    provider_tree.remove_traits(nodename, *[
        t for t, on in traits.items() if not on])


def _ratios(inventory):
    from nova.virt import driver as virt_driver
    return virt_driver.ComputeDriver._get_allocation_ratios(inventory)


def _reserved_disk_gb():
    from nova.virt import driver as virt_driver
    return virt_driver.ComputeDriver._get_reserved_host_disk_gb_from_config()
