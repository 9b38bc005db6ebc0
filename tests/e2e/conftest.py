"""Fixtures for the fault tests (``test_faults.py``): a short settle window, a tap on the simulator, a
beat tick run in the test process, and the wait that ends every fault test ("nobody stranded").

The long variants (20 s outages, 50,000 to 100,000 recipients, the default visibility timeout) are
marked ``slow`` and run only with ``SMSD_SLOW_TESTS=1`` (``reliability/faults.py`` runs them).
"""

from __future__ import annotations

import importlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import pytest
import redis

from providers.simulator.server import SimulatorServer
from tests.faults import Mode, Outage, SimTap, Trigger, redis_outage
from worker.embedded import EmbeddedRedis

SETTLE_S = "5"  # every submitted recipient without a receipt is settled after this (issue 10)
LEASE_GRACE_S = "10"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a long fault test, run only with SMSD_SLOW_TESTS=1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("SMSD_SLOW_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="slow fault test: set SMSD_SLOW_TESTS=1 (reliability/faults.py)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def fault_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Short safety nets, in this process and in every worker started by the test (they inherit
    ``os.environ``): a 5 s settle window and a 10 s lease grace (a chunk whose task was lost is queued
    again by the lease sweep after it; unknown to code that has no leases, which ignores it)."""
    from config.settings import get_settings

    values = {"SMSD_INFOCLOUD__SETTLE_S": SETTLE_S, "SMSD_LEASE_GRACE_S": LEASE_GRACE_S}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield values
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def tap(sim: SimulatorServer) -> Iterator[SimTap]:
    """Records every call the simulator answers during the test; can hold an answer back."""
    wrapped = SimTap(sim)
    yield wrapped
    wrapped.close()


def fresh_broker_connections() -> None:
    """Drop this process's pooled broker connections after Redis restarted: Celery would hand their dead
    sockets to the next publish or ``control.ping`` (which does not retry). Each pool is emptied and
    filled again with lazy connections (kombu's ``setup``), so it stays usable."""
    from worker.app import app

    for pool in (app.amqp.producer_pool, app.pool):
        pool.force_close_all(close_pool=False)
        pool.setup()


@contextmanager
def outage(
    server: EmbeddedRedis, seconds: float, mode: Mode, when: Trigger | None = None
) -> Iterator[Outage]:
    """``tests.faults.redis_outage``, and this process's broker connections renewed afterwards."""
    try:
        with redis_outage(server, seconds, mode, when=when) as happening:
            yield happening
    finally:
        fresh_broker_connections()


def beat_tick() -> list[str]:
    """Run every task of the beat schedule once, now, in this process (receipts, deferrals, sweeps):
    what a beat with every interval elapsed would have queued. Returns the errors met (Redis only)."""
    from worker.app import app

    for module in app.conf.include or ("tasks.send", "tasks.poll"):
        importlib.import_module(module)  # registers the scheduled tasks

    errors = []
    for name, entry in app.conf.beat_schedule.items():
        try:
            app.tasks[entry["task"]](*entry.get("args", ()), **entry.get("kwargs", {}))
        except redis.RedisError as exc:  # Redis just came back: the next tick tries again
            errors.append(f"{name}: {exc!r}")
    return errors


class Stranded(AssertionError):
    """Recipients that never reached a final state."""


def final_states() -> frozenset[str]:
    from worker.store import State

    return frozenset({State.DELIVERED, State.FAILED, State.REJECTED, State.RATE_LIMITED, State.OPTED_OUT})


def drive_to_final(
    counts: Callable[[], Counter[str]],
    expected: int,
    *,
    timeout_s: float = 90.0,
    stall_s: float = 25.0,
    interval_s: float = 0.5,
    tick: Callable[[], object] = beat_tick,
) -> Counter[str]:
    """Tick the beat schedule until all ``expected`` recipients are final (see ``State``).

    Raises :class:`Stranded` once nothing has moved for ``stall_s`` (s) or after ``timeout_s``: a
    stranded recipient never moves again, so a failing run ends in about ``stall_s``.
    """
    final = final_states()
    started = last_move = time.monotonic()
    seen: Counter[str] | None = None
    while True:
        tick()
        now_counts = counts()
        if sum(now_counts[s] for s in final) >= expected:
            return now_counts
        if now_counts != seen:
            seen, last_move = now_counts, time.monotonic()
        now = time.monotonic()
        if now - last_move > stall_s or now - started > timeout_s:
            unrecorded = expected - sum(now_counts.values())
            stranded = {k: v for k, v in now_counts.items() if v and k not in final}
            raise Stranded(
                f"stranded after {now - started:.0f} s: {stranded} and {unrecorded} never recorded "
                f"(all: {dict(now_counts)})"
            )
        time.sleep(interval_s)


def combined(counters: Iterable[Counter[str]]) -> Counter[str]:
    total: Counter[str] = Counter()
    for counter in counters:
        total.update(counter)
    return total
