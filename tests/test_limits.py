"""Per-phone limits and the claim of a chunk (``Store.claim``), the vendor's throughput budget and the
query cadence (``worker.store.limits``), on the session's real Redis."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pytest
import redis

from config.limits import LimitRule, parse_rules
from config.settings import Settings
from worker.store import Claim, Keys, Outcome, Record, Recording, State, Store, now_ms, window_bucket
from worker.store.limits import take_budget, try_window
from worker.store.recipients import LIMIT_KEY_MARGIN_S

OTP = parse_rules(["1/30s", "5/1h", "10/1d"])
STALE_MS = 60_000


def claim(
    store: Store,
    phones: Sequence[str],
    rules: Sequence[LimitRule] = OTP,
    message_id: str = "m1",
    token: str = "tok-1",
) -> Claim:
    return store.claim(message_id, "otp", "infocloud", phones, rules, STALE_MS, token)


def charged(r: redis.Redis) -> dict[int, dict[str, str]]:
    """Each limit window's counters (window in s -> phone -> count), from the keys the claim wrote."""
    out: dict[int, dict[str, str]] = {}
    for key in r.scan_iter(Keys.limit("otp", 0, 0).rsplit(":", 2)[0] + ":*"):
        window_s = int(key.rsplit(":", 2)[1])
        out[window_s] = r.hgetall(key)
    return out


@pytest.fixture
def store(r: redis.Redis, settings: Settings) -> Store:
    return Store(r, settings)


def test_a_phone_over_its_limit_is_refused_with_the_rule_it_hit(store: Store, r: redis.Redis) -> None:
    first = claim(store, ["13800000001", "13800000002"], message_id="m1")
    assert first.send == ("13800000001", "13800000002")
    second = claim(store, ["13800000001", "13800000003"], message_id="m2")
    assert second.send == ("13800000003",)
    assert second.limited == (("13800000001", LimitRule(1, 30)),)
    record = store.records("m2")["13800000001"]
    assert (record.state, record.code, record.text) == (State.RATE_LIMITED, "LIMIT", "1/30s")


def test_the_hourly_rule_binds_when_the_short_one_does_not(store: Store) -> None:
    rules = parse_rules(["100/30s", "2/1h"])
    assert claim(store, ["13800000001"], rules, "a").send
    assert claim(store, ["13800000001"], rules, "b").send
    third = claim(store, ["13800000001"], rules, "c")
    assert third.send == () and third.limited == (("13800000001", LimitRule(2, 3600)),)


def test_a_phone_refused_by_a_later_rule_keeps_its_earlier_counts(store: Store, r: redis.Redis) -> None:
    """The claim charges first and takes the charges back from a phone over a rule: a refusal leaves
    every window's count as it was, so that it does not use up the phone's allowance."""
    rules = parse_rules(["100/1h", "2/1d"])
    assert claim(store, ["13800000001"], rules, "a").send
    assert claim(store, ["13800000001"], rules, "b").send
    before = charged(r)
    assert before == {3600: {"13800000001": "2"}, 86400: {"13800000001": "2"}}
    for message_id in ("c", "d"):
        assert claim(store, ["13800000001"], rules, message_id).limited
    assert charged(r) == before


def test_a_window_hash_expires_a_few_seconds_after_its_window(store: Store, r: redis.Redis) -> None:
    """A one-second rule's hashes are kept for their second and a margin, not a minute (memory)."""
    claim(store, ["13800000001"], parse_rules(["1/1s", "20/1d"]))
    prefix = Keys.limit("otp", 0, 0).rsplit(":", 2)[0]
    ttls = {int(key.rsplit(":", 2)[1]): r.ttl(key) for key in r.scan_iter(prefix + ":*")}
    assert 0 < ttls[1] <= 1 + LIMIT_KEY_MARGIN_S
    assert 86400 < ttls[86400] <= 86400 + LIMIT_KEY_MARGIN_S


def test_a_redelivered_chunk_never_resends_and_charges_nothing_twice(store: Store, r: redis.Redis) -> None:
    phones = ["13800000001", "13800000002"]
    assert claim(store, phones).send == tuple(phones)
    store.record("m1", "infocloud", Recording([Outcome(phones[0], State.SUBMITTED, "200", vendor_id="574")]))
    again = claim(store, phones, token="tok-2")  # the redelivered task is another run: another token
    assert again.send == ()
    assert again.done == ((phones[0], "submitted"),)
    assert again.in_flight == (phones[1],)  # still "sending" and fresh: another worker has it
    assert charged(r) == {rule.window_s: dict.fromkeys(phones, "1") for rule in OTP}


def test_a_stale_sending_recipient_is_an_orphan_not_a_resend(store: Store, r: redis.Redis) -> None:
    claim(store, ["13800000001"])
    old = Record(State.SENDING, now_ms() - STALE_MS - 1000, "infocloud", "tok-dead")
    r.hset(Keys.recipients("m1"), "13800000001", old.pack())
    orphan = claim(store, ["13800000001"], token="tok-2")
    assert orphan.orphaned == ("13800000001",) and orphan.send == ()


def test_a_retry_state_is_sent_again_without_a_second_charge(store: Store, r: redis.Redis) -> None:
    rules = parse_rules(["2/1h"])
    assert claim(store, ["13800000001"], rules).send
    r.hset(Keys.recipients("m1"), "13800000001", Record(State.RETRY, now_ms(), "infocloud").pack())
    assert claim(store, ["13800000001"], rules, token="tok-2").send == ("13800000001",)  # already paid
    assert claim(store, ["13800000001"], rules, "other").send  # one charge so far: a second send fits
    assert claim(store, ["13800000001"], rules, "third").limited  # and the limit still holds


def test_opted_out_phones_are_recorded_and_not_sent(store: Store, r: redis.Redis) -> None:
    r.sadd(Keys.optout, "13800000002")
    result = claim(store, ["13800000001", "13800000002"])
    assert result.send == ("13800000001",) and result.opted_out == ("13800000002",)
    assert store.records("m1")["13800000002"].state == State.OPTED_OUT


def test_a_whole_chunk_is_one_round_trip(
    store: Store, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    phones = [f"139{i:08d}" for i in range(1000)]
    claim(store, ["13000000000"], message_id="warm-up")  # loads the script
    sent: list[object] = []
    real = r.execute_command

    def spy(*args: Any, **kwargs: Any) -> Any:
        sent.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(r, "execute_command", spy)
    result = claim(store, phones)
    assert len(result.send) == 1000
    assert sent == ["EVALSHA"]


def test_day_windows_reset_at_beijing_midnight() -> None:
    day = LimitRule(1, 86400)
    beijing_midnight_utc = 1_700_000_000 - (1_700_000_000 + 8 * 3600) % 86400
    before, at = beijing_midnight_utc - 1, beijing_midnight_utc
    assert window_bucket(day, before) + 1 == window_bucket(day, at)


def test_the_budget_says_how_long_to_wait_and_takes_nothing_then(r: redis.Redis, env: dict[str, str]) -> None:
    # 5 calls a second, a burst of 1: one call every 200 ms, for every client of the Redis.
    assert take_budget(r, "infocloud", per_second=5) == 0
    other = redis.Redis.from_url(env["SMSD_REDIS_URL"], decode_responses=True)  # another worker
    wait = take_budget(other, "infocloud", per_second=5)
    assert 0.1 < wait <= 0.2
    again = take_budget(r, "infocloud", per_second=5)
    assert 0 < again <= wait  # a refusal took nothing: the wait did not grow
    time.sleep(again)
    assert take_budget(other, "infocloud", per_second=5) == 0


def test_the_throughput_budget_spaces_calls_across_callers(r: redis.Redis) -> None:
    start = time.monotonic()
    for _ in range(30):
        while (wait := take_budget(r, "infocloud", per_second=100)) > 0:
            time.sleep(wait)
    elapsed = time.monotonic() - start
    # 30 calls at 100/s with a burst of 10: at least 20 intervals of 10 ms.
    assert elapsed >= 0.18


def test_the_query_window_allows_three_a_minute(r: redis.Redis) -> None:
    waits = [try_window(r, "infocloud:query", 3, 60.0) for _ in range(4)]
    assert waits[:3] == [0, 0, 0]
    assert 59 <= waits[3] <= 60
