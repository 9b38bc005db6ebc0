"""Rates that hold across every worker and host: a vendor's throughput budget (GCRA) and a strict
sliding window for polled endpoints. Each is one Lua script, one round trip, on Redis's clock."""

from __future__ import annotations

import uuid

import redis

from worker.store.client import script
from worker.store.keys import Keys


def budget_args(per_second: float) -> list[float]:
    """The GCRA script's arguments: the rate, and a burst of a tenth of a second's worth."""
    return [per_second, max(1, int(per_second // 10))]


def take_budget(client: redis.Redis, provider: str, per_second: float) -> float:
    """Take one call's worth of ``provider``'s shared budget. Returns 0 if taken, else the seconds to
    wait before asking again (nothing is taken then)."""
    wait_ms = int(script(client, "gcra")(keys=[Keys.budget(provider)], args=budget_args(per_second)))
    return wait_ms / 1000


def try_window(client: redis.Redis, name: str, limit: int, window_s: float) -> float:
    """Take one slot of a strict sliding window. Returns 0 if taken, else seconds until one frees up."""
    args = [limit, int(window_s * 1000), uuid.uuid4().hex]
    wait_ms = int(script(client, "window")(keys=[Keys.window(name)], args=args))
    return wait_ms / 1000
