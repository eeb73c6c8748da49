"""At start-up nova-compute reports, and removes, what a crash left."""

import uuid

from nova import context
from nova import objects

from tests.functional import base
from tests.functional.test_boot import pattern

MIB = 1024 * 1024


class ReconcileTest(base.XenAPIFunctionalTestCase):

    def setUp(self):
        super(ReconcileTest, self).setUp()
        self.server = self.boot(self.image_with(pattern(MIB)))
        self.x = self.xapi.x
        self.sr = self.x.pool.get_default_SR(self.x.pool.get_all()[0])
        self.host = self.x.host.get_all()[0]

    def tagged_vdi(self, instance_uuid, role='root'):
        return self.x.VDI.create({
            'SR': self.sr, 'virtual_size': str(4 * MIB), 'type': 'user',
            'sharable': False, 'read_only': False, 'name_label': 'left',
            'other_config': {'nova_uuid': instance_uuid, 'nova_role': role}})

    def tagged_vm(self, instance_uuid):
        _, record = self.xapi.vm_of(self.server['id'])
        fields = {k: record[k] for k in (
            'user_version', 'is_a_template', 'memory_static_max',
            'memory_dynamic_max', 'memory_dynamic_min', 'memory_static_min',
            'VCPUs_params', 'VCPUs_max', 'VCPUs_at_startup',
            'actions_after_shutdown', 'actions_after_reboot',
            'actions_after_crash', 'PV_bootloader', 'PV_kernel',
            'PV_ramdisk', 'PV_args', 'PV_bootloader_args', 'PV_legacy_args',
            'HVM_boot_policy', 'HVM_boot_params', 'platform', 'PCI_bus',
            'recommendations')}
        fields.update(name_label='half-built', affinity=self.host,
                      other_config={'nova_uuid': instance_uuid})
        return self.x.VM.create(fields)

    def restart(self):
        self.compute = self.restart_compute_service(self.compute)

    def test_orphans_of_a_crash_are_removed_and_the_living_kept(self):
        ghost = str(uuid.uuid4())          # an instance Nova never had
        orphan_vm = self.tagged_vm(ghost)
        orphan_vdi = self.tagged_vdi(ghost)
        vbd_vdi = self.tagged_vdi(ghost, role='root')
        self.x.VBD.create({
            'VM': orphan_vm, 'VDI': vbd_vdi, 'userdevice': '0',
            'bootable': True, 'mode': 'RW', 'type': 'Disk', 'empty': False,
            'other_config': {}, 'qos_algorithm_type': '',
            'qos_algorithm_params': {}})
        # a disk of a living instance, not attached (e.g. mid-spawn): kept
        alive = self.tagged_vdi(self.server['id'], role='ephemeral')
        self.restart()
        vdis = set(self.x.VDI.get_all())
        self.assertNotIn(orphan_vdi, vdis)
        self.assertNotIn(vbd_vdi, vdis)
        self.assertIn(alive, vdis)
        self.assertNotIn(orphan_vm, self.x.VM.get_all())
        log = self.stdlog.logger.output
        self.assertIn('orphaned VM half-built of deleted instance %s: '
                      'removing it' % ghost, log)
        # the real instance is untouched and still managed
        self.assertEqual('Running',
                         self.xapi.vm_of(self.server['id'])[1]['power_state'])
        self._delete_server(self.server)

    def test_reporting_only(self):
        self.flags(reap_orphans=False, group='xenserver')
        ghost = str(uuid.uuid4())
        vdi = self.tagged_vdi(ghost)
        self.restart()
        self.assertIn(vdi, self.x.VDI.get_all())
        self.assertIn('orphaned root disk %s of deleted instance %s'
                      % (self.x.VDI.get_uuid(vdi), ghost),
                      self.stdlog.logger.output)


class RescueLeftOverTest(base.XenAPIFunctionalTestCase):
    """A rescue VM whose instance is not rescued (an unrescue lost in a
    crash) goes at start-up with its rescue disk; the instance's disk and
    a rescued instance's rescue VM stay."""

    def rescue_vm(self, server):
        for ref, record in self.xapi.x.VM.get_all_records().items():
            if record['other_config'].get('nova_rescue_of') == server['id']:
                return ref
        return None

    def test_left_over_rescue_vm_goes_a_live_one_stays(self):
        x = self.xapi.x
        image = self.image_with(pattern(MIB))
        lost = self.boot(image)
        rescued = self.boot(image)
        for server in (lost, rescued):
            self._rescue_server(server)
        # lost's unrescue happened in Nova, but the compute died before
        # removing the rescue VM: what the pool holds after such a crash
        lost_rescue = self.rescue_vm(lost)
        rescue_disks = [x.VBD.get_VDI(vbd) for vbd in x.VM.get_VBDs(
            lost_rescue) if x.VBD.get_userdevice(vbd) == '0']
        lost_vm, record = self.xapi.vm_of(lost['id'])
        root = x.VBD.get_VDI(record['VBDs'][0])
        inst = objects.Instance.get_by_uuid(context.get_admin_context(),
                                            lost['id'])
        inst.vm_state = 'active'
        inst.save()
        self.compute = self.restart_compute_service(self.compute)
        self.assertIsNone(self.rescue_vm(lost))
        vdis = set(x.VDI.get_all())
        self.assertFalse(set(rescue_disks) & vdis)
        self.assertIn(root, vdis)
        self.assertIn('rescue VM %s-rescue of instance %s is left over (the '
                      'instance is active): removing it'
                      % (record['name_label'], lost['id']),
                      self.stdlog.logger.output)
        # the rescued server keeps its rescue VM, running
        keep = self.rescue_vm(rescued)
        self.assertIsNotNone(keep)
        self.assertEqual('Running', x.VM.get_power_state(keep))
