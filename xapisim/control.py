"""The control interface: test and benchmark hooks, never part of XenAPI.

JSON over HTTP under ``/_xapisim/`` on every host, acting on that host's
pool, guarded by the simulator's credentials (HTTP Basic).  See the README
for the list; ``xapisim.client.Control`` wraps it for Python.
"""

import base64
import hmac
import json

from xapisim import guest
from xapisim.api import common
from xapisim.api import firmware
from xapisim.api.vm import pick_host, vm_create
from xapisim.errors import XapiError
from xapisim.rpc import Context


def _authorised(handler):
    header = handler.headers.get('Authorization', '')
    if not header.startswith('Basic '):
        return False
    try:
        user, _, pwd = base64.b64decode(header[6:]).decode().partition(':')
    except Exception:
        return False
    opts = handler.pool.options
    return hmac.compare_digest(user.encode(), opts.username.encode()) and \
        hmac.compare_digest(pwd.encode(), opts.password.encode())


def serve(handler, req):
    # the control interface is no part of xapi: a restart does not kill it
    handler.pool.db.local.epoch = None
    if not _authorised(handler):
        return handler.send_error_page(
            401, 'Unauthorised', headers=[('WWW-Authenticate',
                                           'Basic realm="xapisim"')])
    body = {}
    if handler.command == 'POST':
        try:
            raw = handler.read_body(1024 * 1024) or b'{}'
        except (ValueError, EOFError) as exc:
            return _reply(handler, 400, {'error': str(exc)})
        try:
            body = json.loads(raw.decode() or '{}')
        except ValueError:
            return _reply(handler, 400, {'error': 'body is not JSON'})
    name = req.path[len('/_xapisim/'):].replace('/', '_')
    fn = ACTIONS.get((handler.command, name))
    if fn is None:
        return _reply(handler, 404, {'error': 'no control action %s %s'
                                     % (handler.command, name)})
    try:
        if fn in (restart, move_master):
            # the restart drops connections, but not this one
            result = fn(handler.pool, handler.host, body, handler.connection)
        else:
            result = fn(handler.pool, handler.host, body)
    except XapiError as exc:
        return _reply(handler, 409, {'error': exc.description})
    except (KeyError, TypeError, ValueError) as exc:
        return _reply(handler, 400, {'error': 'bad request: %r' % (exc,)})
    return _reply(handler, 200, result if result is not None else {})


def _reply(handler, status, obj):
    handler.send_body(status, json.dumps(obj).encode(),
                      content_type='application/json')


def _vm(pool, uuid):
    return pool.db.ref_of_uuid('VM', uuid)


def describe(pool, host, body):
    return pool.world.describe()


def calls(pool, host, body):
    return dict(pool.api.counts)


def calls_reset(pool, host, body):
    pool.api.counts.clear()


def fault(pool, host, body):
    rule = pool.faults.add(message=body['message'], error=body.get('error'),
                           nth=body.get('nth', 1), times=body.get('times', 1),
                           delay=body.get('delay', 0.0))
    return rule.describe()


def faults(pool, host, body):
    return pool.faults.describe()


def faults_clear(pool, host, body):
    pool.faults.clear()


def latency(pool, host, body):
    pool.latency = float(body['ms']) / 1000.0


def restart(pool, host, body, keep=None):
    pool.restart_xapi(keep)


def move_master(pool, host, body, keep=None):
    for h in pool.hosts:
        if h.uuid == body['host_uuid']:
            pool.move_master(h, keep)
            return {'master': h.url}
    raise ValueError('no host %s in this pool' % body['host_uuid'])


def host_live(pool, host, body):
    """A host dies (``live`` false) or comes back, as xapi's master sees
    it: host_metrics.live changes; the VMs it ran stay Running in the
    database, resident on it, until VM.power_state_reset (as in xapi)."""
    for h in pool.hosts:
        if h.uuid == body['host_uuid']:
            db = pool.db
            db.set('host_metrics', db.get('host', h.ref, 'metrics'),
                   live=bool(body['live']))
            return {'live': bool(body['live'])}
    raise ValueError('no host %s in this pool' % body['host_uuid'])


def guest_behaviour(pool, host, body):
    vm = _vm(pool, body['vm_uuid'])
    settings = {k: body[k] for k in ('clean_shutdown', 'pv_drivers',
                                     'console') if k in body}
    if settings.get('clean_shutdown', 'ok') not in ('ok', 'ignore', 'refuse'):
        raise ValueError('clean_shutdown is ok, ignore or refuse')
    pool.guest.setdefault(body['vm_uuid'], {}).update(settings)
    return guest.behaviour(pool, vm)


def guest_action(pool, host, body):
    """The guest itself shuts down, reboots or crashes."""
    vm = _vm(pool, body['vm_uuid'])
    action = body['action']
    db = pool.db
    common.assert_power(db, vm, (common.RUNNING,))
    if action == 'reboot':
        guest.reboot_domain(pool, vm)
        return
    if action not in ('shutdown', 'crash'):
        raise ValueError('action is shutdown, reboot or crash')
    field = 'actions_after_shutdown' if action == 'shutdown' \
        else 'actions_after_crash'
    after = db.get('VM', vm, field)
    if after in ('restart', 'coredump_and_restart', 'rename_restart'):
        guest.reboot_domain(pool, vm)
    else:
        guest.destroy_domain(pool, vm)


def guest_netns(pool, host, body):
    """The network namespace of a running VM's guest (real dom0
    networking): its NICs are eth<device>."""
    net = pool.world.dom0net
    if net is None:
        raise XapiError('NOT_IMPLEMENTED',
                        'xapisim runs without dom0 networking')
    name = net.guest_netns(body['vm_uuid'])
    if name is None:
        raise XapiError('VM_BAD_POWER_STATE', body['vm_uuid'], 'running',
                        'halted')
    return {'netns': name}


def vdi_write(pool, host, body):
    """Bytes a VM writes into its disk (as /import_raw_vdi would, but
    with no task): they land in the VDI's own layer."""
    db = pool.db
    vdi = db.ref_of_uuid('VDI', body['vdi_uuid'])
    data = base64.b64decode(body['data'])
    offset = int(body.get('offset', 0))
    with db.lock:
        row = db.row('VDI', vdi)
        if row['read_only']:
            raise XapiError('VDI_READONLY', vdi)
        if offset < 0 or offset + len(data) > row['virtual_size']:
            raise ValueError('the bytes fall outside the VDI')
        pool.storage.write(vdi, offset, data)
    return {'physical_utilisation': db.get('VDI', vdi,
                                           'physical_utilisation')}


def secureboot_certs(pool, host, body):
    """``secureboot-certs install`` (or ``clear``: no names) on every host
    of the pool, or on the hosts named: the auth files in dom0's
    /var/lib/varstored."""
    names = list(body.get('files', ()))
    hosts = None
    if 'host_uuids' in body:
        hosts = [h for h in pool.hosts if h.uuid in body['host_uuids']]
    firmware.install_auth_files(pool, names, hosts)
    return {'readiness': firmware.pool_get_guest_secureboot_readiness(
        Context(pool, host, ''), pool.ref)}


def restrictions(pool, host, body):
    """The licence's restrictions change (e.g. restrict_vtpm: true)."""
    with pool.db.lock:
        current = dict(pool.db.get('pool', pool.ref, 'restrictions'))
        current.update({str(k): str(v) for k, v in body['set'].items()})
        pool.db.set('pool', pool.ref, restrictions=current)
    return current


def guest_firmware(pool, host, body):
    """The running guest writes a UEFI variable (``efi_variable``
    {name: value}) or its TPM state (``tpm`` base64), which varstored and
    swtpm save through xapi."""
    vm = _vm(pool, body['vm_uuid'])
    for name, value in body.get('efi_variables', {}).items():
        firmware.guest_sets_variable(pool, vm, name, value)
    if 'tpm' in body:
        firmware.guest_writes_tpm(pool, vm, body['tpm'])


def bulk_vms(pool, host, body):
    """Many plain VMs at once, for benchmarks (optionally running)."""
    ctx = Context(pool, host, '')
    memory = int(body.get('memory_mib', 64)) * 1024 * 1024
    made = []
    for i in range(int(body['count'])):
        vm = vm_create(ctx, {
            'name_label': '%s%d' % (body.get('name_prefix', 'bulk-'), i),
            'user_version': '1', 'is_a_template': False,
            'affinity': 'OpaqueRef:NULL',
            'memory_static_max': str(memory),
            'memory_dynamic_max': str(memory),
            'memory_dynamic_min': str(memory),
            'memory_static_min': str(memory),
            'VCPUs_params': {}, 'VCPUs_max': '1', 'VCPUs_at_startup': '1',
            'actions_after_shutdown': 'destroy',
            'actions_after_reboot': 'restart', 'actions_after_crash': 'destroy',
            'PV_bootloader': '', 'PV_kernel': '', 'PV_ramdisk': '',
            'PV_args': '', 'PV_bootloader_args': '', 'PV_legacy_args': '',
            'HVM_boot_policy': 'BIOS order', 'HVM_boot_params': {},
            'platform': {}, 'PCI_bus': '',
            'other_config': dict(body.get('other_config', {})),
            'recommendations': ''})
        uuid = pool.db.get('VM', vm, 'uuid')
        if body.get('instances'):
            other = dict(pool.db.get('VM', vm, 'other_config'),
                         nova_uuid=uuid)
            pool.db.set('VM', vm, other_config=other, affinity=host.ref)
        if body.get('running'):
            guest.create_domain(pool, vm, host.ref if body.get('instances')
                                else pick_host(ctx, vm))
        made.append(uuid)
    return {'vms': made}


ACTIONS = {
    ('GET', 'describe'): describe,
    ('GET', 'calls'): calls,
    ('POST', 'calls_reset'): calls_reset,
    ('POST', 'fault'): fault,
    ('GET', 'faults'): faults,
    ('POST', 'faults_clear'): faults_clear,
    ('POST', 'latency'): latency,
    ('POST', 'host_live'): host_live,
    ('POST', 'restart'): restart,
    ('POST', 'move_master'): move_master,
    ('POST', 'guest'): guest_behaviour,
    ('POST', 'guest_action'): guest_action,
    ('POST', 'guest_netns'): guest_netns,
    ('POST', 'vms'): bulk_vms,
    ('POST', 'vdi_write'): vdi_write,
    ('POST', 'secureboot_certs'): secureboot_certs,
    ('POST', 'restrictions'): restrictions,
    ('POST', 'guest_firmware'): guest_firmware,
}
