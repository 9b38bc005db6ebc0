"""One chunk through run_chunk against the simulator over HTTP and a real Redis (no Celery)."""

from __future__ import annotations

import httpx
import redis

from config.settings import Settings
from providers.base import RenderedTemplate, SendRequest
from providers.infocloud import InfocloudProvider
from providers.simulator.core import FaultPlan
from tasks.dispatch import AMBIGUOUS, ChunkJob, run_chunk, unconfirmed_entry
from tasks.plan import ChunkSpec
from tasks.poll import apply_receipts
from worker.store import Keys, State, Store

TEMPLATE = RenderedTemplate("675871161745170001", ("A1", "SF"), ("order", "tracking"), "text")


def job(phones: list[str], message_id: str = "msg-1", attempt: int = 0) -> ChunkJob:
    return ChunkJob(message_id, "notify", ChunkSpec(0, "infocloud", tuple(phones), TEMPLATE), attempt)


def provider(settings: Settings, read_timeout: float = 2.0) -> InfocloudProvider:
    return InfocloudProvider(settings.infocloud, httpx.Client(timeout=read_timeout))


def states(r: redis.Redis, message_id: str = "msg-1") -> dict[str, str]:
    return {phone: rec.split("\x1f")[0] for phone, rec in r.hgetall(Keys.recipients(message_id)).items()}


def test_a_sent_chunk_records_submitted_and_receipts_deliver_it(sim, r, settings) -> None:  # type: ignore[no-untyped-def]
    phones = [f"139{i:08d}" for i in range(5)]
    assert run_chunk(job(phones), settings, r, provider(settings)) == []
    assert set(states(r).values()) == {State.SUBMITTED}
    receipts = provider(settings).poll_receipts()
    assert apply_receipts(Store(r, settings), "infocloud", receipts) == 5
    # a repeated receipt changes nothing
    assert apply_receipts(Store(r, settings), "infocloud", receipts) == 0
    assert set(states(r).values()) == {State.DELIVERED}
    events = r.xrange(Keys.events)
    assert [e[1]["state"] for e in events] == ["submitted", "delivered"]
    assert events[0][1]["count"] == "5"


def test_a_transient_code_asks_for_a_retry_and_the_retry_sends_once(sim, r, settings) -> None:  # type: ignore[no-untyped-def]
    phones = ["13900000001", "13900000002"]
    sim.state.set_faults("infocloud", FaultPlan(codes=("-1",), code_rate=1.0))
    (retry,) = run_chunk(job(phones), settings, r, provider(settings))
    assert retry is not None and retry.phones == tuple(phones) and retry.attempt == 1
    assert set(states(r).values()) == {State.RETRY}
    sim.state.set_faults("infocloud", None)
    assert run_chunk(job(phones, attempt=1), settings, r, provider(settings)) == []
    # redelivered: nothing resent
    assert run_chunk(job(phones, attempt=1), settings, r, provider(settings)) == []
    assert sim.state.counters("infocloud").received == {p: 1 for p in phones}


def test_retries_stop_after_max_attempts_with_the_last_code(sim, r, settings) -> None:  # type: ignore[no-untyped-def]
    sim.state.set_faults("infocloud", FaultPlan(codes=("60009",), code_rate=1.0))
    last = settings.retry.max_attempts - 1
    assert run_chunk(job(["13900000001"], attempt=last), settings, r, provider(settings)) == []
    record = Store(r, settings).records("msg-1")["13900000001"]
    assert (record.state, record.code) == (State.FAILED, "60009")


def test_a_permanent_code_fails_the_chunk_with_the_code(sim, r, settings) -> None:  # type: ignore[no-untyped-def]
    sim.state.set_faults("infocloud", FaultPlan(codes=("60001",), code_rate=1.0))
    assert run_chunk(job(["13900000001", "13900000002"]), settings, r, provider(settings)) == []
    records = Store(r, settings).records("msg-1")
    assert {(rec.state, rec.code) for rec in records.values()} == {(State.FAILED, "60001")}
    assert Store(r, settings).unhealthy(["infocloud"]) == {}


def test_auth_and_balance_codes_bench_the_provider(sim, r, settings) -> None:  # type: ignore[no-untyped-def]
    sim.state.set_faults("infocloud", FaultPlan(codes=("40002",), code_rate=1.0))
    run_chunk(job(["13900000001"]), settings, r, provider(settings))
    assert Store(r, settings).unhealthy(["infocloud"])["infocloud"]["code"] == "40002"


def test_an_ambiguous_time_out_is_never_resent_and_a_receipt_settles_it(sim, r, settings) -> None:  # type: ignore[no-untyped-def]
    sim.state.set_faults("infocloud", FaultPlan(timeout_rate=1.0, hang_s=1.5, after_accept=True))
    assert run_chunk(job(["13900000001"]), settings, r, provider(settings, read_timeout=0.5)) == []
    record = Store(r, settings).records("msg-1")["13900000001"]
    assert (record.state, record.code, record.vendor_id) == (State.SUBMITTED, AMBIGUOUS, "msg-1.0")
    ((entry, deadline),) = r.zrange(Keys.ambiguous, 0, -1, withscores=True)
    assert entry == "msg-1|13900000001|infocloud"
    assert abs(deadline - (record.updated_ms + settings.infocloud.settle_s * 1000)) < 1000
    sim.state.set_faults("infocloud", None)
    # a redelivery: not resent
    assert run_chunk(job(["13900000001"]), settings, r, provider(settings)) == []
    assert sim.state.counters("infocloud").received == {"13900000001": 1}
    apply_receipts(Store(r, settings), "infocloud", provider(settings).poll_receipts())  # matched by our bid
    assert Store(r, settings).records("msg-1")["13900000001"].state == State.DELIVERED


def test_a_receipt_that_arrives_while_the_call_is_still_sending_settles_it(sim, r, settings) -> None:  # type: ignore[no-untyped-def]
    from worker import limits

    limits.claim(r, "msg-1", "notify", "infocloud", ["13900000001"], settings.limits["notify"], 60_000)
    # the vendor accepts; our worker has not recorded it
    provider(settings).send(SendRequest(("13900000001",), TEMPLATE, bid="msg-1.0"))
    assert apply_receipts(Store(r, settings), "infocloud", provider(settings).poll_receipts()) == 1
    assert Store(r, settings).records("msg-1")["13900000001"].state == State.DELIVERED
    assert run_chunk(job(["13900000001"]), settings, r, provider(settings)) == []  # a redelivery
    assert sim.state.counters("infocloud").received == {"13900000001": 1}


def test_our_record_of_a_call_never_overwrites_a_receipt_that_came_first(sim, r, settings) -> None:  # type: ignore[no-untyped-def]
    from worker.store import pack

    store = Store(r, settings)
    sending = pack(State.SENDING, 1, "infocloud")
    store.write("msg-1", {"13900000001": sending, "13900000002": sending})
    r.hset(Keys.recipients("msg-1"), "13900000001", pack(State.DELIVERED, 2, "infocloud", "", "DELIVRD"))
    submitted = pack(State.SUBMITTED, 3, "infocloud", "574", "200")
    store.write("msg-1", dict.fromkeys(["13900000001", "13900000002"], submitted), over_sending=True)
    assert store.records("msg-1")["13900000001"].state == State.DELIVERED
    assert store.records("msg-1")["13900000002"].state == State.SUBMITTED


def test_receipts_found_by_vendor_ids_are_looked_up_in_one_round_trip(r, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from providers.base import DeliveryState, Receipt
    from worker.store import pack

    store = Store(r, settings)
    for message_id, phone, sid in (("m-a", "13900000001", "sid-1"), ("m-b", "13900000002", "sid-2")):
        store.write(
            message_id,
            {phone: pack(State.SUBMITTED, 1, "tencent", sid, "0")},
            index={Keys.vendor_batch("tencent", sid): message_id},
        )
    receipts = [
        Receipt("tencent", "13900000001", DeliveryState.DELIVERED, "DELIVRD", vendor_id="sid-1"),
        Receipt("tencent", "13900000002", DeliveryState.FAILED, "UNDELIV", vendor_id="sid-2"),
        Receipt("tencent", "13900000003", DeliveryState.DELIVERED, "DELIVRD", vendor_id="sid-x"),
    ]
    sent: list[object] = []
    real = r.execute_command
    monkeypatch.setattr(r, "execute_command", lambda *args, **kw: sent.append(args[0]) or real(*args, **kw))
    assert apply_receipts(store, "tencent", receipts) == 2
    assert sent.count("MGET") == 1 and "GET" not in sent
    assert store.records("m-a")["13900000001"].state == State.DELIVERED
    assert (store.records("m-b")["13900000002"].state, store.records("m-b")["13900000002"].code) == (
        State.FAILED,
        "UNDELIV",
    )


def test_the_settle_sweep_fails_unconfirmed_sends_only_after_the_window(r, settings) -> None:  # type: ignore[no-untyped-def]
    from tasks.poll import settle_ambiguous
    from worker.store import now_ms, pack

    store = Store(r, settings)
    old = now_ms() - settings.infocloud.settle_s * 1000 - 1000
    fresh = now_ms() - 1000
    records = {
        "13900000001": pack(State.SUBMITTED, old, "infocloud", "msg-1.0", AMBIGUOUS),
        "13900000002": pack(State.SUBMITTED, fresh, "infocloud", "msg-1.0", AMBIGUOUS),
        "13900000003": pack(State.DELIVERED, old, "infocloud", "msg-1.0", "DELIVRD"),
    }
    window_ms = settings.infocloud.settle_s * 1000
    deadlines = {
        unconfirmed_entry("msg-1", "13900000001", "infocloud"): old + window_ms,
        unconfirmed_entry("msg-1", "13900000002", "infocloud"): fresh + window_ms,
        unconfirmed_entry("msg-1", "13900000003", "infocloud"): old + window_ms,
    }
    store.write("msg-1", records, unconfirmed=deadlines)
    assert settle_ambiguous() == 1
    after = store.records("msg-1")
    assert (after["13900000001"].state, after["13900000001"].code) == (State.FAILED, "NO_RECEIPT")
    assert after["13900000002"].state == State.SUBMITTED  # still inside the window
    assert after["13900000003"].state == State.DELIVERED  # a receipt settled it; only dropped from the list
    assert r.zrange(Keys.ambiguous, 0, -1) == ["msg-1|13900000002|infocloud"]


def test_a_benched_provider_stays_benched_for_unhealthy_s(sim, r, settings) -> None:  # type: ignore[no-untyped-def]
    sim.state.set_faults("infocloud", FaultPlan(codes=("2001",), code_rate=1.0))
    run_chunk(job(["13900000001"]), settings, r, provider(settings))
    assert abs(r.ttl(Keys.health("infocloud")) - settings.unhealthy_s) <= 1


def test_a_vendor_that_refuses_the_whole_call_hands_the_chunk_over(sim, r, settings) -> None:  # type: ignore[no-untyped-def]
    sim.state.set_faults("infocloud", FaultPlan(codes=("40002",), code_rate=1.0))
    logical = {
        "template": "order_shipped",
        "params": {"order": "A1", "tracking": "SF"},
        "content": None,
        "provider": None,
    }
    chunk = ChunkSpec(0, "infocloud", ("13900000001", "13900000002"), TEMPLATE, logical=logical)
    (retry,) = run_chunk(ChunkJob("msg-1", "notify", chunk), settings, r, provider(settings))
    assert retry is not None and retry.failover and retry.phones == ("13900000001", "13900000002")
    assert {rec.state for rec in Store(r, settings).records("msg-1").values()} == {State.RETRY}
    assert "infocloud" in Store(r, settings).unhealthy(["infocloud"])
    assert sim.state.counters("infocloud").received == {}


def test_a_receipt_that_beats_its_index_is_parked_and_applied_later(r, settings) -> None:  # type: ignore[no-untyped-def]
    from providers.base import DeliveryState, Receipt
    from worker.store import pack

    store = Store(r, settings)
    early = Receipt("xiaorui", "13900000001", DeliveryState.DELIVERED, "DELIVRD", vendor_id="mid-1")
    assert apply_receipts(store, "xiaorui", [early]) == 0  # the worker has not recorded the answer yet
    assert r.llen(Keys.unmatched("xiaorui")) == 1
    store.write(
        "m-x",
        {"13900000001": pack(State.SUBMITTED, 1, "xiaorui", "mid-1", "0")},
        index={Keys.vendor_batch("xiaorui", "mid-1"): "m-x"},
    )
    assert apply_receipts(store, "xiaorui", []) == 1  # the next poll matches it
    assert store.records("m-x")["13900000001"].state == State.DELIVERED
    assert r.llen(Keys.unmatched("xiaorui")) == 0


def test_billed_segments_are_recorded_and_kept_through_the_receipt(r, settings) -> None:  # type: ignore[no-untyped-def]
    from providers.base import DeliveryState, Receipt
    from worker.store import Record, pack

    store = Store(r, settings)
    store.write(
        "m-t",
        {"13900000001": pack(State.SUBMITTED, 1, "tencent", "sid-1", "0", fee=2)},
        index={Keys.vendor_batch("tencent", "sid-1"): "m-t"},
    )
    assert store.records("m-t")["13900000001"].fee == 2
    receipt = Receipt("tencent", "13900000001", DeliveryState.DELIVERED, "DELIVRD", vendor_id="sid-1")
    assert apply_receipts(store, "tencent", [receipt]) == 1
    after = store.records("m-t")["13900000001"]
    assert (after.state, after.vendor_id, after.code, after.fee) == (State.DELIVERED, "sid-1", "DELIVRD", 2)
    assert Record.unpack(pack(State.QUEUED, 5)) == Record(State.QUEUED, 5)  # no fee, no trailing fields


def test_phones_in_flight_elsewhere_are_looked_at_again_even_when_the_rest_must_retry(  # type: ignore[no-untyped-def]
    sim, r, settings
) -> None:
    from worker.store import now_ms, pack

    # One phone is "sending" for another worker (fresh); the vendor is busy for this call.
    r.hset(Keys.recipients("msg-1"), "13900000001", pack(State.SENDING, now_ms(), "infocloud"))
    sim.state.set_faults("infocloud", FaultPlan(codes=("-1",), code_rate=1.0))
    retries = run_chunk(job(["13900000001", "13900000002"]), settings, r, provider(settings))
    by_phones = {retry.phones: retry for retry in retries}
    assert set(by_phones) == {("13900000001",), ("13900000002",)}  # neither is dropped
    assert by_phones[("13900000001",)].attempt == 0  # the in-flight one was not an attempt of ours
    assert by_phones[("13900000002",)].attempt == 1


def test_a_receipt_that_says_unknown_leaves_the_recipient_submitted(r, settings) -> None:  # type: ignore[no-untyped-def]
    from providers.base import DeliveryState, Receipt
    from worker.store import pack

    store = Store(r, settings)
    store.write(
        "m-u",
        {"13900000001": pack(State.SUBMITTED, 1, "xiaorui", "mid-1", "0")},
        index={Keys.vendor_batch("xiaorui", "mid-1"): "m-u"},
    )
    unknown = Receipt("xiaorui", "13900000001", DeliveryState.UNKNOWN, "UNKNOWN", vendor_id="mid-1")
    assert apply_receipts(store, "xiaorui", [unknown]) == 0
    assert store.records("m-u")["13900000001"].state == State.SUBMITTED
    delivered = Receipt("xiaorui", "13900000001", DeliveryState.DELIVERED, "DELIVRD", vendor_id="mid-1")
    assert apply_receipts(store, "xiaorui", [delivered]) == 1  # the final word still settles it
