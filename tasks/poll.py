"""Scheduled work on ``sms.poll``.

Receipts at each vendor's allowed cadence, long deferrals, the settle sweep.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import cast

import structlog
from celery import Task

from config.settings import get_settings
from providers.base import DeliveryState, Receipt
from providers.errors import ProviderError, RateLimitedError, UnsupportedFeature
from tasks.dispatch import event
from tasks.phones import mask
from worker.app import app
from worker.limits import try_window
from worker.registry import get_provider
from worker.store import Keys, State, Store, get_redis, now_ms, script

log = structlog.get_logger(__name__)
MAX_PAGES = 50  # per run; beat calls again


@app.task(bind=True, name="tasks.poll.poll_receipts")
def poll_receipts(self: Task, provider: str = "infocloud") -> int:
    """Pull receipts while full pages come back, within the vendor's query cadence.

    Returns how many receipts were applied.
    """
    settings = get_settings()
    section = settings.vendor(provider)
    if not section.configured():
        return 0
    client = get_redis(settings)
    adapter = get_provider(provider, settings)
    applied = 0
    for _ in range(MAX_PAGES):
        if try_window(client, f"{provider}:query", section.query_per_minute, 60.0):
            break  # the cadence is used up: the next beat tick goes on
        try:
            receipts = adapter.poll_receipts()
        except (RateLimitedError, UnsupportedFeature):
            break
        except ProviderError as exc:
            log.warning("receipt poll failed", provider=provider, code=exc.code, error=str(exc))
            break
        applied += apply_receipts(Store(client, settings), provider, receipts)
        if len(receipts) < section.receipt_page_size:
            break
    return applied


def apply_receipts(store: Store, provider: str, receipts: Sequence[Receipt]) -> int:
    """Move each receipt's recipient from submitted (or sending) to delivered or failed.

    Receipts whose state is unknown (Xiaorui's empty or ``UNKNOWN`` stat) change nothing.

    A receipt whose message cannot be found yet (the vendor's per-phone id is indexed when the worker
    records the vendor's answer, and a fast receipt can beat it) is parked and tried again with the
    next page for ``unmatched_receipt_keep_s``: vendors return a receipt only once. Returns how many
    recipients moved.
    """
    now = now_ms()
    # A vendor that reports "unknown" has not given its final word: the recipient stays submitted.
    final = [receipt for receipt in receipts if receipt.state is not DeliveryState.UNKNOWN]
    items = [(receipt, now) for receipt in final] + store.take_parked_receipts(provider)
    by_message: dict[str, list[Receipt]] = defaultdict(list)
    unmatched: list[tuple[Receipt, int]] = []
    found = _messages_of(store, provider, [receipt for receipt, _ in items])
    for (receipt, seen), message_id in zip(items, found, strict=True):
        if message_id:
            by_message[message_id].append(receipt)
        else:
            unmatched.append((receipt, seen))
    keep = [(r, seen) for r, seen in unmatched if seen > now - store.settings.unmatched_receipt_keep_s * 1000]
    store.park_receipts(provider, keep)
    if len(keep) < len(unmatched):
        example = mask(unmatched[0][0].phone)
        log.warning(
            "receipts for unknown messages dropped",
            provider=provider,
            count=len(unmatched) - len(keep),
            example=example,
        )
    return sum(
        settle(store, provider, message_id, [(r.phone, _final(r.state), r.code) for r in items], "receipt")
        for message_id, items in by_message.items()
    )


def _final(state: DeliveryState) -> State:
    return State.DELIVERED if state is DeliveryState.DELIVERED else State.FAILED


def settle(
    store: Store, provider: str, message_id: str, outcomes: Sequence[tuple[str, State, str]], why: str
) -> int:
    """Move recipients that are submitted (or still sending) to their final state, each given as
    ``(phone, state, code)``, and publish the changes. A final state is never overwritten (see
    ``lua/apply_receipts.lua``). Returns how many moved."""
    args: list[str | int] = [now_ms()]
    for phone, state, code in outcomes:
        args += [phone, state.value, code]
    changed: list[str] = script(store.r, "apply_receipts")(keys=[Keys.recipients(message_id)], args=args)
    store.write(message_id, {}, _events(message_id, provider, changed, why))
    return len(changed) // 2


def _messages_of(store: Store, provider: str, receipts: Sequence[Receipt]) -> list[str | None]:
    """Each receipt's message: from our bid ("<message id>.<chunk>") where the vendor echoes it, else
    through the index of the vendor's batch or per-phone ids, all looked up in one round trip."""
    found: list[str | None] = [None] * len(receipts)
    lookups: dict[str, list[int]] = defaultdict(list)
    for i, receipt in enumerate(receipts):
        if receipt.bid and "." in receipt.bid:
            found[i] = receipt.bid.rsplit(".", 1)[0]
        elif key := receipt.batch_id or receipt.vendor_id:
            lookups[key].append(i)
    if lookups:
        for key, message_id in zip(lookups, store.messages_for_batches(provider, list(lookups)), strict=True):
            for i in lookups[key]:
                found[i] = message_id
    return found


def _events(message_id: str, provider: str, changed: Sequence[str], why: str) -> list[dict[str, str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for phone, state in zip(changed[::2], changed[1::2], strict=True):
        groups[state].append(phone)
    return [event(message_id, state, provider, phones, why) for state, phones in groups.items()]


@app.task(name="tasks.poll.release_deferred")
def release_deferred(limit: int = 500) -> int:
    """Queue the chunk retries whose long wait is over (kept in Redis, not as Celery countdowns)."""
    from tasks.send import dispatch_chunk

    client = get_redis()
    due = cast("list[str]", client.zrangebyscore(Keys.deferred, 0, now_ms(), start=0, num=limit))
    released = 0
    for entry in due:
        if client.zrem(Keys.deferred, entry):  # only the worker that removes it queues it
            data = json.loads(entry)
            dispatch_chunk.apply_async(tuple(data["args"]), queue=data["queue"])
            released += 1
    return released


@app.task(name="tasks.poll.settle_ambiguous")
def settle_ambiguous(limit: int = 10_000) -> int:
    """Fail the unconfirmed (ambiguous) recipients whose vendor's settle window (Infocloud: 72 hours) is
    over without a receipt. Those a receipt settled meanwhile stay as they are; either way they leave the
    list. Returns how many were failed."""
    client = get_redis()
    store = Store(client, get_settings())
    due = cast("list[str]", client.zrangebyscore(Keys.ambiguous, 0, now_ms(), start=0, num=limit))
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for entry in due:
        message_id, phone, provider = entry.split("|", 2)
        groups[(message_id, provider)].append(phone)
    failed = sum(
        settle(store, provider, message_id, [(p, State.FAILED, "NO_RECEIPT") for p in phones], "NO_RECEIPT")
        for (message_id, provider), phones in groups.items()
    )
    if due:
        client.zrem(Keys.ambiguous, *due)
    return failed
