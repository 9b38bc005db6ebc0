"""Vendor health against a real Redis: the circuit breaker script, benches, balances and their cadence, and
what ``run_chunk`` does with them (an adapter the test scripts, or the simulator over HTTP)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import httpx
import pytest
import redis

from config.returnpath import BreakerSettings
from config.settings import Settings
from providers.base import Balance, RenderedTemplate
from providers.errors import AmbiguousError, NotSentError, RateLimitedError, TransientError
from providers.simulator.core import FaultPlan
from providers.simulator.server import SimulatorServer
from tasks.dispatch import ChunkJob, run_chunk
from tasks.plan import ChunkSpec
from tasks.vendors import apply_balances, balance_window_s, poll_balance
from tests.test_dispatch import Scripted, provider
from worker.store import Keys, State, Store
from worker.store.vendors import ok_marker

TEMPLATE = RenderedTemplate("675871161745170000", ("1234",), ("code",), "text")
LOGICAL = {"template": "login_code", "params": {"code": "1234"}, "content": None, "provider": None}
P1, P2 = "13900000001", "13900000002"


def breaker_settings(settings: Settings, failures: int = 3, probe_s: float = 0.5) -> Settings:
    breaker = BreakerSettings(failures=failures, probe_interval_s=probe_s)
    return settings.model_copy(update={"breaker": breaker})


@pytest.fixture
def store(r: redis.Redis, settings: Settings) -> Store:
    return Store(r, breaker_settings(settings))


def chunk_job(kind: str, phones: Sequence[str] = (P1,), attempt: int = 0) -> ChunkJob:
    chunk = ChunkSpec(0, "infocloud", tuple(phones), TEMPLATE, logical=LOGICAL)
    return ChunkJob("msg-1", kind, chunk, attempt)


def refused() -> NotSentError:
    return NotSentError("infocloud: ConnectError: refused", provider="infocloud")


# -- the breaker script -------------------------------------------------------------------------------


def test_the_breaker_opens_after_n_certain_failures_in_a_row(store: Store) -> None:
    assert [store.breaker_failed("infocloud").open for _ in range(3)] == [False, False, True]
    gate = store.breaker_ask("infocloud")
    assert not gate.allowed and 0 < gate.wait_s <= 0.5


def test_a_success_between_failures_starts_the_count_again(store: Store, r: redis.Redis) -> None:
    store.breaker_failed("infocloud")
    store.breaker_failed("infocloud")
    r.set(Keys.vendor_ok("infocloud"), ok_marker("t1"))
    assert store.breaker_failed("infocloud").failures == 1
    assert not store.breaker_failed("infocloud").open


def test_one_probe_per_interval_across_two_clients(store: Store, env: dict[str, str]) -> None:
    other = Store(redis.Redis.from_url(env["SMSD_REDIS_URL"], decode_responses=True), store.settings)
    for _ in range(3):
        store.breaker_failed("infocloud")
    time.sleep(0.55)
    grants: list[bool] = []
    lock = threading.Lock()

    def ask(s: Store) -> None:
        for _ in range(20):
            gate = s.breaker_ask("infocloud")
            with lock:
                grants.append(gate.probe)

    threads = [threading.Thread(target=ask, args=(s,)) for s in (store, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(grants) == 1 and len(grants) == 40
    time.sleep(0.55)
    assert store.breaker_ask("infocloud").probe  # the next interval has its own probe
    assert not other.breaker_ask("infocloud").allowed


def test_a_success_closes_an_open_breaker(store: Store, r: redis.Redis) -> None:
    for _ in range(3):
        store.breaker_failed("infocloud")
    assert not store.breaker_ask("infocloud").allowed
    r.set(Keys.vendor_ok("infocloud"), ok_marker("probe"))  # what a successful run's record writes
    gate = store.breaker_ask("infocloud")
    assert gate.allowed and not gate.probe and gate.failures == 0
    assert store.open_breakers(["infocloud"]) == {}


def test_the_breaker_hash_expires(store: Store, r: redis.Redis) -> None:
    store.breaker_failed("infocloud")
    assert 0 < r.ttl(Keys.breaker("infocloud")) <= 86400


# -- run_chunk and the breaker ------------------------------------------------------------------------


def test_ambiguous_outcomes_never_count_but_refused_connections_do(store: Store) -> None:
    settings = store.settings
    for i in range(5):
        run_chunk(chunk_job("notify", [f"1390000010{i}"]), settings, store, Scripted(raises=AmbiguousError(
            "infocloud: read time-out", provider="infocloud")))
    assert store.breaker_ask("infocloud").failures == 0
    for i in range(3):
        run_chunk(chunk_job("notify", [f"1390000020{i}"]), settings, store, Scripted(raises=refused()))
    assert not store.breaker_ask("infocloud").allowed


def test_rate_limits_are_an_answer_and_do_not_open_it(store: Store) -> None:
    limited = RateLimitedError("infocloud: code 6000", provider="infocloud", code="6000")
    for i in range(4):
        run_chunk(chunk_job("notify", [f"1390000030{i}"]), store.settings, store, Scripted(raises=limited))
    assert store.breaker_ask("infocloud").allowed


def test_bulk_waits_for_the_probe_without_spending_an_attempt(store: Store) -> None:
    for _ in range(3):
        store.breaker_failed("infocloud")
    scripted = Scripted(raises=refused())
    (retry,) = run_chunk(chunk_job("marketing", [P1, P2], attempt=4), store.settings, store, scripted).retries
    assert scripted.calls == 0 and not retry.failover and retry.reason == "breaker"
    assert retry.attempt == 4 and 0 < retry.delay_s <= 0.5 + 0.25
    assert store.records("msg-1") == {}  # nothing claimed: no limit charged, nobody failed


def test_a_failed_probe_keeps_the_bulk_waiting_and_costs_no_attempt(store: Store) -> None:
    for _ in range(3):
        store.breaker_failed("infocloud")
    time.sleep(0.55)
    scripted = Scripted(raises=TransientError("infocloud: HTTP 503", provider="infocloud", code="HTTP503"))
    (retry,) = run_chunk(chunk_job("marketing", [P1], attempt=2), store.settings, store, scripted).retries
    assert scripted.calls == 1 and retry.reason == "breaker" and retry.attempt == 2
    assert store.records("msg-1")[P1].state == State.RETRY


def test_an_otp_fails_over_at_once_on_a_certain_failure(store: Store) -> None:
    scripted = Scripted(raises=refused())
    (retry,) = run_chunk(chunk_job("otp"), store.settings, store, scripted).retries
    assert retry.failover and retry.stay and retry.attempt == 1
    assert store.records("msg-1")[P1].state == State.RETRY  # its limits stay charged (lua/claim.lua)


def test_an_otp_never_fails_over_on_an_ambiguous_outcome(store: Store) -> None:
    scripted = Scripted(raises=AmbiguousError("infocloud: read time-out", provider="infocloud"))
    assert run_chunk(chunk_job("otp"), store.settings, store, scripted).retries == ()
    assert store.records("msg-1")[P1].state == State.SUBMITTED


def test_an_otp_for_an_open_vendor_fails_over_without_a_call(store: Store) -> None:
    for _ in range(3):
        store.breaker_failed("infocloud")
    scripted = Scripted(raises=refused())
    (retry,) = run_chunk(chunk_job("otp"), store.settings, store, scripted).retries
    assert scripted.calls == 0 and retry.failover and retry.reason == "breaker"
    assert "infocloud" in store.unavailable(["infocloud", "tencent"], "otp")
    assert "infocloud" not in store.unavailable(["infocloud", "tencent"], "marketing")


def test_a_successful_call_closes_the_breaker_through_its_record(
    sim: SimulatorServer, store: Store, settings: Settings
) -> None:
    for _ in range(3):
        store.breaker_failed("infocloud")
    time.sleep(0.55)  # the probe is due
    assert run_chunk(chunk_job("marketing"), store.settings, store, provider(settings)).retries == ()
    assert store.breaker_ask("infocloud").failures == 0
    assert store.vendor_health(["infocloud"])[0].last_ok_ms > 0


# -- benches and balances -----------------------------------------------------------------------------


def test_a_balance_code_benches_until_a_poll_shows_credit(
    sim: SimulatorServer, store: Store, r: redis.Redis, settings: Settings
) -> None:
    sim.state.set_faults("infocloud", FaultPlan(codes=("40002",), code_rate=1.0))
    run_chunk(chunk_job("notify"), store.settings, store, provider(settings))
    assert r.ttl(Keys.health("infocloud")) == -1  # no fixed end: a poll ends it
    assert store.benches(["infocloud"])["infocloud"]["until"] == "credit"
    apply_balances(store, settings, "infocloud", [Balance("infocloud", "行业短信", 500)])
    assert store.benches(["infocloud"]) == {}
    events = [f for _, f in r.xrange(Keys.events) if f["type"] == "balance"]
    assert [e["action"] for e in events] == ["credit"]


def test_a_config_bench_is_not_lifted_by_a_balance_poll(store: Store, settings: Settings) -> None:
    store.bench("infocloud", "2001", "API授权错误")
    apply_balances(store, settings, "infocloud", [Balance("infocloud", "行业短信", 500)])
    assert store.benches(["infocloud"])["infocloud"]["code"] == "2001"
    assert store.reset_vendor("infocloud") and store.benches(["infocloud"]) == {}


def test_balances_are_stored_per_item_with_the_time_read(store: Store, settings: Settings) -> None:
    before = int(time.time() * 1000)
    balances = [Balance("infocloud", "行业短信", 9784), Balance("infocloud", "推广短信", 6506.5)]
    apply_balances(store, settings, "infocloud", balances)
    readings = {b.item: (b.value, b.at_ms >= before) for b in store.balances("infocloud")}
    assert readings == {"行业短信": (9784, True), "推广短信": (6506.5, True)}


def test_a_balance_under_the_threshold_publishes_an_event(
    store: Store, r: redis.Redis, settings: Settings
) -> None:
    section = settings.vendor("infocloud").model_copy(update={"balance_threshold": 1000.0})
    custom = settings.model_copy(update={"infocloud": section})
    balances = [Balance("infocloud", "行业短信", 999), Balance("infocloud", "会员短信", 5000)]
    apply_balances(store, custom, "infocloud", balances)
    events = [f for _, f in r.xrange(Keys.events) if f["type"] == "balance"]
    assert [(e["item"], e["value"], e["threshold"], e["action"]) for e in events] == [
        ("行业短信", "999", "1000", "low")
    ]
    assert store.benches(["infocloud"]) == {}


def test_a_vendor_at_zero_is_benched_but_a_postpaid_account_is_not(store: Store, settings: Settings) -> None:
    apply_balances(store, settings, "xiaorui", [Balance("xiaorui", "POSTCHARGE", -153278040)])
    assert store.benches(["xiaorui"]) == {}
    apply_balances(store, settings, "ihuyi", [Balance("ihuyi", "sms", 0)])
    assert store.benches(["ihuyi"])["ihuyi"]["until"] == "credit"
    assert "ihuyi" in store.unavailable(["ihuyi"], "marketing")


def test_the_balance_poll_keeps_infocloud_to_one_query_per_15_s(
    sim: SimulatorServer, r: redis.Redis, settings: Settings
) -> None:
    assert balance_window_s(settings.vendor("infocloud")) >= 15
    results = [poll_balance("infocloud") for _ in range(3)]
    assert results == [3, 0, 0]
    assert sim.state.counters("infocloud").answered_codes.get("6000", 0) == 0
    assert Store(r, settings).vendor_health(["infocloud"])[0].polls["balance"][1] == "ok"


def test_a_failed_balance_query_is_noted_not_raised(r: redis.Redis, settings: Settings) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    from tasks import vendors

    section = settings.vendor("xiaorui")
    adapter = vendors.get_provider("xiaorui", settings)
    adapter.client = httpx.Client(transport=httpx.MockTransport(down))
    try:
        assert poll_balance("xiaorui") == 0
    finally:
        adapter.client = httpx.Client()
    assert section.configured()
    assert Store(r, settings).vendor_health(["xiaorui"])[0].polls["balance"][1] == "NotSentError"


def test_a_receipt_poll_is_noted_for_the_vendors_command(
    sim: SimulatorServer, r: redis.Redis, settings: Settings
) -> None:
    from tasks.poll import poll_receipts

    poll_receipts("infocloud")
    when, how = Store(r, settings).vendor_health(["infocloud"])[0].polls["receipts"]
    assert how == "ok" and abs(when / 1000 - time.time()) < 5


# -- fail_over (tasks/send.py) -------------------------------------------------------------------------


def routed(settings: Settings, otp: tuple[str, ...]) -> Settings:
    return settings.model_copy(update={"routing": {**settings.routing, "otp": otp}})


def test_a_failover_goes_to_the_next_vendor_with_its_attempt_and_a_short_bid(
    store: Store, settings: Settings
) -> None:
    from tasks.dispatch import Retry
    from tasks.send import fail_over

    custom = routed(store.settings, ("infocloud", "tencent"))
    job = chunk_job("otp", [P1])
    for _ in range(5):  # however often it fails over, the chunk numbers stay short and new
        fail_over(store, custom, job, Retry((P1,), 0.1, 3, failover=True, reason="failover", stay=True),
                  "sms.otp")
    numbers = sorted(int(n) for n in store.r.hkeys(Keys.plan("msg-1")))
    assert numbers == [10**9 + i for i in range(5)]
    moved = store.chunk_job("msg-1", numbers[-1])
    assert moved is not None and moved["chunk"]["provider"] == "tencent" and moved["attempt"] == 3
    assert len(f"{'x' * 36}.{numbers[-1]}") <= 64  # Infocloud's bid


def test_a_failover_with_no_other_vendor_waits_for_this_one(store: Store, settings: Settings) -> None:
    from tasks.dispatch import Retry
    from tasks.send import fail_over

    store.claim("msg-1", "otp", "infocloud", [P1], settings.limits["otp"], 60_000, "tok")
    custom = routed(store.settings, ("infocloud",))
    fail_over(store, custom, chunk_job("otp", [P1]), Retry((P1,), 2.0, 1, failover=True, reason="breaker",
              stay=True), "sms.otp")
    job = store.chunk_job("msg-1", 0)
    assert job is not None and job["chunk"]["provider"] == "infocloud" and job["chunk"]["phones"] == [P1]
    assert store.records("msg-1")[P1].state != State.FAILED  # not failed: it waits for the vendor


def test_a_refused_vendor_with_no_other_fails_its_phones_no_route(store: Store, settings: Settings) -> None:
    from tasks.dispatch import Retry
    from tasks.send import fail_over

    store.bench("infocloud", "40002", "余额不足", until_credit=True)
    custom = routed(store.settings, ("infocloud",))
    fail_over(store, custom, chunk_job("otp", [P1]), Retry((P1,), 0.0, 0, failover=True, reason="40002"),
              "sms.otp")
    record = store.records("msg-1")[P1]
    assert (record.state, record.code) == (State.FAILED, "NO_ROUTE")  # from queued: nothing was claimed
