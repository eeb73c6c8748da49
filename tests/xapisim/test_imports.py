"""xapisim's modules import one another without a cycle.

Every import counts, those inside functions too (and http's routes,
which import their module by name), so that no module needs the trick
of a late import to load.
"""

import ast
import os
import unittest

import xapisim

ROOT = os.path.dirname(os.path.abspath(xapisim.__file__))
# http serves these routes from modules it imports by name
DYNAMIC = {'xapisim.http': ('xapisim.transfer', 'xapisim.rrd')}


def modules():
    """{module name: path} of xapisim, without the dom0 stand-ins (run by
    plugins under dom0's Python, never imported by the simulator)."""
    found = {}
    base = os.path.dirname(ROOT)
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in ('dom0',
                                                        '__pycache__')]
        for name in filenames:
            if name.endswith('.py'):
                path = os.path.join(dirpath, name)
                module = os.path.relpath(path, base)[:-3].replace(os.sep, '.')
                if module.endswith('.__init__'):
                    module = module[:-len('.__init__')]
                found[module] = path
    return found


def import_graph():
    """{module: set of the xapisim modules it imports}."""
    found = modules()
    graph = {}
    for module, path in found.items():
        with open(path) as fh:
            tree = ast.parse(fh.read(), path)
        targets = set(DYNAMIC.get(module, ()))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + ['%s.%s' % (node.module, alias.name)
                                         for alias in node.names]
            else:
                continue
            targets.update(n for n in names if n in found)
        # a package's __init__ (empty for xapisim.api) is no real edge
        targets.discard('xapisim')
        targets.discard('xapisim.api')
        targets.discard(module)
        graph[module] = targets
    return graph


def cycles(graph):
    """The strongly connected components of more than one module."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


class ImportGraphTest(unittest.TestCase):

    def test_no_cycle(self):
        self.assertEqual([], cycles(import_graph()))

    def test_the_graph_is_read(self):
        graph = import_graph()
        self.assertIn('xapisim.api.memory', graph['xapisim.guest'])
        self.assertIn('xapisim.rrd', graph['xapisim.http'])
        self.assertIn('xapisim.api.vm', graph['xapisim.api.migration'])

    def test_a_cycle_is_found(self):
        self.assertEqual([['a', 'b', 'c']], cycles(
            {'a': {'b'}, 'b': {'c'}, 'c': {'a', 'd'}, 'd': set()}))


if __name__ == '__main__':
    unittest.main()
