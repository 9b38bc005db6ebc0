"""Recipient state in Redis: one hash per message (phone -> record), vendor-id indexes, events, idempotency.

A record is ``state, updated (ms), provider, vendor id, code, text`` joined by the unit separator
(\\x1f): one short string per recipient, written for a whole chunk in one pipelined command. Every key
is built by :class:`Keys` and expires after ``retention_s``. State changes are appended to one stream
(``smsd:events``) as one entry per group of recipients that changed together.
"""

from __future__ import annotations

import enum
import functools
import json
import os
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import redis
from redis.typing import EncodableT, FieldT

from config.settings import Settings, get_settings
from providers.base import DeliveryState, Receipt

SEP = "\x1f"
LUA = Path(__file__).parent / "lua"


class State(enum.StrEnum):
    """A recipient's state. "Accepted" is send_sms's answer (validated and planned); from then on a
    recipient is recorded ``queued``, or dispatched at once for a one-chunk send."""

    QUEUED = "queued"
    RETRY = "retry"  # queued again after a failed attempt; its limits are already charged
    SENDING = "sending"  # claimed for a vendor call in progress
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    FAILED = "failed"
    REJECTED = "rejected"
    RATE_LIMITED = "rate_limited"
    OPTED_OUT = "opted_out"


FINAL = frozenset({State.DELIVERED, State.FAILED, State.REJECTED, State.RATE_LIMITED, State.OPTED_OUT})


@dataclass(frozen=True, slots=True)
class Record:
    state: str
    updated_ms: int
    provider: str = ""
    vendor_id: str = ""
    code: str = ""
    text: str = ""
    fee: int | None = None  # billed segments, where the vendor says (Tencent)

    def pack(self) -> str:
        fields = (self.provider, self.vendor_id, self.code, self.text)
        return pack(self.state, self.updated_ms, *fields, fee=self.fee)

    @classmethod
    def unpack(cls, raw: str) -> Record:
        parts = raw.split(SEP)
        parts += [""] * (7 - len(parts))
        fee = int(parts[6]) if parts[6] else None
        return cls(parts[0], int(parts[1] or 0), parts[2], parts[3], parts[4], parts[5], fee)


def pack(
    state: str,
    updated_ms: int,
    provider: str = "",
    vendor_id: str = "",
    code: str = "",
    text: str = "",
    fee: int | None = None,
) -> str:
    """One record. Trailing empty fields are left out: most records carry no text and no fee."""
    fields = [state, str(updated_ms), provider, vendor_id, code, text.replace(SEP, " ")[:200]]
    if fee is not None:
        fields.append(str(fee))
    return SEP.join(fields)


def _fields(mapping: Mapping[str, str | int]) -> dict[FieldT, EncodableT]:
    """``mapping`` as redis-py's field mapping type (for HSET and XADD, whose key type is invariant)."""
    return dict(mapping.items())


def _receipt_fields(receipt: Receipt) -> dict[str, str]:
    return {
        "phone": receipt.phone,
        "state": receipt.state.value,
        "code": receipt.code,
        "batch_id": receipt.batch_id,
        "vendor_id": receipt.vendor_id,
        "bid": receipt.bid,
        "at": receipt.at,
    }


def now_ms() -> int:
    return int(time.time() * 1000)


class Keys:
    """Every Redis key smsdispatch uses, in one place."""

    prefix = "smsd"

    @classmethod
    def recipients(cls, message_id: str) -> str:
        return f"{cls.prefix}:msg:{message_id}:r"

    @classmethod
    def message(cls, message_id: str) -> str:
        return f"{cls.prefix}:msg:{message_id}"

    @classmethod
    def vendor_batch(cls, provider: str, batch_id: str) -> str:
        return f"{cls.prefix}:vid:{provider}:{batch_id}"

    @classmethod
    def idempotency(cls, key: str) -> str:
        return f"{cls.prefix}:idem:{key}"

    @classmethod
    def limit(cls, kind: str, window_s: int, bucket: int) -> str:
        return f"{cls.prefix}:lim:{kind}:{window_s}:{bucket}"

    @classmethod
    def budget(cls, provider: str) -> str:
        return f"{cls.prefix}:budget:{provider}"

    @classmethod
    def window(cls, name: str) -> str:
        return f"{cls.prefix}:window:{name}"

    @classmethod
    def health(cls, provider: str) -> str:
        return f"{cls.prefix}:health:{provider}"

    optout = "smsd:optout"
    events = "smsd:events"
    ambiguous = "smsd:ambiguous"
    deferred = "smsd:deferred"

    @classmethod
    def unmatched(cls, provider: str) -> str:
        return f"{cls.prefix}:unmatched:{provider}"


_clients: dict[tuple[int, str], redis.Redis] = {}


def get_redis(settings: Settings | None = None) -> redis.Redis:
    """The process's Redis client (one pool per process, made after fork)."""
    settings = settings or get_settings()
    url = settings.effective_redis_url
    key = (os.getpid(), url)
    client = _clients.get(key)
    if client is None:
        client = redis.Redis.from_url(url, decode_responses=True, health_check_interval=30)
        _clients[key] = client
    return client


@functools.cache
def _script_source(name: str) -> str:
    return (LUA / f"{name}.lua").read_text()


def script(client: redis.Redis, name: str) -> Any:
    """A registered Lua script from ``worker/lua/<name>.lua`` (EVALSHA, loaded once per client)."""
    cache: dict[str, Any] = client.__dict__.setdefault("_smsd_scripts", {})
    if name not in cache:
        cache[name] = client.register_script(_script_source(name))
    return cache[name]


class Store:
    """State operations for one Redis client. Every method is one round trip."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.r = client
        self.settings = settings
        self.ttl = settings.retention_s

    # -- messages -----------------------------------------------------------------------------------

    def create_message(self, message_id: str, meta: Mapping[str, str | int]) -> None:
        key = Keys.message(message_id)
        with self.r.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping=_fields(meta))
            pipe.expire(key, self.ttl)
            pipe.execute()

    def message(self, message_id: str) -> dict[str, str]:
        return cast("dict[str, str]", self.r.hgetall(Keys.message(message_id)))

    def mark_message(self, message_id: str, **fields: str | int) -> None:
        self.r.hset(Keys.message(message_id), mapping=_fields(fields))

    def init_queued(self, message_id: str, provider: str, phones: Sequence[str]) -> int:
        """Record ``phones`` as queued unless they already have a state. Returns how many were new."""
        record = pack(State.QUEUED, now_ms(), provider)
        added: int = script(self.r, "init_queued")(
            keys=[Keys.recipients(message_id)], args=[record, self.ttl, *phones]
        )
        return added

    def write(
        self,
        message_id: str,
        records: Mapping[str, str],
        events: Iterable[Mapping[str, str]] = (),
        index: Mapping[str, str] | None = None,
        *,
        over_sending: bool = False,
        unconfirmed: Mapping[str, int] | None = None,
    ) -> None:
        """Write packed records for one message, its events and vendor-id index entries, in one trip.

        With ``over_sending`` a record replaces only a "sending" state (see ``lua/record_sent.lua``).
        ``unconfirmed`` adds entries to ``Keys.ambiguous``, scored by the ms at which the settle sweep
        fails them if no receipt came.
        """
        with self.r.pipeline(transaction=False) as pipe:
            key = Keys.recipients(message_id)
            if records and over_sending:
                args = [self.ttl, *(item for pair in records.items() for item in pair)]
                script(self.r, "record_sent")(keys=[key], args=args, client=pipe)
            elif records:
                pipe.hset(key, mapping=_fields(records))
                pipe.expire(key, self.ttl)
            for event in events:
                pipe.xadd(Keys.events, _fields(event), maxlen=self.settings.events_maxlen, approximate=True)
            for key, value in (index or {}).items():
                pipe.set(key, value, ex=self.ttl)
            if unconfirmed:
                pipe.zadd(Keys.ambiguous, dict(unconfirmed))
            pipe.execute()

    def records(self, message_id: str, phones: Sequence[str] | None = None) -> dict[str, Record]:
        key = Keys.recipients(message_id)
        if phones is None:
            raw = cast("dict[str, str]", self.r.hgetall(key))
            return {phone: Record.unpack(value) for phone, value in raw.items()}
        values = cast("list[str | None]", self.r.hmget(key, list(phones)))
        return {phone: Record.unpack(v) for phone, v in zip(phones, values, strict=True) if v is not None}

    def counts(self, message_id: str) -> Counter[str]:
        """Recipients per state. Reads the whole hash: for ``status`` and tests, not the hot path."""
        raw = cast("dict[str, str]", self.r.hgetall(Keys.recipients(message_id)))
        return Counter(value.split(SEP, 1)[0] for value in raw.values())

    def messages_for_batches(self, provider: str, batch_ids: Sequence[str]) -> list[str | None]:
        """The message of each vendor batch or per-phone id (None where unknown), in one round trip."""
        keys = [Keys.vendor_batch(provider, batch_id) for batch_id in batch_ids]
        return cast("list[str | None]", self.r.mget(keys))

    # -- receipts that arrived before their index --------------------------------------------------

    def park_receipts(self, provider: str, items: Sequence[tuple[Receipt, int]]) -> None:
        """Keep receipts whose message is not found yet, with when they were first seen (ms)."""
        if not items:
            return
        key = Keys.unmatched(provider)
        rows = [json.dumps({**_receipt_fields(receipt), "seen": seen}) for receipt, seen in items]
        with self.r.pipeline(transaction=False) as pipe:
            pipe.rpush(key, *rows)
            pipe.expire(key, self.settings.unmatched_receipt_keep_s)
            pipe.execute()

    def take_parked_receipts(self, provider: str) -> list[tuple[Receipt, int]]:
        """Take every parked receipt of ``provider`` (atomically: two pollers never both get one)."""
        key = Keys.unmatched(provider)
        with self.r.pipeline(transaction=True) as pipe:
            pipe.lrange(key, 0, -1)
            pipe.delete(key)
            rows = cast("list[str]", pipe.execute()[0])
        out = []
        for row in rows:
            data = json.loads(row)
            seen = int(data.pop("seen"))
            out.append((Receipt(provider=provider, state=DeliveryState(data.pop("state")), **data), seen))
        return out

    # -- idempotency --------------------------------------------------------------------------------

    def claim_idempotency(self, key: str, message_id: str) -> str | None:
        """Reserve ``key`` for ``message_id``. Returns None if reserved now, else what is stored."""
        full = Keys.idempotency(key)
        ttl = self.settings.idempotency_ttl_s
        if self.r.set(full, json.dumps({"message_id": message_id}), nx=True, ex=ttl):
            return None
        return cast("str | None", self.r.get(full))

    def store_idempotent_result(self, key: str, result: Mapping[str, Any]) -> None:
        self.r.set(Keys.idempotency(key), json.dumps(result), ex=self.settings.idempotency_ttl_s, xx=True)

    # -- provider health ----------------------------------------------------------------------------

    def mark_unhealthy(self, provider: str, code: str, reason: str) -> None:
        """Bench ``provider`` for ``unhealthy_s``: routing skips it meanwhile."""
        key = Keys.health(provider)
        for_s = self.settings.unhealthy_s
        with self.r.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping={"code": code, "reason": reason[:200], "at": now_ms()})
            pipe.expire(key, for_s)
            pipe.execute()

    def unhealthy(self, providers: Sequence[str]) -> dict[str, dict[str, str]]:
        with self.r.pipeline(transaction=False) as pipe:
            for name in providers:
                pipe.hgetall(Keys.health(name))
            found = pipe.execute()
        return {name: info for name, info in zip(providers, found, strict=True) if info}
