"""One chunk through ``run_chunk`` (and ``dispatch_chunk``/``send_sms`` run in this process) against the
simulator over HTTP, or an adapter the test scripts, and a real Redis. No worker: none is needed to
show what one run of a chunk does."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import httpx
import pytest
import redis

from config.settings import Settings, get_settings
from providers.base import (
    Capabilities,
    DeliveryState,
    HttpCall,
    Provider,
    Receipt,
    RecipientOutcome,
    RenderedTemplate,
    SendRequest,
    SendResult,
)
from providers.errors import RateLimitedError, TransientError
from providers.infocloud import InfocloudProvider, InfocloudSettings
from providers.simulator.core import FaultPlan
from providers.simulator.server import SimulatorServer
from tasks.dispatch import AMBIGUOUS, MAX_DELAY_S, ChunkJob, ChunkRun, Retry, backoff, run_chunk
from tasks.plan import ChunkSpec
from worker.store import Keys, Outcome, Record, Recording, State, Store, now_ms
from worker.store.limits import take_budget

TEMPLATE = RenderedTemplate("675871161745170001", ("A1", "SF"), ("order", "tracking"), "text")
ORDER = {"template": "order_shipped", "params": {"order": "A1", "tracking": "SF1"}}
P1, P2 = "13900000001", "13900000002"


def job(phones: Sequence[str], message_id: str = "msg-1", attempt: int = 0) -> ChunkJob:
    return ChunkJob(message_id, "notify", ChunkSpec(0, "infocloud", tuple(phones), TEMPLATE), attempt)


def provider(settings: Settings, read_timeout: float = 2.0) -> InfocloudProvider:
    section = settings.vendor("infocloud", InfocloudSettings)
    return InfocloudProvider(section, httpx.Client(timeout=read_timeout))


def states(store: Store, message_id: str = "msg-1") -> dict[str, str]:
    return {phone: rec.state.value for phone, rec in store.records(message_id).items()}


@pytest.fixture
def store(r: redis.Redis, settings: Settings) -> Store:
    return Store(r, settings)


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Change settings through the environment for this test (``get_settings`` reloads)."""

    def change(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    yield change
    monkeypatch.undo()
    get_settings.cache_clear()


class Scripted(Provider):
    """An Infocloud stand-in whose exchange the test decides: ``raises`` from the exchange (after the
    request may have left), or ``answer`` as the parsed result. Counts the calls that reached it."""

    name: ClassVar[str] = "infocloud"
    capabilities: ClassVar[Capabilities] = Capabilities(batch_size=1000)

    def __init__(
        self,
        raises: BaseException | None = None,
        answer: Callable[[SendRequest], SendResult] | None = None,
    ) -> None:
        transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"code": 200}))
        super().__init__(httpx.Client(transport=transport))
        self.raises = raises
        self.answer = answer
        self.calls = 0

    def _build(self, request: SendRequest) -> HttpCall:
        return HttpCall("http://vendor.test/send", json={"phones": list(request.phones)})

    def _transmit(self, call: HttpCall) -> httpx.Response:
        self.calls += 1
        if self.raises is not None:
            raise self.raises
        return super()._transmit(call)

    def _parse(self, response: httpx.Response, request: SendRequest) -> SendResult:
        assert self.answer is not None
        return self.answer(request)


# -- the vendor's answers ----------------------------------------------------------------------------


def test_a_sent_chunk_records_submitted_and_receipts_deliver_it(
    sim: SimulatorServer, r: redis.Redis, settings: Settings, store: Store
) -> None:
    phones = [f"139{i:08d}" for i in range(5)]
    assert run_chunk(job(phones), settings, store, provider(settings)) == ChunkRun()
    assert set(states(store).values()) == {"submitted"}
    receipts = provider(settings).poll_receipts()
    assert store.apply_receipts("infocloud", receipts) == 5
    assert store.apply_receipts("infocloud", receipts) == 0  # a repeated receipt changes nothing
    assert set(states(store).values()) == {"delivered"}
    events = [fields for _, fields in r.xrange(Keys.events)]
    assert [e["state"] for e in events] == ["submitted", "delivered"]
    assert events[0]["count"] == "5"


def test_a_transient_code_asks_for_a_retry_and_the_retry_sends_once(
    sim: SimulatorServer, settings: Settings, store: Store
) -> None:
    phones = [P1, P2]
    sim.state.set_faults("infocloud", FaultPlan(codes=("-1",), code_rate=1.0))
    (retry,) = run_chunk(job(phones), settings, store, provider(settings)).retries
    assert retry.phones == tuple(phones) and retry.attempt == 1
    assert set(states(store).values()) == {"retry"}
    sim.state.set_faults("infocloud", None)
    assert run_chunk(job(phones, attempt=1), settings, store, provider(settings)) == ChunkRun()
    # redelivered: nothing resent
    assert run_chunk(job(phones, attempt=1), settings, store, provider(settings)) == ChunkRun()
    assert sim.state.counters("infocloud").received == dict.fromkeys(phones, 1)


def test_retries_stop_after_max_attempts_with_the_last_code(
    sim: SimulatorServer, settings: Settings, store: Store
) -> None:
    sim.state.set_faults("infocloud", FaultPlan(codes=("60009",), code_rate=1.0))
    last = settings.retry.max_attempts - 1
    run = run_chunk(job([P1], attempt=last), settings, store, provider(settings))
    assert run.retries == () and run.single is not None and run.single.state == State.FAILED
    record = store.records("msg-1")[P1]
    assert (record.state, record.code) == (State.FAILED, "60009")


def test_a_permanent_code_fails_the_chunk_with_the_code(
    sim: SimulatorServer, settings: Settings, store: Store
) -> None:
    sim.state.set_faults("infocloud", FaultPlan(codes=("60001",), code_rate=1.0))
    assert run_chunk(job([P1, P2]), settings, store, provider(settings)) == ChunkRun()
    records = store.records("msg-1")
    assert {(rec.state, rec.code) for rec in records.values()} == {(State.FAILED, "60001")}
    assert store.benches(["infocloud"]) == {}


def test_auth_and_balance_codes_bench_the_provider(
    sim: SimulatorServer, settings: Settings, store: Store
) -> None:
    sim.state.set_faults("infocloud", FaultPlan(codes=("40002",), code_rate=1.0))
    run_chunk(job([P1]), settings, store, provider(settings))
    assert store.benches(["infocloud"])["infocloud"]["code"] == "40002"


def test_a_benched_provider_stays_benched_for_unhealthy_s(
    sim: SimulatorServer, r: redis.Redis, settings: Settings, store: Store
) -> None:
    sim.state.set_faults("infocloud", FaultPlan(codes=("2001",), code_rate=1.0))
    run_chunk(job([P1]), settings, store, provider(settings))
    assert abs(r.ttl(Keys.health("infocloud")) - settings.unhealthy_s) <= 1


def test_a_vendor_that_refuses_the_whole_call_hands_the_chunk_over(
    sim: SimulatorServer, settings: Settings, store: Store
) -> None:
    sim.state.set_faults("infocloud", FaultPlan(codes=("40002",), code_rate=1.0))
    logical = {"template": "order_shipped", "params": {"order": "A1", "tracking": "SF"}, "content": None,
               "provider": None}
    chunk = ChunkSpec(0, "infocloud", (P1, P2), TEMPLATE, logical=logical)
    (retry,) = run_chunk(ChunkJob("msg-1", "notify", chunk), settings, store, provider(settings)).retries
    assert retry.failover and retry.phones == (P1, P2)
    assert set(states(store).values()) == {"retry"}
    assert "infocloud" in store.benches(["infocloud"])
    assert sim.state.counters("infocloud").received == {}


# -- ambiguous outcomes: never resent, settled by a receipt or the sweep -----------------------------


def test_an_ambiguous_time_out_is_never_resent_and_a_receipt_settles_it(
    sim: SimulatorServer, r: redis.Redis, settings: Settings, store: Store
) -> None:
    sim.state.set_faults("infocloud", FaultPlan(timeout_rate=1.0, hang_s=1.5, after_accept=True))
    assert run_chunk(job([P1]), settings, store, provider(settings, read_timeout=0.5)).retries == ()
    record = store.records("msg-1")[P1]
    assert (record.state, record.code, record.vendor_id) == (State.SUBMITTED, AMBIGUOUS, "msg-1.0")
    deadline = r.zscore(Keys.settle, "msg-1|infocloud")
    assert deadline is not None
    assert abs(deadline - (record.updated_ms + settings.vendor("infocloud").settle_s * 1000)) < 1000
    sim.state.set_faults("infocloud", None)
    assert run_chunk(job([P1]), settings, store, provider(settings)).retries == ()  # a redelivery
    assert sim.state.counters("infocloud").received == {P1: 1}
    store.apply_receipts("infocloud", provider(settings).poll_receipts())  # matched by our bid
    assert store.records("msg-1")[P1].state == State.DELIVERED


def test_a_receipt_that_arrives_while_the_call_is_still_sending_settles_it(
    sim: SimulatorServer, settings: Settings, store: Store
) -> None:
    store.claim("msg-1", "notify", "infocloud", [P1], settings.limits["notify"], 60_000, "tok-dead")
    # the vendor accepts; our worker has not recorded it
    provider(settings).send(SendRequest((P1,), TEMPLATE, bid="msg-1.0"))
    assert store.apply_receipts("infocloud", provider(settings).poll_receipts()) == 1
    assert store.records("msg-1")[P1].state == State.DELIVERED
    assert run_chunk(job([P1]), settings, store, provider(settings)).retries == ()  # a redelivery
    assert sim.state.counters("infocloud").received == {P1: 1}


@pytest.mark.parametrize(
    "error",
    [RecursionError("maximum recursion depth exceeded"), OverflowError("int too large"), KeyError("fee")],
    ids=lambda e: type(e).__name__,
)
def test_an_adapter_that_fails_unexpectedly_leaves_its_phones_ambiguous(
    settings: Settings, store: Store, error: BaseException
) -> None:
    scripted = Scripted(raises=error)
    run = run_chunk(job([P1, P2]), settings, store, scripted)  # raises nothing
    assert run.retries == () and scripted.calls == 1
    records = store.records("msg-1")
    assert {(rec.state, rec.code, rec.vendor_id) for rec in records.values()} == {
        (State.SUBMITTED, AMBIGUOUS, "msg-1.0")
    }
    assert type(error).__name__ in records[P1].text
    run_chunk(job([P1, P2]), settings, store, scripted)  # a redelivery
    assert scripted.calls == 1


def test_an_unreadable_answer_from_a_real_adapter_is_ambiguous(settings: Settings, store: Store) -> None:
    calls: list[httpx.Request] = []

    def vendor(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, content=b"[" * 1000)  # nests deeper than Python will parse

    section = settings.vendor("infocloud", InfocloudSettings)
    adapter = InfocloudProvider(section, httpx.Client(transport=httpx.MockTransport(vendor)))
    assert run_chunk(job([P1, P2]), settings, store, adapter).retries == ()
    assert len(calls) == 1
    records = store.records("msg-1").values()
    assert {(rec.state, rec.code) for rec in records} == {(State.SUBMITTED, AMBIGUOUS)}


def test_phones_the_vendor_answer_leaves_out_are_ambiguous_not_sending(
    settings: Settings, store: Store, r: redis.Redis
) -> None:
    def answer(request: SendRequest) -> SendResult:
        first = RecipientOutcome(request.phones[0], True, "V1", "200")
        return SendResult("infocloud", (first,), batch_id="B1")

    assert run_chunk(job([P1, P2]), settings, store, Scripted(answer=answer)) == ChunkRun()
    records = store.records("msg-1")
    assert (records[P1].state, records[P1].code, records[P1].vendor_id) == (State.SUBMITTED, "200", "V1")
    assert (records[P2].state, records[P2].code) == (State.SUBMITTED, AMBIGUOUS)
    assert r.get(Keys.vendor_batch("infocloud", "B1")) == "msg-1"


# -- waits: the vendor's budget and its rate-limit hints ---------------------------------------------


def slow_vendor(settings: Settings, per_second: float) -> Settings:
    section = settings.vendor("infocloud").model_copy(update={"requests_per_second": per_second})
    return settings.model_copy(update={"infocloud": section})


def test_a_budget_not_free_soon_gives_the_chunk_back_at_once(
    sim: SimulatorServer, r: redis.Redis, settings: Settings, store: Store
) -> None:
    from tasks.send import chunk_job

    slow = slow_vendor(settings, 0.5)  # one call every 2 s
    chunk = job([P1, P2]).chunk
    store.open_chunk("msg-1", 0, chunk_job("notify", "sms.notify", chunk), now_ms() + 60_000, queued=True)
    assert take_budget(r, "infocloud", 0.5) == 0  # another worker took this second's call
    started = time.monotonic()
    run = run_chunk(job([P1, P2]), slow, store, provider(slow))
    assert time.monotonic() - started < 0.5  # no worker held for the wait
    (retry,) = run.retries
    assert (retry.reason, retry.phones, retry.attempt) == ("budget", (P1, P2), 0)
    assert 1.0 < retry.delay_s <= 2.0
    assert sim.state.counters("infocloud").requests == 0
    assert states(store) == {P1: "queued", P2: "queued"}
    assert list(r.scan_iter("smsd:lim:*")) == []  # no limit charged for a call not made


def test_a_budget_free_within_a_second_is_waited_for(
    sim: SimulatorServer, r: redis.Redis, settings: Settings, store: Store
) -> None:
    slow = slow_vendor(settings, 2)  # one call every 0.5 s
    assert take_budget(r, "infocloud", 2) == 0
    started = time.monotonic()
    assert run_chunk(job([P1]), slow, store, provider(slow)).retries == ()
    assert time.monotonic() - started >= 0.3
    assert sim.state.counters("infocloud").received == {P1: 1}


def test_a_chunk_task_whose_budget_is_taken_succeeds_and_queues_its_retry(
    sim: SimulatorServer, r: redis.Redis, store: Store, environ: Callable[..., None]
) -> None:
    from tasks.send import dispatch_chunk

    environ(SMSD_INFOCLOUD__REQUESTS_PER_SECOND="0.5")
    assert take_budget(r, "infocloud", 0.5) == 0
    spec = job([P1, P2]).chunk
    result = dispatch_chunk.apply(args=("msg-1", "notify", spec.to_task()))
    assert result.successful(), result.traceback
    assert sim.state.counters("infocloud").requests == 0
    assert store.records("msg-1") == {}  # nothing claimed: still as planning left it
    assert store.queue_length("sms.notify") == 1 and r.zcard(Keys.deferred) == 0
    assert (r.zscore(Keys.leases, "msg-1|0") or 0) > now_ms()  # and its lease waits for it


@pytest.mark.parametrize("hint", [math.inf, math.nan, 1e300, -5.0, None])
def test_a_rate_limit_hint_never_makes_an_endless_wait(settings: Settings, hint: float | None) -> None:
    error = RateLimitedError("too often", provider="infocloud", code="6000", retry_after_s=hint)
    for attempt in (0, 5, 1000):
        delay = backoff(settings, attempt, error)
        assert math.isfinite(delay) and 0 <= delay <= MAX_DELAY_S
        assert delay >= min(settings.retry.rate_limited_wait_s, hint if hint and hint > 0 else math.inf)


@pytest.mark.parametrize("hint", [math.inf, math.nan])
def test_a_chunk_told_to_wait_forever_is_retried_after_a_finite_wait(
    settings: Settings, store: Store, r: redis.Redis, hint: float
) -> None:
    from tasks.send import schedule_retry

    error = RateLimitedError("too often", provider="infocloud", code="6000", retry_after_s=hint)
    run = run_chunk(job([P1]), settings, store, Scripted(raises=error))
    (retry,) = run.retries
    assert math.isfinite(retry.delay_s) and retry.delay_s >= settings.retry.rate_limited_wait_s
    assert states(store) == {P1: "retry"}
    schedule_retry(store, settings, job([P1]), retry, "sms.notify")  # neither raises nor drops it
    assert store.queue_length("sms.notify") + r.zcard(Keys.deferred) == 1


def test_a_wait_longer_than_a_countdown_is_kept_in_redis(
    settings: Settings, store: Store, r: redis.Redis
) -> None:
    from tasks.send import schedule_retry

    retry = Retry((P1,), MAX_DELAY_S, 1, reason="6000")
    schedule_retry(store, settings, job([P1]), retry, "sms.notify")
    ((_, due),) = r.zrange(Keys.deferred, 0, -1, withscores=True)
    assert abs(due - (now_ms() + MAX_DELAY_S * 1000)) < 5000
    assert store.queue_length("sms.notify") == 0


# -- receipts matched to their recipients ------------------------------------------------------------


def recorded(store: Store, message_id: str, provider_name: str, outcome: Outcome, index: str) -> None:
    """A recipient recorded submitted (where nothing was recorded yet), with its vendor-id index entry."""
    recording = Recording([outcome], index={Keys.vendor_batch(provider_name, index): message_id})
    assert store.record(message_id, provider_name, recording, from_states=("none",)) == [outcome.phone]


def test_receipts_found_by_vendor_ids_are_looked_up_in_one_round_trip(
    r: redis.Redis, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    for message_id, phone, sid in (("m-a", P1, "sid-1"), ("m-b", P2, "sid-2")):
        recorded(store, message_id, "tencent", Outcome(phone, State.SUBMITTED, "0", vendor_id=sid), sid)
    receipts = [
        Receipt("tencent", P1, DeliveryState.DELIVERED, "DELIVRD", vendor_id="sid-1"),
        Receipt("tencent", P2, DeliveryState.UNDELIVERED, "UNDELIV", vendor_id="sid-2"),
        Receipt("tencent", "13900000003", DeliveryState.DELIVERED, "DELIVRD", vendor_id="sid-x"),
    ]
    sent: list[object] = []
    real = r.execute_command

    def spy(*args: Any, **kwargs: Any) -> Any:
        sent.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(r, "execute_command", spy)
    assert store.apply_receipts("tencent", receipts) == 2
    assert sent.count("MGET") == 1 and "GET" not in sent
    assert store.records("m-a")[P1].state == State.DELIVERED
    after = store.records("m-b")[P2]
    assert (after.state, after.code) == (State.FAILED, "UNDELIV")


def test_a_receipt_that_beats_its_index_is_parked_and_applied_later(r: redis.Redis, store: Store) -> None:
    early = Receipt("xiaorui", P1, DeliveryState.DELIVERED, "DELIVRD", vendor_id="mid-1")
    assert store.apply_receipts("xiaorui", [early]) == 0  # the worker has not recorded the answer yet
    assert r.llen(Keys.unmatched("xiaorui")) == 1
    recorded(store, "m-x", "xiaorui", Outcome(P1, State.SUBMITTED, "0", vendor_id="mid-1"), "mid-1")
    assert store.apply_receipts("xiaorui", []) == 1  # the next poll matches it
    assert store.records("m-x")[P1].state == State.DELIVERED
    assert r.llen(Keys.unmatched("xiaorui")) == 0


def test_billed_segments_are_recorded_and_kept_through_the_receipt(store: Store) -> None:
    recorded(store, "m-t", "tencent", Outcome(P1, State.SUBMITTED, "0", vendor_id="sid-1", fee=2), "sid-1")
    assert store.records("m-t")[P1].fee == 2
    receipt = Receipt("tencent", P1, DeliveryState.DELIVERED, "DELIVRD", vendor_id="sid-1")
    assert store.apply_receipts("tencent", [receipt]) == 1
    after = store.records("m-t")[P1]
    assert (after.state, after.vendor_id, after.code, after.fee) == (State.DELIVERED, "sid-1", "DELIVRD", 2)
    assert Record.unpack(Record(State.QUEUED, 5).pack()) == Record(State.QUEUED, 5)  # no trailing fields


def test_a_receipt_that_says_unknown_leaves_the_recipient_submitted(store: Store) -> None:
    recorded(store, "m-u", "xiaorui", Outcome(P1, State.SUBMITTED, "0", vendor_id="mid-1"), "mid-1")
    unknown = Receipt("xiaorui", P1, DeliveryState.UNKNOWN, "UNKNOWN", vendor_id="mid-1")
    assert store.apply_receipts("xiaorui", [unknown]) == 0
    assert store.records("m-u")[P1].state == State.SUBMITTED
    delivered = Receipt("xiaorui", P1, DeliveryState.DELIVERED, "DELIVRD", vendor_id="mid-1")
    assert store.apply_receipts("xiaorui", [delivered]) == 1  # the final word still settles it


# -- chunks that share phones with other runs --------------------------------------------------------


def test_phones_in_flight_elsewhere_are_looked_at_again_even_when_the_rest_must_retry(
    sim: SimulatorServer, r: redis.Redis, settings: Settings, store: Store
) -> None:
    # One phone is "sending" for another worker (fresh); the vendor is busy for this call.
    r.hset(Keys.recipients("msg-1"), P1, Record(State.SENDING, now_ms(), "infocloud", "tok-other").pack())
    sim.state.set_faults("infocloud", FaultPlan(codes=("-1",), code_rate=1.0))
    retries = run_chunk(job([P1, P2]), settings, store, provider(settings)).retries
    by_phones = {retry.phones: retry for retry in retries}
    assert set(by_phones) == {(P1,), (P2,)}  # neither is dropped
    assert by_phones[(P1,)].attempt == 0  # the in-flight one was not an attempt of ours
    assert by_phones[(P2,)].attempt == 1


def test_a_chunk_run_ends_its_lease_only_when_nothing_is_left(
    sim: SimulatorServer, r: redis.Redis, settings: Settings, store: Store
) -> None:
    from tasks.send import chunk_job

    chunk = job([P1, P2]).chunk
    store.open_chunk("msg-1", 0, chunk_job("notify", "sms.notify", chunk), now_ms() + 60_000, queued=True)
    sim.state.set_faults("infocloud", FaultPlan(codes=("-1",), code_rate=1.0))
    run_chunk(job([P1, P2]), settings, store, provider(settings))
    assert r.zscore(Keys.leases, "msg-1|0") is not None  # its retry is still to run
    sim.state.set_faults("infocloud", None)
    run_chunk(job([P1, P2], attempt=1), settings, store, provider(settings))
    assert r.zscore(Keys.leases, "msg-1|0") is None


def test_a_transient_error_class_is_retried_not_failed(settings: Settings, store: Store) -> None:
    scripted = Scripted(raises=TransientError("busy", provider="infocloud", code="-1"))
    (retry,) = run_chunk(job([P1]), settings, store, scripted).retries
    assert retry.attempt == 1 and states(store) == {P1: "retry"}


# -- idempotency (send_sms, run in this process) -----------------------------------------------------


def test_the_same_idempotency_key_returns_the_first_message(
    sim: SimulatorServer, r: redis.Redis, settings: Settings, store: Store
) -> None:
    from tasks.plan import InvalidRequest
    from tasks.send import send_sms

    phones = ["13700000001", "13700000002"]
    first = send_sms.apply(args=(phones,), kwargs={**ORDER, "idempotency_key": "order-42"}).get()
    again = send_sms.apply(args=(phones,), kwargs={**ORDER, "idempotency_key": "order-42"}).get()
    assert again["message_id"] == first["message_id"] and again["duplicate"] is True
    assert "duplicate" not in first
    other = {"template": "order_shipped", "params": {"order": "B2", "tracking": "SF2"}}
    with pytest.raises(InvalidRequest, match="idempotency_key"):
        send_sms.apply(args=(phones,), kwargs={**other, "idempotency_key": "order-42"}).get()
    assert sim.state.counters("infocloud").received == dict.fromkeys(phones, 1)
    assert set(states(store, first["message_id"]).values()) == {"submitted"}
    assert 0 < r.ttl(Keys.idempotency("order-42")) <= settings.idempotency_ttl_s


def test_the_claims_own_changes_are_published_though_the_call_never_returns(
    r: redis.Redis, settings: Settings, store: Store
) -> None:
    r.sadd(Keys.optout, P2)
    with pytest.raises(SystemExit):  # the worker process ends during the vendor call
        run_chunk(job([P1, P2]), settings, store, Scripted(raises=SystemExit(1)))
    assert store.records("msg-1")[P2].state == State.OPTED_OUT
    run_chunk(job([P1, P2]), settings, store, Scripted(raises=SystemExit(1)))  # the redelivered task
    published = [fields for _, fields in r.xrange(Keys.events)]
    assert [(e["state"], e["phones"]) for e in published] == [("opted_out", P2)]


def test_each_recipient_is_billed_the_parts_of_its_own_text(
    sim: SimulatorServer, settings: Settings, store: Store
) -> None:
    """With parameters per recipient, one Infocloud call carries texts of different lengths: each record
    (and the message's billed parts) counts its own text's parts, counted at planning."""
    from tasks.plan import build_plan, validate_request

    long = {"order": "A" * 35, "tracking": "S" * 35}  # the rendered text passes 70 characters: 2 parts
    to = [{"phone": P1, "params": {"order": "A1"}}, {"phone": P2, "params": long}]
    order = {"to": to, "template": "order_shipped", "params": {"tracking": "SF1"}}
    request = validate_request(order, settings)
    (chunk,) = build_plan(request, settings, {}).chunks
    assert chunk.provider == "infocloud" and chunk.per_recipient is not None and chunk.parts == (1, 2)
    chunk = ChunkSpec.from_task(chunk.to_task())  # as the task carries it
    run = run_chunk(ChunkJob("msg-parts", "notify", chunk), settings, store, provider(settings))
    assert run == ChunkRun()
    records = store.records("msg-parts")
    assert (records[P1].fee, records[P2].fee) == (1, 2)
    assert store.progress("msg-parts")["parts"] == 3
