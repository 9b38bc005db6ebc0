"""Pulling inbound replies (MO) on beat: ``poll_inbound(provider)`` for every vendor whose adapter offers
a pull (Xiaorui ``smsmo``, Tencent ``pullstatus`` type 1). Pushed replies (Infocloud, Ihuyi, Tencent's
callback) reach ``Store.record_inbound`` through ``tasks.push``.

A vendor hands each reply out once, so a fetched page is stored (``Store.stash_inbound``) before it is
applied and let go only after; a page whose poller died is applied by the next run of any poller. The
pull's cadence is held in Redis (``try_window``, window ``<provider>:inbound``): at most the section's
``query_per_minute`` pulls a minute across every worker, beat and manual run. Neither vendor documents a
limit for its inbound pull; the window is this endpoint's own, apart from the receipt queries'.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from celery import Task

from config.settings import get_settings
from providers.base import InboundMessage
from tasks.poll import pull_pages
from worker.app import INFRA_ERRORS, app
from worker.registry import get_provider
from worker.store import Store, get_redis, now_ms

log = structlog.get_logger(__name__)
MAX_PAGES = 20  # per run; beat calls again
CADENCE_MARGIN = 1.05  # as tasks.poll: our window a little wider than the rule, for clock skew
CADENCE_SLACK_S = 1.0
ORPHAN_PAGE_S = 60  # a stored page not applied after this long belongs to a poller that died
RETRIED: dict[str, Any] = {"autoretry_for": INFRA_ERRORS, "retry_backoff": 2, "max_retries": 5}


@app.task(bind=True, name="tasks.inbound.poll_inbound", **RETRIED)
def poll_inbound(self: Task, provider: str = "xiaorui") -> int:
    """Pull replies while pages come back non-empty, within the pull's cadence; store each page, then
    record it. Returns how many replies were new."""
    settings = get_settings()
    section = settings.vendor(provider)
    if not section.configured():
        return 0
    store = Store(get_redis(settings), settings)
    new = drain_inbound(store)
    adapter = get_provider(provider, settings)
    return new + pull_pages(
        store,
        provider,
        "inbound",
        f"{provider}:inbound",
        adapter.poll_inbound,
        lambda page: apply_inbound_page(store, provider, page),
        bool,  # a run pulls again while pages come back non-empty
    )


def apply_inbound_page(store: Store, provider: str, replies: Sequence[InboundMessage]) -> int:
    """Store a page durably, record it, then let it go. A crash in between leaves it to
    :func:`drain_inbound`; recording it twice is safe (a reply is recorded once)."""
    if not replies:
        return 0
    entry = store.stash_inbound(provider, replies)
    new = store.record_inbound(replies)
    store.inbound_applied(entry)
    return new


def drain_inbound(store: Store, limit: int = 100) -> int:
    """Record the pages stored more than ``ORPHAN_PAGE_S`` ago and never applied (their poller died).
    Returns how many replies were new."""
    new = pages = 0
    for entry_id, _provider, replies in store.stale_inbound_pages(now_ms() - ORPHAN_PAGE_S * 1000, limit):
        new += store.record_inbound(replies)
        store.inbound_applied(entry_id)
        pages += 1
    if pages:
        log.warning("inbound pages left by a dead poller recorded", pages=pages, new=new)
        store.publish_sweep("inbound_applied", "", pages)
    return new
