"""A server created through Nova's API becomes a VM in the pool, and goes."""

import os

from xapisim import vhd

from tests.functional import base

MIB = 1024 * 1024


def pattern(size, seed=b'nova-xen'):
    """Bytes that would not be there by accident."""
    block = (seed * (4096 // len(seed) + 1))[:4096]
    data = bytearray()
    i = 0
    while len(data) < size:
        data += block[i % 7:] + block[:i % 7]
        i += 1
    return bytes(data[:size])


class BootTest(base.XenAPIFunctionalTestCase):

    def test_boot_runs_a_vm_with_the_flavor_and_image_then_delete_cleans(self):
        data = pattern(3 * MIB + 12345) + os.urandom(4096)
        image = self.image_with(data)
        server = self.boot(image)
        flavor = self.flavor('m1.tiny')
        x = self.xapi.x

        vm, record = self.xapi.vm_of(server['id'])
        self.assertEqual('Running', record['power_state'])
        host = x.host.get_record(record['resident_on'])
        self.assertEqual(server['OS-EXT-SRV-ATTR:hypervisor_hostname'],
                         host['hostname'])
        self.assertEqual(str(flavor['ram'] * MIB),
                         record['memory_static_max'])
        self.assertEqual(str(flavor['vcpus']), record['VCPUs_max'])

        # the root disk holds the image's bytes, and is as big as the flavor
        root = [x.VBD.get_VDI(vbd) for vbd in record['VBDs']
                if x.VBD.get_userdevice(vbd) == '0'][0]
        self.assertEqual(str(flavor['disk'] * 1024 * MIB),
                         x.VDI.get_virtual_size(root))
        self.assertEqual(data, self.xapi.vdi_bytes(root, len(data)))

        # one VIF, with the Neutron port's MAC, attached
        port = self.neutron.list_ports(
            True, device_id=server['id'])['ports'][0]
        vifs = [x.VIF.get_record(v) for v in record['VIFs']]
        self.assertEqual([port['mac_address']], [v['MAC'] for v in vifs])
        self.assertTrue(vifs[0]['currently_attached'])
        self.assertEqual(port['id'], vifs[0]['other_config']['nicira-iface-id'])

        self._delete_server(server)
        left = self.xapi.objects_of(server['id'])
        self.assertEqual({'VM': [], 'VDI': [], 'VBD': [], 'VIF': []}, left)

    def test_placement_sees_the_host_and_the_server(self):
        image = self.image_with(pattern(MIB))
        server = self.boot(image)
        rp_uuid = self._get_provider_uuid_by_host(
            self.xapi.pool['hosts'][0]['name_label'])
        inventory = self._get_provider_inventory(rp_uuid)
        self.assertEqual(8, inventory['VCPU']['total'])
        self.assertEqual(16384 + 2048, inventory['MEMORY_MB']['total'])
        self.assertEqual(100, inventory['DISK_GB']['total'])
        # dom0 (2 GiB) is not available to instances
        self.assertGreaterEqual(inventory['MEMORY_MB']['reserved'], 2048)
        flavor = self.flavor('m1.tiny')
        self.assertEqual({'VCPU': flavor['vcpus'],
                          'MEMORY_MB': flavor['ram'],
                          'DISK_GB': flavor['disk']},
                         self._get_allocations_by_server_uuid(
                             server['id'])[rp_uuid]['resources'])
        traits = self._get_provider_traits(rp_uuid)
        self.assertIn('COMPUTE_IMAGE_TYPE_VHD', traits)
        self.assertIn('HW_CPU_X86_AVX2', traits)

    def test_boot_from_a_vhd_image(self):
        data = pattern(2 * MIB + 999, seed=b'vhd-image')
        size = 4 * MIB
        blocks = [0, 1]
        padded = data + b'\0' * (size - len(data))
        image_bytes = b''.join(vhd.write_vhd(
            size, blocks, lambda i: padded[i * vhd.BLOCK_SIZE:
                                           (i + 1) * vhd.BLOCK_SIZE]))
        image = self.image_with(image_bytes, disk_format='vhd')
        server = self.boot(image)
        vm, record = self.xapi.vm_of(server['id'])
        root = self.xapi.x.VBD.get_VDI(record['VBDs'][0])
        self.assertEqual(data, self.xapi.vdi_bytes(root, len(data)))


class BootOverTLSTest(base.XenAPIFunctionalTestCase):
    """The pool serves HTTPS; nova-compute verifies it with ca_file."""
    xapisim_options = dict(base.XenAPIFunctionalTestCase.xapisim_options,
                           tls=True)

    def test_boot_and_delete_over_https(self):
        self.assertTrue(self.xapi.url.startswith('https://'))
        data = pattern(MIB + 17, seed=b'over-tls')
        server = self.boot(self.image_with(data))
        vm, record = self.xapi.vm_of(server['id'])
        self.assertEqual('Running', record['power_state'])
        root = self.xapi.x.VBD.get_VDI(record['VBDs'][0])
        self.assertEqual(data, self.xapi.vdi_bytes(root, len(data)))
        self._delete_server(server)
        self.assertIsNone(self.xapi.vm_of(server['id']))


class SpawnFailureTest(base.XenAPIFunctionalTestCase):

    def test_failed_start_leaves_nothing_and_says_why(self):
        image = self.image_with(pattern(MIB))
        self.xapi.control.fail('VM.start_on', ['HOST_NOT_ENOUGH_FREE_MEMORY',
                                               '536870912', '1024'])
        server = self.boot(image, expected_state='ERROR')
        # nova reschedules and, with no other host, reports "exceeded
        # retries"; the compute log says which step failed and why
        log = self.stdlog.logger.output
        self.assertIn('Spawn failed at step "start the VM"', log)
        self.assertIn('HOST_NOT_ENOUGH_FREE_MEMORY [536870912, 1024]', log)
        self.assertIn('not enough free memory', log)
        left = self.xapi.objects_of(server['id'])
        self.assertEqual({'VM': [], 'VDI': [], 'VBD': [], 'VIF': []}, left)

    def test_fault_names_the_step_without_retries(self):
        # one host, no rescheduling: the instance fault itself says why
        self.flags(max_attempts=1, group='scheduler')
        image = self.image_with(pattern(MIB))
        self.xapi.control.fail('VDI.create', ['SR_FULL', '1073741824', '0'])
        server = self.boot(image, expected_state='ERROR')
        fault = self.api.get_server(server['id'])['fault']
        # the first disk made is the image's, in the image cache
        self.assertIn('Spawn failed at step "create the image cache disk"',
                      fault['message'])
        self.assertIn('SR_FULL', fault['message'])
        left = self.xapi.objects_of(server['id'])
        self.assertEqual({'VM': [], 'VDI': [], 'VBD': [], 'VIF': []}, left)

    def test_bad_image_is_refused_before_touching_storage(self):
        vdis_before = len(self.xapi.x.VDI.get_all())
        image = self.image_with(b'this is not a VHD' * 100, disk_format='vhd')
        server = self.boot(image, expected_state='ERROR')
        fault = self.api.get_server(server['id'])['fault']
        self.assertIn('VHD', fault['message'])
        self.assertEqual(vdis_before, len(self.xapi.x.VDI.get_all()))
