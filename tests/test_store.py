"""The store (``worker.store``), the one owner of recipient state, on the session's real Redis, and the
scheduled tasks of ``tasks.poll`` that drive it.

- its Lua speaks only in ``State`` values; a claim is safe to run twice; every key it writes expires;
- ``Store.record`` writes only over the states a step may leave, publishes what it wrote, keeps a settle
  deadline for every submitted recipient and ends a finished chunk's lease;
- events follow ``worker/events.py``'s format and the stream is trimmed by age;
- receipt pages are kept until applied (``apply_page``, ``drain_receipts``); the sweeps
  (``settle_overdue``, ``sweep_leases``, ``release_deferred``) and the receipt cadence (``poll_receipts``).
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis

import worker.events
from config.limits import parse_rules
from config.settings import Settings, get_settings
from providers.base import DeliveryState, RenderedTemplate
from providers.infocloud import InfocloudProvider, InfocloudSettings
from providers.simulator.core import FaultPlan, SimConfig
from providers.simulator.server import SimulatorServer
from tasks.dispatch import ChunkJob, run_chunk
from tasks.plan import ChunkSpec
from worker.events import StateEvent
from worker.store import Keys, Outcome, Record, Recording, State, Store, now_ms
from worker.store.client import lua_scripts

STALE_MS = 60_000
P1, P2, P3 = "13900000001", "13900000002", "13900000003"
TEMPLATE = RenderedTemplate("675871161745170001", ("A1", "SF"), ("order", "tracking"), "text")


@pytest.fixture
def store(r: redis.Redis, settings: Settings) -> Store:
    return Store(r, settings)


def states(store: Store, message_id: str) -> dict[str, str]:
    return {phone: rec.state.value for phone, rec in store.records(message_id).items()}


def events(r: redis.Redis) -> list[dict[str, str]]:
    return [fields for _, fields in r.xrange(Keys.events)]


# -- the Lua speaks in State values ------------------------------------------------------------------

NO_RECORD = "none"  # transition.lua's word for "no record yet" (Store.reject writes from it)
STATE_VALUES = {state.value for state in State}
_COMMENT_OR_STRING = re.compile(r'--\[\[.*?\]\]|--[^\n]*|"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'', re.S)
_LITERAL = re.compile(r'"((?:[^"\\\n]|\\.)*)"|\'((?:[^\'\\\n]|\\.)*)\'')
_NAME = r"\w*state\w*"  # a variable that holds a state: state, state_now, ...
_BEFORE = (
    re.compile(rf"\b{_NAME}\s*(?:==|~=)\s*$"),  # state == "x"
    re.compile(rf"\b{_NAME}\s*=\s*$"),  # local state = "x"
    re.compile(r"\brecord\(\s*$"),  # record("x", code, text): a record's first field
)
_AFTER = re.compile(rf"^\s*(?:==|~=)\s*{_NAME}\b")  # "x" == state
_STARTS_RECORD = re.compile(r"^\s*\.\.\s*SEP\s*\.\.")  # "x" .. SEP .. now ...: a record's fields


def state_words(source: str) -> set[str]:
    """The string literals of a Lua source that stand where a state stands: compared with or assigned to
    a state variable, given as a record's state, or starting a record built with ``.. SEP``."""
    code = _COMMENT_OR_STRING.sub(lambda m: " " if m[0].startswith("--") else m[0], source)
    found = set()
    for match in _LITERAL.finditer(code):
        before, after = code[: match.start()], code[match.end() :]
        starts_record = _STARTS_RECORD.match(after) and not re.search(r"\.\.\s*$", before)
        if any(p.search(before) for p in _BEFORE) or _AFTER.match(after) or starts_record:
            found.add(match[1] if match[1] is not None else match[2])
    return found


def test_the_state_finder_sees_every_place_a_state_stands() -> None:
    source = """
    -- "commented" is not code
    local state = "queud"
    if state_now == "sendin" or "retri" ~= state then end
    redis.call("HSET", KEYS[1], phone, record("opted-out", "OPTOUT", "the recipient opted out"))
    local rec = "submited" .. SEP .. now .. SEP .. provider .. SEP .. "" .. SEP .. code
    redis.call("HGET", KEYS[1], phone)
    for part in string.gmatch(rec .. SEP, "(.-)" .. SEP) do end
    """
    assert state_words(source) == {"queud", "sendin", "retri", "opted-out", "submited"}


def test_every_state_string_in_the_lua_is_a_state() -> None:
    scripts = lua_scripts()
    found = {name: state_words(source) for name, source in scripts.items()}
    # The finder is not blind: each script's known states are seen where they stand.
    assert {"queued", "retry", "sending", "opted_out", "rate_limited"} <= found["claim"]
    assert {"submitted", "sending"} <= found["settle"]
    assert NO_RECORD in found["transition"]
    assert NO_RECORD not in STATE_VALUES  # it can never be mistaken for a stored state
    unknown = {name: words - STATE_VALUES - {NO_RECORD} for name, words in found.items()}
    assert unknown == {name: set() for name in scripts}


# -- claims ------------------------------------------------------------------------------------------


def claim(store: Store, phones: list[str], message_id: str, token: str, stale_ms: int = STALE_MS) -> Any:
    return store.claim(message_id, "notify", "infocloud", phones, parse_rules(["2/1h"]), stale_ms, token)


def test_a_claim_run_twice_with_its_token_is_the_same_claim_and_charges_once(store: Store) -> None:
    first = claim(store, [P1, P2], "m1", "tok-a")
    again = claim(store, [P1, P2], "m1", "tok-a")  # the command retried after a dropped connection
    assert first.send == again.send == (P1, P2)
    assert claim(store, [P1], "m2", "tok-b").send == (P1,)  # 2 an hour: one charge so far, not two
    assert claim(store, [P1], "m3", "tok-c").limited  # now two


def test_another_token_sees_the_claim_in_flight_then_orphaned(store: Store) -> None:
    claim(store, [P1], "m1", "tok-a")
    other = claim(store, [P1], "m1", "tok-b")
    assert (other.send, other.in_flight, other.orphaned) == ((), (P1,), ())
    time.sleep(0.05)
    late = claim(store, [P1], "m1", "tok-b", stale_ms=10)
    assert (late.send, late.in_flight, late.orphaned) == ((), (), (P1,))
    assert store.records("m1")[P1].state == State.SENDING  # an orphan is reported, not taken over
    assert claim(store, [P1], "m2", "tok-c").send == (P1,)  # neither look charged anything


def test_an_opt_out_that_came_in_before_a_retry_still_holds(store: Store, r: redis.Redis) -> None:
    claim(store, [P1, P2], "m1", "tok-a")
    retries = [Outcome(P1, State.RETRY, "-1"), Outcome(P2, State.RETRY, "-1")]
    store.record("m1", "infocloud", Recording(retries))
    r.sadd(Keys.optout, P2)  # the reply came in between the attempts
    retry = claim(store, [P1, P2], "m1", "tok-b")
    assert (retry.send, retry.opted_out) == ((P1,), (P2,))
    assert store.records("m1")[P2].state == State.OPTED_OUT


def test_a_kind_exempt_from_opt_outs_sends_to_an_opted_out_phone(store: Store, r: redis.Redis) -> None:
    r.sadd(Keys.optout, P1)
    rules = parse_rules(["5/1h"])
    otp = store.claim("m1", "otp", "infocloud", [P1], rules, STALE_MS, "tok-a", honour_optout=False)
    marketing = store.claim("m2", "marketing", "infocloud", [P1], rules, STALE_MS, "tok-b")
    assert (otp.send, otp.opted_out) == ((P1,), ())
    assert (marketing.send, marketing.opted_out) == ((), (P1,))


def test_a_claim_that_refuses_every_phone_still_leaves_its_keys_expiring(
    store: Store, r: redis.Redis, settings: Settings
) -> None:
    claim(store, [P1, P2], "m1", "tok-a")
    claim(store, [P1, P2], "m2", "tok-b")
    limited = claim(store, [P1, P2], "m3", "tok-c")
    assert [phone for phone, _ in limited.limited] == [P1, P2] and limited.send == ()
    r.sadd(Keys.optout, P3)
    assert claim(store, [P3], "m4", "tok-d").opted_out == (P3,)
    for message_id in ("m3", "m4"):
        assert 0 < r.ttl(Keys.recipients(message_id)) <= settings.retention_s
    limit_keys = list(r.scan_iter(Keys.limit("notify", 0, 0).rsplit(":", 2)[0] + ":*"))
    assert limit_keys and all(r.ttl(key) > 0 for key in limit_keys)


# -- recording outcomes ------------------------------------------------------------------------------


def submitted(*phones: str, code: str = "200") -> Recording:
    return Recording([Outcome(p, State.SUBMITTED, code, vendor_id="B1") for p in phones])


def test_a_record_never_overwrites_a_receipt_that_came_first_and_says_only_what_it_wrote(
    store: Store, r: redis.Redis
) -> None:
    claim(store, [P1, P2], "m1", "tok-a")
    assert store.settle("m1", "infocloud", [(P1, State.DELIVERED, "DELIVRD")], "receipt") == 1
    assert store.record("m1", "infocloud", submitted(P1, P2)) == [P2]
    assert states(store, "m1") == {P1: "delivered", P2: "submitted"}
    calls = [StateEvent.decode(e) for e in events(r) if e["why"] == "call"]
    assert [(e.state, e.phones) for e in calls] == [("submitted", (P2,))]


def test_a_rejection_is_written_only_where_nothing_is_recorded(store: Store) -> None:
    claim(store, [P1], "m1", "tok-a")
    store.reject("m1", [(P1, "to: bad"), ("12345", "to: bad")])
    assert states(store, "m1") == {P1: "sending", "12345": "rejected"}


@pytest.mark.parametrize("code", ["200", "AMBIGUOUS"])
def test_every_submitted_outcome_gets_a_settle_deadline(
    store: Store, r: redis.Redis, settings: Settings, code: str
) -> None:
    claim(store, [P1], "m1", "tok-a")
    before = now_ms()
    store.record("m1", "infocloud", submitted(P1, code=code))
    deadline = r.zscore(Keys.settle, "m1|infocloud")
    assert deadline is not None
    assert abs(deadline - (before + settings.vendor("infocloud").settle_s * 1000)) < 2000


def test_failures_alone_set_no_settle_deadline(store: Store, r: redis.Redis) -> None:
    claim(store, [P1], "m1", "tok-a")
    store.record("m1", "infocloud", Recording([Outcome(P1, State.FAILED, "60001")]))
    assert r.zscore(Keys.settle, "m1|infocloud") is None


def test_the_chunk_lease_ends_only_when_the_chunk_is_done(store: Store, r: redis.Redis) -> None:
    from tasks.send import chunk_job

    job = chunk_job("notify", "sms.notify", ChunkSpec(0, "infocloud", (P1, P2), TEMPLATE))
    assert store.open_chunk("m1", 0, job, now_ms() + 60_000, queued=True)
    claim(store, [P1, P2], "m1", "tok-a")
    store.record("m1", "infocloud", submitted(P1), chunk=0)
    assert r.zscore(Keys.leases, "m1|0") is not None
    last = Recording([Outcome(P2, State.SUBMITTED, "200")], chunk_done=True)
    store.record("m1", "infocloud", last, chunk=0)
    assert r.zscore(Keys.leases, "m1|0") is None


def test_a_chunk_run_with_nothing_left_to_write_still_ends_its_lease(store: Store, r: redis.Redis) -> None:
    """A chunk run again (redelivered after its worker died, or queued by the lease sweep) whose
    recipients a receipt already settled writes no outcome; its lease must end all the same, and count
    the chunk done, or the sweep queues it forever and a campaign's pace never gets the chunk back."""
    from tasks.send import chunk_job

    job = chunk_job("notify", "sms.notify", ChunkSpec(0, "infocloud", (P1,), TEMPLATE))
    assert store.open_chunk("m1", 0, job, now_ms() + 60_000, queued=True)
    store.record("m1", "infocloud", Recording(chunk_done=True), chunk=0)
    assert r.zscore(Keys.leases, "m1|0") is None
    assert store.progress("m1")["chunks_done"] == 1


def test_a_chunk_is_opened_admitted_and_recorded_without_script_exists_even_after_a_flush(
    store: Store, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipelined scripts go as EVAL: no ``SCRIPT EXISTS`` round trip before them (redis-py's
    ``Pipeline.load_scripts``), and nothing to miss when Redis has lost its script cache (a restart)."""
    from tasks.send import chunk_job

    def no_script_exists(self: Any) -> None:
        raise AssertionError("a pipeline sent SCRIPT EXISTS")

    monkeypatch.setattr(redis.client.Pipeline, "load_scripts", no_script_exists)
    r.script_flush()
    job = chunk_job("notify", "sms.notify", ChunkSpec(0, "infocloud", (P1, P2), TEMPLATE))
    assert store.open_chunk("m1", 0, job, now_ms() + 60_000, queued=True)
    assert states(store, "m1") == {P1: "queued", P2: "queued"}
    gate, _ = store.admit("infocloud", 1000.0)
    assert gate.allowed
    claim(store, [P1, P2], "m1", "tok-a")
    r.script_flush()
    outcomes = [Outcome(P1, State.SUBMITTED, "200"), Outcome(P2, State.FAILED, "60001")]
    done = Recording(outcomes, chunk_done=True)
    store.record("m1", "infocloud", done, chunk=0)
    assert states(store, "m1") == {P1: "submitted", P2: "failed"}
    assert r.zscore(Keys.leases, "m1|0") is None


# -- events ------------------------------------------------------------------------------------------


def documented_state_fields() -> set[str]:
    """The field names of a state event, from the table in ``worker/events.py``'s docstring."""
    doc = worker.events.__doc__ or ""
    table = doc.split("::", 1)[1].strip("\n").split("\n\n", 1)[0]
    return {line.split()[0] for line in table.splitlines()}


def test_events_follow_the_documented_format(store: Store, r: redis.Redis) -> None:
    fields = documented_state_fields()
    assert {"v", "type", "at", "message_id", "state", "phones"} <= fields
    start = now_ms()
    claim(store, [P1, P2], "m1", "tok-a")
    store.record("m1", "infocloud", submitted(P1, P2))
    store.publish_sweep("settled", "m1", 2)
    end = now_ms()
    state_event, sweep_event = events(r)
    assert set(state_event) == fields
    assert state_event["v"] == worker.events.VERSION == "1"
    assert (state_event["type"], state_event["state"], state_event["why"]) == ("state", "submitted", "call")
    assert (state_event["count"], state_event["phones"]) == ("2", f"{P1},{P2}")
    assert start <= int(state_event["at"]) <= end
    expected = StateEvent("m1", "submitted", "infocloud", (P1, P2), "200", "call")
    assert StateEvent.decode(state_event) == expected
    # transition.lua writes the event itself: field for field, in order, what StateEvent.encode writes.
    assert list(state_event.items()) == list(expected.encode(int(state_event["at"])).items())
    assert set(sweep_event) == {"v", "type", "at", "action", "message_id", "count"}
    assert (sweep_event["v"], sweep_event["type"], sweep_event["action"]) == ("1", "sweep", "settled")
    assert start <= int(sweep_event["at"]) <= end


def test_the_stream_is_trimmed_by_age_not_by_count(store: Store, r: redis.Redis, settings: Settings) -> None:
    for i in range(1, 251):  # 250 entries of 1970: far older than the retention
        r.xadd(Keys.events, {"old": "1"}, id=f"{i}-0")
    store.publish_sweep("requeued", "m1", 1)
    left = events(r)
    assert len([e for e in left if "old" in e]) <= 150  # whole stream nodes of old entries went
    assert left[-1]["type"] == "sweep"
    r.delete(Keys.events)
    recent = now_ms() - settings.retention_s * 500  # half the retention ago
    for i in range(250):
        r.xadd(Keys.events, {"recent": "1"}, id=f"{recent}-{i}")
    store.publish_sweep("requeued", "m1", 1)
    assert r.xlen(Keys.events) == 251  # nothing within the retention is dropped


# -- receipts: kept until applied --------------------------------------------------------------------


def send(settings: Settings, r: redis.Redis, message_id: str, phones: list[str]) -> None:
    """One chunk through ``run_chunk`` to the simulator: the recipients submitted, receipts pending."""
    job = ChunkJob(message_id, "notify", ChunkSpec(0, "infocloud", tuple(phones), TEMPLATE))
    run_chunk(job, settings, Store(r, settings), provider(settings))
    assert set(states(Store(r, settings), message_id).values()) == {"submitted"}


def provider(settings: Settings) -> InfocloudProvider:
    return InfocloudProvider(settings.vendor("infocloud", InfocloudSettings), httpx.Client(timeout=2.0))


def test_a_page_is_kept_in_the_inbox_while_it_is_applied(
    sim: SimulatorServer, r: redis.Redis, settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.poll import apply_page

    send(settings, r, "m1", [P1, P2, P3])
    page = provider(settings).poll_receipts()
    real = store.apply_receipts
    inbox_while_applying: list[int] = []

    def spy(name: str, receipts: Any) -> int:
        inbox_while_applying.append(r.xlen(Keys.receipt_inbox))
        return real(name, receipts)

    monkeypatch.setattr(store, "apply_receipts", spy)
    assert apply_page(store, "infocloud", page) == 3
    assert inbox_while_applying == [1] and r.xlen(Keys.receipt_inbox) == 0
    assert set(states(store, "m1").values()) == {"delivered"}


def test_an_empty_page_still_settles_a_receipt_parked_before_its_index(store: Store, r: redis.Redis) -> None:
    from providers.base import Receipt
    from tasks.poll import apply_page

    claim(store, [P1], "m1", "tok-a")
    early = Receipt("xiaorui", P1, DeliveryState.DELIVERED, "DELIVRD", vendor_id="mid-1")
    assert apply_page(store, "xiaorui", [early]) == 0  # its message is not known yet: parked
    index = {Keys.vendor_batch("xiaorui", "mid-1"): "m1"}
    accepted = [Outcome(P1, State.SUBMITTED, "0", vendor_id="mid-1")]
    store.record("m1", "xiaorui", Recording(accepted, index=index))
    assert apply_page(store, "xiaorui", []) == 1  # the next poll finds nothing new, but tries the parked one
    assert store.records("m1")[P1].state == State.DELIVERED


def test_a_page_whose_apply_failed_stays_in_the_inbox(
    sim: SimulatorServer, r: redis.Redis, settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.poll import apply_page

    send(settings, r, "m1", [P1, P2])
    page = provider(settings).poll_receipts()

    def redis_gone(name: str, receipts: Any) -> int:
        raise redis.ConnectionError("Redis went away")

    monkeypatch.setattr(store, "apply_receipts", redis_gone)
    with pytest.raises(redis.ConnectionError):
        apply_page(store, "infocloud", page)
    ((_, name, kept),) = store.stale_receipt_pages(now_ms() + 1000)
    assert name == "infocloud" and sorted((rc.phone, rc.state) for rc in kept) == [
        (P1, DeliveryState.DELIVERED),
        (P2, DeliveryState.DELIVERED),
    ]


def test_a_page_left_by_a_dead_poller_is_applied_once_it_is_old_enough(
    sim: SimulatorServer, r: redis.Redis, settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.poll
    from tasks.poll import ORPHAN_PAGE_S, drain_receipts

    send(settings, r, "m1", [P1, P2, P3])
    store.stash_receipts("infocloud", provider(settings).poll_receipts())  # then the poller died
    assert drain_receipts() == 0  # a live poller may still be applying it
    assert r.xlen(Keys.receipt_inbox) == 1
    monkeypatch.setattr(tasks.poll, "now_ms", lambda: now_ms() + (ORPHAN_PAGE_S + 1) * 1000)
    assert drain_receipts() == 3
    assert r.xlen(Keys.receipt_inbox) == 0
    assert set(states(store, "m1").values()) == {"delivered"}
    sweeps = [e for e in events(r) if e["type"] == "sweep"]
    assert [(e["action"], e["count"]) for e in sweeps] == [("receipts_applied", "1")]


# -- the settle sweep --------------------------------------------------------------------------------


def test_the_settle_sweep_fails_what_no_receipt_settled_and_leaves_the_rest(
    r: redis.Redis, settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.poll import settle_overdue

    window_ms = settings.vendor("infocloud").settle_s * 1000
    long_ago = now_ms() - window_ms - 60_000
    with monkeypatch.context() as patch:  # recorded before the window (a plain "200", not ambiguous)
        patch.setattr("worker.store.recipients.now_ms", lambda: long_ago)
        store.record("m1", "infocloud", submitted(P1, P2), from_states=(NO_RECORD,))
    store.settle("m1", "infocloud", [(P2, State.DELIVERED, "DELIVRD")], "receipt")
    assert settle_overdue() == 1
    after = store.records("m1")
    assert (after[P1].state, after[P1].code) == (State.FAILED, "NO_RECEIPT")
    assert (after[P2].state, after[P2].code) == (State.DELIVERED, "DELIVRD")
    assert r.zscore(Keys.settle, "m1|infocloud") is None  # nothing left to wait for
    sweeps = [e for e in events(r) if e["type"] == "sweep"]
    assert [(e["action"], e["message_id"], e["count"]) for e in sweeps] == [("settled", "m1", "1")]
    assert settle_overdue() == 0


def test_the_settle_sweep_keeps_a_deadline_for_recipients_submitted_later(
    r: redis.Redis, settings: Settings, store: Store
) -> None:
    from tasks.poll import settle_overdue

    window_ms = settings.vendor("infocloud").settle_s * 1000
    old, fresh = now_ms() - window_ms - 1000, now_ms() - 1000
    key = Keys.recipients("m1")
    r.hset(key, P1, Record(State.SUBMITTED, old, "infocloud", "m1.0", "AMBIGUOUS").pack())
    r.hset(key, P2, Record(State.SUBMITTED, fresh, "infocloud", "574", "200").pack())
    r.hset(key, P3, Record(State.DELIVERED, old, "infocloud", "574", "DELIVRD").pack())
    r.zadd(Keys.settle, {"m1|infocloud": old + window_ms})  # read by the sweep before P2 was recorded
    assert settle_overdue() == 1
    assert states(store, "m1") == {P1: "failed", P2: "submitted", P3: "delivered"}
    assert r.zscore(Keys.settle, "m1|infocloud") == fresh + window_ms


# -- leases and deferred retries ---------------------------------------------------------------------


def queued_tasks(r: redis.Redis, queue: str) -> list[tuple[str, list[Any]]]:
    """The tasks waiting in ``queue`` as kombu's Redis transport keeps them: one list per priority step
    (``sms.notify`` for step 0, ``sms.notify:3`` ...), each message a JSON envelope with a base64 body."""
    found = []
    for name in [queue] + [f"{queue}:{step}" for step in (0, 3, 6, 9)]:
        for raw in r.lrange(name, 0, -1):
            envelope = json.loads(raw)
            args = json.loads(base64.b64decode(envelope["body"]))[0]
            found.append((envelope["headers"]["task"], args))
    return found


def test_queue_length_counts_every_priority_list(r: redis.Redis, store: Store) -> None:
    from tasks.send import dispatch_chunk

    dispatch_chunk.apply_async(("m1", "notify", {}), queue="sms.notify")  # fresh: the default step
    dispatch_chunk.apply_async(("m2", "notify", {}), queue="sms.notify", priority=0)  # a retry
    assert len(queued_tasks(r, "sms.notify")) == 2
    assert store.queue_length("sms.notify") == 2


def test_a_lost_chunk_is_queued_again_and_a_waiting_one_only_gets_time(
    r: redis.Redis, settings: Settings, store: Store
) -> None:
    from tasks.poll import sweep_leases
    from tasks.send import chunk_job

    spec = ChunkSpec(0, "infocloud", (P1, P2), TEMPLATE)
    store.open_chunk("m1", 0, chunk_job("notify", "sms.notify", spec), now_ms() - 1000, queued=True)
    r.zadd(Keys.leases, {"expired-message|0": 1})  # a lease whose message is gone
    assert sweep_leases() == {"requeued": 1, "extended": 0, "closed": 1}
    expected = ("tasks.send.dispatch_chunk", ["m1", "notify", spec.to_task(), 0, False])  # not a campaign
    assert queued_tasks(r, "sms.notify") == [expected]
    assert (r.zscore(Keys.leases, "m1|0") or 0) > now_ms()
    assert r.zscore(Keys.leases, "expired-message|0") is None
    sweeps = [e for e in events(r) if e["type"] == "sweep"]
    assert [(e["action"], e["message_id"], e["count"]) for e in sweeps] == [("requeued", "m1", "2")]

    store.extend_lease("m1", 0, now_ms() - 1)  # runs out again, its task still waiting in the queue
    assert sweep_leases() == {"requeued": 0, "extended": 1, "closed": 0}
    assert queued_tasks(r, "sms.notify") == [expected]
    assert (r.zscore(Keys.leases, "m1|0") or 0) > now_ms()


def test_each_due_deferred_retry_is_released_once(r: redis.Redis, store: Store) -> None:
    from tasks.poll import release_deferred

    for message_id, due in (("m1", now_ms() - 2000), ("m2", now_ms() - 1000), ("m3", now_ms() + 60_000)):
        store.defer({"args": [message_id, "notify", {}, 2], "queue": "sms.notify", "id": message_id}, due)
    assert release_deferred() == 2
    assert release_deferred() == 0
    released = queued_tasks(r, "sms.notify")
    assert sorted(args[0] for _, args in released) == ["m1", "m2"]
    assert all(args[3] == 2 for _, args in released)  # the attempt travels with it
    assert r.zcard(Keys.deferred) == 1  # m3 is not due yet


def test_a_lost_retry_is_queued_again_with_its_attempt(
    sim: SimulatorServer, r: redis.Redis, settings: Settings, store: Store
) -> None:
    from tasks.poll import sweep_leases
    from tasks.send import chunk_job, schedule_retry

    chunk = ChunkJob("m1", "notify", ChunkSpec(0, "infocloud", (P1, P2), TEMPLATE))
    store.open_chunk("m1", 0, chunk_job("notify", "sms.notify", chunk.chunk), now_ms() + 60_000, queued=True)
    sim.state.set_faults("infocloud", FaultPlan(codes=("-1",), code_rate=1.0))
    (retry,) = run_chunk(chunk, settings, store, provider(settings)).retries
    schedule_retry(store, settings, chunk, retry, "sms.notify")
    assert [args[3] for _, args in queued_tasks(r, "sms.notify")] == [1]
    r.delete("sms.notify")  # the retry's task is lost
    store.extend_lease("m1", 0, now_ms() - 1)
    assert sweep_leases()["requeued"] == 1
    assert [args[3] for _, args in queued_tasks(r, "sms.notify")] == [1]


# -- the receipt cadence -----------------------------------------------------------------------------


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Change settings through the environment for this test (``get_settings`` reloads)."""

    def change(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    yield change
    monkeypatch.undo()
    get_settings.cache_clear()


class LogSpy:
    """Stands for a module's structlog logger: keeps each call as (level, event, fields)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        return lambda event, **fields: self.calls.append((level, event, fields))


def one_receipt_a_query(monkeypatch: pytest.MonkeyPatch, environ: Callable[..., None]) -> None:
    """Every query returns a full page (one receipt, our page size 1), so a poll keeps asking."""
    monkeypatch.setattr("providers.simulator.infocloud.RECEIPT_PAGE", 1)
    environ(SMSD_INFOCLOUD__QUERY_PER_MINUTE="3", SMSD_INFOCLOUD__RECEIPT_PAGE_SIZE="1")


def test_two_polls_in_a_row_keep_to_three_queries_a_minute(
    sim: SimulatorServer,
    r: redis.Redis,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    environ: Callable[..., None],
) -> None:
    from tasks.poll import poll_receipts

    send(settings, r, "m1", [f"1390000{i:04d}" for i in range(10)])
    one_receipt_a_query(monkeypatch, environ)
    before = sim.state.counters("infocloud").requests
    assert poll_receipts("infocloud") + poll_receipts("infocloud") == 3
    counters = sim.state.counters("infocloud")
    assert counters.requests - before == 3
    assert counters.answered_codes["6000"] == 0


def test_a_vendor_that_says_too_often_is_logged(
    sim: SimulatorServer,
    r: redis.Redis,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    environ: Callable[..., None],
) -> None:
    import tasks.poll

    send(settings, r, "m1", [P1, P2, P3])
    one_receipt_a_query(monkeypatch, environ)
    sim.state.config = SimConfig(query_per_minute=1, tps_limit=100000)  # the vendor counts stricter
    spy = LogSpy()
    monkeypatch.setattr(tasks.poll, "log", spy)
    assert tasks.poll.poll_receipts("infocloud") == 1
    assert sim.state.counters("infocloud").answered_codes["6000"] == 1
    warnings = [(event, fields) for level, event, fields in spy.calls if level == "warning"]
    assert len(warnings) == 1 and warnings[0][1]["code"] == "6000"
    assert warnings[0][1]["provider"] == "infocloud"

