"""Run a reliability check's pytest variant from its script: the test's own figures (its lines starting
with the check's name, e.g. ``R3 ``), the assertion that failed if one did, and one PASS/FAIL line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_tests(check: str, tests: str, what: str, env: dict[str, str] | None = None) -> int:
    """Run ``tests`` (with ``env`` added), print the figures and the verdict; 0 on PASS, else 1."""
    started = time.monotonic()
    cmd = [sys.executable, "-m", "pytest", tests, "-q", "-s", "-p", "no:cacheprovider", "--timeout=1800"]
    done = subprocess.run(
        cmd, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, check=False
    )
    lines = done.stdout.splitlines()
    for line in lines:
        if line.startswith((f"{check} ", f"{check}:", "E  ", "FAILED")):
            print(line)
    summary = lines[-1] if lines else done.stderr.strip()[-500:]
    verdict = "PASS" if done.returncode == 0 else "FAIL"
    print(f"{verdict}: {check} {what}: {summary} ({time.monotonic() - started:.0f} s)")
    return 0 if done.returncode == 0 else 1
