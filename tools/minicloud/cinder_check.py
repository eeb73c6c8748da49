"""The minicloud's Cinder, checked through the calls Nova makes.

Run by tools/minicloud.sh (at the end of ``up``, and by ``smoke``) with the
minicloud's venv Python, as the admin of its clouds.yaml (OS_CLIENT_CONFIG_FILE,
OS_CLOUD); MC_SERVICE_PASSWORD is the nova service user's password.

1. a 1 GiB volume is created and becomes available, on the file-backed
   backend: its file, 1 GiB, sparse;
2. an attachment with a connector as nova-compute sends it (``POST
   /v3/attachments``, microversion 3.54, as Nova's volume API) returns an
   ``iscsi`` connection_info: the portal of the minicloud's tgtd, the
   volume's IQN, LUN 1, CHAP with a user name and a secret;
3. tgtd has that target (``tgtadm --mode target --op show``): LUN 1 backed
   by the volume's file, the CHAP account bound to it; ``os-complete``
   makes the volume in-use;
4. the attachment, deleted as Nova deletes it (the user's token with the
   nova user's service token), is gone without Cinder asking Nova about
   the server (Cinder's check for bug #2004555 took it for a service's
   request); the volume is available, the target gone from tgtd;
5. the volume extends to 2 GiB (the file too), and is deleted (the file
   too).

Prints every check; exits 1 if one failed.
"""

import argparse
import os
import socket
import subprocess
import sys
import time
import uuid

from keystoneauth1 import adapter
from keystoneauth1.identity import v3
from keystoneauth1 import service_token
from keystoneauth1 import session as ks_session
import openstack

import checklog  # noqa: E402  (this script's own directory)

GIB = 1024 ** 3
MICROVERSION = {'OpenStack-API-Version': 'volume 3.54'}


class Check(checklog.Checks):

    def __init__(self, args):
        self.args = args
        self.failed = 0
        self.started = time.time()
        conn = openstack.connect()
        self.admin = self._adapter(conn.session)
        # Nova's calls: the user's token, and nova's as X-Service-Token
        nova = v3.Password(
            auth_url=conn.config.get_auth_args()['auth_url'],
            username='nova', password=os.environ['MC_SERVICE_PASSWORD'],
            project_name='service', user_domain_name='Default',
            project_domain_name='Default')
        self.as_nova = self._adapter(ks_session.Session(
            auth=service_token.ServiceTokenAuthWrapper(
                user_auth=conn.session.auth, service_auth=nova)))

    @staticmethod
    def _adapter(sess):
        return adapter.Adapter(sess, service_type='block-storage',
                               interface='public', region_name='RegionOne')

    def volume(self, volume_id):
        return self.admin.get('/volumes/%s' % volume_id,
                              headers=MICROVERSION).json()['volume']

    def wait(self, volume_id, status, timeout=120):
        deadline = time.time() + timeout
        while True:
            volume = self.volume(volume_id)
            if volume['status'] == status or time.time() > deadline or \
                    volume['status'].startswith('error'):
                return volume
            time.sleep(0.5)

    def targets(self):
        """tgtd's targets: {iqn: the lines of its block}."""
        out = subprocess.run(
            [self.args.tgtadm, '--lld', 'iscsi', '--mode', 'target',
             '--op', 'show'], capture_output=True, text=True, check=True)
        targets, lines = {}, None
        for line in out.stdout.splitlines():
            if line.startswith('Target '):
                lines = targets.setdefault(line.split()[2], [])
            elif lines is not None:
                lines.append(line.strip())
        return targets

    def run(self):
        path = None
        volume = self.admin.post('/volumes', headers=MICROVERSION, json={
            'volume': {'size': 1, 'name': 'minicloud-cinder-check'}},
        ).json()['volume']
        try:
            volume = self.wait(volume['id'], 'available')
            self.check(volume['status'] == 'available',
                       'volume %s: %s, %s GiB, host %s' % (
                           volume['id'], volume['status'], volume['size'],
                           volume.get('os-vol-host-attr:host')))
            path = os.path.join(self.args.volumes_dir,
                                'volume-%s' % volume['id'])
            self.check(os.path.isfile(path) and os.path.getsize(path) == GIB
                       and os.stat(path).st_blocks == 0,
                       'its file %s: 1 GiB, sparse' % path)
            self.attach_detach(volume, path)
            self.extend_delete(volume, path)
        finally:
            # whatever state a failed check left it in
            if self.volume_exists(volume['id']):
                self.admin.post('/volumes/%s/action' % volume['id'],
                                headers=MICROVERSION, raise_exc=False,
                                json={'os-force_delete': {}})

    def volume_exists(self, volume_id):
        return self.admin.get('/volumes/%s' % volume_id, headers=MICROVERSION,
                              raise_exc=False).status_code != 404

    def attach_detach(self, volume, path):
        server = str(uuid.uuid4())
        connector = {'platform': 'x86_64', 'os_type': 'linux',
                     'ip': '127.0.0.2', 'host': 'minicloud-check',
                     'multipath': False, 'do_local_attach': False,
                     'initiator': 'iqn.2026-01.org.nova-xen:minicloud-check'}
        attachment = self.admin.post('/attachments', headers=MICROVERSION,
                                     json={'attachment': {
                                         'volume_uuid': volume['id'],
                                         'instance_uuid': server,
                                         'connector': connector,
                                         'mode': 'rw'}}).json()['attachment']
        info = attachment.get('connection_info') or {}
        iqn = info.get('target_iqn', '')
        self.check(info.get('driver_volume_type') == 'iscsi',
                   'attachment %s: driver_volume_type %s' % (
                       attachment['id'], info.get('driver_volume_type')))
        self.check(info.get('target_portal') == self.args.portal
                   and iqn.endswith(':volume-%s' % volume['id'])
                   and info.get('target_lun') == 1,
                   'connection_info: portal %s, %s, LUN %s' % (
                       info.get('target_portal'), iqn,
                       info.get('target_lun')))
        self.check(info.get('auth_method') == 'CHAP'
                   and bool(info.get('auth_username'))
                   and bool(info.get('auth_password')),
                   'connection_info: auth %s, user %s, a secret of %d '
                   'characters' % (info.get('auth_method'),
                                   info.get('auth_username'),
                                   len(info.get('auth_password') or '')))
        target = self.targets().get(iqn)
        self.check(target is not None
                   and 'LUN: 1' in target
                   and 'Backing store path: %s' % path in target
                   and info.get('auth_username') in target,
                   'tgtd has %s: LUN 1 is %s, CHAP account %s' % (
                       iqn, path, info.get('auth_username')))
        self.check(self.tcp_open(self.args.portal),
                   'tgtd answers on %s' % self.args.portal)
        self.admin.post('/attachments/%s/action' % attachment['id'],
                        headers=MICROVERSION, json={'os-complete': None})
        self.check(self.volume(volume['id'])['status'] == 'in-use',
                   'after os-complete: in-use')

        log = os.path.join(self.args.log_dir, 'c-api.log')
        mark = os.path.getsize(log) if os.path.exists(log) else 0
        reply = self.as_nova.delete('/attachments/%s' % attachment['id'],
                                    headers=MICROVERSION, raise_exc=False)
        self.check(reply.status_code == 200,
                   'attachment deleted with nova\'s service token: HTTP %d'
                   % reply.status_code)
        if os.path.exists(log):
            with open(log, errors='replace') as f:
                f.seek(mark)
                asked = 'checking data on nova' in f.read()
            self.check(not asked, 'Cinder took it for a service\'s request '
                       '(did not ask Nova about server %s)' % server)
        volume = self.wait(volume['id'], 'available')
        self.check(volume['status'] == 'available',
                   'after the attachment\'s deletion: %s' % volume['status'])
        self.check(iqn not in self.targets(), 'target %s gone from tgtd'
                   % iqn)

    def extend_delete(self, volume, path):
        self.admin.post('/volumes/%s/action' % volume['id'],
                        headers=MICROVERSION,
                        json={'os-extend': {'new_size': 2}})
        deadline = time.time() + 60
        while self.volume(volume['id'])['size'] != 2 and \
                time.time() < deadline:
            time.sleep(0.5)
        volume = self.wait(volume['id'], 'available')
        self.check(volume['size'] == 2 and os.path.getsize(path) == 2 * GIB,
                   'extended: %s GiB, %s, file %d bytes' % (
                       volume['size'], volume['status'],
                       os.path.getsize(path)))
        self.admin.delete('/volumes/%s' % volume['id'], headers=MICROVERSION)
        deadline = time.time() + 60
        while self.volume_exists(volume['id']) and time.time() < deadline:
            time.sleep(0.5)
        self.check(not self.volume_exists(volume['id'])
                   and not os.path.exists(path),
                   'deleted: the volume and its file are gone')

    @staticmethod
    def tcp_open(portal):
        host, port = portal.rsplit(':', 1)
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
            return True
        except OSError:
            return False


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--portal', required=True, help='HOST:PORT of tgtd')
    p.add_argument('--tgtadm', required=True,
                   help='tgtadm of the minicloud\'s tgtd (its control port)')
    p.add_argument('--volumes-dir', required=True,
                   help='the backend\'s directory of volume files')
    p.add_argument('--log-dir', required=True, help='the services\' logs')
    check = Check(p.parse_args())
    try:
        check.run()
    except Exception as exc:
        check.check(False, 'stopped by %s: %s' % (type(exc).__name__, exc))
    check.say('%s' % ('all checks passed' if not check.failed
                      else '%d checks FAILED' % check.failed))
    return 1 if check.failed else 0


if __name__ == '__main__':
    sys.exit(main())
