"""Webhook delivery state: the ``webhooks`` consumer group on the events stream, the retry state of the
batch in flight, the run lock and the dead letters (events given up on).

One deliverer at a time (the lock) reads as the group's one consumer, ``deliverer``. A batch it read
stays pending in the group until it is acknowledged (delivered, or given up on), so a run that dies
half-way leaves it to the next run, which reads the pending entries first: the same batch again, in order.
The state hash holds a few fields and the dead-letter list is capped and expires (README "Webhooks").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

import redis
from redis.lock import Lock

from worker.store.base import StoreBase, fields
from worker.store.keys import Keys
from worker.store.records import now_ms

CONSUMER = "deliverer"
DEAD_KEEP = 100  # dead letters kept (the newest)
UNREAD_COUNT_CAP = 10_000  # Redis < 7 has no group lag: count unread entries up to this
Entry = tuple[str, dict[str, str]]


def entry_ms(entry_id: str) -> int:
    """When an entry was added (ms since the epoch): the first part of its stream id."""
    return int(entry_id.partition("-")[0])


@dataclass(frozen=True, slots=True)
class WebhookState:
    """Where delivery stands. Times in ms since the epoch, 0 for never."""

    attempts: int = 0  # failed attempts of the batch in flight, in a row
    next_ms: int = 0  # no attempt before this (the backoff)
    last_success_ms: int = 0
    last_error: str = ""
    last_error_ms: int = 0
    delivered: int = 0  # events delivered, in all
    dropped: int = 0  # events given up on, in all


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Events ``first_id`` .. ``last_id`` of the stream (``count`` of them) given up on at ``at_ms``."""

    at_ms: int
    first_id: str
    last_id: str
    count: int
    error: str


class WebhooksMixin(StoreBase):
    def webhook_lock(self, ttl_s: float) -> Lock:
        """The run lock (not taken yet): ``acquire()`` is False while another run holds it. It expires
        after ``ttl_s`` unless ``reacquire()`` renews it, so a killed run never blocks delivery for long."""
        return cast("Lock", self.r.lock(Keys.webhooks_lock, timeout=ttl_s, blocking=False))

    def webhook_group(self) -> None:
        """Create the group at the end of the stream (events published from now on) if it is missing."""
        try:
            self.r.xgroup_create(Keys.events, Keys.webhooks_group, id="$", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def webhook_batch(self, count: int) -> list[Entry]:
        """The batch in flight (read before, not acknowledged), else up to ``count`` new entries, which
        are then in flight. Entries trimmed from the stream while in flight are acknowledged and skipped."""
        for _ in range(100):
            pending = self._read_group("0", count)
            gone = [entry_id for entry_id, data in pending if not data]
            if gone:
                self.r.xack(Keys.events, Keys.webhooks_group, *gone)
            live = [(entry_id, data) for entry_id, data in pending if data]
            if live:
                return live
            if not gone:
                return self._read_group(">", count)
        return []

    def _read_group(self, start: str, count: int) -> list[Entry]:
        streams: dict[Any, Any] = {Keys.events: start}
        try:
            found = self.r.xreadgroup(Keys.webhooks_group, CONSUMER, streams, count=count)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.webhook_group()  # the stream was deleted (a flush): start again from here
            found = self.r.xreadgroup(Keys.webhooks_group, CONSUMER, streams, count=count)
        rows = cast("list[tuple[str, list[tuple[str, dict[str, str] | None]]]]", found or [])
        return [(entry_id, data or {}) for _, entries in rows for entry_id, data in entries]

    def webhook_delivered(self, ids: Sequence[str]) -> None:
        """The batch ``ids`` reached the application: acknowledge it and clear the retry state."""
        with self.r.pipeline(transaction=False) as pipe:
            pipe.xack(Keys.events, Keys.webhooks_group, *ids)
            pipe.hset(Keys.webhooks, mapping={"last_success_ms": now_ms(), "attempts": 0, "next_ms": 0})
            pipe.hincrby(Keys.webhooks, "delivered", len(ids))
            pipe.execute()

    def webhook_failed(self, attempts: int, next_ms: int, error: str) -> None:
        """An attempt failed with ``error`` (no secret in it): no attempt before ``next_ms``."""
        state: dict[str, str | int] = {
            "attempts": attempts, "next_ms": next_ms, "last_error": error[:300], "last_error_ms": now_ms()
        }
        self.r.hset(Keys.webhooks, mapping=fields(state))

    def webhook_drop_older(self, before_ms: int, count: int, error: str, limit: int) -> DeadLetter | None:
        """Give up on the entries in flight or unread published before ``before_ms`` (at most ``limit``,
        ``count`` a read): acknowledge them and keep a dead letter. None if there were none."""
        dropped: list[str] = []
        while len(dropped) < limit:
            batch = self.webhook_batch(count)
            old = [entry_id for entry_id, _ in batch if entry_ms(entry_id) < before_ms]
            if old:
                self.r.xack(Keys.events, Keys.webhooks_group, *old)
                dropped += old
            if len(old) < len(batch) or not batch:
                break
        if not dropped:
            return None
        letter = DeadLetter(now_ms(), dropped[0], dropped[-1], len(dropped), error[:300])
        with self.r.pipeline(transaction=False) as pipe:
            pipe.lpush(Keys.webhooks_dead, json.dumps(asdict(letter), separators=(",", ":")))
            pipe.ltrim(Keys.webhooks_dead, 0, DEAD_KEEP - 1)
            pipe.expire(Keys.webhooks_dead, self.ttl)
            pipe.hincrby(Keys.webhooks, "dropped", len(dropped))
            pipe.execute()
        return letter

    def webhook_state(self) -> WebhookState:
        raw = cast("dict[str, str]", self.r.hgetall(Keys.webhooks))
        ints = {name: int(raw.get(name) or 0) for name in WebhookState.__slots__ if name != "last_error"}
        return WebhookState(**ints, last_error=raw.get("last_error", ""))

    def webhook_backlog(self) -> tuple[int, int, bool]:
        """``(in flight, unread, exact)``: events read but not acknowledged, and events not read yet
        (``exact`` False when the unread count stopped at its cap). (0, 0, True) before the first run."""
        try:
            groups: list[dict[str, Any]] = self.r.xinfo_groups(Keys.events)
        except redis.ResponseError:  # no stream yet
            return 0, 0, True
        group = next((g for g in groups if g["name"] == Keys.webhooks_group), None)
        if group is None:
            return 0, 0, True
        if group.get("lag") is not None:  # Redis 7+
            return int(group["pending"]), int(group["lag"]), True
        after = "(" + str(group["last-delivered-id"])
        unread = len(cast("list[Entry]", self.r.xrange(Keys.events, after, "+", count=UNREAD_COUNT_CAP)))
        return int(group["pending"]), unread, unread < UNREAD_COUNT_CAP

    def webhook_dead_letters(self, limit: int = DEAD_KEEP) -> list[DeadLetter]:
        rows = cast("list[str]", self.r.lrange(Keys.webhooks_dead, 0, limit - 1))
        return [DeadLetter(**json.loads(row)) for row in rows]
