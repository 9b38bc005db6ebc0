"""``GET /metrics``: Prometheus metrics (prometheus-client). See README "Metrics".

One scrape serves the families read from Redis (``worker.metrics.RedisCollector``: breakers, balances,
queue depths, campaign progress) and the families counted where it happens: every worker process's
files when this host shares ``PROMETHEUS_MULTIPROC_DIR`` with its worker, else this process's own (workers
elsewhere serve theirs on ``smsdispatch worker --metrics-port``). Unauthenticated, like ``/healthz``:
keep it on the internal network.
"""

from __future__ import annotations

import redis
from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.backoff import NoBackoff
from redis.retry import Retry
from starlette.responses import Response

from config.settings import PROVIDERS, Settings
from worker.app import QUEUES
from worker.metrics import RedisCollector, local_registry
from worker.store import Store

SCRAPE_REDIS_TIMEOUT_S = 1.0  # each read; a Redis outage costs a scrape about this once (see the collector)


def scrape_store(settings: Settings) -> Store:
    """A store on a client of the scrape's own: short time-outs and no retries, so a scrape during a Redis
    outage answers within a second or so (Prometheus scrapes again)."""
    timeout = min(settings.redis_socket_timeout_s, SCRAPE_REDIS_TIMEOUT_S)
    client = redis.Redis.from_url(
        settings.effective_redis_url,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
    return Store(client, settings)


def router(settings: Settings) -> APIRouter:
    routes = APIRouter()
    registry = local_registry()
    registry.register(RedisCollector(scrape_store(settings), PROVIDERS, QUEUES))

    @routes.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        """The exposition in Prometheus's text format (run in the thread pool: the collector blocks)."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return routes
