"""The process's Redis client and the store's Lua scripts.

Every command is retried with backoff for ``redis_outage_s`` when Redis cannot be reached (a restart,
a fail-over, a pause), so a short outage delays work instead of failing it. A retried command may have
run already (the connection dropped after Redis executed it): every write of the store is safe to run
twice (claims carry a token, transitions and settlements are conditional, queued records use HSETNX).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry

from config.settings import Settings, get_settings

LUA = Path(__file__).parent / "lua"
RETRIED = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)
BACKOFF_CAP_S = 1.0

_clients: dict[tuple[int, str, float], redis.Redis] = {}


def retry_policy(outage_s: float) -> Retry:
    """Backoff from 50 ms up to 1 s a try, enough tries to span ``outage_s``."""
    return Retry(
        ExponentialWithJitterBackoff(cap=BACKOFF_CAP_S, base=0.05),
        int(outage_s / BACKOFF_CAP_S) + 5,
        supported_errors=RETRIED,
    )


def get_redis(settings: Settings | None = None) -> redis.Redis:
    """The process's Redis client (one pool per process, made after fork)."""
    settings = settings or get_settings()
    url = settings.effective_redis_url
    key = (os.getpid(), url, settings.redis_outage_s)
    client = _clients.get(key)
    if client is None:
        client = redis.Redis.from_url(
            url,
            decode_responses=True,
            health_check_interval=30,
            socket_timeout=settings.redis_socket_timeout_s,
            socket_connect_timeout=settings.redis_socket_timeout_s,
            retry=retry_policy(settings.redis_outage_s),
            retry_on_error=list(RETRIED),
        )
        _clients[key] = client
    return client


def short_client(settings: Settings, timeout_s: float, outage_s: float = 0.0) -> redis.Redis:
    """A client of its own for a caller that must answer fast (the HTTP API, a metrics scrape): each
    command waits at most ``timeout_s`` (or the configured socket time-out, if shorter), and an outage is
    retried for ``outage_s`` (0: not at all) instead of the process-wide ``redis_outage_s``."""
    timeout = min(settings.redis_socket_timeout_s, timeout_s)
    retries: dict[str, Any] = (
        {"retry": retry_policy(outage_s), "retry_on_error": list(RETRIED)}
        if outage_s > 0
        else {"retry": Retry(NoBackoff(), 0)}
    )
    return redis.Redis.from_url(
        settings.effective_redis_url,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        **retries,
    )


@functools.cache
def _source(name: str) -> str:
    return (LUA / f"{name}.lua").read_text()


def script(client: redis.Redis, name: str) -> Any:
    """A registered Lua script from ``lua/<name>.lua`` (EVALSHA, loaded again if Redis lost it)."""
    cache: dict[str, Any] = client.__dict__.setdefault("_smsd_scripts", {})
    if name not in cache:
        cache[name] = client.register_script(_source(name))
    return cache[name]


def queue_script(pipe: redis.client.Pipeline, name: str, keys: Sequence[Any], args: Sequence[Any]) -> None:
    """Queue script ``name`` on ``pipe`` as EVAL with its source.

    Not EVALSHA: redis-py sends ``SCRIPT EXISTS`` before a pipeline holding a registered script, one
    more round trip on every chunk's record and admit and every planned chunk. Plain EVALSHA would
    fail with NOSCRIPT after a Redis restart (the script cache is not persisted), and running the
    failed script again after the rest of the pipeline would reorder its writes: a record's lease
    ended before its recipients are written, say, with a crash in between stranding them. EVAL
    cannot miss; Redis hashes the body and runs its cached copy (our scripts are 0.6-2.7 KB, sent
    beside arguments of up to ~100 KB)."""
    pipe.eval(_source(name), len(keys), *keys, *args)


def lua_scripts() -> dict[str, str]:
    """Every script's source by name (for the test that their states are all ``State`` values)."""
    return {path.stem: path.read_text() for path in sorted(LUA.glob("*.lua"))}
