"""``smsdispatch inbound`` and ``smsdispatch optout``: what they print, their masking and exit codes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click
import pytest
import redis
from click.testing import CliRunner

from config.settings import Settings
from providers.base import InboundMessage
from worker.cli import main
from worker.commands.inbound import parse_since
from worker.store import Keys, Store

P1, P2 = "13800138000", "13900139000"


@pytest.fixture
def store(r: redis.Redis, settings: Settings) -> Store:
    return Store(r, settings)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_inbound_lists_replies_masked_and_escaped(store: Store) -> None:
    store.record_inbound(
        [
            InboundMessage("xiaorui", P1, "TD", "t1"),
            InboundMessage("tencent", P2, "call me on 13700137000\x1b[2J", "t2"),
        ]
    )
    code, out = run("inbound")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2 and "xiaorui" in lines[0] and "optout" in lines[0]
    assert "138****8000" in out and "137****7000" in out and P1 not in out and "13700137000" not in out
    assert "\x1b" not in out and "\\x1b[2J" in out  # a terminal escape is shown, never run


def test_inbound_filters_by_phone_and_unmasks_on_request(store: Store) -> None:
    store.record_inbound([InboundMessage("xiaorui", P1, "hi", "1"), InboundMessage("xiaorui", P2, "yo", "2")])
    code, out = run("inbound", "--phone", "+86 139 0013 9000", "--json", "--unmask")
    assert code == 0
    (line,) = out.splitlines()
    data = json.loads(line)
    assert (data["phone"], data["content"], data["provider"]) == (P2, "yo", "xiaorui")


def test_inbound_since_leaves_older_replies_out(store: Store) -> None:
    store.record_inbound([InboundMessage("xiaorui", P1, "hi", "1")])
    assert run("inbound", "--since", "1h")[1].count("hi") == 1
    assert "hi" not in run("inbound", "--since", "2999-01-01T00:00:00")[1]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("inbound", "--since", "yesterday"), "--since: 'yesterday' is neither"),
        (("inbound", "--phone", "12345"), "phone: "),
        (("optout", "add", "not a phone"), "phone: "),
        (("optout", "check", "+1 202"), "phone: "),
    ],
)
def test_bad_input_is_one_line_and_exit_1(
    r: redis.Redis, settings: Settings, args: tuple[str, ...], error: str
) -> None:
    code, out = run(*args)
    assert code == 1 and error in out and len(out.strip().splitlines()) == 1


def test_parse_since_reads_durations_and_iso_times() -> None:
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert parse_since("90s", now) == int(now.timestamp() * 1000) - 90_000
    assert parse_since("2d", now) == int(now.timestamp() * 1000) - 2 * 86_400_000
    assert parse_since("2026-11-27T08:00:00+08:00", now) == int(now.timestamp() * 1000) - 12 * 3_600_000
    with pytest.raises(click.ClickException):
        parse_since("1w", now)


def test_optout_add_check_list_remove(store: Store, r: redis.Redis) -> None:
    assert run("optout", "check", P1) == (3, f"{P1}: not opted out\n")
    assert run("optout", "add", "+86 138-0013-8000") == (0, f"{P1}: opted out\n")
    assert run("optout", "add", P1) == (0, f"{P1}: already opted out\n")
    assert r.smembers(Keys.optout) == {P1}
    code, out = run("optout", "check", P1)
    assert code == 0 and "opted out since" in out and "(cli)" in out
    store.record_inbound([InboundMessage("tencent", P2, "退订", "t")])
    code, out = run("optout", "list")
    assert code == 0 and "138****8000" in out and "139****9000" in out and P2 not in out
    assert "tencent" in out and "'退订'" in out and "2 opted out" in out
    rows = [json.loads(line) for line in run("optout", "list", "--json", "--unmask")[1].splitlines()]
    assert [(row["phone"], row["source"]) for row in rows] == [(P1, "cli"), (P2, "reply")]
    assert run("optout", "remove", P1) == (0, f"{P1}: removed\n")
    assert run("optout", "remove", P1) == (0, f"{P1}: was not opted out\n")
    assert r.smembers(Keys.optout) == {P2}


def test_help_documents_the_exit_codes() -> None:
    code, out = run("optout", "--help")
    flat = " ".join(out.split())  # click rewraps the help text
    assert code == 0 and "exits 0 when the number is opted out and 3 when it is not" in flat
