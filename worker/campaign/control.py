"""Looking at campaigns and steering them: list, status, pause, resume, cancel, the report.

What the CLI (``smsdispatch campaign ...``) and the HTTP API (``/v1/campaigns``) call; no Celery here.
Control only moves the campaign's status in Redis (``Store.campaign_control``, one atomic step): the runner
(``tasks/campaign.py``) and each chunk's gate (``tasks/send.py``) act on it, so a pause or a cancel stops
sending within the chunks already claimed, and a resume is picked up by the next tick (held chunks queued
again, feeding goes on). See README "Campaigns".
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from worker.store import FINAL, UNSETTLED, Record, State, Store
from worker.store.campaign_run import ENDED

REPORT_COLUMNS = ("phone", "state", "vendor", "code", "text", "updated", "parts")
_ID = re.compile(r"^[0-9a-f]{32}$")
_STATUS_WORDS = {
    "submitting": "it is still being submitted",
    "cancelling": "it is being cancelled",
    "cancelled": "it was cancelled",
    "done": "it is done",
}


class UnknownCampaign(LookupError):
    """No campaign has this id (or it expired with its retention)."""


class CampaignStateError(ValueError):
    """The action is not allowed in the campaign's status (the message says why, in one line)."""


@dataclass(frozen=True, slots=True)
class CampaignView:
    """A campaign as an operator sees it. Times are aware, in ``campaign.timezone``; ``counts`` has every
    recipient state (0 when nobody is in it); ``parts`` are the billed parts so far, ``planned_parts``
    those the intake counted."""

    id: str
    name: str
    kind: str
    status: str
    created: datetime
    start: datetime | None
    window: str
    held_reason: str
    held_until: datetime | None
    rows: int
    accepted: int
    rejected: int
    duplicates: int
    counts: dict[str, int] = field(default_factory=dict)
    parts: int = 0
    done: bool = False
    planned_parts: int = 0
    finished: datetime | None = None
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON-safe form (times as ISO 8601 with their offset, None when unset)."""
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "created": self.created.isoformat(timespec="seconds"),
            "start": _iso(self.start),
            "window": self.window,
            "held_reason": self.held_reason,
            "held_until": _iso(self.held_until),
            "rows": self.rows,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "counts": dict(self.counts),
            "parts": self.parts,
            "planned_parts": self.planned_parts,
            "done": self.done,
            "finished": _iso(self.finished),
            "error": self.error,
        }


def list_campaigns(store: Store, limit: int = 50) -> list[CampaignView]:
    """The newest ``limit`` campaigns, newest first (those expired meanwhile left out)."""
    ids = store.campaign_ids(max(1, min(int(limit), 10_000)))
    metas = store.campaign_metas(ids)
    return [_view(store, cid, meta) for cid, meta in zip(ids, metas, strict=True) if meta]


def get_campaign(store: Store, campaign_id: str) -> CampaignView:
    """One campaign; ``UnknownCampaign`` if there is none with this id."""
    _check_id(campaign_id)
    meta = store.campaign_meta(campaign_id)
    if not meta:
        raise UnknownCampaign(f"campaign {campaign_id}: no such campaign (or it expired)")
    return _view(store, campaign_id, meta)


def pause(store: Store, campaign_id: str) -> CampaignView:
    """Stop sending: chunks not yet claimed wait (held) until ``resume``. Pausing a paused one is a no-op."""
    return _act(store, campaign_id, "pause")


def resume(store: Store, campaign_id: str) -> CampaignView:
    """Go on after a pause (scheduled again if its start is still ahead). Resuming a running one is a
    no-op."""
    return _act(store, campaign_id, "resume")


def cancel(store: Store, campaign_id: str) -> CampaignView:
    """Send nothing more: recipients not yet claimed are recorded ``cancelled`` (by the runner and each
    chunk's gate; those already with a vendor keep their outcome). Cancelling twice is a no-op."""
    return _act(store, campaign_id, "cancel")


def write_report(store: Store, campaign_id: str, out: TextIO) -> None:
    """One CSV line per recipient (``REPORT_COLUMNS``), streamed from Redis page by page (HSCAN), in no
    particular order. ``updated`` is ISO 8601 with the zone's offset; ``parts`` are the billed parts
    (the vendor's fee when it said, else 1 once the vendor took the message, 0 before)."""
    view = get_campaign(store, campaign_id)
    zone = _zone(store)
    writer = csv.writer(out)
    writer.writerow(REPORT_COLUMNS)
    for phone, record in store.campaign_records(view.id):
        updated = datetime.fromtimestamp(record.updated_ms / 1000, zone).isoformat(timespec="milliseconds")
        writer.writerow(
            (phone, record.state.value, record.provider, record.code, record.text, updated, _parts(record))
        )


def summary(view: CampaignView) -> dict[str, Any]:
    """The totals an operator reads at the end (or while it runs): rows, accepted, duplicates, ``refused``
    (rows refused at intake), recipients per state (``rejected`` among them: refused by a vendor),
    ``sent`` (submitted or delivered), ``settled`` (past the vendor call: a final state or submitted),
    ``pending`` (queued, retry, sending), and billed and planned parts."""
    counts = view.counts
    settled = sum(counts.get(s.value, 0) for s in FINAL) + counts.get(State.SUBMITTED.value, 0)
    return {
        "id": view.id,
        "name": view.name,
        "status": view.status,
        "rows": view.rows,
        "accepted": view.accepted,
        "refused": view.rejected,
        "duplicates": view.duplicates,
        "sent": counts.get(State.SUBMITTED.value, 0) + counts.get(State.DELIVERED.value, 0),
        "settled": settled,
        "pending": sum(counts.get(s.value, 0) for s in UNSETTLED),
        **{state: n for state, n in counts.items()},
        "parts": view.parts,
        "planned_parts": view.planned_parts,
        "done": view.done,
    }


def _act(store: Store, campaign_id: str, action: str) -> CampaignView:
    _check_id(campaign_id)
    move = store.campaign_control(campaign_id, action)
    if not move.before:
        raise UnknownCampaign(f"campaign {campaign_id}: no such campaign (or it expired)")
    if not move.after:
        why = _STATUS_WORDS.get(move.before, f"it is {move.before}")
        raise CampaignStateError(f"campaign {campaign_id}: cannot {action}, {why}")
    return get_campaign(store, campaign_id)


def _check_id(campaign_id: object) -> None:
    if not isinstance(campaign_id, str) or not _ID.match(campaign_id):
        shown = str(campaign_id)[:40]
        raise UnknownCampaign(f"campaign {shown!r}: not a campaign id (32 hexadecimal digits)")


def _view(store: Store, campaign_id: str, meta: dict[str, str]) -> CampaignView:
    zone = _zone(store)
    progress = store.progress(campaign_id)
    states = store.counts(campaign_id)
    status = meta.get("status", "")
    return CampaignView(
        id=campaign_id,
        name=meta.get("name", ""),
        kind=meta.get("kind", ""),
        status=status,
        created=_time(_int(meta, "created_ms"), zone) or datetime.fromtimestamp(0, zone),
        start=_time(_int(meta, "start_ms"), zone),
        window=meta.get("window", ""),
        held_reason=meta.get("held_reason", ""),
        held_until=_time(_int(meta, "held_until_ms"), zone) if meta.get("held_reason") else None,
        rows=_int(meta, "rows"),
        accepted=_int(meta, "accepted"),
        rejected=_int(meta, "rejected"),
        duplicates=_int(meta, "duplicates"),
        counts={state.value: states.get(state.value, 0) for state in State},
        parts=progress.get("parts", 0),
        done=status in ENDED,
        planned_parts=_int(meta, "parts"),
        finished=_time(_int(meta, "finished_ms"), zone),
        error=meta.get("error", ""),
    )


def _parts(record: Record) -> int:
    """Billed parts: the vendor's fee when it said, else 1 once the vendor took the message (a failure
    with a vendor id was taken: its receipt failed), 0 before."""
    reached = record.state in (State.SUBMITTED, State.DELIVERED) or (
        record.state is State.FAILED and bool(record.vendor_id)
    )
    if not reached:
        return 0
    return record.fee if record.fee is not None else 1


def _zone(store: Store) -> ZoneInfo:
    return ZoneInfo(store.settings.campaign.timezone)


def _int(meta: dict[str, str], key: str) -> int:
    value = meta.get(key, "")
    return int(value) if value.lstrip("-").isdigit() else 0


def _time(ms: int, zone: ZoneInfo) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, zone) if ms > 0 else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None
