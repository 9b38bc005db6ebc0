"""Recipient state through a chunk's life: planned (queued), claimed (sending), recorded (the outcome).

Each method is one round trip. Records are written only from the states a step may leave (see
``lua/transition.lua``), so a retried or repeated write changes nothing twice.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from config.limits import LimitRule
from worker.events import VERSION as EVENTS_VERSION
from worker.events import StateEvent, group
from worker.store.base import StoreBase, fields
from worker.store.client import queue_script
from worker.store.keys import Keys
from worker.store.records import NO_RECORD, Record, State, now_ms, state_of
from worker.store.vendors import FAILOVER_BASE

if TYPE_CHECKING:
    from redis.client import Pipeline

BEIJING_OFFSET_S = 8 * 3600  # windows of a day or longer reset at Beijing midnight
STATES = frozenset(State)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A recipient's new state, with the vendor's word on it."""

    phone: str
    state: State
    code: str = ""
    text: str = ""
    vendor_id: str = ""
    fee: int | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of claiming a chunk, phone by phone (see ``lua/claim.lua`` for the codes)."""

    send: tuple[str, ...]
    opted_out: tuple[str, ...]
    limited: tuple[tuple[str, LimitRule], ...]
    in_flight: tuple[str, ...]
    orphaned: tuple[str, ...]
    done: tuple[tuple[str, str], ...]

    def events(self, message_id: str, provider: str) -> list[StateEvent]:
        """The state changes the claim itself made (opted out, over a limit)."""
        changes = [(p, State.OPTED_OUT.value, "OPTOUT") for p in self.opted_out]
        changes += [(p, State.RATE_LIMITED.value, f"LIMIT {rule}") for p, rule in self.limited]
        return group(message_id, provider, changes, "claim")


@dataclass
class Recording:
    """Everything a chunk run writes at its end, in one round trip."""

    outcomes: list[Outcome] = field(default_factory=list)
    events: list[StateEvent] = field(default_factory=list)  # besides those of the outcomes
    index: dict[str, str] = field(default_factory=dict)  # vendor batch / per-phone id -> message id
    chunk_done: bool = False  # nothing of the chunk is left to do: its lease ends


# How long a limit window's hash outlives its window. Workers bucket by their own clocks (kept in sync by
# NTP): a worker whose clock is behind by more than this writes a bucket the others have left, which only
# means it counts alone for that window. Five seconds, not a minute: a one-second rule's hashes are about
# a quarter of Redis's memory per recipient in a bulk send, and they are kept for this margin plus their
# second (at 30,000 recipients/s, 15 MB instead of 155 MB).
LIMIT_KEY_MARGIN_S = 5


def window_bucket(rule: LimitRule, now_s: float) -> int:
    offset = BEIJING_OFFSET_S if rule.window_s >= 86400 else 0
    return int((now_s + offset) // rule.window_s)


def lease_member(message_id: str, number: int) -> str:
    return f"{message_id}|{number}"


class RecipientsMixin(StoreBase):
    # -- planning -----------------------------------------------------------------------------------

    def open_chunk(
        self,
        message_id: str,
        number: int,
        job: Mapping[str, Any],
        lease_until_ms: int,
        queued: bool,
        meta: Mapping[str, str | int] | None = None,
    ) -> bool:
        """Keep a chunk's job (to queue it again if its task is lost) and its lease; with ``queued``
        (planning), record its recipients as queued unless they already have a state and keep the
        first job. With ``meta``, create the message too (``create_message``, in the same round trip).
        Returns True if the job is new (False: a re-run plan met a chunk it had opened)."""
        plan = Keys.plan(message_id)
        with self.r.pipeline(transaction=False) as pipe:
            if meta:
                self._create_message(pipe, message_id, meta)
            if queued:
                record = Record(State.QUEUED, now_ms(), job["chunk"]["provider"]).pack()
                phones = job["chunk"]["phones"]
                keys = [Keys.recipients(message_id), Keys.counts(message_id)]
                queue_script(pipe, "init_queued", keys, [record, self.ttl, *phones])
            encoded = json.dumps(job, separators=(",", ":"))
            if queued:  # planning: a re-run plan keeps what it opened
                pipe.hsetnx(plan, str(number), encoded)
            else:  # a run or a retry: the job as it now stands (its attempt)
                pipe.hset(plan, str(number), encoded)
            pipe.expire(plan, self.ttl)
            pipe.zadd(Keys.leases, {lease_member(message_id, number): lease_until_ms})
            result = pipe.execute()
        return bool(result[-3])

    def chunk_job(self, message_id: str, number: int) -> dict[str, Any] | None:
        raw = cast("str | None", self.r.hget(Keys.plan(message_id), str(number)))
        return json.loads(raw) if raw else None

    def reject(self, message_id: str, rejected: Sequence[tuple[str, str]], code: str = "INVALID") -> None:
        """Record refused inputs (what was given, why), where nothing is recorded for them yet."""
        if not rejected:
            return
        outcomes = [Outcome(given, State.REJECTED, code, why) for given, why in rejected]
        self.record(message_id, "", Recording(outcomes), from_states=(NO_RECORD,), why="plan")

    # -- claiming -----------------------------------------------------------------------------------

    def claim(
        self,
        message_id: str,
        kind: str,
        provider: str,
        phones: Sequence[str],
        rules: Sequence[LimitRule],
        stale_ms: int,
        token: str,
        *,
        honour_optout: bool = True,
    ) -> Claim:
        """Claim ``phones`` for one vendor call: skip what is done, refuse what is opted out (when the
        kind honours opt-outs) or over a limit, charge the limits of the rest and mark them sending under
        ``token``."""
        now = time.time()
        limit_keys = [Keys.limit(kind, rule.window_s, window_bucket(rule, now)) for rule in rules]
        args: list[str | int] = [int(now * 1000), stale_ms, len(rules)]
        args += [rule.count for rule in rules]
        args += [rule.window_s + LIMIT_KEY_MARGIN_S for rule in rules]
        args += [str(rule) for rule in rules]
        args += [provider, token, self.ttl, "1" if honour_optout else "0", *phones]
        codes: list[str] = self._script("claim")(
            keys=[Keys.recipients(message_id), Keys.counts(message_id), Keys.optout, *limit_keys], args=args
        )
        return _sort(phones, codes, rules)

    # -- leases -------------------------------------------------------------------------------------

    def end_lease(self, message_id: str, number: int, *, done: bool = True) -> bool:
        """End a chunk's lease: nothing of it is left to do (``done``: counted in ``chunks_done``), or
        it is set aside to be opened again later (not counted, or it would be counted twice). Returns
        whether the lease was still open."""
        with self.r.pipeline(transaction=False) as pipe:
            self._end_lease(pipe, message_id, number, done)
            (ended,) = pipe.execute()
        return bool(ended)

    def _end_lease(self, pipe: Pipeline, message_id: str, number: int, done: bool = True) -> None:
        """The lease's end, queued on ``pipe``. Only chunks of the plan count: a failover's chunks
        (numbers from ``FAILOVER_BASE``) carry on one that was counted already."""
        counted = "1" if done and number < FAILOVER_BASE else "0"
        keys = [Keys.leases, Keys.counts(message_id)]
        queue_script(pipe, "end_lease", keys, [lease_member(message_id, number), counted])

    # -- recording ----------------------------------------------------------------------------------

    def record(
        self,
        message_id: str,
        provider: str,
        recording: Recording,
        *,
        from_states: Sequence[str] = (State.SENDING,),
        why: str = "call",
        chunk: int | None = None,
    ) -> list[str]:
        """Write each outcome over a record in one of ``from_states``, with the state events of what was
        written (by ``transition.lua``), ``recording.events``, vendor-id index entries, the settle deadline
        of what was submitted and, when ``recording.chunk_done``, the end of the chunk's lease: one round
        trip. Returns the phones written."""
        at = now_ms()
        groups: dict[tuple[str, str], int] = {}  # (state, code) -> its event's number, first seen first
        triples: list[str | int] = []
        for o in recording.outcomes:
            group = groups.setdefault((o.state.value, o.code), len(groups) + 1)
            record = Record(o.state, at, provider, o.vendor_id, o.code, o.text, o.fee).pack()
            triples += [o.phone, record, group]
        with self.r.pipeline(transaction=False) as pipe:
            if triples:
                event = (EVENTS_VERSION, at, message_id, provider, why, at - self.ttl * 1000, len(groups))
                args: list[str | int] = [self.ttl, " ".join(from_states), *event]
                args += [*(state for state, _ in groups), *(code for _, code in groups), *triples]
                keys = [Keys.recipients(message_id), Keys.counts(message_id), Keys.events]
                queue_script(pipe, "transition", keys, args)
            self._publish(pipe, recording.events)
            for key, value in recording.index.items():
                pipe.set(key, value, ex=self.ttl)
            if any(o.state is State.SUBMITTED for o in recording.outcomes):
                due = at + self.settings.vendor(provider).settle_s * 1000
                pipe.zadd(Keys.settle, {f"{message_id}|{provider}": due}, gt=True)
            if recording.chunk_done and chunk is not None:
                self._end_lease(pipe, message_id, chunk)
            # Executed even with no outcome to write: a re-run chunk with nothing left to do still ends
            # its lease (and counts the chunk done) here.
            results = pipe.execute()
        written: list[str] = results[0] if triples else []
        return written

    # -- reading ------------------------------------------------------------------------------------

    def records(self, message_id: str, phones: Sequence[str] | None = None) -> dict[str, Record]:
        key = Keys.recipients(message_id)
        if phones is None:
            raw = cast("dict[str, str]", self.r.hgetall(key))
            return {phone: Record.unpack(value) for phone, value in raw.items()}
        values = cast("list[str | None]", self.r.hmget(key, list(phones)))
        return {phone: Record.unpack(v) for phone, v in zip(phones, values, strict=True) if v is not None}

    def counts(self, message_id: str) -> Counter[str]:
        """Recipients per state (states nobody is in left out), from the live counters. A message that
        has none (recorded before they were kept) is counted from its whole hash instead."""
        progress = self.progress(message_id)
        if not progress:
            raw = cast("dict[str, str]", self.r.hgetall(Keys.recipients(message_id)))
            return Counter(state_of(value) for value in raw.values())
        return Counter({name: n for name, n in progress.items() if name in STATES and n > 0})

    def progress(self, message_id: str) -> dict[str, int]:
        """The message's live counters, one small hash read: recipients per state (a state nobody is in
        may be absent or 0), ``parts`` (billed parts of those submitted) and ``chunks_done`` (chunks whose
        lease ended). Kept by the scripts that write records (see ``records.py``)."""
        raw = cast("dict[str, str]", self.r.hgetall(Keys.counts(message_id)))
        return {name: int(value) for name, value in raw.items()}

    # -- messages -----------------------------------------------------------------------------------

    def create_message(self, message_id: str, meta: Mapping[str, str | int]) -> None:
        with self.r.pipeline(transaction=False) as pipe:
            self._create_message(pipe, message_id, meta)
            pipe.execute()

    def _create_message(self, pipe: Pipeline, message_id: str, meta: Mapping[str, str | int]) -> None:
        pipe.hset(Keys.message(message_id), mapping=fields(meta))
        pipe.expire(Keys.message(message_id), self.ttl)

    def message(self, message_id: str) -> dict[str, str]:
        return cast("dict[str, str]", self.r.hgetall(Keys.message(message_id)))

    def mark_message(self, message_id: str, **values: str | int) -> None:
        self.r.hset(Keys.message(message_id), mapping=fields(values))


def _sort(phones: Sequence[str], codes: Sequence[str], rules: Sequence[LimitRule]) -> Claim:
    send: list[str] = []
    opted: list[str] = []
    limited: list[tuple[str, LimitRule]] = []
    flight: list[str] = []
    orphan: list[str] = []
    done: list[tuple[str, str]] = []
    for phone, code in zip(phones, codes, strict=True):
        tag = code[0]
        if tag == "S":
            send.append(phone)
        elif tag == "O":
            opted.append(phone)
        elif tag == "L":
            limited.append((phone, rules[int(code[1:]) - 1]))
        elif tag == "W":
            flight.append(phone)
        elif tag == "A":
            orphan.append(phone)
        else:
            done.append((phone, code[1:]))
    return Claim(tuple(send), tuple(opted), tuple(limited), tuple(flight), tuple(orphan), tuple(done))
