"""xapisim: a xapi (XCP-ng / XenServer toolstack) simulator.

Run ``python -m xapisim`` for a simulated world on loopback, or use
``running()`` in tests::

    with xapisim.running(pools=2, hosts=2) as world:
        master = world['pools'][0]['master']

The description it yields is the JSON line the command prints.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys

__all__ = ['running', 'Simulator', 'options_from']


def options_from(**kwargs):
    from xapisim.plugins import default_plugins_dir
    from xapisim.world import Options
    if kwargs.get('plugins_dir') is None:
        kwargs['plugins_dir'] = default_plugins_dir()
    return Options(**kwargs)


class Simulator(object):
    """A world served from this process (threads)."""

    def __init__(self, **kwargs):
        from xapisim.world import World
        self.world = World(options_from(**kwargs))
        try:
            self.world.start()
        except BaseException:
            self.world.stop()
            raise

    def describe(self):
        return self.world.describe()

    def stop(self):
        self.world.stop()


_FLAGS = {'pools': '--pools', 'hosts': '--hosts', 'state_dir': '--state-dir',
          'username': '--username', 'password': '--password',
          'plugins_dir': '--plugins-dir', 'latency_ms': '--latency-ms',
          'vm_memory_mib': '--vm-memory-mib', 'sr_size_gib': '--sr-size-gib',
          'host_cpus': '--host-cpus', 'port': '--port',
          'plugin_python': '--plugin-python', 'guest_delay': '--guest-delay',
          'dom0_bridges': '--dom0-bridges', 'dom0_network': '--dom0-network',
          'devices': '--devices', 'transfer_nice': '--transfer-nice'}
_SWITCHES = {'tls': '--tls', 'verbose': '--verbose'}


@contextlib.contextmanager
def running(in_process=False, **kwargs):
    """A simulated world for the duration of the block.

    By default it runs as a separate process (``python -m xapisim``), so it
    never shares an event loop or monkey-patching with the code under
    test; ``in_process=True`` serves it from threads of this process.
    With ``dom0_network`` the process stops if this one ends without
    stopping it (its namespaces and daemons go with it).
    """
    if in_process:
        sim = Simulator(**kwargs)
        try:
            yield sim.describe()
        finally:
            sim.stop()
        return
    argv = [sys.executable, '-m', 'xapisim']
    for key, value in kwargs.items():
        if key in _SWITCHES:
            if value:
                argv.append(_SWITCHES[key])
        elif isinstance(value, dict):
            argv += [_FLAGS[key], json.dumps(value)]
        elif value is not None:
            argv += [_FLAGS[key], str(value)]
    if kwargs.get('dom0_network') not in (None, 'none'):
        argv.append('--exit-with-parent')
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env['PYTHONPATH'] = here + os.pathsep + env.get('PYTHONPATH', '')
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env)
    try:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError('xapisim exited before serving (status %s)'
                               % proc.wait())
        yield json.loads(line.decode())
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()
