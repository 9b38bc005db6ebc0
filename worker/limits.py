"""Limits that hold across every worker and host: per-phone limits (claimed per chunk), a vendor's
throughput budget, and a strict cadence for polled endpoints. Each is one Lua script, one round trip.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from config.limits import LimitRule
from worker.store import SEP, Keys, script

BEIJING_OFFSET_S = 8 * 3600  # windows of a day or longer reset at Beijing midnight


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of claiming a chunk, phone by phone (see ``lua/claim.lua`` for the codes)."""

    send: tuple[str, ...]
    opted_out: tuple[str, ...]
    limited: tuple[tuple[str, LimitRule], ...]
    in_flight: tuple[str, ...]
    orphaned: tuple[str, ...]
    done: tuple[tuple[str, str], ...]


def window_bucket(rule: LimitRule, now_s: float) -> int:
    offset = BEIJING_OFFSET_S if rule.window_s >= 86400 else 0
    return int((now_s + offset) // rule.window_s)


def claim(
    client: redis.Redis,
    message_id: str,
    kind: str,
    provider: str,
    phones: Sequence[str],
    rules: Sequence[LimitRule],
    stale_ms: int,
) -> Claim:
    """Claim ``phones`` of one chunk for a vendor call: skip what is done, refuse what is over a limit."""
    now = time.time()
    limit_keys = [Keys.limit(kind, rule.window_s, window_bucket(rule, now)) for rule in rules]
    args: list[str | int] = [int(now * 1000), stale_ms, len(rules)]
    args += [rule.count for rule in rules]
    args += [rule.window_s + 60 for rule in rules]
    args += [str(rule) for rule in rules]
    args += [f"{provider}{SEP}{SEP}{SEP}", provider, *phones]
    codes: list[str] = script(client, "claim")(
        keys=[Keys.recipients(message_id), Keys.optout, *limit_keys], args=args
    )
    return _sort(phones, codes, rules)


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


def acquire_budget(client: redis.Redis, provider: str, per_second: float, timeout_s: float = 30.0) -> float:
    """Wait for one call's worth of ``provider``'s shared budget. Returns the seconds waited."""
    burst = max(1, int(per_second // 10))
    start = time.monotonic()
    gcra = script(client, "gcra")
    while True:
        wait_ms = int(gcra(keys=[Keys.budget(provider)], args=[per_second, burst]))
        if wait_ms == 0:
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"{provider}: no throughput budget within {timeout_s:.0f} s")
        time.sleep(wait_ms / 1000)


def try_window(client: redis.Redis, name: str, limit: int, window_s: float) -> float:
    """Take one slot of a strict sliding window. Returns 0 if taken, else seconds until one frees up."""
    args = [limit, int(window_s * 1000), uuid.uuid4().hex]
    wait_ms = int(script(client, "window")(keys=[Keys.window(name)], args=args))
    return wait_ms / 1000
