"""The long fault scenarios of issue 10, with one PASS/FAIL line each: 100,000-recipient sends through
Redis outages of 5 and 20 s (paused, stopped, killed), a dead worker's tasks under the default
visibility time-out, retry lag in a 50,000-recipient send.

    uv run python reliability/faults.py [-k EXPRESSION]

They are the ``slow`` tests of ``tests/e2e/test_faults.py`` (real worker, embedded Redis, simulator),
run with ``SMSD_SLOW_TESTS=1``; the default ``pytest`` run keeps the short variants. About 10 minutes
on two cores. Exit status 1 if any scenario failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The slow tests: fault scenarios, and two beats held to every vendor cadence for a minute.
TESTS = ("tests/e2e/test_faults.py", "tests/e2e/test_two_beats.py")


def run(expression: str | None) -> int:
    """Run the slow fault tests and print one line per scenario. Returns the number that failed."""
    with tempfile.TemporaryDirectory(prefix="smsd-reliability-") as tmp:
        report = Path(tmp) / "junit.xml"
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            *TESTS,
            "-m",
            "slow",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
            "--timeout=600",
        ]
        if expression:
            cmd += ["-k", expression]
        started = time.monotonic()
        subprocess.run(
            cmd,
            cwd=ROOT,
            env={**os.environ, "SMSD_SLOW_TESTS": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        if not report.exists():
            print("FAIL  pytest did not run (see: uv run pytest tests/e2e/test_faults.py -m slow)")
            return 1
        failed = _print_cases(ET.parse(report).getroot())
    print(f"{'FAIL' if failed else 'PASS'}  {failed} failed, in {time.monotonic() - started:.0f} s")
    return failed


def _print_cases(root: ET.Element) -> int:
    failed = 0
    for case in root.iter("testcase"):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if case.find("skipped") is not None:
            continue
        seconds = float(case.get("time", "0"))
        name = case.get("name", "?")
        if problem is None:
            print(f"PASS  {name}  ({seconds:.0f} s)")
            continue
        failed += 1
        reason = (problem.get("message") or "").splitlines()[0][:300] if problem.get("message") else ""
        print(f"FAIL  {name}  ({seconds:.0f} s)  {reason}")
    return failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", dest="expression", help="only the scenarios matching (pytest -k)")
    sys.exit(1 if run(parser.parse_args().expression) else 0)


if __name__ == "__main__":
    main()
