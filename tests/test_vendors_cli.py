"""``smsdispatch vendors``, ``vendors reset`` and ``balance`` against a real Redis."""

from __future__ import annotations

import pytest
import redis
from click.testing import CliRunner

from config.settings import Settings
from providers.base import Balance
from tasks.vendors import apply_balances
from worker.cli import main
from worker.store import Keys, Store


def test_vendors_shows_breaker_bench_balance_and_last_call(r: redis.Redis, settings: Settings) -> None:
    store = Store(r, settings)
    for _ in range(settings.breaker.failures):
        store.breaker_failed("xiaorui")
    store.bench("infocloud", "2001", "API授权错误")
    apply_balances(store, settings, "ihuyi", [Balance("ihuyi", "sms", 0)])
    r.set(Keys.vendor_ok("tencent"), "1700000000000:tok")
    out = CliRunner().invoke(main, ["vendors"])
    assert out.exit_code == 0, out.output
    text = out.output
    assert "xiaorui\n  configured yes\n  breaker    open since" in text
    assert f"{settings.breaker.failures} failures in a row, next probe in" in text
    assert "until 20" in text and "(in 5 min): code 2001: API授权错误" in text  # for unhealthy_s
    assert "until a balance poll shows credit: code BALANCE" in text
    assert "sms 0 (" in text and "2023-11-14 22:13:20Z" in text  # tencent's last successful call


def test_vendors_says_which_settings_are_missing(
    r: redis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from config.settings import get_settings

    monkeypatch.setenv("SMSD_IHUYI__API_KEY", "")
    get_settings.cache_clear()
    try:
        out = CliRunner().invoke(main, ["vendors"])
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert out.exit_code == 0, out.output
    assert "ihuyi\n  configured no: set SMSD_IHUYI__API_KEY" in out.output


def test_vendors_reset_clears_a_bench_and_the_breaker_at_once(r: redis.Redis, settings: Settings) -> None:
    store = Store(r, settings)
    store.bench("infocloud", "2001", "API授权错误")  # a wrong key: benched for unhealthy_s
    for _ in range(settings.breaker.failures):
        store.breaker_failed("infocloud")
    out = CliRunner().invoke(main, ["vendors", "reset", "infocloud"])
    assert out.exit_code == 0 and "cleared" in out.output
    assert store.benches(["infocloud"]) == {} and store.breaker_ask("infocloud").allowed
    assert store.unavailable(["infocloud"], "otp") == {}


def test_vendors_reset_of_an_unknown_vendor_is_a_one_line_error(r: redis.Redis, settings: Settings) -> None:
    out = CliRunner().invoke(main, ["vendors", "reset", "nope"])
    assert out.exit_code == 1 and out.output.count("\n") == 1 and "no vendor 'nope'" in out.output


def test_balance_prints_each_item_with_its_age(r: redis.Redis, settings: Settings) -> None:
    apply_balances(Store(r, settings), settings, "infocloud", [Balance("infocloud", "行业短信", 9784)])
    out = CliRunner().invoke(main, ["balance"])
    assert out.exit_code == 0, out.output
    assert "infocloud  行业短信" in out.output and "9,784.00  read 20" in out.output and "ago)" in out.output
    assert "deepfinch  -  (the vendor offers no balance query)" in out.output
    assert "xiaorui    -  (not read yet)" in out.output
