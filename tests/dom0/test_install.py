"""dom0_plugins/install.sh: locally under a test root, and over a fake ssh.

The fake ssh on PATH runs the remote command with sh on this machine, the
way sshd hands it to the login shell of the host.
"""

import os
import shutil
import stat
import subprocess
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
DOM0 = os.path.join(os.path.dirname(os.path.dirname(HERE)), 'dom0_plugins')
INSTALL = os.path.join(DOM0, 'install.sh')
SOURCE = os.path.join(DOM0, 'etc', 'xapi.d', 'plugins')
PLUGINS = os.path.join('etc', 'xapi.d', 'plugins')
PY36 = os.environ.get('XAPISIM_PY36', '/root/.pyenv/versions/3.6.15/bin/python3.6')

FAKE_SSH = r'''#!/bin/sh
# ssh [-o OPTION]... HOST COMMAND: logs its arguments, runs COMMAND here
printf '%s\n' "$*" >> "$FAKE_SSH_LOG"
while [ "$1" = -o ]; do shift 2; done
host=$1
shift
case "$host" in
    *unreachable*)
        echo "ssh: connect to host $host port 22: Connection refused" >&2
        exit 255 ;;
esac
exec sh -c "$*"
'''


def source_names():
    return sorted(n for n in os.listdir(SOURCE) if n.endswith('.py'))


def wanted_mode(path):
    with open(path, 'rb') as fh:
        return 0o755 if fh.read(2) == b'#!' else 0o644


class InstallTestCase(unittest.TestCase):
    script = INSTALL
    source = SOURCE

    def setUp(self):
        super(InstallTestCase, self).setUp()
        self.tmp = tempfile.mkdtemp(prefix='nova-xen-install-')
        self.addCleanup(shutil.rmtree, self.tmp)
        self.root = os.path.join(self.tmp, 'root')
        self.dest = os.path.join(self.root, PLUGINS)
        self.env = dict(os.environ)

    def run_install(self, *args):
        proc = subprocess.run(['bash', self.script] + list(args), env=self.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=120)
        return proc.returncode, proc.stdout, proc.stderr

    def install(self, *args):
        rc, out, err = self.run_install('--local', '--root', self.root, *args)
        self.assertEqual(0, rc, out + err)
        return out

    def check(self):
        return self.run_install('--local', '--root', self.root, '--check')

    def dest_file(self, name):
        return os.path.join(self.dest, name)

    def assertInstalled(self):
        for name in source_names():
            with open(os.path.join(self.source, name), 'rb') as src, \
                    open(self.dest_file(name), 'rb') as dst:
                self.assertEqual(src.read(), dst.read(), name)
            mode = stat.S_IMODE(os.stat(self.dest_file(name)).st_mode)
            self.assertEqual(wanted_mode(os.path.join(self.source, name)), mode,
                             '%s is %o' % (name, mode))

    def snapshot(self):
        """(name, inode, mtime, mode) of everything in the plugin directory."""
        result = []
        for name in sorted(os.listdir(self.dest)):
            st = os.lstat(self.dest_file(name))
            result.append((name, st.st_ino, st.st_mtime_ns, st.st_mode))
        return result


class LocalInstallTest(InstallTestCase):

    def test_fresh_install(self):
        out = self.install()
        self.assertInstalled()
        self.assertEqual(source_names(), sorted(os.listdir(self.dest)))
        for name in source_names():
            self.assertIn('installed %s' % self.dest_file(name), out)
        self.assertIn('verified: %d files' % len(source_names()), out)

    def test_warns_when_dom0_has_no_nft(self):
        rc, _, err = self.run_install('--local', '--root', self.root)
        self.assertEqual(0, rc)
        self.assertIn('warning: no nft in %s: network isolation needs the '
                      'nftables package in dom0' % self.root, err)
        sbin = os.path.join(self.root, 'usr', 'sbin')
        os.makedirs(sbin)
        with open(os.path.join(sbin, 'nft'), 'w') as fh:
            fh.write('#!/bin/sh\n')
        os.chmod(os.path.join(sbin, 'nft'), 0o755)
        rc, _, err = self.run_install('--local', '--root', self.root)
        self.assertEqual(0, rc)
        self.assertNotIn('nft', err)

    def test_modes_plugins_executable_library_not(self):
        self.install()
        lib = os.stat(self.dest_file('nova_xen_dom0lib.py')).st_mode
        self.assertEqual(0o644, stat.S_IMODE(lib))
        for name in ('nova_xen_version.py', 'nova_xen_host.py'):
            self.assertEqual(0o755, stat.S_IMODE(os.stat(self.dest_file(name)).st_mode))

    def test_second_run_changes_nothing(self):
        self.install()
        before = self.snapshot()
        out = self.install()
        self.assertIn('unchanged: %s' % self.dest, out)
        self.assertNotIn('installed', out)
        self.assertEqual(before, self.snapshot())
        rc, out, err = self.check()
        self.assertEqual((0, 'in sync: %s\n' % self.dest, ''), (rc, out, err))

    def test_changed_and_wrong_mode_files_are_repaired(self):
        self.install()
        with open(self.dest_file('nova_xen_host.py'), 'a') as fh:
            fh.write('# edited by hand\n')
        os.chmod(self.dest_file('nova_xen_version.py'), 0o600)
        os.chmod(self.dest_file('nova_xen_dom0lib.py'), 0o755)
        os.remove(self.dest_file('nova_xen_dom0lib.py'))
        out = self.install()
        self.assertIn('updated %s (0755)' % self.dest_file('nova_xen_host.py'), out)
        self.assertIn('changed the mode of %s to 0755'
                      % self.dest_file('nova_xen_version.py'), out)
        self.assertIn('installed %s (0644)' % self.dest_file('nova_xen_dom0lib.py'), out)
        self.assertInstalled()

    def test_stale_files_of_ours_are_removed_others_kept(self):
        os.makedirs(os.path.join(self.dest, '__pycache__'))
        ours = ['nova_xen_glance_v1.py', 'nova_xen_old', '.nova_xen_host.py.new.4242',
                'nova_xen_copy of host.py',
                os.path.join('__pycache__', 'nova_xen_glance_v1.cpython-36.pyc')]
        theirs = ['echo', 'xenhost.py', 'glance.py',
                  os.path.join('__pycache__', 'nova_xen_dom0lib.cpython-36.pyc'),
                  os.path.join('__pycache__', 'XenAPIPlugin.cpython-36.pyc')]
        for name in ours + theirs:
            with open(self.dest_file(name), 'w') as fh:
                fh.write('x')
        out = self.install()
        for name in ours:
            self.assertFalse(os.path.exists(self.dest_file(name)), name)
            self.assertIn('removed %s' % self.dest_file(name), out)
        for name in theirs:
            self.assertTrue(os.path.exists(self.dest_file(name)), name)
        self.assertInstalled()

    def test_check_reports_differences_and_changes_nothing(self):
        rc, out, err = self.check()
        self.assertEqual(1, rc, out + err)
        for name in source_names():
            self.assertIn('would install %s' % self.dest_file(name), out)
        self.assertFalse(os.path.exists(self.dest))
        self.install()
        with open(self.dest_file('nova_xen_host.py'), 'w') as fh:
            fh.write('#!/bin/sh\n')
        os.chmod(self.dest_file('nova_xen_dom0lib.py'), 0o600)
        with open(self.dest_file('nova_xen_gone.py'), 'w') as fh:
            fh.write('x')
        before = self.snapshot()
        rc, out, err = self.check()
        self.assertEqual(1, rc, out + err)
        self.assertEqual(sorted([
            'would update %s (0755)' % self.dest_file('nova_xen_host.py'),
            'would chmod %s (0644)' % self.dest_file('nova_xen_dom0lib.py'),
            'would remove %s' % self.dest_file('nova_xen_gone.py')]),
            sorted(out.splitlines()))
        self.assertEqual(before, self.snapshot())

    def test_usage_errors(self):
        for args in ([], ['--local', '--root', 'relative/dir'], ['--bogus'],
                     ['--local', 'root@xcp-ng-1'], ['--local', '--ssh-option', 'Port=22'],
                     ['root@a', 'root@b'], ['--local', '--root']):
            rc, out, err = self.run_install(*args)
            self.assertEqual(2, rc, args)
            self.assertIn('install.sh [--check] --local [--root DIR]', err)
        rc, out, err = self.run_install('--help')
        self.assertEqual(0, rc)
        self.assertIn('--ssh-option', out)

    @unittest.skipIf(os.path.exists('/etc/xapi.d/plugins'), 'this machine is a dom0')
    def test_refuses_a_machine_that_is_not_a_dom0(self):
        rc, out, err = self.run_install('--local')
        self.assertEqual(3, rc)
        self.assertIn("/etc/xapi.d/plugins does not exist: is this a xapi host's dom0?",
                      err)
        self.assertFalse(os.path.exists('/etc/xapi.d'))


class SourceTreeTest(InstallTestCase):
    """A copy of dom0_plugins/ whose plugins the test changes."""

    def setUp(self):
        super(SourceTreeTest, self).setUp()
        tree = os.path.join(self.tmp, 'dom0_plugins')
        os.makedirs(os.path.join(tree, PLUGINS))
        shutil.copy2(INSTALL, tree)
        for name in source_names():
            shutil.copy2(os.path.join(SOURCE, name), os.path.join(tree, PLUGINS))
        self.script = os.path.join(tree, 'install.sh')
        self.source = os.path.join(tree, PLUGINS)

    def add_plugin(self, name, text):
        with open(os.path.join(self.source, name), 'w') as fh:
            fh.write(text)

    def test_a_plugin_dropped_from_the_source_is_removed(self):
        self.add_plugin('nova_xen_extra.py', '#!/usr/bin/env python3\n')
        self.install()
        self.assertEqual(0o755, stat.S_IMODE(os.stat(self.dest_file('nova_xen_extra.py'))
                                             .st_mode))
        os.remove(os.path.join(self.source, 'nova_xen_extra.py'))
        self.assertEqual(1, self.check()[0])
        out = self.install()
        self.assertIn('removed %s' % self.dest_file('nova_xen_extra.py'), out)
        self.assertEqual(source_names(), sorted(os.listdir(self.dest)))

    def test_a_plugin_that_does_not_compile_fails_verification(self):
        self.add_plugin('nova_xen_broken.py', '#!/usr/bin/env python3\ndef broken(:\n')
        rc, out, err = self.run_install('--local', '--root', self.root)
        self.assertEqual(3, rc, out + err)
        self.assertIn('verify: plugins do not compile', err)
        self.assertIn('verification failed in %s' % self.dest, err)

    @unittest.skipUnless(os.path.exists(PY36), "no Python 3.6 interpreter (dom0's version)")
    def test_verification_uses_the_hosts_python3(self):
        # dom0's python3 is 3.6: a walrus compiles here but not there
        bin_dir = os.path.join(self.tmp, 'bin')
        os.mkdir(bin_dir)
        os.symlink(PY36, os.path.join(bin_dir, 'python3'))
        self.env['PATH'] = bin_dir + os.pathsep + self.env['PATH']
        out = self.install()
        self.assertIn('compile under Python 3.6', out)
        self.add_plugin('nova_xen_new.py', '#!/usr/bin/env python3\nif (n := 1):\n    pass\n')
        rc, out, err = self.run_install('--local', '--root', self.root)
        self.assertEqual(3, rc, out + err)
        self.assertIn('do not compile under Python 3.6', err)
        self.assertIn('SyntaxError', err)

    def test_no_plugins_in_the_source(self):
        for name in os.listdir(self.source):
            os.remove(os.path.join(self.source, name))
        rc, out, err = self.run_install('--local', '--root', self.root)
        self.assertEqual(3, rc)
        self.assertIn('no plugins in %s' % os.path.realpath(self.source), err)


class SshInstallTest(InstallTestCase):
    target = 'root@xcp-ng-1.example.com'

    def setUp(self):
        super(SshInstallTest, self).setUp()
        bin_dir = os.path.join(self.tmp, 'bin')
        os.mkdir(bin_dir)
        with open(os.path.join(bin_dir, 'ssh'), 'w') as fh:
            fh.write(FAKE_SSH)
        os.chmod(os.path.join(bin_dir, 'ssh'), 0o755)
        self.ssh_log = os.path.join(self.tmp, 'ssh.log')
        # the "host's" temporary directory, to see that it is cleaned up
        self.host_tmp = os.path.join(self.tmp, 'host-tmp')
        os.mkdir(self.host_tmp)
        self.env.update(PATH=bin_dir + os.pathsep + self.env['PATH'],
                        FAKE_SSH_LOG=self.ssh_log, TMPDIR=self.host_tmp)

    def ssh_calls(self):
        with open(self.ssh_log) as fh:
            return fh.read().splitlines()

    def remote(self, *args):
        return self.run_install('--root', self.root, *(args + (self.target,)))

    def test_install_over_ssh(self):
        rc, out, err = self.remote('--ssh-option', 'Port=2222',
                                   '--ssh-option', 'StrictHostKeyChecking=yes')
        self.assertEqual(0, rc, out + err)
        self.assertInstalled()
        self.assertIn('installing into %s:%s' % (self.target, self.dest), out)
        self.assertIn('installed %s' % self.dest_file('nova_xen_host.py'), out)
        self.assertIn('verified:', out)
        calls = self.ssh_calls()
        self.assertEqual(1, len(calls), calls)
        self.assertTrue(calls[0].startswith(
            '-o Port=2222 -o StrictHostKeyChecking=yes %s ' % self.target), calls)
        self.assertEqual([], os.listdir(self.host_tmp))

    def test_idempotent_over_ssh(self):
        self.assertEqual(0, self.remote()[0])
        before = self.snapshot()
        rc, out, err = self.remote()
        self.assertEqual(0, rc, out + err)
        self.assertIn('unchanged: %s' % self.dest, out)
        self.assertEqual(before, self.snapshot())

    def test_check_over_ssh(self):
        rc, out, err = self.remote('--check')
        self.assertEqual(1, rc, out + err)
        self.assertEqual('checking %s:%s' % (self.target, self.dest), out.splitlines()[0])
        self.assertIn('would install %s' % self.dest_file('nova_xen_host.py'), out)
        self.assertFalse(os.path.exists(self.dest))
        self.assertEqual(0, self.remote()[0])
        with open(self.dest_file('nova_xen_stale.py'), 'w') as fh:
            fh.write('x')
        rc, out, err = self.remote('--check')
        self.assertEqual(1, rc, out + err)
        self.assertIn('would remove %s' % self.dest_file('nova_xen_stale.py'), out)
        self.assertEqual(0, self.remote()[0])
        rc, out, err = self.remote('--check')
        self.assertEqual((0, 'in sync: %s' % self.dest), (rc, out.splitlines()[-1]))
        self.assertEqual([], os.listdir(self.host_tmp))

    def test_root_with_spaces_survives_the_remote_shell(self):
        self.root = os.path.join(self.tmp, "a root; with 'quotes' $HOME")
        self.dest = os.path.join(self.root, PLUGINS)
        rc, out, err = self.remote()
        self.assertEqual(0, rc, out + err)
        self.assertInstalled()

    def test_unreachable_host(self):
        self.target = 'root@unreachable.example.com'
        rc, out, err = self.remote()
        self.assertEqual(255, rc)
        self.assertIn('Connection refused', err)
        self.assertFalse(os.path.exists(self.root))


if __name__ == '__main__':
    unittest.main()
