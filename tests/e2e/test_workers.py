"""Several real workers: per-phone limits under a race, and a worker killed in the middle of a chunk."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from providers.simulator.core import FaultPlan
from tests.conftest import WorkerProcess, wait_for
from worker.store import State, Store

pytestmark = pytest.mark.e2e
LOGIN = {"template": "login_code", "params": {"code": "123456"}, "kind": "otp"}


def test_per_phone_limits_hold_when_two_workers_race(  # type: ignore[no-untyped-def]
    start_worker: Callable[..., WorkerProcess], sim, r, settings
) -> None:
    from tasks import send_sms

    sim.state.set_faults("infocloud", FaultPlan(latency_s=0.05))  # keep the calls overlapping
    start_worker("race-a", concurrency=2)
    start_worker("race-b", concurrency=2)
    phones = [f"138{i:08d}" for i in range(200)]
    results = [send_sms.delay(phones, **LOGIN) for _ in range(8)]  # 8 messages race for the same phones
    ids = [result.get(timeout=60)["message_id"] for result in results]
    store = Store(r, settings)
    wait_for(lambda: sum(store.counts(i)[State.SENDING] + store.counts(i)[State.QUEUED] for i in ids) == 0)
    received = sim.state.counters("infocloud").received
    assert received == dict.fromkeys(phones, 1)  # the OTP limit is 1 per 30 s per phone, across workers
    totals: dict[str, int] = {}
    for message_id in ids:
        for state, n in store.counts(message_id).items():
            totals[state] = totals.get(state, 0) + n
    assert totals == {"submitted": 200, "rate_limited": 7 * 200}


def test_a_worker_killed_mid_chunk_loses_nothing(  # type: ignore[no-untyped-def]
    start_worker: Callable[..., WorkerProcess], sim, r, settings
) -> None:
    from tasks import send_sms
    from tasks.poll import poll_receipts

    sim.state.set_faults("infocloud", FaultPlan(latency_s=1.0))  # every vendor call takes a second
    doomed = start_worker("doomed", concurrency=2)
    phones = [f"133{i:08d}" for i in range(4000)]
    message_id = send_sms.delay(phones, template="order_shipped", params={"order": "A", "tracking": "B"}).id
    wait_for(lambda: sim.state.counters("infocloud").requests >= 1, timeout=30)  # a call is in flight
    doomed.kill()
    killed_at = time.monotonic()
    # A new worker takes over: the broker gives back what the dead one had (visibility time-out).
    start_worker("heir", concurrency=2, SMSD_VISIBILITY_TIMEOUT_S="3")
    store = Store(r, settings)
    unsettled = {State.QUEUED, State.RETRY, State.SENDING}

    def settled() -> bool:
        poll_receipts("infocloud")
        counts = store.counts(message_id)
        return sum(counts.values()) == len(phones) and not any(counts[s] for s in unsettled) and (
            counts[State.DELIVERED] >= len(sim.state.counters("infocloud").received)
        )

    wait_for(settled, timeout=90, interval=0.5)
    received = sim.state.counters("infocloud").received
    assert set(received.values()) == {1}  # nobody twice
    records = store.records(message_id)
    for phone in phones:  # nobody lost: delivered, or flagged unconfirmed if the vendor never got it
        expected = (State.DELIVERED, "DELIVRD") if phone in received else (State.SUBMITTED, "AMBIGUOUS")
        assert (records[phone].state, records[phone].code) == expected
    assert len(received) >= len(phones) - 1000  # at most the one chunk caught between claim and call
    assert time.monotonic() - killed_at < 90
