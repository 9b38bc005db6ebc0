"""Inbound replies (MO) and opt-outs: the word rule (``worker.replies``), ``Store.record_inbound`` on the
session's real Redis (dedupe, events, opt-out and opt-in, a bounded stream, hostile text), the opt-out
list's own API, and ``tasks.inbound.poll_inbound`` against the simulator over HTTP.
"""

from __future__ import annotations

import os

import pytest
import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from config.returnpath import DEFAULT_OPTIN_WORDS, DEFAULT_OPTOUT_WORDS
from config.settings import Settings
from providers.base import InboundMessage
from providers.simulator.server import SimulatorServer
from worker.replies import Intent, fold, intent
from worker.store import Keys, Store
from worker.store.inbound import MAX_CONTENT_CHARS

P1, P2 = "13800138000", "13900139000"


@pytest.fixture
def store(r: redis.Redis, settings: Settings) -> Store:
    return Store(r, settings)


def reply(
    content: str, phone: str = P1, at: str = "2026-11-27 10:00:00", provider: str = "xiaorui"
) -> InboundMessage:
    return InboundMessage(provider, phone, content, at)


def events(r: redis.Redis, kind: str) -> list[dict[str, str]]:
    return [fields for _, fields in r.xrange(Keys.events) if fields["type"] == kind]


# -- the word rule ------------------------------------------------------------------------------------

WORDS = (*DEFAULT_OPTOUT_WORDS, "BAOMI")


@pytest.mark.parametrize(
    "content",
    [
        "退订",
        "ＴＤ",
        "td!",
        " Stop ",
        "unsubscribe",
        "UnSubscribe.",
        "T",
        "n",
        "退订。",
        "T.D.",
        "ｓｔｏｐ！",
        "TD\u200b",
        "\tTD\n",
        "baomi",
        "ＢＡＯＭＩ",
    ],
)
def test_opt_out_words_match_whatever_their_case_width_spacing_and_punctuation(content: str) -> None:
    assert intent(content, WORDS, DEFAULT_OPTIN_WORDS) is Intent.OPTOUT


@pytest.mark.parametrize(
    "content",
    [
        "TD please call me",
        "退订了吗？我想问问",
        "STOPPED",
        "T D X",
        "",
        "   ",
        "!!!",
        "TD😀",
        "NN",
        "TT",
        "10086",
        "x" * 10_000,
    ],
)
def test_anything_else_is_a_plain_reply(content: str) -> None:
    assert intent(content, WORDS, DEFAULT_OPTIN_WORDS) is Intent.NONE


def test_opt_in_words_and_a_word_in_both_lists_counts_as_opt_out() -> None:
    assert intent("Start", WORDS, DEFAULT_OPTIN_WORDS) is Intent.OPTIN
    assert intent("订阅!", WORDS, DEFAULT_OPTIN_WORDS) is Intent.OPTIN
    assert intent("start", ("START",), ("start",)) is Intent.OPTOUT


def test_a_word_that_folds_to_nothing_matches_no_empty_reply() -> None:
    assert fold("!! ") == ""
    assert intent("", ("!!",), ()) is Intent.NONE and intent("?", ("!!",), ()) is Intent.NONE


def test_configured_extra_words_are_honoured(store: Store, settings: Settings) -> None:
    custom = Store(
        store.r,
        settings.model_copy(
            update={"optout": settings.optout.model_copy(update={"words": (*settings.optout.words, "BAOMI")})}
        ),
    )
    assert custom.record_inbound([reply("Ｂａｏｍｉ。")]) == 1
    assert custom.optout(P1) is not None


# -- record_inbound -----------------------------------------------------------------------------------


def test_a_reply_is_stored_and_published_once_however_often_it_is_handed_over(
    store: Store, r: redis.Redis
) -> None:
    first = [reply("你好"), reply("你好", P2)]
    assert store.record_inbound(first) == 2
    assert store.record_inbound([*first, reply("你好")]) == 0  # a page replayed, a push retried
    assert store.record_inbound([reply("你好", at="2026-11-27 10:05:00")]) == 1  # said again, later
    assert r.xlen(Keys.inbound) == 3
    published = events(r, "inbound")
    assert [(e["phone"], e["content"], e["sent_at"]) for e in published] == [
        (P1, "你好", "2026-11-27 10:00:00"),
        (P2, "你好", "2026-11-27 10:00:00"),
        (P1, "你好", "2026-11-27 10:05:00"),
    ]
    assert {e["v"] for e in published} == {"1"} and events(r, "optout") == []
    assert all(0 < r.ttl(key) <= 6 * 3600 for key in r.scan_iter(Keys.inbound_seen("*")))


def test_an_opt_out_reply_suppresses_the_number_and_an_opt_in_reply_lifts_it(
    store: Store, r: redis.Redis
) -> None:
    assert store.record_inbound([reply("ＴＤ！", phone="+86 138 0013 8000", provider="tencent")]) == 1
    assert r.smembers(Keys.optout) == {P1}  # the number as every send spells it
    info = store.optout(P1)
    assert info is not None and (info.provider, info.source, info.word) == ("tencent", "reply", "ＴＤ！")
    assert store.record_inbound([reply("退订", at="later")]) == 1  # already out: no second change
    (change,) = events(r, "optout")
    assert (change["phone"], change["action"], change["provider"]) == (P1, "added", "tencent")
    assert store.record_inbound([reply("start", at="later still")]) == 1
    assert r.smembers(Keys.optout) == set() and store.optout(P1) is None
    assert [e["action"] for e in events(r, "optout")] == ["added", "removed"]
    assert [e["action"] for e in events(r, "inbound")] == ["optout", "optout", "optin"]


def test_a_reply_from_no_number_is_kept_but_opts_nothing_out(store: Store, r: redis.Redis) -> None:
    assert store.record_inbound([reply("TD", phone="10086")]) == 1
    assert r.scard(Keys.optout) == 0
    (stored,) = store.inbound()
    assert (stored.phone, stored.action) == ("10086", "")


def test_the_stream_is_bounded_by_length_and_by_age(r: redis.Redis, settings: Settings) -> None:
    small = settings.model_copy(update={"optout": settings.optout.model_copy(update={"inbound_maxlen": 10})})
    store = Store(r, small)
    for i in range(30):
        store.record_inbound([reply(f"hello {i}.{j}", at=str(i)) for j in range(10)])
    assert r.xlen(Keys.inbound) <= 110  # approximate trimming (whole nodes of 100): far under the 300
    r.delete(Keys.inbound)
    r.xadd(Keys.inbound, {"phone": P1, "content": "old"}, id="1000-0")  # older than the retention
    store.record_inbound([reply("new")])
    assert [x.content for x in store.inbound()] == ["new"]


def test_hostile_content_is_stored_cut_to_its_bound(store: Store) -> None:
    hostile = [
        "\x00\x01\x1b[31m",
        "😀" * 50,
        "x" * 10_240,
        "\ud800 lone surrogate",
        '{"a": [1, 2]}\\"',
        "\u202e",
    ]
    assert store.record_inbound([reply(text, at=str(i)) for i, text in enumerate(hostile)]) == len(hostile)
    stored = [x.content for x in store.inbound()]
    assert stored[0] == hostile[0] and stored[1] == hostile[1] and stored[4] == hostile[4]
    assert stored[2] == "x" * MAX_CONTENT_CHARS and stored[3] == "? lone surrogate"


@given(
    content=st.text(max_size=300),
    phone=st.one_of(st.just(P1), st.text(max_size=80)),
    at=st.text(max_size=40),
    provider=st.one_of(st.sampled_from(["xiaorui", "tencent", "ihuyi", "infocloud"]), st.text(max_size=80)),
)
@hsettings(
    max_examples=int(os.environ.get("SMSD_PROPERTY_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_any_reply_is_recorded_once_and_read_back(
    store: Store, content: str, phone: str, at: str, provider: str
) -> None:
    message = InboundMessage(provider, phone, content, at, ext=content[:5])
    store.r.delete(Keys.optout)
    new = store.record_inbound([message, message])
    assert new in (0, 1)  # 0: an earlier example was the same reply
    assert store.record_inbound([message]) == 0
    latest = store.inbound(limit=1)
    assert latest and isinstance(latest[0].content, str)
    asked = intent(content, store.settings.optout.words, store.settings.optout.optin_words)
    if new and phone == P1 and asked is Intent.OPTOUT:
        assert store.r.sismember(Keys.optout, P1)


# -- the opt-out list ---------------------------------------------------------------------------------


def test_add_and_remove_publish_only_real_changes(store: Store, r: redis.Redis) -> None:
    assert store.add_optout(P1) is True and store.add_optout(P1) is False
    assert [(o.phone, o.source) for o in store.optouts()] == [(P1, "cli")]
    assert store.remove_optout(P1) is True and store.remove_optout(P1) is False
    assert [e["action"] for e in events(r, "optout")] == ["added", "removed"]
    assert store.optouts() == [] and r.hlen(Keys.optout_info) == 0


def test_the_inbound_listing_filters_by_time_and_phone(store: Store, r: redis.Redis) -> None:
    store.record_inbound([reply(f"m{i}", phone=P1 if i % 2 else P2, at=str(i)) for i in range(2500)])
    mine = store.inbound(phone=P1, limit=5)
    assert [x.content for x in mine] == ["m2491", "m2493", "m2495", "m2497", "m2499"]
    assert len(store.inbound(limit=2500)) == 2500
    assert store.inbound(since_ms=mine[-1].received_ms + 60_000) == []


# -- pulling ------------------------------------------------------------------------------------------


def test_poll_inbound_pulls_stores_and_records_replies(
    sim: SimulatorServer, store: Store, r: redis.Redis
) -> None:
    from tasks.inbound import poll_inbound

    sim.state.add_inbound("xiaorui", {"mobile": P1, "content": "TD"})
    sim.state.add_inbound("xiaorui", {"mobile": P2, "content": "收到，谢谢"})
    sim.state.add_inbound("tencent", {"phone": P2, "content": "退订"})
    assert poll_inbound("xiaorui") == 2
    assert poll_inbound("tencent") == 1
    assert poll_inbound("xiaorui") == 0
    assert r.smembers(Keys.optout) == {P1, P2}
    assert {(x.provider, x.phone) for x in store.inbound()} == {
        ("xiaorui", P1),
        ("xiaorui", P2),
        ("tencent", P2),
    }
    assert r.xlen(Keys.inbound_inbox) == 0  # every page let go once recorded


def test_poll_inbound_keeps_the_cadence_held_in_redis(
    sim: SimulatorServer, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from config.settings import get_settings
    from tasks import inbound

    pulls: list[int] = []

    def one_reply_a_pull(self: object) -> tuple[InboundMessage, ...]:  # a vendor with replies to spare
        pulls.append(1)
        return (reply("one at a time", at=str(len(pulls))),)

    monkeypatch.setattr("providers.xiaorui.XiaoruiProvider.poll_inbound", one_reply_a_pull)
    monkeypatch.setenv("SMSD_XIAORUI__QUERY_PER_MINUTE", "2")
    get_settings.cache_clear()
    try:
        assert inbound.poll_inbound("xiaorui") == 2  # two pulls, then the window says wait
        assert inbound.poll_inbound("xiaorui") == 0  # a second beat, a manual run: no pull at all
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert len(pulls) == 2


def test_a_page_whose_poller_died_is_recorded_by_the_next_run(
    sim: SimulatorServer, store: Store, r: redis.Redis
) -> None:
    from tasks import inbound

    entry = store.stash_inbound("xiaorui", [reply("TD")])
    assert inbound.drain_inbound(store) == 0  # not orphaned yet: its poller may still be on it
    ((stored_id, page),) = r.xrange(Keys.inbound_inbox)
    assert stored_id == entry
    r.delete(Keys.inbound_inbox)
    r.xadd(Keys.inbound_inbox, page, id="1000-0")  # the same page, stored long ago by a poller that died
    assert inbound.poll_inbound("xiaorui") == 1
    assert r.xlen(Keys.inbound_inbox) == 0 and r.sismember(Keys.optout, P1)


def test_a_misspelt_opt_out_kind_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from config.settings import SettingsError, get_settings

    monkeypatch.setenv("SMSD_OPTOUT__KINDS", '["notify", "marketting"]')
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError, match="SMSD_OPTOUT__KINDS: unknown kind 'marketting'"):
            get_settings()
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_a_failed_pull_ends_the_run_quietly(sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from providers.errors import TransientError
    from tasks.inbound import poll_inbound

    def busy(self: object) -> tuple[InboundMessage, ...]:
        raise TransientError("xiaorui: too many connections", provider="xiaorui", code="21")

    monkeypatch.setattr("providers.xiaorui.XiaoruiProvider.poll_inbound", busy)
    assert poll_inbound("xiaorui") == 0


def test_a_page_is_kept_when_recording_it_fails(
    sim: SimulatorServer, store: Store, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.inbound import apply_inbound_page

    def redis_gone(self: Store, replies: object) -> int:
        raise redis.ConnectionError("Redis went away")

    monkeypatch.setattr(Store, "record_inbound", redis_gone)
    with pytest.raises(redis.ConnectionError):
        apply_inbound_page(store, "xiaorui", [reply("TD")])
    monkeypatch.undo()
    ((_, page),) = r.xrange(Keys.inbound_inbox)  # kept for drain_inbound, not lost with the pull
    assert page["provider"] == "xiaorui" and "TD" in page["page"]


def test_two_pollers_at_once_keep_the_pull_cadence(
    sim: SimulatorServer, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two beats (or a beat and a manual run) pulling together: the vendor sees at most
    ``query_per_minute`` pulls in the minute, counted by the simulator, and no reply is lost."""
    from concurrent.futures import ThreadPoolExecutor

    from config.settings import get_settings
    from tasks.inbound import poll_inbound

    for i in range(5000):  # full pages of 1000: each poller would pull again at once
        sim.state.add_inbound("xiaorui", {"mobile": P1, "content": f"reply {i}", "time": str(i)})
    monkeypatch.setenv("SMSD_XIAORUI__QUERY_PER_MINUTE", "3")
    get_settings.cache_clear()
    try:
        with ThreadPoolExecutor(2) as pool:
            new = sum(pool.map(poll_inbound.run, ["xiaorui", "xiaorui"]))  # .run: no Celery request stack
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert sim.state.counters("xiaorui").requests == 3
    assert new == 3000 == r.xlen(Keys.inbound)


def test_a_pull_says_when_it_ran_and_how(
    sim: SimulatorServer, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from providers.errors import TransientError
    from tasks.inbound import poll_inbound

    poll_inbound("xiaorui")
    assert r.hget(Keys.polled("xiaorui"), "inbound").endswith("|ok")

    def busy(self: object) -> tuple[InboundMessage, ...]:
        raise TransientError("xiaorui: too many connections", provider="xiaorui", code="21")

    monkeypatch.setattr("providers.xiaorui.XiaoruiProvider.poll_inbound", busy)
    poll_inbound("xiaorui")
    assert r.hget(Keys.polled("xiaorui"), "inbound").endswith("|TransientError 21")
