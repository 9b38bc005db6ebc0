"""Vendor pushes, stored raw before anything acts on them: one stream per kind (receipts, inbound), read by
``tasks.push.apply_pushes`` through a consumer group, and a dead-letter stream for bodies that failed.

The receiver (``worker/http``) adds each push in one round trip (:class:`PushInbox`, asyncio) and answers
the vendor at once; the applier claims entries (``XAUTOCLAIM`` first: entries whose applier died, then
``XREADGROUP``), applies them, and acks and deletes them. A body that cannot be parsed is moved to
``Keys.push_dead`` with the error, in one transaction, never dropped. Every stream is trimmed by age
(``push.keep_s``) as it is written. Bodies are UTF-8 text (the receiver refuses anything else), so the
store's decoding client reads them back as they came.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis
import redis.asyncio

from providers.pushes import PushKind
from worker.store.base import StoreBase
from worker.store.keys import Keys
from worker.store.records import now_ms

ORPHAN_MS = 30_000
"""A push claimed this long ago and still not acked belongs to an applier that died: claimed again."""


@dataclass(frozen=True, slots=True)
class StoredPush:
    """One push as the receiver stored it. ``received_ms`` is ms since the epoch; ``remote`` the sender's
    address."""

    entry_id: str
    vendor: str
    kind: PushKind
    body: str
    content_type: str
    received_ms: int
    remote: str

    @classmethod
    def decode(cls, entry_id: str, kind: PushKind, data: dict[str, str]) -> StoredPush:
        return cls(
            entry_id,
            data.get("vendor", ""),
            kind,
            data.get("body", ""),
            data.get("content_type", ""),
            int(data.get("at", "0") or 0),
            data.get("remote", ""),
        )


def push_fields(vendor: str, body: str, content_type: str, remote: str, at_ms: int) -> dict[str, str]:
    """A stored push's stream fields."""
    return {"vendor": vendor, "body": body, "content_type": content_type, "at": str(at_ms), "remote": remote}


class PushInbox:
    """The receiver's side: one ``XADD`` per push on an asyncio client (the HTTP app's event loop)."""

    def __init__(self, client: redis.asyncio.Redis, keep_s: int) -> None:
        self.client = client
        self.keep_ms = keep_s * 1000

    async def add(
        self, vendor: str, kind: PushKind, body: str, content_type: str, remote: str, at_ms: int = 0
    ) -> str:
        """Store one push durably (one round trip), received now or at ``at_ms`` (a spooled one);
        returns its entry id."""
        at = at_ms or now_ms()
        fields = push_fields(vendor, body, content_type, remote, at)
        entry = await self.client.xadd(
            Keys.push_inbox(kind), dict(fields.items()), minid=at - self.keep_ms, approximate=True
        )
        return entry.decode() if isinstance(entry, bytes) else str(entry)

    async def ping(self) -> bool:
        return bool(await self.client.ping())


class InboxMixin(StoreBase):
    """The applier's side of the push inbox (synchronous, in the worker)."""

    def store_push(self, vendor: str, kind: PushKind, body: str, content_type: str, remote: str = "") -> str:
        """Store one push as the receiver does (tests, tools); returns its entry id."""
        at = now_ms()
        fields = push_fields(vendor, body, content_type, remote, at)
        minid = at - self.settings.push.keep_s * 1000
        entry = self.r.xadd(Keys.push_inbox(kind), dict(fields.items()), minid=minid, approximate=True)
        return cast("str", entry)

    def claim_pushes(
        self, kind: PushKind, consumer: str, count: int, orphan_ms: int = ORPHAN_MS
    ) -> list[StoredPush]:
        """Up to ``count`` stored pushes for ``consumer``: first those another applier claimed more than
        ``orphan_ms`` ago and never acked (it died), then new ones. Entries trimmed away meanwhile are
        acked and skipped."""
        key = Keys.push_inbox(kind)
        self._ensure_group(key)
        claimed = self.r.xautoclaim(key, Keys.push_group, consumer, orphan_ms, "0-0", count)
        # An entry trimmed away while claimed comes back as (None, None) from Redis 6.2 (7.0 drops it).
        rows = [(entry_id, data) for entry_id, data in claimed[1] if entry_id is not None]
        if len(rows) < count:
            read = self.r.xreadgroup(Keys.push_group, consumer, {key: ">"}, count=count - len(rows))
            for _, entries in cast("list[Any]", read or []):
                rows += entries
        gone = [entry_id for entry_id, data in rows if not data]
        if gone:
            self.pushes_done(kind, gone)
        return [StoredPush.decode(entry_id, kind, data) for entry_id, data in rows if data]

    def pushes_done(self, kind: PushKind, entry_ids: Sequence[str]) -> None:
        """Ack and delete applied pushes (one round trip)."""
        if not entry_ids:
            return
        key = Keys.push_inbox(kind)
        with self.r.pipeline(transaction=False) as pipe:
            pipe.xack(key, Keys.push_group, *entry_ids)
            pipe.xdel(key, *entry_ids)
            pipe.execute()

    def dead_letter(self, push: StoredPush, error: str) -> None:
        """Move ``push`` to the dead-letter stream with ``error``, kept ``push.keep_s``; one transaction."""
        at = now_ms()
        fields = {
            **push_fields(push.vendor, push.body, push.content_type, push.remote, push.received_ms),
            "kind": push.kind.value,
            "error": error[:500],
            "failed_at": str(at),
            "entry": push.entry_id,
        }
        key = Keys.push_inbox(push.kind)
        with self.r.pipeline(transaction=True) as pipe:
            pipe.xadd(Keys.push_dead, dict(fields.items()), minid=at - self.settings.push.keep_s * 1000)
            pipe.xack(key, Keys.push_group, push.entry_id)
            pipe.xdel(key, push.entry_id)
            pipe.execute()

    def dead_pushes(self, count: int = 20) -> list[dict[str, str]]:
        """The newest bodies that failed, newest first, each with its ``id``, ``error`` and fields."""
        rows = cast("list[tuple[str, dict[str, str]]]", self.r.xrevrange(Keys.push_dead, count=count))
        return [{"id": entry_id, **data} for entry_id, data in rows]

    def push_backlog(self, kind: PushKind) -> int:
        """How many pushes of ``kind`` are stored and not applied yet."""
        return int(self.r.xlen(Keys.push_inbox(kind)))

    def _ensure_group(self, key: str) -> None:
        try:
            self.r.xgroup_create(key, Keys.push_group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
