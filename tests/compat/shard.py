"""Runs one shard of a unittest module, so ctest can run a long module's tests on every core:

    /usr/bin/python3 shard.py MODULE I N     (I in 1..N)

Every test of MODULE lands in exactly one of the N shards. The assignment is longest-first onto
the least loaded shard, weighing each test by the seconds `kegtest.slow(seconds)` marked it with
(1 when unmarked); a shard runs its tests in the module's order, so a class's tests stay together.
Deterministic: the same module always splits the same way. Exits non-zero when a test failed or
the shard ran nothing (a wrong I or N must not pass).
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def flatten(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from flatten(item)
        else:
            yield item


def weight(test):
    method = getattr(test, getattr(test, "_testMethodName", ""), None)
    return getattr(method, "keg_seconds", 1.0)


def shard_of(tests, n):
    """Index of the shard (0-based) of each test: longest first onto the least loaded shard."""
    load = [0.0] * n
    assigned = {}
    for i in sorted(range(len(tests)), key=lambda i: (-weight(tests[i]), tests[i].id())):
        s = min(range(n), key=lambda s: (load[s], s))
        assigned[i] = s
        load[s] += weight(tests[i])
    return [assigned[i] for i in range(len(tests))]


def main(argv):
    if len(argv) != 4 or not argv[2].isdigit() or not argv[3].isdigit() \
            or not 1 <= int(argv[2]) <= int(argv[3]):
        sys.exit("usage: shard.py MODULE I N  (1 <= I <= N)")
    module, index, count = argv[1], int(argv[2]), int(argv[3])
    tests = list(flatten(unittest.defaultTestLoader.loadTestsFromName(module)))
    shards = shard_of(tests, count)
    mine = unittest.TestSuite(t for t, s in zip(tests, shards) if s == index - 1)
    print(f"shard {index} of {count} of {module}: {mine.countTestCases()} of {len(tests)} tests",
          flush=True)
    result = unittest.TextTestRunner(verbosity=2).run(mine)
    sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)


if __name__ == "__main__":
    main(sys.argv)
