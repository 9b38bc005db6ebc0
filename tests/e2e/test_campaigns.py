"""Campaigns end to end: real workers, the embedded Redis, the simulator over HTTP, and the runner's tick
run in this process by a ticker thread (beat's job), on a clock the test may set.

Campaigns are submitted through the intake (``worker.campaign.intake.submit``) from a CSV file made here.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any
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
Row = tuple[str, dict[str, str] | None]
BILL = {"template": "bill"}
SHANGHAI = ZoneInfo("Asia/Shanghai")


class Ticker:
    """Beat's part, in a thread: the runner's tick (on ``clock``, ms) and the long-wait release, every
    ``interval_s``; the lease sweep too with ``sweep``."""

    def __init__(self, store: Store, clock: Callable[[], int] = now_ms, interval_s: float = 0.1,
                 sweep: bool = False) -> None:
        from config.settings import get_settings

        self.store = Store(store.r, get_settings())  # as the test tuned them
        self.clock, self.interval_s, self.sweep = clock, interval_s, sweep
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


def bill_rows(n: int, prefix: str = "139") -> list[Row]:
    """Recipients with their own parameters (the bill template's name and amount)."""
    return [(f"{prefix}{i:08d}", {"name": f"客户{i}", "amount": f"{i % 997}.{i % 10:02d}"}) for i in range(n)]


def submitted(store: Store, rows: Sequence[Row], **spec: Any) -> str:
    """Submit ``rows`` as a CSV file (a phone column, one column per parameter); returns the campaign id."""
    from worker.campaign.intake import CampaignSpec, submit

    names = sorted({name for _, own in rows for name in (own or {})})
    lines = [",".join(["phone", *names])]
    lines += [",".join([phone, *((own or {}).get(name, "") for name in names)]) for phone, own in rows]
    data = io.BytesIO("\n".join(lines).encode("utf-8"))
    result = submit(data, "recipients.csv", CampaignSpec(**spec), store.settings, store)
    assert result.accepted == len(rows), result
    return result.id


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
    cid = submitted(store, rows, **BILL)
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


def test_pause_holds_all_but_the_chunks_claimed_resume_goes_on_cancel_sends_nothing_more(  # type: ignore[no-untyped-def]
    start_worker, sim: SimulatorServer, store: Store, ticker, tap: SimTap
) -> None:
    start_worker("camp", concurrency=2)
    sim.state.set_faults("infocloud", FaultPlan(latency_s=0.3))
    rows = bill_rows(12_000, "137")
    cid = submitted(store, rows, **BILL)
    ticker()
    wait_for(lambda: len(sent_by(tap, cid)) >= 2, timeout=20, interval=0.02)
    control.pause(store, cid)
    at_pause = len(sent_by(tap, cid))
    def fed() -> int:  # chunks fed before the pause took (no tick feeds a paused campaign)
        return int(store.campaign_meta(cid)["chunks_fed"])

    wait_for(lambda: store.held_chunks(cid) + len(sent_by(tap, cid)) >= fed(), timeout=20)
    time.sleep(0.7)  # anything still claimed ends (latency 0.3 s)
    paused = len(sent_by(tap, cid))
    assert paused <= at_pause + 2  # at most one chunk per worker process was claimed at the pause
    view = control.get_campaign(store, cid)
    assert view.status == "paused" and view.counts[State.SUBMITTED] == paused * 1000
    assert view.counts[State.QUEUED] == 12_000 - paused * 1000 and not view.done

    control.resume(store, cid)
    wait_for(lambda: len(sent_by(tap, cid)) >= paused + 2, timeout=20, interval=0.02)
    control.cancel(store, cid)
    at_cancel = len(sent_by(tap, cid))
    wait_for(lambda: control.get_campaign(store, cid).status == "cancelled", timeout=20, interval=0.1)
    wait_for(lambda: control.get_campaign(store, cid).counts[State.SENDING] == 0, timeout=20)
    time.sleep(0.7)
    calls = len(sent_by(tap, cid))
    assert calls <= at_cancel + 2 and calls < 12
    view = control.get_campaign(store, cid)
    assert {state: n for state, n in view.counts.items() if n} == {
        "submitted": calls * 1000, "cancelled": 12_000 - calls * 1000}
    assert sum(view.counts.values()) == view.accepted == 12_000 and view.done
    received = sim.state.counters("infocloud").received
    assert set(received.values()) == {1}
    assert {p for p, rec in store.records(cid).items() if rec.state is State.SUBMITTED} == set(received)
    assert store.r.exists(Keys.campaign_pages(cid), Keys.campaign_held(cid)) == 0
    assert cid not in store.active_campaigns()
    print(f"pause: {at_pause} calls at the pause, {paused} in all while paused; cancel: {at_cancel} calls "
          f"at the cancel, {calls} in all, {12_000 - calls * 1000} recipients cancelled")


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
    cid = submitted(store, rows, kind="marketing", **BILL)
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

    cid = submitted(store, bill_rows(10, "134"), kind="marketing", **BILL)
    before_eight = next_local(7, 59, 58)
    assert run_tick(store, store.settings, before_eight) == {"held": 1}
    assert store.campaign_meta(cid)["fed"] == "0"
    assert int(store.campaign_meta(cid)["held_until_ms"]) == before_eight + 2000
    assert run_tick(store, store.settings, before_eight + 2000) == {"running": 1}
    assert store.campaign_meta(cid)["fed"] == "1" and store.campaign_meta(cid)["held_reason"] == ""


def test_tencent_1029_makes_a_campaign_chunk_wait_in_redis_until_eight_not_fail(  # type: ignore[no-untyped-def]
    start_worker, sim: SimulatorServer, store: Store, ticker, tuned
) -> None:
    from tasks.poll import release_deferred

    tuned(CAMPAIGN__QUIET_HOURS="")  # our own quiet hours off: Tencent still refuses marketing at night
    start_worker("camp", concurrency=2)
    sim.state.set_faults("tencent", FaultPlan(codes=("1029",), code_rate=1.0))
    rows = [(f"132{i:08d}", None) for i in range(5)]
    order = {"template": "order_shipped", "params": {"order": "A1", "tracking": "SF1"}}
    cid = submitted(store, rows, kind="marketing", provider="tencent", **order)
    ticker()
    wait_for(lambda: store.progress(cid).get(State.RETRY) == 5 and store.r.zcard(Keys.deferred) >= 5, 30)
    deferred = store.r.zrange(Keys.deferred, 0, -1, withscores=True)
    assert len(deferred) == 5, deferred
    eight = datetime.now(SHANGHAI).replace(hour=8, minute=0, second=0, microsecond=0)
    if eight <= datetime.now(SHANGHAI):
        eight += timedelta(days=1)
    assert all(abs(score / 1000 - eight.timestamp()) < 10 for _, score in deferred)  # until 08:00
    assert {json.loads(entry)["args"][4] for entry, _ in deferred} == {True}
    view = control.get_campaign(store, cid)
    assert view.counts[State.RETRY] == 5 and view.counts[State.FAILED] == 0 and not view.done
    assert sim.state.counters("tencent").answered_codes["1029"] == 5
    sim.state.set_faults("tencent", None)  # 08:00 comes: Tencent takes marketing again
    store.r.zadd(Keys.deferred, {entry: 0 for entry, _ in deferred})
    release_deferred()
    wait_for(lambda: control.get_campaign(store, cid).done, timeout=20, interval=0.1)
    assert control.get_campaign(store, cid).counts[State.SUBMITTED] == 5
    assert sorted(sim.state.counters("tencent").received.values()) == [1] * 5


def test_two_campaigns_started_together_share_the_vendor_evenly(  # type: ignore[no-untyped-def]
    start_worker, sim: SimulatorServer, store: Store, ticker, tap: SimTap, tuned
) -> None:
    tuned(INFOCLOUD__REQUESTS_PER_SECOND="30", CAMPAIGN__LOOKAHEAD_S="0.5")  # 8 chunks in flight each
    start_worker("camp", concurrency=2)
    # Written as the intake would, but in pages of 100 rows: one call per page, as the intake's pages of
    # 1000 are for Infocloud's batches of 1000, at a tenth of the rows.
    first = seed_campaign(store, bill_rows(4000, "131"), page_rows=100, **BILL)
    second = seed_campaign(store, bill_rows(6000, "130"), page_rows=100, **BILL)
    ticker()
    wait_for(lambda: len(tap.calls_to("/message/sendBatch")) >= 60, timeout=30, interval=0.1)
    calls = tap.calls_to("/message/sendBatch")[:60]  # both campaigns have work all along
    ours = sum(call.bid.startswith(first) for call in calls)
    assert ours + sum(call.bid.startswith(second) for call in calls) == len(calls)
    share = ours / len(calls)
    print(f"fairness: of the first {len(calls)} calls, {share:.1%} to one campaign, the rest to the other")
    assert 0.45 <= share <= 0.55
    assert set(sim.state.counters("infocloud").call_sizes) == {100}  # one page, one call


def test_notify_and_otp_sends_are_not_held_up_by_a_running_campaign(  # type: ignore[no-untyped-def]
    start_worker, sim: SimulatorServer, store: Store, ticker, tap: SimTap
) -> None:
    from tasks import send_sms

    # A worker that takes notify and bulk work reserves one task per process (prefetch 1): a notify
    # send then waits for one chunk at most, not for a prefetched batch of them. OTPs have their own.
    start_worker("bulk", queues="sms.notify,sms.bulk,sms.poll", concurrency=2, SMSD_WORKER_PREFETCH="1")
    start_worker("otp", queues="sms.otp", concurrency=1)
    kinds = {
        "otp": ({"template": "login_code", "params": {"code": "123456"}, "kind": "otp"}, "151"),
        "notify": ({"template": "order_shipped", "params": {"order": "A1", "tracking": "SF1"}}, "152"),
    }

    def send(kind: str, i: int) -> float:
        """Seconds from send_sms.delay to the simulator's first byte of the call."""
        request, prefix = kinds[kind]
        phone = f"{prefix}{i:08d}"
        sent = time.monotonic()
        send_sms.delay(phone, **request)
        wait_for(lambda: any(phone in c.phones for c in tap.calls_to("/message/send")), 5, 0.002)
        return next(c.started for c in tap.calls_to("/message/send") if phone in c.phones) - sent

    for kind in kinds:  # each worker process's first task sets up its connections
        send(kind, 99)
    sim.state.set_faults("infocloud", FaultPlan(latency_s=0.5))  # 20 calls: 5 s and more on two processes
    cid = submitted(store, bill_rows(20_000, "150"), **BILL)
    ticker()
    wait_for(lambda: len(tap.calls_to("/message/sendBatch")) >= 4, timeout=20, interval=0.02)
    latencies: dict[str, list[float]] = {kind: [] for kind in kinds}
    for i in range(3):
        for kind in kinds:
            latencies[kind].append(send(kind, i))
    assert control.get_campaign(store, cid).counts[State.QUEUED] > 0  # the campaign ran all along
    control.cancel(store, cid)
    print("while a campaign runs: " + ", ".join(
        f"{kind} worst {max(v) * 1000:.0f} ms, median {sorted(v)[len(v) // 2] * 1000:.0f} ms"
        for kind, v in latencies.items()))
    assert sorted(latencies["otp"])[1] < 0.1  # the median: one process on a machine others share
    assert max(latencies["notify"]) < 1.0


def test_a_worker_killed_mid_campaign_loses_nothing_and_sends_nobody_twice(  # type: ignore[no-untyped-def]
    start_worker, sim: SimulatorServer, store: Store, ticker, tap: SimTap, tuned
) -> None:
    tuned(LEASE_GRACE_S="2", INFOCLOUD__READ_TIMEOUT_S="1", INFOCLOUD__CONNECT_TIMEOUT_S="0.5")
    sim.state.set_faults("infocloud", FaultPlan(latency_s=0.5))
    doomed = start_worker("doomed", concurrency=2)
    rows = bill_rows(6000, "153")
    cid = submitted(store, rows, **BILL)
    ticker(sweep=True)
    wait_for(lambda: sim.state.counters("infocloud").requests >= 3, timeout=20, interval=0.01)
    doomed.kill()  # two calls in flight, more chunks reserved by it
    start_worker("heir", concurrency=2, SMSD_VISIBILITY_TIMEOUT_S="3")
    wait_for(lambda: control.get_campaign(store, cid).done, timeout=40, interval=0.2)
    view = control.get_campaign(store, cid)
    assert view.counts[State.SUBMITTED] == 6000
    received = sim.state.counters("infocloud").received
    assert set(received.values()) == {1}  # nobody twice
    records = store.records(cid)
    unconfirmed = {p for p, rec in records.items() if rec.code == "AMBIGUOUS"}
    assert set(received) | unconfirmed == {phone for phone, _ in rows}  # nobody lost
    assert len(unconfirmed) <= 2000  # at most the calls in flight at the kill
    print(f"worker killed: {len(received)} received once each, {len(unconfirmed)} left unconfirmed")
