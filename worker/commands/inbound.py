"""``smsdispatch inbound``: the replies (MO) recorded from every vendor, newest last."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import click

from providers.phones import PhoneError, mask, normalize

if TYPE_CHECKING:
    from worker.store import Store

_DURATION = re.compile(r"([0-9]{1,9})([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def register(main: click.Group) -> None:
    main.add_command(inbound)


def store() -> Store:
    """The store, after the settings and Redis checks every Redis command makes (one-line errors)."""
    from config.settings import get_settings
    from worker.console import require_redis, require_settings
    from worker.store import Store, get_redis  # imported late: the CLI starts fast

    require_settings()
    require_redis()
    return Store(get_redis(), get_settings())


def parse_phone(raw: str) -> str:
    """``raw`` normalized (``providers.phones``), or a one-line error."""
    try:
        return normalize(raw)
    except PhoneError as exc:
        raise click.ClickException(f"phone: {exc}") from None


def parse_since(raw: str, now: datetime | None = None) -> int:
    """``raw`` ("90s", "30m", "1h", "7d", or an ISO 8601 time, UTC unless it says otherwise) as ms
    since the epoch; a one-line error for anything else."""
    now = now or datetime.now(UTC)
    if match := _DURATION.fullmatch(raw.strip()):
        return int((now - timedelta(seconds=int(match[1]) * _UNIT_S[match[2]])).timestamp() * 1000)
    try:
        when = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise click.ClickException(
            f"--since: {raw[:40]!r} is neither a duration (90s, 30m, 1h, 7d) nor an ISO 8601 time"
        ) from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return max(0, int(when.timestamp() * 1000))


def printable(text: str) -> str:
    """``text`` safe for a terminal: every unprintable character (escapes, newlines) as ``\\xNN``."""
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


def utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds") if ms else "-"


@click.command()
@click.option("--since", default=None, help="replies received since: 90s, 30m, 1h, 7d or an ISO time (UTC)")
@click.option("--phone", default=None, help="only replies from this number (any spelling send_sms accepts)")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000), help="newest N")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@click.option("--unmask", is_flag=True, help="show whole phone numbers (masked by default, in text too)")
def inbound(since: str | None, phone: str | None, limit: int, as_json: bool, unmask: bool) -> None:
    """Show the replies (MO) received from every vendor, pulled or pushed, oldest first.

    Columns: received (UTC), vendor, phone, action (optout/optin when the reply's words ask for one),
    the reply's text. Phone numbers, in the phone column and inside the text, are masked unless
    --unmask is given; unprintable characters are shown escaped. Exit 0, or 1 with one line on error.
    """
    since_ms = parse_since(since) if since else 0
    wanted = parse_phone(phone) if phone else ""
    replies = store().inbound(since_ms, wanted, limit)
    shown = (lambda text: text) if unmask else mask
    for reply in replies:
        if as_json:
            data = {
                "received": utc(reply.received_ms),
                "received_ms": reply.received_ms,
                "provider": reply.provider,
                "phone": shown(reply.phone),
                "content": shown(reply.content),
                "sent_at": reply.sent_at,
                "ext": reply.ext,
                "action": reply.action,
            }
            click.echo(json.dumps(data, ensure_ascii=False))
        else:
            row = f"{utc(reply.received_ms)}  {reply.provider:<10}{shown(reply.phone):<16}{reply.action:<8}"
            click.echo(row + printable(shown(reply.content)))
    if not replies and not as_json:
        click.echo("no replies", err=True)
