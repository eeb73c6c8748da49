"""tools/minicloud/tempest.sh (tox -e tempest) without a cloud or Tempest.

Tempest finds nova_xen_tempest through the ``tempest.test_plugins`` entry
point of its own venv, never through the current directory, and a suite of
the run's regex with no test to run or no result fails the run: a silent
zero is not a pass.  The Tempest venv is a real venv (without pip) whose
``pip``, ``tempest``, ``stestr`` and ``subunit2csv`` are stand-ins: pip
records its arguments and, for ``-e PATH``, registers the entry point as an
editable install does; tempest lists $SHIM_ROOT/listing.
"""

import configparser
import csv
import glob
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import unittest

from tests.devstack.harness import REPO

TOOLS = REPO / 'tools' / 'minicloud'
REGEX = r'^(tempest\.api\.compute|nova_xen_tempest)\.'

COMPUTE_TESTS = [
    'tempest.api.compute.servers.test_servers.ServersTestJSON.'
    'test_update_server_name[id-5e6ccff8-349d-4852-a8b3-055df7988dd2]',
    'tempest.api.compute.admin.test_hypervisor.HypervisorAdminTestJSON.'
    'test_get_hypervisor_list[id-7f0ceacd-c64d-4e96-b8ee-d02943142cc5]',
]
SCENARIO_REGEX = (r'^(tempest\.api\.compute|tempest\.scenario'
                  r'|nova_xen_tempest)\.')
SCENARIO_TESTS = [
    'tempest.scenario.test_server_basic_ops.TestServerBasicOps.'
    'test_server_basic_ops[compute,id-7fff3fb3-91d8-4fd0-bd7d-0204f1f180ba,'
    'network,smoke]',
]
XEN_TESTS = [
    'nova_xen_tempest.tests.api.test_servers.XenServersTest.'
    'test_vm_is_on_a_pool_host[id-0b7d2e6a-4f31-4e2a-9c1f-8a3f6c0e5d4b]',
]

# The pip of the Tempest venv: `install ... -e PATH` leaves what an
# editable install of nova-xen leaves (its entry points; PATH, where
# nova_xen_tempest is, on sys.path) unless SHIM_PIP_REGISTERS=0
PIP = r'''#!/bin/bash
{ printf pip; printf ' %%q' "$@"; echo; } >> "$SHIM_LOG"
[[ ${SHIM_PIP_REGISTERS:-1} == 1 ]] || exit 0
path=
while [[ $# -gt 0 ]]; do
    [[ $1 == -e ]] && path=$2
    shift
done
[[ -n $path ]] || exit 0
site=%(site)s
rm -rf "$site/nova_xen-0.1.0.dist-info" "$site/__editable__.nova_xen.pth"
mkdir "$site/nova_xen-0.1.0.dist-info"
printf 'Metadata-Version: 2.1\nName: nova_xen\nVersion: 0.1.0\n' \
    > "$site/nova_xen-0.1.0.dist-info/METADATA"
printf '[tempest.test_plugins]\nnova_xen = %%s\n' \
    'nova_xen_tempest.plugin:NovaXenTempestPlugin' \
    > "$site/nova_xen-0.1.0.dist-info/entry_points.txt"
echo "$path" > "$site/__editable__.nova_xen.pth"
'''

# tempest run: --list-tests prints $SHIM_ROOT/listing; a run exits
# $SHIM_RUN_STATUS
TEMPEST = r'''#!/bin/bash
{ printf tempest; printf ' %q' "$@"; echo; } >> "$SHIM_LOG"
echo "${SSH_AUTH_SOCK-unset}" > "$SHIM_ROOT/ssh-agent"
for arg in "$@"; do
    if [[ $arg == --list-tests ]]; then
        exec cat "$SHIM_ROOT/listing"
    fi
done
exit "${SHIM_RUN_STATUS:-0}"
'''

# What the plugin imports, as Tempest's venv has it: with these,
# `import nova_xen_tempest.plugin` works from the checkout's root
STUBS = {
    'tempest/__init__.py': '',
    'tempest/test_discover/__init__.py': '',
    'tempest/test_discover/plugins.py': (
        'class TempestPlugin(object):\n    pass\n'),
    'oslo_config/__init__.py': '',
    'oslo_config/cfg.py': (
        'def __getattr__(name):\n'
        '    return lambda *args, **kwargs: None\n'),
}


def summary_module():
    spec = importlib.util.spec_from_file_location(
        'tempest_summary', TOOLS / 'tempest_summary.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TempestShTestCase(unittest.TestCase):
    """A minicloud directory whose tempest-venv is a venv of stand-ins."""

    def setUp(self):
        super().setUp()
        self.root = tempfile.mkdtemp(prefix='minicloud-tempest-')
        self.addCleanup(shutil.rmtree, self.root, True)
        self.dir = os.path.join(self.root, 'minicloud')
        self.venv = os.path.join(self.dir, 'tempest-venv')
        self.log = os.path.join(self.root, 'calls.log')
        subprocess.run([sys.executable, '-m', 'venv', '--without-pip',
                        self.venv], check=True, timeout=60)
        self.site, = glob.glob(os.path.join(
            self.venv, 'lib', 'python*', 'site-packages'))
        for name, text in STUBS.items():
            self.write(os.path.join(self.site, name), text)
        bin_dir = os.path.join(self.venv, 'bin')
        self.write(os.path.join(bin_dir, 'pip'),
                   PIP % {'site': shlex.quote(self.site)}, 0o755)
        self.write(os.path.join(bin_dir, 'tempest'), TEMPEST, 0o755)
        self.write(os.path.join(bin_dir, 'stestr'), '#!/bin/bash\n', 0o755)
        self.write(os.path.join(bin_dir, 'subunit2csv'),
                   '#!/bin/bash\nexec cat "$SHIM_ROOT/results.csv"\n', 0o755)
        self.write(os.path.join(self.dir, 'tempest', '.stestr.conf'), '')
        os.makedirs(os.path.join(self.dir, 'log'))     # made by ``up``
        self.write(os.path.join(self.root, 'exclude.txt'),
                   '# nothing excluded\n')
        self.listing(COMPUTE_TESTS + XEN_TESTS)
        self.results([(test, 'success') for test in COMPUTE_TESTS +
                      XEN_TESTS])

    def write(self, path, text, mode=None):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(text)
        if mode is not None:
            os.chmod(path, mode)

    def listing(self, test_ids):
        """What ``tempest run --list-tests`` prints."""
        self.write(os.path.join(self.root, 'listing'), ''.join(
            '%s\n' % test_id for test_id in
            ['{0} stestr: discovering tests'] + test_ids))

    def results(self, rows):
        """The run's results, as subunit2csv writes them."""
        with open(os.path.join(self.root, 'results.csv'), 'w',
                  newline='') as f:
            writer = csv.writer(f)
            writer.writerow(['test', 'status', 'start_time', 'stop_time'])
            for test, status in rows:
                writer.writerow([test, status, '', ''])

    def bash(self, script, cwd=None, **env):
        """script after tempest.sh is sourced as minicloud.sh sources it,
        its packages installed once (the stamp); in the checkout's root
        unless told."""
        prologue = (
            'set -o errexit -o nounset -o pipefail\n'
            'source %(tools)s/common.sh\n'
            'source %(tools)s/devstack_functions.sh\n'
            'source %(tools)s/ovn.sh\n'
            'source %(tools)s/tempest.sh\n'
            'MC_TEMPEST_EXCLUDE=$SHIM_ROOT/exclude.txt\n'
            'TEMPEST_CONFIG=$MC_TEMPEST_DIR/etc/tempest.conf\n'
            'printf "%%s\\n" "${MC_TEMPEST_PACKAGES[@]}" '
            '> "$MC_TEMPEST_VENV/.minicloud-packages"\n'
        ) % {'tools': shlex.quote(str(TOOLS))}
        environ = {
            'PATH': os.environ.get('PATH', '/usr/bin:/bin'),
            'HOME': self.root,
            # the API suites only, unless a test says ovn
            'MINICLOUD_NEUTRON': 'noagent',
            'LC_ALL': 'C.UTF-8',
            'MINICLOUD_DIR': self.dir,
            'SHIM_ROOT': self.root,
            'SHIM_LOG': self.log,
        }
        environ.update(env)
        return subprocess.run(
            ['bash', '-c', prologue + script], env=environ,
            cwd=str(cwd or REPO), capture_output=True, text=True,
            timeout=60)

    def calls(self, name):
        if not os.path.exists(self.log):
            return []
        with open(self.log) as f:
            return [shlex.split(line)[1:] for line in f
                    if line.split()[0] == name]

    def register(self, path):
        """An editable install of the nova-xen at path, as pip leaves it."""
        subprocess.run([os.path.join(self.venv, 'bin', 'pip'), 'install',
                        '-e', path],
                       env={'PATH': os.environ.get('PATH', '/usr/bin:/bin'),
                            'SHIM_LOG': os.devnull},
                       check=True, timeout=60)


class InstallTest(TempestShTestCase):
    """mc_tempest_install: the plugin as Tempest sees it, the entry point."""

    EDITABLE = ['install', '--disable-pip-version-check', '--no-deps', '-e',
                str(REPO)]

    def test_importable_from_the_checkout_is_not_registered(self):
        # from the checkout's root nova_xen_tempest.plugin imports (the
        # current directory), yet Tempest would find no plugin
        probe = subprocess.run(
            [os.path.join(self.venv, 'bin', 'python3'), '-c',
             'import nova_xen_tempest.plugin'], cwd=str(REPO),
            env={'PATH': os.environ.get('PATH', '/usr/bin:/bin')},
            capture_output=True, text=True, timeout=60)
        self.assertEqual(0, probe.returncode, probe.stderr)

        result = self.bash('mc_tempest_install')
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual([self.EDITABLE], self.calls('pip'))
        self.assertIn('registering the nova_xen_tempest plugin',
                      result.stdout)

        # registered now: the next run installs nothing
        os.unlink(self.log)
        result = self.bash('mc_tempest_install')
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual([], self.calls('pip'))

    def test_registered_from_the_checkout(self):
        self.register(str(REPO))
        for cwd in (REPO, self.root):
            result = self.bash('mc_tempest_install', cwd=cwd)
            self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual([], self.calls('pip'))

    def test_registered_from_another_checkout(self):
        # Tempest would run another tree's tests: this one's replace them
        other = os.path.join(self.root, 'other-nova-xen')
        self.write(os.path.join(other, 'nova_xen_tempest', '__init__.py'), '')
        self.register(other)
        result = self.bash('mc_tempest_install')
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual([self.EDITABLE], self.calls('pip'))
        self.assertIn('not in %s' % REPO, result.stdout)

    def test_fails_if_the_install_registers_nothing(self):
        result = self.bash('mc_tempest_install', SHIM_PIP_REGISTERS='0')
        self.assertNotEqual(0, result.returncode)
        self.assertEqual([self.EDITABLE], self.calls('pip'))
        self.assertIn('left nova_xen_tempest unregistered', result.stderr)


class ListTest(TempestShTestCase):
    """mc_tempest_list: each suite of the regex has tests to run."""

    def list_tests(self, regex=REGEX):
        return self.bash('mc_tempest_list %s "$SHIM_ROOT/selected.txt"'
                         % shlex.quote(regex))

    def test_each_suite_has_tests(self):
        result = self.list_tests()
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertIn('tempest.api.compute: 2 tests to run', result.stdout)
        self.assertIn('nova_xen_tempest: 1 tests to run', result.stdout)
        listed = self.calls('tempest')
        self.assertEqual(1, len(listed))
        self.assertIn('--list-tests', listed[0])
        self.assertEqual(REGEX, listed[0][listed[0].index('--regex') + 1])
        with open(os.path.join(self.root, 'selected.txt')) as f:
            self.assertEqual(len(COMPUTE_TESTS + XEN_TESTS) + 1,
                             len(f.read().splitlines()))

    def test_plugin_not_seen(self):
        # issue 14: Tempest without the plugin lists Tempest's tests only
        self.listing(COMPUTE_TESTS)
        result = self.list_tests()
        self.assertEqual(1, result.returncode)
        self.assertIn('nova_xen_tempest: 0 tests to run', result.stdout)
        self.assertIn('tempest: nova_xen_tempest would run no test',
                      result.stderr)
        self.assertIn('tempest run not started', result.stderr)

    def test_suite_all_excluded(self):
        self.write(os.path.join(self.root, 'exclude.txt'),
                   '^nova_xen_tempest\\.  # not here\n')
        result = self.list_tests()
        self.assertEqual(1, result.returncode)
        self.assertIn('nova_xen_tempest would run no test', result.stderr)

    def test_suites_of_a_user_regex(self):
        regex = (r'^(tempest\.api\.compute\.servers'
                 r'|nova_xen_tempest\.tests\.api\.test_nothing)')
        result = self.list_tests(regex)
        self.assertEqual(1, result.returncode)
        self.assertIn('tempest.api.compute.servers: 1 tests to run',
                      result.stdout)
        self.assertIn(
            'nova_xen_tempest.tests.api.test_nothing would run no test',
            result.stderr)

    def test_a_regex_without_alternatives_is_one_suite(self):
        result = self.list_tests(r'tempest\.api\.compute\.admin')
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertIn('tempest.api.compute.admin: 1 tests to run',
                      result.stdout)
        result = self.list_tests(r'tempest\.api\.compute\.volumes')
        self.assertEqual(1, result.returncode)


class SummaryTest(TempestShTestCase):
    """mc_tempest_summary: each suite of the regex has results."""

    def summary(self):
        listed = self.bash('mc_tempest_list %s "$SHIM_ROOT/selected.txt"'
                           % shlex.quote(REGEX))
        self.assertEqual(0, listed.returncode, listed.stderr)
        return self.bash('mc_tempest_summary %s "$SHIM_ROOT/selected.txt" 75'
                         % shlex.quote(REGEX))

    def test_each_suite_has_results(self):
        self.results([(COMPUTE_TESTS[0], 'success'),
                      (COMPUTE_TESTS[1], 'skip'),
                      ('setUpClass (%s)' % XEN_TESTS[0].rsplit('.', 1)[0],
                       'fail')])
        result = self.summary()
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertIn('passed 1, failed 1, skipped 1', result.stdout)
        self.assertIn('tempest.api.compute: run 2, passed 1, failed 0, '
                      'skipped 1', result.stdout)
        self.assertIn('nova_xen_tempest: run 1, passed 0, failed 1, '
                      'skipped 0', result.stdout)

    def test_failures_of_every_spelling(self):
        # subunit2csv writes "failure" (and "error") for a failed test
        self.results([(COMPUTE_TESTS[0], 'failure'),
                      (COMPUTE_TESTS[1], 'error'),
                      (XEN_TESTS[0], 'fail')])
        result = self.summary()
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertIn('passed 0, failed 3, skipped 0\n', result.stdout)
        self.assertIn('tempest.api.compute: run 2, passed 0, failed 2, '
                      'skipped 0', result.stdout)
        self.assertEqual(3, result.stdout.count('  FAILED: '))

    def test_suite_without_results(self):
        self.results([(test, 'success') for test in COMPUTE_TESTS])
        result = self.summary()
        self.assertEqual(1, result.returncode)
        self.assertIn('nova_xen_tempest: run 0', result.stdout)
        self.assertIn('the run has no result of nova_xen_tempest',
                      result.stderr)


class RunTest(TempestShTestCase):
    """mc_tempest as tox -e tempest runs it, the cloud already up."""

    def tempest(self, **env):
        return self.bash(
            '# the cloud is up and configured\n'
            'function mc_pid { [[ $1 == n-api ]]; }\n'
            'function mc_status { :; }\n'
            'function mc_tempest_install { :; }\n'
            'function mc_tempest_configure { :; }\n'
            'mc_tempest\n', **env)

    def runs(self):
        return [call for call in self.calls('tempest')
                if '--list-tests' not in call]

    def test_passes(self):
        result = self.tempest()
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual(1, len(self.runs()))

    def test_plugin_not_seen_fails_before_the_run(self):
        self.listing(COMPUTE_TESTS)
        self.results([(test, 'success') for test in COMPUTE_TESTS])
        result = self.tempest()
        self.assertNotEqual(0, result.returncode)
        self.assertIn('nova_xen_tempest would run no test', result.stderr)
        self.assertEqual([], self.runs())

    def test_suite_without_results_fails(self):
        self.results([(test, 'success') for test in COMPUTE_TESTS])
        result = self.tempest()
        self.assertEqual(1, result.returncode)
        self.assertEqual(1, len(self.runs()))
        self.assertIn('the run has no result of nova_xen_tempest',
                      result.stderr)

    def test_tempest_status_kept(self):
        result = self.tempest(SHIM_RUN_STATUS='3')
        self.assertEqual(3, result.returncode)

    def test_without_the_callers_ssh_agent(self):
        # paramiko would offer the agent's keys before Tempest's own, and
        # dropbear closes the connection after a few refused ones
        result = self.tempest(SSH_AUTH_SOCK='/tmp/agent.sock')
        self.assertEqual(0, result.returncode, result.stderr)
        with open(os.path.join(self.root, 'ssh-agent')) as f:
            self.assertEqual('unset\n', f.read())

    def test_scenarios_run_with_ovn(self):
        self.listing(COMPUTE_TESTS + XEN_TESTS + SCENARIO_TESTS)
        self.results([(test, 'success') for test in
                      COMPUTE_TESTS + XEN_TESTS + SCENARIO_TESTS])
        result = self.tempest(MINICLOUD_NEUTRON='ovn')
        self.assertEqual(0, result.returncode, result.stderr)
        run, = self.runs()
        self.assertEqual(SCENARIO_REGEX, run[run.index('--regex') + 1])
        self.assertIn('tempest.scenario: run 1', result.stdout)

    def test_no_scenario_to_run_fails_before_the_run(self):
        result = self.tempest(MINICLOUD_NEUTRON='ovn')
        self.assertNotEqual(0, result.returncode)
        self.assertIn('tempest.scenario would run no test', result.stderr)
        self.assertEqual([], self.runs())

    def test_no_scenarios_without_packets(self):
        result = self.tempest(MINICLOUD_NEUTRON='noagent')
        self.assertEqual(0, result.returncode, result.stderr)
        run, = self.runs()
        self.assertEqual(REGEX, run[run.index('--regex') + 1])


# the admin's openstack client: the two networks bootstrap.py makes
OPENSTACK = r'''#!/bin/bash
{ printf openstack; printf ' %q' "$@"; echo; } >> "$SHIM_LOG"
case "$1 $2 $3" in
    "network show minicloud-net") echo public-net-id ;;
    "network show minicloud-private")
        [[ -z ${SHIM_NO_PRIVATE:-} ]] || exit 1
        echo private-net-id ;;
    *) exit 1 ;;
esac
'''


class ValidationTest(TempestShTestCase):
    """_mc_tempest_validation: how Tempest reaches the servers."""

    def configure(self, **env):
        # (the client of the services' venv, as devstack_functions.sh
        # calls it)
        self.write(os.path.join(self.dir, 'venv', 'bin', 'openstack'),
                   OPENSTACK, 0o755)
        result = self.bash('mkdir -p "$(dirname "$TEMPEST_CONFIG")"\n'
                           '_mc_tempest_validation "$TEMPEST_CONFIG"\n',
                           **env)
        conf = configparser.ConfigParser()
        conf.read(os.path.join(self.dir, 'tempest', 'etc', 'tempest.conf'))
        return result, conf

    def test_ovn_ssh_over_floating_ips(self):
        result, conf = self.configure(MINICLOUD_NEUTRON='ovn')
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual({
            'run_validation': 'True', 'connect_method': 'floating',
            'auth_method': 'keypair', 'image_ssh_user': 'root',
            'image_alt_ssh_user': 'root', 'ssh_timeout': '196',
        }, dict(conf.items('validation')))
        self.assertEqual('minicloud-private',
                         conf.get('compute', 'fixed_network_name'))
        self.assertEqual('public-net-id',
                         conf.get('network', 'public_network_id'))
        self.assertEqual('minicloud-net',
                         conf.get('network', 'floating_network_name'))
        self.assertEqual('False',
                         conf.get('network', 'shared_physical_network'))
        self.assertEqual('True', conf.get('network-feature-enabled',
                                          'floating_ips'))
        self.assertEqual('False', conf.get('compute-feature-enabled',
                                           'metadata_service'))

    def test_noagent_no_validation(self):
        result, conf = self.configure(MINICLOUD_NEUTRON='noagent')
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertFalse(conf.has_section('validation'))
        self.assertIn('carries no packet', result.stdout + result.stderr)
        self.assertEqual([], self.calls('openstack'))

    def test_missing_private_network_stops(self):
        result, conf = self.configure(MINICLOUD_NEUTRON='ovn',
                                      SHIM_NO_PRIVATE='1')
        self.assertNotEqual(0, result.returncode)
        self.assertIn('network minicloud-private not found', result.stderr)
        self.assertFalse(conf.has_section('validation'))


class SuitesTest(unittest.TestCase):
    """tempest_summary.suites: a regex's alternatives."""

    def setUp(self):
        super().setUp()
        self.suites = summary_module().suites

    def test_default(self):
        self.assertEqual(
            [('tempest.api.compute', r'^(tempest\.api\.compute)\.'),
             ('nova_xen_tempest', r'^(nova_xen_tempest)\.')],
            self.suites(REGEX))

    def test_no_alternatives(self):
        self.assertEqual(
            [('tempest.api.compute.servers', r'tempest\.api\.compute\.servers')],
            self.suites(r'tempest\.api\.compute\.servers'))

    def test_inner_alternatives(self):
        self.assertEqual(
            [('nova_xen_tempest', r'^(nova_xen_tempest)\.'),
             ('tempest.api.compute.servers',
              r'^(tempest\.api\.compute\.(servers))\.'),
             ('tempest.api.compute.images',
              r'^(tempest\.api\.compute\.(images))\.')],
            self.suites(r'^(tempest\.api\.compute\.(servers|images)'
                        r'|nova_xen_tempest)\.'))

    def test_not_suites(self):
        # optional or repeated groups, lookarounds, character sets: one
        for regex in (r'(?:a|b)+c', r'(a|b)?c', r'(?=a|b)c', r'[(|]x',
                      r'(a|b', r'(?(1)a|b)'):
            self.assertEqual([(regex, regex)], self.suites(regex), regex)

    def test_same_names(self):
        self.assertEqual(
            [r'(a)\.(a|c)', r'(b)\.(a|c)', r'(a|b)\.(a)', r'(a|b)\.(c)'],
            [name for name, _ in self.suites(r'(a|b)\.(a|c)')])
