"""Scheduled work on ``sms.poll``: receipts at each vendor's allowed cadence, long waits, and the sweeps
that find what fell through. Every task here is safe to run twice at once (two beats, a manual run).

- ``poll_receipts``: pages stored durably before they are applied (the vendor hands each receipt out once).
- ``release_deferred``: retries whose wait was too long for a Celery countdown.
- ``sweep_leases``: chunks whose task was lost (Redis restarted, a plan cut short) are queued again.
- ``drain_receipts``: pages whose poller died before applying them are applied.
- ``settle_overdue``: submitted recipients with no receipt after the vendor's settle window are failed
  with ``NO_RECEIPT``.
Each sweep logs what it did and publishes it on the events stream (``type: sweep``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import structlog
from celery import Task

from config.settings import PROVIDERS, Settings, get_settings
from providers.errors import ProviderError, RateLimitedError, UnsupportedFeature
from worker.app import INFRA_ERRORS, RETRY_PRIORITY, app
from worker.registry import get_provider
from worker.store import State, Store, get_redis, now_ms
from worker.store.limits import try_window

log = structlog.get_logger(__name__)
MAX_PAGES = 50  # per run; beat calls again
# A vendor counts its query window on its own clock: keep ours a little wider than the rule, so that
# clock skew and the time a query takes never let the vendor see one query too many.
CADENCE_MARGIN = 1.05
CADENCE_SLACK_S = 1.0
ORPHAN_PAGE_S = 60  # a stored page not applied after this long belongs to a poller that died
RETRIED: dict[str, Any] = {"autoretry_for": INFRA_ERRORS, "retry_backoff": 2, "max_retries": 5}


def _store(settings: Settings | None = None) -> Store:
    settings = settings or get_settings()
    return Store(get_redis(settings), settings)


@app.task(bind=True, name="tasks.poll.poll_receipts", **RETRIED)
def poll_receipts(self: Task, provider: str = "infocloud") -> int:
    """Pull receipts while full pages come back, within the vendor's query cadence (held in Redis, so
    every worker and beat together keep it). Returns how many recipients moved."""
    settings = get_settings()
    section = settings.vendor(provider)
    if not section.configured():
        return 0
    store = _store(settings)
    adapter = get_provider(provider, settings)
    return pull_pages(
        store,
        provider,
        "receipts",
        f"{provider}:query",
        adapter.poll_receipts,
        lambda page: apply_page(store, provider, page),
        lambda page: len(page) >= section.receipt_page_size,
    )


def pull_pages(
    store: Store,
    provider: str,
    what: str,
    window: str,
    fetch: Callable[[], Sequence[Any]],
    apply: Callable[[Sequence[Any]], int],
    more: Callable[[Sequence[Any]], bool],
) -> int:
    """Pull pages while ``more(page)`` says so, each within the vendor's cadence (the Redis window
    ``window``, shared by every worker and beat), and apply each. Returns the sum of what ``apply`` said."""
    section = store.settings.vendor(provider)
    window_s = 60.0 * CADENCE_MARGIN + CADENCE_SLACK_S
    total = 0
    for _ in range(MAX_PAGES):
        if try_window(store.r, window, section.query_per_minute, window_s):
            break  # the cadence is used up: the next beat tick goes on
        try:
            page = fetch()
        except UnsupportedFeature:
            break
        except RateLimitedError as exc:
            log.warning("vendor refused a pull as too frequent", provider=provider, pull=what, code=exc.code)
            break
        except ProviderError as exc:
            log.warning("pull failed", provider=provider, pull=what, code=exc.code, error=str(exc))
            store.note_poll(provider, what, f"{type(exc).__name__} {exc.code}".strip())
            break
        store.note_poll(provider, what)  # for ``smsdispatch vendors``
        total += apply(page)
        if not more(page):
            break
    return total


def apply_page(store: Store, provider: str, receipts: Any) -> int:
    """Store a page durably, apply it, then let it go. A crash in between leaves it to ``drain_receipts``."""
    if not receipts:  # nothing new: still give parked receipts (that beat their index) another try
        return store.apply_receipts(provider, receipts)
    entry = store.stash_receipts(provider, receipts)
    applied = store.apply_receipts(provider, receipts)
    store.receipts_applied(entry)
    return applied


@app.task(name="tasks.poll.drain_receipts", **RETRIED)
def drain_receipts(limit: int = 100) -> int:
    """Apply receipt pages stored but never applied (their poller died). Returns recipients moved."""
    store = _store()
    moved = pages = 0
    for entry_id, provider, receipts in store.stale_receipt_pages(now_ms() - ORPHAN_PAGE_S * 1000, limit):
        moved += store.apply_receipts(provider, receipts)
        store.receipts_applied(entry_id)
        pages += 1
    if pages:
        log.warning("sweep applied receipt pages left by a dead poller", pages=pages, moved=moved)
        store.publish_sweep("receipts_applied", "", pages)
    return moved


@app.task(name="tasks.poll.release_deferred", **RETRIED)
def release_deferred(limit: int = 500) -> int:
    """Queue the chunk retries whose long wait is over (kept in Redis, not as Celery countdowns)."""
    from tasks.send import dispatch_chunk

    store = _store()
    released = 0
    for entry in store.due_deferred(limit):
        data = store.take_deferred(entry)  # only the caller that removes it queues it
        if data is not None:
            dispatch_chunk.apply_async(tuple(data["args"]), queue=data["queue"], priority=RETRY_PRIORITY)
            released += 1
    return released


@app.task(name="tasks.poll.sweep_leases", **RETRIED)
def sweep_leases(limit: int = 1000) -> dict[str, int]:
    """Queue again every open chunk whose lease ran out while its queue is empty: its task was lost. A
    lease that ran out behind a queue still full is moved on (the task is waiting its turn). Queuing a
    chunk twice is safe: the claim skips what is done and never resends what may have been sent. A
    campaign's chunk goes again with its campaign flag (its gate is asked first)."""
    from tasks.send import chunk_args, dispatch_chunk, lease_end_ms

    settings = get_settings()
    store = _store(settings)
    waiting: dict[str, int] = {}
    counts = {"requeued": 0, "extended": 0, "closed": 0}
    for message_id, number in store.expired_leases(limit):
        job = store.chunk_job(message_id, number)
        if job is None:  # the message has expired
            store.end_lease(message_id, number)
            counts["closed"] += 1
            continue
        queue = job["queue"]
        if queue not in waiting:
            waiting[queue] = store.queue_length(queue)
        store.extend_lease(message_id, number, lease_end_ms(settings, now_ms()))
        if waiting[queue]:
            counts["extended"] += 1
            continue
        dispatch_chunk.apply_async(chunk_args(message_id, job), queue=queue, priority=RETRY_PRIORITY)
        store.publish_sweep("requeued", message_id, len(job["chunk"]["phones"]))
        counts["requeued"] += 1
    if counts["requeued"] or counts["closed"]:
        log.warning("sweep queued lost chunks again", **counts)
    return counts


@app.task(name="tasks.poll.settle_overdue", **RETRIED)
def settle_overdue(limit: int = 1000) -> int:
    """Fail the submitted recipients (ambiguous ones included) whose vendor's settle window (Infocloud: 72
    hours) is over without a receipt. Those a receipt settled meanwhile stay as they are. Returns how
    many were failed."""
    settings = get_settings()
    store = _store(settings)
    failed = 0
    for message_id, provider, deadline in store.due_settlements(limit):
        settle_ms = settings.vendor(provider).settle_s * 1000 if provider in PROVIDERS else 0
        due, later = store.unsettled(message_id, provider, now_ms() - settle_ms)
        outcomes = [(phone, State.FAILED, "NO_RECEIPT") for phone in due]
        moved = store.settle(message_id, provider, outcomes, "sweep")
        store.settlement_done(message_id, provider, deadline, later + settle_ms if later else None)
        if moved:
            store.publish_sweep("settled", message_id, moved)
        failed += moved
    if failed:
        log.warning("sweep failed recipients with no receipt", recipients=failed)
    store.trim_events()
    return failed


settle_ambiguous = settle_overdue  # the task's name before every submitted recipient had a deadline
