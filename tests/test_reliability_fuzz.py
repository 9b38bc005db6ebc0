"""Reliability check R5 in CI: ``reliability/fuzz.py``'s targets for the HTTP API (``POST /v1/messages``
bodies and headers, ``POST /v1/campaigns`` uploads), recipient files, the campaign intake's dry run and
what the push receiver keeps of an Infocloud push, at a few hundred cases each (the script draws 10,000).

The script's other targets (``send_sms`` arguments, every adapter's parsers, the push parsers, the
settings) share their strategies with the suite's own property tests, which run them here already.

It runs in a subprocess: the targets replace Celery's publish and configure logging for the whole process.
"""

from __future__ import annotations

import subprocess
import sys

from reliability.fuzz_targets import TARGETS
from tests.conftest import ROOT

CASES = 200


def test_r5_api_campaign_files_and_intake_refuse_hostile_input_clearly() -> None:
    only = ",".join(TARGETS)
    done = subprocess.run(
        [sys.executable, "-m", "reliability.fuzz", "--cases", str(CASES), "--only", only],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    print(done.stdout)
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and lines and lines[-1].startswith("PASS"), (
        done.stdout[-4000:] + done.stderr[-2000:]
    )
    counted = [line.split() for line in lines[1:-1] if line.strip()]
    assert len(counted) == len(TARGETS), done.stdout
    for row in counted:
        cases, refused, accepted, unhandled = (int(n) for n in row[-5:-1])
        assert cases == CASES and unhandled == 0 and refused > 0 and accepted > 0, " ".join(row)
