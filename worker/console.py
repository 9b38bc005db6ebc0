"""What every operator command shares: exit codes a script can trust, one-line errors, the store behind
the settings and Redis checks, ``--param`` pairs, and times shown in the operator's zone.

Kept out of ``worker/cli.py`` so that command modules (``worker/commands/``) import it at their top
without importing the command group that imports them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import click

from config.settings import Settings, SettingsError, get_settings

if TYPE_CHECKING:
    from worker.store import Store

OK = 0
FAILED = 1
USAGE = 2
NOT_FOUND = 3
REFUSED = 4
UNREACHABLE = 5

# The table in ``smsdispatch --help`` (click keeps the lines of a paragraph starting with \b) and README.
EXIT_CODES = {
    OK: "ok; a wait ended as asked (send --wait: all delivered; --follow: campaign done)",
    FAILED: "failed: not all delivered (send --wait), campaign cancelled while followed,\n"
    "     a wait timed out, configuration refused, an unexpected error",
    USAGE: "bad usage or input: an option, phone, parameter, file or request (named)",
    NOT_FOUND: "not found: no such message, recipient or campaign (or past retention)",
    REFUSED: "refused by state: e.g. resume a cancelled campaign; admission refused",
    UNREACHABLE: "Redis (which is also the broker) cannot be reached",
}


class Failed(click.ClickException):
    exit_code = FAILED


class BadInput(click.ClickException):
    exit_code = USAGE


class NotFound(click.ClickException):
    exit_code = NOT_FOUND


class Refused(click.ClickException):
    exit_code = REFUSED


class Unreachable(click.ClickException):
    exit_code = UNREACHABLE


def one_line(text: object) -> str:
    """``text`` on one line (an exception's message may hold newlines)."""
    return " ".join(str(text).split())


def debugging() -> bool:
    """Tracebacks (and debug logs) are shown: ``smsdispatch --debug``, or SMSD_LOG_LEVEL=DEBUG."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.find_root().params.get("debug"):
        return True
    return os.environ.get("SMSD_LOG_LEVEL", "").strip().upper() == "DEBUG"


def require_settings() -> Settings:
    """The settings, or a one-line error naming the setting that is refused (exit 1)."""
    try:
        return get_settings()
    except SettingsError as exc:
        raise click.ClickException(one_line(exc)) from None


def require_redis(settings: Settings | None = None) -> None:
    """Stop with ``worker.preflight``'s one line naming SMSD_REDIS_URL when Redis cannot be reached
    (exit 5): the broker is the same Redis."""
    from worker.preflight import check_redis

    try:
        check_redis(settings or get_settings())
    except click.ClickException as exc:
        raise Unreachable(exc.message) from None


def open_store() -> Store:
    """The store, after the settings and Redis checks (one-line errors, exit 1 and 5). Logs go to
    stderr, warnings only unless SMSD_LOG_LEVEL=DEBUG: what the code under an operator command logs
    (intake, planning) would bury its output, and stdout is for what a script reads (an id)."""
    from worker.logging import configure
    from worker.store import Store, get_redis  # imported late: the CLI starts fast

    settings = require_settings()
    configure("DEBUG" if debugging() else "WARNING", settings.log_json)
    require_redis(settings)
    return Store(get_redis(settings), settings)


def parse_params(pairs: Iterable[str], option: str = "--param") -> dict[str, str]:
    """``NAME=VALUE`` pairs as a mapping (the value may hold ``=``), or a one-line error (exit 2)."""
    params: dict[str, str] = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or not name.strip():
            raise BadInput(f"{option}: {pair[:60]!r} is not NAME=VALUE")
        if name.strip() in params:
            raise BadInput(f"{option}: {name.strip()!r} given twice")
        params[name.strip()] = value
    return params


def zone(settings: Settings) -> ZoneInfo:
    """The operator's zone: the campaigns' (``campaign.timezone``, Asia/Shanghai by default)."""
    return ZoneInfo(settings.campaign.timezone)


def local_time(ms: int, tz: ZoneInfo) -> str:
    """``ms`` since the epoch in ``tz``, with its offset (``2026-11-28 03:30:05 +08:00``); "-" for 0."""
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz).isoformat(sep=" ", timespec="seconds")


def iso_time(ms: int, tz: ZoneInfo) -> str | None:
    """``ms`` as ISO 8601 in ``tz`` (for ``--json``), None for 0."""
    return datetime.fromtimestamp(ms / 1000, tz).isoformat(timespec="milliseconds") if ms else None


def span(seconds: float) -> str:
    """A duration for people: ``12 s``, ``4 min``, ``2.5 h``."""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
