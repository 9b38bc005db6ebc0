"""Rates that hold across every worker and host: a vendor's throughput budget and a strict sliding window
for polled endpoints. Each is one Lua script, one round trip, on Redis's clock.

The budget (``lua/gcra.lua``) gives each call its own slot, spaced evenly with no burst, so that no sliding
second holds more calls than the vendor's ``requests_per_second``, and reserves slots up to ``hold_s``
ahead, so that a caller under a backlog sleeps until its slot instead of polling for it (polling loses
the time between a slot and the next ask on every call). Calls reach the vendor some milliseconds after
their slot (the claim and the request come between): the dispatcher's take (``Store.admit``) spaces
slots over ``1 s + ARRIVAL_MARGIN_MS`` so that calls whose delays from slot to arrival differ by up to
that much still never put one call too many in a sliding second at the vendor.
"""

from __future__ import annotations

import time
import uuid
from typing import NamedTuple

import redis

from worker.store.client import script
from worker.store.keys import Keys

# How much the delays from slot to arrival may differ without ever putting rate + 1 calls in one of the
# vendor's seconds; it costs margin / (1 s + margin) of the budget (4.3% at 45 ms: 47.8 of 50 calls/s).
# Measured by benchmarks/budget.py (BENCHMARKS.md, B4) on 2 shared cores at a load of 5 to 7, warm workers:
# slot to arrival (sleep, claim, request, the simulator's own queue) spread over 38-39 ms.
ARRIVAL_MARGIN_MS = 45.0
HOLD_S = 1.0  # the longest a dispatcher sleeps for a reserved slot; a later budget gives the chunk back


class Slot(NamedTuple):
    """One take of the budget: ``taken`` (a slot reserved ``wait_s`` from now: go then), or not (the next
    slot is ``wait_s`` away, further than the take would hold: nothing taken)."""

    taken: bool
    wait_s: float


def budget_args(per_second: float, margin_ms: float = 0.0, hold_s: float = 0.0) -> list[float]:
    """The budget script's arguments: ``per_second`` calls per ``1 s + margin_ms``, a slot reserved when
    at most ``hold_s`` ahead."""
    return [per_second, 1000 + margin_ms, hold_s * 1000]


def slot(answer: list[int]) -> Slot:
    """The budget script's answer as a :class:`Slot`."""
    taken, wait_us = answer
    return Slot(bool(taken), int(wait_us) / 1e6)


def take_budget(client: redis.Redis, provider: str, per_second: float) -> float:
    """Take one call's worth of ``provider``'s shared budget now, exactly ``per_second`` (no margin, no
    reservation). Returns 0 if taken, else the seconds to wait before asking again (nothing is taken)."""
    answer = slot(script(client, "gcra")(keys=[Keys.budget(provider)], args=budget_args(per_second)))
    return 0.0 if answer.taken else answer.wait_s


def go_at(taken: Slot) -> float:
    """Sleep until a reserved slot comes. Returns 0 (go now), or the wait of a slot not taken."""
    if not taken.taken:
        return taken.wait_s
    if taken.wait_s > 0:
        time.sleep(taken.wait_s)
    return 0.0


def try_window(client: redis.Redis, name: str, limit: int, window_s: float) -> float:
    """Take one slot of a strict sliding window. Returns 0 if taken, else seconds until one frees up."""
    args = [limit, int(window_s * 1000), uuid.uuid4().hex]
    wait_ms = int(script(client, "window")(keys=[Keys.window(name)], args=args))
    return wait_ms / 1000
