"""Start-up checks: the commands that need Redis (``worker``, ``beat``, ``status``) reach it or stop, and
``worker``, ``beat`` and ``api`` say what they start with (:func:`startup_report`).

Without it a worker given ``SMSD_REDIS_URL=localhost:6379`` exited 0 with ``No module named 'localhost'``,
and one given an unreachable Redis retried the broker for ever while its callers hung. Now the command
pings Redis once, with a 2 s time-out and no retries, and stops with one line naming the setting (its
password masked) and a non-zero exit. The URL's format is the settings' business (``config.settings``).

A process started with the wrong config file, no templates or no credentials used to look healthy and then
refuse every recipient "not configured"; the report names the file, the templates and, per vendor, ready or
the settings it lacks, and warns on stderr when no vendor can send.
"""

from __future__ import annotations

import re

import click
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.settings import Settings

PING_TIMEOUT_S = 2.0
_USERINFO = re.compile(r"(?<=://)([^/?#]*)@")
_SECRET_QUERY = re.compile(r"([?&][^=&#]*(?:pass|pwd|secret|token|auth)[^=&#]*=)[^&#]*", re.IGNORECASE)


def masked_url(url: str) -> str:
    """``url`` with every secret replaced by ``***``: the password of ``user:password@`` (the whole
    user part when it has no ``:``, as it may be a bare password), and password-like query values."""
    match = _USERINFO.search(url)
    if match is not None:
        user, colon, _ = match.group(1).partition(":")
        shown = f"{user}:***" if colon else "***"
        url = f"{url[: match.start(1)]}{shown}@{url[match.end():]}"
    return _SECRET_QUERY.sub(r"\1***", url)


def ping_redis(
    url: str, timeout_s: float = PING_TIMEOUT_S, *, default: bool = False, setting: str = "SMSD_REDIS_URL"
) -> None:
    """Connect to ``url`` and PING once within ``timeout_s`` seconds (connect and answer each), or raise
    ``click.ClickException("SMSD_REDIS_URL=<masked>: cannot reach Redis: <reason>")``. ``default`` says
    the URL is the built-in one (the setting is unset); ``setting`` is how the user gave it."""
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s, retry=Retry(NoBackoff(), 0)
        )
    except ValueError as exc:  # redis-py cannot read the URL (no scheme, a bad port, ...)
        raise _unreachable(url, exc, default, setting) from None
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:  # refused, timed out, TLS, auth, not Redis at all
        raise _unreachable(url, exc, default, setting) from None
    finally:
        client.close()


def check_redis(settings: Settings) -> None:
    """``ping_redis`` on the configured (or default) Redis URL."""
    ping_redis(settings.effective_redis_url, default=settings.redis_url is None)


def _unreachable(url: str, exc: BaseException, default: bool, setting: str) -> click.ClickException:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    for secret in sorted(_secrets(url), key=len, reverse=True):
        reason = reason.replace(secret, "***")
    given = f"{setting}={masked_url(url)}" + (" (unset: the default)" if default else "")
    return click.ClickException(f"{given}: cannot reach Redis: {reason}")


def _secrets(url: str) -> list[str]:
    """The parts of ``url`` that ``masked_url`` hides (to scrub them from an error's text too)."""
    found = [m.group(0).partition("=")[2] for m in _SECRET_QUERY.finditer(url)]
    match = _USERINFO.search(url)
    if match is not None:
        user, colon, password = match.group(1).partition(":")
        found.append(password if colon else user)
    return [secret for secret in found if len(secret) >= 3]


def startup_report(settings: Settings) -> list[str]:
    """What ``worker``, ``beat`` and ``api`` print at start: the config file, the templates, and each vendor
    as ready (with where it sends) or with the settings it lacks. The last line starts with ``WARNING:``
    when no vendor can send, since every recipient would then be refused "not configured"."""
    from worker.commands.vendors import missing_settings

    config = str(settings.config.resolve()) if settings.config else "none (SMSD_CONFIG unset: no templates)"
    templates = ", ".join(sorted(settings.templates)) or "none (sends need content=, or a config file)"
    redis_url = masked_url(settings.effective_redis_url)
    lines = [f"config     {config}", f"templates  {templates}", f"redis      {redis_url}"]
    ready = []
    for name in settings.vendor_names:
        missing = missing_settings(settings, name)
        if missing:
            lines.append(f"{name + ':':<11}not configured ({', '.join(missing)} missing)")
        else:
            ready.append(name)
            lines.append(f"{name + ':':<11}ready ({settings.vendor(name).base_url})")
    if not ready:
        lines.append(
            "WARNING: no vendor can send: every recipient will be refused 'not configured'. Set one vendor's"
            " credentials (README \"Configuration\"), or try `smsdispatch demo`."
        )
    return lines


def announce(settings: Settings) -> None:
    """Print :func:`startup_report`: its lines on stdout, the warning (if any) on stderr."""
    for line in startup_report(settings):
        if line.startswith("WARNING:"):
            click.secho(line, err=True, fg="red", bold=True)  # plain text when stderr is not a terminal
        else:
            click.echo(line)
