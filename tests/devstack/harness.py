"""Run nova-xen's devstack plugin the way stack.sh does, without devstack.

One bash process per run, as stack.sh: ``errexit`` (and ``nounset``, which
devstack turns on with NOUNSET=1), the ``[[local|localrc]]`` values as
shell variables, ``VIRT_DRIVER`` defaulted as ``stackrc`` does, then
``override-defaults``, ``settings`` and each requested phase, with
``plugin.sh`` sourced from inside a function and given the mode and phase
as positional arguments.  devstack's functions are the stand-ins of
``devstack_shims.sh``: the ini files are real, everything else is recorded.
"""

import configparser
import importlib.util
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[2]
PLUGIN_DIR = REPO / 'devstack'
SHIMS = pathlib.Path(__file__).resolve().with_name('devstack_shims.sh')

PASSWORD = 'pw-Xen-s3cret'
URL = 'https://xcp-ng-1.example.com'
HOST_UUID = '8a3f6c0e-5d4b-4e2a-9c1f-0b7d2e6a4f31'

ALL_IN_ONE = ('key,mysql,rabbit,n-api,n-cond,n-sch,n-cpu,n-novnc,'
              'placement-api,g-api,q-svc,ovn-controller,ovn-northd,tempest')
CONTROLLER = ('key,mysql,rabbit,n-api,n-cond,n-sch,n-novnc,placement-api,'
              'g-api,q-svc,ovn-northd,tempest')
COMPUTE = 'n-cpu,placement-client,ovn-controller,q-ovn-metadata-agent'

# A local.conf for an all-in-one node
LOCALRC = {
    'ENABLED_SERVICES': ALL_IN_ONE,
    'XENAPI_CONNECTION_URL': URL,
    'XENAPI_PASSWORD': PASSWORD,
}

# Variables whose final values a run reports
REPORTED = (
    'VIRT_DRIVER', 'XENAPI_CONNECTION_URL', 'XENAPI_USER', 'XENAPI_PASSWORD',
    'XENAPI_CA_FILE', 'XENAPI_INSECURE', 'XENAPI_HOST_UUID',
    'XENAPI_SR_FILTER', 'NOVA_XEN_DIR', 'NOVA_XEN_PYTHON',
    'NOVA_XEN_INSTALL_DOM0_PLUGINS', 'XENAPI_DOM0_SSH',
    'XENAPI_DOM0_SSH_OPTIONS', 'NOVA_XEN_IMAGE_URL',
    'NOVA_XEN_IMAGE_DISK_FORMAT', 'NOVA_XEN_IMAGE_NAME',
    'NOVA_XEN_IMAGE_SIZE_MB',
)

STACK = ('stack pre-install', 'stack install', 'stack post-config',
         'stack extra', 'stack test-config')


def probe_module():
    """devstack/tools/driver_features.py, imported without running it."""
    spec = importlib.util.spec_from_file_location(
        'driver_features', PLUGIN_DIR / 'tools' / 'driver_features.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FEATURES = sorted(probe_module().FEATURES)


class Result(object):

    def __init__(self, root, process):
        self.root = root
        self.returncode = process.returncode
        self.stdout = process.stdout
        self.stderr = process.stderr
        self.output = process.stdout + process.stderr
        log = root / 'calls.log'
        self.calls = [shlex.split(line) for line in
                      (log.read_text().splitlines() if log.exists() else [])]
        self.vars = {}
        dump = root / 'vars'
        if dump.exists():
            for item in dump.read_bytes().split(b'\0'):
                if item:
                    name, _, value = item.decode().partition('=')
                    self.vars[name] = value

    def __repr__(self):
        # the end of the output: where a stack stops
        return '<run: status %d\nstdout:\n%s\nstderr:\n%s>' % (
            self.returncode, self.stdout[-3000:], self.stderr[-3000:])

    def path(self, name):
        return self.root / {
            'nova': 'etc/nova/nova.conf',
            'nova-cpu': 'etc/nova/nova-cpu.conf',
            'glance-api': 'etc/glance/glance-api.conf',
            'tempest': 'opt/stack/tempest/etc/tempest.conf',
        }[name]

    def conf(self, name):
        """The file parsed; DEFAULT is a section like the others."""
        parser = configparser.RawConfigParser(default_section='no-default')
        parser.optionxform = str
        with open(self.path(name)) as f:
            parser.read_file(f)
        return parser

    def calls_of(self, name):
        return [call[1:] for call in self.calls if call[0] == name]

    def files(self):
        return self.root / 'devstack' / 'files'


class Devstack(object):
    """A scratch node: ``run(*phases, **localrc)`` stacks it."""

    def __init__(self, testcase):
        self.root = pathlib.Path(tempfile.mkdtemp(prefix='devstack-'))
        testcase.addCleanup(shutil.rmtree, self.root, True)
        self.features = dict.fromkeys(FEATURES, False)
        self.python_stub = self.root / 'bin' / 'python-stub'
        # what the stand-in nova-xen-manage prints, and its exit status
        self.manage_output = ('nothing to change: 1 pool, 1 nova-xen '
                              'compute host\n')
        self.manage_status = 0
        self.write(self.python_stub, (
            '#!/bin/bash\n'
            '# the feature probe answers from $SHIM_ROOT/features\n'
            'if [[ "${1:-}" == */driver_features.py ]]; then\n'
            '    echo "probe $*" >> "$SHIM_ROOT/probe.log"\n'
            '    exec cat "$SHIM_ROOT/features"\n'
            'fi\n'
            '# nova-xen-manage is recorded, and answers from $SHIM_ROOT\n'
            'if [[ "${1:-} ${2:-}" == "-m nova_xen.cmd.manage" ]]; then\n'
            '    shift 2\n'
            '    { printf nova-xen-manage; printf " %%q" "$@"; echo; } '
            '>> "$SHIM_LOG"\n'
            '    cat "$SHIM_ROOT/manage-output"\n'
            '    exit "$(cat "$SHIM_ROOT/manage-status")"\n'
            'fi\n'
            'exec %s "$@"\n' % shlex.quote(sys.executable)), mode=0o755)

    def write(self, relative, text, mode=None):
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if mode is not None:
            path.chmod(mode)
        return path

    def fake_checkout(self, install_status=0):
        """A nova-xen tree whose dom0_plugins/install.sh only records."""
        top = self.root / 'fake-nova-xen'
        (top / 'nova_xen').mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / 'requirements.txt', top / 'requirements.txt')
        self.write(top / 'dom0_plugins' / 'install.sh', (
            '#!/bin/bash\n'
            '{ printf install.sh; printf " %%q" "$@"; echo; } '
            '>> "$SHIM_LOG"\n'
            'exit %d\n' % install_status), mode=0o755)
        return top

    def run(self, *phases, xtrace=False, use_stub=True, **localrc):
        values = dict(LOCALRC)
        if use_stub:
            values['NOVA_XEN_PYTHON'] = str(self.python_stub)
        values.update(localrc)
        self.write('localrc', ''.join(
            '%s=%s\n' % (name, shlex.quote(str(value)))
            for name, value in values.items() if value is not None))
        self.write('manage-output', self.manage_output)
        self.write('manage-status', '%d\n' % self.manage_status)
        self.write('features', ''.join(
            '%s %s\n' % (name, value)
            for name, value in sorted(self.features.items())))
        script = [
            'set -o errexit -o nounset',
            'source %s' % shlex.quote(str(SHIMS)),
            'source "$SHIM_ROOT/localrc"',
            '# stackrc',
            'VIRT_DRIVER=${VIRT_DRIVER:-libvirt}',
        ]
        if xtrace:
            script.append('set -o xtrace')
        script += [
            'source "$SHIM_PLUGIN_DIR/override-defaults"',
            'source "$SHIM_PLUGIN_DIR/settings"',
        ]
        script += ['run_plugin %s' % phase for phase in phases]
        script += [
            'set +o xtrace',
            'for _v in %s; do printf "%%s=%%s\\0" "$_v" "${!_v-}"; done '
            '> "$SHIM_ROOT/vars"' % ' '.join(REPORTED),
        ]
        (self.root / 'calls.log').unlink(missing_ok=True)
        env = {
            'PATH': os.environ.get('PATH', '/usr/bin:/bin'),
            'HOME': str(self.root),
            'LC_ALL': 'C.UTF-8',
            'SHIM_ROOT': str(self.root),
            'SHIM_LOG': str(self.root / 'calls.log'),
            'SHIM_PLUGIN_DIR': str(PLUGIN_DIR),
        }
        # Python run by the plugin imports this tree's nova_xen and xapisim,
        # as the tests themselves do
        env['PYTHONPATH'] = os.pathsep.join(
            [str(REPO)] + [p for p in os.environ.get(
                'PYTHONPATH', '').split(os.pathsep) if p])
        process = subprocess.run(
            ['bash', '-c', '\n'.join(script)], env=env, cwd=str(self.root),
            capture_output=True, text=True, timeout=120)
        return Result(self.root, process)
