"""``smsdispatch api``: the HTTP app (vendor push receivers, ``/healthz``) on uvicorn; ``smsdispatch pushes``:
stored pushes not applied yet, and the bodies that failed (the dead-letter stream)."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from config.settings import Settings
from worker.console import require_redis, require_settings


def push_url_lines(settings: Settings, base: str) -> list[str]:
    """A line per receiver: its URL (the token shown as ``<token>``) and how pushes to it are checked."""
    from providers.vendors import VENDORS
    from worker.http.receivers import push_routes
    from worker.registry import offers

    lines = []
    for path, vendor, _ in push_routes(settings):
        section = settings.vendor(vendor)
        has_token = bool(section.push_token.get_secret_value())
        token_setting = VENDORS[vendor].env_name("push_token")
        if offers(vendor, "push_signed"):
            how = "its own credential in the body" + (", or ?token=" if has_token else "")
            url = f"{base}{path}" + ("[?token=<token>]" if has_token else "")
        elif has_token:
            how, url = "?token=", f"{base}{path}?token=<token>"
        else:
            how, url = f"REFUSED until {token_setting} is set", f"{base}{path}"
        allow = f"; only from {', '.join(section.push_allow_ips)}" if section.push_allow_ips else ""
        lines.append(f"{url:<62} {how}{allow}")
    return lines


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--public-url", default="", help="how vendors reach this app (for the URLs printed)")
def api(host: str, port: int, public_url: str) -> None:
    """Serve the vendor push receivers (/push/<vendor>/receipts, /push/<vendor>/inbound), the /v1 API
    (off until api.keys are configured) and /healthz.

    Each push is stored in Redis and answered at once; `smsdispatch worker` (with beat) applies them.
    """
    import uvicorn

    from worker.http import build_app
    from worker.http.auth import describe_keys
    from worker.logging import configure as configure_logging
    from worker.preflight import announce

    settings = require_settings()
    configure_logging(settings.log_level, settings.log_json)  # phones masked, secrets dropped, as workers do
    require_redis(settings)
    announce(settings)
    base = (public_url or f"http://{host}:{port}").rstrip("/")
    click.echo("push receivers (configure these URLs at each vendor):")
    for line in push_url_lines(settings, base):
        click.echo(f"  {line}")
    click.echo(describe_keys(settings.api.keys, base))
    uvicorn.run(build_app(settings), host=host, port=port, log_level="warning", workers=1)


@click.command()
@click.option("--dead", "count", default=10, show_default=True, help="how many failed bodies to show")
def pushes(count: int) -> None:
    """Show pushes waiting on this host's disk for Redis, stored pushes not applied yet, and the newest
    bodies that failed parsing (kept push.keep_s)."""
    from providers.pushes import PushKind
    from worker.http.spool import spool_folder, spooled
    from worker.store import Store, get_redis

    settings = require_settings()
    folder = spool_folder(settings.push.spool_dir)
    click.echo(f"spooled {spooled(folder):>8,} on this host's disk, waiting for Redis ({folder})")
    require_redis(settings)
    store = Store(get_redis(settings), settings)
    for kind in PushKind:
        click.echo(f"{kind.value:<10}{store.push_backlog(kind):>8,} stored, not applied yet")
    dead = store.dead_pushes(count)
    click.echo(f"\nfailed bodies (newest {len(dead)}):" if dead else "\nno failed bodies")
    for entry in dead:
        failed = datetime.fromtimestamp(int(entry.get("failed_at", "0")) / 1000, UTC)
        what = f"{entry.get('vendor', ''):<10}{entry.get('kind', ''):<9}{entry.get('error', '')}"
        click.echo(f"  {failed.isoformat(timespec='seconds')}  {what}")
        click.echo(f"      from {entry.get('remote', '') or '?'}: {entry.get('body', '')[:120]!r}")


def register(main: click.Group) -> None:
    main.add_command(api)
    main.add_command(pushes)
