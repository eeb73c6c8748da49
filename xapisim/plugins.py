"""host.call_plugin: run a plugin file as a process, the way xapi does.

xapi executes ``/etc/xapi.d/plugins/<name>`` with the XML-RPC call as its
only argument and reads an XML-RPC response from its stdout.  The
simulator runs the files of its plugins directory the same way (a file
without an execute bit fails, as execve fails for xapi), with
stand-ins for dom0's ``XenAPI`` and ``XenAPIPlugin`` modules on the
path, and ``DOM0_ROOT`` pointing at the simulated host's dom0 directory
(where ``var/lib/xcp/xapi`` is the host's xapi socket).  With real dom0
networking (``xapisim.dom0net``) a plugin runs inside its host's dom0
network namespace with ``OVS_RUNDIR``, ``OVS_DBDIR`` and ``OVS_LOGDIR``
naming the host's Open vSwitch, so that ``ovs-vsctl`` reaches that switch.
Without it a plugin runs in the caller's namespace, ``OVS_RUNDIR`` naming
the same directory (``var/run/openvswitch`` in the host's dom0 directory),
where a test may serve an ``ovsdb-server`` as dom0's database.
"""

import os
import signal
import stat
import subprocess
import sys
import xmlrpc.client

from xapisim.errors import XapiError

DOM0_MODULES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'dom0')

# A generous bound, so that a wedged plugin cannot hang a test forever.
PLUGIN_TIMEOUT = 3600


def default_plugins_dir():
    """The checkout's dom0_plugins/ directory, when run from a checkout."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    candidate = os.path.join(here, 'dom0_plugins', 'etc', 'xapi.d', 'plugins')
    return candidate if os.path.isdir(candidate) else None


def _executable(path):
    """execve would run it: a regular file this process may execute (for
    root: any of its execute bits is set)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and os.access(path, os.X_OK)


def call(pool, host, session, plugin, fn, args):
    plugins_dir = pool.options.plugins_dir
    if not plugins_dir or not os.path.isdir(plugins_dir) or \
            plugin not in os.listdir(plugins_dir):
        raise XapiError('XENAPI_MISSING_PLUGIN', plugin)
    path = os.path.join(plugins_dir, plugin)
    if not _executable(path):
        # xapi execs the file: forkexecd's child gets EACCES from execve
        # and exits 126 (127 for ENOENT), printing nothing
        raise XapiError('XENAPI_PLUGIN_FAILURE', 'non-zero exit', '', '')
    request = xmlrpc.client.dumps((session, args), fn)
    python = pool.options.plugin_python or sys.executable
    env = {
        'PATH': os.environ.get('PATH', '/usr/bin:/bin'),
        'PYTHONPATH': DOM0_MODULES,
        'PYTHONDONTWRITEBYTECODE': '1',
        'DOM0_ROOT': host.dom0_root,
        'LANG': 'C.UTF-8',
        # the simulated dom0's nftables: a stand-in keeping tables as text
        'NOVA_XEN_NFT': os.path.join(DOM0_MODULES, 'nft'),
        # and its xenstore: one file per node
        'NOVA_XEN_XENSTORE_WRITE': os.path.join(DOM0_MODULES,
                                                'xenstore-write'),
        # its firewall: xapi's firewall-port script and iptables -S over
        # rules kept as text
        'NOVA_XEN_FIREWALL_PORT': os.path.join(DOM0_MODULES, 'firewall-port'),
        'NOVA_XEN_IPTABLES': os.path.join(DOM0_MODULES, 'iptables'),
        # and its Open vSwitch: ovs-vsctl's default socket is
        # $OVS_RUNDIR/db.sock (an ovsdb-server a test or a world starts)
        'OVS_RUNDIR': os.path.join(host.dom0_root, 'var', 'run',
                                   'openvswitch'),
    }
    if 'COVERAGE_PROCESS_START' in os.environ:
        env['COVERAGE_PROCESS_START'] = os.environ['COVERAGE_PROCESS_START']
    argv = [python, path, request]
    if host.dom0 is not None:
        # real dom0 networking: the plugin runs in the host's dom0
        # namespace, its ovs-vsctl (no --db) talking to the host's switch
        env.update(host.dom0.env())
        argv = ['ip', 'netns', 'exec', host.dom0.netns] + argv
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env,
                            cwd=host.dom0_root)
    try:
        out, err = proc.communicate(timeout=PLUGIN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    out = out.decode('utf-8', 'replace')
    err = err.decode('utf-8', 'replace')
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        raise XapiError('XENAPI_PLUGIN_FAILURE', 'signal: %s' % name, out, err)
    if proc.returncode != 0:
        raise XapiError('XENAPI_PLUGIN_FAILURE', 'non-zero exit', out, err)
    try:
        (result,), _ = xmlrpc.client.loads(out)
    except xmlrpc.client.Fault as fault:
        raise XapiError('XENAPI_PLUGIN_FAILURE', 'fault',
                        str(fault.faultCode), fault.faultString)
    except Exception as exc:
        raise XapiError('XENAPI_PLUGIN_FAILURE',
                        'failed to parse plugin output', out, str(exc))
    if isinstance(result, dict) and result.get('Status') == 'Success' \
            and isinstance(result.get('Value'), str):
        return result['Value']
    if isinstance(result, dict) and result.get('Status') == 'Failure':
        desc = [str(d) for d in result.get('ErrorDescription', [])]
        if desc:
            raise XapiError(*desc)
    raise XapiError('XENAPI_PLUGIN_FAILURE', 'unexpected XMLRPC result', out,
                    '')
