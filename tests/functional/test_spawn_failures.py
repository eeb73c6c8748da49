"""A spawn that fails at any step ends in ERROR with a fault naming the
step and xapi's reason, and leaves nothing in the pool."""

from unittest import mock

from tests.functional import base
from tests.functional import fixtures
from tests.functional.test_boot import pattern

MIB = 1024 * 1024
NOTHING = {'VM': [], 'VDI': [], 'VBD': [], 'VIF': []}


class _FailingSpawn(base.XenAPIFunctionalTestCase):

    def setUp(self):
        super(_FailingSpawn, self).setUp()
        # one host, no rescheduling: the instance fault itself says why
        self.flags(max_attempts=1, group='scheduler')
        self.image = self.image_with(pattern(MIB, seed=b'fails'))

    def assertFailsCleanly(self, step, *reasons):
        vdis_before = self.xapi.vdis_besides_the_cache()
        server = self.boot(self.image, expected_state='ERROR')
        fault = self.api.get_server(server['id'])['fault']['message']
        self.assertIn('Spawn failed at step "%s"' % step, fault)
        for reason in reasons:
            self.assertIn(reason, fault)
        self.assertEqual(NOTHING, self.xapi.objects_of(server['id']))
        self.assertEqual(vdis_before, self.xapi.vdis_besides_the_cache())
        # the image, imported before the failure, stays cached (one VDI)
        self.assertEqual({self.image: [mock.ANY]}, self.xapi.image_cache())
        self.assertEqual({}, self.xapi.isolation_rules())
        return server


class XapiRefusesTest(_FailingSpawn):

    def test_vm_create(self):
        self.xapi.control.fail('VM.create', ['HOST_NOT_ENOUGH_FREE_MEMORY',
                                             '536870912', '1024'])
        self.assertFailsCleanly('create the VM', 'HOST_NOT_ENOUGH_FREE_MEMORY')

    def test_vbd_create(self):
        self.xapi.control.fail('VBD.create', ['INVALID_DEVICE', '0'])
        self.assertFailsCleanly('attach the disks', 'INVALID_DEVICE [0]')

    def test_vif_create(self):
        self.xapi.control.fail('VIF.create', ['MAC_INVALID', 'fa:16:3e'])
        self.assertFailsCleanly('create the network interfaces',
                                'MAC_INVALID [fa:16:3e]')

    def test_xapi_also_refuses_part_of_the_cleanup(self):
        # xapi refuses to destroy the VM in the spawn's own clean-up: the
        # disks are still removed, the refusal is logged, the fault still
        # names the step that failed, and nova's clean-up of the failed
        # build (driver.destroy) takes the VM
        self.xapi.control.fail('VM.start_on', ['NO_HOSTS_AVAILABLE'])
        self.xapi.control.fail('VM.destroy', ['INTERNAL_ERROR', 'flaky'])
        self.assertFailsCleanly('start the VM', 'NO_HOSTS_AVAILABLE')
        self.assertIn('could not destroy the VM: XenAPI VM.destroy failed: '
                      'INTERNAL_ERROR [flaky]', self.stdlog.logger.output)
        self.assertEqual(2, self.xapi.control.calls().get('VM.destroy'))


class IsolationFailsTest(_FailingSpawn):
    """dom0's isolation plugin fails after the VM started."""

    def _setup_services(self):
        self.plugins = self.useFixture(fixtures.PluginsCopy())
        self.xapisim_options = dict(self.xapisim_options,
                                    plugins_dir=self.plugins.path)
        super(IsolationFailsTest, self)._setup_services()

    def _break(self, fn):
        self.plugins.edit(
            'nova_xen_isolation.py',
            'def %s(session, params):\n' % fn,
            'def %s(session, params):\n'
            "    lib.fail('NOVA_XEN_NFT_FAILED', '1', 'broken for a test')\n"
            % fn)

    def test_apply_fails(self):
        self._break('apply_rules')
        self.assertFailsCleanly('apply network isolation',
                                'NOVA_XEN_NFT_FAILED')

    def test_apply_and_remove_fail(self):
        # removing the rules in the clean-up fails as well: the VM, its
        # disks and VIFs go all the same
        self._break('apply_rules')
        self._break('remove_rules')
        self.assertFailsCleanly('apply network isolation',
                                'NOVA_XEN_NFT_FAILED')
