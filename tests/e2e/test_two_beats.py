"""Two beat processes at once (a standby beat left running, or started by mistake) with a real worker:
every cadence held in Redis holds, measured at the simulator over a minute. Infocloud: receipts at most 3
in any 60 s, balance at most once per 15 s (the simulator enforces both too, answering 6000 beyond)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from providers.simulator.core import SimConfig
from providers.simulator.server import SimulatorServer
from tests.conftest import ROOT, WorkerProcess

pytestmark = pytest.mark.e2e
RECEIPTS, BALANCE = "/sms/arriveRes/qry", "/sms/residueValue/qry"
WATCH_S = 60.0
SHORT = {
    "SMSD_INFOCLOUD__QUERY_PER_MINUTE": "3",
    "SMSD_INFOCLOUD__RECEIPT_POLL_INTERVAL_S": "2",  # each beat asks far more often than the rule allows
    "SMSD_INFOCLOUD__BALANCE_POLL_INTERVAL_S": "15",
    "SMSD_XIAORUI__BALANCE_POLL_INTERVAL_S": "5",
    "SMSD_IHUYI__BALANCE_POLL_INTERVAL_S": "5",
}


class Tap:
    """Records (path, monotonic time) of every call the running simulator answers."""

    def __init__(self, sim: SimulatorServer) -> None:
        self.app = sim.app
        if self.app.middleware_stack is None:
            self.app.middleware_stack = self.app.build_middleware_stack()
        self.inner: ASGIApp = self.app.middleware_stack
        self.calls: list[tuple[str, float]] = []
        self.lock = threading.Lock()
        self.app.middleware_stack = self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            with self.lock:
                self.calls.append((scope["path"], time.monotonic()))
        await self.inner(scope, receive, send)

    def times(self, path: str) -> list[float]:
        with self.lock:
            return [at for p, at in self.calls if p == path]

    def close(self) -> None:
        self.app.middleware_stack = self.inner


@pytest.fixture
def tap(sim: SimulatorServer) -> Iterator[Tap]:
    sim.state.config = SimConfig(query_per_minute=3, balance_interval_s=15.0, tps_limit=100000)
    tapped = Tap(sim)
    yield tapped
    tapped.close()


def start_beat(env: dict[str, str], tmp_path: Path, name: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "celery", "-A", "worker.app", "beat", "-l", "INFO",
           "-s", str(tmp_path / f"{name}-schedule")]
    log = (tmp_path / f"{name}.log").open("w")
    return subprocess.Popen(cmd, env={**os.environ, **env}, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log,
                            start_new_session=True)


def most_in_any_window(times: list[float], window_s: float) -> int:
    return max((sum(1 for t in times if start <= t < start + window_s) for start in times), default=0)


@pytest.mark.slow  # a minute of two beats: run by reliability/faults.py (SMSD_SLOW_TESTS=1)
def test_two_beats_together_keep_every_cadence(  # type: ignore[no-untyped-def]
    start_worker: Callable[..., WorkerProcess], env, sim, tmp_path: Path, tap: Tap
) -> None:
    start_worker("poller", queues="sms.poll", concurrency=2, **SHORT)
    beats = [start_beat({**env, **SHORT}, tmp_path, f"beat{i}") for i in (1, 2)]
    try:
        time.sleep(WATCH_S)
        assert all(beat.poll() is None for beat in beats), "a beat exited"
    finally:
        for beat in beats:
            if beat.poll() is None:
                os.killpg(beat.pid, 15)
                beat.wait(15)
    receipts, balance = tap.times(RECEIPTS), tap.times(BALANCE)
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(balance)]
    print(f"in {WATCH_S:.0f} s with two beats: infocloud receipts {len(receipts)} (most in any 60 s: "
          f"{most_in_any_window(receipts, 60.0)}), balance {len(balance)} (gaps {gaps} s), "
          f"xiaorui balance {len(tap.times('/release/smsoverage'))}, ihuyi calls "
          f"{len(tap.times('/webservice/sms.php'))}")
    assert len(receipts) >= 3 and most_in_any_window(receipts, 60.0) <= 3
    assert len(balance) >= 2 and all(gap >= 15.0 for gap in gaps)
    assert 3 <= len(tap.times("/release/smsoverage")) <= WATCH_S / (5 * 0.9) + 1
    assert sim.state.counters("infocloud").answered_codes.get("6000", 0) == 0  # the vendor never refused one
