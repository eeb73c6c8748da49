"""Guest firmware as xapi runs it: UEFI, Secure Boot, NVRAM and VTPMs.

What xapi does, and where it does it (xen-api v26.1.19):

- ``HVM_boot_params['firmware']`` is ``bios`` (or absent) or ``uefi``;
  anything else fails VM.start (``xapi_xenops.ml firmware_of_vm``).  At
  start xapi writes the default device model into ``platform``
  (``qemu-upstream-compat`` for BIOS, ``qemu-upstream-uefi`` for UEFI) and
  resolves ``platform['secureboot'] = 'auto'`` to ``true`` only when the
  pool's active UEFI certificate field is non-empty (``xapi_vm.ml start``,
  ``update_platform_secureboot``): on an upgraded pool that field is empty
  and ``auto`` silently becomes ``false``.
- ``NVRAM`` changes only while the VM is halted (VM operation
  ``changing_NVRAM``).  varstored writes ``NVRAM['EFI-variables']`` on the
  first UEFI boot, loading PK/KEK/db/dbx from the host's
  ``/var/lib/varstored/*.auth``, and saves the guest's variable writes
  there, unless ``NVRAM['EFI-variables-on-boot'] = 'reset'``.  xapisim's
  varstore blob is base64 of a JSON object of variable names (real
  varstored writes its own binary format).
- A VTPM is made on a halted VM with none (``VTPM_MAX_AMOUNT_REACHED``)
  in a pool whose ``restrictions['restrict_vtpm']`` is ``"false"``
  (``FEATURE_RESTRICTED``); its state is a ``secret``.  Clones, copies and
  snapshots copy a VTPM, with its contents only when it is not unique
  (``xapi_vtpm.ml copy_or_create_contents``); a cross-pool migration
  carries it with its contents.  A BIOS VM with a VTPM does not start
  (``NOT_IMPLEMENTED``); ``platform['vtpm'] = 'true'`` makes one at start.
- ``pool.get_guest_secureboot_readiness`` reads the auth files in the
  master's ``/var/lib/varstored`` (``xapi_pool.ml``).
"""

import base64
import binascii
import json
import os

from xapisim.api import common
from xapisim.api.common import HALTED, SUSPENDED
from xapisim.errors import XapiError
from xapisim.rpc import handler
from xapisim.schema import NULL_REF

AUTH_FILES = ('PK', 'KEK', 'db', 'dbx')
VARSTORE_DIR = ('var', 'lib', 'varstored')
DEVICE_MODELS = {'bios': 'qemu-upstream-compat', 'uefi': 'qemu-upstream-uefi'}


# ---------------------------------------------------------------- firmware


def firmware_of(row):
    """'bios' or 'uefi', or INVALID_VALUE as VM.start gives it."""
    firmware = row['HVM_boot_params'].get('firmware', 'bios')
    if firmware not in ('bios', 'uefi'):
        raise XapiError('INVALID_VALUE', "HVM-boot-params['firmware']",
                        firmware)
    if firmware == 'uefi':
        on_boot = row['NVRAM'].get('EFI-variables-on-boot', 'persist')
        if on_boot not in ('persist', 'reset'):
            raise XapiError('INVALID_VALUE',
                            "NVRAM['EFI-variables-on-boot']", on_boot)
    return firmware


def active_uefi_certificates(db, pool):
    custom = db.get('pool', pool, 'custom_uefi_certificates')
    return custom or db.get('pool', pool, 'uefi_certificates')


def prepare_start(ctx, vm):
    """VM.start's firmware checks and platform rewrites, before the
    domain is built; the VTPM that ``platform['vtpm']`` asks for."""
    db = ctx.db
    with db.lock:
        row = db.row('VM', vm)
        firmware = firmware_of(row)
        platform = dict(row['platform'])
        model = platform.get('device-model')
        if not model:
            platform['device-model'] = DEVICE_MODELS[firmware]
        elif (model == 'qemu-trad' and firmware == 'uefi') or \
                (model == 'qemu-upstream-uefi' and firmware == 'bios'):
            raise XapiError('INVALID_VALUE', 'platform:device-model',
                            '%s is not supported with %s firmware'
                            % (model, firmware))
        if platform.get('secureboot') == 'auto':
            platform['secureboot'] = str(bool(active_uefi_certificates(
                db, ctx.pool.ref))).lower()
        if platform != row['platform']:
            db.set('VM', vm, platform=platform)
        vtpms = list(row['VTPMs'])
        if not vtpms and platform.get('vtpm') == 'true':
            vtpms.append(_new_vtpm(ctx, vm, is_unique=False))
        if len(vtpms) > 1:
            raise XapiError('INTERNAL_ERROR',
                            'Multiple vTPMs are not supported')
        if vtpms and firmware == 'bios':
            raise XapiError('NOT_IMPLEMENTED',
                            'Booting BIOS VM with VTPMs attached')


def host_auth_files(host):
    folder = os.path.join(host.dom0_root, *VARSTORE_DIR)
    try:
        present = set(os.listdir(folder))
    except FileNotFoundError:
        return {}
    found = {}
    for name in AUTH_FILES:
        if name + '.auth' in present:
            with open(os.path.join(folder, name + '.auth'), 'rb') as fh:
                found[name] = base64.b64encode(fh.read()).decode()
    return found


def varstore(row):
    """The guest's UEFI variables (name -> value), or None before its
    first boot."""
    blob = row['NVRAM'].get('EFI-variables')
    if blob is None:
        return None
    return json.loads(base64.b64decode(blob).decode())['variables']


def _save_varstore(db, vm, variables):
    nvram = dict(db.get('VM', vm, 'NVRAM'))
    nvram['EFI-variables'] = base64.b64encode(json.dumps(
        {'variables': variables}, sort_keys=True).encode()).decode()
    db.set('VM', vm, NVRAM=nvram)


def _persists(row):
    return row['NVRAM'].get('EFI-variables-on-boot', 'persist') != 'reset'


def first_boot(pool, vm, host_ref):
    """varstored's first run for a UEFI guest: the varstore is made with
    the certificates this host has and saved in NVRAM."""
    db = pool.db
    with db.lock:
        row = db.row('VM', vm)
        if row['HVM_boot_params'].get('firmware') != 'uefi' or \
                varstore(row) is not None or not _persists(row):
            return
        host = pool.host_by_ref(host_ref)
        _save_varstore(db, vm, host_auth_files(host) if host else {})


def guest_sets_variable(pool, vm, name, value):
    """The running guest writes a UEFI variable (the control interface):
    varstored saves it into NVRAM unless the VM boots stateless."""
    db = pool.db
    with db.lock:
        common.assert_power(db, vm, (common.RUNNING,))
        row = db.row('VM', vm)
        if row['HVM_boot_params'].get('firmware') != 'uefi':
            raise XapiError('VM_LACKS_FEATURE', vm)
        if not _persists(row):
            return
        variables = varstore(row) or {}
        variables[name] = value
        _save_varstore(db, vm, variables)


@handler('VM', 'get_secureboot_readiness')
def vm_get_secureboot_readiness(ctx, vm):
    row = ctx.db.row('VM', vm)
    if firmware_of(row) != 'uefi':
        return 'not_supported'
    if row['platform'].get('secureboot') != 'true':
        return 'disabled'
    variables = varstore(row)
    if variables is None:
        return 'first_boot'
    if 'PK' not in variables:
        return 'setup_mode'
    if all(k in variables for k in ('KEK', 'db', 'dbx')):
        return 'ready'
    if all(k in variables for k in ('KEK', 'db')):
        return 'ready_no_dbx'
    return 'certs_incomplete'


@handler('VM', 'set_uefi_mode')
def vm_set_uefi_mode(ctx, vm, mode):
    """varstore-sb-state: ``setup`` drops the Secure Boot keys, ``user``
    puts the host's back."""
    db = ctx.db
    with common.vm_operation(ctx, vm, 'changing_NVRAM'):
        variables = {k: v for k, v in (varstore(db.row('VM', vm)) or {})
                     .items() if k not in AUTH_FILES}
        if mode == 'user':
            variables.update(host_auth_files(ctx.host))
        _save_varstore(db, vm, variables)
    return ''


@handler('VM', 'update_secureboot_certificates_on_boot')
def vm_update_secureboot_certificates_on_boot(ctx, vm, mark):
    db = ctx.db
    with db.lock:
        current = db.get('VM', vm, 'secureboot_certificates_state')
        flips = {(True, 'update_available'): 'update_on_boot',
                 (False, 'update_on_boot'): 'update_available'}
        if (mark, current) in flips:
            db.set('VM', vm,
                   secureboot_certificates_state=flips[(mark, current)])
        elif current == 'ok':
            raise XapiError('OPERATION_NOT_ALLOWED',
                            'Cannot %s update_on_boot: VM.secureboot_'
                            'certificates_state is not in a valid state'
                            % ('set' if mark else 'clear'))


@handler('VM', 'set_NVRAM_EFI_variables')
def vm_set_nvram_efi_variables(ctx, vm, value):
    _assert_local_root(ctx)
    with ctx.db.lock:
        nvram = dict(ctx.db.get('VM', vm, 'NVRAM'))
        nvram['EFI-variables'] = value
        ctx.db.set('VM', vm, NVRAM=nvram)


def _change_nvram(ctx, vm, change):
    with common.vm_operation(ctx, vm, 'changing_NVRAM'):
        with ctx.db.lock:
            nvram = dict(ctx.db.get('VM', vm, 'NVRAM'))
            change(nvram)
            ctx.db.set('VM', vm, NVRAM=nvram)


@handler('VM', 'set_NVRAM')
def vm_set_nvram(ctx, vm, value):
    def replace(nvram):
        nvram.clear()
        nvram.update(value)
    _change_nvram(ctx, vm, replace)


@handler('VM', 'add_to_NVRAM')
def vm_add_to_nvram(ctx, vm, key, value):
    _change_nvram(ctx, vm, lambda nvram: nvram.__setitem__(key, value))


@handler('VM', 'remove_from_NVRAM')
def vm_remove_from_nvram(ctx, vm, key):
    _change_nvram(ctx, vm, lambda nvram: nvram.pop(key, None))


# ---------------------------------------------------------------- Secure Boot


@handler('pool', 'get_guest_secureboot_readiness')
def pool_get_guest_secureboot_readiness(ctx, pool):
    found = host_auth_files(ctx.pool.master)
    if all(k in found for k in AUTH_FILES):
        return 'ready'
    if all(k in found for k in ('PK', 'KEK', 'db')):
        return 'ready_no_dbx'
    return 'not_ready'


def install_auth_files(pool, names, hosts=None):
    """What ``secureboot-certs install`` leaves in dom0 (the control
    interface): these auth files, and no others, on each host."""
    for name in names:
        if name not in AUTH_FILES:
            raise ValueError('auth files are %s' % ', '.join(AUTH_FILES))
    for host in hosts if hosts is not None else pool.hosts:
        folder = os.path.join(host.dom0_root, *VARSTORE_DIR)
        os.makedirs(folder, exist_ok=True)
        for name in AUTH_FILES:
            path = os.path.join(folder, name + '.auth')
            if name in names:
                with open(path, 'wb') as fh:
                    fh.write(('xapisim %s certificate' % name).encode())
            elif os.path.exists(path):
                os.unlink(path)


# ---------------------------------------------------------------- VTPM


def _contents(pool):
    return pool.vtpm_contents


def _new_vtpm(ctx, vm, is_unique, contents=''):
    db = ctx.db
    secret = db.create('secret', {'value': contents, 'other_config': {}})
    vtpm = db.create('VTPM', {'VM': vm, 'is_unique': is_unique,
                              'backend': NULL_REF,
                              'persistence_backend': 'xapi'})
    _contents(ctx.pool)[vtpm] = secret
    return vtpm


def vtpm_value(pool, vtpm):
    secret = _contents(pool).get(vtpm)
    return pool.db.get('secret', secret, 'value') if secret else ''


def forget_vtpm(pool, vtpm):
    """The VTPM goes with its secret (VM.destroy, VTPM.destroy)."""
    secret = _contents(pool).pop(vtpm, None)
    if secret is not None and pool.db.exists('secret', secret):
        pool.db.destroy('secret', secret)
    pool.db.destroy('VTPM', vtpm)


def copy_vtpms(src_pool, vm, dst_ctx, new_vm, carry_contents=False):
    """The VM's VTPMs for its copy ``new_vm``: with their contents unless
    unique (clone, copy, snapshot) or always (``carry_contents``: a
    migration's export)."""
    for vtpm in src_pool.db.get('VM', vm, 'VTPMs'):
        unique = src_pool.db.get('VTPM', vtpm, 'is_unique')
        keep = carry_contents or not unique
        _new_vtpm(dst_ctx, new_vm, unique,
                  vtpm_value(src_pool, vtpm) if keep else '')


def _assert_local_root(ctx):
    db = ctx.db
    if ctx.session and db.exists('session', ctx.session) and \
            not db.get('session', ctx.session, 'is_local_superuser'):
        raise XapiError('RBAC_PERMISSION_DENIED', ctx.method,
                        'The operation needs the local superuser')


@handler('VTPM', 'create')
def vtpm_create(ctx, vm, is_unique):
    db = ctx.db
    with common.vm_operation(ctx, vm, 'create_vtpm'):
        with db.lock:
            count = len(db.get('VM', vm, 'VTPMs'))
            if count:
                raise XapiError('VTPM_MAX_AMOUNT_REACHED', str(count))
            restrictions = db.get('pool', ctx.pool.ref, 'restrictions')
            if restrictions.get('restrict_vtpm') != 'false':
                raise XapiError('FEATURE_RESTRICTED', 'restrict_vtpm')
            return _new_vtpm(ctx, vm, is_unique)


@handler('VTPM', 'destroy')
def vtpm_destroy(ctx, vtpm):
    db = ctx.db
    with db.lock:
        common.assert_power(db, db.get('VTPM', vtpm, 'VM'),
                            (HALTED, SUSPENDED))
        forget_vtpm(ctx.pool, vtpm)


@handler('VTPM', 'get_contents')
def vtpm_get_contents(ctx, vtpm):
    _assert_local_root(ctx)
    ctx.db.row('VTPM', vtpm)
    return vtpm_value(ctx.pool, vtpm)


@handler('VTPM', 'set_contents')
def vtpm_set_contents(ctx, vtpm, contents):
    _assert_local_root(ctx)
    try:
        base64.b64decode(contents, validate=True)
    except (binascii.Error, ValueError):
        raise XapiError('INTERNAL_ERROR', 'Invalid_argument("Base64.decode")')
    db = ctx.db
    with db.lock:
        db.row('VTPM', vtpm)
        old = _contents(ctx.pool).get(vtpm)
        _contents(ctx.pool)[vtpm] = db.create(
            'secret', {'value': contents, 'other_config': {}})
        if old is not None and db.exists('secret', old):
            db.destroy('secret', old)


def guest_writes_tpm(pool, vm, contents):
    """swtpm saves the running guest's TPM state (the control
    interface): the VM's VTPM holds ``contents`` (base64)."""
    db = pool.db
    with db.lock:
        common.assert_power(db, vm, (common.RUNNING,))
        vtpms = db.get('VM', vm, 'VTPMs')
        if not vtpms:
            raise XapiError('VM_LACKS_FEATURE', vm)
        base64.b64decode(contents, validate=True)
        secret = _contents(pool)[vtpms[0]]
        db.set('secret', secret, value=contents)
