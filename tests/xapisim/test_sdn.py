"""SDN_controller and the pool's CA certificates, as xapi keeps them.

What ``nova-xen-manage ovn-setup`` relies on in remote mode: one SDN
controller per pool, ``pssl`` pointing every host's dom0 Open vSwitch
at it (manager and SSL) and opening its port; ``pool.certificate_*``
putting a CA certificate into every host's ``/etc/stunnel/certs``.
Here without a dom0 switch (the firewall and the certificates are
files of the simulated dom0); tests/unit/test_ovn_setup.py checks the
switches of a world with real dom0 networking.
"""

import os

import XenAPI

from tests.xapisim.base import SimTestCase

PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'


def dom0_root(sim, host_ref, x):
    return x.host.get_other_config(host_ref)['xapisim_dom0_root']


class SdnControllerTest(SimTestCase):
    hosts = 2

    def setUp(self):
        super(SdnControllerTest, self).setUp()
        self.addCleanup(self.forget_all)

    def forget_all(self):
        for ref in self.x.SDN_controller.get_all():
            self.x.SDN_controller.forget(ref)
        for name in self.x.pool.certificate_list():
            self.x.pool.certificate_uninstall(name)

    def assertFailure(self, expected, call, *args):
        with self.assertRaises(XenAPI.Failure) as ctx:
            call(*args)
        self.assertEqual(expected, ctx.exception.details)

    def firewall(self, host_ref):
        path = os.path.join(dom0_root(self.sim, host_ref, self.x), 'var',
                            'lib', 'xapisim', 'iptables', 'rules')
        try:
            with open(path) as fh:
                return fh.read()
        except FileNotFoundError:
            return ''

    def test_one_passive_controller_per_pool(self):
        ref = self.x.SDN_controller.introduce('pssl', '', '0')
        record = self.x.SDN_controller.get_record(ref)
        # pssl takes no port (xapi_sdn_controller.ml); dom0 listens on 6640
        self.assertEqual(('pssl', '', '0'), (
            record['protocol'], record['address'], record['port']))
        for host in self.x.host.get_all():
            self.assertIn('-A xapi-INPUT -p tcp -m conntrack --ctstate NEW '
                          '-m tcp --dport 6640 -j ACCEPT',
                          self.firewall(host))
        self.assertFailure(['OPERATION_NOT_ALLOWED', 'SDN controller has '
                            'been configured. Please forget it first.'],
                           self.x.SDN_controller.introduce, 'pssl', '',
                           '6640')
        self.x.SDN_controller.forget(ref)
        self.assertEqual([], self.x.SDN_controller.get_all())

    def test_bad_addresses(self):
        self.assertFailure(['INVALID_VALUE', 'address', '192.0.2.9'],
                           self.x.SDN_controller.introduce, 'pssl',
                           '192.0.2.9', '0')
        self.assertFailure(['INVALID_VALUE', 'port', '6640'],
                           self.x.SDN_controller.introduce, 'pssl', '',
                           '6640')
        self.assertFailure(['INVALID_VALUE', 'address', ''],
                           self.x.SDN_controller.introduce, 'ssl', '', '0')
        self.assertEqual([], self.x.SDN_controller.get_all())

    def test_ca_certificates_on_every_host(self):
        self.assertEqual([], self.x.pool.certificate_list())
        self.x.pool.certificate_install('sdn-controller-ca.pem', PEM)
        self.assertEqual(['sdn-controller-ca.pem'],
                         self.x.pool.certificate_list())
        for host in self.x.host.get_all():
            with open(os.path.join(dom0_root(self.sim, host, self.x), 'etc',
                                   'stunnel', 'certs',
                                   'sdn-controller-ca.pem')) as fh:
                self.assertEqual(PEM, fh.read())
        self.assertFailure(['CERTIFICATE_ALREADY_EXISTS',
                            'sdn-controller-ca.pem'],
                           self.x.pool.certificate_install,
                           'sdn-controller-ca.pem', PEM)
        self.assertFailure(['CERTIFICATE_CORRUPT', 'other.pem'],
                           self.x.pool.certificate_install, 'other.pem',
                           'not a certificate')
        self.assertFailure(['CERTIFICATE_NAME_INVALID', '../x.pem'],
                           self.x.pool.certificate_install, '../x.pem', PEM)
        self.x.pool.certificate_uninstall('sdn-controller-ca.pem')
        self.assertEqual([], self.x.pool.certificate_list())
        self.assertFailure(['CERTIFICATE_DOES_NOT_EXIST',
                            'sdn-controller-ca.pem'],
                           self.x.pool.certificate_uninstall,
                           'sdn-controller-ca.pem')
