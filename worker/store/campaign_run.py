"""Campaign runs: feeding pages to the vendors, control (pause, resume, cancel), holds, the report.

A campaign is a message (its recipients, records and counters are message ``campaign_id``'s) with a meta
hash (``Keys.campaign``) that says where it stands: its ``status`` (moved only by
``lua/campaign_control.lua``, from the statuses each action may leave), the runner's cursor ``fed`` (pages
fed, moved once per page by ``lua/campaign_fed.lua``) and a hold (``held_reason``, ``held_until_ms``:
quiet hours or the campaign's window). Chunks that reach a worker while it is paused wait on
``Keys.campaign_held`` until it resumes. See README "Campaigns".
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from worker.store.base import StoreBase
from worker.store.keys import Keys
from worker.store.recipients import Outcome, RecipientsMixin, Recording, lease_member
from worker.store.records import Record, State, now_ms, state_of

ENDED = frozenset({"done", "cancelled"})
CANCEL_CODE = "CANCELLED"
CANCEL_TEXT = "the campaign was cancelled"
Page = list[tuple[str, dict[str, str] | None]]


@dataclass(frozen=True, slots=True)
class Gate:
    """What a campaign chunk may do now: its campaign's status and the end of its hold (ms, 0: none)."""

    status: str
    held_until_ms: int


@dataclass(frozen=True, slots=True)
class Move:
    """A control action's effect: the status before and after ("" after: not allowed from before; ""
    before: no such campaign)."""

    before: str
    after: str


class CampaignRunMixin(StoreBase):
    # -- reading ------------------------------------------------------------------------------------

    def campaign_meta(self, campaign_id: str) -> dict[str, str]:
        """The campaign's meta hash (empty: no such campaign, or it expired)."""
        return cast("dict[str, str]", self.r.hgetall(Keys.campaign(campaign_id)))

    def campaign_metas(self, campaign_ids: Sequence[str]) -> list[dict[str, str]]:
        """Several campaigns' meta hashes in one round trip, in the order asked."""
        with self.r.pipeline(transaction=False) as pipe:
            for campaign_id in campaign_ids:
                pipe.hgetall(Keys.campaign(campaign_id))
            return cast("list[dict[str, str]]", pipe.execute())

    def campaign_ids(self, limit: int) -> list[str]:
        """Up to ``limit`` campaign ids, newest first."""
        return cast("list[str]", self.r.zrevrange(Keys.campaigns, 0, max(0, limit - 1)))

    def active_campaigns(self) -> list[str]:
        """The ids the runner's tick looks at (scheduled, running, paused, cancelling)."""
        return sorted(cast("set[str]", self.r.smembers(Keys.campaigns_active)))

    def campaign_gate(self, campaign_id: str) -> Gate:
        """Whether a chunk of this campaign may be sent now (one HMGET)."""
        status, until = cast(
            "list[str | None]", self.r.hmget(Keys.campaign(campaign_id), ["status", "held_until_ms"])
        )
        return Gate(status or "", int(until) if until and until.isdigit() else 0)

    def campaign_records(self, campaign_id: str, count: int = 1000) -> Iterator[tuple[str, Record]]:
        """Every recipient's record, ``count`` at a time (HSCAN: never the whole hash at once). A record
        written during the scan may be seen twice or not at all; the report is read after the end."""
        for phone, raw in self.r.hscan_iter(Keys.recipients(campaign_id), count=count):
            yield cast("str", phone), Record.unpack(cast("str", raw))

    # -- control ------------------------------------------------------------------------------------

    def campaign_control(self, campaign_id: str, action: str, at_ms: int | None = None) -> Move:
        """Move the status by ``action`` (``lua/campaign_control.lua``: pause, resume, cancel; the
        runner's start, finish, cancelled)."""
        before, after = self._script("campaign_control")(
            keys=[
                Keys.campaign(campaign_id),
                Keys.campaigns_active,
                Keys.campaign_pages(campaign_id),
                Keys.campaign_held(campaign_id),
            ],
            args=[campaign_id, action, now_ms() if at_ms is None else at_ms],
        )
        return Move(before, after)

    def forget_campaign(self, campaign_id: str) -> None:
        """Take an id the runner cannot act on (its meta expired) off the active set."""
        self.r.srem(Keys.campaigns_active, campaign_id)

    def hold_campaign(self, campaign_id: str, reason: str, until_ms: int) -> None:
        """Say why the campaign is not fed now and until when (ms); an empty reason lifts the hold."""
        values = {"held_reason": reason, "held_until_ms": str(until_ms if reason else 0)}
        self.r.hset(Keys.campaign(campaign_id), mapping=values)  # type: ignore[arg-type]

    def note_campaign(self, campaign_id: str, **values: str) -> None:
        """Write meta fields (an ``error`` to show the operator)."""
        self.r.hset(Keys.campaign(campaign_id), mapping=values)  # type: ignore[arg-type]

    # -- feeding ------------------------------------------------------------------------------------

    def lock_campaign(self, campaign_id: str, ttl_ms: int) -> str | None:
        """Take the campaign's feed lock for ``ttl_ms``. Returns our token, or None if another holds it."""
        token = uuid.uuid4().hex
        return token if self.r.set(Keys.campaign_lock(campaign_id), token, nx=True, px=ttl_ms) else None

    def unlock_campaign(self, campaign_id: str, token: str) -> None:
        self._script("campaign_unlock")(keys=[Keys.campaign_lock(campaign_id)], args=[token])

    def campaign_page(self, campaign_id: str, page: int) -> Page | None:
        """Page ``page``'s rows (phone, own params or None); None once the pages are gone."""
        raw = cast("str | None", self.r.lindex(Keys.campaign_pages(campaign_id), page))
        if raw is None:
            return None
        return [(str(phone), params) for phone, params in json.loads(raw)]

    def campaign_fed(self, campaign_id: str, page: int, chunks: int) -> bool:
        """Move the cursor past ``page`` (its ``chunks`` are open and queued), unless it moved already."""
        moved = self._script("campaign_fed")(
            keys=[Keys.campaign(campaign_id), Keys.campaign_pages(campaign_id)], args=[page, chunks]
        )
        return bool(moved)

    # -- chunks held while paused ------------------------------------------------------------------

    def hold_chunk(self, campaign_id: str, number: int, job: Mapping[str, Any]) -> None:
        """Set a chunk aside until the campaign resumes: its job on the held list and its lease ended,
        in one transaction. Not counted done (a plain ZREM, see ``lua/end_lease.lua``): it is still to
        send, and in flight for the pacing."""
        with self.r.pipeline(transaction=True) as pipe:
            pipe.rpush(Keys.campaign_held(campaign_id), json.dumps(job, separators=(",", ":")))
            pipe.expire(Keys.campaign_held(campaign_id), self.ttl)
            pipe.zrem(Keys.leases, lease_member(campaign_id, number))
            pipe.execute()

    def release_held(self, campaign_id: str, limit: int, lease_until_ms: int) -> list[dict[str, Any]]:
        """Take up to ``limit`` held chunk jobs, each opened again (job and lease) for the caller to queue."""
        raw: list[str] = self._script("campaign_release")(
            keys=[Keys.campaign_held(campaign_id), Keys.plan(campaign_id), Keys.leases],
            args=[limit, campaign_id, lease_until_ms, self.ttl],
        )
        return [json.loads(job) for job in raw]

    def held_chunks(self, campaign_id: str) -> int:
        return self.r.llen(Keys.campaign_held(campaign_id))

    # -- cancelling ---------------------------------------------------------------------------------

    def cancel_recipients(
        self, campaign_id: str, phones: Sequence[str], *, chunk: int | None = None
    ) -> list[str]:
        """Record as cancelled those of ``phones`` still queued or waiting for a retry (never one being
        sent, or done); with ``chunk``, that chunk's lease ends too. Returns the phones cancelled."""
        outcomes = [Outcome(p, State.CANCELLED, CANCEL_CODE, CANCEL_TEXT) for p in phones]
        recording = Recording(outcomes, chunk_done=chunk is not None)
        recipients = cast("RecipientsMixin", self)  # Store has both
        return recipients.record(
            campaign_id, "", recording, from_states=(State.QUEUED, State.RETRY), why="cancel", chunk=chunk
        )

    def unsent_scan(self, campaign_id: str, cursor: int, count: int) -> tuple[int, list[str]]:
        """One HSCAN step over the recipients: the next cursor (0: the end) and the phones found still
        queued or waiting for a retry."""
        cursor, page = cast(
            "tuple[int, dict[str, str]]",
            self.r.hscan(Keys.recipients(campaign_id), cursor, count=count),
        )
        unsent = (State.QUEUED.value, State.RETRY.value)
        return int(cursor), [phone for phone, raw in page.items() if state_of(raw) in unsent]
