"""Work kept in Redis for later: long retry waits, chunk leases, settle deadlines; and the sweeps that
find what fell through (a lost task, a dead poller, a vendor that never sent a receipt).

- A chunk is *open* from planning until its run leaves nothing to do; its lease (``Keys.leases``) says
  by when its task must have run. A lease that runs out while its queue is empty belongs to a lost task:
  the sweep queues the chunk again (always safe: the claim skips what is done).
- Every submitted recipient has a settle deadline, kept per message and vendor (``Keys.settle``): at the
  deadline the sweep fails with ``NO_RECEIPT`` those still submitted (the vendor never said).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

from worker.events import SweepEvent
from worker.store.base import StoreBase
from worker.store.keys import Keys
from worker.store.records import SEP, State, now_ms


class SweepsMixin(StoreBase):
    # -- long waits ---------------------------------------------------------------------------------

    def defer(self, entry: Mapping[str, Any], due_ms: int) -> None:
        """Keep a task to publish at ``due_ms`` (waits too long for a Celery countdown)."""
        self.r.zadd(Keys.deferred, {json.dumps(entry, separators=(",", ":")): due_ms})

    def due_deferred(self, limit: int) -> list[str]:
        return cast("list[str]", self.r.zrangebyscore(Keys.deferred, 0, now_ms(), start=0, num=limit))

    def take_deferred(self, entry: str) -> dict[str, Any] | None:
        """The entry, if this caller is the one that removed it (two releasers never both get one)."""
        return json.loads(entry) if self.r.zrem(Keys.deferred, entry) else None

    # -- chunk leases -------------------------------------------------------------------------------

    def extend_lease(self, message_id: str, number: int, until_ms: int) -> None:
        self.r.zadd(Keys.leases, {f"{message_id}|{number}": until_ms})

    def expired_leases(self, limit: int) -> list[tuple[str, int]]:
        """``(message id, chunk number)`` of open chunks whose lease has run out."""
        members = cast("list[str]", self.r.zrangebyscore(Keys.leases, 0, now_ms(), start=0, num=limit))
        out = []
        for member in members:
            message_id, _, number = member.rpartition("|")
            out.append((message_id, int(number)))
        return out

    def queue_length(self, queue: str) -> int:
        """Tasks waiting in a Celery queue, over its priority lists (kombu's Redis layout)."""
        from worker.app import PRIORITY_SEP, PRIORITY_STEPS

        names = [queue] + [f"{queue}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS if step]
        with self.r.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.llen(name)
            return sum(cast("list[int]", pipe.execute()))

    # -- settle deadlines ---------------------------------------------------------------------------

    def due_settlements(self, limit: int) -> list[tuple[str, str, float]]:
        """``(message id, provider, deadline)`` whose settle deadline has passed."""
        rows = self.r.zrangebyscore(Keys.settle, 0, now_ms(), start=0, num=limit, withscores=True)
        out = []
        for member, score in cast("list[tuple[str, float]]", rows):
            message_id, _, provider = member.rpartition("|")
            out.append((message_id, provider, score))
        return out

    def unsettled(self, message_id: str, provider: str, submitted_before_ms: int) -> tuple[list[str], int]:
        """Recipients of ``provider`` still submitted (no receipt) since before the given time, and the
        latest submission time (ms) of those submitted after it (0 if none). Scans the message's hash."""
        due: list[str] = []
        later = 0
        for phone, raw in self.r.hscan_iter(Keys.recipients(message_id), count=1000):
            parts = cast("str", raw).split(SEP, 3)
            if parts[0] != State.SUBMITTED or parts[2] != provider:
                continue
            at = int(parts[1]) if parts[1].isdigit() else 0
            if at <= submitted_before_ms:
                due.append(cast("str", phone))
            else:
                later = max(later, at)
        return due, later

    def settlement_done(self, message_id: str, provider: str, deadline: float, next_ms: int | None) -> None:
        """Close a settle deadline the sweep has handled, or move it to ``next_ms`` for recipients
        submitted since (unless a writer moved it on meanwhile)."""
        member = f"{message_id}|{provider}"
        if next_ms is None:
            self._script("zrem_if_score")(keys=[Keys.settle], args=[member, deadline])
        else:
            self.r.zadd(Keys.settle, {member: next_ms}, gt=True)

    def publish_sweep(self, action: str, message_id: str, count: int) -> None:
        """Say on the events stream what a sweep did."""
        with self.r.pipeline(transaction=False) as pipe:
            self._publish(pipe, [SweepEvent(action, message_id, count)])
            pipe.execute()

    def trim_events(self) -> None:
        self.r.xtrim(Keys.events, maxlen=self.settings.events_maxlen, approximate=True)

    # -- idempotency --------------------------------------------------------------------------------

    def claim_idempotency(self, key: str, message_id: str, fingerprint: str) -> dict[str, Any] | None:
        """Reserve ``key`` for ``message_id``. Returns None if reserved now, else what is stored
        (``message_id``, ``fingerprint`` and, once planned, ``result``)."""
        full = Keys.idempotency(key)
        ttl = self.settings.idempotency_ttl_s
        value = json.dumps({"message_id": message_id, "fingerprint": fingerprint})
        if self.r.set(full, value, nx=True, ex=ttl):
            return None
        stored = cast("str | None", self.r.get(full))
        return json.loads(stored) if stored else None

    def store_idempotent_result(self, key: str, fingerprint: str, result: Mapping[str, Any]) -> None:
        value = json.dumps({"message_id": result["message_id"], "fingerprint": fingerprint, "result": result})
        self.r.set(Keys.idempotency(key), value, ex=self.settings.idempotency_ttl_s, xx=True)
