"""Fails CI unless the run executed tests and none failed, errored or was skipped.

A skipped test is a missing test here: every test must run on CI's machine.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET

MIN_TESTS = 600


def main(path: str) -> int:
    root = ET.parse(path).getroot()  # noqa: S314 (our own pytest output)
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    totals = {
        k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")
    }
    print(f"{path}: {totals}")
    problems = []
    if totals["tests"] < MIN_TESTS:
        problems.append(f"only {totals['tests']} tests ran (expected at least {MIN_TESTS})")
    for kind in ("failures", "errors", "skipped"):
        if totals[kind]:
            problems.append(f"{totals[kind]} {kind}")
    for problem in problems:
        print(f"CI: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
