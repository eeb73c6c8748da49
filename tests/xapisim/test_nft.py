"""xapisim's ``nft`` stand-in: every command is one atomic transaction.

The kernel applies each ``nft -f`` script as one transaction and lists a
consistent ruleset, whatever else runs at the same time; the isolation
plugin relies on that when spawns on one host filter their VIFs at once.
These run the stand-in as dom0 runs it (a process per command, under
Python 3.6 when it is installed) on a simulated dom0 root.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NFT = os.path.join(ROOT, 'xapisim', 'dom0', 'nft')
# dom0's Python (XCP-ng 8.x runs plugins with 3.6)
PY36 = os.environ.get('XAPISIM_PY36',
                      '/root/.pyenv/versions/3.6.15/bin/python3.6')
PYTHON = PY36 if os.path.exists(PY36) else sys.executable

TABLE_RE = re.compile(r'^table netdev (\w+) \{$', re.M)


def table(name, device):
    """A table as the isolation plugin writes one: a hooked chain and
    chains it jumps to."""
    return ('table netdev %s {\n'
            '  set own_ipv4 { type ipv4_addr; elements = { 10.0.0.1 } }\n'
            '  chain hook_%s {\n'
            '    type filter hook ingress device "%s" priority -500; '
            'policy drop;\n'
            '    goto guest\n'
            '  }\n'
            '  chain guest {\n'
            '    ip saddr @own_ipv4 accept\n'
            '    counter drop\n'
            '  }\n'
            '}\n' % (name, device.replace('.', '_'), device))


def replace(name, device):
    """The plugin's apply: add, delete and define, in one script."""
    return ('add table netdev %s\ndelete table netdev %s\n%s'
            % (name, name, table(name, device)))


class NftTestCase(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        super(NftTestCase, self).setUp()
        self.root = tempfile.mkdtemp(prefix='xapisim-nft-')
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        self.env = {'PATH': os.environ.get('PATH', '/usr/bin:/bin'),
                    'DOM0_ROOT': self.root, 'LANG': 'C.UTF-8',
                    'PYTHONDONTWRITEBYTECODE': '1'}

    def start(self, args, script=None):
        """Start nft, its script (if any) on its stdin: it runs at once,
        whatever else runs."""
        with tempfile.TemporaryFile('w+') as stdin:
            stdin.write(script or '')
            stdin.seek(0)
            return subprocess.Popen(
                [PYTHON, NFT] + args, env=self.env, stdin=stdin,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                universal_newlines=True)

    def finish(self, proc):
        out, err = proc.communicate(timeout=120)
        return proc.returncode, out, err

    def nft(self, args, script=None):
        return self.finish(self.start(args, script))

    def apply(self, script):
        status, out, err = self.nft(['-f', '/dev/stdin'], script)
        self.assertEqual((0, ''), (status, err), script)

    def ruleset(self):
        status, out, err = self.nft(['list', 'ruleset', 'netdev'])
        self.assertEqual((0, ''), (status, err))
        return out

    def tables(self, ruleset):
        """{name: text} of a listed ruleset."""
        starts = [m.start() for m in TABLE_RE.finditer(ruleset)]
        self.assertEqual(0, starts[0] if starts else len(ruleset), ruleset)
        texts = [ruleset[a:b] for a, b in
                 zip(starts, starts[1:] + [len(ruleset)])]
        found = {}
        for text in texts:
            name = TABLE_RE.match(text).group(1)
            self.assertNotIn(name, found, ruleset)
            found[name] = text
        return found


class NftTransactionTest(NftTestCase):

    def test_a_failing_script_changes_nothing(self):
        self.apply(table('nova_xen_a', 'vif1.0'))
        before = self.ruleset()
        status, out, err = self.nft(
            ['-f', '-'], 'delete table netdev nova_xen_a\n'
            + table('nova_xen_b', 'vif2.0') + 'flush ruleset\n')
        self.assertEqual(1, status)
        self.assertIn('flush ruleset', err)
        self.assertEqual(before, self.ruleset())
        status, out, err = self.nft(['-f', '-'],
                                    'delete table netdev nova_xen_zz\n')
        self.assertEqual(1, status)
        self.assertEqual(before, self.ruleset())

    def test_a_missing_script_file_fails(self):
        status, out, err = self.nft(['-f', os.path.join(self.root, 'no')])
        self.assertEqual(1, status)
        self.assertIn('Could not open file', err)
        self.assertEqual('', self.ruleset())

    def test_replace_and_delete_chain(self):
        self.apply(replace('nova_xen_a', 'vif1.0'))
        self.apply(replace('nova_xen_a', 'vif1.0'))
        self.apply('delete chain netdev nova_xen_a hook_vif1_0\n')
        ruleset = self.ruleset()
        self.assertEqual(['nova_xen_a'], list(self.tables(ruleset)))
        self.assertNotIn('hook ingress', ruleset)
        self.apply(replace('nova_xen_a', 'vif1.0'))
        self.assertEqual(table('nova_xen_a', 'vif1.0'), self.ruleset())

    def test_concurrent_commands_are_atomic(self):
        # Tables there from the start: half are kept, half deleted while
        # 40 spawns apply their own tables and others list the ruleset.
        kept = dict(('nova_xen_kept%d' % i, table('nova_xen_kept%d' % i,
                                                  'vif%d.1' % i))
                    for i in range(5))
        doomed = dict(('nova_xen_doomed%d' % i,
                       table('nova_xen_doomed%d' % i, 'vif%d.2' % i))
                      for i in range(5))
        self.apply(''.join(sorted(kept.values())) +
                   ''.join(sorted(doomed.values())))
        new = dict(('nova_xen_new%d' % i, table('nova_xen_new%d' % i,
                                                'vif%d.0' % i))
                   for i in range(40))
        every = dict(kept, **doomed)
        every.update(new)
        procs = []
        for i in range(40):
            name = 'nova_xen_new%d' % i
            procs.append(('apply', self.start(['-f', '/dev/stdin'],
                                              replace(name, 'vif%d.0' % i))))
            if i % 8 == 0:
                doomed_name = 'nova_xen_doomed%d' % (i // 8)
                procs.append(('delete', self.start(
                    ['-f', '-'], 'delete table netdev %s\n' % doomed_name)))
            if i % 4 == 0:
                procs.append(('list', self.start(['list', 'ruleset',
                                                  'netdev'])))
        failures = []
        torn = []
        for kind, proc in procs:
            status, out, err = self.finish(proc)
            if status != 0 or err:
                failures.append((kind, status, err.strip()[-200:]))
            elif kind == 'list' and not self.whole(out, kept, every):
                # a listing shows whole tables only, every kept one
                torn.append(out[-300:])
        final = self.tables(self.ruleset())
        expected = dict(kept, **new)
        found = {'failed commands': len(failures), 'torn listings': len(torn),
                 'tables': len(final),
                 'lost': sorted(set(expected) - set(final)),
                 'extra': sorted(set(final) - set(expected)),
                 'altered': sorted(name for name in final
                                   if final[name] != every.get(name))}
        self.assertEqual(
            {'failed commands': 0, 'torn listings': 0,
             'tables': len(expected), 'lost': [], 'extra': [],
             'altered': []}, found,
            'counts: %s\nfailures: %r\ntorn listing: %r'
            % (' '.join('%s=%d' % (key.split()[0], len(value)
                                   if isinstance(value, list) else value)
                        for key, value in sorted(found.items())),
               failures[:3], torn[:1]))

    def whole(self, listing, kept, every):
        try:
            seen = self.tables(listing)
        except AssertionError:
            return False
        return set(kept) <= set(seen) and all(
            every.get(name) == text for name, text in seen.items())


if __name__ == '__main__':
    unittest.main()
