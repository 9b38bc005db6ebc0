"""Reliability check R3 (issue 9): 30% of vendor calls failing with transient codes, time-outs and
connection resets while a real worker sends to 20,000 recipients; every recipient delivered exactly once
(or, for calls the vendor dropped before taking them, never resent), attempts bounded and backed off.

    uv run python -m reliability.r3_faults [--recipients 20000]

It runs the CI variant's tests (``tests/e2e/test_r3_faults.py``, 3,000 recipients there) with more
recipients, prints each run's figures and a PASS/FAIL line; exit status 0 on PASS.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = "tests/e2e/test_r3_faults.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=20_000)
    args = parser.parse_args(argv)
    started = time.monotonic()
    cmd = [sys.executable, "-m", "pytest", TESTS, "-q", "-s", "-p", "no:cacheprovider", "--timeout=900"]
    done = subprocess.run(
        cmd,
        cwd=ROOT,
        env={**os.environ, "SMSD_R3_RECIPIENTS": str(args.recipients)},
        capture_output=True,
        text=True,
        check=False,
    )
    lines = done.stdout.splitlines()
    for line in lines:
        if line.startswith("R3 ") or line.startswith("E  ") or line.startswith("FAILED"):
            print(line)
    summary = lines[-1] if lines else done.stderr.strip()[-500:]
    verdict = "PASS" if done.returncode == 0 else "FAIL"
    print(f"{verdict}: R3 at {args.recipients} recipients: {summary} ({time.monotonic() - started:.0f} s)")
    return 0 if done.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
