"""``smsdispatch vendors [reset NAME]`` and ``smsdispatch balance``: each vendor's health as the workers see
it (settings, circuit breaker, bench, balance, last successful call and polls), and the way to clear a
bench or breaker once what was wrong is fixed. Read from Redis (``worker/store/vendors.py``)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from config.settings import Settings
    from worker.store import Store
    from worker.store.vendors import VendorHealth


def register(main: click.Group) -> None:
    main.add_command(vendors)
    main.add_command(balance)


def _open() -> tuple[Settings, Store]:
    from config.settings import get_settings
    from worker.console import require_redis, require_settings
    from worker.store import Store, get_redis  # imported late: the CLI starts fast

    require_settings()
    require_redis()
    settings = get_settings()
    return settings, Store(get_redis(settings), settings)


def ago(ms: int, now_ms: int | None = None) -> str:
    """``ms`` (since the epoch) as a UTC time and how long ago (or how soon), or "never"."""
    if not ms:
        return "never"
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    when = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    if ms > now_ms:
        return f"{when} (in {_span((ms - now_ms) / 1000)})"
    return f"{when} ({_span((now_ms - ms) / 1000)} ago)"


def _span(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def missing_settings(settings: Settings, name: str) -> list[str]:
    """The environment names of ``name``'s credential settings still empty."""
    from pydantic import SecretStr

    from providers.vendors import descriptor

    section = settings.vendor(name)
    missing = []
    for field in section.credential_fields():
        value = getattr(section, field)
        if not (value.get_secret_value() if isinstance(value, SecretStr) else value):
            missing.append(descriptor(name).env_name(field))
    return missing


def describe(settings: Settings, health: VendorHealth, now_ms: int) -> dict[str, Any]:
    """One vendor's lines for ``vendors``, as a mapping (also the ``--json`` form)."""
    missing = missing_settings(settings, health.name)
    b = health.breaker
    if health.breaker_open:
        next_probe = int(b.get("next_probe") or 0)
        since = ago(int(b.get("opened") or 0), now_ms)
        breaker = (f"open since {since}, {b.get('failures', '?')} failures in a row, "
                   f"next probe in {_span((next_probe - now_ms) / 1000)}, {b.get('probes', '0')} probes")
    else:
        breaker = f"closed ({b.get('failures', '0')} failures in a row)"
    bench = "-"
    if health.bench:
        until = health.bench.get("until", "")
        end = "until a balance poll shows credit" if until == "credit" else f"until {ago(int(until), now_ms)}"
        bench = f"{end}: code {health.bench.get('code', '?')}: {health.bench.get('reason', '')}"
    balances = "; ".join(
        f"{r.item} {r.value:g} ({_span((now_ms - r.at_ms) / 1000)} old)" for r in health.balances
    )
    polls = "; ".join(f"{what} {ago(ms, now_ms)} {how}" for what, (ms, how) in sorted(health.polls.items()))
    return {
        "vendor": health.name,
        "configured": "yes" if not missing else f"no: set {', '.join(missing)}",
        "breaker": breaker,
        "benched": bench,
        "balance": balances or "-",
        "last ok": ago(health.last_ok_ms, now_ms),
        "polled": polls or "-",
    }


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per vendor")
@click.pass_context
def vendors(ctx: click.Context, as_json: bool) -> None:
    """Each registered vendor: configured or which settings are missing, circuit breaker (closed or open,
    failures, next probe), benched until when and why, balance and its age, last successful call and
    last polls. `vendors reset NAME` clears a bench and the breaker."""
    if ctx.invoked_subcommand is not None:
        return
    from config.settings import PROVIDERS

    settings, store = _open()
    now_ms = int(time.time() * 1000)
    for health in store.vendor_health(list(PROVIDERS)):
        lines = describe(settings, health, now_ms)
        if as_json:
            click.echo(json.dumps(lines, ensure_ascii=False))
            continue
        click.echo(lines.pop("vendor"))
        for key, value in lines.items():
            click.echo(f"  {key:<11}{value}")


@vendors.command()
@click.argument("name")
def reset(name: str) -> None:
    """Clear NAME's bench and circuit breaker now (after fixing a key, topping up, or the vendor is back):
    routing takes it again at once. A balance poll that still shows no credit benches it again."""
    from config.settings import PROVIDERS

    if name not in PROVIDERS:
        raise click.ClickException(f"no vendor {name!r}: registered are {', '.join(PROVIDERS)}")
    _, store = _open()
    cleared = store.reset_vendor(name)
    click.echo(f"{name}: bench and breaker cleared" if cleared else f"{name}: neither benched nor tripped")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="one JSON object per vendor and item")
def balance(as_json: bool) -> None:
    """The balances last read from each vendor, per item (the vendor's category), with their age. Read
    by beat (tasks.vendors.poll_balance) at each vendor's balance_poll_interval_s."""
    from config.settings import PROVIDERS
    from worker.registry import offers

    _, store = _open()
    now_ms = int(time.time() * 1000)
    for name in PROVIDERS:
        readings = store.balances(name)
        if not readings and not as_json:
            why = "not read yet" if offers(name, "balance") else "the vendor offers no balance query"
            click.echo(f"{name:<11}-  ({why})")
        for r in readings:
            if as_json:
                data = {"vendor": name, "item": r.item, "value": r.value, "read_ms": r.at_ms}
                click.echo(json.dumps(data, ensure_ascii=False))
            else:
                click.echo(f"{name:<11}{r.item:<14}{r.value:>14,.2f}  read {ago(r.at_ms, now_ms)}")
