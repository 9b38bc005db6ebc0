"""Sending one chunk: claim its recipients, take the vendor's budget, call the vendor, record the outcome.

No Celery here: ``run_chunk`` returns what to do next (nothing, or a retry of some phones after a delay)
and the task decides how to schedule it. Redis round trips per chunk: one claim (limits, opt-outs,
already-sent), one budget take, one pipelined write of every recipient's new state.

Ambiguous outcomes (the request may have reached the vendor but no answer came back, or a worker died
while the call was in flight) are never resent: the recipients are recorded ``submitted`` with code
``AMBIGUOUS``, a receipt (matched by our ``bid``) settles them, and the settle sweep fails those still
without one after the vendor's settle window. See README "Ambiguous outcomes".
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import redis
import structlog

from config.settings import Settings
from providers.base import Provider, SendRequest, SendResult
from providers.errors import (
    AmbiguousError,
    BalanceError,
    ConfigError,
    PermanentError,
    RateLimitedError,
    TransientError,
)
from tasks.plan import ChunkSpec
from worker import limits
from worker.store import Keys, State, Store, now_ms, pack

log = structlog.get_logger(__name__)
AMBIGUOUS = "AMBIGUOUS"
STALE_MARGIN_S = 5.0


@dataclass(frozen=True, slots=True)
class ChunkJob:
    message_id: str
    kind: str
    chunk: ChunkSpec
    attempt: int = 0

    @property
    def bid(self) -> str:
        """Our id for the vendor call; Infocloud echoes it in receipts (≤ 64 characters)."""
        return f"{self.message_id}.{self.chunk.number}"


@dataclass
class Writes:
    """Everything one chunk run writes, sent to Redis in one pipeline at the end."""

    records: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, str]] = field(default_factory=list)
    index: dict[str, str] = field(default_factory=dict)
    unconfirmed: dict[str, int] = field(default_factory=dict)  # see Store.write


@dataclass(frozen=True, slots=True)
class Retry:
    """Send ``phones`` again after ``delay_s``; with ``failover``, plan them again for another vendor."""

    phones: tuple[str, ...]
    delay_s: float
    attempt: int
    failover: bool = False


def event(
    message_id: str, state: str, provider: str, phones: Sequence[str], code: str = ""
) -> dict[str, str]:
    """One stream entry for a group of recipients that moved to ``state`` together."""
    return {
        "message_id": message_id,
        "state": state,
        "provider": provider,
        "code": code,
        "count": str(len(phones)),
        "phones": ",".join(phones),
    }


def backoff(settings: Settings, attempt: int, error: TransientError) -> float:
    """Seconds before the next attempt: exponential with jitter, longer when the vendor says too often."""
    retry = settings.retry
    ceiling: float = min(retry.backoff_cap_s, retry.backoff_base_s * 2**attempt)
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    if isinstance(error, RateLimitedError):
        delay = max(delay, error.retry_after_s or retry.rate_limited_wait_s)
    return delay


def run_chunk(job: ChunkJob, settings: Settings, client: redis.Redis, provider: Provider) -> list[Retry]:
    """Send one chunk and record every recipient's outcome. Returns the retries to schedule: the phones
    another worker holds in flight (looked at again once that call must be over) and the phones of a
    failed call (after backoff, or for another vendor)."""
    store = Store(client, settings)
    name = job.chunk.provider
    section = settings.vendor(name)
    # The budget is taken before the claim, so a recipient is "sending" only for the call itself: one
    # still "sending" after the call's longest possible duration belongs to a worker that died.
    limits.acquire_budget(client, name, section.requests_per_second)
    stale_ms = int((section.read_timeout_s + section.connect_timeout_s + STALE_MARGIN_S) * 1000)
    claim = limits.claim(
        client, job.message_id, job.kind, name, job.chunk.phones, settings.limits[job.kind], stale_ms
    )
    out = Writes(events=_claim_events(job, claim))
    if claim.orphaned:
        # A worker died while these were in flight: the vendor may have them. Never resend.
        _ambiguous(settings, job, claim.orphaned, "the sending worker stopped mid-call", out)
    retries = [Retry(claim.in_flight, stale_ms / 1000, job.attempt)] if claim.in_flight else []
    if claim.send and (retry := _send(job, settings, store, provider, claim.send, out)):
        retries.append(retry)
    store.write(
        job.message_id, out.records, out.events, out.index, over_sending=True, unconfirmed=out.unconfirmed
    )
    return retries


def _claim_events(job: ChunkJob, claim: limits.Claim) -> list[dict[str, str]]:
    name = job.chunk.provider
    events = []
    if claim.opted_out:
        events.append(event(job.message_id, State.OPTED_OUT, name, claim.opted_out, "OPTOUT"))
    by_rule: dict[str, list[str]] = {}
    for phone, rule in claim.limited:
        by_rule.setdefault(str(rule), []).append(phone)
    for label, phones in by_rule.items():
        events.append(event(job.message_id, State.RATE_LIMITED, name, phones, f"LIMIT {label}"))
    return events


def _send(
    job: ChunkJob,
    settings: Settings,
    store: Store,
    provider: Provider,
    phones: tuple[str, ...],
    out: Writes,
) -> Retry | None:
    chunk = job.chunk if len(phones) == len(job.chunk.phones) else job.chunk.only(phones)
    request = SendRequest(chunk.phones, chunk.template, bid=job.bid, per_recipient=chunk.per_recipient)
    bound = log.bind(
        message_id=job.message_id, provider=chunk.provider, chunk=chunk.number, attempt=job.attempt
    )
    try:
        result = provider.send(request)
    except TransientError as exc:
        return _transient(job, settings, phones, exc, out, bound)
    except AmbiguousError as exc:
        bound.warning("vendor call ambiguous", error=str(exc), recipients=len(phones))
        _ambiguous(settings, job, phones, str(exc), out)
        return None
    except PermanentError as exc:
        if isinstance(exc, ConfigError | BalanceError):
            store.mark_unhealthy(chunk.provider, exc.code, str(exc))
            bound.error(
                "provider marked unhealthy", code=exc.code, error=str(exc), failover=bool(chunk.logical)
            )
            if chunk.logical is not None:  # the vendor refused the whole call: nothing was sent
                return _failover(job, phones, exc, out)
        else:
            bound.warning("vendor refused the request", code=exc.code, error=str(exc))
        _fail(job, phones, exc.code, exc.text or str(exc), out)
        return None
    _record_result(job, result, out)
    bound.info("chunk sent", accepted=sum(o.accepted for o in result.outcomes), recipients=len(phones))
    return None


def _transient(
    job: ChunkJob,
    settings: Settings,
    phones: tuple[str, ...],
    exc: TransientError,
    out: Writes,
    bound: structlog.stdlib.BoundLogger,
) -> Retry | None:
    attempt = job.attempt + 1
    if attempt >= settings.retry.max_attempts:
        bound.warning("giving up after retries", code=exc.code, error=str(exc), attempts=attempt)
        _fail(job, phones, exc.code or "TRANSIENT", f"after {attempt} attempts: {exc.text or exc}", out)
        return None
    delay = backoff(settings, job.attempt, exc)
    bound.info("vendor call failed, will retry", code=exc.code, error=str(exc), delay_s=round(delay, 2))
    retry_record = pack(State.RETRY, now_ms(), job.chunk.provider, "", exc.code, exc.text)
    out.records.update(dict.fromkeys(phones, retry_record))
    return Retry(phones, delay, attempt)


def _failover(job: ChunkJob, phones: tuple[str, ...], exc: PermanentError, out: Writes) -> Retry:
    # "retry": queued again with their per-phone limits already charged, for whichever vendor is next.
    record = pack(State.RETRY, now_ms(), job.chunk.provider, "", exc.code, f"failing over: {exc.text or exc}")
    out.records.update(dict.fromkeys(phones, record))
    out.events.append(event(job.message_id, State.RETRY, job.chunk.provider, phones, f"failover {exc.code}"))
    return Retry(phones, 0.0, job.attempt, failover=True)


def _fail(
    job: ChunkJob,
    phones: Iterable[str],
    code: str,
    text: str,
    out: Writes,
) -> None:
    phones = tuple(phones)
    failed = pack(State.FAILED, now_ms(), job.chunk.provider, "", code, text)
    out.records.update(dict.fromkeys(phones, failed))
    out.events.append(event(job.message_id, State.FAILED, job.chunk.provider, phones, code))


def _ambiguous(settings: Settings, job: ChunkJob, phones: Sequence[str], why: str, out: Writes) -> None:
    at = now_ms()
    name = job.chunk.provider
    due = at + settings.vendor(name).settle_s * 1000  # no receipt by then: the settle sweep fails it
    record = pack(State.SUBMITTED, at, name, job.bid, AMBIGUOUS, why)
    out.records.update(dict.fromkeys(phones, record))
    out.unconfirmed.update({unconfirmed_entry(job.message_id, phone, name): due for phone in phones})
    out.events.append(event(job.message_id, State.SUBMITTED, name, phones, AMBIGUOUS))


def unconfirmed_entry(message_id: str, phone: str, provider: str) -> str:
    """The member of ``Keys.ambiguous`` for one unconfirmed recipient (scored by its settle deadline)."""
    return f"{message_id}|{phone}|{provider}"


def _record_result(job: ChunkJob, result: SendResult, out: Writes) -> None:
    at = now_ms()
    name = result.provider
    accepted: list[str] = []
    refused: dict[str, list[str]] = {}
    for o in result.outcomes:
        if o.accepted:
            out.records[o.phone] = pack(State.SUBMITTED, at, name, o.vendor_id, o.code, fee=o.fee)
            accepted.append(o.phone)
            if o.vendor_id and not result.batch_id:  # per-phone vendor ids (sid, smsid, mid)
                out.index[Keys.vendor_batch(name, o.vendor_id)] = job.message_id
        else:
            out.records[o.phone] = pack(State.REJECTED, at, name, o.vendor_id, o.code, o.text)
            refused.setdefault(o.code, []).append(o.phone)
    if accepted:
        out.events.append(event(job.message_id, State.SUBMITTED, name, accepted, result.batch_id))
    for code, phones in refused.items():
        out.events.append(event(job.message_id, State.REJECTED, name, phones, code))
    if result.batch_id:
        out.index[Keys.vendor_batch(name, result.batch_id)] = job.message_id
