"""Applying what vendors pushed: ``apply_pushes`` (beat, every ``push.apply_interval_s``) parses the bodies
the receiver stored (``worker/store/inbox.py``) with the vendor's adapter and applies them.

Receipts go through ``Store.apply_receipts``, the path pulled receipts take: a receipt that comes twice,
early (parked until its message is known) or for an unknown message changes nothing twice and raises
nothing. Replies go through ``Store.record_inbound`` (inbound replies and opt-outs). A body the adapter
cannot read is moved to the dead-letter stream with the error (``smsdispatch pushes``), never dropped,
and counted in a warning. Safe to run twice at once: each entry is claimed by one applier (a consumer
group); an applier that dies leaves its entries to be claimed again (``XAUTOCLAIM``) and applied again,
which changes nothing twice.
"""

from __future__ import annotations

import os
import socket
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from config.settings import get_settings
from providers.base import InboundMessage, Provider, Receipt
from providers.errors import MalformedPush, UnsupportedFeature
from providers.pushes import PushKind
from providers.vendors import VENDORS
from worker.app import INFRA_ERRORS, app
from worker.registry import get_provider, offers
from worker.store import Store, get_redis
from worker.store.inbox import StoredPush

log = structlog.get_logger(__name__)
BATCH = 500  # pushes claimed per round
MAX_ROUNDS = 20  # per run; beat calls again
RECEIPT_PUSHERS = tuple(vendor for vendor in VENDORS if offers(vendor, "parse_receipt_push"))
RETRIED: dict[str, Any] = {"autoretry_for": INFRA_ERRORS, "retry_backoff": 2, "max_retries": 5}


def consumer_name() -> str:
    """This process's name in the consumer group."""
    return f"{socket.gethostname()}-{os.getpid()}"


@app.task(name="tasks.push.apply_pushes", **RETRIED)
def apply_pushes(limit: int = BATCH) -> dict[str, int]:
    """Apply stored pushes of every kind until none is left (at most ``MAX_ROUNDS`` batches of
    ``limit``). Returns counts: ``receipts`` recipients moved, ``inbound`` replies recorded, ``dead``
    bodies moved to the dead-letter stream, ``pushes`` bodies applied."""
    settings = get_settings()
    store = Store(get_redis(settings), settings)
    totals: Counter[str] = Counter()
    for kind in PushKind:
        if kind is PushKind.INBOUND and _record_inbound(store) is None:
            continue  # replies stay stored until the inbound store exists
        for _ in range(MAX_ROUNDS):
            pushes = store.claim_pushes(kind, consumer_name(), limit)
            totals += apply_batch(store, kind, pushes)
            if len(pushes) < limit:
                break
    if totals["dead"]:
        log.warning("unreadable push bodies moved to the dead-letter stream", dead=totals["dead"])
    return dict(totals)


def apply_batch(store: Store, kind: PushKind, pushes: Sequence[StoredPush]) -> Counter[str]:
    """Parse each push, apply what parsed (grouped by vendor), dead-letter what did not, then ack."""
    counts: Counter[str] = Counter()
    parsed: dict[str, list[Any]] = defaultdict(list)
    applied: list[str] = []
    for push in pushes:
        try:
            parsed[push.vendor] += _parse(push)
        except (MalformedPush, UnsupportedFeature, KeyError) as exc:
            # KeyError: a vendor no longer registered; UnsupportedFeature: it no longer offers the push.
            store.dead_letter(push, f"{type(exc).__name__}: {exc}")
            counts["dead"] += 1
            continue
        applied.append(push.entry_id)
    if kind is PushKind.RECEIPTS:
        for vendor in RECEIPT_PUSHERS:  # receipts parked for a message not known yet are tried again
            parsed.setdefault(vendor, [])
    for vendor, items in parsed.items():
        if kind is PushKind.RECEIPTS:
            counts["receipts"] += store.apply_receipts(vendor, items)
        else:
            record = _record_inbound(store)
            counts["inbound"] += record(items) if record is not None else 0
    store.pushes_done(kind, applied)
    counts["pushes"] += len(applied)
    return counts


def _parse(push: StoredPush) -> list[Receipt] | list[InboundMessage]:
    adapter: Provider = get_provider(push.vendor)
    body = push.body.encode()
    if push.kind is PushKind.RECEIPTS:
        return list(adapter.parse_receipt_push(body, push.content_type))
    return list(adapter.parse_inbound_push(body, push.content_type))


def _record_inbound(store: Store) -> Callable[[Sequence[InboundMessage]], int] | None:
    """``Store.record_inbound`` (replies and opt-outs), or None where the inbound store is missing."""
    record: Callable[[Sequence[InboundMessage]], int] | None = getattr(store, "record_inbound", None)
    return record
