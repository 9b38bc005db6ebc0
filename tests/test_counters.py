"""A message's live counters (``Keys.counts``), on the session's real Redis: after any sequence of store
operations they equal a recount of the recipients hash, replays and refused writes count nothing, billed
parts are counted once per recipient that reached the vendor, and a chunk is counted done once.
"""

from __future__ import annotations

from collections import Counter
from typing import cast

import pytest
import redis

from config.limits import parse_rules
from config.settings import Settings
from providers.base import DeliveryState, Receipt, RenderedTemplate
from tasks.plan import ChunkSpec
from tasks.send import chunk_job
from worker.store import Keys, Outcome, Recording, State, Store, now_ms
from worker.store.records import state_of
from worker.store.vendors import FAILOVER_BASE

STALE_MS = 60_000
RULES = parse_rules(["2/1h"])
PHONES = [f"1390000{i:04d}" for i in range(8)]
P1, P2, P3, P4 = PHONES[:4]
M = "m1"
TEMPLATE = RenderedTemplate("675871161745170001", ("A1",), ("order",), "text")


@pytest.fixture
def store(r: redis.Redis, settings: Settings) -> Store:
    return Store(r, settings)


def recount(r: redis.Redis, message_id: str = M) -> Counter[str]:
    """What the counters must say: the states of the records, counted the slow way."""
    raw = cast("dict[str, str]", r.hgetall(Keys.recipients(message_id)))
    return Counter(state_of(value) for value in raw.values())


def counted(store: Store, message_id: str = M) -> Counter[str]:
    """The state counters as stored (zeros dropped), without ``Store.counts``'s fallback."""
    progress = store.progress(message_id)
    return Counter({name: n for name, n in progress.items() if name in set(State) and n != 0})


def plan(store: Store, phones: list[str], number: int = 0, message_id: str = M) -> None:
    """Open chunk ``number`` of ``phones`` as planning does (records queued, a lease)."""
    job = chunk_job("notify", "sms.notify", ChunkSpec(number, "infocloud", tuple(phones), TEMPLATE))
    store.open_chunk(message_id, number, job, now_ms() + 60_000, queued=True)


def claim(store: Store, phones: list[str], token: str, message_id: str = M) -> None:
    store.claim(message_id, "notify", "infocloud", phones, RULES, STALE_MS, token)


def outcomes(state: State, *phones: str, fee: int | None = None) -> Recording:
    return Recording([Outcome(p, state, "200", vendor_id="B1", fee=fee) for p in phones])


def test_planning_counts_each_recipient_queued_once(store: Store, r: redis.Redis, settings: Settings) -> None:
    plan(store, [P1, P2, P3])
    plan(store, [P1, P2, P3])  # a planning task run again after a crash
    assert store.progress(M) == {"queued": 3}
    assert 0 < r.ttl(Keys.counts(M)) <= settings.retention_s


def test_a_claim_moves_queued_recipients_and_counts_a_replay_once(store: Store, r: redis.Redis) -> None:
    plan(store, [P1, P2, P3, P4])
    r.sadd(Keys.optout, P4)
    claim(store, [P1, P2], "tok-x", message_id="other-1")  # P1 and P2 used their 2 an hour elsewhere
    claim(store, [P1, P2], "tok-y", message_id="other-2")
    claim(store, [P1, P2, P3, P4], "tok-a")
    claim(store, [P1, P2, P3, P4], "tok-a")  # the same claim retried after a dropped connection
    assert counted(store) == recount(r) == Counter(rate_limited=2, sending=1, opted_out=1)


def test_a_one_chunk_send_claimed_without_a_queued_record_counts_from_nothing(
    store: Store, r: redis.Redis
) -> None:
    claim(store, [P1, P2], "tok-a")
    assert store.progress(M) == {"sending": 2}


def test_records_move_counters_and_a_refused_write_counts_nothing(store: Store, r: redis.Redis) -> None:
    plan(store, [P1, P2, P3])
    claim(store, [P1, P2, P3], "tok-a")
    store.record(M, "infocloud", outcomes(State.SUBMITTED, P1, P2))
    store.record(M, "infocloud", outcomes(State.SUBMITTED, P1, P2))  # replayed: not sending any more
    store.record(M, "infocloud", outcomes(State.RETRY, P3))
    store.reject(M, [(P1, "to: bad"), ("12345", "to: bad")])  # P1 has a record: refused
    assert counted(store) == recount(r) == Counter(submitted=2, retry=1, rejected=1)
    assert store.progress(M)["parts"] == 2


def test_parts_are_the_fee_when_the_vendor_says_and_are_counted_once(store: Store, r: redis.Redis) -> None:
    plan(store, [P1, P2, P3])
    claim(store, [P1, P2, P3], "tok-a")
    store.record(M, "infocloud", outcomes(State.SUBMITTED, P1, fee=3))
    store.record(M, "infocloud", outcomes(State.DELIVERED, P2, fee=2))  # delivered in the call's answer
    store.record(M, "infocloud", outcomes(State.FAILED, P3))  # refused by the vendor: not billed
    store.settle(M, "infocloud", [(P1, State.DELIVERED, "DELIVRD")], "receipt")  # already counted
    progress = store.progress(M)
    assert progress["parts"] == 5
    assert counted(store) == recount(r) == Counter(delivered=2, failed=1)


def test_a_receipt_that_beats_the_calls_answer_counts_the_parts_the_answer_would_have(
    store: Store, r: redis.Redis
) -> None:
    plan(store, [P1, P2])
    claim(store, [P1, P2], "tok-a")
    receipts = [Receipt("infocloud", P1, DeliveryState.DELIVERED, "DELIVRD", bid=f"{M}.0")]
    receipts.append(Receipt("infocloud", P2, DeliveryState.UNDELIVERED, "MK:0001", bid=f"{M}.0"))
    assert store.apply_receipts("infocloud", receipts) == 2
    assert store.record(M, "infocloud", outcomes(State.SUBMITTED, P1, P2)) == []  # too late: refused
    assert store.apply_receipts("infocloud", receipts) == 0  # the vendor sent them again
    assert counted(store) == recount(r) == Counter(delivered=1, failed=1)
    assert store.progress(M)["parts"] == 2


def test_the_settle_sweep_fails_the_submitted_and_moves_their_counts(store: Store, r: redis.Redis) -> None:
    plan(store, [P1, P2])
    claim(store, [P1, P2], "tok-a")
    store.record(M, "infocloud", outcomes(State.SUBMITTED, P1, P2))
    due, _ = store.unsettled(M, "infocloud", now_ms())
    assert store.settle(M, "infocloud", [(p, State.FAILED, "NO_RECEIPT") for p in due], "sweep") == 2
    assert counted(store) == recount(r) == Counter(failed=2)
    assert store.progress(M)["parts"] == 2


def test_a_chunk_is_counted_done_once_however_often_its_lease_is_ended(store: Store, r: redis.Redis) -> None:
    plan(store, [P1], number=0)
    plan(store, [P2], number=1)
    claim(store, [P1], "tok-a")
    done = Recording([Outcome(P1, State.SUBMITTED, "200")], chunk_done=True)
    store.record(M, "infocloud", done, chunk=0)
    store.record(M, "infocloud", done, chunk=0)  # the run replayed
    assert store.end_lease(M, 0) is False
    assert store.end_lease(M, 1, done=False) is True  # set aside, to be opened again: not done
    assert store.progress(M)["chunks_done"] == 1
    plan(store, [P2], number=1)
    assert store.end_lease(M, 1) is True
    store.open_chunk(M, FAILOVER_BASE, {"chunk": {"provider": "tencent"}}, now_ms() + 60_000, queued=False)
    store.end_lease(M, FAILOVER_BASE)  # a failover's chunk carries on chunk 1: counted with it
    assert store.progress(M)["chunks_done"] == 2


def test_an_expired_message_gets_no_counters_back_from_its_lease(store: Store, r: redis.Redis) -> None:
    r.zadd(Keys.leases, {"gone|0": 1})
    assert store.end_lease("gone", 0) is True
    assert not r.exists(Keys.counts("gone"))


def test_counts_reads_the_counters_and_counts_a_message_without_them_from_its_hash(
    store: Store, r: redis.Redis
) -> None:
    plan(store, [P1, P2])
    claim(store, [P1], "tok-a")
    store.record(M, "infocloud", outcomes(State.SUBMITTED, P1))
    assert store.counts(M) == Counter(submitted=1, queued=1)  # no "sending": 0, no "parts"
    r.delete(Keys.counts(M))  # a message recorded before the counters were kept
    assert store.counts(M) == Counter(submitted=1, queued=1)
