"""SDN_controller and the pool's CA certificates, as xapi keeps them.

A pool has at most one ``SDN_controller`` (xapi_sdn_controller.ml):
``introduce`` refuses a second one (``OPERATION_NOT_ALLOWED``); with
protocol ``pssl`` the address must be empty and the port 0 (dom0's OVSDB
then listens on 6640, where Xen Orchestra's SDN controller connects);
``ssl``: an address, port 0 stored as 6632.  xapi then runs its
``openvswitch-config-update`` plugin on every host, which points dom0's
Open vSwitch at the controller: ``del-manager``, ``del-ssl``, ``set-ssl``
with dom0's xapi certificate and the pool's ``sdn-controller-ca.pem``,
``set-manager pssl:<port>`` (or ``set-controller``-style ``ssl:`` for an
active one), and opens the port with ``firewall-port``.  The simulator
does the same to each host's dom0 switch when it has one (real dom0
networking, or an ``ovsdb-server`` a test serves at the host's
``var/run/openvswitch/db.sock``), and to its simulated firewall.

``pool.certificate_install(name, cert)`` puts a CA certificate into every
host's ``/etc/stunnel/certs/<name>`` (the simulated dom0 directory);
``certificate_list`` names them; ``certificate_uninstall`` removes one.
"""

import os
import re
import subprocess
import sys

from xapisim import plugins
from xapisim.errors import XapiError
from xapisim.rpc import handler

CERTS = os.path.join('etc', 'stunnel', 'certs')
SDN_CA = 'sdn-controller-ca.pem'
XAPI_PEM = os.path.join('etc', 'xensource', 'xapi-ssl.pem')
PSSL_PORT = 6640         # what dom0 listens on for a pssl controller
SSL_PORT = 6632          # an ssl controller's port 0
_NAME_RE = re.compile(r'^[A-Za-z0-9._-]{1,255}\Z')


def _vsctl(host, args):
    """ovs-vsctl on the host's dom0 switch; False when it has none."""
    sock = os.path.join(host.dom0_root, 'var', 'run', 'openvswitch',
                        'db.sock')
    if not os.path.exists(sock):
        return False
    proc = subprocess.run(['ovs-vsctl', '--timeout=60', '--db=unix:' + sock]
                          + args, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=120)
    if proc.returncode != 0:
        raise XapiError('XENAPI_PLUGIN_FAILURE', 'non-zero exit', '',
                        proc.stderr.decode(errors='replace'))
    return True


def _firewall(host, op, port):
    subprocess.run([sys.executable,
                    os.path.join(plugins.DOM0_MODULES, 'firewall-port'),
                    op, str(port), 'tcp'],
                   env={'DOM0_ROOT': host.dom0_root, 'PATH':
                        os.environ.get('PATH', '/usr/bin:/bin')},
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                   timeout=120, check=True)


def _config_update(ctx, controller):
    """openvswitch-config-update on every host: its switch's manager and
    SSL, and its firewall."""
    for host in ctx.pool.hosts:
        root = host.dom0_root
        args = ['--', 'del-manager', '--', 'del-ssl']
        if controller is not None:
            pem = os.path.join(root, XAPI_PEM)
            args += ['--', 'set-ssl', pem, pem,
                     os.path.join(root, CERTS, SDN_CA)]
            if controller['protocol'] == 'pssl':
                args += ['--', 'set-manager', 'pssl:%d' % PSSL_PORT]
            else:
                args += ['--', 'set-manager', 'ssl:%s:%d' % (
                    controller['address'], controller['port'])]
        _vsctl(host, args)
        if controller is not None and controller['protocol'] == 'pssl':
            _firewall(host, 'open', PSSL_PORT)


@handler('SDN_controller', 'introduce')
def sdn_introduce(ctx, protocol, address, port):
    if ctx.db.refs('SDN_controller'):
        raise XapiError('OPERATION_NOT_ALLOWED', 'SDN controller has been '
                        'configured. Please forget it first.')
    if protocol == 'pssl' and address:
        raise XapiError('INVALID_VALUE', 'address', address)
    if protocol == 'ssl' and not address:
        raise XapiError('INVALID_VALUE', 'address', address)
    if protocol == 'pssl' and port:
        raise XapiError('INVALID_VALUE', 'port', str(port))
    if not 0 <= port <= 65535:
        raise XapiError('INVALID_VALUE', 'port', str(port))
    values = {'protocol': protocol, 'address': address,
              'port': SSL_PORT if protocol == 'ssl' and not port else port}
    ref = ctx.db.create('SDN_controller', values)
    _config_update(ctx, values)
    return ref


@handler('SDN_controller', 'forget')
def sdn_forget(ctx, controller):
    ctx.db.destroy('SDN_controller', controller)
    _config_update(ctx, None)


def _check_name(name):
    if not _NAME_RE.match(name) or name.startswith('.'):
        raise XapiError('CERTIFICATE_NAME_INVALID', name)


@handler('pool', 'certificate_install')
def certificate_install(ctx, name, cert):
    _check_name(name)
    if '-----BEGIN CERTIFICATE-----' not in cert:
        raise XapiError('CERTIFICATE_CORRUPT', name)
    if name in certificate_list(ctx):
        raise XapiError('CERTIFICATE_ALREADY_EXISTS', name)
    for host in ctx.pool.hosts:
        folder = os.path.join(host.dom0_root, CERTS)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, name), 'w') as fh:
            fh.write(cert)


@handler('pool', 'certificate_list')
def certificate_list(ctx):
    folder = os.path.join(ctx.pool.master.dom0_root, CERTS)
    try:
        return sorted(os.listdir(folder))
    except FileNotFoundError:
        return []


@handler('pool', 'certificate_uninstall')
def certificate_uninstall(ctx, name):
    _check_name(name)
    if name not in certificate_list(ctx):
        raise XapiError('CERTIFICATE_DOES_NOT_EXIST', name)
    for host in ctx.pool.hosts:
        path = os.path.join(host.dom0_root, CERTS, name)
        if os.path.exists(path):
            os.unlink(path)
