"""The mini cloud's firmware and devices, checked through the real services.

Run by ``tools/minicloud.sh smoke`` with the minicloud's venv Python, the
admin of clouds.yaml in OS_CLIENT_CONFIG_FILE/OS_CLOUD:

1. placement: every compute reports the vTPM traits xapi can honour
   (COMPUTE_SECURITY_TPM_2_0, _TPM_CRB, _TPM_SECRET_SECURITY_HOST) and
   none of the others (TPM 1.2, TIS, secret security user or
   deployment); COMPUTE_SECURITY_UEFI_SECURE_BOOT exactly where its
   pool is ready (``pool.get_guest_secureboot_readiness``, which reads
   the certificates ``secureboot-certs install`` put in the master's
   dom0); the device host (the one of xapisim's ``--devices``, which
   ``up`` wrote) has a child provider of
   VGPU for its GPU group, sized from xapi's GPUs of that host, and its
   NIC is in Nova's PCI tracker, available;
2. servers, all created at once (flavors and a UEFI image of the check's
   own, removed at the end):
   - a UEFI Secure Boot image with a vTPM flavor (TPM 2.0, CRB, secret
     security host) is ACTIVE on a compute whose pool is ready; xapi's VM
     has UEFI firmware, ``platform:secureboot`` true, the UEFI variable
     store its first boot wrote, one VTPM;
   - TPM 1.2 with the TIS model (what Tempest's vTPM tests ask) is
     refused: the scheduler finds no compute with those traits, nothing
     is made in xapi;
   - a vTPM on a BIOS image (the scheduler cannot tell) is refused by
     nova-xen with a sentence that says why, nothing is made in xapi;
   - ``pci_passthrough:alias=<alias>:1`` lands on the device host; the
     VM has the NIC in ``other_config:pci`` and ``attached_PCIs``, the
     tracker has it allocated to the server;
   - ``resources:VGPU=1`` lands on the device host; the VM has a VGPU of
     the enabled type, attached, on a GPU of that host; placement has
     the server's VGPU on that host's GPU-group provider and its usage
     counts it;
3. deleting them leaves nothing tagged with them in any pool, no VTPM or
   secret more than before, the NIC available again, no VGPU, VGPU usage
   0.

Prints every check; exits 1 if one failed.
"""

import argparse
import configparser
import json
import sys
import time

import openstack
import sqlalchemy

import checklog  # noqa: E402  (this script's own directory)
from smoke import Compute  # noqa: E402
from smoke import Smoke  # noqa: E402

BUILD_LIMIT = 600
DELETE_LIMIT = 300
# nova-compute frees a deleted server's PCI claim and placement allocation
# after the server is gone from the API (ComputeManager._complete_deletion)
FREED_LIMIT = 120
PLACEMENT = {'OpenStack-API-Version': 'placement 1.6'}
VTPM = {'hw:tpm_version': '2.0', 'hw:tpm_model': 'tpm-crb',
        'hw:tpm_secret_security': 'host'}
TPM_1_2_TIS = {'hw:tpm_version': '1.2', 'hw:tpm_model': 'tpm-tis',
               'hw:tpm_secret_security': 'host'}
UEFI_SECURE_BOOT = {'hw_firmware_type': 'uefi',
                    'os_secure_boot': 'required'}
TPM_ON = ('COMPUTE_SECURITY_TPM_2_0', 'COMPUTE_SECURITY_TPM_CRB',
          'COMPUTE_SECURITY_TPM_SECRET_SECURITY_HOST')
TPM_OFF = ('COMPUTE_SECURITY_TPM_1_2', 'COMPUTE_SECURITY_TPM_TIS',
           'COMPUTE_SECURITY_TPM_SECRET_SECURITY_USER',
           'COMPUTE_SECURITY_TPM_SECRET_SECURITY_DEPLOYMENT')
SECURE_BOOT = 'COMPUTE_SECURITY_UEFI_SECURE_BOOT'
READY = ('ready', 'ready_no_dbx')
BIOS_VTPM_SENTENCE = 'xapi does not boot a BIOS guest with a vTPM'
FLAVOR = {'ram': 512, 'vcpus': 1, 'disk': 1}


def trait_problems(traits, readiness):
    """What is wrong with a compute's traits, given its pool's Secure Boot
    readiness: one sentence each."""
    problems = ['no %s' % t for t in TPM_ON if t not in traits]
    problems += ['%s (xapi cannot honour it)' % t for t in TPM_OFF
                 if t in traits]
    if (SECURE_BOOT in traits) != (readiness in READY):
        problems.append('%s %s while the pool\'s readiness is %s' % (
            SECURE_BOOT, 'reported' if SECURE_BOOT in traits
            else 'missing', readiness))
    return problems


def gpu_group_providers(providers, node):
    """The GPU-group providers nova-xen makes under compute ``node``."""
    prefix = '%s_gpu_group_' % node
    return [p for p in providers if p['name'].startswith(prefix)]


def pci_value(addresses):
    """xapi's ``other_config:pci`` for these devices (xenopsd's form)."""
    return ','.join('0/%s' % a for a in addresses)


def refusal_problem(server, sentence):
    """None if ``server`` (a dict) was refused with ``sentence`` in its
    fault, else what happened instead."""
    fault = (server.get('fault') or {}).get('message', '')
    if server['status'] != 'ERROR':
        return 'it is %s, not refused' % server['status']
    if sentence not in fault:
        return 'its fault does not say "%s": %r' % (sentence, fault)
    return None


def until(read, done, limit):
    """``read()`` until ``done`` of its value, or ``limit`` seconds: the
    last value."""
    started = time.time()
    while True:
        value = read()
        if done(value) or time.time() - started > limit:
            return value
        time.sleep(1)


class HardwareCheck(checklog.Checks):

    def __init__(self, args):
        self.args = args
        self.started = time.time()
        with open(args.computes) as f:
            self.computes = [Compute(line) for line in f if line.strip()]
        with open(args.xapi_json) as f:
            self.world = json.load(f)
        self.by_host = {c.host: c for c in self.computes}
        # the compute whose xapisim host has the devices (xapisim's
        # --devices, which ``up`` wrote)
        self.device_host = None
        self.device = None
        if args.devices:
            with open(args.devices) as f:
                (self.device_host,) = json.load(f)['hosts']
            self.device = next((c for c in self.computes
                                if c.xapi_host == self.device_host), None)
        self.conn = openstack.connect()
        self.sessions = {}
        self.made = {'flavors': [], 'images': [], 'servers': []}
        self.deleted = False
        nova = configparser.RawConfigParser(strict=False)
        nova.read(args.nova_conf)
        # the PCI tracker's table is in the cell database, nova.conf's
        # [database] in this cloud of one cell
        self.cell_db = sqlalchemy.create_engine(
            nova.get('database', 'connection'))
        self.vgpu_type = nova.get('devices', 'enabled_mdev_types',
                                  fallback='').split(',')[0].strip()
        alias = nova.get('pci', 'alias', fallback='')
        self.alias = json.loads(alias) if alias else None

    # -- the services ----------------------------------------------------

    # a XenAPI session per pool master (self.sessions, self.world)
    xapi = Smoke.xapi
    logout = Smoke.logout

    def placement(self, path):
        return self.conn.placement.get(path, headers=PLACEMENT).json()

    def providers(self):
        return self.placement('/resource_providers')['resource_providers']

    def readiness(self, compute):
        x = self.xapi(compute.master)
        return x.pool.get_guest_secureboot_readiness(x.pool.get_all()[0])

    def tracker(self, compute):
        """{address: (status, instance uuid)} of the compute's PCI
        devices in Nova's PCI tracker."""
        with self.cell_db.connect() as db:
            rows = db.execute(sqlalchemy.text(
                'SELECT p.address, p.status, p.instance_uuid FROM '
                'pci_devices p JOIN compute_nodes c ON p.compute_node_id = '
                'c.id WHERE c.host = :host AND p.deleted = 0 AND '
                'c.deleted = 0'), {'host': compute.host})
            return {r[0]: (r[1], r[2]) for r in rows}

    def tagged(self, uuid):
        """Objects tagged with a server's uuid, in every pool."""
        found = []
        for master in sorted({c.master for c in self.computes}):
            x = self.xapi(master)
            for cls in ('VM', 'VDI', 'VIF'):
                found += ['%s %s' % (cls, r['uuid']) for r in getattr(
                    x, cls).get_all_records().values()
                    if r['other_config'].get('nova_uuid') == uuid]
        return found

    def vm_of(self, compute, uuid):
        x = self.xapi(compute.master)
        for ref, record in x.VM.get_all_records().items():
            if record['other_config'].get('nova_uuid') == uuid:
                return x, ref, record
        return x, None, None

    def vtpm_counts(self):
        counts = {}
        for master in sorted({c.master for c in self.computes}):
            x = self.xapi(master)
            counts[master] = (len(x.VTPM.get_all()), len(x.secret.get_all()))
        return counts

    # -- 1. what the computes report -------------------------------------

    def check_traits(self):
        providers = {p['name']: p for p in self.providers()}
        for hyp in self.conn.compute.hypervisors(details=True):
            host = (hyp.service_details or {}).get('host')
            compute = self.by_host.get(host)
            if compute is None:
                continue
            rp = providers.get(hyp.name)
            if not self.check(rp is not None, '%s: placement has its '
                              'provider %s' % (host, hyp.name)):
                continue
            compute.node, compute.rp = hyp.name, rp['uuid']
            traits = set(self.placement('/resource_providers/%s/traits'
                                        % rp['uuid'])['traits'])
            readiness = self.readiness(compute)
            problems = trait_problems(traits, readiness)
            self.check(not problems, '%s (%s, Secure Boot readiness %s): '
                       'traits %s%s' % (
                           host, compute.pool, readiness,
                           ', '.join(t[len('COMPUTE_SECURITY_'):] for t in
                                     sorted(traits) if t.startswith(
                                         'COMPUTE_SECURITY_')),
                           ''.join('; ' + p for p in problems)))
        missing = [c.host for c in self.computes if not hasattr(c, 'rp')]
        self.check(not missing, 'every compute has a provider (missing: %s)'
                   % (', '.join(missing) or 'none'))

    def check_device_host(self):
        """The GPU-group provider and the NIC of the device host; returns
        (the provider's uuid, the NIC's address)."""
        compute = self.device
        x = self.xapi(compute.master)
        host = x.host.get_by_uuid(compute.host_uuid)
        # what xapi says the host's GPUs hold of the enabled type
        capacity = 0
        for pgpu in x.host.get_PGPUs(host):
            for vtype, n in x.PGPU.get_supported_VGPU_max_capacities(
                    pgpu).items():
                if x.VGPU_type.get_model_name(vtype) == self.vgpu_type:
                    capacity += int(n)
        gpu_rp = None
        groups = gpu_group_providers(self.providers(), compute.node)
        if self.check(len(groups) == 1, '%s: one GPU-group provider under '
                      '%s (found %s)' % (compute.host, compute.node, ', '.join(
                          p['name'] for p in groups) or 'none')):
            gpu_rp = groups[0]['uuid']
            inventory = self.placement('/resource_providers/%s/inventories'
                                       % gpu_rp)['inventories']
            total = inventory.get('VGPU', {}).get('total')
            self.check(total == capacity > 0,
                       '%s: VGPU inventory %s = xapi\'s capacity of its GPUs '
                       'for %s (%d)' % (groups[0]['name'], total,
                                        self.vgpu_type, capacity))
            traits = self.placement('/resource_providers/%s/traits'
                                    % gpu_rp)['traits']
            self.check('OWNER_NOVA' in traits, '%s: traits %s' % (
                groups[0]['name'], ', '.join(sorted(traits))))
        for other in self.computes:
            if other is not compute and hasattr(other, 'node'):
                self.check(not gpu_group_providers(self.providers(),
                                                   other.node),
                           '%s: no GPU-group provider' % other.host)
        # the NIC the alias names, hidden from dom0 on that host
        nics = []
        for pci in x.host.get_PCIs(host):
            record = x.PCI.get_record(pci)
            if self.alias and \
                    record['vendor_id'] == self.alias.get('vendor_id') and \
                    record['device_id'] == self.alias.get('product_id') and \
                    x.PCI.get_dom0_access_status(pci) == 'disabled':
                nics.append(record['pci_id'])
        tracker = self.tracker(compute)
        self.check(len(nics) == 1 and tracker.get(nics[0], ('',))[0] ==
                   'available', '%s: xapi\'s NICs for alias %s, hidden from '
                   'dom0: %s; Nova\'s PCI tracker: %s' % (
                       compute.host, self.alias and self.alias.get('name'),
                       nics, tracker))
        return gpu_rp, (nics[0] if nics else None)

    # -- 2. servers ------------------------------------------------------

    def flavor(self, name, extra_specs):
        flavor = self.conn.compute.create_flavor(
            name='minicloud-hw-%s-%d' % (name, int(self.started)),
            is_public=True, **FLAVOR)
        self.made['flavors'].append(flavor.id)
        self.conn.compute.create_flavor_extra_specs(flavor, extra_specs)
        return flavor.id

    def uefi_image(self):
        base = self.conn.image.find_image(self.args.image,
                                          ignore_missing=False)
        image = self.conn.image.create_image(
            name='minicloud-hw-uefi-%d' % int(self.started),
            filename=self.args.image_file, disk_format=base.disk_format,
            container_format=base.container_format, visibility='private',
            wait=True, **UEFI_SECURE_BOOT)
        self.made['images'].append(image.id)
        return image.id

    def boot(self, name, image_id, flavor_id, network_id):
        server = self.conn.compute.create_server(
            name='minicloud-hw-%s' % name, image_id=image_id,
            flavor_id=flavor_id, networks=[{'uuid': network_id}])
        self.made['servers'].append(server.id)
        return server.id

    def settled(self, server_id, limit=BUILD_LIMIT):
        started = time.time()
        while True:
            server = self.conn.compute.get_server(server_id)
            if server.status != 'BUILD' or time.time() - started > limit:
                return server
            time.sleep(1)

    def where(self, server):
        return self.by_host.get(server.compute_host)

    def check_secure_boot(self, server):
        compute = self.where(server)
        if not self.check(server.status == 'ACTIVE' and compute is not None,
                          'UEFI Secure Boot server with a vTPM %s: %s on %s'
                          ' (fault: %s)' % (server.id, server.status,
                                            server.compute_host,
                                            (server.fault or {}).get(
                                                'message'))):
            return
        readiness = self.readiness(compute)
        self.check(readiness in READY, '%s is in %s, whose Secure Boot '
                   'readiness is %s' % (compute.host, compute.pool,
                                        readiness))
        x, vm, record = self.vm_of(compute, server.id)
        if not self.check(vm is not None, 'its VM in %s' % compute.pool):
            return
        vtpms = record['VTPMs']
        self.check(record['HVM_boot_params'].get('firmware') == 'uefi'
                   and record['platform'].get('secureboot') == 'true'
                   and 'EFI-variables' in record['NVRAM']
                   and len(vtpms) == 1,
                   'VM %s: firmware %s, platform:secureboot %s, NVRAM %s, '
                   '%d VTPM' % (record['uuid'],
                                record['HVM_boot_params'].get('firmware'),
                                record['platform'].get('secureboot'),
                                sorted(record['NVRAM']), len(vtpms)))

    def check_refused(self, what, server, sentence):
        problem = refusal_problem(
            {'status': server.status, 'fault': server.fault}, sentence)
        self.check(problem is None, '%s %s: refused (%s)%s' % (
            what, server.id, (server.fault or {}).get('message', '').strip(),
            '; ' + problem if problem else ''))
        left = self.tagged(server.id)
        self.check(not left, '%s: nothing made in xapi (found: %s)'
                   % (what, ', '.join(left) or 'none'))

    def on_device_host(self, what, server):
        """The server is ACTIVE on the device host: (its pool's XenAPI,
        its VM's record), or None."""
        compute = self.device
        if not self.check(server.status == 'ACTIVE'
                          and server.compute_host == compute.host,
                          '%s server %s: %s on %s (fault: %s)'
                          % (what, server.id, server.status,
                             server.compute_host,
                             (server.fault or {}).get('message'))):
            return None
        x, vm, record = self.vm_of(compute, server.id)
        if not self.check(vm is not None, 'its VM in %s' % compute.pool):
            return None
        return x, record

    def check_pci(self, server, address):
        compute = self.device
        found = self.on_device_host('PCI passthrough', server)
        if found is None:
            return
        x, record = found
        attached = [x.PCI.get_pci_id(p) for p in record['attached_PCIs']]
        self.check(record['other_config'].get('pci') == pci_value([address])
                   and attached == [address],
                   'VM %s: other_config:pci %s, attached_PCIs %s' % (
                       record['uuid'], record['other_config'].get('pci'),
                       attached))
        state = self.tracker(compute).get(address)
        self.check(state == ('allocated', server.id),
                   'Nova\'s PCI tracker: %s %s' % (address, state))

    def check_vgpu(self, server, gpu_rp):
        compute = self.device
        found = self.on_device_host('vGPU', server)
        if found is None:
            return
        x, record = found
        vgpus = [x.VGPU.get_record(v) for v in record['VGPUs']]
        placed = [(x.VGPU_type.get_model_name(v['type']),
                   v['currently_attached'],
                   x.host.get_uuid(x.PGPU.get_host(v['resident_on']))
                   if v['currently_attached'] else None) for v in vgpus]
        self.check(placed == [(self.vgpu_type, True, compute.host_uuid)],
                   'VM %s: VGPUs (type, attached, on a GPU of host) %s'
                   % (record['uuid'], placed))
        allocations = self.placement('/allocations/%s'
                                     % server.id)['allocations']
        vgpu = {rp: a['resources']['VGPU'] for rp, a in allocations.items()
                if 'VGPU' in a['resources']}
        self.check(vgpu == {gpu_rp: 1}, 'placement: the server\'s VGPU '
                   'allocation %s is on the GPU-group provider %s'
                   % (vgpu, gpu_rp))
        usage = self.placement('/resource_providers/%s/usages'
                               % gpu_rp)['usages'].get('VGPU')
        self.check(usage == 1, 'placement: the GPU-group provider\'s VGPU '
                   'usage is %s (the one server)' % usage)

    # -- 3. deletion -----------------------------------------------------

    def delete_servers(self):
        for server_id in self.made['servers']:
            try:
                self.conn.compute.delete_server(server_id,
                                                ignore_missing=True)
            except Exception as exc:  # report, delete the others
                self.say('deleting server %s: %s' % (server_id, exc))
        for server_id in self.made['servers']:
            try:
                self.conn.compute.wait_for_delete(
                    self.conn.compute.get_server(server_id),
                    wait=DELETE_LIMIT)
            except openstack.exceptions.NotFoundException:
                pass
        self.deleted = True

    def check_deleted(self, vtpms_before, gpu_rp, address):
        for server_id in self.made['servers']:
            left = self.tagged(server_id)
            self.check(not left, 'server %s deleted: nothing of it in any '
                       'pool (found: %s)' % (server_id, ', '.join(left)
                                             or 'none'))
        after = self.vtpm_counts()
        self.check(after == vtpms_before, '(VTPMs, secrets) in each pool: '
                   '%s, as before the servers (%s)' % (after, vtpms_before))
        if self.device is None:
            return
        if address:
            state = until(lambda: self.tracker(self.device).get(address),
                          lambda s: s == ('available', None), FREED_LIMIT)
            self.check(state == ('available', None),
                       'Nova\'s PCI tracker: %s %s' % (address, state))
        x = self.xapi(self.device.master)
        self.check(not x.VGPU.get_all(), 'no VGPU left in %s'
                   % self.device.pool)
        if gpu_rp:
            usage = until(lambda: self.placement(
                '/resource_providers/%s/usages' % gpu_rp)['usages'].get(
                    'VGPU'), lambda u: u == 0, FREED_LIMIT)
            self.check(usage == 0, 'placement: VGPU usage %s' % usage)

    def cleanup(self):
        for image_id in self.made['images']:
            self.conn.image.delete_image(image_id, ignore_missing=True)
        for flavor_id in self.made['flavors']:
            self.conn.compute.delete_flavor(flavor_id, ignore_missing=True)
        self.logout()

    def run(self):
        try:
            self.say('--- what the computes report')
            self.check_traits()
            gpu_rp = address = None
            if self.device_host:
                if self.check(self.device is not None and hasattr(
                        self.device, 'node'), 'the device host %s is '
                        'managed by a compute (%s)' % (
                            self.device_host,
                            self.device and self.device.host)):
                    gpu_rp, address = self.check_device_host()
            vtpms_before = self.vtpm_counts()
            net = self.conn.network.find_network(self.args.network,
                                                 ignore_missing=False)
            image = self.conn.image.find_image(self.args.image,
                                               ignore_missing=False)
            uefi = self.uefi_image()
            vtpm = self.flavor('vtpm', VTPM)
            servers = {
                'secure-boot': self.boot('secure-boot', uefi, vtpm, net.id),
                'tpm-1.2': self.boot('tpm-1.2', uefi,
                                     self.flavor('tpm12', TPM_1_2_TIS),
                                     net.id),
                'bios-vtpm': self.boot('bios-vtpm', image.id, vtpm, net.id)}
            if gpu_rp and address:
                servers['pci'] = self.boot(
                    'pci', image.id, self.flavor('pci', {
                        'pci_passthrough:alias': '%s:1'
                        % self.alias['name']}), net.id)
                servers['vgpu'] = self.boot(
                    'vgpu', image.id, self.flavor('vgpu', {
                        'resources:VGPU': '1'}), net.id)
            self.say('--- %d servers: %s' % (len(servers), ', '.join(
                '%s %s' % item for item in servers.items())))
            settled = {name: self.settled(i) for name, i in servers.items()}
            self.say('--- they left BUILD')
            self.check_secure_boot(settled['secure-boot'])
            self.check_refused(
                'TPM 1.2 with TIS', settled['tpm-1.2'], 'No valid host')
            self.say('     (no compute reports %s: xapi\'s vTPM is TPM 2.0 '
                     'with the CRB interface only)' % ' or '.join(TPM_OFF[:2]))
            self.check_refused('a vTPM on a BIOS image',
                               settled['bios-vtpm'], BIOS_VTPM_SENTENCE)
            if 'pci' in settled:
                self.check_pci(settled['pci'], address)
                self.check_vgpu(settled['vgpu'], gpu_rp)
            self.say('--- deleting them')
            self.delete_servers()
            self.check_deleted(vtpms_before, gpu_rp, address)
        finally:
            try:
                if self.made['servers'] and not self.deleted:
                    self.delete_servers()
            finally:
                self.cleanup()
        self.say('%s: %d check(s) failed' % ('FAILED' if self.failed
                                             else 'PASSED', self.failed))
        return 1 if self.failed else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--xapi-json', required=True)
    p.add_argument('--computes', required=True,
                   help='the compute table minicloud.sh up wrote')
    p.add_argument('--nova-conf', required=True,
                   help='nova.conf: the cell database, [pci] alias, '
                   '[devices] enabled_mdev_types')
    p.add_argument('--image', required=True,
                   help='the test image (its formats)')
    p.add_argument('--image-file', required=True,
                   help='its file, uploaded again as a UEFI image')
    p.add_argument('--network', required=True)
    p.add_argument('--devices', help='xapisim\'s --devices file: the host '
                   'with the GPU and the NIC (none: no device checks)')
    return HardwareCheck(p.parse_args()).run()


if __name__ == '__main__':
    sys.exit(main())
