"""Reliability check R3 (issue 9): 30% of vendor calls fail, with transient codes, time-outs and
connection resets, while a real worker sends to N recipients.

Two runs, because the vendor's side of a time-out decides what "right" is (README "Ambiguous outcomes"):

- the vendor took every call whose answer was lost (``FaultPlan.after_accept``): every recipient is
  delivered exactly once (codes are retried; a lost answer is settled by the receipt, never resent);
- the vendor dropped the call before taking it: nothing is resent either (the worker cannot tell the
  two apart), so those recipients end ``failed`` with ``NO_RECEIPT`` after the settle window, and every
  phone the vendor got is delivered, once.

In both, each chunk's calls are bounded by ``retry.max_attempts`` and every retry waits at least the
lower end of its backoff (``tasks.dispatch.backoff``: half the ceiling ``min(cap, base * 2**attempt)``).

N is ``SMSD_R3_RECIPIENTS`` (default 3,000, for CI); ``reliability/r3_faults.py`` runs these tests with
20,000 and prints their figures.
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable

import pytest
import redis

from config.settings import get_settings
from providers.simulator.core import FaultPlan
from providers.simulator.server import SimulatorServer
from tests.conftest import WorkerProcess
from tests.e2e.conftest import drive_to_final
from tests.e2e.test_faults import ORDER, assert_delivered_once, counting, phones
from worker.store import Keys, State, Store

pytestmark = pytest.mark.e2e
RECIPIENTS = int(os.environ.get("SMSD_R3_RECIPIENTS", "3000"))
# 50 phones a call: 60 calls at the CI size (a sample of faults worth the name), 400 at 20,000.
WORKER = {"SMSD_INFOCLOUD__BATCH_SIZE": "50", "SMSD_INFOCLOUD__READ_TIMEOUT_S": "0.5"}
HANG_S = 0.8  # a time-out: the vendor holds the answer longer than the worker's read time-out
TRANSIENT = ("-1", "60009")  # Infocloud's "busy" and "resource locked": retried


def faults(after_accept: bool) -> FaultPlan:
    """30% of send calls fail: 10% a transient code, 10% time out, 10% have their connection reset."""
    return FaultPlan(
        codes=TRANSIENT,
        code_rate=0.1,
        timeout_rate=0.1,
        reset_rate=0.1,
        hang_s=HANG_S,
        after_accept=after_accept,
    )


def attempts_and_waits(r: redis.Redis, message_id: str) -> tuple[Counter[int], list[tuple[int, float]]]:
    """From the events stream: vendor calls per chunk (the ``call`` outcomes of the same phones, in order)
    as a histogram, and for every retried failure (attempt k, counted from 0) the seconds from its outcome
    to the outcome of the chunk's next call (which began after the backoff)."""
    by_phones: dict[str, list[tuple[str, float]]] = defaultdict(list)
    entries: list[tuple[str, dict[str, str]]] = r.xrange(Keys.events)  # type: ignore[assignment]
    for _, event in entries:
        if event.get("message_id") == message_id and event.get("why") == "call":
            by_phones[event["phones"]].append((event["state"], int(event["at"]) / 1000))
    histogram: Counter[int] = Counter(len(chunk) for chunk in by_phones.values())
    waits = [
        (k, chunk[k + 1][1] - at)
        for chunk in by_phones.values()
        for k, (state, at) in enumerate(chunk[:-1])
        if state == State.RETRY
    ]
    return histogram, waits


def check_attempts_and_backoff(r: redis.Redis, message_id: str) -> dict[str, object]:
    """Assert the retry bounds on the chunks' recorded calls; return the figures."""
    retry = get_settings().retry
    histogram, waits = attempts_and_waits(r, message_id)
    assert max(histogram) <= retry.max_attempts, f"calls per chunk: {dict(histogram)}"
    assert waits, "no transient code was retried: the faults did not happen"
    # Event times are whole milliseconds: 2 ms of slack.
    early = [
        (k, wait)
        for k, wait in waits
        if wait < min(retry.backoff_cap_s, retry.backoff_base_s * 2**k) / 2 - 0.002
    ]
    assert not early, f"retries sooner than their backoff (attempt, s): {early[:5]}"
    return {
        "calls per chunk": dict(sorted(histogram.items())),
        "retries": len(waits),
        "min wait s": round(min(w for _, w in waits), 3),
        "max wait s": round(max(w for _, w in waits), 3),
    }


def run_with_faults(
    start_worker: Callable[..., WorkerProcess],
    sim: SimulatorServer,
    store: Store,
    after_accept: bool,
    prefix: str,
) -> tuple[str, list[str], dict[str, object]]:
    from tasks import send_sms

    worker = start_worker("r3", **WORKER)
    sim.state.rng.seed(3)  # the same faults on the same calls, run after run
    sim.state.set_faults("infocloud", faults(after_accept))
    sent = phones(prefix, RECIPIENTS)
    started = time.monotonic()
    message_id = send_sms.delay(sent, **ORDER).id
    counts = drive_to_final(counting(store, message_id, worker), RECIPIENTS, timeout_s=90 + RECIPIENTS / 200)
    took = time.monotonic() - started
    counters = sim.state.counters("infocloud")
    answered = Counter(counters.answered_codes)
    figures: dict[str, object] = {
        "recipients": RECIPIENTS,
        "s": round(took, 1),
        "vendor requests": counters.requests,
        "transient codes": sum(answered[c] for c in TRANSIENT),
        "dropped (time-out or reset)": counters.dropped,
        "accepted": sum(counters.received.values()),
        "distinct phones": len(counters.received),
        "max per phone": max(counters.received.values(), default=0),
        "final states": dict(counts),
    }
    return message_id, sent, figures


def report(title: str, figures: dict[str, object]) -> None:
    print(f"\nR3 {title}: " + "; ".join(f"{key} {value}" for key, value in figures.items()))


def test_r3_every_recipient_is_delivered_exactly_once_when_lost_answers_were_taken(  # type: ignore[no-untyped-def]
    start_worker, sim, r, fault_env, monkeypatch
) -> None:
    # Every receipt comes: no settle window may fail a recipient whose receipt is still to be polled.
    monkeypatch.setenv("SMSD_INFOCLOUD__SETTLE_S", "600")
    get_settings.cache_clear()
    store = Store(r, get_settings())
    message_id, sent, figures = run_with_faults(start_worker, sim, store, True, "160")
    figures.update(check_attempts_and_backoff(r, message_id))
    report("answers lost after the vendor took the call", figures)
    assert figures["dropped (time-out or reset)"], "no time-out or reset happened"
    assert figures["accepted"] == figures["distinct phones"] == RECIPIENTS
    assert figures["max per phone"] == 1
    assert figures["final states"] == {State.DELIVERED: RECIPIENTS}
    assert_delivered_once(store, message_id, sent, sim)


def test_r3_calls_dropped_before_the_vendor_took_them_are_never_resent(  # type: ignore[no-untyped-def]
    start_worker, sim, r, settings, fault_env
) -> None:
    store = Store(r, get_settings())
    message_id, sent, figures = run_with_faults(start_worker, sim, store, False, "161")
    figures.update(check_attempts_and_backoff(r, message_id))
    report("calls dropped before the vendor took them", figures)
    dropped = int(str(figures["dropped (time-out or reset)"]))
    assert dropped, "no time-out or reset happened"
    assert figures["max per phone"] == 1
    records = store.records(message_id)
    unsent = [p for p in sent if p not in sim.state.counters("infocloud").received]
    assert {(records[p].state, records[p].code) for p in unsent} == {(State.FAILED, "NO_RECEIPT")}
    # Only the phones of dropped calls go unsent: a chunk's call is dropped at most once (never resent).
    assert len(unsent) <= dropped * int(WORKER["SMSD_INFOCLOUD__BATCH_SIZE"])
    assert_delivered_once(store, message_id, sent, sim, unsent_at_most=len(unsent))
