"""End to end: a real Celery worker (subprocess), the embedded Redis and the simulator over HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis

from providers.simulator.core import FaultPlan
from tasks.plan import InvalidRequest
from tests.conftest import WorkerProcess, wait_for
from worker.store import State, Store

pytestmark = pytest.mark.e2e
ORDER = {"template": "order_shipped", "params": {"order": "A1", "tracking": "SF1"}}


@pytest.fixture
def worker(start_worker: Callable[..., WorkerProcess]) -> Iterator[WorkerProcess]:
    yield start_worker("pipeline", concurrency=2)


def settle(store: Store, message_id: str, expected: int, timeout: float = 60) -> dict[str, int]:
    """Poll receipts until every accepted recipient of the message has a final state."""
    from tasks.poll import poll_receipts

    final = {State.DELIVERED, State.FAILED, State.REJECTED, State.RATE_LIMITED, State.OPTED_OUT}

    def done() -> bool:
        poll_receipts("infocloud")
        counts = store.counts(message_id)
        return sum(counts[s] for s in final) >= expected

    wait_for(done, timeout=timeout, interval=0.2)
    return dict(store.counts(message_id))


def test_2500_recipients_go_out_in_exactly_three_calls(worker, sim, r: redis.Redis, settings) -> None:  # type: ignore[no-untyped-def]
    from tasks import send_sms

    phones = [f"139{i:08d}" for i in range(2500)]
    result = send_sms.delay(phones, **ORDER).get(timeout=30)
    assert result["accepted"] == 2500 and result["chunks"] == 3
    counts = settle(Store(r, settings), result["message_id"], 2500)
    assert counts == {"delivered": 2500}
    calls = sim.state.counters("infocloud").call_sizes
    assert sorted(calls) == [500, 1000, 1000]
    assert sim.state.counters("infocloud").received == dict.fromkeys(phones, 1)


def test_with_30_percent_transient_failures_everyone_is_delivered_exactly_once(  # type: ignore[no-untyped-def]
    worker, sim, r, settings
) -> None:
    from tasks import send_sms

    sim.state.set_faults("infocloud", FaultPlan(codes=("-1", "60009"), code_rate=0.3))
    phones = [f"137{i:08d}" for i in range(5000)]
    batch = send_sms.delay(phones, **ORDER).get(timeout=30)
    singles = [send_sms.delay(f"136{i:08d}", **ORDER) for i in range(20)]  # one-chunk sends retry too
    counts = settle(Store(r, settings), batch["message_id"], 5000)
    assert counts == {"delivered": 5000}
    for single in singles:
        assert settle(Store(r, settings), single.get(timeout=30)["message_id"], 1) == {"delivered": 1}
    counters = sim.state.counters("infocloud")
    assert counters.answered_codes["-1"] + counters.answered_codes["60009"] > 0  # faults really happened
    assert set(counters.received.values()) == {1} and len(counters.received) == 5020


def test_a_permanent_code_fails_the_recipients_with_the_code(worker, sim, r, settings) -> None:  # type: ignore[no-untyped-def]
    from tasks import send_sms

    sim.state.set_faults("infocloud", FaultPlan(codes=("60001",), code_rate=1.0))
    result = send_sms.delay([f"135{i:08d}" for i in range(1500)], **ORDER).get(timeout=30)
    store = Store(r, settings)
    wait_for(lambda: store.counts(result["message_id"]).get(State.FAILED, 0) == 1500)
    records = store.records(result["message_id"])
    assert {(rec.state, rec.code) for rec in records.values()} == {(State.FAILED, "60001")}
    assert sim.state.counters("infocloud").received == {}


def test_bad_numbers_and_unknown_templates_get_clear_errors_and_nothing_is_sent(  # type: ignore[no-untyped-def]
    worker, sim, r, settings
) -> None:
    from tasks import send_sms

    with pytest.raises(InvalidRequest, match="template: unknown template 'no_such'"):
        send_sms.delay("13800138000", template="no_such", params={})
    with pytest.raises(InvalidRequest, match="params: missing code"):
        send_sms.delay("13800138000", template="login_code", params={}, kind="otp")
    store = Store(r, settings)
    assert store.queue_length("sms.otp") == 0 and store.queue_length("sms.notify") == 0  # nothing was queued
    result = send_sms.delay(["13800138000", "12345", "1380013800", "13800138001"], **ORDER).get(timeout=30)
    assert result["accepted"] == 2 and result["rejected_count"] == 2
    assert {item["to"] for item in result["rejected"]} == {"12345", "138***3800"}  # never shown whole
    assert all(item["error"].startswith("to: ") for item in result["rejected"])
    settle(Store(r, settings), result["message_id"], 4)
    assert set(sim.state.counters("infocloud").received) == {"13800138000", "13800138001"}


def test_an_otp_is_sent_in_the_planning_task_and_reports_its_state(worker, sim, r, settings) -> None:  # type: ignore[no-untyped-def]
    from tasks import send_sms

    result = send_sms.delay("+86 138 0013 8000", template="login_code", params={"code": "123456"}, kind="otp")
    answer = result.get(timeout=30)
    assert answer["state"]["state"] == State.SUBMITTED
    assert answer["message_id"] == result.id
    assert sim.state.counters("infocloud").received == {"13800138000": 1}
    second = send_sms.delay(
        "13800138000", template="login_code", params={"code": "654321"}, kind="otp"
    ).get(timeout=30)
    assert second["state"] == {"state": "rate_limited", "code": "LIMIT", "text": "1/30s"}
    assert sim.state.counters("infocloud").received == {"13800138000": 1}


def test_the_same_idempotency_key_sends_nothing_twice(worker, sim, r, settings) -> None:  # type: ignore[no-untyped-def]
    from tasks import send_sms

    phones = ["13700000001", "13700000002"]
    first = send_sms.delay(phones, idempotency_key="order-42", **ORDER).get(timeout=30)
    again = send_sms.delay(phones, idempotency_key="order-42", **ORDER).get(timeout=30)
    assert again["message_id"] == first["message_id"] and again["duplicate"] is True
    settle(Store(r, settings), first["message_id"], 2)
    assert sim.state.counters("infocloud").received == {"13700000001": 1, "13700000002": 1}
