"""nova_xen_pci.py through xapisim and host.call_plugin, as the driver calls it.

The real plugin file runs as a process under dom0's Python (3.6 when this
machine has it) and reads the simulated dom0's sysfs (xapisim.sysfs),
written from the world's devices (tests/devices_world.py).
"""

import json
import os

from tests import devices_world
from tests.dom0.test_host_plugin import PLUGIN_PYTHON
from tests.dom0.test_host_plugin import PLUGINS_DIR
from tests.xapisim.base import SimTestCase

PLUGIN = 'nova_xen_pci.py'


class PciPluginTest(SimTestCase):
    hosts = 2
    sim_options = {'plugins_dir': PLUGINS_DIR, 'plugin_python': PLUGIN_PYTHON,
                   'devices': devices_world.SPEC}

    def host(self, index=0):
        uuid = self.world['pools'][0]['hosts'][index]['uuid']
        return self.x.host.get_by_uuid(uuid)

    def functions(self, host=0):
        reply = json.loads(self.x.host.call_plugin(
            self.host(host), PLUGIN, 'pci_functions', {'params': '{}'}))
        return {f['address']: f for f in reply['functions']}

    def test_every_function_of_every_class_with_its_sriov_relations(self):
        found = self.functions()
        # the USB controller (class 0c) is there too: xapi has no PCI
        # object for it
        self.assertEqual(['0000:00:1f.2', '0000:04:00.0', '0000:04:10.0',
                          '0000:06:00.0', '0000:07:00.0', '0000:81:00.0',
                          '0000:82:00.0'], sorted(found))
        self.assertEqual({'address': '0000:04:10.0', 'class_id': '020000',
                          'vendor_id': '8086', 'product_id': '10ed',
                          'driver': 'pciback', 'physfn': '0000:04:00.0',
                          'virtfns': [], 'numa_node': None},
                         found['0000:04:10.0'])
        self.assertEqual(['0000:04:10.0'], found['0000:04:00.0']['virtfns'])
        self.assertIsNone(found['0000:04:00.0']['physfn'])
        self.assertEqual(('0c0300', 'pciback'),
                         (found['0000:07:00.0']['class_id'],
                          found['0000:07:00.0']['driver']))
        # dom0 drives these: not pciback
        self.assertEqual('ixgbe', found['0000:06:00.0']['driver'])
        self.assertEqual('ixgbe', found['0000:00:1f.2']['driver'])

    def test_each_host_has_its_own_functions(self):
        self.assertEqual(['0000:04:00.0', '0000:81:00.0'],
                         sorted(self.functions(host=1)))

    def test_pciback_follows_dom0_access_after_a_reboot(self):
        host = self.host(1)
        nic = [p for p in self.x.host.get_PCIs(host)
               if self.x.PCI.get_pci_id(p) == '0000:04:00.0'][0]
        self.x.PCI.enable_dom0_access(nic)
        # configured only: dom0 gets it back at the next boot
        self.assertEqual('pciback',
                         self.functions(host=1)['0000:04:00.0']['driver'])
        self.x.host.disable(host)
        self.x.host.reboot(host)
        self.addCleanup(self._hide_again, host, nic)
        # dom0's own driver takes it (the spec names none: unbound)
        self.assertIsNone(self.functions(host=1)['0000:04:00.0']['driver'])

    def _hide_again(self, host, nic):
        self.x.PCI.disable_dom0_access(nic)
        self.x.host.disable(host)
        self.x.host.reboot(host)

    def test_a_function_whose_files_vanish_is_left_out(self):
        root = os.path.join(self.sim.world.pools[0].hosts[0].dom0_root,
                            'sys', 'bus', 'pci', 'devices')
        # a hot-unplugged function: its folder is empty while being read
        os.makedirs(os.path.join(root, '0000:09:00.0'))
        self.addCleanup(os.rmdir, os.path.join(root, '0000:09:00.0'))
        self.assertNotIn('0000:09:00.0', self.functions())
        self.assertIn('0000:04:10.0', self.functions())

    def test_unknown_parameters_are_refused(self):
        self.assertFailure(
            ['NOVA_XEN_INVALID_ARGUMENT', 'root', 'is not a parameter'],
            self.x.host.call_plugin, self.host(), PLUGIN, 'pci_functions',
            {'params': json.dumps({'root': '/'})})
