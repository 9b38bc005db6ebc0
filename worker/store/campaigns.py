"""Campaign intake: the campaign's meta, its pages of recipients (deduplicated), its index.

An intake writes a campaign in three steps: ``create_campaign`` (meta with status ``submitting``, and
the message's meta: a campaign is a message), ``campaign_append`` once per page of at most
``PAGE_ROWS`` rows (``lua/campaign_append.lua``: recipients recorded queued, the page pushed for the
runner, duplicates found by the records themselves), then ``campaign_ready`` (scheduled or running,
listed, in the runner's active set). Until then the campaign is in no index and its keys expire after
``ttl_s`` (the intake's short TTL) unless written again: an intake killed mid-file leaves nothing for
long, and one that fails or is refused calls ``drop_campaign``. ``campaign_ready`` gives every key the
retention TTL. The meta's fields are README "Campaigns"'s; ``campaign_meta`` is in ``campaign_run.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from worker.store.base import StoreBase, fields
from worker.store.keys import Keys
from worker.store.records import Record, State, now_ms

PAGE_ROWS = 1000  # rows of a page at most (one Lua call at intake, one plan when fed)
Row = tuple[str, Mapping[str, str] | None]


def _keys(campaign_id: str) -> tuple[str, ...]:
    """Every key an intake writes, in campaign_append.lua's order, then the message's meta."""
    return (
        Keys.recipients(campaign_id),
        Keys.counts(campaign_id),
        Keys.campaign(campaign_id),
        Keys.campaign_pages(campaign_id),
        Keys.message(campaign_id),
    )


class CampaignsMixin(StoreBase):
    def create_campaign(self, campaign_id: str, meta: Mapping[str, str | int], ttl_s: int) -> None:
        """Write the campaign's meta (status ``submitting``) and its message's meta, expiring in
        ``ttl_s`` (s) until ``campaign_ready``."""
        message = {
            "kind": meta["kind"],
            "template": meta.get("template", ""),
            "created_ms": meta["created_ms"],
            "recipients": 0,
            "campaign": "1",
        }
        with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(Keys.campaign(campaign_id), mapping=fields({**meta, "status": "submitting"}))
            pipe.expire(Keys.campaign(campaign_id), ttl_s)
            pipe.hset(Keys.message(campaign_id), mapping=fields(message))
            pipe.expire(Keys.message(campaign_id), ttl_s)
            pipe.execute()

    def campaign_append(self, campaign_id: str, seq: int, rows: Sequence[Row], ttl_s: int) -> list[int]:
        """Record the phones of ``rows`` (at most ``PAGE_ROWS``, normalized) queued and push those new to
        the campaign as one page; ``seq`` numbers the calls of one intake from 1 (a call run twice counts
        once). Returns the positions (0-based) in ``rows`` of the duplicates: phones already recorded."""
        if len(rows) > PAGE_ROWS:
            raise ValueError(f"{len(rows)} rows in a page, at most {PAGE_ROWS}")
        args: list[str | int] = [Record(State.QUEUED, now_ms(), "").pack(), ttl_s, seq]
        for phone, own in rows:
            args += [phone, json.dumps([phone, dict(own) if own else None], ensure_ascii=False)]
        dups: list[int] = self._script("campaign_append")(keys=list(_keys(campaign_id)[:4]), args=args)
        return [position - 1 for position in dups]

    def campaign_ready(self, campaign_id: str, start_ms: int, totals: Mapping[str, str | int]) -> str:
        """Hand the campaign to the runner: ``totals`` (rows, rejected, parts...) written, status
        ``scheduled`` (``start_ms`` in the future) or ``running``, listed and active, every key kept for
        the retention. Returns the status."""
        now = now_ms()
        status = "scheduled" if start_ms > now else "running"
        meta = Keys.campaign(campaign_id)
        created, accepted = self.r.hmget(meta, ["created_ms", "accepted"])
        with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(meta, mapping=fields({**totals, "start_ms": start_ms, "status": status}))
            pipe.hdel(meta, "appended", "appended_dups")
            pipe.hset(Keys.message(campaign_id), "recipients", accepted or "0")
            for key in _keys(campaign_id):
                pipe.expire(key, self.ttl)
            pipe.zadd(Keys.campaigns, {campaign_id: int(created or now)})
            pipe.zremrangebyscore(Keys.campaigns, "-inf", now - self.ttl * 1000)
            pipe.sadd(Keys.campaigns_active, campaign_id)
            pipe.execute()
        return status

    def drop_campaign(self, campaign_id: str) -> None:
        """Remove everything an intake wrote (one that failed or was refused leaves nothing)."""
        with self.r.pipeline(transaction=True) as pipe:
            pipe.delete(*_keys(campaign_id), Keys.plan(campaign_id), Keys.campaign_held(campaign_id))
            pipe.zrem(Keys.campaigns, campaign_id)
            pipe.srem(Keys.campaigns_active, campaign_id)
            pipe.execute()
