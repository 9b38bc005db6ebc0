"""Sending one chunk: take the vendor's budget, claim the recipients, call the vendor, record the outcome.

No Celery here: ``run_chunk`` returns what to do next (nothing, or retries of some phones after a delay)
and the task decides how to schedule them. Redis round trips per chunk: one budget take, one claim
(limits, opt-outs, already-sent), one pipelined write of every recipient's new state (and one for its
events).

No exception leaves ``run_chunk`` with recipients in flight: an error of the vendor error tree is handled
by its class; any other error before the request can have left is transient (retried); after it may
have left, it is the ambiguous outcome. Ambiguous outcomes are never resent: the recipients are recorded
``submitted`` with code ``AMBIGUOUS``, a receipt settles them, and the settle sweep fails those still
without one after the vendor's settle window. See README "Ambiguous outcomes". Redis errors (after the
client's own retries) propagate: the task retries them, and the claim makes a rerun safe.

Vendor health (README "Vendor health and failover"): before the call the vendor's circuit breaker is
asked (``Store.breaker_ask``). While it is open and no probe is due, nothing is claimed: kinds in
``breaker.failover_kinds`` go to the next vendor of the route at once, others are given back with the
wait until the next probe, which is not an attempt (a bulk send waits out an outage and resumes). A
certain failure (``certain``) counts towards opening it, and sends a failover kind to the next vendor
at once; an ambiguous outcome never counts and never fails over. A call the vendor answered (accepted,
refused, rate-limited) closes it, by one SET in the run's pipelined record.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass

import structlog

from config.settings import Settings
from providers.base import Provider, SendRequest, SendResult
from providers.errors import (
    AmbiguousError,
    BalanceError,
    ConfigError,
    PermanentError,
    ProviderError,
    RateLimitedError,
    TransientError,
)
from tasks.plan import ChunkSpec
from worker.metrics import record_run
from worker.registry import offers
from worker.store import Claim, Keys, Outcome, Recording, State, Store
from worker.store.vendors import ok_marker

log = structlog.get_logger(__name__)
AMBIGUOUS = "AMBIGUOUS"
STALE_MARGIN_S = 5.0
MAX_DELAY_S = 7 * 86400.0  # no wait is longer (a vendor's hint of "inf" included)


@dataclass(frozen=True, slots=True)
class ChunkJob:
    message_id: str
    kind: str
    chunk: ChunkSpec
    attempt: int = 0
    campaign: bool = False  # a campaign's chunk: tasks/send.py asks its campaign's gate first

    @property
    def bid(self) -> str:
        """Our id for the vendor call; Infocloud echoes it in receipts (≤ 64 characters)."""
        return f"{self.message_id}.{self.chunk.number}"


@dataclass(frozen=True, slots=True)
class Retry:
    """Send ``phones`` again after ``delay_s``; with ``failover``, plan them again for another vendor now.
    With ``failover`` and ``stay``, phones no other vendor can take are sent by this one after
    ``delay_s`` (it is down, not refusing us); without ``stay`` they fail (it refused us as a whole)."""

    phones: tuple[str, ...]
    delay_s: float
    attempt: int
    failover: bool = False
    reason: str = ""
    stay: bool = False


@dataclass(frozen=True, slots=True)
class ChunkRun:
    """What one run of a chunk did: the retries to schedule, and the last state of a one-phone chunk
    (for send_sms's answer)."""

    retries: tuple[Retry, ...] = ()
    single: Outcome | None = None


def backoff(settings: Settings, attempt: int, error: TransientError) -> float:
    """Seconds before the next attempt: exponential with jitter, longer when the vendor says too often."""
    retry = settings.retry
    ceiling: float = min(retry.backoff_cap_s, retry.backoff_base_s * 2 ** min(attempt, 30))
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    if isinstance(error, RateLimitedError):
        hint = error.retry_after_s
        if hint is None or not math.isfinite(hint) or hint < 0:  # no usable hint (as providers.base.classify)
            hint = retry.rate_limited_wait_s
        delay = max(delay, hint)
    return min(max(delay, 0.0), MAX_DELAY_S)


def stale_ms(settings: Settings, provider: str) -> int:
    """How long a call can last: a recipient still "sending" after that belongs to a dead worker."""
    section = settings.vendor(provider)
    return int((section.read_timeout_s + section.connect_timeout_s + STALE_MARGIN_S) * 1000)


def certain(exc: TransientError) -> bool:
    """A failure that says the vendor did not take the request and is unwell: the connection refused or
    timed out (``NotSentError``), a 5xx, or the vendor's own "busy" codes (Infocloud -1 and 60009, Xiaorui
    21, ...). A rate limit is the vendor working as documented, not a failure of its health."""
    return not isinstance(exc, RateLimitedError)


def fails_over(settings: Settings, job: ChunkJob) -> bool:
    """Whether this chunk goes to the next vendor at once when its vendor is down (OTPs by default)."""
    return job.kind in settings.breaker.failover_kinds and job.chunk.logical is not None


def run_chunk(job: ChunkJob, settings: Settings, store: Store, provider: Provider) -> ChunkRun:
    """Send one chunk and record every recipient's outcome."""
    name = job.chunk.provider
    per_second = settings.vendor(name).requests_per_second
    gate, wait = store.admit(name, per_second)
    if not gate.allowed:
        return ChunkRun((_breaker_wait(settings, job, job.chunk.phones, gate.wait_s),))
    if wait > 0:
        # The budget's next slot is more than a second away (admit waits out a nearer one): give the chunk
        # back with its wait instead of holding a process.
        return ChunkRun((Retry(job.chunk.phones, wait, job.attempt, reason="budget"),))
    stale = stale_ms(settings, name)
    token = uuid.uuid4().hex[:16]
    rules, optout = settings.limits[job.kind], job.kind in settings.optout.kinds  # OTPs not by default
    claim = store.claim(
        job.message_id, job.kind, name, job.chunk.phones, rules, stale, token, honour_optout=optout
    )
    # The claim's own changes (opted out, over a limit) are written: say so now, not after the call,
    # which a dying worker may never finish.
    store.publish(claim.events(job.message_id, name))
    out = Recording()
    if claim.orphaned:
        # A worker died while these were in flight: the vendor may have them. Never resend.
        _ambiguous(job, claim.orphaned, "the sending worker stopped mid-call", out)
    retries = (
        [Retry(claim.in_flight, stale / 1000, job.attempt, reason="in flight")] if claim.in_flight else []
    )
    if claim.send and (retry := _send(job, settings, store, provider, claim.send, out)):
        retries.append(retry)
    out.chunk_done = not retries
    store.record(job.message_id, name, out, chunk=job.chunk.number)
    record_run(name, job.kind, claim, out, retries)
    return ChunkRun(tuple(retries), _single(job, claim, out))


def _breaker_wait(settings: Settings, job: ChunkJob, phones: tuple[str, ...], wait_s: float) -> Retry:
    """The vendor is down: a failover kind goes to the next vendor now (here again after ``wait_s`` if
    none can take it); others come back when the next probe is due, a little spread so that a thousand
    waiting chunks do not all ask at once. Not an attempt: an outage alone never fails a recipient."""
    if fails_over(settings, job):
        return Retry(phones, wait_s, job.attempt, failover=True, reason="breaker", stay=True)
    return Retry(phones, wait_s + random.uniform(0, min(1.0, wait_s / 2)), job.attempt, reason="breaker")


def _answered(job: ChunkJob, out: Recording) -> None:
    """The vendor answered this call: say so with one SET in the run's record (it closes the breaker)."""
    out.index[Keys.vendor_ok(job.chunk.provider)] = ok_marker(uuid.uuid4().hex[:12])


def _single(job: ChunkJob, claim: Claim, out: Recording) -> Outcome | None:
    if len(job.chunk.phones) != 1:
        return None
    phone = job.chunk.phones[0]
    for outcome in reversed(out.outcomes):
        if outcome.phone == phone:
            return outcome
    if claim.opted_out:
        return Outcome(phone, State.OPTED_OUT, "OPTOUT", "the recipient opted out")
    if claim.limited:
        return Outcome(phone, State.RATE_LIMITED, "LIMIT", str(claim.limited[0][1]))
    return None


def _send(
    job: ChunkJob,
    settings: Settings,
    store: Store,
    provider: Provider,
    phones: tuple[str, ...],
    out: Recording,
) -> Retry | None:
    chunk = job.chunk if len(phones) == len(job.chunk.phones) else job.chunk.only(phones)
    request = SendRequest(chunk.phones, chunk.template, bid=job.bid, per_recipient=chunk.per_recipient)
    bound = log.bind(
        message_id=job.message_id, provider=chunk.provider, chunk=chunk.number, attempt=job.attempt
    )
    try:
        result = provider.send(request)
    except TransientError as exc:
        return _transient(job, settings, store, phones, exc, out, bound)
    except AmbiguousError as exc:
        bound.warning("vendor call ambiguous", error=str(exc), recipients=len(phones))
        _ambiguous(job, phones, str(exc), out)
        return None
    except PermanentError as exc:
        _answered(job, out)
        return _permanent(job, store, phones, exc, out, bound)
    except ProviderError as exc:  # a class of the tree the dispatcher does not know: do not guess
        bound.error("vendor error of an unknown class", error=str(exc), kind=type(exc).__name__)
        _ambiguous(job, phones, f"{type(exc).__name__}: {exc}", out)
        return None
    except Exception as exc:  # noqa: BLE001 - the task boundary: a bug in an adapter must not strand anyone
        # The adapter's own failures before the request left are mapped to the tree in providers/base.py;
        # anything that still gets here may have come after the vendor took the request: never resend.
        bound.exception("adapter failed unexpectedly", recipients=len(phones))
        _ambiguous(job, phones, f"unexpected {type(exc).__name__} in the adapter", out)
        return None
    _answered(job, out)
    try:
        answered = _record_result(job, chunk, settings, result, out)
    except Exception:  # noqa: BLE001 - the vendor took the call; a result we cannot read is ambiguous
        bound.exception("vendor result could not be recorded")
        answered = set()
    if missing := tuple(p for p in phones if p not in answered):
        _ambiguous(job, missing, "the vendor's answer did not mention this phone", out)
    bound.info("chunk sent", accepted=sum(o.accepted for o in result.outcomes), recipients=len(phones))
    return None


def _transient(
    job: ChunkJob,
    settings: Settings,
    store: Store,
    phones: tuple[str, ...],
    exc: TransientError,
    out: Recording,
    bound: structlog.stdlib.BoundLogger,
) -> Retry | None:
    """A failure worth retrying. A certain one counts on the breaker: once it is open, the recipients
    wait for the next probe without spending an attempt (a failover kind goes to the next vendor)."""
    reason = exc.code or type(exc).__name__
    if certain(exc):
        tripped = store.breaker_failed(job.chunk.provider)
        if tripped.open:
            bound.warning("vendor down: circuit open", code=exc.code, error=str(exc),
                          failures=tripped.failures)
            out.outcomes += [Outcome(p, State.RETRY, exc.code, exc.text) for p in phones]
            return _breaker_wait(settings, job, phones, tripped.wait_s)
    else:
        _answered(job, out)  # a rate limit: the vendor is up and answering
    attempt = job.attempt + 1
    if attempt >= settings.retry.max_attempts:
        bound.warning("giving up after retries", code=exc.code, error=str(exc), attempts=attempt)
        _fail(phones, exc.code or "TRANSIENT", f"after {attempt} attempts: {exc.text or exc}", out)
        return None
    delay = backoff(settings, job.attempt, exc)
    out.outcomes += [Outcome(p, State.RETRY, exc.code, exc.text) for p in phones]
    if certain(exc) and fails_over(settings, job):  # never wait on a vendor that just failed for sure
        bound.warning("vendor call failed, failing over", code=exc.code, error=str(exc))
        return Retry(phones, delay, attempt, failover=True, reason=f"failover {reason}", stay=True)
    bound.info("vendor call failed, will retry", code=exc.code, error=str(exc), delay_s=round(delay, 2))
    return Retry(phones, delay, attempt, reason=reason)


def _permanent(
    job: ChunkJob,
    store: Store,
    phones: tuple[str, ...],
    exc: PermanentError,
    out: Recording,
    bound: structlog.stdlib.BoundLogger,
) -> Retry | None:
    if isinstance(exc, ConfigError | BalanceError):
        # Out of credit: benched until a balance poll shows credit again (where the vendor has a balance
        # query; else for unhealthy_s, as an auth or config failure).
        until_credit = isinstance(exc, BalanceError) and offers(job.chunk.provider, "balance")
        store.bench(job.chunk.provider, exc.code, str(exc), until_credit=until_credit)
        bound.error(
            "provider marked unhealthy", code=exc.code, error=str(exc), failover=bool(job.chunk.logical)
        )
        if job.chunk.logical is not None:  # the vendor refused the whole call: nothing was sent
            # "retry": queued again with their per-phone limits already charged, for whichever vendor is next.
            text = f"failing over: {exc.text or exc}"
            out.outcomes += [Outcome(p, State.RETRY, exc.code, text) for p in phones]
            return Retry(phones, 0.0, job.attempt, failover=True, reason=f"failover {exc.code}")
    else:
        bound.warning("vendor refused the request", code=exc.code, error=str(exc))
    _fail(phones, exc.code, exc.text or str(exc), out)
    return None


def _fail(phones: tuple[str, ...], code: str, text: str, out: Recording) -> None:
    out.outcomes += [Outcome(p, State.FAILED, code, text) for p in phones]


def _ambiguous(job: ChunkJob, phones: tuple[str, ...], why: str, out: Recording) -> None:
    # Submitted with our bid as the vendor id: a receipt (matched by bid or phone) settles them, the
    # settle sweep fails those without one after the vendor's settle window.
    out.outcomes += [Outcome(p, State.SUBMITTED, AMBIGUOUS, why[:200], vendor_id=job.bid) for p in phones]


def _record_result(
    job: ChunkJob, chunk: ChunkSpec, settings: Settings, result: SendResult, out: Recording
) -> set[str]:
    """Outcomes and index entries of an accepted call. Returns the phones the answer covered. Each taken
    recipient's billed parts are the vendor's fee where it says (Tencent), else ours (``sms_parts``)."""
    name = job.chunk.provider
    parts = chunk.parts_of(settings.vendor(name).billed_signature())
    for o in result.outcomes:
        if o.accepted:
            fee = o.fee if o.fee is not None else parts(o.phone)
            out.outcomes.append(Outcome(o.phone, State.SUBMITTED, o.code, "", o.vendor_id, fee))
        else:
            out.outcomes.append(Outcome(o.phone, State.REJECTED, o.code, o.text, o.vendor_id, o.fee))
        if o.accepted and o.vendor_id and not result.batch_id:  # per-phone vendor ids (sid, smsid, mid)
            out.index[Keys.vendor_batch(name, o.vendor_id)] = job.message_id
    if result.batch_id:
        out.index[Keys.vendor_batch(name, result.batch_id)] = job.message_id
    return {o.phone for o in result.outcomes}
