"""The smsdispatch command: status of a message, and a clear error for bad configuration."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from worker.cli import main
from worker.store import Outcome, Recording, State, Store


def test_status_shows_counts_and_masked_recipients(r, settings) -> None:  # type: ignore[no-untyped-def]
    store = Store(r, settings)
    store.create_message("m-1", {"kind": "notify", "template": "order_shipped", "recipients": 2, "chunks": 1})
    infocloud = [
        Outcome("13800138000", State.DELIVERED, "DELIVRD", vendor_id="574"),
        Outcome("13900139000", State.FAILED, "UNDELIV", vendor_id="574"),
    ]
    store.record("m-1", "infocloud", Recording(infocloud), from_states=("none",))
    tencent = [Outcome("13700137000", State.DELIVERED, "DELIVRD", vendor_id="sid", fee=2)]
    store.record("m-1", "tencent", Recording(tencent), from_states=("none",))
    out = CliRunner().invoke(main, ["status", "m-1", "--recipients"])
    assert out.exit_code == 0, out.output
    assert "delivered" in out.output and "failed" in out.output and "order_shipped" in out.output
    assert re.search(r"^billed parts\s+3$", out.output, re.MULTILINE)  # 1 (no fee said) + Tencent's 2
    assert "138****8000" in out.output and "13800138000" not in out.output


def test_status_of_an_unknown_message_is_an_error(r, settings) -> None:  # type: ignore[no-untyped-def]
    out = CliRunner().invoke(main, ["status", "nope"])
    assert out.exit_code == 3 and "no message nope" in out.output


def test_bad_configuration_stops_the_command_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from config.settings import get_settings

    monkeypatch.setenv("SMSD_INFOCLOUD__SIGN_METHOD", "HmacFoo")
    get_settings.cache_clear()
    try:
        out = CliRunner().invoke(main, ["status", "m-1"])
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert out.exit_code == 1 and "SMSD_INFOCLOUD__SIGN_METHOD" in out.output
