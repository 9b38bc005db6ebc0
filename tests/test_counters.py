"""A message's live counters (``Keys.counts``), on the session's real Redis: after any sequence of store
operations they equal a recount of the recipients hash, replays and refused writes count nothing, billed
parts are counted once per recipient that reached the vendor, and a chunk is counted done once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import cast

import pytest
import redis
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from config.limits import parse_rules
from config.settings import Settings
from providers.base import DeliveryState, Receipt, RenderedTemplate
from tasks.plan import ChunkSpec
from tasks.send import chunk_job
from worker.store import NO_RECORD, Keys, Outcome, Record, Recording, State, Store, now_ms
from worker.store.records import state_of
from worker.store.vendors import FAILOVER_BASE

STALE_MS = 60_000
RULES = parse_rules(["2/1h"])
PHONES = [f"1390000{i:04d}" for i in range(8)]
P1, P2, P3, P4 = PHONES[:4]
M = "m1"
UNSENT = {NO_RECORD, State.QUEUED, State.RETRY, State.SENDING}
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


# -- any sequence of operations ----------------------------------------------------------------------

SOME = st.lists(st.sampled_from(PHONES), min_size=1, max_size=5, unique=True)
CHUNKS = st.sampled_from([0, 1, FAILOVER_BASE])
WRITTEN = st.sampled_from([State.SUBMITTED, State.DELIVERED, State.FAILED, State.RETRY, State.RATE_LIMITED])
FINAL_WORD = st.sampled_from([DeliveryState.DELIVERED, DeliveryState.UNDELIVERED])


class Operations(RuleBasedStateMachine):
    """Store operations in any order, any of them replayed, on one message; after each, the counters
    equal a recount of the records, ``parts`` the billed parts a model adds up from what each operation
    changed, and ``chunks_done`` the planned chunks whose lease this test saw ended for good."""

    store: Store  # given by the test that runs it

    def __init__(self) -> None:
        super().__init__()
        self.r = self.store.r
        self.r.flushdb()
        self.parts = 0
        self.chunks_done = 0
        self.last: Callable[[], object] | None = None

    def _run(self, op: Callable[[], object], billed: Callable[[str, str], bool]) -> None:
        """Run ``op`` and add to the model the parts of each recipient it moved that ``billed`` says."""
        before = cast("dict[str, str]", self.r.hgetall(Keys.recipients(M)))
        op()
        after = cast("dict[str, str]", self.r.hgetall(Keys.recipients(M)))
        for phone, raw in after.items():
            old = state_of(before[phone]) if phone in before else NO_RECORD
            if before.get(phone) != raw and billed(old, state_of(raw)):
                fee = Record.unpack(raw).fee
                self.parts += 1 if fee is None else fee

    def _do(
        self, op: Callable[[], object], billed: Callable[[str, str], bool] = lambda old, new: False
    ) -> None:
        self.last = lambda: self._run(op, billed)
        self.last()

    @rule(phones=SOME, number=st.sampled_from([0, 1]))
    def plan(self, phones: list[str], number: int) -> None:
        self._do(lambda: plan(self.store, phones, number))

    @rule(phones=SOME, token=st.sampled_from(["tok-a", "tok-b"]), opted=st.sampled_from(PHONES))
    def claim(self, phones: list[str], token: str, opted: str) -> None:
        self.r.sadd(Keys.optout, opted)
        self._do(lambda: claim(self.store, phones, token))

    @rule(phones=SOME, state=WRITTEN, fee=st.none() | st.integers(0, 3), done=st.booleans(), number=CHUNKS)
    def record(self, phones: list[str], state: State, fee: int | None, done: bool, number: int) -> None:
        recording = outcomes(state, *phones, fee=fee)
        recording.chunk_done = done

        def op() -> None:
            if done and self.r.zscore(Keys.leases, f"{M}|{number}") is not None and number < FAILOVER_BASE:
                self.chunks_done += 1
            self.store.record(M, "infocloud", recording, chunk=number)

        self._do(op, lambda old, new: new in {"submitted", "delivered"} and old in UNSENT)

    @rule(phones=SOME)
    def fail_over(self, phones: list[str]) -> None:
        recording = Recording([Outcome(p, State.FAILED, "NO_ROUTE") for p in phones])
        from_states = (NO_RECORD, State.QUEUED, State.RETRY)
        self._do(lambda: self.store.record(M, "", recording, from_states=from_states, why="failover"))

    @rule(phones=SOME)
    def cancel(self, phones: list[str]) -> None:
        """A cancelled campaign's recipients not claimed yet (its runner writes them so)."""
        recording = Recording([Outcome(p, State.CANCELLED, "CANCELLED") for p in phones])
        from_states = (State.QUEUED, State.RETRY)
        self._do(lambda: self.store.record(M, "", recording, from_states=from_states, why="cancel"))

    @rule(phones=SOME)
    def reject(self, phones: list[str]) -> None:
        self._do(lambda: self.store.reject(M, [(p, "to: bad") for p in phones]))

    @rule(phones=SOME, word=FINAL_WORD)
    def receipts(self, phones: list[str], word: DeliveryState) -> None:
        found = [Receipt("infocloud", p, word, "X", bid=f"{M}.0") for p in phones]
        self._do(lambda: self.store.apply_receipts("infocloud", found), lambda old, new: old == "sending")

    @rule()
    def settle_sweep(self) -> None:
        def op() -> None:
            due, _ = self.store.unsettled(M, "infocloud", now_ms())
            self.store.settle(M, "infocloud", [(p, State.FAILED, "NO_RECEIPT") for p in due], "sweep")

        self._do(op)

    @rule(number=CHUNKS, done=st.booleans())
    def end_lease(self, number: int, done: bool) -> None:
        def op() -> None:
            if self.store.end_lease(M, number, done=done) and done and number < FAILOVER_BASE:
                self.chunks_done += 1

        self._do(op)

    @precondition(lambda self: self.last is not None)
    @rule()
    def replay(self) -> None:
        """The last operation again (a retried command, a redelivered task, a receipt sent twice)."""
        assert self.last is not None
        self.last()

    @invariant()
    def counters_match_a_recount(self) -> None:
        progress = self.store.progress(M)
        assert counted(self.store) == recount(self.r)
        assert min(progress.values(), default=0) >= 0
        assert (progress.get("parts", 0), progress.get("chunks_done", 0)) == (self.parts, self.chunks_done)


def test_counters_equal_a_recount_after_any_sequence_of_operations(store: Store) -> None:
    Operations.store = store
    run_state_machine_as_test(
        Operations, settings=hsettings(max_examples=40, stateful_step_count=25, deadline=None)
    )
