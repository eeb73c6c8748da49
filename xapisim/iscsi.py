"""A small iSCSI initiator in pure Python (RFC 7143), for iSCSI SRs.

dom0's SM logs in to an iSCSI target with open-iscsi and the kernel; the
simulator has neither, so it speaks the protocol itself over a TCP
socket: SendTargets discovery, login with optional CHAP (MD5), the full
feature phase, and the few SCSI commands an SR needs (REPORT LUNS,
INQUIRY, READ CAPACITY(10)/(16), READ(10), WRITE(10)).  No digests, one
connection per session, one command at a time.

    targets = discover('127.0.0.1', 3260, initiator_iqn)
    with Session('127.0.0.1', 3260, initiator_iqn, target_iqn,
                 chap=('user', 'secret')) as s:
        for lun in s.report_luns():
            size = s.capacity(lun)

Failures are ``IscsiError`` subclasses whose text never holds a CHAP
secret: ``PortalUnreachable`` (nothing answers at the portal),
``TargetNotFound`` (the target does not know that IQN),
``AuthenticationFailed`` (CHAP refused, or required and not offered),
``LoginFailed`` (any other login refusal), ``ScsiError`` (a command's
CHECK CONDITION, with its sense key) and ``ProtocolError``.
"""

import base64
import hashlib
import os
import socket
import struct
import threading

DEFAULT_PORT = 3260
TIMEOUT = 15.0
MAX_RECV = 262144          # what we accept in one data segment

# opcodes (initiator -> target, target -> initiator)
NOP_OUT, SCSI_CMD, LOGIN_REQ, TEXT_REQ, DATA_OUT, LOGOUT_REQ = \
    0x00, 0x01, 0x03, 0x04, 0x05, 0x06
NOP_IN, SCSI_RSP, LOGIN_RSP, TEXT_RSP, DATA_IN, LOGOUT_RSP, R2T, REJECT = \
    0x20, 0x21, 0x23, 0x24, 0x25, 0x26, 0x31, 0x3f
IMMEDIATE = 0x40
FINAL = 0x80
NO_TAG = 0xffffffff

SECURITY, OPERATIONAL, FULL_FEATURE = 0, 1, 3

GOOD, CHECK_CONDITION = 0x00, 0x02
UNIT_ATTENTION = 0x06
DISK = 0x00                 # peripheral device type of a block device


class IscsiError(Exception):
    """Any failure talking to an iSCSI target."""


class PortalUnreachable(IscsiError):
    """No iSCSI service answers at the portal (refused, unreachable,
    timed out)."""


class TargetNotFound(IscsiError):
    """The portal does not offer the target IQN."""


class AuthenticationFailed(IscsiError):
    """The target refused the initiator's credentials."""


class LoginFailed(IscsiError):
    """The target refused the login for another reason."""

    def __init__(self, message, status_class=0, status_detail=0):
        super(LoginFailed, self).__init__(message)
        self.status_class = status_class
        self.status_detail = status_detail


class ScsiError(IscsiError):
    """A SCSI command ended with a status other than GOOD."""

    def __init__(self, message, status, sense_key=None, asc=None,
                 ascq=None):
        super(ScsiError, self).__init__(message)
        self.status = status
        self.sense_key = sense_key
        self.asc = asc
        self.ascq = ascq


class ProtocolError(IscsiError):
    """The target said something this initiator does not understand."""


# ------------------------------------------------------------------ PDUs


class Pdu(object):
    """One iSCSI PDU: a 48-byte basic header segment and its data."""

    def __init__(self, bhs, data=b''):
        self.bhs = bytearray(bhs)
        self.data = data

    @property
    def opcode(self):
        return self.bhs[0] & 0x3f

    @property
    def flags(self):
        return self.bhs[1]

    def u32(self, offset):
        return struct.unpack_from('>I', self.bhs, offset)[0]

    @property
    def itt(self):
        return self.u32(16)

    def encode(self):
        length = len(self.data)
        self.bhs[5:8] = struct.pack('>I', length)[1:]
        return bytes(self.bhs) + self.data + b'\0' * (-length % 4)


def new_bhs(opcode, flags=0):
    bhs = bytearray(48)
    bhs[0] = opcode
    bhs[1] = flags
    return bhs


def put32(bhs, offset, value):
    struct.pack_into('>I', bhs, offset, value & 0xffffffff)


def encode_lun(lun):
    """SAM's 8-byte LUN: peripheral addressing below 256, flat above."""
    if lun < 256:
        return bytes([0, lun]) + b'\0' * 6
    return bytes([0x40 | (lun >> 8), lun & 0xff]) + b'\0' * 6


def decode_lun(raw):
    method = raw[0] >> 6
    if method == 1:
        return ((raw[0] & 0x3f) << 8) | raw[1]
    return raw[1]


def encode_keys(pairs):
    return b''.join(('%s=%s' % kv).encode() + b'\0' for kv in pairs)


def decode_keys(data):
    """Text keys as an ordered list of (key, value)."""
    pairs = []
    for item in data.split(b'\0'):
        if item:
            key, _, value = item.decode('utf-8', 'replace').partition('=')
            pairs.append((key, value))
    return pairs


def chap_response(ident, secret, challenge):
    """CHAP with MD5 (RFC 1994): MD5(identifier || secret || challenge)."""
    return hashlib.md5(bytes([ident]) + secret.encode() + challenge).digest()


def portal_of(address):
    """'host:port,tpgt' (or '[v6]:port,tpgt') -> (host, port)."""
    address = address.split(',')[0]
    host, _, port = address.rpartition(':')
    if host.startswith('['):
        host = host[1:-1]
    return host, int(port)


# ------------------------------------------------------------- sessions


class Session(object):
    """One logged-in session (normal or discovery) with one connection.

    ``chap`` is ``(user, secret)`` or None.  The session is thread-safe:
    one command at a time.
    """

    def __init__(self, host, port, initiator, target=None, chap=None,
                 timeout=TIMEOUT):
        self.host = host
        self.port = int(port or DEFAULT_PORT)
        self.initiator = initiator
        self.target = target
        self.discovery = target is None
        self._chap = chap
        self.timeout = timeout
        self.lock = threading.RLock()
        self.isid = b'\x80' + os.urandom(3) + b'\0\0'   # random format
        self.tsih = 0
        self.cmdsn = 1
        self.expstatsn = 0
        self.itt = 0
        self.max_send = 8192    # the target's MaxRecvDataSegmentLength
        self.sock = None
        self._connect()
        try:
            self._login()
        except BaseException:
            self._drop()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.logout()

    def __repr__(self):
        return '<iSCSI session %s:%d %s>' % (
            self.host, self.port, self.target or 'discovery')

    # -- the wire --------------------------------------------------------

    def _connect(self):
        try:
            self.sock = socket.create_connection((self.host, self.port),
                                                 timeout=self.timeout)
        except OSError as exc:
            raise PortalUnreachable('cannot connect to iSCSI portal %s:%d: '
                                    '%s' % (self.host, self.port,
                                            exc.strerror or exc))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _drop(self):
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def _send(self, pdu):
        if self.sock is None:
            raise IscsiError('%r is closed' % self)
        try:
            self.sock.sendall(pdu.encode())
        except OSError as exc:
            self._drop()
            raise IscsiError('connection to %s:%d lost: %s'
                             % (self.host, self.port, exc))

    def _read_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except OSError as exc:
                self._drop()
                raise IscsiError('connection to %s:%d lost: %s'
                                 % (self.host, self.port, exc))
            if not chunk:
                self._drop()
                raise IscsiError('the target at %s:%d closed the connection'
                                 % (self.host, self.port))
            buf += chunk
        return bytes(buf)

    def _receive(self):
        """The next PDU; NOP-Ins that ask for an answer are answered."""
        while True:
            if self.sock is None:
                raise IscsiError('%r is closed' % self)
            bhs = self._read_exact(48)
            ahs = bhs[4] * 4
            length = struct.unpack('>I', b'\0' + bhs[5:8])[0]
            if ahs:
                self._read_exact(ahs)
            data = self._read_exact(length + (-length % 4))[:length] \
                if length else b''
            pdu = Pdu(bhs, data)
            if pdu.opcode in (SCSI_RSP, TEXT_RSP, LOGIN_RSP, LOGOUT_RSP,
                              NOP_IN, R2T, DATA_IN, REJECT):
                self._status(pdu)
            if pdu.opcode == NOP_IN and pdu.itt == NO_TAG:
                if pdu.u32(20) != NO_TAG:   # a ping from the target
                    self._nop_out(pdu.u32(20), pdu.bhs[8:16])
                continue
            if pdu.opcode == REJECT:
                raise ProtocolError('the target rejected a PDU (reason '
                                    '0x%02x)' % pdu.bhs[2])
            return pdu

    def _status(self, pdu):
        """Track StatSN for PDUs that carry one."""
        if pdu.opcode == DATA_IN and not pdu.flags & 0x01:
            return
        if pdu.opcode == R2T:
            return
        statsn = pdu.u32(24)
        if pdu.opcode != NOP_IN or pdu.itt != NO_TAG:
            self.expstatsn = (statsn + 1) & 0xffffffff

    def _next_itt(self):
        self.itt = (self.itt + 1) % NO_TAG
        return self.itt

    def _nop_out(self, ttt, lun):
        bhs = new_bhs(NOP_OUT | IMMEDIATE, FINAL)
        bhs[8:16] = lun
        put32(bhs, 16, NO_TAG)
        put32(bhs, 20, ttt)
        put32(bhs, 24, self.cmdsn)
        put32(bhs, 28, self.expstatsn)
        self._send(Pdu(bhs))

    # -- login -----------------------------------------------------------

    def _login_pdu(self, csg, nsg, transit, pairs, itt):
        flags = (csg << 2) | (nsg if transit else 0)
        if transit:
            flags |= FINAL
        bhs = new_bhs(LOGIN_REQ | IMMEDIATE, flags)
        bhs[8:14] = self.isid
        struct.pack_into('>H', bhs, 14, self.tsih)
        put32(bhs, 16, itt)
        put32(bhs, 24, self.cmdsn)
        put32(bhs, 28, self.expstatsn)
        self._send(Pdu(bhs, encode_keys(pairs)))
        rsp = self._receive()
        if rsp.opcode != LOGIN_RSP:
            raise ProtocolError('expected a login response, got opcode '
                                '0x%02x' % rsp.opcode)
        status_class, detail = rsp.bhs[36], rsp.bhs[37]
        if status_class:
            self._refused(status_class, detail)
        self.tsih = struct.unpack_from('>H', rsp.bhs, 14)[0]
        return rsp, dict(decode_keys(rsp.data))

    def _refused(self, status_class, detail):
        what = self.target or 'discovery'
        if status_class == 2 and detail in (1, 2):
            raise AuthenticationFailed(
                'iSCSI login to %s at %s:%d refused: authentication failed'
                % (what, self.host, self.port))
        if status_class == 2 and detail in (3, 4):
            raise TargetNotFound('iSCSI target %s not found at %s:%d'
                                 % (what, self.host, self.port))
        raise LoginFailed('iSCSI login to %s at %s:%d refused (status '
                          '0x%02x%02x)' % (what, self.host, self.port,
                                           status_class, detail),
                          status_class, detail)

    def _login(self):
        itt = self._next_itt()
        first = [('InitiatorName', self.initiator)]
        if self.discovery:
            first.append(('SessionType', 'Discovery'))
        else:
            first += [('SessionType', 'Normal'), ('TargetName', self.target)]
        first.append(('AuthMethod', 'CHAP,None' if self._chap else 'None'))
        rsp, keys = self._login_pdu(SECURITY, OPERATIONAL, False, first, itt)
        method = keys.get('AuthMethod', 'None')
        if method == 'CHAP':
            if not self._chap:
                raise AuthenticationFailed('the target requires CHAP')
            self._chap_exchange(itt)
        elif method != 'None':
            raise AuthenticationFailed('the target offers no method this '
                                       'initiator has (%s)' % method)
        else:
            rsp, keys = self._login_pdu(SECURITY, OPERATIONAL, True, [], itt)
        offer = [('HeaderDigest', 'None'), ('DataDigest', 'None'),
                 ('MaxRecvDataSegmentLength', str(MAX_RECV))]
        if not self.discovery:
            offer += [('InitialR2T', 'Yes'), ('ImmediateData', 'No'),
                      ('MaxBurstLength', '262144'),
                      ('FirstBurstLength', '65536'),
                      ('MaxConnections', '1'), ('DataPDUInOrder', 'Yes'),
                      ('DataSequenceInOrder', 'Yes'),
                      ('ErrorRecoveryLevel', '0')]
        for _ in range(8):
            rsp, keys = self._login_pdu(OPERATIONAL, FULL_FEATURE, True,
                                        offer, itt)
            self._negotiated(keys)
            if rsp.flags & FINAL and (rsp.flags & 0x03) == FULL_FEATURE:
                return
            offer = []
        raise ProtocolError('the target never ended the login')

    def _chap_exchange(self, itt):
        user, secret = self._chap
        _, keys = self._login_pdu(SECURITY, OPERATIONAL, False,
                                  [('CHAP_A', '5')], itt)
        if keys.get('CHAP_A') != '5':
            raise AuthenticationFailed('the target wants a CHAP algorithm '
                                       'other than MD5')
        try:
            ident = int(keys['CHAP_I'])
            challenge = _binary(keys['CHAP_C'])
        except (KeyError, ValueError):
            raise ProtocolError('the target sent no usable CHAP challenge')
        answer = '0x' + chap_response(ident, secret, challenge).hex()
        try:
            rsp, _ = self._login_pdu(SECURITY, OPERATIONAL, True,
                                     [('CHAP_N', user), ('CHAP_R', answer)],
                                     itt)
        except IscsiError as exc:
            if isinstance(exc, (AuthenticationFailed, LoginFailed)):
                raise
            # some targets just hang up on a wrong answer
            raise AuthenticationFailed('iSCSI login to %s at %s:%d refused: '
                                       'authentication failed'
                                       % (self.target or 'discovery',
                                          self.host, self.port))
        if not rsp.flags & FINAL:
            raise AuthenticationFailed('the target did not accept the CHAP '
                                       'answer')

    def _negotiated(self, keys):
        if 'MaxRecvDataSegmentLength' in keys:
            self.max_send = int(keys['MaxRecvDataSegmentLength'])

    # -- text and logout ---------------------------------------------------

    def send_targets(self):
        """SendTargets=All: [(target IQN, [portal 'host:port,tpgt', ...])]."""
        with self.lock:
            pairs, ttt = [], NO_TAG
            request = encode_keys([('SendTargets', 'All')])
            while True:
                bhs = new_bhs(TEXT_REQ, FINAL)
                put32(bhs, 16, self._next_itt())
                put32(bhs, 20, ttt)
                put32(bhs, 24, self.cmdsn)
                put32(bhs, 28, self.expstatsn)
                self.cmdsn += 1
                self._send(Pdu(bhs, request))
                rsp = self._receive()
                if rsp.opcode != TEXT_RSP:
                    raise ProtocolError('expected a text response')
                pairs += decode_keys(rsp.data)
                if not rsp.flags & 0x40:     # C: more to come
                    break
                ttt, request = rsp.u32(20), b''
        targets = []
        for key, value in pairs:
            if key == 'TargetName':
                targets.append((value, []))
            elif key == 'TargetAddress' and targets:
                targets[-1][1].append(value)
        return targets

    def logout(self):
        with self.lock:
            if self.sock is None:
                return
            try:
                bhs = new_bhs(LOGOUT_REQ | IMMEDIATE, FINAL)
                put32(bhs, 16, self._next_itt())
                put32(bhs, 24, self.cmdsn)
                put32(bhs, 28, self.expstatsn)
                self._send(Pdu(bhs))
                self._receive()
            except IscsiError:
                pass
            finally:
                self._drop()

    @property
    def alive(self):
        return self.sock is not None

    # -- SCSI --------------------------------------------------------------

    def command(self, lun, cdb, read=0, write=b''):
        """Run one SCSI command; returns the bytes read (up to ``read``)."""
        with self.lock:
            for attempt in range(4):
                try:
                    return self._command(lun, cdb, read, write)
                except ScsiError as exc:
                    # UNIT ATTENTION (after login, a reset, a new size):
                    # reported once, then the command goes through
                    if exc.sense_key != UNIT_ATTENTION or attempt == 3:
                        raise

    def _command(self, lun, cdb, read, write):
        itt = self._next_itt()
        flags = FINAL | 0x01                 # simple task attribute
        if read:
            flags |= 0x40
        if write:
            flags |= 0x20
        bhs = new_bhs(SCSI_CMD, flags)
        bhs[8:16] = encode_lun(lun)
        put32(bhs, 16, itt)
        put32(bhs, 20, read or len(write))
        put32(bhs, 24, self.cmdsn)
        put32(bhs, 28, self.expstatsn)
        bhs[32:32 + len(cdb)] = cdb
        self.cmdsn += 1
        self._send(Pdu(bhs))
        received = bytearray(read)
        got = 0
        while True:
            pdu = self._receive()
            if pdu.itt != itt:
                raise ProtocolError('a response for another task')
            if pdu.opcode == DATA_IN:
                offset = pdu.u32(40)
                received[offset:offset + len(pdu.data)] = pdu.data
                got = max(got, offset + len(pdu.data))
                if pdu.flags & 0x01:         # status in the last Data-In
                    self._check(pdu.bhs[3], b'')
                    return bytes(received[:got])
            elif pdu.opcode == R2T:
                self._data_out(lun, itt, pdu, write)
            elif pdu.opcode == SCSI_RSP:
                if pdu.bhs[2]:
                    raise ScsiError('the target failed the command '
                                    '(response 0x%02x)' % pdu.bhs[2],
                                    pdu.bhs[3])
                self._check(pdu.bhs[3], pdu.data)
                return bytes(received[:got])
            else:
                raise ProtocolError('unexpected opcode 0x%02x'
                                    % pdu.opcode)

    def _data_out(self, lun, itt, r2t, write):
        ttt, offset, length = r2t.u32(20), r2t.u32(40), r2t.u32(44)
        datasn = 0
        end = offset + length
        while offset < end:
            n = min(self.max_send, end - offset)
            bhs = new_bhs(DATA_OUT, FINAL if offset + n >= end else 0)
            bhs[8:16] = encode_lun(lun)
            put32(bhs, 16, itt)
            put32(bhs, 20, ttt)
            put32(bhs, 28, self.expstatsn)
            put32(bhs, 36, datasn)
            put32(bhs, 40, offset)
            self._send(Pdu(bhs, bytes(write[offset:offset + n])))
            offset += n
            datasn += 1

    @staticmethod
    def _check(status, sense):
        if status == GOOD:
            return
        key = asc = ascq = None
        if len(sense) >= 2:
            sense = sense[2:2 + struct.unpack('>H', sense[:2])[0]]
            if len(sense) >= 14 and sense[0] & 0x7f in (0x70, 0x71):
                key, asc, ascq = sense[2] & 0x0f, sense[12], sense[13]
            elif len(sense) >= 4 and sense[0] & 0x7f in (0x72, 0x73):
                key, asc, ascq = sense[1] & 0x0f, sense[2], sense[3]
        raise ScsiError('SCSI status 0x%02x, sense key %s, ASC/ASCQ '
                        '%s/%s' % (status, key, asc, ascq), status, key, asc,
                        ascq)

    def report_luns(self):
        """Every LUN the target reports (LUN 0 included), sorted."""
        length = 8 + 8 * 256
        cdb = struct.pack('>BBBxxxIxx', 0xa0, 0, 0, length)
        data = self.command(0, cdb, read=length)
        listed = struct.unpack('>I', data[:4])[0]
        luns = [decode_lun(data[i:i + 8])
                for i in range(8, min(8 + listed, len(data)), 8)]
        return sorted(luns)

    def inquiry(self, lun, page=None, length=255):
        if page is None:
            cdb = struct.pack('>BBBHx', 0x12, 0, 0, length)
        else:
            cdb = struct.pack('>BBBHx', 0x12, 1, page, length)
        return self.command(lun, cdb, read=length)

    def device_type(self, lun):
        """The peripheral device type (0: a disk) or None if no LU is
        connected there."""
        data = self.inquiry(lun)
        if data[0] >> 5 != 0:
            return None
        return data[0] & 0x1f

    def vendor(self, lun):
        data = self.inquiry(lun)
        return data[8:16].decode('ascii', 'replace').strip(), \
            data[16:32].decode('ascii', 'replace').strip()

    def serial(self, lun):
        data = self.inquiry(lun, page=0x80)
        return data[4:4 + data[3]].decode('ascii', 'replace').strip()

    def scsi_id(self, lun):
        """The LU's identifier as ``scsi_id -g`` prints it: the designator
        type as a hex digit, then the NAA or EUI-64 designator in hex, or
        the T10 vendor designator as text (blanks as underscores)."""
        data = self.inquiry(lun, page=0x83)
        end = 4 + struct.unpack('>H', data[2:4])[0]
        found = {}
        i = 4
        while i + 4 <= min(end, len(data)):
            code_set, kind = data[i] & 0x0f, data[i + 1] & 0x0f
            association = (data[i + 1] >> 4) & 0x03
            designator = data[i + 4:i + 4 + data[i + 3]]
            if association == 0 and kind not in found:
                found[kind] = (code_set, designator)
            i += 4 + data[i + 3]
        for kind in (3, 2, 1, 8):           # NAA, EUI-64, T10, SCSI name
            if kind in found:
                code_set, designator = found[kind]
                if code_set == 1:
                    return '%x%s' % (kind, designator.hex())
                text = designator.decode('ascii', 'replace').strip()
                return '%x%s' % (kind, '_'.join(text.split()))
        return ''

    def capacity(self, lun):
        """(number of blocks, block size) from READ CAPACITY(10), or (16)
        when the disk is too large for it."""
        data = self.command(lun, struct.pack('>B9x', 0x25), read=8)
        last, block = struct.unpack('>II', data[:8])
        if last == 0xffffffff:
            cdb = struct.pack('>BBxxxxxxxxIxx', 0x9e, 0x10, 32)
            data = self.command(lun, cdb, read=32)
            last, block = struct.unpack('>QI', data[:12])
        return last + 1, block

    def size(self, lun):
        blocks, block = self.capacity(lun)
        return blocks * block

    def read(self, lun, lba, blocks, block_size=512):
        cdb = struct.pack('>BBIBHx', 0x28, 0, lba, 0, blocks)
        return self.command(lun, cdb, read=blocks * block_size)

    def write(self, lun, lba, data, block_size=512):
        if len(data) % block_size:
            raise ValueError('data must be whole blocks')
        cdb = struct.pack('>BBIBHx', 0x2a, 0, lba, 0,
                          len(data) // block_size)
        self.command(lun, cdb, write=data)


def _binary(value):
    """A CHAP binary value: 0x... (hex) or 0b... (base64)."""
    if value[:2] in ('0x', '0X'):
        return bytes.fromhex(value[2:])
    if value[:2] in ('0b', '0B'):
        return base64.b64decode(value[2:])
    raise ValueError(value)


def discover(host, port, initiator, chap=None, timeout=TIMEOUT):
    """SendTargets discovery: [(target IQN, [portal, ...])]."""
    session = Session(host, port, initiator, None, chap, timeout)
    try:
        return session.send_targets()
    finally:
        session.logout()
