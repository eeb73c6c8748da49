"""The pool's firmware facts read as xapi gives them, old xapi included."""

import testtools

import xapisim
from xapisim.client import Control

from nova_xen import firmware
from nova_xen import session as session_mod

OLD_XAPI = ['MESSAGE_METHOD_UNKNOWN', 'pool.get_guest_secureboot_readiness']


def request(**kwargs):
    values = dict(uefi=True, stateless=False, secure_boot=None, vtpm=None,
                  secret_security='user', pv=False)
    values.update(kwargs)
    return firmware.Request(**values)


class PoolFirmwareTest(testtools.TestCase):
    @classmethod
    def setUpClass(cls):
        super(PoolFirmwareTest, cls).setUpClass()
        cls.sim = xapisim.Simulator()
        world = cls.sim.describe()
        cls.url = world['pools'][0]['master']
        cls.control = Control(cls.url, world['username'], world['password'])

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()
        super(PoolFirmwareTest, cls).tearDownClass()

    def setUp(self):
        super(PoolFirmwareTest, self).setUp()
        self.session = session_mod.Session(self.url, 'root',
                                           'xapisim').connect()
        self.addCleanup(self.session.close)
        self.addCleanup(self.control.clear_faults)
        self.addCleanup(self.control.secureboot_certs, ())
        self.addCleanup(self.control.set_restrictions, restrict_vtpm='false')
        self.fw = firmware.PoolFirmware(self.session)

    def test_traits_follow_the_pool(self):
        traits, ready = self.fw.traits()
        self.assertFalse(ready)
        self.assertTrue(traits['COMPUTE_SECURITY_TPM_CRB'])
        self.assertFalse(traits['COMPUTE_SECURITY_TPM_TIS'])
        self.control.secureboot_certs(('PK', 'KEK', 'db'))
        self.control.set_restrictions(restrict_vtpm='true')
        # a spawn reads the facts anew; the traits then follow
        self.assertEqual('ready_no_dbx',
                         self.fw.facts(fresh=True)['readiness'])
        traits, ready = self.fw.traits()
        self.assertTrue(ready)
        self.assertFalse(traits['COMPUTE_SECURITY_TPM_2_0'])

    def test_an_older_xapi_gets_a_sentence_not_a_crash(self):
        self.control.secureboot_certs()
        self.control.fail('pool.get_guest_secureboot_readiness', OLD_XAPI,
                          times=10)
        self.assertFalse(self.fw.traits()[1])
        exc = self.assertRaises(firmware.SecureBootNotReady, self.fw.check,
                                request(secure_boot='required'))
        self.assertIn('older than 24.17.0', str(exc))
        self.assertIn('secureboot-certs install', str(exc))
        # optional Secure Boot follows the pool: off here
        self.assertFalse(self.fw.check(request(secure_boot='optional')))

    def test_a_vtpm_needs_the_licence(self):
        self.control.set_restrictions(restrict_vtpm='true')
        exc = self.assertRaises(
            firmware.FirmwareUnsupported, self.fw.check,
            request(vtpm=('2.0', 'tpm-crb'), secret_security='host'))
        self.assertIn('restrict_vtpm', str(exc))

    def test_every_vtpm_xapi_cannot_give_is_refused_with_its_reason(self):
        for kwargs, words in (
                (dict(vtpm=('1.2', 'tpm-tis')), 'TPM 2.0 only'),
                (dict(vtpm=('2.0', 'tpm-tis')), 'CRB interface only'),
                (dict(vtpm=('2.0', 'tpm-crb'), uefi=False,
                      secret_security='host'), 'BIOS guest'),
                (dict(vtpm=('2.0', 'tpm-crb')), 'hw:tpm_secret_security=host'),
                (dict(secure_boot='required', uefi=False), 'needs UEFI'),
                (dict(pv=True), 'needs an HVM guest')):
            exc = self.assertRaises(firmware.FirmwareUnsupported,
                                    self.fw.check, request(**kwargs))
            self.assertIn(words, str(exc))
