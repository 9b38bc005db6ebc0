"""The vendor budget's promise (``lua/gcra.lua``, ``Store.admit``): however the takes come, no sliding
window of ``1 s + margin`` holds more than ``rate`` slots, a backlog gets every slot (none lost to
polling), and a slot further ahead than the hold is not taken. The script is driven with an injected
clock (its ARGV[4]), so each property is checked exactly; ``admit`` is checked on Redis's own clock."""

from __future__ import annotations

import threading
import time
import uuid

import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from config.settings import Settings
from worker.store import Store
from worker.store.client import script
from worker.store.keys import Keys
from worker.store.limits import ARRIVAL_MARGIN_MS, budget_args, slot

FIXTURES = [HealthCheck.function_scoped_fixture]  # each example uses its own key of the session's Redis


def take(
    r: redis.Redis, key: str, rate: float, margin_ms: float, hold_s: float, now_us: int
) -> tuple[bool, int]:
    """One take at ``now_us``: (taken, us until the slot)."""
    answer = slot(script(r, "gcra")(keys=[key], args=[*budget_args(rate, margin_ms, hold_s), now_us]))
    return answer.taken, round(answer.wait_s * 1e6)


def busiest(slots: list[int], window_us: int) -> int:
    """The most slots in any half-open window ``[t, t + window_us)``."""
    slots = sorted(slots)
    most, j = 0, 0
    for i, start in enumerate(slots):
        while j < len(slots) and slots[j] < start + window_us:
            j += 1
        most = max(most, j - i)
    return most


@examples(max_examples=60, deadline=None, suppress_health_check=FIXTURES)
@given(
    rate=st.sampled_from([1, 3, 7, 50, 300, 1000]),
    margin_ms=st.sampled_from([0.0, 30.0]),
    hold_s=st.sampled_from([0.0, 0.05, 1.0]),
    gaps_us=st.lists(st.integers(0, 400_000), min_size=1, max_size=150),
)
def test_no_window_holds_more_than_the_rate_however_the_takes_come(
    r: redis.Redis, rate: int, margin_ms: float, hold_s: float, gaps_us: list[int]
) -> None:
    key, now, slots = f"test:budget:{uuid.uuid4().hex}", 1_700_000_000_000_000, []
    for gap in gaps_us:
        now += gap
        taken, wait_us = take(r, key, rate, margin_ms, hold_s, now)
        assert wait_us >= 0
        if taken:
            assert wait_us <= hold_s * 1e6
            slots.append(now + wait_us)
        else:
            assert wait_us > hold_s * 1e6  # refused only when the next slot is further than the hold
    window_us = round((1000 + margin_ms) * 1000)
    assert busiest(slots, window_us) <= rate
    assert busiest(slots, 1_000_000) <= rate


@examples(max_examples=20, deadline=None, suppress_health_check=FIXTURES)
@given(rate=st.sampled_from([5, 20, 50]), takers=st.integers(2, 4))
def test_a_backlog_gets_every_slot_at_the_exact_spacing(r: redis.Redis, rate: int, takers: int) -> None:
    # Takers that each take again the moment their slot comes (a backlog; few enough that the next slot
    # is always within the hold): no slot is lost to polling.
    key, start, margin_ms = f"test:budget:{uuid.uuid4().hex}", 1_700_000_000_000_000, 30.0
    interval = -(-round((1000 + margin_ms) * 1000) // rate)  # us, rounded up as the script does
    ready = [start] * takers  # when each taker asks next
    slots = []
    for _ in range(3 * rate):
        i = min(range(takers), key=ready.__getitem__)
        taken, wait_us = take(r, key, rate, margin_ms, 1.0, ready[i])
        assert taken
        slots.append(ready[i] + wait_us)
        ready[i] = slots[-1]
    assert slots == [start + k * interval for k in range(3 * rate)]


def test_admit_sleeps_until_its_slot_and_spaces_every_caller(r: redis.Redis, settings: Settings) -> None:
    # 20 takes at 40 calls a second from four threads (four workers): each call goes no earlier than its
    # slot, the slots 1 s + margin over 40 apart, and none waits for nothing.
    store, rate, calls = Store(r, settings), 40, 20
    interval_s = (1 + ARRIVAL_MARGIN_MS / 1000) / rate
    gone: list[float] = []
    started = time.time()

    def worker() -> None:
        for _ in range(calls // 4):
            gate, wait = store.admit("infocloud", rate)
            assert gate.allowed and wait == 0
            gone.append(time.time())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    gone.sort()
    for k, at in enumerate(gone):
        assert at >= started + k * interval_s - 0.002  # Redis's clock and ours: the same machine's
    assert gone[-1] - started < calls * interval_s + 1.0
    assert r.pttl(Keys.budget("infocloud")) > 0


def test_admit_gives_back_a_slot_further_than_the_hold(r: redis.Redis, settings: Settings) -> None:
    store = Store(r, settings)
    assert store.admit("infocloud", 0.5)[1] == 0  # the next slot is 2 s + margin away
    started = time.monotonic()
    gate, wait = store.admit("infocloud", 0.5)
    assert time.monotonic() - started < 0.5 and gate.allowed
    assert 1.9 < wait <= 2.0 + 2 * ARRIVAL_MARGIN_MS / 1000
    again = store.admit("infocloud", 0.5)[1]
    assert 0 < again <= wait  # a refusal took nothing: the wait did not grow
