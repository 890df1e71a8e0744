"""The runner of a check file that runs on both runtimes (tests/dual_runtime.py).

MicroPython-safe, like the check files that import it (``tests/signature/checks.py``,
``tests/pipeline/checks.py``, ``tests/dlt/codec_checks.py``): a check raises
``CheckFailed`` (via ``expect``); run as a script, a check file runs every ``check_*``,
reports each failure and ends with the tally ``N checks passed, M failed`` that
``dual_runtime.passed_on_micropython`` reads. The repo root and tests/ must both be on the
path: ``MICROPYPATH=<root>:<root>/tests micropython tests/pipeline/checks.py``.
"""


class CheckFailed(Exception):
    pass


def expect(cond, msg):
    if not cond:
        raise CheckFailed(msg)


def all_checks(namespace):
    """(name, function) of every ``check_*`` in a check file's globals, by name."""
    names = sorted(k for k in namespace if k.startswith("check_"))
    return [(k, namespace[k]) for k in names]


def run(namespace):
    """Run every check of a check file (its ``globals()``), reporting every failure, not
    only the first; the exit status (0: all passed)."""
    checks = all_checks(namespace)
    failed = 0
    for name, fn in checks:
        try:
            fn()
        except Exception as e:  # report every failure, then exit non-zero
            failed += 1
            print("FAIL %s: %s: %s" % (name, type(e).__name__, e))
    print("%d checks passed, %d failed" % (len(checks) - failed, failed))
    return 1 if failed else 0
