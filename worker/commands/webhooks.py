"""``smsdispatch webhooks``: where webhook delivery stands (README "Webhooks"). Never shows the secret."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from worker.console import require_redis, require_settings


def _when(ms: int, now_ms: int) -> str:
    """``ms`` (since the epoch) as UTC time and how long ago or ahead; "never" for 0."""
    if not ms:
        return "never"
    at = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")
    delta = (now_ms - ms) / 1000
    return f"{at} ({delta:.0f} s ago)" if delta >= 0 else f"{at} (in {-delta:.0f} s)"


@click.command()
@click.option("--dead", "dead", default=10, show_default=True, help="how many dead letters to list")
def webhooks(dead: int) -> None:
    """Show webhook delivery: the URL (no credentials), events in flight and unread, the last success, the
    last error, the next attempt and the latest batches given up on."""
    settings = require_settings()
    from worker.store import Store, get_redis, now_ms
    from worker.webhooks import shown_url

    require_redis(settings)
    section = settings.webhooks
    store = Store(get_redis(settings), settings)
    state = store.webhook_state()
    in_flight, unread, exact = store.webhook_backlog()
    now = now_ms()
    error = f"{state.last_error}, {_when(state.last_error_ms, now)}" if state.last_error else "none"
    rows = {
        "url": shown_url(section.url) if section.enabled else "(off: SMSD_WEBHOOKS__URL is empty)",
        "pending": f"{in_flight + unread:,}{'' if exact else '+'} ({in_flight:,} in flight)",
        "delivered": f"{state.delivered:,} events, {state.dropped:,} given up on",
        "last success": _when(state.last_success_ms, now),
        "last error": error,
        "attempts": str(state.attempts),
        "next attempt": _when(state.next_ms, now) if state.next_ms > now else "next beat tick",
    }
    for name, value in rows.items():
        click.echo(f"{name:<14}{value}")
    letters = store.webhook_dead_letters(dead) if dead > 0 else []
    if letters:
        click.echo("\ngiven up on (newest first):")
    for letter in letters:
        span = f"{letter.first_id}..{letter.last_id}"
        click.echo(f"  {_when(letter.at_ms, now)}  {letter.count:,} events {span}  {letter.error}")


def register(main: click.Group) -> None:
    main.add_command(webhooks)
