"""Delivery receipts, pulled or pushed: kept durably until applied, matched to their recipient, settled.

A vendor hands each receipt out once, so a fetched page is stored in a stream (``Keys.receipt_inbox``)
before it is applied and removed only after; a page whose poller died is applied by the sweep. A receipt
whose message cannot be found yet (its index entry is written when the worker records the vendor's
answer, and a fast receipt can beat it) is parked and tried again with later pages.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, cast

import structlog

from providers.base import DeliveryState, Receipt
from providers.phones import mask
from worker.events import group
from worker.store.base import StoreBase
from worker.store.keys import Keys
from worker.store.records import State, now_ms

log = structlog.get_logger(__name__)


def _encode(receipt: Receipt) -> dict[str, Any]:
    data = asdict(receipt)
    data.pop("raw", None)
    data["state"] = receipt.state.value
    return data


def _decode(data: dict[str, Any]) -> Receipt:
    data = dict(data)
    data["state"] = DeliveryState(data["state"])
    return Receipt(**data)


def final_state(state: DeliveryState) -> State:
    """Our state for a vendor's final word: delivered, or failed (undelivered, expired, rejected)."""
    return State.DELIVERED if state is DeliveryState.DELIVERED else State.FAILED


class ReceiptsMixin(StoreBase):
    # -- the inbox ----------------------------------------------------------------------------------

    def stash_receipts(self, provider: str, receipts: Sequence[Receipt]) -> str:
        """Store a fetched page durably; returns its entry id (give it to ``receipts_applied``)."""
        page = json.dumps([_encode(r) for r in receipts], ensure_ascii=False, separators=(",", ":"))
        return cast("str", self.r.xadd(Keys.receipt_inbox, {"provider": provider, "page": page}))

    def receipts_applied(self, entry_id: str) -> None:
        self.r.xdel(Keys.receipt_inbox, entry_id)

    def stale_receipt_pages(
        self, older_than_ms: int, count: int = 100
    ) -> list[tuple[str, str, list[Receipt]]]:
        """Pages stored before ``older_than_ms`` and still not applied (their poller died):
        ``(entry id, provider, receipts)``."""
        rows = self.r.xrange(Keys.receipt_inbox, "-", str(older_than_ms), count=count)
        out = []
        for entry_id, data in cast("list[tuple[str, dict[str, str]]]", rows):
            receipts = [_decode(item) for item in json.loads(data["page"])]
            out.append((entry_id, data["provider"], receipts))
        return out

    # -- applying -----------------------------------------------------------------------------------

    def apply_receipts(self, provider: str, receipts: Sequence[Receipt]) -> int:
        """Settle each receipt's recipient; park those whose message is not known yet. Receipts whose
        state is unknown change nothing (the vendor has not given its final word). Returns how many
        recipients moved."""
        now = now_ms()
        final = [r for r in receipts if r.state is not DeliveryState.UNKNOWN]
        items = [(r, now) for r in final] + self._take_parked(provider)
        by_message: dict[str, list[Receipt]] = defaultdict(list)
        unmatched: list[tuple[Receipt, int]] = []
        for (receipt, seen), message_id in zip(
            items, self._messages_of(provider, [r for r, _ in items]), strict=True
        ):
            if message_id:
                by_message[message_id].append(receipt)
            else:
                unmatched.append((receipt, seen))
        self._park(provider, unmatched, now)
        return sum(
            self.settle(
                message_id, provider, [(r.phone, final_state(r.state), r.code) for r in found], "receipt"
            )
            for message_id, found in by_message.items()
        )

    def settle(
        self, message_id: str, provider: str, outcomes: Sequence[tuple[str, State, str]], why: str
    ) -> int:
        """Move recipients that are submitted (or still sending) to a final state, each given as
        ``(phone, state, code)``, and publish the changes. A final state is never overwritten (see
        ``lua/settle.lua``). Returns how many moved."""
        if not outcomes:
            return 0
        args: list[str | int] = [now_ms(), self.ttl]
        for phone, state, code in outcomes:
            args += [phone, state.value, code]
        keys = [Keys.recipients(message_id), Keys.counts(message_id)]
        changed: list[str] = self._script("settle")(keys=keys, args=args)
        if changed:
            triples = zip(changed[::3], changed[1::3], changed[2::3], strict=True)
            with self.r.pipeline(transaction=False) as pipe:
                self._publish(pipe, group(message_id, provider, triples, why))
                pipe.execute()
        return len(changed) // 3

    def _messages_of(self, provider: str, receipts: Sequence[Receipt]) -> list[str | None]:
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
            keys = [Keys.vendor_batch(provider, batch_id) for batch_id in lookups]
            for key, message_id in zip(lookups, cast("list[str | None]", self.r.mget(keys)), strict=True):
                for i in lookups[key]:
                    found[i] = message_id
        return found

    # -- receipts that arrived before their index ---------------------------------------------------

    def _park(self, provider: str, unmatched: Sequence[tuple[Receipt, int]], now: int) -> None:
        keep_ms = self.settings.unmatched_receipt_keep_s * 1000
        keep = [(r, seen) for r, seen in unmatched if seen > now - keep_ms]
        if len(keep) < len(unmatched):
            log.warning(
                "receipts for unknown messages dropped",
                provider=provider,
                count=len(unmatched) - len(keep),
                example=mask(unmatched[0][0].phone),
            )
        if not keep:
            return
        key = Keys.unmatched(provider)
        rows = [json.dumps({**_encode(r), "seen": seen}) for r, seen in keep]
        with self.r.pipeline(transaction=False) as pipe:
            pipe.rpush(key, *rows)
            pipe.expire(key, self.settings.unmatched_receipt_keep_s)
            pipe.execute()

    def _take_parked(self, provider: str) -> list[tuple[Receipt, int]]:
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
            out.append((_decode(data), seen))
        return out
