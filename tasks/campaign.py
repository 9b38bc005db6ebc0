"""The campaign runner: beat's ``tick_campaigns`` (every ``campaign.tick_s``, on sms.poll) moves every
active campaign along, one tick at a time, under a per-campaign lock (two beats never feed one at once).

- ``scheduled``: becomes ``running`` once its start is due.
- ``running``: held (not fed) outside the hours it may send: quiet hours for marketing
  (``campaign.quiet_hours`` in ``campaign.timezone``) and its own ``window``; the hold is written in its
  meta (``held_reason``, ``held_until_ms``), which chunks already queued also obey (tasks/send.py). Else
  chunks held while it was paused are queued again, and whole pages are fed while fewer chunks are in
  flight than its share of the vendor's pace (``target``); done once every page is fed and no recipient
  is left queued, waiting for a retry or being sent.
- ``cancelling``: its recipients still queued or waiting for a retry are recorded ``cancelled`` (a scan
  of its recipients, in pages, from tick to tick), then it is ``cancelled``.
- ``paused``: nothing; chunks that reach a worker wait on its held list.

Feeding a page: plan it (``build_plan``, as send_sms does, with each row's own parameters), open each
chunk (``page * 1000 + j``) and queue it on the bulk queue, then move the cursor past the page
(``Store.campaign_fed``). A feeder killed mid-page leaves the cursor on the page: the next tick feeds it
again, the same chunk numbers, and the claim sends nobody twice; a chunk opened but never queued is
found by the lease sweep.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from config.settings import PROVIDERS, Settings, get_settings
from providers.phones import PhoneError, normalize
from tasks.plan import InvalidRequest, RecipientInput, SendInput, build_plan, validate_request
from tasks.poll import RETRIED
from tasks.send import chunk_args, chunk_job, dispatch_chunk, lease_end_ms, queue_chunk
from worker.app import RETRY_PRIORITY, app, queue_for
from worker.store import UNSETTLED, Outcome, Recording, State, Store, get_redis, now_ms
from worker.store.campaign_run import Page

log = structlog.get_logger(__name__)
PAGE_CHUNKS = 1000  # a page's chunk j is chunk number page * 1000 + j
MIN_TARGET = 2  # chunks in flight per campaign, however slow its vendor
CANCEL_SCAN = 1000  # recipients looked at per HSCAN step while cancelling
HELD_BATCH = 100  # held chunks queued again per step on resume
FEED_BUDGET_S = 0.5  # a tick feeds pages for at most this long (or half a tick), then the next goes on
LOCK_S = 60.0  # a campaign's feed lock lasts this long at least (a tick that dies lets go of it then)
MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class Hold:
    """Why a campaign may not send now, and until when (ms); ``reason`` "" when it may."""

    reason: str = ""
    until_ms: int = 0


@app.task(name="tasks.campaign.tick_campaigns", **RETRIED)
def tick_campaigns() -> dict[str, int]:
    """Move every active campaign along (see the module's docstring). Returns campaigns per outcome."""
    settings = get_settings()
    return run_tick(Store(get_redis(settings), settings), settings, now_ms())


def run_tick(store: Store, settings: Settings, now: int) -> dict[str, int]:
    """One tick at ``now`` (ms; the clock is the caller's, so a test can run the tick at any hour).
    Campaigns that want pages are fed one page each in turn (in a random order each tick), so that
    campaigns sharing a vendor's queue interleave there instead of queuing behind each other, for at
    most ``FEED_BUDGET_S`` (or half a tick): a tick never runs long, the next one goes on."""
    ids = store.active_campaigns()
    metas = dict(zip(ids, store.campaign_metas(ids), strict=True))
    running = _running_per_vendor(metas, settings, now)
    outcomes: Counter[str] = Counter()
    lock_ms = int(max(LOCK_S, settings.campaign.tick_s * 10) * 1000)
    locks: list[tuple[str, str]] = []
    feeders: list[Feeder] = []
    try:
        for campaign_id, meta in metas.items():
            if not meta:  # expired with its retention
                store.forget_campaign(campaign_id)
                continue
            token = store.lock_campaign(campaign_id, lock_ms)
            if token is None:
                outcomes["locked"] += 1
                continue
            locks.append((campaign_id, token))
            current = store.campaign_meta(campaign_id) or meta  # as it stands now that it is ours
            outcome, feeder = _step(store, settings, campaign_id, current, now, running)
            outcomes[outcome] += 1
            if feeder is not None:
                feeders.append(feeder)
        random.shuffle(feeders)
        stop = time.monotonic() + max(FEED_BUDGET_S, settings.campaign.tick_s / 2)
        while feeders and time.monotonic() < stop:  # the next tick goes on
            feeders = [feeder for feeder in feeders if feeder.feed_one()]
    finally:
        for campaign_id, token in locks:
            store.unlock_campaign(campaign_id, token)
    return dict(outcomes)


def _step(
    store: Store, settings: Settings, campaign_id: str, meta: dict[str, str], now: int, running: Counter[str]
) -> tuple[str, Feeder | None]:
    """Move one campaign along; a running one that may send is handed back as a ``Feeder``."""
    bound = log.bind(campaign_id=campaign_id)
    status = meta.get("status", "")
    if status == "scheduled":
        if store.campaign_control(campaign_id, "start", now).after != "running":
            return "scheduled", None
        bound.info("campaign started")
        status = "running"
    if status == "cancelling":
        return _cancel(store, settings, campaign_id, meta), None
    if status != "running":
        return status, None
    hold = held(meta, settings, now)
    if hold.reason:
        if (meta.get("held_reason"), meta.get("held_until_ms")) != (hold.reason, str(hold.until_ms)):
            store.hold_campaign(campaign_id, hold.reason, hold.until_ms)
            bound.info("campaign held", reason=hold.reason, until_ms=hold.until_ms)
        return "held", None
    if meta.get("held_reason"):
        store.hold_campaign(campaign_id, "", 0)
    _release_held(store, settings, campaign_id)
    progress = store.progress(campaign_id)
    if _finished(meta, progress):
        store.campaign_control(campaign_id, "finish", now)
        bound.info("campaign done", **{k: v for k, v in progress.items() if v})
        return "done", None
    vendor = vendor_of(meta, settings)
    most = target(settings, vendor, running[vendor])
    in_flight = max(0, _int(meta, "chunks_fed") - progress.get("chunks_done", 0))
    fed, pages = _int(meta, "fed"), _int(meta, "pages")
    return "running", Feeder(store, settings, campaign_id, meta, most, fed, pages, in_flight)


def held(meta: Mapping[str, str], settings: Settings, now: int) -> Hold:
    """Whether the campaign may send at ``now`` (ms): marketing not in quiet hours, any kind only in its
    own window. When held, ``until_ms`` is the first minute both allow (a day ahead if none does)."""
    spans: list[tuple[str, bool]] = []  # (span, True: sending allowed inside / False: outside)
    if meta.get("kind") == "marketing" and settings.campaign.quiet_hours:
        spans.append((settings.campaign.quiet_hours, False))
    if meta.get("window"):
        spans.append((meta["window"], True))
    if not spans:
        return Hold()
    zone = ZoneInfo(settings.campaign.timezone)
    local = datetime.fromtimestamp(now / 1000, zone)
    reason = _refused(local, spans)
    if not reason:
        return Hold()
    at = local.replace(second=0, microsecond=0)
    for _ in range(24 * 60 + 1):  # minute by minute: every span edge is on a minute
        at += timedelta(minutes=1)
        if not _refused(at, spans):
            return Hold(reason, int(at.timestamp() * 1000))
    return Hold(reason, now + 24 * 3600 * 1000)


def _refused(local: datetime, spans: list[tuple[str, bool]]) -> str:
    """The reason ``local`` is refused by one of ``spans`` ("" if none refuses it)."""
    minute = local.hour * 60 + local.minute
    for span, allowed_inside in spans:
        if in_span(minute, span) != allowed_inside:
            return f"quiet hours {span}" if not allowed_inside else f"outside its window {span}"
    return ""


def in_span(minute: int, span: str) -> bool:
    """Whether the minute of the day is in ``HH:MM-HH:MM`` (end excluded; the span may cross midnight)."""
    start = int(span[0:2]) * 60 + int(span[3:5])
    end = int(span[6:8]) * 60 + int(span[9:11])
    return start <= minute < end if start < end else (minute >= start or minute < end)


def vendor_of(meta: Mapping[str, str], settings: Settings) -> str:
    """The vendor whose pace the campaign follows: the one it forces, else the first of its kind's route."""
    route = settings.routing.get(meta.get("kind", "notify"), ())
    return meta.get("provider") or (route[0] if route else "")


def target(settings: Settings, vendor: str, campaigns: int) -> int:
    """Chunks a campaign keeps in flight: its share of ``lookahead_s`` of the vendor's calls (one chunk
    is one call), at least ``MIN_TARGET``."""
    if vendor not in PROVIDERS:
        return MIN_TARGET
    rate = settings.vendor(vendor).requests_per_second
    return max(MIN_TARGET, math.ceil(rate * settings.campaign.lookahead_s / max(1, campaigns)))


def _running_per_vendor(metas: Mapping[str, dict[str, str]], settings: Settings, now: int) -> Counter[str]:
    """Campaigns that will be fed this tick, per vendor: they share its pace evenly."""
    running: Counter[str] = Counter()
    for meta in metas.values():
        status = meta.get("status")
        due = status == "scheduled" and _int(meta, "start_ms") <= now
        if (status == "running" or due) and not held(meta, settings, now).reason:
            running[vendor_of(meta, settings)] += 1
    return running


def _finished(meta: Mapping[str, str], progress: Mapping[str, int]) -> bool:
    """Every page fed and every recipient past the queue (the counters account for all of them)."""
    if _int(meta, "fed") < _int(meta, "pages"):
        return False
    counted = sum(progress.get(state.value, 0) for state in State)
    pending = sum(progress.get(state.value, 0) for state in UNSETTLED)
    return pending == 0 and counted >= _int(meta, "accepted")


@dataclass
class Feeder:
    """Feeds one running campaign's pages, one per call, while fewer than ``most`` of its chunks are
    in flight (``in_flight``: fed, lease not ended)."""

    store: Store
    settings: Settings
    campaign_id: str
    meta: dict[str, str]
    most: int
    fed: int
    pages: int
    in_flight: int

    def feed_one(self) -> bool:
        """Feed the next page if it wants one. Returns whether it may want another."""
        if self.fed >= self.pages or self.in_flight >= self.most:
            return False
        store, campaign_id, page = self.store, self.campaign_id, self.fed
        rows = store.campaign_page(campaign_id, page)
        if rows is None:
            log.warning("campaign pages missing", campaign_id=campaign_id, fed=page, pages=self.pages)
            return False
        try:
            chunks = _feed_page(store, self.settings, campaign_id, self.meta, page, rows, self.in_flight)
        except InvalidRequest as exc:  # its template changed under it, say: nothing sent, an operator decides
            store.note_campaign(campaign_id, error=f"page {page}: {exc}"[:500])
            store.campaign_control(campaign_id, "pause")
            log.error("campaign paused: a page cannot be planned", campaign_id=campaign_id, error=str(exc))
            return False
        if not store.campaign_fed(campaign_id, page, chunks):
            return False  # another feeder moved the cursor (our lock expired): leave it to that one
        self.fed += 1
        self.in_flight += chunks
        return True


def _feed_page(
    store: Store,
    settings: Settings,
    campaign_id: str,
    meta: Mapping[str, str],
    page: int,
    rows: Page,
    in_flight: int,
) -> int:
    """Plan one page, record what the plan refuses, open and queue its chunks. Returns the chunks."""
    kind = meta.get("kind", "notify")
    rows, refused = _normalized(rows)
    if not rows:
        store.record(campaign_id, "", Recording(refused), from_states=(State.QUEUED,), why="plan")
        return 0
    plan = build_plan(_request(meta, rows, settings), settings, store.unavailable(PROVIDERS, kind))
    refused += [Outcome(given, State.REJECTED, "INVALID", why) for given, why in plan.rejected]
    if refused:
        store.record(campaign_id, "", Recording(refused), from_states=(State.QUEUED,), why="plan")
    queue = queue_for(kind, settings.bulk_threshold + 1, settings)  # a campaign is a big send
    start = now_ms()
    for chunk in plan.chunks:
        spec = replace(chunk, number=page * PAGE_CHUNKS + chunk.number)
        rate = settings.vendor(spec.provider).requests_per_second
        turn_ms = start + 1500 * (in_flight + chunk.number) / rate  # when its turn should come
        job = chunk_job(kind, queue, spec, campaign=True)
        queue_chunk(store, campaign_id, job, lease_end_ms(settings, turn_ms))
    return len(plan.chunks)


def _request(meta: Mapping[str, str], rows: Page, settings: Settings) -> SendInput:
    """The page as one send. What the campaign sends (template, common parameters, kind, vendor) is
    checked again, as the configuration may have changed since the intake (``InvalidRequest``); the rows
    themselves were checked at the intake, so they are taken as they are stored (a tenth of the cost)."""
    first_phone, first_own = rows[0]
    common = validate_request(
        {
            "to": [{"phone": first_phone, "params": first_own} if first_own else first_phone],
            "template": meta.get("template") or None,
            "content": meta.get("content") or None,
            "params": json.loads(meta.get("params") or "{}"),
            "kind": meta.get("kind", "notify"),
            "provider": meta.get("provider") or None,
        },
        settings,
    )
    to = [RecipientInput.model_construct(phone=p, params=dict(own)) if own else p for p, own in rows]
    return common.model_copy(update={"to": to})


def _normalized(rows: Page) -> tuple[Page, list[Outcome]]:
    """The rows whose phone is in its normalized form, as the intake writes them (the plan would send a
    phone it normalized under another key than the recipient's record), and a refusal for each other,
    under its record's key."""
    kept: Page = []
    refused: list[Outcome] = []
    for phone, own in rows:
        try:
            same = normalize(phone) == phone
        except PhoneError as exc:
            refused.append(Outcome(phone, State.REJECTED, "INVALID", f"to: {exc}"))
            continue
        if same:
            kept.append((phone, own))
        else:
            refused.append(Outcome(phone, State.REJECTED, "INVALID", "to: not a normalized phone number"))
    return kept, refused


def _release_held(store: Store, settings: Settings, campaign_id: str) -> None:
    """Queue again the chunks set aside while it was paused (they open again: job and lease)."""
    while jobs := store.release_held(campaign_id, HELD_BATCH, lease_end_ms(settings, now_ms())):
        for job in jobs:
            args = chunk_args(campaign_id, job)
            dispatch_chunk.apply_async(args, queue=job["queue"], priority=RETRY_PRIORITY)
        log.info("campaign resumed: held chunks queued again", chunks=len(jobs))


def _cancel(store: Store, settings: Settings, campaign_id: str, meta: Mapping[str, str]) -> str:
    """Record every recipient still queued or waiting for a retry as cancelled (fed or not: chunks
    already queued find nothing left and end), a scan of its recipients that goes on from tick to tick
    (its cursor in the meta, ``cancel_cursor``); once through, the campaign is cancelled."""
    cursor = _int(meta, "cancel_cursor")
    stop = time.monotonic() + max(FEED_BUDGET_S, settings.campaign.tick_s / 2)
    cancelled = 0
    while True:
        cursor, phones = store.unsent_scan(campaign_id, cursor, CANCEL_SCAN)
        if phones:
            cancelled += len(store.cancel_recipients(campaign_id, phones))
        if cursor == 0:
            break
        if time.monotonic() > stop:
            store.note_campaign(campaign_id, cancel_cursor=str(cursor))
            log.info("campaign cancelling", campaign_id=campaign_id, cancelled=cancelled)
            return "cancelling"
    store.campaign_control(campaign_id, "cancelled")
    log.info("campaign cancelled", campaign_id=campaign_id, cancelled=cancelled)
    return "cancelled"


def _int(meta: Mapping[str, Any], key: str) -> int:
    value = str(meta.get(key, ""))
    return int(value) if value.isdigit() else 0
