"""The counts of a minicloud Tempest run (tools/minicloud/tempest.sh).

Before the run, every suite of the regex must have tests to run::

    python3 tempest_summary.py --check --regex REGEX LISTED EXCLUDE_LIST

After it, the counts::

    stestr last --subunit | subunit2csv --no-passthrough | \\
        python3 tempest_summary.py --regex REGEX LISTED EXCLUDE_LIST SECONDS

LISTED is a file with the test ids ``tempest run --list-tests --regex R``
printed (the selection before the exclude list), EXCLUDE_LIST the exclude
file (``regex # reason`` per line, read as stestr reads it: re.search on
the test id), SECONDS the wall time of ``tempest run``, REGEX the one of
the run.  The suites of REGEX are its alternatives: ``^(tempest\\.api\\.
compute|nova_xen_tempest)\\.`` names two, tempest.api.compute and
nova_xen_tempest; a regex without ``|`` is one suite.  A suite that has
no test to run (Tempest does not see a plugin's tests unless the plugin is
registered in its venv) or no result after the run fails the check and the
summary (exit status 1): a silent zero is never a pass.

The summary prints the tests selected, excluded (each with its reason),
passed, failed and skipped, per suite too, and every failure.  Only the
standard library: any Python 3 runs it.
"""

import argparse
import collections
import csv
import re
import sys

# Test ids among what ``tempest run --list-tests`` prints
TEST_ID = re.compile(r'^[A-Za-z_][\w.]*\.')
# Openers of the groups whose alternatives are not suites
LOOKAROUND = ('(?=', '(?!', '(?<=', '(?<!')
GROUP_OPENER = re.compile(
    r'\((?:\?(?::|P<\w+>|<\w+>|<=|<!|=|!|[aiLmsux]*(?:-[imsx]+)?:))?')
# Complete tokens that look like groups: (?P=name), (?aiLmsux), (?#...)
GROUP_TOKEN = re.compile(
    r'\(\?(?:P=\w+\)|[aiLmsux]+\)|#[^)]*\))')
QUANTIFIER = re.compile(r'(?:[?*+]|\{\d*(?:,\d*)?\})[?+]?')
# subunit2csv's statuses of a failed test: "failure" and "error" (from
# the TestResult API), "fail" (StreamResult's), an unexpected success
FAILED = ('fail', 'failure', 'error', 'uxsuccess')


def outcome(status):
    """success, fail, skip, or the status itself (xfail, ...)."""
    return 'fail' if status in FAILED else status


def read_exclude_list(path):
    """[(compiled regex, reason)] of an stestr exclude file."""
    rules = []
    with open(path) as f:
        for line in f:
            regex, _, reason = line.strip().partition('#')
            if regex.strip():
                rules.append((re.compile(regex.strip()), reason.strip()))
    return rules


def excluded(test_ids, rules):
    """{test id: reason} of the tests an exclude rule matches."""
    found = {}
    for test_id in test_ids:
        for regex, reason in rules:
            if regex.search(test_id):
                found[test_id] = reason
                break
    return found


def read_listed(path):
    """The test ids of a ``tempest run --list-tests`` output."""
    with open(path) as f:
        return [line.strip() for line in f if TEST_ID.match(line.strip())]


# The suites of a regex
# ---------------------

class _Group(object):
    """A group of a regex: opener, alternatives (lists of items: text or
    _Group), closer (``)`` and a quantifier).  The regex itself is a group
    with an empty opener and closer."""

    def __init__(self, opener, closer=''):
        self.opener = opener
        self.branches = [[]]
        self.closer = closer

    def plain(self):
        """Matched once, as itself: each alternative is a suite."""
        return self.closer in ('', ')') and not self.opener.startswith(
            LOOKAROUND)


def _parse(regex):
    """The regex as a _Group tree; ValueError if it is not understood."""
    root = _Group('')
    stack = [root]
    i = 0
    while i < len(regex):
        char = regex[i]
        group = stack[-1]
        if char == '\\':
            token = regex[i:i + 2]
        elif char == '[':
            j = i + 1
            if regex[j:j + 1] == '^':
                j += 1
            if regex[j:j + 1] == ']':
                j += 1
            while j < len(regex) and regex[j] != ']':
                j += 2 if regex[j] == '\\' else 1
            if j >= len(regex):
                raise ValueError('unterminated character set')
            token = regex[i:j + 1]
        elif char == '(':
            match = GROUP_TOKEN.match(regex, i)
            if match:
                token = match.group()
            else:
                opener = GROUP_OPENER.match(regex, i).group()
                if regex.startswith('(?', i) and opener == '(':
                    raise ValueError('group %s not understood' % regex[i:])
                inner = _Group(opener)
                group.branches[-1].append(inner)
                stack.append(inner)
                i += len(opener)
                continue
        elif char == ')':
            if len(stack) == 1:
                raise ValueError('unbalanced parenthesis')
            quantifier = QUANTIFIER.match(regex, i + 1)
            group.closer = ')' + (quantifier.group() if quantifier else '')
            stack.pop()
            i += len(group.closer)
            continue
        elif char == '|':
            group.branches.append([])
            i += 1
            continue
        else:
            token = char
        group.branches[-1].append(token)
        i += len(token)
    if len(stack) != 1:
        raise ValueError('missing parenthesis')
    return root


def _render(group, pins, bare=False):
    """The group as a regex, its pinned groups (pins: {group: index}) with
    that alternative only; bare: without their parentheses (a name)."""
    if group in pins:
        text = _render_branch(group.branches[pins[group]], pins, bare)
        return text if bare else group.opener + text + group.closer
    return group.opener + '|'.join(
        _render_branch(branch, pins, bare)
        for branch in group.branches) + group.closer


def _render_branch(branch, pins, bare=False):
    return ''.join(item if isinstance(item, str) else
                   _render(item, pins, bare) for item in branch)


def _alternations(group, path):
    """(group, its enclosing (group, branch) path) of every plain group of
    more than one alternative that is matched whenever the regex is."""
    if len(group.branches) > 1:
        yield group, path
    for index, branch in enumerate(group.branches):
        for item in branch:
            if not isinstance(item, str) and item.plain():
                for found in _alternations(item, path + [(group, index)]):
                    yield found


def _pretty(pattern):
    """A pattern as the name of a suite: tempest\\.api -> tempest.api."""
    name = re.sub(r'\\(\W)', r'\1', pattern)
    return name if re.match(r'^[\w.]+$', name) else pattern


def suites(regex):
    """[(name, pattern)]: the suites of the regex, each a pattern matching
    what that alternative of the regex matches.  Alternatives that hold
    alternatives count through those (the innermost are the suites)."""
    try:
        root = _parse(regex)
        found = list(_alternations(root, []))
    except ValueError:
        found = []
    result = []
    for group, path in found:
        for index in range(len(group.branches)):
            if any((group, index) in inner for _, inner in found):
                continue     # its inner alternatives are the suites
            pins = dict(path)
            pins[group] = index
            pattern = _render(root, pins)
            try:
                re.compile(pattern)
            except re.error:
                return [(_pretty(regex), regex)]
            # named by the outermost alternative it is part of
            top, top_index = next(
                ((g, i) for g, i in path if len(g.branches) > 1),
                (group, index))
            result.append((_pretty(_render_branch(
                top.branches[top_index], pins, bare=True)), pattern))
    if len(set(name for name, _ in result)) < len(result):
        result = [(pattern, pattern) for _, pattern in result]
    return result or [(_pretty(regex), regex)]


def per_suite(regex, test_ids):
    """[(name, [test ids it matches])] for each suite of the regex."""
    return [(name, [test_id for test_id in test_ids
                    if re.search(pattern, test_id)])
            for name, pattern in suites(regex)]


def _result_id(test):
    """The test id of a result: ``setUpClass (module.Class)`` is of
    module.Class."""
    match = re.match(r'^\w+ \((.+)\)$', test)
    return match.group(1) if match else test


# Before and after the run
# ------------------------

def check(regex, listed, exclude_path):
    """0 if every suite of the regex has tests to run, else 1 and why."""
    out = excluded(listed, read_exclude_list(exclude_path))
    selected = [test_id for test_id in listed if test_id not in out]
    print('tempest selection: %d tests listed for %s, %d excluded by %s' % (
        len(listed), regex, len(out), exclude_path))
    empty = []
    for name, test_ids in per_suite(regex, selected):
        print('  %s: %d tests to run' % (name, len(test_ids)))
        if not test_ids:
            empty.append(name)
    if empty:
        print('tempest: %s would run no test (none listed by tempest run '
              '--list-tests, or all excluded), so the run fails rather '
              'than pass with it missing: is its Tempest plugin installed '
              'where Tempest runs?' % ' and '.join(empty), file=sys.stderr)
        return 1
    return 0


def summary(regex, listed, exclude_path, seconds, rows):
    """Print the counts; 0, or 1 if a suite of the regex has no result."""
    out = excluded(listed, read_exclude_list(exclude_path))
    counts = collections.Counter(outcome(row['status']) for row in rows)
    print('\ntempest summary (exclude list: %s)' % exclude_path)
    print('  selected %d, excluded %d, run %d (a class skipped or failed '
          'in its setup counts once)' % (len(listed), len(out), len(rows)))
    others = ''.join(', %s %d' % (status, n)
                     for status, n in sorted(counts.items())
                     if status not in ('success', 'fail', 'skip'))
    print('  passed %d, failed %d, skipped %d%s' % (
        counts['success'], counts['fail'], counts['skip'], others))
    empty = []
    if regex is not None:
        statuses = {}
        for row in rows:
            statuses.setdefault(_result_id(row['test']), []).append(
                outcome(row['status']))
        for name, test_ids in per_suite(regex, list(statuses)):
            suite = collections.Counter(
                status for test_id in test_ids for status in statuses[test_id])
            print('  %s: run %d, passed %d, failed %d, skipped %d' % (
                name, sum(suite.values()), suite['success'], suite['fail'],
                suite['skip']))
            if not suite:
                empty.append(name)
    print('  wall time of tempest run: %d min %02d s' % divmod(seconds, 60))
    for test_id, reason in sorted(out.items()):
        print('  excluded: %s  (%s)' % (test_id.split('[')[0], reason))
    for row in rows:
        if outcome(row['status']) == 'fail':
            print('  FAILED: %s' % row['test'])
    if empty:
        print('tempest: the run has no result of %s, so it fails: a silent '
              'zero is not a pass' % ' and '.join(empty), file=sys.stderr)
        return 1
    return 0


def main(argv):
    parser = argparse.ArgumentParser(
        description='The counts of a minicloud Tempest run.')
    parser.add_argument('--check', action='store_true',
                        help='before the run: every suite of --regex has '
                             'tests to run (no stdin, no SECONDS)')
    parser.add_argument('--regex', help='the regex of the run')
    parser.add_argument('listed')
    parser.add_argument('exclude_list')
    parser.add_argument('seconds', nargs='?', type=int)
    args = parser.parse_args(argv)
    listed = read_listed(args.listed)
    if args.check:
        if args.regex is None:
            parser.error('--check needs --regex')
        return check(args.regex, listed, args.exclude_list)
    if args.seconds is None:
        parser.error('SECONDS is needed for the summary')
    return summary(args.regex, listed, args.exclude_list, args.seconds,
                   list(csv.DictReader(sys.stdin)))


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
