"""Driver calls Nova makes outside the main lifecycle: host CPU times for
the CPU monitor, device names, disk info, stuck reboots; and the calls
this driver refuses, each with a sentence."""

import json
import os
import subprocess
import sys

import fixtures
from nova.compute import task_states
from nova import context as nova_context
from nova import objects
from nova.virt import driver as virt_driver

from nova_xen import driver as xen_driver
from nova_xen import errors
from tests.functional import base
from tests.functional.test_boot import pattern

MIB = 1024 * 1024


class DriverCallsTest(base.XenAPIFunctionalTestCase):

    def setUp(self):
        super(DriverCallsTest, self).setUp()
        self.driver = self.computes[self.compute.host].manager.driver
        self.ctxt = nova_context.get_admin_context()

    def instance(self, server):
        return objects.Instance.get_by_uuid(self.ctxt, server['id'])

    def test_host_cpu_stats_grow_with_the_hosts_busy_time(self):
        first = self.driver.get_host_cpu_stats()
        self.assertEqual({'kernel', 'idle', 'user', 'iowait', 'frequency'},
                         set(first))
        self.assertEqual(2394, first['frequency'])   # host_cpu speed, MHz
        # the first call integrates the last minute of every CPU
        cpus = len(self.xapi.x.host.get_host_CPUs(
            self.xapi.x.host.get_all()[0]))
        total = (first['user'] + first['idle']) / 1e9
        self.assertGreater(first['user'], 0)
        self.assertAlmostEqual(60 * cpus, total, delta=5 * cpus + 1)
        # one more RRD step (every 5 s)
        second = self.poll(
            lambda: (lambda now: now if now['user'] > first['user']
                     else None)(self.driver.get_host_cpu_stats()),
            "the host's busy time growing")
        self.assertGreater(second['idle'], first['idle'])
        # what Nova's cpu.virt_driver monitor computes from two readings
        from nova.compute.monitors.cpu import virt_driver as monitor
        mon = monitor.Monitor(self.computes[self.compute.host].manager.rt)
        metrics = objects.MonitorMetricList(objects=[])
        mon.populate_metrics(metrics)
        mon.populate_metrics(metrics)
        names = {m.name: m.value for m in metrics.objects}
        self.assertIn('cpu.user.percent', names)
        self.assertLessEqual(0, names['cpu.percent'])

    def test_device_names_follow_the_vms_free_userdevices(self):
        server = self.boot(self.image_with(pattern(MIB)))
        instance = self.instance(server)
        bdm = objects.BlockDeviceMapping(device_name=None)
        # xvda is the root disk: the next one is xvdb
        self.assertEqual('/dev/xvdb', self.driver.get_device_name_for_instance(
            instance, [], bdm))
        # a name already claimed by a mapping is skipped
        claimed = objects.BlockDeviceMapping(device_name='/dev/xvdb')
        self.assertEqual('/dev/xvdc', self.driver.get_device_name_for_instance(
            instance, [claimed], bdm))
        # a free name asked for is kept
        bdm = objects.BlockDeviceMapping(device_name='/dev/vdf')
        self.assertEqual('/dev/xvdf', self.driver.get_device_name_for_instance(
            instance, [claimed], bdm))

    def test_disk_info_crosses_a_process_boundary(self):
        server = self.boot(self.image_with(pattern(MIB)))
        text = self.driver.get_instance_disk_info(self.instance(server))
        # what a destination nova-compute would read: decoded in a process
        # of its own that imports nothing of nova-xen
        out = subprocess.run(
            [sys.executable, '-I', '-c',
             'import json, sys; d = json.load(sys.stdin); '
             'print(json.dumps([(x["device"], x["role"], x["type"], '
             'x["virt_disk_size"]) for x in d]))'],
            input=text.encode(), stdout=subprocess.PIPE, check=True,
            cwd=os.path.sep).stdout
        vm, record = self.xapi.vm_of(server['id'])
        vdi = self.xapi.objects_of(server['id'])['VDI'][0]
        size = int(self.xapi.x.VDI.get_virtual_size(vdi))
        self.assertEqual([['xvda', 'root', 'vhd', size]], json.loads(out))
        self.assertEqual(self.xapi.x.VDI.get_uuid(vdi),
                         json.loads(text)[0]['vdi_uuid'])

    def test_a_stuck_reboot_becomes_a_hard_reboot(self):
        server = self.boot(self.image_with(pattern(MIB)))
        vm, _ = self.xapi.vm_of(server['id'])
        domid = self.xapi.x.VM.get_domid(vm)
        instance = self.instance(server)
        # a reboot nova-compute never finished (it was lost in a crash)
        instance.task_state = task_states.REBOOTING
        instance.save()
        self.driver.poll_rebooting_instances(60, [instance])
        self._wait_for_server_parameter(
            server, {'status': 'ACTIVE', 'OS-EXT-STS:task_state': None})
        self.assertEqual('Running', self.xapi.x.VM.get_power_state(vm))
        self.assertNotEqual(domid, self.xapi.x.VM.get_domid(vm))

    def test_the_node_identity_is_written_once_and_kept(self):
        # nova-compute refuses its second start without a compute_id file
        written = []
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.node.write_local_node_uuid', written.append))
        host_uuid = self.xapi.pool['hosts'][0]['uuid']
        self.driver._node_identity()
        self.assertEqual([host_uuid], written)
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.node.read_local_node_uuid', lambda: host_uuid))
        self.driver._node_identity()
        self.assertEqual([host_uuid], written)
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.node.read_local_node_uuid',
            lambda: '0b8e8d2c-2a4f-4f43-9d8b-2f4b1cbb7a11'))
        with self.assertRaises(errors.StartupError) as ctx:
            self.driver._node_identity()
        self.assertIn('managed XenServer host 0b8e8d2c-2a4f-4f43-9d8b-'
                      '2f4b1cbb7a11', str(ctx.exception))
        self.assertIn('now configured for host %s' % host_uuid,
                      str(ctx.exception))

    def test_refused_calls_say_why_in_a_sentence(self):
        # every call of nova's ComputeDriver this driver does not serve
        # says so, except those where NotImplementedError asks nova for
        # its default (rebuild, device names at boot)
        nova_defaults = {'rebuild', 'default_device_names_for_instance'}
        for name, method in vars(xen_driver.XenAPIDriver).items():
            if not getattr(method, 'unsupported', False):
                continue
            with self.subTest(call=name):
                try:
                    method(self.driver)
                except NotImplementedError as exc:
                    self.assertIn('is not supported:', str(exc))
                else:
                    self.fail('%s did not refuse' % name)
        base_only = [name for name, fn in vars(
            virt_driver.ComputeDriver).items() if callable(fn) and
            name not in vars(xen_driver.XenAPIDriver) and
            name not in nova_defaults and _raises_not_implemented(fn)]
        self.assertEqual([], base_only)


def _raises_not_implemented(fn):
    import inspect
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        return False
    return 'raise NotImplementedError' in source
