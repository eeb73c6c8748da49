"""Guest firmware: UEFI, Secure Boot and the vTPM, from Nova's knobs to xapi.

What Nova asks (nova 34): ``hw_firmware_type`` (image: ``bios``, the
default, or ``uefi``), ``hw_firmware_stateless`` (image), the Secure Boot
policy (image ``os_secure_boot`` or flavor ``os:secure_boot``), the vTPM
(``hw:tpm_version``/``hw:tpm_model``, flavor or image, and the flavor's
``hw:tpm_secret_security``).

What xapi can honour, and how (xen-api v26.1.19):

* UEFI: ``HVM_boot_params['firmware'] = 'uefi'``; stateless is
  ``NVRAM['EFI-variables-on-boot'] = 'reset'`` (varstored then keeps
  nothing the guest writes).
* Secure Boot: ``platform['secureboot']`` written ``true`` or ``false``,
  never ``auto`` (xapi resolves ``auto`` from a pool field an upgrade
  empties, so it can silently mean "off").  It is enforced only where the
  pool master holds the certificates (``secureboot-certs install`` puts
  PK, KEK, db, dbx in /var/lib/varstored), which
  ``pool.get_guest_secureboot_readiness`` (xapi 24.17.0) reports: a
  request for it elsewhere is refused, with that sentence.
* vTPM: TPM 2.0 with the CRB interface only (swtpm ``--tpm2``, QEMU
  ``tpm-crb``), on a UEFI guest only (xapi refuses to boot BIOS with a
  VTPM), its state kept by xapi in the pool database: Nova's ``host``
  secret-security mode, the one it live-migrates.  The VTPM is made with
  ``is_unique=false`` so that ``VM.clone`` (a resize to another pool
  clones the stopped VM) keeps its contents.  Anything else is refused
  before anything is made.
"""

import collections
import threading
import time

import os_traits
from nova import exception
from nova.i18n import _
from nova.virt import hardware
from oslo_log import log as logging

from nova_xen import errors

LOG = logging.getLogger(__name__)

# How long the pool's firmware facts (readiness, vTPM licence) serve the
# traits; a spawn always reads them afresh.
FACTS_TTL = 300.0
READY = ('ready', 'ready_no_dbx')
INSTALL = ('install the pool\'s Secure Boot certificates with '
           '"secureboot-certs install" on the pool master')
TPM_TRAITS = {
    os_traits.COMPUTE_SECURITY_TPM_2_0: True,
    os_traits.COMPUTE_SECURITY_TPM_CRB: True,
    os_traits.COMPUTE_SECURITY_TPM_SECRET_SECURITY_HOST: True,
    os_traits.COMPUTE_SECURITY_TPM_1_2: False,
    os_traits.COMPUTE_SECURITY_TPM_TIS: False,
    os_traits.COMPUTE_SECURITY_TPM_SECRET_SECURITY_USER: False,
    os_traits.COMPUTE_SECURITY_TPM_SECRET_SECURITY_DEPLOYMENT: False,
}

Request = collections.namedtuple(
    'Request', 'uefi stateless secure_boot vtpm secret_security pv')
# a guest's firmware state a move carries: NVRAM, vTPM contents (or None)
State = collections.namedtuple('State', 'nvram vtpm')


class FirmwareUnsupported(exception.InvalidInput):
    """xapi cannot give the guest this firmware anywhere: the build is
    aborted (no reschedule), the sentence says why."""
    msg_fmt = _('%(reason)s')


class SecureBootNotReady(FirmwareUnsupported):
    """This pool cannot enforce Secure Boot now: aborted, so that the
    sentence naming the fix reaches the user (a reschedule would end in
    Nova's "exhausted all hosts")."""
    msg_fmt = _('%(reason)s')


def request_of(instance, image_meta):
    """What the flavor and image ask of the firmware (Nova's own parsers:
    a flavor/image conflict or a bad value fails as Nova says)."""
    flavor = instance.flavor
    props = image_meta.properties
    uefi = props.get('hw_firmware_type') == 'uefi'
    return Request(
        uefi=uefi,
        stateless=bool(hardware.get_stateless_firmware_constraint(
            image_meta)),
        secure_boot=hardware.get_secure_boot_constraint(flavor, image_meta),
        vtpm=hardware.get_vtpm_constraint(flavor, image_meta),
        secret_security=hardware.get_tpm_secret_security_constraint(flavor)
        or 'user',
        pv=props.get('hw_vm_mode') == 'xen')


def _refuse_vtpm(request):
    version, model = request.vtpm
    if version != '2.0':
        return ('xapi gives guests a TPM 2.0 only, not TPM %s: ask for '
                'hw:tpm_version=2.0 and hw:tpm_model=tpm-crb' % version)
    if model != 'tpm-crb':
        return ('xapi\'s vTPM has the CRB interface only, not %s: ask for '
                'hw:tpm_model=tpm-crb (Nova\'s default is tpm-tis)' % model)
    if not request.uefi:
        return ('xapi does not boot a BIOS guest with a vTPM: the image '
                'needs hw_firmware_type=uefi')
    if request.secret_security != 'host':
        return ('xapi keeps the vTPM state in the pool database, which is '
                'Nova\'s "host" secret security, not "%s": ask for '
                'hw:tpm_secret_security=host' % request.secret_security)
    return None


class PoolFirmware(object):
    """The pool's firmware facts, and the guest's firmware in xapi."""

    def __init__(self, session):
        self.session = session
        self._lock = threading.Lock()
        self._facts = None       # (read at, facts)
        self._pool = None

    # -- the pool --------------------------------------------------------

    def facts(self, fresh=False):
        """{'readiness': 'ready'/'ready_no_dbx'/'not_ready'/None (xapi
        older than 24.17.0), 'vtpm': bool (licence)}."""
        with self._lock:
            if not fresh and self._facts is not None and \
                    time.monotonic() - self._facts[0] < FACTS_TTL:
                return self._facts[1]
        session = self.session
        if self._pool is None:
            # a pool's ref never changes: two calls per refresh
            self._pool = session.call('pool.get_all')[0]
        pool = self._pool
        restrictions = session.call('pool.get_restrictions', pool)
        try:
            readiness = session.call('pool.get_guest_secureboot_readiness',
                                     pool)
        except errors.XenAPIError as exc:
            if exc.xapi_code != 'MESSAGE_METHOD_UNKNOWN':
                raise
            readiness = None
        facts = {'readiness': readiness,
                 'vtpm': restrictions.get('restrict_vtpm') == 'false'}
        with self._lock:
            self._facts = (time.monotonic(), facts)
        return facts

    def traits(self):
        """{trait: on} the compute reports (add the on, remove the off);
        and whether Secure Boot can be promised now (the driver's
        ``supports_secure_boot`` capability, from which Nova's resource
        tracker sets COMPUTE_SECURITY_UEFI_SECURE_BOOT)."""
        facts = self.facts()
        vtpm = facts['vtpm']
        traits = {t: on and vtpm for t, on in TPM_TRAITS.items()}
        return traits, facts['readiness'] in READY

    # -- a guest ---------------------------------------------------------

    def check(self, request):
        """Refuse, before anything is made, what xapi cannot honour."""
        if request.uefi and request.pv:
            raise FirmwareUnsupported(reason=(
                'UEFI firmware needs an HVM guest: the image asks for a PV '
                'one (hw_vm_mode=xen)'))
        if request.vtpm is not None:
            reason = _refuse_vtpm(request)
            if reason:
                raise FirmwareUnsupported(reason=reason)
        if request.secure_boot == 'required' and not request.uefi:
            raise FirmwareUnsupported(reason=(
                'Secure Boot needs UEFI firmware: the image needs '
                'hw_firmware_type=uefi'))
        wants_pool = request.vtpm is not None or (
            request.uefi and request.secure_boot in ('required', 'optional'))
        if not wants_pool:
            return False
        facts = self.facts(fresh=True)
        if request.vtpm is not None and not facts['vtpm']:
            raise FirmwareUnsupported(reason=(
                'this pool\'s licence restricts vTPMs (restrict_vtpm)'))
        ready = facts['readiness'] in READY
        if request.secure_boot == 'required' and not ready:
            if facts['readiness'] is None:
                reason = ('this pool\'s xapi is older than 24.17.0 and '
                          'cannot say whether it can enforce Secure Boot; '
                          'update it and ' + INSTALL)
            else:
                reason = ('this pool cannot enforce Secure Boot (its '
                          'readiness is %s): %s' % (facts['readiness'],
                                                    INSTALL))
            raise SecureBootNotReady(reason=reason)
        return ready

    def apply(self, record, request, ready, state=None):
        """VM.create's record for this firmware (and a move's NVRAM)."""
        if not request.uefi:
            return record
        record['HVM_boot_params'] = dict(record['HVM_boot_params'],
                                         firmware='uefi')
        secure = request.secure_boot == 'required' or (
            request.secure_boot == 'optional' and ready)
        record['platform'] = dict(record['platform'],
                                  secureboot='true' if secure else 'false')
        nvram = dict(state.nvram) if state is not None else {}
        nvram['EFI-variables-on-boot'] = (
            'reset' if request.stateless else 'persist')
        record['NVRAM'] = nvram
        return record

    def create_vtpm(self, vm, request, state=None):
        """The halted VM's vTPM, with a move's contents."""
        if request.vtpm is None:
            return
        vtpm = self.session.call('VTPM.create', vm, False)
        if state is not None and state.vtpm:
            self._call_hidden('VTPM.set_contents', vtpm, state.vtpm)

    def read_state(self, vm):
        """The NVRAM and vTPM contents of a halted VM of this pool."""
        session = self.session
        vtpms = session.call('VM.get_VTPMs', vm)
        contents = None
        if vtpms:
            contents = self._call_hidden('VTPM.get_contents', vtpms[0])
        return State(nvram=session.call('VM.get_NVRAM', vm), vtpm=contents)

    def _call_hidden(self, method, *args):
        # xapi's only calls for vTPM state are local-root only and
        # undocumented: a login other than root cannot move them
        try:
            return self.session.call(method, *args)
        except errors.XenAPIError as exc:
            if exc.xapi_code in ('MESSAGE_METHOD_UNKNOWN',
                                 'RBAC_PERMISSION_DENIED'):
                raise exception.NovaException(
                    'the vTPM state cannot be carried: %s needs xapi\'s '
                    'local root login ([xenserver]connection_username = '
                    'root) (%s)' % (method, exc.xapi_code))
            raise
