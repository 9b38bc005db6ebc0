"""``GET /metrics``: Prometheus metrics (prometheus-client). See README "Metrics".

One scrape serves the families read from Redis (:class:`RedisCollector`: breakers, balances, queue
depths, campaign progress) and the families counted where it happens: every worker process's
files when this host shares ``PROMETHEUS_MULTIPROC_DIR`` with its worker, else this process's own (workers
elsewhere serve theirs on ``smsdispatch worker --metrics-port``). Unauthenticated, like ``/healthz``:
keep it on the internal network.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence

import redis
import structlog
from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.responses import Response

from config.settings import PROVIDERS, Settings
from worker.app import QUEUES
from worker.metrics import local_registry
from worker.store import State, Store, now_ms
from worker.store.client import short_client

log = structlog.get_logger(__name__)
SCRAPE_REDIS_TIMEOUT_S = 1.0  # each read; a Redis outage costs a scrape about this once (see the collector)
MAX_CAMPAIGNS = 100  # active campaigns a scrape reports
MAX_NAME = 64  # a campaign's name in a label


class RedisCollector:
    """The families read from Redis when scraped: vendors (breaker, bench, balances, last success),
    queue depths and active campaigns' progress. Never raises: what could not be read is left out,
    ``smsd_redis_up`` says 0 and ``smsd_scrape_errors_total`` counts it by section. The store's client
    should have short time-outs and no retries (a scrape is retried by Prometheus)."""

    def __init__(self, store: Store, vendors: Sequence[str], queues: Sequence[str]) -> None:
        self.store = store
        self.vendors = tuple(vendors)
        self.queues = tuple(queues)
        self._errors: Counter[str] = Counter()
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        sections: dict[str, Callable[[], Iterable[Metric]]] = {
            "vendors": self._vendors,
            "queues": self._queues,
            "campaigns": self._campaigns,
        }
        up = 1
        for name, read in sections.items():
            try:
                yield from list(read())
            except Exception as exc:  # noqa: BLE001 - a scrape answers with what it could read
                up = 0
                with self._lock:
                    self._errors[name] += 1
                log.warning("metrics section not read", section=name, error=f"{type(exc).__name__}: {exc}")
                if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
                    break  # Redis is out of reach: the other sections would only wait for it too
        yield GaugeMetricFamily("smsd_redis_up", "1 when this scrape read everything from Redis", value=up)
        errors = CounterMetricFamily(
            "smsd_scrape_errors", "Scrape sections Redis could not answer", labels=["section"]
        )
        with self._lock:
            for name in sections:
                errors.add_metric([name], self._errors[name])
        yield errors

    def _vendors(self) -> Iterator[Metric]:
        names = ["vendor"]
        is_open = GaugeMetricFamily("smsd_breaker_open", "1 while the vendor's circuit is open", labels=names)
        failures = GaugeMetricFamily(
            "smsd_breaker_failures", "Certain failures in a row counted by the breaker", labels=names
        )
        benched = GaugeMetricFamily(
            "smsd_vendor_benched", "1 while the vendor is benched (auth, config or balance)", labels=names
        )
        last_ok = GaugeMetricFamily(
            "smsd_vendor_last_success_timestamp_seconds", "The vendor's last answer (0: none)", labels=names
        )
        items = ["vendor", "item"]
        balance = GaugeMetricFamily("smsd_vendor_balance", "The vendor's last polled balance", labels=items)
        age = GaugeMetricFamily(
            "smsd_vendor_balance_age_seconds", "Seconds since the balance was polled", labels=items
        )
        now = now_ms()
        for health in self.store.vendor_health(self.vendors):
            is_open.add_metric([health.name], 1 if health.breaker_open else 0)
            failures.add_metric([health.name], _int(health.breaker.get("failures")))
            benched.add_metric([health.name], 1 if health.bench else 0)
            last_ok.add_metric([health.name], health.last_ok_ms / 1000)
            for reading in health.balances:
                balance.add_metric([health.name, reading.item], reading.value)
                age.add_metric([health.name, reading.item], max(0, now - reading.at_ms) / 1000)
        yield from (is_open, failures, benched, last_ok, balance, age)

    def _queues(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("smsd_queue_depth", "Tasks waiting in a Celery queue", labels=["queue"])
        for queue in self.queues:
            depth.add_metric([queue], self.store.queue_length(queue))
        yield depth

    def _campaigns(self) -> Iterator[Metric]:
        names = ["campaign", "name"]
        accepted = GaugeMetricFamily("smsd_campaign_accepted", "Recipients accepted at intake", labels=names)
        by_state = GaugeMetricFamily(
            "smsd_campaign_recipients", "Recipients in each state now", labels=[*names, "state"]
        )
        parts = GaugeMetricFamily("smsd_campaign_parts", "Billed parts of recipients sent", labels=names)
        status = GaugeMetricFamily(
            "smsd_campaign_status", "1 for the campaign's status", labels=[*names, "status"]
        )
        ids = self.store.active_campaigns()[-MAX_CAMPAIGNS:]
        for campaign_id, meta in zip(ids, self.store.campaign_metas(ids), strict=True):
            if not meta:
                continue  # ended and expired between the two reads
            labels = [campaign_id, meta.get("name", "")[:MAX_NAME]]
            progress = self.store.progress(campaign_id)
            accepted.add_metric(labels, _int(meta.get("accepted")))
            parts.add_metric(labels, progress.get("parts", 0))
            status.add_metric([*labels, meta.get("status", "")], 1)
            for state in State:
                by_state.add_metric([*labels, state.value], progress.get(state.value, 0))
        yield from (accepted, by_state, parts, status)


def _int(value: str | None) -> int:
    return int(value) if value and value.lstrip("-").isdigit() else 0


def scrape_store(settings: Settings) -> Store:
    """A store on a client of the scrape's own: short time-outs and no retries, so a scrape during a Redis
    outage answers within a second or so (Prometheus scrapes again)."""
    return Store(short_client(settings, SCRAPE_REDIS_TIMEOUT_S), settings)


def router(settings: Settings) -> APIRouter:
    routes = APIRouter()
    registry = local_registry()
    registry.register(RedisCollector(scrape_store(settings), PROVIDERS, QUEUES))

    @routes.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        """The exposition in Prometheus's text format (run in the thread pool: the collector blocks)."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return routes
