"""Campaigns end to end: real workers, the embedded Redis, the simulator over HTTP, and the runner's tick
run in this process by a ticker thread (beat's job), on a clock the test may set.

Campaigns are written into Redis as the intake leaves them (``seed_campaign``): meta, pages, recipients
recorded queued.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import redis

from providers.simulator.core import FaultPlan
from providers.simulator.server import SimulatorServer
from tests.conftest import wait_for
from tests.faults import SimTap
from tests.test_campaign_control import seed_campaign
from worker.campaign import control
from worker.store import Keys, State, Store, now_ms

pytestmark = pytest.mark.e2e
BILL = {"template": "bill"}
SHANGHAI = ZoneInfo("Asia/Shanghai")


class Ticker:
    """Beat's part, in a thread: the runner's tick (on ``clock``, ms) and the long-wait release, every
    ``interval_s``; the lease sweep too with ``sweep``."""

    def __init__(self, store: Store, clock: Callable[[], int] = now_ms, interval_s: float = 0.1,
                 sweep: bool = False) -> None:
        self.store, self.clock, self.interval_s, self.sweep = store, clock, interval_s, sweep
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        from tasks.campaign import run_tick
        from tasks.poll import release_deferred, sweep_leases

        while not self.stop.is_set():
            try:
                run_tick(self.store, self.store.settings, self.clock())
                release_deferred()
                if self.sweep:
                    sweep_leases()
            except Exception as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(exc)
            self.stop.wait(self.interval_s)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.errors, self.errors


@pytest.fixture
def store(r: redis.Redis, settings) -> Store:  # type: ignore[no-untyped-def]
    return Store(r, settings)


@pytest.fixture
def ticker(store: Store) -> Iterator[Callable[..., Ticker]]:
    started: list[Ticker] = []

    def start(**options: object) -> Ticker:
        started.append(Ticker(store, **options))  # type: ignore[arg-type]
        return started[-1]

    yield start
    for ticker_ in started:
        ticker_.close()


@pytest.fixture
def tuned(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Set settings for this process (the tick) and the workers the test starts after (they inherit)."""
    from config.settings import get_settings

    def tune(**values: str) -> None:
        for key, value in values.items():
            monkeypatch.setenv(f"SMSD_{key}", value)
        get_settings.cache_clear()

    yield tune
    monkeypatch.undo()
    get_settings.cache_clear()


def bill_rows(n: int, prefix: str = "139") -> list[tuple[str, dict[str, str] | None]]:
    """Recipients with their own parameters (the bill template's name and amount)."""
    return [(f"{prefix}{i:08d}", {"name": f"客户{i}", "amount": f"{i % 997}.{i % 10:02d}"}) for i in range(n)]


def finished(store: Store, campaign_id: str) -> control.CampaignView:
    view = control.get_campaign(store, campaign_id)
    assert view.done, view
    return view


def sent_by(tap: SimTap, campaign_id: str) -> list[int]:
    """Sizes of the sendBatch calls the simulator answered for this campaign (its bid names it)."""
    return [len(c.phones) for c in tap.calls_to("/message/sendBatch") if c.bid.startswith(campaign_id)]


def test_20000_recipients_with_their_own_params_go_out_in_20_batch_calls_each_number_once(  # type: ignore[no-untyped-def]
    start_worker, sim: SimulatorServer, store: Store, ticker, tap: SimTap
) -> None:
    start_worker("camp", concurrency=2)
    rows = bill_rows(20_000)
    cid = seed_campaign(store, rows, **BILL)
    began = time.monotonic()
    ticker()
    wait_for(lambda: control.get_campaign(store, cid).done, timeout=60, interval=0.2)
    took = time.monotonic() - began
    view = finished(store, cid)
    assert view.status == "done" and view.counts[State.SUBMITTED] == 20_000 and view.parts == 20_000
    assert sent_by(tap, cid) == [1000] * 20
    counters = sim.state.counters("infocloud")
    assert counters.received == {phone: 1 for phone, _ in rows}
    assert store.r.exists(Keys.campaign_pages(cid)) == 0
    print(f"20,000 recipients: 20 sendBatch calls in {took:.1f} s")


def test_pause_stops_within_the_chunks_claimed_and_resume_sends_the_rest(  # type: ignore[no-untyped-def]
    start_worker, sim: SimulatorServer, store: Store, ticker, tap: SimTap
) -> None:
    start_worker("camp", concurrency=2)
    sim.state.set_faults("infocloud", FaultPlan(latency_s=0.3))
    rows = bill_rows(12_000, "137")
    cid = seed_campaign(store, rows, **BILL)
    ticker()
    wait_for(lambda: len(sent_by(tap, cid)) >= 2, timeout=20, interval=0.02)
    control.pause(store, cid)
    at_pause = len(sent_by(tap, cid))
    wait_for(lambda: store.held_chunks(cid) + len(sent_by(tap, cid)) >= 12, timeout=20)
    time.sleep(0.7)  # anything still claimed ends (latency 0.3 s)
    after = len(sent_by(tap, cid))
    assert after <= at_pause + 2  # at most one chunk per worker process was claimed at the pause
    view = control.get_campaign(store, cid)
    assert view.status == "paused" and view.counts[State.SUBMITTED] == after * 1000
    assert view.counts[State.QUEUED] == 12_000 - after * 1000 and not view.done
    control.resume(store, cid)
    wait_for(lambda: control.get_campaign(store, cid).done, timeout=30, interval=0.2)
    assert sent_by(tap, cid) == [1000] * 12
    assert sim.state.counters("infocloud").received == {phone: 1 for phone, _ in rows}
    print(f"pause: {at_pause} calls at the pause, {after} after it; resume sent the other {12 - after}")


def test_cancel_sends_nothing_more_and_the_counts_add_up(  # type: ignore[no-untyped-def]
    start_worker, sim: SimulatorServer, store: Store, ticker, tap: SimTap
) -> None:
    start_worker("camp", concurrency=2)
    sim.state.set_faults("infocloud", FaultPlan(latency_s=0.3))
    rows = bill_rows(12_000, "136")
    cid = seed_campaign(store, rows, **BILL)
    ticker()
    wait_for(lambda: len(sent_by(tap, cid)) >= 2, timeout=20, interval=0.02)
    control.cancel(store, cid)
    at_cancel = len(sent_by(tap, cid))
    wait_for(lambda: control.get_campaign(store, cid).status == "cancelled", timeout=20, interval=0.1)
    wait_for(lambda: control.get_campaign(store, cid).counts[State.SENDING] == 0, timeout=20)
    time.sleep(0.7)
    calls = len(sent_by(tap, cid))
    assert calls <= at_cancel + 2
    view = control.get_campaign(store, cid)
    counts = {state: n for state, n in view.counts.items() if n}
    assert counts == {"submitted": calls * 1000, "cancelled": 12_000 - calls * 1000}
    assert sum(view.counts.values()) == view.accepted == 12_000
    received = sim.state.counters("infocloud").received
    records = store.records(cid)
    assert set(received.values()) == {1}
    assert {p for p, rec in records.items() if rec.state is State.SUBMITTED} == set(received)
    assert store.r.exists(Keys.campaign_pages(cid), Keys.campaign_held(cid)) == 0
    assert cid not in store.active_campaigns()
    print(f"cancel: {at_cancel} calls at the cancel, {calls} in all; {12_000 - calls * 1000} cancelled")


def next_local(hour: int, minute: int, second: int = 0) -> int:
    """The next time (ms) the Shanghai clock shows ``hour:minute:second``, at least a minute ahead."""
    now = datetime.now(SHANGHAI) + timedelta(minutes=1)
    at = now.replace(hour=hour, minute=minute, second=second, microsecond=0)
    if at < now:
        at += timedelta(days=1)
    return int(at.timestamp() * 1000)


def test_a_marketing_campaign_in_quiet_hours_is_held_then_runs_when_they_end(  # type: ignore[no-untyped-def]
    start_worker, sim: SimulatorServer, store: Store, ticker, tap: SimTap
) -> None:
    from tasks.campaign import run_tick

    rows = bill_rows(3000, "135")
    cid = seed_campaign(store, rows, kind="marketing", **BILL)
    evening = next_local(20, 59, 50)
    run_tick(store, store.settings, evening)  # 20:59:50: fed, queued (no worker yet)
    assert store.campaign_meta(cid)["fed"] == "3"
    late = evening + 60_000
    run_tick(store, store.settings, late)  # 21:00:50: quiet hours begin, before any chunk ran
    view = control.get_campaign(store, cid)
    assert view.held_reason == "quiet hours 21:00-08:00" and view.status == "running"
    assert view.held_until is not None and (view.held_until.hour, view.held_until.minute) == (8, 0)
    start_worker("camp", concurrency=2)  # the queued chunks meet the hold: they wait in Redis
    wait_for(lambda: store.r.zcard(Keys.deferred) == 3, timeout=20)
    deferred = store.r.zrange(Keys.deferred, 0, -1, withscores=True)
    assert {json.loads(entry)["args"][4] for entry, _ in deferred} == {True}  # the campaign flag travels
    until = int(store.campaign_meta(cid)["held_until_ms"])
    assert all(abs(score - until) < 100 for _, score in deferred)
    time.sleep(0.5)
    assert tap.calls_to("/message/sendBatch") == []
    assert control.get_campaign(store, cid).counts[State.QUEUED] == 3000  # held, not failed
    morning = next_local(8, 0, 30)
    run_tick(store, store.settings, morning)  # 08:00:30: the hold is lifted
    assert control.get_campaign(store, cid).held_reason == ""
    store.r.zadd(Keys.deferred, {entry: 0 for entry, _ in deferred})  # their due time has come
    ticker(clock=lambda: morning)
    wait_for(lambda: control.get_campaign(store, cid).done, timeout=30, interval=0.2)
    assert sent_by(tap, cid) == [1000] * 3
    assert sim.state.counters("infocloud").received == {phone: 1 for phone, _ in rows}


def test_quiet_hours_hold_feeding_until_the_minute_they_end(store: Store) -> None:  # type: ignore[no-untyped-def]
    from tasks.campaign import run_tick

    cid = seed_campaign(store, bill_rows(10, "134"), kind="marketing", **BILL)
    before_eight = next_local(7, 59, 58)
    assert run_tick(store, store.settings, before_eight) == {"held": 1}
    assert store.campaign_meta(cid)["fed"] == "0"
    assert int(store.campaign_meta(cid)["held_until_ms"]) == before_eight + 2000
    assert run_tick(store, store.settings, before_eight + 2000) == {"running": 1}
    assert store.campaign_meta(cid)["fed"] == "1" and store.campaign_meta(cid)["held_reason"] == ""
