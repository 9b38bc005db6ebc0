"""Campaign control (worker/campaign/control.py) against a real Redis: status moves, refusals, the view,
the report. No worker: the runner's side is in tests/e2e/test_campaigns.py."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import redis

from worker.campaign import control
from worker.campaign.control import CampaignStateError, UnknownCampaign
from worker.store import Keys, Outcome, Record, Recording, State, Store, now_ms

PAGE_ROWS = 1000
Row = tuple[str, Mapping[str, str] | None]


def seed_campaign(
    store: Store,
    rows: Sequence[Row],
    *,
    kind: str = "notify",
    template: str = "bill",
    params: Mapping[str, str] | None = None,
    status: str = "running",
    start_ms: int = 0,
    window: str = "",
    provider: str = "",
    created_ms: int | None = None,
    page_rows: int = PAGE_ROWS,
) -> str:
    """A campaign as the intake leaves it (meta, index, pages of ``page_rows`` rows, recipients recorded
    queued), written straight into Redis."""
    campaign_id = uuid.uuid4().hex
    at = created_ms or now_ms()
    pages = [rows[i : i + page_rows] for i in range(0, len(rows), page_rows)]
    meta = {
        "name": f"test {campaign_id[:6]}", "kind": kind, "template": template, "content": "",
        "params": json.dumps(dict(params or {})), "provider": provider, "window": window,
        "start_ms": start_ms, "created_ms": at, "status": status, "rows": len(rows),
        "accepted": len(rows), "rejected": 0, "duplicates": 0, "pages": len(pages), "fed": 0,
        "chunks_fed": 0, "parts": len(rows), "encoding": "utf-8", "file": "test.csv",
        "held_reason": "", "held_until_ms": 0, "finished_ms": 0, "error": "",
    }
    r = store.r
    with r.pipeline(transaction=False) as pipe:
        pipe.hset(Keys.campaign(campaign_id), mapping=meta)  # type: ignore[arg-type]
        pipe.hset(Keys.message(campaign_id), mapping={  # type: ignore[arg-type]
            "kind": kind, "template": template, "created_ms": at, "recipients": len(rows), "campaign": "1"})
        for page in pages:
            encoded = json.dumps([[phone, dict(own) if own else None] for phone, own in page])
            pipe.rpush(Keys.campaign_pages(campaign_id), encoded)
        pipe.zadd(Keys.campaigns, {campaign_id: at})
        if status != "submitting":
            pipe.sadd(Keys.campaigns_active, campaign_id)
        pipe.execute()
    queued = Record(State.QUEUED, at, "").pack()
    for page in pages:
        store._script("init_queued")(
            keys=[Keys.recipients(campaign_id), Keys.counts(campaign_id)],
            args=[queued, store.ttl, *[phone for phone, _ in page]],
        )
    return campaign_id


def phones(n: int, prefix: str = "138") -> list[Row]:
    return [(f"{prefix}{i:08d}", None) for i in range(n)]


@pytest.fixture
def store(r: redis.Redis, settings) -> Store:  # type: ignore[no-untyped-def]
    return Store(r, settings)


def test_pause_resume_cancel_move_the_status_and_repeat_as_no_ops(store: Store) -> None:
    cid = seed_campaign(store, phones(3))
    assert control.pause(store, cid).status == "paused"
    assert control.pause(store, cid).status == "paused"
    assert control.resume(store, cid).status == "running"
    assert control.resume(store, cid).status == "running"
    view = control.cancel(store, cid)
    assert (view.status, view.done) == ("cancelling", False)
    assert control.cancel(store, cid).status == "cancelling"
    with pytest.raises(CampaignStateError, match="cannot resume, it is being cancelled"):
        control.resume(store, cid)


def test_resume_of_a_paused_campaign_whose_start_is_ahead_is_scheduled_again(store: Store) -> None:
    cid = seed_campaign(store, phones(1), status="scheduled", start_ms=now_ms() + 3_600_000)
    control.pause(store, cid)
    view = control.resume(store, cid)
    assert view.status == "scheduled"
    assert view.start is not None and view.start.utcoffset() is not None


@pytest.mark.parametrize(
    ("status", "action", "reason"),
    [
        ("cancelled", "resume", "it was cancelled"),
        ("cancelled", "pause", "it was cancelled"),
        ("done", "cancel", "it is done"),
        ("done", "pause", "it is done"),
        ("submitting", "pause", "it is still being submitted"),
        ("cancelling", "pause", "it is being cancelled"),
    ],
)
def test_actions_not_allowed_say_why_in_one_line(store: Store, status: str, action: str, reason: str) -> None:
    cid = seed_campaign(store, phones(1), status=status)
    with pytest.raises(CampaignStateError) as caught:
        getattr(control, action)(store, cid)
    assert str(caught.value) == f"campaign {cid}: cannot {action}, {reason}"
    assert store.campaign_meta(cid)["status"] == status


@pytest.mark.parametrize("given", ["", "nope", "0" * 31, "G" * 32, "a" * 33, "../../etc/passwd", "a\nb"])
def test_a_malformed_id_is_an_unknown_campaign(store: Store, given: str) -> None:
    for call in (control.get_campaign, control.pause, control.resume, control.cancel):
        with pytest.raises(UnknownCampaign, match="not a campaign id"):
            call(store, given)
    with pytest.raises(UnknownCampaign):
        control.write_report(store, given, io.StringIO())


def test_an_unknown_id_is_an_unknown_campaign_and_nothing_is_written(store: Store, r: redis.Redis) -> None:
    missing = uuid.uuid4().hex
    for call in (control.get_campaign, control.pause, control.cancel, control.resume):
        with pytest.raises(UnknownCampaign, match="no such campaign"):
            call(store, missing)
    assert r.exists(Keys.campaign(missing)) == 0


def test_list_is_newest_first_and_limited(store: Store) -> None:
    ids = [seed_campaign(store, phones(1), created_ms=now_ms() - 1000 * (5 - i)) for i in range(5)]
    listed = control.list_campaigns(store, limit=3)
    assert [v.id for v in listed] == ids[::-1][:3]
    assert control.list_campaigns(store, limit=0)  # at least one


def test_view_counts_every_state_and_serializes(store: Store) -> None:
    cid = seed_campaign(store, phones(4), kind="marketing", window="09:00-18:00")
    store.hold_campaign(cid, "quiet hours 21:00-08:00", now_ms() + 60_000)
    view = control.get_campaign(store, cid)
    assert view.counts[State.QUEUED] == 4 and view.counts[State.CANCELLED] == 0
    assert set(view.counts) == {s.value for s in State}
    data = view.to_json()
    assert json.loads(json.dumps(data)) == data
    assert data["held_reason"] == "quiet hours 21:00-08:00" and data["held_until"].endswith("+08:00")
    assert data["window"] == "09:00-18:00" and data["start"] is None and data["done"] is False
    summary = control.summary(view)
    assert (summary["pending"], summary["settled"], summary["rows"]) == (4, 0, 4)
    assert (summary["refused"], summary["rejected"], summary["queued"]) == (0, 0, 4)


def test_report_has_one_line_per_recipient_with_zone_and_parts(store: Store) -> None:
    rows = phones(3)
    cid = seed_campaign(store, rows)
    sent, failed, untouched = (phone for phone, _ in rows)
    outcomes = [
        Outcome(sent, State.SUBMITTED, "0", "", "vid-1", 2),
        Outcome(failed, State.FAILED, "60001", "bad number, 不存在"),
    ]
    store.record(cid, "infocloud", Recording(outcomes), from_states=(State.QUEUED,))
    out = io.StringIO()
    control.write_report(store, cid, out)
    lines = list(csv.reader(io.StringIO(out.getvalue())))
    assert lines[0] == list(control.REPORT_COLUMNS)
    by_phone = {line[0]: line for line in lines[1:]}
    assert set(by_phone) == {sent, failed, untouched}
    assert by_phone[sent][1:5] == ["submitted", "infocloud", "0", ""] and by_phone[sent][6] == "2"
    assert by_phone[failed][1:5] == ["failed", "infocloud", "60001", "bad number, 不存在"]
    assert by_phone[failed][6] == "0" and by_phone[untouched][1] == "queued"
    assert by_phone[sent][5].endswith("+08:00")
    view = control.get_campaign(store, cid)
    assert view.parts == 2 and control.summary(view)["sent"] == 1


# -- the runner's tick, without a worker (its chunks stay queued) -------------------------------------

ORDER: dict[str, Any] = {"template": "order_shipped", "params": {"order": "A1", "tracking": "SF1"}}


def local_ms(hour: int, minute: int, second: int = 0, day: int = 2) -> int:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    at = datetime(2026, 12, day, hour, minute, second, tzinfo=ZoneInfo("Asia/Shanghai"))
    return int(at.timestamp() * 1000)


@pytest.mark.parametrize(
    ("kind", "window", "at", "reason", "until"),
    [
        ("notify", "", (22, 30), "", None),
        ("marketing", "", (12, 0), "", None),
        ("marketing", "", (22, 30), "quiet hours 21:00-08:00", (3, 8, 0)),
        ("marketing", "", (7, 59, 59), "quiet hours 21:00-08:00", (2, 8, 0)),
        ("marketing", "", (21, 0), "quiet hours 21:00-08:00", (3, 8, 0)),
        ("notify", "09:00-18:00", (8, 30), "outside its window 09:00-18:00", (2, 9, 0)),
        ("notify", "09:00-18:00", (18, 0), "outside its window 09:00-18:00", (3, 9, 0)),
        ("notify", "22:00-02:00", (23, 0), "", None),
        ("marketing", "07:00-22:00", (7, 30), "quiet hours 21:00-08:00", (2, 8, 0)),
        ("marketing", "07:00-22:00", (21, 30), "quiet hours 21:00-08:00", (3, 8, 0)),
        ("marketing", "10:00-12:00", (7, 0), "quiet hours 21:00-08:00", (2, 10, 0)),
    ],
)
def test_holds_follow_quiet_hours_and_the_window(  # type: ignore[no-untyped-def]
    settings, kind: str, window: str, at: tuple[int, ...], reason: str, until: tuple[int, int, int] | None
) -> None:
    from tasks.campaign import held

    hold = held({"kind": kind, "window": window}, settings, local_ms(*at))
    assert hold.reason == reason
    assert hold.until_ms == (local_ms(until[1], until[2], day=until[0]) if until else 0)


def test_a_window_inside_quiet_hours_is_held_a_day_at_a_time(settings) -> None:  # type: ignore[no-untyped-def]
    from tasks.campaign import held

    now = local_ms(22, 10)
    hold = held({"kind": "marketing", "window": "22:00-23:00"}, settings, now)
    assert hold.reason == "quiet hours 21:00-08:00" and hold.until_ms == now + 86_400_000


def test_the_target_is_a_share_of_the_vendors_pace(settings) -> None:  # type: ignore[no-untyped-def]
    from tasks.campaign import target

    rate = settings.vendor("infocloud").requests_per_second
    assert target(settings, "infocloud", 1) == int(rate * settings.campaign.lookahead_s)
    assert target(settings, "infocloud", 2) == int(rate * settings.campaign.lookahead_s / 2)
    assert target(settings, "infocloud", 10_000) == 2 and target(settings, "", 1) == 2


def test_a_tick_starts_a_due_campaign_feeds_it_and_moves_the_cursor_once_per_page(store: Store) -> None:
    from tasks.campaign import run_tick

    later = seed_campaign(store, phones(10, "135"), status="scheduled", start_ms=now_ms() + 60_000, **ORDER)
    cid = seed_campaign(store, phones(2500, "136"), status="scheduled", start_ms=now_ms() - 1, **ORDER)
    assert run_tick(store, store.settings, now_ms()) == {"scheduled": 1, "running": 1}
    meta = store.campaign_meta(cid)
    assert (meta["status"], meta["fed"], meta["chunks_fed"]) == ("running", "3", "3")
    assert store.r.exists(Keys.campaign_pages(cid)) == 0  # every page fed
    plan = store.r.hgetall(Keys.plan(cid))
    assert sorted(map(int, plan)) == [0, 1000, 2000]
    assert {json.loads(job)["campaign"] for job in plan.values()} == {1}
    assert store.queue_length("sms.bulk") == 3
    assert store.campaign_meta(later)["status"] == "scheduled"
    assert not store.campaign_fed(cid, 1, 1)  # a second feeder of page 1 moves nothing
    assert store.campaign_meta(cid)["chunks_fed"] == "3"


def test_a_page_fed_again_after_a_crash_reopens_the_same_chunks(store: Store) -> None:
    from tasks.campaign import Feeder

    cid = seed_campaign(store, phones(1500, "137"), **ORDER)
    meta = store.campaign_meta(cid)
    Feeder(store, store.settings, cid, meta, most=100, fed=0, pages=2, in_flight=0).feed_one()
    job = store.chunk_job(cid, 0)
    store.r.hset(Keys.campaign(cid), mapping={"fed": 0, "chunks_fed": 0})  # it died before the cursor moved
    again = Feeder(store, store.settings, cid, meta, most=100, fed=0, pages=2, in_flight=0)
    assert again.feed_one() and again.feed_one() and not again.feed_one()
    assert sorted(map(int, store.r.hgetall(Keys.plan(cid)))) == [0, 1000]  # chunk 0 opened again, as it was
    assert store.chunk_job(cid, 0) == job
    meta = store.campaign_meta(cid)
    assert (meta["fed"], meta["chunks_fed"]) == ("2", "2")
    assert store.queue_length("sms.bulk") == 3  # chunk 0 twice: its second run finds nobody left to send
    assert store.progress(cid)[State.QUEUED] == 1500


def test_a_locked_campaign_is_left_to_the_tick_that_holds_it(store: Store) -> None:
    from tasks.campaign import run_tick

    cid = seed_campaign(store, phones(5, "138"), **ORDER)
    token = store.lock_campaign(cid, 10_000)
    assert token and store.lock_campaign(cid, 10_000) is None
    assert run_tick(store, store.settings, now_ms()) == {"locked": 1}
    store.unlock_campaign(cid, "not-ours")
    assert run_tick(store, store.settings, now_ms()) == {"locked": 1}
    store.unlock_campaign(cid, token)
    assert run_tick(store, store.settings, now_ms()) == {"running": 1}


def test_cancelling_records_every_unsent_recipient_cancelled_and_ends_the_campaign(store: Store) -> None:
    from tasks.campaign import run_tick

    rows = phones(2500, "139")
    cid = seed_campaign(store, rows, **ORDER)
    sent = [phone for phone, _ in rows[:10]]
    outcomes = [Outcome(p, State.SUBMITTED) for p in sent]
    store.record(cid, "infocloud", Recording(outcomes), from_states=("queued",))
    control.cancel(store, cid)
    assert run_tick(store, store.settings, now_ms()) == {"cancelled": 1}
    view = control.get_campaign(store, cid)
    assert view.status == "cancelled" and view.done and view.finished is not None
    assert {s: n for s, n in view.counts.items() if n} == {"submitted": 10, "cancelled": 2490}
    assert cid not in store.active_campaigns() and store.r.exists(Keys.campaign_pages(cid)) == 0
    assert run_tick(store, store.settings, now_ms()) == {}


def test_a_campaign_is_done_only_when_every_page_is_fed_and_nobody_is_left_unsent(store: Store) -> None:
    from tasks.campaign import run_tick

    rows = phones(3, "133")
    cid = seed_campaign(store, rows, **ORDER)
    run_tick(store, store.settings, now_ms())  # fed
    assert run_tick(store, store.settings, now_ms()) == {"running": 1}  # still queued
    outcomes = [Outcome(p, State.SUBMITTED) for p, _ in rows]
    store.record(cid, "infocloud", Recording(outcomes), from_states=("queued",))
    assert run_tick(store, store.settings, now_ms()) == {"done": 1}
    assert control.get_campaign(store, cid).status == "done"


def test_a_long_cancel_goes_on_from_tick_to_tick(  # type: ignore[no-untyped-def]
    r: redis.Redis, settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.campaign
    from tasks.campaign import run_tick

    monkeypatch.setattr(tasks.campaign, "FEED_BUDGET_S", 0.0)
    monkeypatch.setattr(tasks.campaign, "CANCEL_SCAN", 10)
    fast = settings.model_copy(update={"campaign": settings.campaign.model_copy(update={"tick_s": 0.002})})
    store = Store(r, fast)
    cid = seed_campaign(store, phones(2000, "132"), **ORDER)
    control.cancel(store, cid)
    ticks = [run_tick(store, fast, now_ms()) for _ in range(3)]
    assert ticks[0] == {"cancelling": 1} and int(store.campaign_meta(cid)["cancel_cursor"]) > 0
    while run_tick(store, fast, now_ms()):
        pass
    view = control.get_campaign(store, cid)
    assert view.status == "cancelled" and {s: n for s, n in view.counts.items() if n} == {"cancelled": 2000}


def queued_args(r: redis.Redis, queue: str) -> list[list[Any]]:
    """The arguments of the tasks waiting in a Celery queue (kombu's Redis layout: one list per priority
    step, each message JSON with a base64 body of ``[args, kwargs, embed]``)."""
    import base64

    out = []
    for name in (queue, *(f"{queue}:{step}" for step in (3, 6, 9))):
        for raw in r.lrange(name, 0, -1):
            out.append(json.loads(base64.b64decode(json.loads(raw)["body"]))[0])
    return out


def test_the_lease_sweep_queues_a_lost_campaign_chunk_with_its_campaign_flag(store: Store) -> None:
    from tasks.campaign import run_tick
    from tasks.poll import sweep_leases

    cid = seed_campaign(store, phones(10, "131"), **ORDER)
    run_tick(store, store.settings, now_ms())
    assert [args[4] for args in queued_args(store.r, "sms.bulk")] == [True]
    store.r.delete("sms.bulk", "sms.bulk:3", "sms.bulk:6", "sms.bulk:9")  # the task is lost
    store.r.zadd(Keys.leases, {f"{cid}|0": 1})  # and its lease ran out
    assert sweep_leases()["requeued"] == 1
    (args,) = queued_args(store.r, "sms.bulk")
    assert args[0] == cid and args[2]["number"] == 0 and args[4] is True
