"""iSCSI SRs (SM's RawISCSISR, type ``iscsi``) against a real tgtd.

Each class starts its own tgtd (tests/iscsi_target.py); without tgtd
the tests fail, saying what to install.
"""

import contextlib
import hashlib
import io
import socket
import unittest
import uuid as uuidlib
import xmlrpc.client

from xapisim import iscsi, rawiscsi

from tests.iscsi_target import TgtTarget
from tests.xapisim.base import MIB, SimTestCase

NULL = 'OpaqueRef:NULL'
LOGIN_TEXT = ('ISCSI login failed - check access settings for the '
              'initiator on the storage, if CHAP is used verify CHAP '
              'credentials')


def start_tgt(cls):
    tgt = TgtTarget()
    tgt.setUp()
    cls.addClassCleanup(tgt.cleanUp)
    return tgt


def closed_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def expected_uuid(scsi_id):
    h = hashlib.md5(scsi_id.encode()).hexdigest()
    return '-'.join((h[:8], h[8:12], h[12:16], h[16:20], h[20:]))


class InitiatorTest(unittest.TestCase):
    """xapisim's initiator against tgtd directly."""

    initiator = 'iqn.2024-01.org.xcp-ng:initiator-test'

    @classmethod
    def setUpClass(cls):
        cls.tgt = start_tgt(cls)
        cls.target = cls.tgt.add_target(luns=[64 * MIB, 8 * MIB], chap=True)
        cls.open_target = cls.tgt.add_target(luns=[4 * MIB])

    def session(self, target=None, chap='default'):
        target = target or self.target
        s = iscsi.Session(self.tgt.host, self.tgt.port, self.initiator,
                          target.iqn,
                          target.chap if chap == 'default' else chap)
        self.addCleanup(s.logout)
        return s

    def test_discovery_lists_every_target(self):
        found = dict(iscsi.discover(self.tgt.host, self.tgt.port,
                                    self.initiator))
        self.assertEqual([self.tgt.portal + ',1'], found[self.target.iqn])
        self.assertIn(self.open_target.iqn, found)

    def test_chap_login_luns_and_sizes(self):
        s = self.session()
        self.assertEqual([0, 1, 2], s.report_luns())
        self.assertNotEqual(iscsi.DISK, s.device_type(0))  # controller
        self.assertEqual(iscsi.DISK, s.device_type(1))
        self.assertEqual(64 * MIB, s.size(1))
        self.assertEqual((8 * MIB // 512, 512), s.capacity(2))
        self.assertNotEqual(s.scsi_id(1), s.scsi_id(2))
        self.assertTrue(s.scsi_id(1))

    def test_written_blocks_read_back_and_reach_the_file(self):
        s = self.session()
        data = bytes(range(256)) * 2 * 300      # 300 blocks, > one PDU
        s.write(2, 7, data)
        self.assertEqual(data, s.read(2, 7, 300))
        with open(self.target.luns[2], 'rb') as fh:
            fh.seek(7 * 512)
            self.assertEqual(data, fh.read(len(data)))

    def test_no_authentication_needed(self):
        s = self.session(self.open_target, chap=None)
        self.assertEqual(4 * MIB, s.size(1))

    def test_wrong_secret_is_refused(self):
        user, _ = self.target.chap
        with self.assertRaises(iscsi.AuthenticationFailed) as ctx:
            self.session(chap=(user, 'not-the-secret'))
        self.assertNotIn('not-the-secret', str(ctx.exception))
        self.assertIn('authentication of %s failed' % self.initiator,
                      self.tgt.log())

    def test_chap_required_but_not_offered(self):
        with self.assertRaises(iscsi.AuthenticationFailed):
            self.session(chap=None)

    def test_unknown_iqn(self):
        with self.assertRaises(iscsi.TargetNotFound):
            iscsi.Session(self.tgt.host, self.tgt.port, self.initiator,
                          'iqn.2024-01.org.example:nothing-here')

    def test_refused_portal(self):
        with self.assertRaises(iscsi.PortalUnreachable):
            iscsi.Session('127.0.0.1', closed_port(), self.initiator,
                          self.target.iqn)

    def test_grown_lun_shows_its_new_size(self):
        target = self.tgt.add_target(luns=[4 * MIB])
        s = self.session(target)
        self.tgt.grow_lun(target, 1, 12 * MIB)
        self.assertEqual(12 * MIB, s.size(1))


class IscsiSrTest(SimTestCase):
    """SR.introduce, PBD.create/plug with a real login, SR.scan,
    VDI.introduce, VBDs, PBD.unplug and SR.forget, through XenAPI."""

    hosts = 2

    @classmethod
    def setUpClass(cls):
        super(IscsiSrTest, cls).setUpClass()
        cls.tgt = start_tgt(cls)

    def setUp(self):
        super(IscsiSrTest, self).setUp()
        self.target = self.tgt.add_target(luns=[64 * MIB, 32 * MIB],
                                          chap=True)
        self.addCleanup(self.tgt.remove_target, self.target)
        self.master = self.x.pool.get_master(self.pool_ref())

    # -- helpers -----------------------------------------------------------

    def introduce(self, config=None, hosts=None):
        sr = self.x.SR.introduce(str(uuidlib.uuid4()), 'volume', '', 'iscsi',
                                 '', True, {})
        self.addCleanup(self._forget, sr)
        config = config or self.target.device_config()
        pbds = [self.x.PBD.create({'host': h, 'SR': sr,
                                   'device_config': config,
                                   'other_config': {}})
                for h in hosts or [self.master]]
        return sr, pbds

    def plugged(self, hosts=None):
        sr, pbds = self.introduce(hosts=hosts)
        for pbd in pbds:
            self.x.PBD.plug(pbd)
        return sr, pbds

    def _forget(self, sr):
        x = self.login().xenapi
        try:
            for vdi in x.SR.get_VDIs(sr):
                for vbd in x.VDI.get_VBDs(vdi):
                    vm = x.VBD.get_VM(vbd)
                    if x.VM.get_power_state(vm) != 'Halted':
                        x.VM.hard_shutdown(vm)
            for pbd in x.SR.get_PBDs(sr):
                x.PBD.unplug(pbd)
            x.SR.forget(sr)
        except Exception:
            pass

    def lun_vdis(self, sr):
        return {self.x.VDI.get_sm_config(v)['LUNid']: v
                for v in self.x.SR.get_VDIs(sr)}

    def assertBackendFailure(self, code, text, fn, *args):
        details = self.assertFailure('SR_BACKEND_FAILURE_%d' % code, fn,
                                     *args)
        self.assertEqual(4, len(details), details)
        self.assertEqual(['', text], details[1:3])
        return details

    def initiators(self):
        """Initiator names logged in to the test's target."""
        text = self.tgt.show()
        block = text[text.index(self.target.iqn):]
        block = block[:block.find('LUN information')]
        return [line.split()[1] for line in block.splitlines()
                if line.strip().startswith('Initiator:')]

    def host_iqn(self, host):
        return self.x.host.get_other_config(host)['iscsi_iqn']

    # -- tests -------------------------------------------------------------

    def test_host_has_an_iscsi_iqn_field(self):
        for host in self.x.host.get_all():
            iqn = self.x.host.get_iscsi_iqn(host)
            self.assertTrue(iqn.startswith('iqn.'))
            self.assertEqual(iqn, self.host_iqn(host))

    def test_plug_logs_every_host_in_with_chap(self):
        hosts = self.x.host.get_all()
        sr, pbds = self.introduce(hosts=hosts)
        self.assertEqual([], self.initiators())
        for pbd in pbds:
            self.x.PBD.plug(pbd)
            self.assertTrue(self.x.PBD.get_currently_attached(pbd))
        self.assertEqual(sorted(self.host_iqn(h) for h in hosts),
                         sorted(self.initiators()))
        self.x.PBD.plug(pbds[0])                 # plugged: nothing to do
        self.x.PBD.unplug(pbds[1])
        self.assertEqual([self.host_iqn(hosts[0])], self.initiators())

    def test_scan_makes_one_vdi_per_lun(self):
        sr, _ = self.plugged()
        self.assertEqual([], self.x.SR.get_VDIs(sr))
        self.x.SR.scan(sr)
        vdis = self.lun_vdis(sr)
        self.assertEqual({'1', '2'}, set(vdis))
        for lun, size in (('1', 64 * MIB), ('2', 32 * MIB)):
            record = self.x.VDI.get_record(vdis[lun])
            self.assertEqual(str(size), record['virtual_size'])
            self.assertEqual('vbd', record['sm_config']['backend-kind'])
            scsi_id = record['sm_config']['SCSIid']
            self.assertEqual(expected_uuid(scsi_id), record['uuid'])
            self.assertEqual(record['uuid'], record['location'])
            self.assertTrue(record['managed'])
            self.assertEqual('user', record['type'])
        self.assertEqual(str(96 * MIB), self.x.SR.get_physical_size(sr))
        self.x.SR.scan(sr)                       # stable: same VDIs
        self.assertEqual(vdis, self.lun_vdis(sr))

    def test_scan_follows_the_target(self):
        sr, _ = self.plugged()
        self.x.SR.scan(sr)
        before = self.lun_vdis(sr)
        self.tgt.grow_lun(self.target, 1, 80 * MIB)
        lun3 = self.tgt.add_lun(self.target, 16 * MIB)
        self.tgt.remove_lun(self.target, 2)
        self.x.SR.scan(sr)
        after = self.lun_vdis(sr)
        self.assertEqual({'1', str(lun3)}, set(after))
        self.assertEqual(before['1'], after['1'])
        self.assertEqual(str(80 * MIB), self.x.VDI.get_virtual_size(
            after['1']))
        self.assertFailure(['HANDLE_INVALID', 'VDI', before['2']],
                           self.x.VDI.get_record, before['2'])

    def test_wrong_chap_secret(self):
        config = dict(self.target.device_config(),
                      chappassword='wrong-secret-1234')
        _, (pbd,) = self.introduce(config)
        details = self.assertBackendFailure(68, LOGIN_TEXT,
                                            self.x.PBD.plug, pbd)
        self.assertNotIn('wrong-secret-1234', repr(details))
        self.assertFalse(self.x.PBD.get_currently_attached(pbd))
        self.assertIn('CHAP initiator auth', self.tgt.log())
        self.assertEqual([], self.initiators())

    def test_chap_password_from_a_secret_object(self):
        # sm's iSCSI SRs take the password by the uuid of a xapi secret
        config = dict(self.target.device_config())
        password = config.pop('chappassword')
        secret = self.x.secret.create({'value': password,
                                       'other_config': {}})
        self.addCleanup(self.x.secret.destroy, secret)
        config['chappassword_secret'] = self.x.secret.get_uuid(secret)
        _, (pbd,) = self.introduce(config)
        self.x.PBD.plug(pbd)
        self.assertEqual([self.host_iqn(self.master)], self.initiators())
        # a secret that does not exist
        config['chappassword_secret'] = str(uuidlib.uuid4())
        _, (other,) = self.introduce(config)
        self.assertFailure('UUID_INVALID', self.x.PBD.plug, other)

    def test_no_chap_for_a_target_that_wants_it(self):
        config = self.target.device_config()
        del config['chapuser'], config['chappassword']
        _, (pbd,) = self.introduce(config)
        self.assertBackendFailure(68, LOGIN_TEXT, self.x.PBD.plug, pbd)

    def test_unreachable_portal(self):
        config = dict(self.target.device_config(), port=str(closed_port()))
        _, (pbd,) = self.introduce(config)
        self.assertBackendFailure(
            141, 'Unable to connect to ISCSI service on target',
            self.x.PBD.plug, pbd)
        self.assertFalse(self.x.PBD.get_currently_attached(pbd))

    def test_unknown_iqn(self):
        config = dict(self.target.device_config(),
                      targetIQN='iqn.2024-01.org.example:no-such-target')
        _, (pbd,) = self.introduce(config)
        details = self.assertBackendFailure(
            83, 'ISCSI discovery failed [opterr=check target settings]',
            self.x.PBD.plug, pbd)
        # SM's stderr: what the portal offers, then the portal with '*'
        self.assertIn('<TargetIQN>%s</TargetIQN>' % self.target.iqn,
                      details[3])
        self.assertIn('<TargetIQN>*</TargetIQN>', details[3])
        self.assertIn('<Port>%d</Port>' % self.tgt.port, details[3])

    def test_device_config_checked_as_sm_checks_it(self):
        good = self.target.device_config()
        cases = [
            ({k: v for k, v in good.items() if k != 'target'}, 95,
             'The request is missing the target parameter'),
            (dict(good, port='iscsi'), 142, 'Incorrect value for iSCSI '
             'port, must be a number between 1 and 65535'),
            ({k: v for k, v in good.items() if k != 'targetIQN'}, 96,
             'The request is missing or has an incorrect target IQN '
             'parameter'),
        ]
        for config, code, text in cases:
            _, (pbd,) = self.introduce(config)
            details = self.assertBackendFailure(code, text,
                                                self.x.PBD.plug, pbd)
            if code == 96:
                self.assertIn(self.target.iqn, details[3])

    def test_vdi_create_clone_and_resize_refused(self):
        sr, (pbd,) = self.introduce()
        self.assertFailure(['SR_HAS_NO_PBDS', sr], self.new_vdi, MIB, sr)
        self.x.PBD.plug(pbd)
        self.assertBackendFailure(44, 'There is insufficient space',
                                  self.new_vdi, MIB, sr)
        self.x.SR.scan(sr)
        vdi = self.lun_vdis(sr)['1']
        for call in (self.x.VDI.clone, self.x.VDI.snapshot):
            self.assertFailure(['SR_OPERATION_NOT_SUPPORTED', sr], call,
                               vdi, {})
        self.assertFailure(['SR_OPERATION_NOT_SUPPORTED', sr],
                           self.x.VDI.resize, vdi, str(128 * MIB))
        self.assertNotIn('vdi_clone', self.x.SR.get_allowed_operations(sr))

    def vdi_introduce(self, sr, sm_config, location='', uuid=None,
                      other_config=None, name_label='volume-1'):
        return self.x.VDI.introduce(
            uuid or str(uuidlib.uuid4()), name_label, 'a Cinder volume', sr,
            'user', False, False, other_config or {}, location, {},
            sm_config, True, '0', '0', NULL, False,
            xmlrpc.client.DateTime('19700101T00:00:00Z'), NULL)

    def test_vdi_introduce_by_lunid(self):
        sr, (pbd,) = self.introduce()
        self.assertFailure(['SR_HAS_NO_PBDS', sr], self.vdi_introduce, sr,
                           {'LUNid': '2'})
        self.x.PBD.plug(pbd)
        vdi = self.vdi_introduce(sr, {'LUNid': '2'},
                                 other_config={'osvol': 'True'})
        record = self.x.VDI.get_record(vdi)
        self.assertEqual(str(32 * MIB), record['virtual_size'])
        self.assertEqual('2', record['sm_config']['LUNid'])
        self.assertEqual(expected_uuid(record['sm_config']['SCSIid']),
                         record['uuid'])          # SM's, not the caller's
        self.assertEqual({'osvol': 'True'}, record['other_config'])
        self.assertEqual('volume-1', record['name_label'])
        self.assertTrue(record['managed'])
        # again (or after a scan): the same VDI
        self.assertEqual(vdi, self.vdi_introduce(sr, {'LUNid': '2'}))
        self.x.SR.scan(sr)
        self.assertEqual(vdi, self.lun_vdis(sr)['2'])
        self.assertEqual('volume-1', self.x.VDI.get_name_label(vdi))
        for bad in ({'LUNid': '9'}, {}, {'LUNid': 'x'}):
            self.assertBackendFailure(46, 'The VDI is not available',
                                      self.vdi_introduce, sr, bad)
        self.assertFailure(['LOCATION_NOT_UNIQUE', sr, record['location']],
                           self.vdi_introduce, sr, {'LUNid': '1'},
                           record['location'])

    def test_vdi_introduce_elsewhere_not_supported(self):
        sr = self.default_sr()
        self.assertFailure(['SR_OPERATION_NOT_SUPPORTED', sr],
                           self.vdi_introduce, sr, {'LUNid': '1'})

    def test_attach_to_running_vm_then_forget(self):
        sr, (pbd,) = self.plugged()
        self.x.SR.scan(sr)
        vdi = self.lun_vdis(sr)['1']
        vm = self.new_vm()
        self.new_vbd(vm, self.new_vdi())
        self.x.VM.start_on(vm, self.master, False, False)
        vbd = self.new_vbd(vm, vdi, userdevice='1', bootable=False)
        self.x.VBD.plug(vbd)
        self.assertEqual('xvdb', self.x.VBD.get_device(vbd))
        self.assertFailure(['SR_HAS_PBD', sr], self.x.SR.forget, sr)
        self.assertFailure(['VDI_IN_USE', vdi], self.x.PBD.unplug, pbd)
        self.x.VBD.unplug(vbd)
        self.x.VBD.plug(vbd)
        self.x.VBD.unplug(vbd)
        self.x.VBD.destroy(vbd)
        self.x.PBD.unplug(pbd)
        self.assertEqual([], self.initiators())
        self.x.SR.forget(sr)
        self.assertFailure(['HANDLE_INVALID', 'VDI', vdi],
                           self.x.VDI.get_record, vdi)
        self.assertFailure(['HANDLE_INVALID', 'PBD', pbd],
                           self.x.PBD.get_record, pbd)

    def test_vbd_plug_of_a_lun_gone_from_the_target(self):
        sr, _ = self.plugged()
        self.x.SR.scan(sr)
        vdi = self.lun_vdis(sr)['2']
        vm = self.new_vm()
        self.x.VM.start_on(vm, self.master, False, False)
        vbd = self.new_vbd(vm, vdi, userdevice='1', bootable=False)
        self.tgt.remove_lun(self.target, 2)
        self.assertBackendFailure(46, 'The VDI is not available',
                                  self.x.VBD.plug, vbd)
        self.assertFalse(self.x.VBD.get_currently_attached(vbd))

    def test_session_dropped_by_the_target_is_renewed(self):
        sr, _ = self.plugged()
        self.tgt.remove_target(self.target)
        self.target = self.tgt.add_target(
            iqn=self.target.iqn, luns=[8 * MIB], chap=self.target.chap)
        self.x.SR.scan(sr)
        self.assertEqual(str(8 * MIB), self.x.VDI.get_virtual_size(
            self.lun_vdis(sr)['1']))


class SecretsNeverLoggedTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tgt = start_tgt(cls)
        cls.target = cls.tgt.add_target(chap=True)

    def test_verbose_log_and_errors_hold_no_chap_secret(self):
        initiators = rawiscsi.Initiators(verbose=True)
        self.addCleanup(initiators.close)
        good = self.target.device_config()
        bad = dict(good, chappassword='a-wrong-secret')
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            initiators.attach('OpaqueRef:a', good, 'iqn.2024-01.test:a')
            with self.assertRaises(Exception) as ctx:
                initiators.attach('OpaqueRef:b', bad, 'iqn.2024-01.test:b')
            initiators.detach('OpaqueRef:a')
        self.assertIn('CHAP user %s' % good['chapuser'], err.getvalue())
        for secret in (good['chappassword'], 'a-wrong-secret'):
            self.assertNotIn(secret, err.getvalue())
            self.assertNotIn(secret, str(ctx.exception))
