"""The distribution ships the loading shim and nothing else of nova's."""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


class WheelTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix='nova-xen-wheel-')
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        # build from a copy: setuptools writes build/ and *.egg-info into
        # its source tree, and tests may run in parallel
        source = os.path.join(cls.tmp, 'source')
        skip = shutil.ignore_patterns('.git', '.tox', '.stestr', '.minicloud',
                                      '__pycache__', 'build', '*.egg-info')

        def ignore(directory, names):
            ignored = set(skip(directory, names))
            if os.path.abspath(directory) == ROOT:
                ignored |= {'tests', 'benchmarks'} & set(names)
            return ignored
        shutil.copytree(ROOT, source, ignore=ignore)
        subprocess.check_call(
            [sys.executable, '-m', 'pip', 'wheel', '--quiet', '--no-deps',
             '--no-build-isolation', '--wheel-dir', cls.tmp, source],
            stdout=subprocess.DEVNULL)
        wheel = [f for f in os.listdir(cls.tmp) if f.endswith('.whl')][0]
        with zipfile.ZipFile(os.path.join(cls.tmp, wheel)) as zf:
            cls.names = set(zf.namelist())
            cls.entry_points = zf.read([n for n in cls.names if n.endswith(
                'entry_points.txt')][0]).decode()

    def test_ships_the_shim_but_not_novas_packages(self):
        self.assertIn('nova/virt/xenapi/__init__.py', self.names)
        self.assertNotIn('nova/__init__.py', self.names)
        self.assertNotIn('nova/virt/__init__.py', self.names)
        self.assertEqual({'nova/virt/xenapi/__init__.py'},
                         {n for n in self.names if n.startswith('nova/')})

    def test_ships_the_driver_and_the_simulator_data(self):
        for name in ('nova_xen/driver.py', 'nova_xen/session.py',
                     'xapisim/data/schema.json',
                     'xapisim/data/datamodel_overlay.json',
                     'xapisim/data/datamodel_overlay_devices.json',
                     'xapisim/dom0/XenAPI.py',
                     'xapisim/dom0/XenAPIPlugin.py'):
            self.assertIn(name, self.names)

    def test_uninstall_removes_the_shim(self):
        venv = os.path.join(self.tmp, 'venv')
        env = dict(os.environ)
        env.pop('PYTHONPATH', None)   # only what the venv itself holds
        subprocess.check_call([sys.executable, '-m', 'venv', venv], env=env)
        pip = os.path.join(venv, 'bin', 'pip')
        wheel = [f for f in os.listdir(self.tmp) if f.endswith('.whl')][0]
        subprocess.check_call([pip, 'install', '--quiet', '--no-deps',
                               '--no-index', os.path.join(self.tmp, wheel)],
                              stdout=subprocess.DEVNULL, env=env)
        site = subprocess.check_output(
            [os.path.join(venv, 'bin', 'python'), '-c',
             'import sysconfig; print(sysconfig.get_path("purelib"))'],
            text=True, env=env).strip()
        shim = os.path.join(site, 'nova', 'virt', 'xenapi', '__init__.py')
        self.assertTrue(os.path.exists(shim))
        subprocess.check_call([pip, 'uninstall', '--quiet', '--yes',
                               'nova-xen'], stdout=subprocess.DEVNULL, env=env)
        self.assertFalse(os.path.exists(shim))
        self.assertFalse(os.path.exists(os.path.join(site, 'nova_xen')))

    def test_registers_its_options_for_the_config_generator(self):
        self.assertIn('[oslo.config.opts]', self.entry_points)
        self.assertIn('nova_xen = nova_xen.conf:list_opts', self.entry_points)
