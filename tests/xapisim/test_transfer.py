"""PUT /import_raw_vdi and GET /export_raw_vdi, as xapi serves them.

xapi answers an import with ``200 OK`` (and a ``task-id`` header) before
it reads the body; the outcome of the transfer is told by the task.
"""

import base64
import http.client
import io
import os
import socket
import struct
import threading
import time
import types
import unittest
import urllib.parse

from tests.xapisim import base
from tests.xapisim.base import MIB, SimTestCase
from tests.xapisim.test_vhd import (BLOCK, build_vhd, full_bitmap, pattern,
                                    sector_bitmap)
from xapisim import transfer
from xapisim import vhd
from xapisim import world

IO_ERROR = ['VDI_IO_ERROR', 'Device I/O errors']


class TransferTestCase(SimTestCase):
    """HTTP helpers shared by the transfer tests."""

    def address(self, url=None):
        parts = urllib.parse.urlsplit(url or self.master_url)
        return parts.hostname, parts.port

    def request(self, method, path, body=None, headers=None, url=None):
        """(status, headers as a lower-cased dict, body) of one request."""
        conn = http.client.HTTPConnection(*self.address(url), timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return (resp.status, {k.lower(): v for k, v in resp.getheaders()},
                    data)
        finally:
            conn.close()

    def query(self, **params):
        return urllib.parse.urlencode(params)

    def put(self, data, **params):
        params.setdefault('session_id', self.session._session)
        return self.request('PUT', '/import_raw_vdi?' + self.query(**params),
                            body=data)

    def raw_exchange(self, request, body=b'', end='read'):
        """Send bytes on a fresh socket; what the server answers.

        ``end``: 'read' reads the answer; 'half-close' first says we have
        nothing more to send; 'close' closes the socket at once.
        """
        sock = socket.create_connection(self.address(), timeout=30)
        try:
            try:
                sock.sendall(request + body)
            except OSError:
                pass                 # the server may give up on us early
            if end == 'close':
                return b''
            if end == 'half-close':
                sock.shutdown(socket.SHUT_WR)
            return base.read_until_close(sock)
        finally:
            sock.close()

    def put_raw(self, vdi, task, body, fmt='raw'):
        path = '/import_raw_vdi?' + self.query(
            vdi=vdi, task_id=task, format=fmt,
            session_id=self.session._session)
        head = ('PUT %s HTTP/1.1\r\nHost: xapi\r\nContent-Length: %d\r\n\r\n'
                % (path, len(body))).encode()
        return self.raw_exchange(head, body)

    def new_task(self, label='transfer'):
        return self.destroy_later('task', self.x.task.create(label, ''))

    def import_ok(self, vdi, data, **params):
        task = self.new_task()
        status, headers, _ = self.put(data, vdi=vdi, task_id=task, **params)
        self.assertEqual(200, status)
        record = self.wait_task(task)
        self.assertEqual('success', record['status'], record['error_info'])
        return record

    def export(self, vdi, **params):
        params.setdefault('session_id', self.session._session)
        return self.request('GET', '/export_raw_vdi?' + self.query(
            vdi=vdi, **params))

    def read_vdi(self, vdi):
        status, _, data = self.export(vdi, format='raw')
        self.assertEqual(200, status)
        return data

    def assertServing(self):
        """The server still answers HTTP handlers and XML-RPC."""
        self.assertTrue(self.x.VM.get_all())
        vdi = self.new_vdi(2 * MIB)
        self.import_ok(vdi, b'still alive')
        self.assertEqual(b'still alive', self.read_vdi(vdi)[:11])


def disk_with(size, regions):
    disk = bytearray(size)
    for offset, data in regions:
        disk[offset:offset + len(data)] = data
    return bytes(disk)


class ImportRaw(TransferTestCase):
    def test_import_with_client_task(self):
        vdi = self.new_vdi(8 * MIB)
        size = int(self.x.VDI.get_virtual_size(vdi))
        before = int(self.x.VDI.get_physical_utilisation(vdi))
        data = pattern(3 * MIB + 1234, 1)
        task = self.new_task()
        status, headers, _ = self.put(data, vdi=vdi, task_id=task,
                                      format='raw')
        self.assertEqual(200, status)
        self.assertEqual(task, headers.get('task-id'))
        record = self.wait_task(task)
        self.assertEqual('success', record['status'], record['error_info'])
        self.assertEqual('<value>%s</value>' % vdi, record['result'])
        self.assertEqual(data + bytes(size - len(data)), self.read_vdi(vdi))
        after = int(self.x.VDI.get_physical_utilisation(vdi))
        self.assertGreaterEqual(after - before, len(data) - 4096)

    def test_import_without_task_names_its_own(self):
        vdi = self.new_vdi(2 * MIB)
        status, headers, _ = self.put(b'hello', vdi=vdi)
        self.assertEqual(200, status)
        task = headers['task-id']
        self.assertTrue(task.startswith('OpaqueRef:'), task)
        record = self.wait_task(task)
        self.assertEqual('success', record['status'], record['error_info'])
        self.assertEqual('<value>%s</value>' % vdi, record['result'])
        self.assertEqual(b'hello', self.read_vdi(vdi)[:5])

    def test_vdi_by_uuid_and_session_in_cookie(self):
        vdi = self.new_vdi(2 * MIB)
        uuid = self.x.VDI.get_uuid(vdi)
        task = self.new_task()
        status, headers, _ = self.request(
            'PUT', '/import_raw_vdi?' + self.query(vdi=uuid, task_id=task),
            body=b'by uuid', headers={
                'Cookie': 'session_id=%s' % self.session._session})
        self.assertEqual(200, status)
        record = self.wait_task(task)
        self.assertEqual('<value>%s</value>' % vdi, record['result'])
        self.assertEqual(b'by uuid', self.read_vdi(vdi)[:7])

    def test_http_basic_auth(self):
        vdi = self.new_vdi(2 * MIB)
        task = self.new_task()
        token = base64.b64encode(('%s:%s' % (self.world['username'],
                                             self.world['password'])).encode())
        status, _, _ = self.request(
            'PUT', '/import_raw_vdi?' + self.query(vdi=vdi, task_id=task),
            body=b'basic', headers={'Authorization': 'Basic ' +
                                    token.decode()})
        self.assertEqual(200, status)
        self.assertEqual('success', self.wait_task(task)['status'])
        self.assertEqual(b'basic', self.read_vdi(vdi)[:5])

    def test_bad_basic_credentials(self):
        vdi = self.new_vdi(2 * MIB)
        token = base64.b64encode(b'root:wrong').decode()
        status, headers, _ = self.request(
            'PUT', '/import_raw_vdi?' + self.query(vdi=vdi), body=b'x',
            headers={'Authorization': 'Basic ' + token})
        self.assertEqual(401, status)
        self.assertIn('www-authenticate', headers)
        self.assertEqual(bytes(2 * MIB), self.read_vdi(vdi))

    def test_bad_session(self):
        vdi = self.new_vdi(2 * MIB)
        task = self.new_task()
        status, headers, _ = self.put(b'nope', vdi=vdi, task_id=task,
                                      session_id='OpaqueRef:bogus')
        self.assertEqual(401, status)
        self.assertTrue(headers['www-authenticate'].startswith('Basic realm='),
                        headers)
        record = self.wait_task(task)
        self.assertEqual('failure', record['status'])
        self.assertEqual(['SESSION_AUTHENTICATION_FAILED'],
                         record['error_info'])
        self.assertEqual(bytes(2 * MIB), self.read_vdi(vdi))

    def test_unknown_format(self):
        vdi = self.new_vdi(2 * MIB)
        task = self.new_task()
        status, _, _ = self.put(b'data', vdi=vdi, task_id=task, format='qcow9')
        self.assertEqual(404, status)
        record = self.wait_task(task)
        self.assertEqual('failure', record['status'])
        self.assertEqual('INTERNAL_ERROR', record['error_info'][0])
        self.assertEqual(bytes(2 * MIB), self.read_vdi(vdi))

    def test_format_is_case_insensitive(self):
        vdi = self.new_vdi(2 * MIB)
        self.import_ok(vdi, b'RAW', format='RAW')
        self.assertEqual(b'RAW', self.read_vdi(vdi)[:3])

    def test_unknown_or_missing_vdi(self):
        task = self.new_task()
        status, _, _ = self.put(b'x', vdi='OpaqueRef:no-such-vdi',
                                task_id=task)
        self.assertEqual(400, status)
        self.assertEqual('failure', self.wait_task(task)['status'])
        status, _, _ = self.put(b'x', vdi='00000000-0000-0000-0000-000000000000')
        self.assertEqual(400, status)
        status, _, _ = self.put(b'x')
        self.assertEqual(400, status)

    def test_chunked_transfer_encoding_refused(self):
        vdi = self.new_vdi(2 * MIB)
        task = self.new_task()
        path = '/import_raw_vdi?' + self.query(
            vdi=vdi, task_id=task, session_id=self.session._session)
        head = ('PUT %s HTTP/1.1\r\nHost: xapi\r\nTransfer-Encoding: chunked'
                '\r\n\r\n' % path).encode()
        reply = self.raw_exchange(head, b'5\r\nhello\r\n0\r\n\r\n')
        status = int(reply.split(b' ', 2)[1])
        self.assertEqual(404, status, reply[:200])
        record = self.wait_task(task)
        self.assertEqual('failure', record['status'])
        self.assertEqual(['INTERNAL_ERROR', 'Cannot handle encoding: chunked'],
                         record['error_info'])
        self.assertEqual(bytes(2 * MIB), self.read_vdi(vdi))
        self.assertServing()

    def test_body_longer_than_the_vdi(self):
        vdi = self.new_vdi(2 * MIB)
        task = self.new_task()
        self.put_raw(vdi, task, pattern(2 * MIB + 4096, 2))
        record = self.wait_task(task)
        self.assertEqual('failure', record['status'])
        self.assertEqual(IO_ERROR, record['error_info'])
        self.assertServing()

    def test_truncated_upload(self):
        for end in ('close', 'half-close'):
            vdi = self.new_vdi(2 * MIB)
            task = self.new_task()
            path = '/import_raw_vdi?' + self.query(
                vdi=vdi, task_id=task, session_id=self.session._session)
            head = ('PUT %s HTTP/1.1\r\nHost: xapi\r\nContent-Length: %d'
                    '\r\n\r\n' % (path, 1 * MIB)).encode()
            reply = self.raw_exchange(head, pattern(300 * 1024, 3), end=end)
            if end == 'half-close':
                self.assertTrue(reply.startswith(b'HTTP/1.1 200'), reply)
            record = self.wait_task(task)
            self.assertEqual('failure', record['status'], end)
            self.assertEqual(IO_ERROR, record['error_info'])
        self.assertServing()


class ImportSpliced(TransferTestCase):
    """Over plain HTTP xapisim splices an import's body into the VDI's
    file; what its buffered reads of the headers took comes first."""

    def test_a_body_sent_with_its_headers_in_one_piece(self):
        vdi = self.new_vdi(4 * MIB)
        data = pattern(3 * MIB + 1234, 21)
        task = self.new_task()
        reply = self.put_raw(vdi, task, data)
        self.assertTrue(reply.startswith(b'HTTP/1.1 200'), reply)
        self.assertEqual('success', self.wait_task(task)['status'])
        self.assertEqual(data + bytes(4 * MIB - len(data)),
                         self.read_vdi(vdi))

    def test_a_vhd_sent_with_its_headers_in_one_piece(self):
        size = 5 * MIB                       # its last block is half past
        vdi = self.new_vdi(size)
        image = build_vhd(size, {0: (full_bitmap(), pattern(BLOCK, 22)),
                                 1: (sector_bitmap([0, 9]),
                                     pattern(BLOCK, 23)),
                                 2: (full_bitmap(), pattern(BLOCK, 24))})
        task = self.new_task()
        self.put_raw(vdi, task, image, fmt='vhd')
        self.assertEqual('success', self.wait_task(task)['status'])
        expected = bytearray(size)
        expected[:BLOCK] = pattern(BLOCK, 22)
        for s in (0, 9):
            at = BLOCK + s * 512
            expected[at:at + 512] = pattern(BLOCK, 23)[s * 512:(s + 1) * 512]
        expected[2 * BLOCK:] = pattern(BLOCK, 24)[:MIB]
        got = self.read_vdi(vdi)       # the VDI may be rounded up
        self.assertEqual(bytes(expected), got[:size])
        self.assertEqual(bytes(len(got) - size), got[size:])

    def test_a_vhd_cut_inside_a_whole_block(self):
        image = build_vhd(4 * MIB, {0: (full_bitmap(), pattern(BLOCK, 25)),
                                    1: (full_bitmap(), pattern(BLOCK, 26))})
        for promised in (False, True):
            vdi = self.new_vdi(4 * MIB)
            task = self.new_task()
            body = image[:len(image) - BLOCK // 2]
            path = '/import_raw_vdi?' + self.query(
                vdi=vdi, task_id=task, format='vhd',
                session_id=self.session._session)
            # the client promises the body it sends, or the whole image
            head = ('PUT %s HTTP/1.1\r\nHost: xapi\r\nContent-Length: %d'
                    '\r\n\r\n' % (path, len(image if promised else body))
                    ).encode()
            self.raw_exchange(head, body, end='half-close')
            record = self.wait_task(task)
            self.assertEqual(('failure', IO_ERROR),
                             (record['status'], record['error_info']),
                             promised)
        self.assertServing()


class TransferNiceness(unittest.TestCase):
    """``transfer_nice``: a benchmark's xapi yields the CPU to the path
    it measures, in the threads that move VDI bytes only."""

    def niceness_seen(self, transfer_nice):
        pool = types.SimpleNamespace(
            options=world.Options(transfer_nice=transfer_nice))
        seen = []

        def run():
            transfer._yield_cpu(pool)
            seen.append(os.getpriority(os.PRIO_PROCESS,
                                       threading.get_native_id()))
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        return seen[0]

    def test_the_transfer_thread_yields_and_no_other(self):
        own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        self.assertEqual(max(own, 7), self.niceness_seen(7))
        self.assertEqual(own, self.niceness_seen(0))
        self.assertEqual(
            own, os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))


class ImportProgress(TransferTestCase):

    def test_progress_is_reported_while_the_body_arrives(self):
        size = 16 * MIB
        vdi = self.new_vdi(size)
        task = self.new_task()
        data = pattern(size, 4)
        path = '/import_raw_vdi?' + self.query(
            vdi=vdi, task_id=task, session_id=self.session._session)
        sock = socket.create_connection(self.address(), timeout=30)
        self.addCleanup(sock.close)
        sock.sendall(('PUT %s HTTP/1.1\r\nHost: xapi\r\nContent-Length: %d'
                      '\r\n\r\n' % (path, size)).encode())
        sock.sendall(data[:size // 2])
        # half the body is in: the task says so, and is still pending
        deadline = time.time() + 60
        progress = 0.0
        while progress < 0.4:
            self.assertLess(time.time(), deadline, progress)
            time.sleep(0.02)
            record = self.x.task.get_record(task)
            progress = record['progress']
        self.assertEqual('pending', record['status'])
        self.assertGreater(progress, 0.0)
        self.assertLess(progress, 1.0)
        self.assertLessEqual(progress, 0.51)
        sock.sendall(data[size // 2:])
        sock.shutdown(socket.SHUT_WR)
        reply = base.read_until_close(sock)
        self.assertTrue(reply.startswith(b'HTTP/1.1 200'), reply[:100])
        record = self.wait_task(task)
        self.assertEqual('success', record['status'], record['error_info'])
        self.assertEqual(1.0, record['progress'])
        self.assertEqual(data, self.read_vdi(vdi))


class ImportRefused(TransferTestCase):
    """xapi attaches the VDI read-write to dom0 before it reads a byte."""

    def refused(self, vdi, expected):
        before = self.read_vdi(vdi)
        task = self.new_task()
        reply = self.put_raw(vdi, task, pattern(MIB, 5))
        self.assertTrue(reply.startswith(b'HTTP/1.1 200'), reply[:100])
        record = self.wait_task(task)
        self.assertEqual('failure', record['status'])
        self.assertEqual(expected, record['error_info'])
        self.assertEqual(before, self.read_vdi(vdi))     # nothing written
        self.assertServing()

    def test_a_read_only_vdi(self):
        vdi = self.new_vdi(2 * MIB, read_only=True)
        self.refused(vdi, ['VDI_READONLY', vdi])

    def test_a_vdi_a_running_vm_has_attached(self):
        vdi = self.new_vdi(2 * MIB)
        vm = self.new_vm(name='disk-in-use')
        self.new_vbd(vm, vdi, mode='RW')
        self.x.VM.start(vm, False, False)
        self.refused(vdi, ['VDI_IN_USE', vdi])
        # attached read-only, it is still in use for a read-write attach
        self.x.VM.hard_shutdown(vm)
        ro = self.new_vdi(2 * MIB)
        other = self.new_vm(name='disk-read-only')
        self.new_vbd(other, ro, mode='RO')
        self.x.VM.start(other, False, False)
        self.refused(ro, ['VDI_IN_USE', ro])

    def test_a_vdi_whose_vm_is_halted_or_suspended_takes_bytes(self):
        vdi = self.new_vdi(2 * MIB)
        vm = self.new_vm(name='disk-idle')
        self.new_vbd(vm, vdi, mode='RW')
        self.import_ok(vdi, b'halted')
        self.x.VM.start(vm, False, False)
        self.x.VM.suspend(vm)
        self.import_ok(vdi, b'suspended')
        self.assertEqual(b'suspended', self.read_vdi(vdi)[:9])
        self.x.VM.hard_shutdown(vm)

    def test_a_sharable_vdi_takes_bytes_while_attached(self):
        vdi = self.new_vdi(2 * MIB, sharable=True)
        vm = self.new_vm(name='disk-shared')
        self.new_vbd(vm, vdi, mode='RW')
        self.x.VM.start(vm, False, False)
        self.import_ok(vdi, b'shared')
        self.x.VM.hard_shutdown(vm)


class ImportVhd(TransferTestCase):
    def test_dynamic_vhd_from_the_writer(self):
        vdi = self.new_vdi(8 * MIB)
        size = int(self.x.VDI.get_virtual_size(vdi))
        disk = disk_with(size, [(4096, pattern(5000, 4)),
                                (2 * BLOCK + 17, pattern(BLOCK - 17, 5))])
        image = b''.join(vhd.write_vhd(
            size, [0, 2], lambda i: disk[i * BLOCK:(i + 1) * BLOCK]))
        record = self.import_ok(vdi, image, format='vhd')
        self.assertEqual('<value>%s</value>' % vdi, record['result'])
        self.assertEqual(disk, self.read_vdi(vdi))

    def test_hand_built_vhd_with_partial_bitmap(self):
        vdi = self.new_vdi(4 * MIB)
        data = pattern(BLOCK, 6)
        present = [0, 7, 8, 100, 4095]
        image = build_vhd(4 * MIB, {0: (full_bitmap(), pattern(BLOCK, 7)),
                                    1: (sector_bitmap(present), data)})
        self.import_ok(vdi, image, format='vhd')
        expected = bytearray(pattern(BLOCK, 7) + bytes(BLOCK))
        for s in present:
            at = BLOCK + s * 512
            expected[at:at + 512] = data[s * 512:(s + 1) * 512]
        self.assertEqual(bytes(expected), self.read_vdi(vdi))

    def test_vhd_with_bad_checksum(self):
        vdi = self.new_vdi(4 * MIB)
        image = build_vhd(4 * MIB, {0: (full_bitmap(), pattern(BLOCK, 8))},
                          corrupt_footer=True)
        self._assert_io_error(vdi, image)

    def test_not_a_vhd(self):
        vdi = self.new_vdi(4 * MIB)
        self._assert_io_error(vdi, pattern(MIB, 9))

    def test_vhd_bigger_than_the_vdi(self):
        vdi = self.new_vdi(2 * MIB)
        image = build_vhd(4 * MIB, {1: (full_bitmap(), pattern(BLOCK, 10))})
        self._assert_io_error(vdi, image)

    def _assert_io_error(self, vdi, image):
        task = self.new_task()
        # xapi gives up reading at the first error and closes: the client
        # may or may not get to read the 200 it was sent first
        reply = self.put_raw(vdi, task, image, fmt='vhd')
        if reply:
            self.assertTrue(reply.startswith(b'HTTP/1.1 200 OK\r\n'), reply)
            self.assertIn(('\r\ntask-id: %s\r\n' % task).encode(), reply)
        record = self.wait_task(task)
        self.assertEqual('failure', record['status'])
        self.assertEqual(IO_ERROR, record['error_info'])
        self.assertServing()


class Export(TransferTestCase):
    def setUp(self):
        super(Export, self).setUp()
        self.vdi = self.new_vdi(8 * MIB)
        self.size = int(self.x.VDI.get_virtual_size(self.vdi))
        self.disk = disk_with(self.size, [(0, pattern(1000, 11)),
                                          (5 * MIB, pattern(MIB, 12))])
        # imported as a sparse VHD: blocks 1 and 3 are never written
        image = b''.join(vhd.write_vhd(
            self.size, [0, 2],
            lambda i: self.disk[i * BLOCK:(i + 1) * BLOCK]))
        self.import_ok(self.vdi, image, format='vhd')

    def test_raw(self):
        uuid = self.x.VDI.get_uuid(self.vdi)
        status, headers, data = self.export(self.vdi, format='raw')
        self.assertEqual(200, status)
        self.assertEqual(self.size, len(data))
        self.assertEqual(self.disk, data)
        self.assertEqual('attachment; filename="%s.raw"' % uuid,
                         headers['content-disposition'])
        self.assertEqual('application/octet-stream', headers['content-type'])
        self.assertTrue(headers['task-id'].startswith('OpaqueRef:'))
        # no length: the body ends when the server closes the connection
        self.assertNotIn('content-length', headers)
        self.assertNotIn('transfer-encoding', headers)
        self.assertEqual('close', headers['connection'].lower())

    def test_raw_is_the_default_and_vdi_may_be_a_uuid(self):
        uuid = self.x.VDI.get_uuid(self.vdi)
        task = self.new_task()
        status, headers, data = self.export(uuid, task_id=task)
        self.assertEqual(200, status)
        self.assertEqual(self.disk, data)
        self.assertEqual(task, headers['task-id'])
        self.assertEqual('success', self.wait_task(task)['status'])

    def test_vhd(self):
        uuid = self.x.VDI.get_uuid(self.vdi)
        status, headers, data = self.export(self.vdi, format='vhd')
        self.assertEqual(200, status)
        self.assertEqual('application/vhd', headers['content-type'])
        self.assertEqual('attachment; filename="%s.vhd"' % uuid,
                         headers['content-disposition'])
        self.assertNotIn('content-length', headers)
        self.assertEqual(b'conectix', data[:8])
        self.assertEqual((vhd.TYPE_DYNAMIC,),
                         struct.unpack_from('>I', data, 60))
        disk = bytearray(self.size)
        blocks = set()

        def write(offset, chunk):
            blocks.add(offset // BLOCK)
            disk[offset:offset + len(chunk)] = chunk
        stream = io.BytesIO(data)
        self.assertEqual(self.size, vhd.read_vhd(stream.read, self.size,
                                                 write))
        self.assertEqual(self.disk, bytes(disk))
        # sparse: blocks 0 and 2 hold data, 1 and 3 were never written
        self.assertEqual({0, 2}, blocks)

    def test_vhd_exports_round_trip_through_import(self):
        status, _, image = self.export(self.vdi, format='vhd')
        self.assertEqual(200, status)
        copy = self.new_vdi(8 * MIB)
        self.import_ok(copy, image, format='vhd')
        self.assertEqual(self.disk, self.read_vdi(copy))

    def test_differencing_export_against_a_base(self):
        base = self.x.VDI.snapshot(self.vdi, {})
        self.destroy_later('VDI', base)
        changed = bytearray(self.disk)
        changed[0:1000] = bytes(1000)                  # block 0 back to zero
        changed[3 * BLOCK + 5:3 * BLOCK + 9] = b'new!'  # block 3 now used
        self.import_ok(self.vdi, bytes(changed))
        base_uuid = self.x.VDI.get_uuid(base)
        for ref in (base, base_uuid):
            status, _, image = self.export(self.vdi, format='vhd', base=ref)
            self.assertEqual(200, status)
            disk = bytearray(self.disk)        # the base's content
            blocks = set()

            def write(offset, chunk):
                blocks.add(offset // BLOCK)
                disk[offset:offset + len(chunk)] = chunk
            vhd.read_vhd(io.BytesIO(image).read, self.size, write)
            self.assertEqual({0, 3}, blocks)
            self.assertEqual(bytes(changed), bytes(disk))

    def test_export_needs_a_session(self):
        status, headers, _ = self.export(self.vdi, session_id='OpaqueRef:x')
        self.assertEqual(401, status)
        self.assertIn('www-authenticate', headers)
        status, _, _ = self.request('GET', '/export_raw_vdi?vdi=' + self.vdi)
        self.assertEqual(401, status)

    def test_export_unknown_vdi_or_format(self):
        status, _, _ = self.export('OpaqueRef:none', format='raw')
        self.assertEqual(400, status)
        status, _, _ = self.export(self.vdi, format='tarball')
        self.assertEqual(404, status)

    def test_connection_closes_after_the_body(self):
        path = '/export_raw_vdi?' + self.query(
            vdi=self.vdi, format='raw', session_id=self.session._session)
        sock = socket.create_connection(self.address(), timeout=60)
        self.addCleanup(sock.close)
        sock.sendall(('GET %s HTTP/1.1\r\nHost: xapi\r\n\r\n'
                      % path).encode())
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                self.fail('the connection stays open after the body')
            if not chunk:
                break
            chunks.append(chunk)
        head, _, body = b''.join(chunks).partition(b'\r\n\r\n')
        self.assertTrue(head.startswith(b'HTTP/1.1 200'), head)
        self.assertEqual(self.disk, body)
