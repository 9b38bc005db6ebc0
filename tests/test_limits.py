"""Per-phone limits, the claim of a chunk, the throughput budget and the query cadence, on a real Redis."""

from __future__ import annotations

import time

import redis

from config.limits import LimitRule, parse_rules
from worker import limits
from worker.store import Keys, Record, State, Store, now_ms, pack

OTP = parse_rules(["1/30s", "5/1h", "10/1d"])
STALE_MS = 60_000


def claim(r: redis.Redis, phones: list[str], rules=OTP, message_id: str = "m1") -> limits.Claim:  # type: ignore[no-untyped-def]
    return limits.claim(r, message_id, "otp", "infocloud", phones, rules, STALE_MS)


def test_a_phone_over_its_limit_is_refused_with_the_rule_it_hit(r: redis.Redis) -> None:
    first = claim(r, ["13800000001", "13800000002"], message_id="m1")
    assert first.send == ("13800000001", "13800000002")
    second = claim(r, ["13800000001", "13800000003"], message_id="m2")
    assert second.send == ("13800000003",)
    assert second.limited == (("13800000001", LimitRule(1, 30)),)
    record = Record.unpack(r.hget(Keys.recipients("m2"), "13800000001"))  # type: ignore[arg-type]
    assert (record.state, record.code, record.text) == ("rate_limited", "LIMIT", "1/30s")


def test_the_hourly_rule_binds_when_the_short_one_does_not(r: redis.Redis) -> None:
    rules = parse_rules(["100/30s", "2/1h"])
    assert claim(r, ["13800000001"], rules, "a").send
    assert claim(r, ["13800000001"], rules, "b").send
    third = claim(r, ["13800000001"], rules, "c")
    assert third.send == () and third.limited == (("13800000001", LimitRule(2, 3600)),)


def test_a_redelivered_chunk_never_resends_and_charges_nothing_twice(r: redis.Redis) -> None:
    phones = ["13800000001", "13800000002"]
    assert claim(r, phones).send == tuple(phones)
    store = Store(r, _settings())
    store.write("m1", {phones[0]: pack(State.SUBMITTED, now_ms(), "infocloud", "574", "200")})
    again = claim(r, phones)
    assert again.send == ()
    assert again.done == ((phones[0], "submitted"),)
    assert again.in_flight == (phones[1],)  # still "sending" and fresh: another worker has it


def test_a_stale_sending_recipient_is_an_orphan_not_a_resend(r: redis.Redis) -> None:
    claim(r, ["13800000001"])
    old = pack(State.SENDING, now_ms() - STALE_MS - 1000, "infocloud")
    r.hset(Keys.recipients("m1"), "13800000001", old)
    assert claim(r, ["13800000001"]).orphaned == ("13800000001",)


def test_a_retry_state_is_sent_again_without_a_second_charge(r: redis.Redis) -> None:
    rules = parse_rules(["1/1h"])
    assert claim(r, ["13800000001"], rules).send
    r.hset(Keys.recipients("m1"), "13800000001", pack(State.RETRY, now_ms(), "infocloud"))
    assert claim(r, ["13800000001"], rules).send == ("13800000001",)  # its charge is already paid
    assert claim(r, ["13800000001"], rules, "other").limited  # and the limit still holds for others


def test_opted_out_phones_are_recorded_and_not_sent(r: redis.Redis) -> None:
    r.sadd(Keys.optout, "13800000002")
    result = claim(r, ["13800000001", "13800000002"])
    assert result.send == ("13800000001",) and result.opted_out == ("13800000002",)
    assert Record.unpack(r.hget(Keys.recipients("m1"), "13800000002")).state == State.OPTED_OUT  # type: ignore[arg-type]


def test_a_whole_chunk_is_one_round_trip(r: redis.Redis, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    phones = [f"139{i:08d}" for i in range(1000)]
    claim(r, ["13000000000"], message_id="warm-up")  # loads the script
    sent: list[object] = []
    real = r.execute_command
    monkeypatch.setattr(r, "execute_command", lambda *args, **kw: sent.append(args[0]) or real(*args, **kw))
    result = claim(r, phones)
    assert len(result.send) == 1000
    assert sent == ["EVALSHA"]


def test_day_windows_reset_at_beijing_midnight() -> None:
    day = LimitRule(1, 86400)
    beijing_midnight_utc = 1_700_000_000 - (1_700_000_000 + 8 * 3600) % 86400
    before, at = beijing_midnight_utc - 1, beijing_midnight_utc
    assert limits.window_bucket(day, before) + 1 == limits.window_bucket(day, at)


def test_the_throughput_budget_spaces_calls_across_callers(r: redis.Redis) -> None:
    start = time.monotonic()
    for _ in range(30):
        limits.acquire_budget(r, "infocloud", per_second=100)
    elapsed = time.monotonic() - start
    # 30 calls at 100/s with a burst of 10: at least 20 intervals of 10 ms.
    assert elapsed >= 0.18


def test_the_query_window_allows_three_a_minute(r: redis.Redis) -> None:
    waits = [limits.try_window(r, "infocloud:query", 3, 60.0) for _ in range(4)]
    assert waits[:3] == [0, 0, 0]
    assert 59 <= waits[3] <= 60


def _settings():  # type: ignore[no-untyped-def]
    from config.settings import get_settings

    return get_settings()
