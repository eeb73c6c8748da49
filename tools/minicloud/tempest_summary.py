"""The counts of a minicloud Tempest run (tools/minicloud/tempest.sh).

    stestr last --subunit | subunit2csv --no-passthrough | \\
        python3 tempest_summary.py LISTED EXCLUDE_LIST SECONDS

LISTED is a file with the test ids ``tempest run --list-tests --regex R``
printed (the selection before the exclude list), EXCLUDE_LIST the exclude
file (``regex # reason`` per line, read as stestr reads it: re.search on
the test id), SECONDS the wall time of ``tempest run``.  Prints the tests
selected, excluded (each with its reason), passed, failed and skipped, and
every failure.  Only the standard library: any Python 3 runs it.
"""

import collections
import csv
import re
import sys


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


def main(argv):
    listed_path, exclude_path, seconds = argv[0], argv[1], int(argv[2])
    with open(listed_path) as f:
        listed = [line.strip() for line in f
                  if re.match(r'^[A-Za-z_][\w.]*\.', line.strip())]
    out = excluded(listed, read_exclude_list(exclude_path))
    rows = list(csv.DictReader(sys.stdin))
    counts = collections.Counter(row['status'] for row in rows)
    print('\ntempest summary (exclude list: %s)' % exclude_path)
    print('  selected %d, excluded %d, run %d (a class skipped or failed '
          'in its setup counts once)' % (len(listed), len(out), len(rows)))
    others = ''.join(', %s %d' % (status, n)
                     for status, n in sorted(counts.items())
                     if status not in ('success', 'fail', 'skip'))
    print('  passed %d, failed %d, skipped %d%s' % (
        counts['success'], counts['fail'], counts['skip'], others))
    print('  wall time of tempest run: %d min %02d s' % divmod(seconds, 60))
    for test_id, reason in sorted(out.items()):
        print('  excluded: %s  (%s)' % (test_id.split('[')[0], reason))
    for row in rows:
        if row['status'] == 'fail':
            print('  FAILED: %s' % row['test'])
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
