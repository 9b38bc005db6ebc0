"""``smsdispatch api`` and ``smsdispatch pushes``: the push URLs printed per vendor with how each is checked,
a Redis out of reach stopping the app in one line, and the failed bodies shown."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from providers.pushes import PushKind
from worker.cli import main
from worker.commands.api import push_url_lines
from worker.store import Store


def test_push_urls_say_how_each_vendor_is_checked(settings) -> None:  # type: ignore[no-untyped-def]
    update = {"push_token": SecretStr("t"), "push_allow_ips": ("10.0.0.0/8",)}
    ihuyi = settings.ihuyi.model_copy(update=update)
    lines = push_url_lines(settings.model_copy(update={"ihuyi": ihuyi}), "https://sms.example.com")
    by_path = {line.split()[0]: line for line in lines}
    assert set(by_path) == {
        "https://sms.example.com/push/infocloud/receipts", "https://sms.example.com/push/infocloud/inbound",
        "https://sms.example.com/push/tencent/receipts", "https://sms.example.com/push/tencent/inbound",
        "https://sms.example.com/push/ihuyi/receipts?token=<token>",
        "https://sms.example.com/push/ihuyi/inbound?token=<token>",
    }
    assert "REFUSED until SMSD_TENCENT__PUSH_TOKEN is set" in by_path["https://sms.example.com/push/tencent/inbound"]
    assert "only from 10.0.0.0/8" in by_path["https://sms.example.com/push/ihuyi/receipts?token=<token>"]
    assert "own credential" in by_path["https://sms.example.com/push/infocloud/receipts"]


@pytest.mark.parametrize("args", [["api", "--port", "8999"], ["pushes"], ["webhooks"]])
def test_a_command_stops_in_one_line_with_exit_5_when_redis_is_out_of_reach(
    monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    from config.settings import get_settings

    monkeypatch.setenv("SMSD_REDIS_URL", "redis://127.0.0.1:1/0")
    get_settings.cache_clear()
    try:
        out = CliRunner().invoke(main, args)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert out.exit_code == 5  # README "Exit codes": Redis, which is also the broker, cannot be reached
    assert "SMSD_REDIS_URL=redis://127.0.0.1:1/0: cannot reach Redis" in out.output


def test_pushes_shows_the_backlog_and_failed_bodies(r, settings) -> None:  # type: ignore[no-untyped-def]
    store = Store(r, settings)
    store.store_push("tencent", PushKind.INBOUND, "[1]", "application/json", "203.0.113.9")
    (push,) = store.claim_pushes(PushKind.INBOUND, "c", 10)
    store.dead_letter(push, "MalformedPush: tencent: malformed push: an item is not an object")
    store.store_push("ihuyi", PushKind.RECEIPTS, "code=1", "application/x-www-form-urlencoded")
    out = CliRunner().invoke(main, ["pushes"])
    assert out.exit_code == 0, out.output
    assert "spooled        0 on this host's disk" in out.output  # the session's own spool folder, empty
    assert "receipts         1 stored" in out.output and "inbound          0 stored" in out.output
    assert "an item is not an object" in out.output and "from 203.0.113.9: '[1]'" in out.output
