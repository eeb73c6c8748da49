#!/usr/bin/env python3
"""nova-xen's host plugin: what the driver needs from dom0 that xapi lacks.

    host.call_plugin(host, 'nova_xen_host.py', FN, {'params': JSON})

console_log {"domid": int 1..32751, "max_bytes": int 1..1048576 = 102400}
    -> {"data": base64(zlib(the last max_bytes bytes of the guest's console
       log /var/log/xen/guest/console.<domid>)), "size": the log's size in
       bytes, "truncated": true when data holds less than the whole log}
    Fails NOVA_XEN_NO_CONSOLE_LOG [domid] when the domain has no log.
host_facts {}
    -> {"uptime": s, "loadavg": [1, 5, 15 min], "memory_total": bytes,
       "memory_free": bytes, "kernel_release": str, "root_free": bytes
       (df's Avail), "root_total": bytes}: dom0's own figures, which xapi
       does not report (its host metrics count the whole machine).
host_uptime {}
    -> {"uptime": s, "text": " 10:01:02 up 3 days,  4:05,  load average:
       0.10, 0.20, 0.30"}, what Nova's get_host_uptime reports.
vm_data_write {"domid": int, "key": "admin_password" (letters, digits, _,
    -, up to 4 levels split by /), "value": str up to 4096}
    -> {"path": "/local/domain/<domid>/vm-data/<key>"}: writes into the
       running domain's xenstore, where its guest agent reads it.  xapi
       copies a VM's xenstore_data there only when the domain is created,
       and keeps it in its database: a secret (a new admin password) goes
       this way instead, to the domain only.  The value never appears in
       a failure.  Fails NOVA_XEN_XENSTORE_FAILED [path, exit status,
       message].

Bad or unknown parameters fail NOVA_XEN_INVALID_ARGUMENT [name, reason];
anything unexpected NOVA_XEN_PLUGIN_ERROR [exception class, message].
plugin_api_version {} -> {"api_version": "1.1"} (every nova-xen plugin).

Under a simulator ($DOM0_ROOT set) files are read below $DOM0_ROOT; the
simulated dom0 has no /proc, so the /proc files of the machine running
the simulator are read instead (real values of that machine, never made
up), and os.uname() is that machine's kernel.
"""

import base64
import os
import re
import time
import zlib

import nova_xen_dom0lib as lib

CONSOLE_LOG = '/var/log/xen/guest/console.%d'
# Xen reserves domids from DOMID_FIRST_RESERVED (0x7ff0) up; 0 is dom0.
MAX_DOMID = 0x7ff0 - 1
DEFAULT_CONSOLE_BYTES = 100 * 1024
MAX_CONSOLE_BYTES = 1024 * 1024
VM_DATA_KEY = re.compile(r'^[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64}){0,3}$')
XENSTORE_TIMEOUT = 30


def _only(params, *names):
    """Refuse parameters the function does not take (typos, old names)."""
    for name in sorted(params):
        if name not in names:
            raise lib.InvalidArgument(name, 'is not a parameter')


def console_log(session, params):
    _only(params, 'domid', 'max_bytes')
    domid = lib.arg(params, 'domid', 'int', min=1, max=MAX_DOMID)
    max_bytes = lib.arg(params, 'max_bytes', 'int', DEFAULT_CONSOLE_BYTES,
                        min=1, max=MAX_CONSOLE_BYTES)
    path = lib.dom0_path(CONSOLE_LOG % domid)
    try:
        fh = open(path, 'rb')
    except FileNotFoundError:
        lib.fail('NOVA_XEN_NO_CONSOLE_LOG', domid)
    with fh:
        size = os.fstat(fh.fileno()).st_size
        start = max(0, size - max_bytes)
        fh.seek(start)
        # xenconsoled may append meanwhile: never return more than asked
        data = fh.read(max_bytes)
    return {'data': base64.b64encode(zlib.compress(data)).decode('ascii'),
            'size': size, 'truncated': start > 0}


# -- dom0 facts -----------------------------------------------------------

def _proc(name):
    """dom0's /proc/<name>: the machine's own /proc when dom0 is simulated.

    A simulated dom0 ($DOM0_ROOT) has no proc/ directory: the machine
    running the simulator stands in for it, with its real figures.
    """
    path = lib.dom0_path('/proc/' + name)
    if not os.path.exists(path):
        path = '/proc/' + name
    with open(path) as fh:
        return fh.read()


def _uptime():
    return float(_proc('uptime').split()[0])


def _loadavg():
    return [float(v) for v in _proc('loadavg').split()[:3]]


def _meminfo():
    """{field: bytes} of /proc/meminfo (its kB figures are KiB)."""
    info = {}
    for line in _proc('meminfo').splitlines():
        name, _, rest = line.partition(':')
        fields = rest.split()
        if fields and fields[0].isdigit():
            scale = 1024 if fields[1:] == ['kB'] else 1
            info[name.strip()] = int(fields[0]) * scale
    return info


def host_facts(session, params):
    _only(params)
    memory = _meminfo()
    root = os.statvfs(lib.dom0_path('/'))
    return {'uptime': _uptime(),
            'loadavg': _loadavg(),
            'memory_total': memory['MemTotal'],
            'memory_free': memory['MemFree'],
            'kernel_release': os.uname().release,
            'root_free': root.f_bavail * root.f_frsize,
            'root_total': root.f_blocks * root.f_frsize}


def uptime_text(now, seconds, loadavg):
    """The line `uptime` prints (procps' format, without the user count)."""
    minutes = int(seconds) // 60
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    up = ''
    if days:
        up = '%d day%s, ' % (days, '' if days == 1 else 's')
    if hours:
        up += '%2d:%02d' % (hours, minutes)
    else:
        up += '%d min' % minutes
    return ' %s up %s,  load average: %.2f, %.2f, %.2f' % (
        time.strftime('%H:%M:%S', now), up,
        loadavg[0], loadavg[1], loadavg[2])


def host_uptime(session, params):
    _only(params)
    seconds = _uptime()
    return {'uptime': seconds,
            'text': uptime_text(time.localtime(), seconds, _loadavg())}


# -- xenstore ---------------------------------------------------------------

def vm_data_write(session, params):
    _only(params, 'domid', 'key', 'value')
    domid = lib.arg(params, 'domid', 'int', min=1, max=MAX_DOMID)
    key = lib.arg(params, 'key', 'str', max_len=260)
    if not VM_DATA_KEY.match(key):
        raise lib.InvalidArgument('key', 'must be names of letters, digits, '
                                  '_ and - joined by /, at most 4')
    value = lib.arg(params, 'value', 'str', max_len=4096)
    path = '/local/domain/%d/vm-data/%s' % (domid, key)
    command = lib.find_command('xenstore-write', 'NOVA_XEN_XENSTORE_WRITE')
    if command is None:
        lib.fail('NOVA_XEN_XENSTORE_FAILED', '-', '-',
                 'xenstore-write is not installed in dom0')
    status, _, err = lib.run([command, path, value],
                             timeout=XENSTORE_TIMEOUT)
    if status is None:
        lib.fail('NOVA_XEN_XENSTORE_FAILED', path, 'timeout', 'no answer')
    if status != 0:
        message = err.decode('utf-8', 'replace').replace(value, '***')
        lib.fail('NOVA_XEN_XENSTORE_FAILED', path, status,
                 message.strip()[:500])
    return {'path': path}


if __name__ == '__main__':
    lib.main({'console_log': console_log, 'host_facts': host_facts,
              'host_uptime': host_uptime, 'vm_data_write': vm_data_write})
