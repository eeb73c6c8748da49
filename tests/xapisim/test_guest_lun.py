"""A simulated guest whose root disk is a LUN of a real iSCSI target
(xapisim.lunfile): what Tempest's test_volume_boot_pattern and
test_shelve_volume_backed_instance do on a server booted from a volume.

Each server writes through its guest's loop mount into a FUSE file of the
LUN, and so into tgtd's backing file (tests/iscsi_target.py).  These tests
need root, what test_guest_boot needs, tgt, /dev/fuse, libfuse3 (Debian
libfuse3-3) and the Python package mfusepy: without them they fail,
saying why; they never skip.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import types
import unittest
import uuid as uuidlib
from unittest import mock

from xapisim import lunfile

from tests import polling
from tests.iscsi_target import TgtTarget
from tests.xapisim.base import MIB
from tests.xapisim.dom0net_base import wait_for
from tests.xapisim.test_guest_boot import TargetGuestCase

STAMP = 'sudo sh -c "date > /tmp/timestamp; sync"'
READ_STAMP = 'sudo cat /tmp/timestamp'


def lun_mounts(world):
    """The LUN files of ``world`` mounted on this machine (/proc/mounts;
    other test processes have theirs)."""
    with open('/proc/mounts') as fh:
        return [line.split()[1] for line in fh
                if line.split()[2] == 'fuse.xapisim-lun' and
                line.split()[1].startswith(world.lunfiles.root + '/')]


# a process that serves a LUN's file, then waits to be killed
OWNER = """
import json, sys
from xapisim import lunfile
files = lunfile.LunFiles(sys.argv[1])
paths, notes = files.use('vm', {'lun': json.loads(sys.stdin.readline())})
print(json.dumps([paths, notes]), flush=True)
sys.stdin.read()
"""


class LunFileTest(unittest.TestCase):
    """xapisim.lunfile against tgtd, without a world."""

    @classmethod
    def setUpClass(cls):
        cls.tgt = TgtTarget()
        cls.tgt.setUp()
        cls.addClassCleanup(cls.tgt.cleanUp)
        cls.target = cls.tgt.add_target(luns=[4 * MIB], chap=True)

    def setUp(self):
        self.state = tempfile.mkdtemp(prefix='lunfile-test-')
        self.addCleanup(shutil.rmtree, self.state, True)
        self.world = types.SimpleNamespace(
            lunfiles=lunfile.LunFiles(self.state))
        self.addCleanup(self.world.lunfiles.close)

    def source(self):
        return {'uuid': 'lun', 'portal': [self.tgt.host, self.tgt.port],
                'initiator': 'iqn.2024-01.org.xcp-ng:lunfile-test',
                'target': self.target.iqn, 'chap': list(self.target.chap),
                'lun': 1}

    def test_unaligned_writes_reach_the_target_and_read_back(self):
        paths, notes = self.world.lunfiles.use('vm', {'lun': self.source()})
        self.assertEqual({}, notes)
        self.assertEqual(4 * MIB, os.path.getsize(paths['lun']))
        data = os.urandom(3000)
        with open(paths['lun'], 'r+b') as fh:
            fh.seek(1000)
            fh.write(data)
        with open(self.target.luns[1], 'rb') as fh:
            fh.seek(1000)
            self.assertEqual(data, fh.read(3000))
            fh.seek(0)
            self.assertEqual(b'\0' * 1000, fh.read(1000))
        with open(paths['lun'], 'rb') as fh:
            fh.seek(999)
            self.assertEqual(b'\0' + data[:100], fh.read(101))
        with self.assertRaises(OSError):
            os.truncate(paths['lun'], MIB)
        self.world.lunfiles.release('vm')
        self.assertEqual([], lun_mounts(self.world))

    def test_the_mount_goes_when_xapisim_dies(self):
        owner = subprocess.Popen(
            [sys.executable, '-c', OWNER, self.state],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                os.path.abspath(__file__)))))
        owner.stdin.write(json.dumps(self.source()).encode() + b'\n')
        owner.stdin.flush()
        paths, notes = json.loads(owner.stdout.readline())
        self.assertEqual({}, notes)
        self.assertEqual([os.path.dirname(paths['lun'])],
                         lun_mounts(self.world))
        owner.kill()
        owner.wait()
        polling.until(lambda: not lun_mounts(self.world),
                      'the LUN file unmounted', 60)


class LunRootGuestTest(TargetGuestCase):
    pools = 1
    hosts = 2

    def lun_sr(self, sizes):
        """A target with LUNs of ``sizes`` (CHAP), an ``iscsi`` SR of it
        plugged on both hosts and scanned: target, SR, {LUN id: VDI}."""
        target = self.tgt.add_target(luns=sizes, chap=True)
        self.addCleanup(self.tgt.remove_target, target)
        sr = self.x.SR.introduce(str(uuidlib.uuid4()), 'volumes', '',
                                 'iscsi', '', True, {})
        self.addCleanup(self._forget, sr)
        for host in self.x.host.get_all():
            self.x.PBD.plug(self.x.PBD.create({
                'host': host, 'SR': sr, 'other_config': {},
                'device_config': target.device_config()}))
        self.x.SR.scan(sr)
        return target, sr, self.lun_vdis(sr)

    def lun_vdis(self, sr):
        return {self.x.VDI.get_sm_config(v)['LUNid']: v
                for v in self.x.SR.get_VDIs(sr)}

    def _forget(self, sr):
        x = self.login().xenapi
        for pbd in x.SR.get_PBDs(sr):
            x.PBD.unplug(pbd)
        x.SR.forget(sr)

    def read_stamp(self, vm, pool_index, host_index):
        self.start_on(vm, pool_index, host_index)
        client = self.ssh(self.address(vm))
        stamp = self.execute(client, READ_STAMP)
        client.close()
        return stamp

    def test_a_timestamp_on_a_lun_root_is_read_by_the_next_servers(self):
        target, sr, vdis = self.lun_sr([64 * MIB])
        vdi_uuid = self.x.VDI.get_uuid(vdis['1'])
        vm, _ = self.server('tempest-volume-1', root=vdis['1'])
        self.start_on(vm, 0, 0)
        client = self.ssh(self.address(vm))
        self.assertIn('root file system: /tmp and /mnt on /dev/xvda',
                      self.console_log(vm))
        self.execute(client, STAMP)
        stamp = self.execute(client, READ_STAMP)
        # the guest's /dev/xvda is the LUN's bytes: the LUN's size
        self.assertEqual('%d\n' % (64 * MIB), self.execute(
            client, 'wc -c < /dev/xvda'))
        client.close()
        # one file of the LUN, served without its CHAP secret on a
        # command line or in its log
        files = self.sim.world.lunfiles
        self.assertEqual([os.path.join(files.root, vdi_uuid)],
                         lun_mounts(self.sim.world))
        mount = files.mounts[vdi_uuid]
        with open('/proc/%d/cmdline' % mount.process.pid, 'rb') as fh:
            self.assertNotIn(target.chap[1].encode(), fh.read())
        with open(mount.log, 'rb') as fh:
            self.assertNotIn(target.chap[1].encode(), fh.read())
        self.x.VM.hard_shutdown(vm)
        self.x.VM.destroy(vm)
        # the mount went with the server, and its directory
        self.assertEqual([], lun_mounts(self.sim.world))
        self.assertEqual([], os.listdir(files.root))
        # the bytes are in the target's backing file: a copy of it (what
        # Cinder's tgt backend makes of a snapshot) holds the file system
        copy = tempfile.mkdtemp(dir=self.tmp)
        image = os.path.join(copy, 'snapshot.img')
        shutil.copyfile(target.luns[1], image)
        offset = 64 * MIB - 17 * MIB
        shown = subprocess.run(
            ['debugfs', '-R', 'cat /tmp/timestamp',
             '%s?offset=%d' % (image, offset)], capture_output=True,
            text=True, check=True)
        self.assertEqual(stamp, shown.stdout)
        # a second server on the same volume, on the other host
        second, _ = self.server('tempest-volume-2', root=vdis['1'])
        self.assertEqual(stamp, self.read_stamp(second, 0, 1))
        self.x.VM.hard_shutdown(second)
        # and one on a volume made from the snapshot (a new LUN)
        lun = self.tgt.add_lun(target, 64 * MIB)
        shutil.copyfile(image, target.luns[lun])
        self.x.SR.scan(sr)
        third, _ = self.server('tempest-volume-3',
                               root=self.lun_vdis(sr)[str(lun)])
        self.assertEqual(stamp, self.read_stamp(third, 0, 0))
        self.x.VM.hard_shutdown(third)
        self.assertEqual([], lun_mounts(self.sim.world))

    def test_without_fuse_the_console_says_why_the_lun_has_no_file(self):
        _, _, vdis = self.lun_sr([64 * MIB])
        vm, _ = self.server('tempest-volume-4', root=vdis['1'])
        with mock.patch.object(lunfile, 'problem',
                               return_value='no /dev/fuse (the fuse kernel '
                               'module)'):
            self.start_on(vm, 0, 0)
        wait_for('the console says why', lambda: (
            '/dev/xvda: no file of LUN VDI %s: no /dev/fuse (the fuse '
            'kernel module)' % self.x.VDI.get_uuid(vdis['1'])
            in self.console_log(vm)))
        self.assertEqual([], lun_mounts(self.sim.world))
