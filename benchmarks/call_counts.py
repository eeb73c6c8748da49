"""XenAPI calls per operation, against the fewest each one needs.

Run from the repository root with the functional environment::

    .tox/functional/bin/python benchmarks/call_counts.py

An in-process Nova (nova's functional framework, as in tests/functional)
drives nova-xen against xapisim: one server (one disk, one VIF) is
spawned, stopped, started, rebooted soft and hard, paused, unpaused,
suspended, resumed, snapshotted, its host's resources updated, power
states synchronised, and it is deleted.  For each operation the table
gives what nova-compute sent to xapi (every XML-RPC message of the
process, counted at the client), of which ``event.from`` (waiting for
tasks, and the VM watcher's own loop: reported apart, not counted in the
ratio), the other calls, their minimum (see MINIMUM in
tests/functional/test_call_counts.py for what each minimum is made of)
and the ratio; and the calls xapi served for the dom0 plugins (their own
sessions, e.g. an image transfer's task), which are not the driver's.
"""

# nova's functional framework patches eventlet in before anything else
import nova.tests.functional  # noqa: F401  isort:skip

import os  # noqa: E402
import sys  # noqa: E402
import unittest  # noqa: E402

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

from tests.functional import test_call_counts  # noqa: E402

RESULTS = {}


class Benchmark(test_call_counts.CallCounting):

    def test_measure(self):
        RESULTS.update(self.measure_all())


def table(measured):
    lines = ['| operation | calls | of which event.from | calls but '
             'event.from | minimum | ratio | dom0 plugins\' calls |',
             '|---|---|---|---|---|---|---|']
    for name, m in measured.items():
        ratio = '%.1f' % m.ratio if m.ratio is not None else (
            '-' if m.calls == 0 else 'inf')
        lines.append('| %s | %d | %d | %d | %d | %s | %d |' % (
            name, m.total, m.event_from, m.calls, m.minimum, ratio, m.dom0))
    return '\n'.join(lines)


def main():
    verbose = '-v' in sys.argv
    suite = unittest.TestSuite([Benchmark('test_measure')])
    result = unittest.TextTestRunner(verbosity=2 if verbose else 0,
                                     stream=sys.stderr).run(suite)
    if not result.wasSuccessful():
        return 1
    print(table(RESULTS))
    if verbose:
        for name, m in RESULTS.items():
            print('%s: %s' % (name, ', '.join(
                '%s %d' % item for item in sorted(m.driver.items()))))
    return 0


if __name__ == '__main__':
    sys.exit(main())
