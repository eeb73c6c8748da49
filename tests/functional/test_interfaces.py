"""Interfaces attached to and detached from a running server."""

import json

from tests.functional import base
from tests.functional.test_boot import pattern

MIB = 1024 * 1024


class InterfaceTest(base.XenAPIFunctionalTestCase):

    def rules(self):
        x = self.xapi.x
        return json.loads(x.host.call_plugin(
            x.host.get_all()[0], 'nova_xen_isolation.py', 'list_rules',
            {'params': '{}'}))['vifs']

    def test_attach_and_detach_an_interface(self):
        server = self.boot(self.image_with(pattern(MIB)))
        vm, _ = self.xapi.vm_of(server['id'])
        x = self.xapi.x
        before = {p['id'] for p in self.neutron.list_ports(
            True, device_id=server['id'])['ports']}
        self.api.attach_interface(server['id'],
                                  {'interfaceAttachment': {
                                      'net_id': self.neutron.network_1['id']}})
        port = [p for p in self.neutron.list_ports(
            True, device_id=server['id'])['ports'] if p['id'] not in before][0]
        vifs = {x.VIF.get_MAC(v): x.VIF.get_record(v)
                for v in x.VM.get_VIFs(vm)}
        self.assertEqual(2, len(vifs))
        added = vifs[port['mac_address']]
        self.assertTrue(added['currently_attached'])
        self.assertEqual('1', added['device'])
        self.assertEqual(port['id'], added['other_config']['neutron-port-id'])
        domid = int(x.VM.get_domid(vm))
        self.assertEqual(sorted(['vif%d.1' % domid, 'tap%d.1' % domid]),
                         self.rules()[added['uuid']])

        self.api.detach_interface(server['id'], port['id'])
        self._wait_for_server_parameter(server, {'status': 'ACTIVE'})
        macs = [x.VIF.get_MAC(v) for v in x.VM.get_VIFs(vm)]
        self.assertNotIn(port['mac_address'], macs)
        self.assertEqual(1, len(macs))
        self.assertNotIn(added['uuid'], self.rules())
