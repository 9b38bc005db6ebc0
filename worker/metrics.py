"""Prometheus metrics (prometheus-client). See README "Metrics" for the families and how to scrape them.

Two kinds of family:

- **Counted where it happens** (:func:`families`): recipients by vendor, kind and state and the retries
  a chunk run asks for (:func:`record_run`, at the end of ``tasks.dispatch.run_chunk``); each vendor
  call's latency and outcome class (:func:`metered`, around every adapter's ``send``: ``worker.registry``).
  Celery runs them in prefork children, so they use prometheus-client's multiprocess mode: each process
  writes its own file in ``PROMETHEUS_MULTIPROC_DIR`` and a scrape adds the files up.
  ``smsdispatch worker`` sets that directory up before Celery forks (:func:`prepare_worker`).
- **Read at scrape time** (``worker.http.metrics.RedisCollector``): breakers, benches, balances, queue
  depths and campaign progress, global state kept in Redis. Only the API's ``GET /metrics`` serves them,
  so a scrape sees each once however many workers run.

Metrics never get in a send's way: a failure to record one is logged and forgotten.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import tempfile
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from celery import signals
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    multiprocess,
    start_http_server,
    values,
)
from prometheus_client.core import Metric

from providers.base import SendRequest, SendResult
from providers.errors import AmbiguousError, PermanentError, RateLimitedError, TransientError
from worker.store import Claim, Recording, State

if TYPE_CHECKING:
    from tasks.dispatch import Retry

log = structlog.get_logger(__name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# A vendor call takes tens of ms to a few s; its read time-out is 10 s by default.
CALL_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
MAX_REASON = 48  # retry reasons are codes and a few words; a longer one is cut (bounded label values)


@dataclass(frozen=True, slots=True)
class Families:
    recipients: Counter
    retries: Counter
    calls: Counter
    call_seconds: Histogram


@functools.cache
def families() -> Families:
    """The families counted where it happens, made on first use: prometheus-client fixes a metric's storage
    (in memory, or a file per process) when it is made, so after :func:`prepare_worker` chose it. No
    ``_created`` series: multiprocess mode has none, so a process serves the same families either way."""
    disable_created_metrics()  # type: ignore[no-untyped-call]
    return Families(
        recipients=Counter(
            "smsd_recipients",
            "Recipients' new states recorded by chunk runs, by vendor, kind and state",
            ["vendor", "kind", "state"],
        ),
        retries=Counter(
            "smsd_retries", "Recipients a chunk run queued again, by vendor and reason", ["vendor", "reason"]
        ),
        calls=Counter("smsd_vendor_calls", "Vendor send calls, by outcome class", ["vendor", "outcome"]),
        call_seconds=Histogram(
            "smsd_vendor_call_seconds", "Vendor send call latency (s)", ["vendor"], buckets=CALL_BUCKETS_S
        ),
    )


def _never_raises(record: Callable[..., None]) -> Callable[..., None]:
    """A recording function whose failure (a full disk under the metrics directory) is only logged."""

    @functools.wraps(record)
    def safe(*args: Any) -> None:
        try:
            record(*args)
        except Exception as exc:  # noqa: BLE001 - a metric must never fail a send
            log.warning("metric not recorded", metric=record.__name__, error=f"{type(exc).__name__}: {exc}")

    return safe


@_never_raises
def record_run(vendor: str, kind: str, claim: Claim, out: Recording, retries: Sequence[Retry]) -> None:
    """Count what one chunk run recorded: each recipient's new state (those its claim found opted out or
    over a limit included) and the recipients it queues again, by reason. Waits for the breaker or the
    vendor's budget, which end a run before its claim, are not retries (not attempts): see the breaker
    gauges and the queue depths."""
    f = families()
    states = Tally(outcome.state.value for outcome in out.outcomes)
    states[State.OPTED_OUT.value] += len(claim.opted_out)
    states[State.RATE_LIMITED.value] += len(claim.limited)
    for state, n in states.items():
        if n:
            f.recipients.labels(vendor, kind, state).inc(n)
    for retry in retries:
        f.retries.labels(vendor, retry.reason[:MAX_REASON] or "unknown").inc(len(retry.phones))


@_never_raises
def record_call(vendor: str, outcome: str, seconds: float) -> None:
    f = families()
    f.calls.labels(vendor, outcome).inc()
    f.call_seconds.labels(vendor).observe(seconds)


@_never_raises
def record_answer(vendor: str, result: SendResult, seconds: float) -> None:
    """A call the vendor answered: ``accepted`` when it took at least one phone, else ``refused``."""
    record_call(vendor, "accepted" if any(o.accepted for o in result.outcomes) else "refused", seconds)


def outcome_class(exc: BaseException) -> str:
    """A failed call's class, as the dispatcher treats it (``tasks/dispatch.py``)."""
    if isinstance(exc, RateLimitedError):
        return "rate_limited"
    if isinstance(exc, TransientError):
        return "transient"
    if isinstance(exc, AmbiguousError):
        return "ambiguous"
    if isinstance(exc, PermanentError):
        return "refused"
    return "error"


def metered(vendor: str, send: Callable[[SendRequest], SendResult]) -> Callable[[SendRequest], SendResult]:
    """``send`` timed and its outcome counted (:func:`record_answer`, :func:`outcome_class`); whatever
    ``send`` returns or raises passes through unchanged."""

    @functools.wraps(send)
    def call(request: SendRequest) -> SendResult:
        start = time.perf_counter()
        try:
            result = send(request)
        except BaseException as exc:
            record_call(vendor, outcome_class(exc), time.perf_counter() - start)
            raise
        record_answer(vendor, result, time.perf_counter() - start)
        return result

    return call


# -- multiprocess mode (Celery prefork) ---------------------------------------------------------------


class MetricsSetupError(Exception):
    """The worker's metrics directory or port cannot be used (the message names which, and why)."""


def prepare_worker(port: int | None) -> Path:
    """Before Celery forks: the worker's metrics directory, and with ``port`` an HTTP server on it that
    adds up the files of every process of this worker (``GET /metrics`` on that port).

    ``PROMETHEUS_MULTIPROC_DIR`` set: that directory, made if missing and emptied of a previous run's
    files (prometheus-client's rule; so one directory per worker command). Unset: a private temporary
    one, removed when the worker exits. Returns the directory."""
    if families.cache_info().currsize:
        raise RuntimeError("metrics were made before the multiprocess directory was set")
    configured = os.environ.get(MULTIPROC_ENV)
    try:
        if configured:
            path = Path(configured)
            if path.exists() and not path.is_dir():
                raise MetricsSetupError(f"{MULTIPROC_ENV}={configured}: not a directory")
            path.mkdir(parents=True, exist_ok=True)
            for stale in path.glob("*.db"):
                stale.unlink(missing_ok=True)
        else:
            path = Path(tempfile.mkdtemp(prefix="smsd-metrics-"))
            os.environ[MULTIPROC_ENV] = str(path)
            atexit.register(_remove_dir, path, os.getpid())
    except OSError as exc:
        raise MetricsSetupError(f"{MULTIPROC_ENV}={configured or ''}: {exc.strerror or exc}") from None
    # prometheus-client reads the variable when imported, which may have been before this: read it again
    # (it must be, before any metric is made: see families()).
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    if port is not None:
        try:
            start_http_server(port, registry=multiprocess_registry(path))
        except OSError as exc:
            raise MetricsSetupError(f"--metrics-port {port}: {exc.strerror or exc}") from None
    return path


class ProcessFiles:
    """The sum of every process's file in ``path`` (prometheus-client's ``MultiProcessCollector``), minus
    the files a process is creating at this instant: such a file is empty for a moment, and reading it
    would fail the whole scrape."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def collect(self) -> Iterable[Metric]:
        files = []
        for file in self.path.glob("*.db"):
            with contextlib.suppress(OSError):  # gone since the listing: nothing to add
                if file.stat().st_size:
                    files.append(str(file))
        merged: Iterable[Metric] = multiprocess.MultiProcessCollector.merge(files, accumulate=True)  # type: ignore[no-untyped-call]
        return merged


def multiprocess_registry(path: Path) -> CollectorRegistry:
    """A registry adding up the files of every process writing to ``path``."""
    registry = CollectorRegistry()
    registry.register(ProcessFiles(path))
    return registry


def local_registry() -> CollectorRegistry:
    """What ``/metrics`` serves of the families counted where it happens: every process's files in
    multiprocess mode (a host whose API shares the directory with its worker), else this process's."""
    if directory := os.environ.get(MULTIPROC_ENV):
        return multiprocess_registry(Path(directory))
    registry = CollectorRegistry()
    registry.register(REGISTRY)
    return registry


def _remove_dir(path: Path, owner: int) -> None:
    """atexit: the worker's private directory goes with the main process (not with a forked child)."""
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)


def _child_exit(pid: int | None = None, **_: Any) -> None:
    """A prefork child is ending: prometheus-client's bookkeeping of a dead process (its live gauges go;
    its counters stay in the sum, as a counter must not go down)."""
    if pid is not None and os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


signals.worker_process_shutdown.connect(_child_exit)
