"""Start-up check of the commands that need Redis (``worker``, ``beat``, ``status``): reach it, or stop.

Without it a worker given ``SMSD_REDIS_URL=localhost:6379`` exited 0 with ``No module named 'localhost'``,
and one given an unreachable Redis retried the broker for ever while its callers hung. Now the command
pings Redis once, with a 2 s time-out and no retries, and stops with one line naming the setting (its
password masked) and a non-zero exit. The URL's format is the settings' business (``config.settings``).
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


def ping_redis(url: str, timeout_s: float = PING_TIMEOUT_S, *, default: bool = False) -> None:
    """Connect to ``url`` and PING once within ``timeout_s`` seconds (connect and answer each), or raise
    ``click.ClickException("SMSD_REDIS_URL=<masked>: cannot reach Redis: <reason>")``. ``default`` says
    the URL is the built-in one (the setting is unset)."""
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s, retry=Retry(NoBackoff(), 0)
        )
    except ValueError as exc:  # redis-py cannot read the URL (no scheme, a bad port, ...)
        raise _unreachable(url, exc, default) from None
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:  # refused, timed out, TLS, auth, not Redis at all
        raise _unreachable(url, exc, default) from None
    finally:
        client.close()


def check_redis(settings: Settings) -> None:
    """``ping_redis`` on the configured (or default) Redis URL."""
    ping_redis(settings.effective_redis_url, default=settings.redis_url is None)


def _unreachable(url: str, exc: BaseException, default: bool) -> click.ClickException:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    for secret in sorted(_secrets(url), key=len, reverse=True):
        reason = reason.replace(secret, "***")
    setting = f"SMSD_REDIS_URL={masked_url(url)}" + (" (unset: the default)" if default else "")
    return click.ClickException(f"{setting}: cannot reach Redis: {reason}")


def _secrets(url: str) -> list[str]:
    """The parts of ``url`` that ``masked_url`` hides (to scrub them from an error's text too)."""
    found = [m.group(0).partition("=")[2] for m in _SECRET_QUERY.finditer(url)]
    match = _USERINFO.search(url)
    if match is not None:
        user, colon, password = match.group(1).partition(":")
        found.append(password if colon else user)
    return [secret for secret in found if len(secret) >= 3]
