"""Reliability check R3 (issue 9): 30% of vendor calls failing with transient codes, time-outs and
connection resets while a real worker sends to 20,000 recipients; every recipient delivered exactly once
(or, for calls the vendor dropped before taking them, never resent), attempts bounded and backed off.

    uv run python -m reliability.r3_faults [--recipients 20000]

It runs the CI variant's tests (``tests/e2e/test_r3_faults.py``, 3,000 recipients there) with more
recipients, prints each run's figures and a PASS/FAIL line; exit status 0 on PASS.
"""

from __future__ import annotations

import argparse

from reliability.checks import run_tests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=20_000)
    args = parser.parse_args(argv)
    env = {"SMSD_R3_RECIPIENTS": str(args.recipients)}
    return run_tests("R3", "tests/e2e/test_r3_faults.py", f"at {args.recipients} recipients", env)


if __name__ == "__main__":
    raise SystemExit(main())
