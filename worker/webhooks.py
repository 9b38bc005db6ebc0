"""Webhooks: event batches from the stream POSTed to the application's URL, signed, retried with backoff.

A run (``tasks.webhooks.deliver_webhooks``, on beat) holds the run lock, reads the batch in flight or the
next one through the ``webhooks`` consumer group and POSTs it as JSON::

    {"v": "1", "events": [{"id": "<stream entry id>", "v": "1", "type": "state", "at": "...", ...}]}

signed with HMAC-SHA256 over ``f"{timestamp}.{body}"`` (``X-Smsd-Timestamp``: unix s,
``X-Smsd-Signature: v1=<hex>``). A 2xx acknowledges the batch; anything else (refused, time-out, 3xx, 4xx,
5xx) leaves it in flight and waits ``min(backoff_cap_s, backoff_base_s * 2**(attempts - 1))`` s before the
next attempt (the wait is kept in Redis, so every beat and worker honours it). Events that are still
undelivered ``give_up_after_s`` after they were published are dropped at the next failure, with an error
line and a dead letter. Delivery is at least once: a receiver dedupes by event id.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import structlog
from redis.exceptions import LockError
from redis.lock import Lock

from config.returnpath import WebhookSettings
from worker.events import VERSION
from worker.store import Store
from worker.store.records import now_ms
from worker.store.webhooks import Entry

log = structlog.get_logger(__name__)

TIMESTAMP_HEADER = "X-Smsd-Timestamp"
SIGNATURE_HEADER = "X-Smsd-Signature"
SCHEME = "v1"
USER_AGENT = "smsdispatch-webhooks/1"
MAX_BATCHES_PER_RUN = 50
RUN_BUDGET_S = 10.0  # a run stops starting new POSTs after this; the next beat tick goes on
DROP_LIMIT = 100_000  # events given up on in one failed run, at most


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``f"{timestamp}.{body}"`` under ``secret`` (timestamp in unix s)."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def body_of(batch: Sequence[Entry]) -> bytes:
    """The JSON body of a batch: each event's stream fields and its stream id as ``id``, in order."""
    events = [{"id": entry_id, **fields} for entry_id, fields in batch]
    return json.dumps({"v": VERSION, "events": events}, ensure_ascii=False, separators=(",", ":")).encode()


def headers_for(secret: str, body: bytes, now_s: int) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        TIMESTAMP_HEADER: str(now_s),
        SIGNATURE_HEADER: f"{SCHEME}={sign(secret, now_s, body)}",
    }


def shown_url(url: str) -> str:
    """``url`` fit for a log line or a screen: no user or password, query values hidden."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}" + ("?…" if parts.query else "")


def backoff_s(settings: WebhookSettings, attempts: int) -> float:
    """The wait in s after ``attempts`` failed attempts in a row (1, 2, ...)."""
    return float(min(settings.backoff_cap_s, settings.backoff_base_s * 2 ** min(attempts - 1, 60)))


def post(client: httpx.Client, settings: WebhookSettings, body: bytes) -> str | None:
    """POST one signed batch. None if the application answered 2xx, else what went wrong (no secret,
    no credentials of the URL in it)."""
    secret = settings.secret.get_secret_value()
    try:
        answer = client.post(settings.url, content=body, headers=headers_for(secret, body, int(time.time())))
    except httpx.HTTPError as exc:
        text = f"{type(exc).__name__}: {exc}"
        return text.replace(settings.url, shown_url(settings.url)).replace(secret, "[redacted]")
    if answer.is_success:
        return None
    return f"HTTP {answer.status_code}"


@dataclass(frozen=True, slots=True)
class RunReport:
    """What one run did: events delivered and dropped, batches POSTed, and why it stopped early
    (``"off"``, ``"locked"``, ``"waiting"``, ``"failed"``, ``"lost lock"``, or "")."""

    delivered: int = 0
    batches: int = 0
    dropped: int = 0
    stopped: str = ""


def deliver(
    store: Store, settings: WebhookSettings, transport: httpx.BaseTransport | None = None
) -> RunReport:
    """One delivery run: batches while they are delivered, up to the run's bounds. Safe to call from any
    number of processes at once: the run lock lets one of them deliver, the others return at once."""
    if not settings.enabled:
        return RunReport(stopped="off")
    lock = store.webhook_lock(settings.timeout_s * 4 + 10)
    if not lock.acquire():
        return RunReport(stopped="locked")
    try:
        if store.webhook_state().next_ms > now_ms():
            return RunReport(stopped="waiting")
        store.webhook_group()
        timeout = httpx.Timeout(settings.timeout_s)
        with httpx.Client(timeout=timeout, transport=transport, follow_redirects=False) as client:
            return _run(store, settings, client, lock)
    finally:
        with contextlib.suppress(LockError):  # it expired meanwhile: nothing to release
            lock.release()


def _run(store: Store, settings: WebhookSettings, client: httpx.Client, lock: Lock) -> RunReport:
    delivered = batches = 0
    deadline = time.monotonic() + RUN_BUDGET_S
    while batches < MAX_BATCHES_PER_RUN and time.monotonic() < deadline:
        batch = store.webhook_batch(settings.batch_size)
        if not batch:
            break
        try:
            lock.reacquire()  # renew: this run still owns delivery
        except LockError:
            return RunReport(delivered, batches, stopped="lost lock")
        error = post(client, settings, body_of(batch))
        batches += 1
        if error is not None:
            dropped = _failed(store, settings, batch, error)
            return RunReport(delivered, batches, dropped, stopped="failed")
        attempts = store.webhook_state().attempts
        store.webhook_delivered([entry_id for entry_id, _ in batch])
        delivered += len(batch)
        if attempts:
            log.info("webhooks delivered after failures", url=shown_url(settings.url), attempts=attempts)
    return RunReport(delivered, batches)


def _failed(store: Store, settings: WebhookSettings, batch: Sequence[Entry], error: str) -> int:
    """Record a failed attempt and its backoff; give up on events past ``give_up_after_s``. Returns
    how many events were given up on."""
    attempts = store.webhook_state().attempts + 1
    wait = backoff_s(settings, attempts)
    store.webhook_failed(attempts, now_ms() + int(wait * 1000), error)
    url = shown_url(settings.url)
    log.warning("webhook delivery failed", url=url, error=error, attempts=attempts, events=len(batch),
                retry_in_s=round(wait, 3))
    before = now_ms() - settings.give_up_after_s * 1000
    letter = store.webhook_drop_older(before, settings.batch_size, error, DROP_LIMIT)
    if letter is None:
        return 0
    log.error("webhook events given up on", url=url, error=error, events=letter.count,
              first_id=letter.first_id, last_id=letter.last_id, give_up_after_s=settings.give_up_after_s)
    return letter.count
