"""``send_sms`` (plan, and send at once when the plan is one chunk) and ``dispatch_chunk`` (one vendor call).

``send_sms.delay(...)`` checks the request in the caller before anything is queued, so a bad template or
missing parameter raises ``InvalidRequest`` there; its task id is the message id (``smsdispatch status``).

Nothing is stranded: every chunk is *opened* in Redis (its job and a lease) before its task is queued,
so the lease sweep (``tasks.poll.sweep_leases``) queues again a chunk whose task was lost; planning that
fails part way (Redis or the broker gone) is retried by Celery and goes on from the last chunk it queued;
infrastructure errors in a chunk retry the task, and the claim makes a rerun safe.

A campaign's chunks (``campaign=True``, fed by ``tasks/campaign.py``) ask their campaign's gate before
anything else: paused, the chunk is set aside until resumed; cancelled, its recipients not yet claimed
are recorded ``cancelled``; held (quiet hours, the campaign's window), it waits in Redis until the hold
ends. The flag travels with every retry, failover, long wait and lease-sweep requeue of the chunk.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import structlog
from celery import Task

from config.settings import PROVIDERS, Settings, get_settings
from tasks.dispatch import ChunkJob, ChunkRun, Retry, run_chunk, stale_ms
from tasks.plan import ChunkSpec, InvalidRequest, Plan, SendInput, build_plan, validate_request
from worker.app import INFRA_ERRORS, RETRY_PRIORITY, app, queue_for
from worker.registry import get_provider
from worker.store import NO_RECORD, Outcome, Recording, State, Store, get_redis, now_ms

log = structlog.get_logger(__name__)
MAX_REJECTIONS_RETURNED = 1000


class SendTask(Task):
    """Validates the request and picks the queue in the producer, before the message is queued.

    Celery is handed the validated, JSON-safe form of the request (``SendInput.model_dump``), never the
    caller's objects: whatever the arguments, ``.delay()`` either queues a message or raises
    ``InvalidRequest`` naming the field, and nothing is queued then."""

    def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        settings = get_settings()
        request = validate_request(self._arguments(args, kwargs), settings)
        options.setdefault("queue", queue_for(request.kind, len(request.recipients()), settings))
        return super().apply_async((), request.model_dump(mode="json", exclude_none=True), **options)

    @staticmethod
    def _arguments(args: Any, kwargs: Any) -> dict[str, Any]:
        """``send_sms``'s arguments as one mapping: ``to`` may come first, positionally."""
        try:
            data = dict(kwargs or {})
        except (TypeError, ValueError):
            raise InvalidRequest(f"request: keyword arguments as a {type(kwargs).__name__}") from None
        if args is None or (isinstance(args, list | tuple) and not args):
            return data
        if not isinstance(args, list | tuple) or len(args) > 1:
            raise InvalidRequest("request: send_sms takes one positional argument, to; the rest by keyword")
        if "to" in data:
            raise InvalidRequest("to: given twice (positionally and as to=)")
        data["to"] = args[0]
        return data


@app.task(
    base=SendTask,
    bind=True,
    name="tasks.send.send_sms",
    ignore_result=False,
    throws=(InvalidRequest,),
    autoretry_for=INFRA_ERRORS,
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=20,
)
def send_sms(
    self: Task,
    to: Any,
    *,
    template: str | None = None,
    params: dict[str, Any] | None = None,
    content: str | None = None,
    kind: str = "notify",
    provider: str | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Send one message to one phone or many. Returns the message id and per-recipient acceptance."""
    settings = get_settings()
    message_id = self.request.id or str(uuid.uuid4())
    request = validate_request(
        {
            "to": to,
            "template": template,
            "params": params or {},
            "content": content,
            "kind": kind,
            "provider": provider,
            "idempotency_key": idempotency_key,
        },
        settings,
    )
    structlog.contextvars.bind_contextvars(message_id=message_id)
    store = Store(get_redis(settings), settings)
    fingerprint = request_fingerprint(request)
    if request.idempotency_key and (
        earlier := earlier_answer(store, request.idempotency_key, message_id, fingerprint)
    ):
        return earlier
    # One round trip: the vendors routing must skip, and what a redelivered task did before.
    unhealthy, meta = store.before_send(PROVIDERS, request.kind, message_id)
    if meta.get("result"):  # this task ran to the end before and is being redelivered
        result: dict[str, Any] = json.loads(meta["result"])
        return result
    opened = int(meta.get("opened", -1))
    return _plan_and_send(message_id, request, settings, store, opened, fingerprint, unhealthy)


def request_fingerprint(request: SendInput) -> str:
    """What makes two requests the same, whatever their idempotency keys."""
    body = request.model_dump(mode="json", exclude={"idempotency_key"})
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:32]


def earlier_answer(store: Store, key: str, message_id: str, fingerprint: str) -> dict[str, Any] | None:
    """The first call's answer when ``key`` was used before (None: this call is the first). The same key
    with another request is refused, as Stripe does: reusing a key is a bug in the caller."""
    earlier = store.claim_idempotency(key, message_id, fingerprint)
    if earlier is None or earlier["message_id"] == message_id:
        return None
    if earlier.get("fingerprint") != fingerprint:
        raise InvalidRequest(
            f"idempotency_key: {key!r} was used for a different request (message {earlier['message_id']})"
        )
    return {**earlier.get("result", {"message_id": earlier["message_id"]}), "duplicate": True}


def _plan_and_send(
    message_id: str,
    request: SendInput,
    settings: Settings,
    store: Store,
    opened: int,
    fingerprint: str,
    unhealthy: dict[str, dict[str, str]],
) -> dict[str, Any]:
    plan = build_plan(request, settings, unhealthy)
    total = plan.accepted + len(plan.rejected)
    meta: dict[str, str | int] = {
        "kind": request.kind,
        "template": request.template or "",
        "created_ms": now_ms(),
        "recipients": total,
        "chunks": len(plan.chunks),
        "providers": ",".join(sorted(plan.providers)),
    }
    queue = queue_for(request.kind, plan.accepted, settings)
    single = None
    if len(plan.chunks) == 1:  # the message's meta rides with the chunk's open
        store.reject(message_id, plan.rejected)
        job = ChunkJob(message_id, request.kind, plan.chunks[0])
        single = _dispatch_inline(job, queue, store, settings, meta)
    else:
        store.create_message(message_id, meta)
        store.reject(message_id, plan.rejected)
        _queue_chunks(message_id, request.kind, plan.chunks, queue, store, settings, opened)
    result = _result(message_id, plan, single)
    store.mark_message(message_id, result=json.dumps(result))
    if request.idempotency_key:
        store.store_idempotent_result(request.idempotency_key, fingerprint, result)
    log.info(
        "message planned", recipients=total, accepted=plan.accepted, chunks=len(plan.chunks), queue=queue
    )
    return result


def chunk_job(
    kind: str, queue: str, chunk: ChunkSpec, attempt: int = 0, campaign: bool = False
) -> dict[str, Any]:
    """A chunk's task as kept in Redis (see ``Store.open_chunk``), to queue it again if it is lost."""
    job = {"kind": kind, "queue": queue, "attempt": attempt, "chunk": chunk.to_task()}
    return {**job, "campaign": 1} if campaign else job


def chunk_args(message_id: str, job: dict[str, Any]) -> tuple[Any, ...]:
    """``dispatch_chunk``'s arguments for a chunk job kept in Redis (the campaign flag from it)."""
    return (message_id, job["kind"], job["chunk"], job.get("attempt", 0), bool(job.get("campaign")))


def queue_chunk(
    store: Store, message_id: str, job: dict[str, Any], lease_until_ms: int, *, queued: bool = False
) -> None:
    """Open a chunk (its job and lease; with ``queued``, its recipients recorded queued), then queue its
    task: a task lost after the open is found by the lease sweep."""
    store.open_chunk(message_id, job["chunk"]["number"], job, lease_until_ms, queued=queued)
    dispatch_chunk.apply_async(chunk_args(message_id, job), queue=job["queue"])


def lease_end_ms(settings: Settings, start_ms: float) -> int:
    """A chunk's task must have run by then, or the lease sweep looks for it."""
    return int(start_ms + settings.lease_grace_s * 1000)


def _queue_chunks(
    message_id: str,
    kind: str,
    chunks: list[ChunkSpec],
    queue: str,
    store: Store,
    settings: Settings,
    opened: int,
) -> None:
    """Open each chunk (record its recipients queued, keep its job and lease), then queue its task. A
    re-run plan starts after the last chunk it opened; that one is queued again (it may not have been)."""
    start = now_ms()
    for i, chunk in enumerate(chunks):
        if i < opened:
            continue
        rate = settings.vendor(chunk.provider).requests_per_second
        expected_ms = start + 1500 * i / rate  # when its turn should come at the vendor's rate
        job = chunk_job(kind, queue, chunk)
        queue_chunk(store, message_id, job, lease_end_ms(settings, expected_ms), queued=True)
        if i % 16 == 15 or i == len(chunks) - 1:
            store.mark_message(message_id, opened=i)


def _result(message_id: str, plan: Plan, single: Outcome | None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "message_id": message_id,
        "accepted": plan.accepted,
        "rejected": [{"to": given, "error": why} for given, why in plan.rejected[:MAX_REJECTIONS_RETURNED]],
        "rejected_count": len(plan.rejected),
        "duplicates": plan.duplicates,
        "chunks": len(plan.chunks),
        "providers": sorted(plan.providers),
    }
    if single is not None:
        result["state"] = {"state": single.state.value, "code": single.code, "text": single.text}
    return result


def _dispatch_inline(
    job: ChunkJob, queue: str, store: Store, settings: Settings, meta: Mapping[str, str | int]
) -> Outcome | None:
    """Send a message's one chunk inside send_sms. Its job and lease are kept first, like a planned
    chunk's, with the message's meta in the same round trip."""
    lease = lease_end_ms(settings, now_ms() + stale_ms(settings, job.chunk.provider))
    store.open_chunk(job.message_id, job.chunk.number, _job_of(job, queue), lease, queued=False, meta=meta)
    return _run(job, queue, store, settings).single


def _run(job: ChunkJob, queue: str, store: Store, settings: Settings) -> ChunkRun:
    """Run a chunk and schedule what it leaves to do."""
    run = run_chunk(job, settings, store, get_provider(job.chunk.provider, settings))
    for retry in run.retries:
        schedule_retry(store, settings, job, retry, queue)
    return run


@app.task(
    bind=True,
    name="tasks.send.dispatch_chunk",
    autoretry_for=INFRA_ERRORS,
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=20,
)
def dispatch_chunk(
    self: Task,
    message_id: str,
    kind: str,
    chunk: dict[str, Any],
    attempt: int = 0,
    campaign: bool = False,
) -> None:
    """Send one chunk (at most the vendor's batch size) in one vendor call; a campaign's chunk only when
    its campaign's gate lets it."""
    spec = ChunkSpec.from_task(chunk)
    structlog.contextvars.bind_contextvars(message_id=message_id, provider=spec.provider)
    if campaign:
        structlog.contextvars.bind_contextvars(campaign_id=message_id)
    settings = get_settings()
    queue = self.request.delivery_info.get("routing_key") or queue_for(kind, 1, settings)
    store = Store(get_redis(settings), settings)
    job = ChunkJob(message_id, kind, spec, attempt, bool(campaign))
    if job.campaign and not _gate(job, queue, store, settings):
        return
    _run(job, queue, store, settings)


def _gate(job: ChunkJob, queue: str, store: Store, settings: Settings) -> bool:
    """Whether the campaign lets this chunk be sent now (True), else what it does instead: set aside
    while paused (resume queues it again), its unclaimed recipients cancelled, or a wait in Redis until
    the campaign's hold (quiet hours, window) ends. Not an attempt either way."""
    gate = store.campaign_gate(job.message_id)
    number = job.chunk.number
    if gate.status == "paused":
        store.hold_chunk(job.message_id, number, _job_of(job, queue))
        log.info("campaign paused: chunk held", chunk=number, recipients=len(job.chunk.phones))
        return False
    if gate.status in ("cancelling", "cancelled"):
        cancelled = store.cancel_recipients(job.message_id, job.chunk.phones, chunk=number)
        log.info("campaign cancelled: chunk dropped", chunk=number, cancelled=len(cancelled))
        return False
    wait_ms = gate.held_until_ms - now_ms()
    if wait_ms > 0:
        held = Retry(job.chunk.phones, wait_ms / 1000, job.attempt, reason="held")
        schedule_retry(store, settings, job, held, queue)
        log.info("campaign held: chunk waits", chunk=number, wait_s=round(wait_ms / 1000, 1))
        return False
    return True


def _job_of(job: ChunkJob, queue: str) -> dict[str, Any]:
    return chunk_job(job.kind, queue, job.chunk, job.attempt, job.campaign)


def schedule_retry(store: Store, settings: Settings, job: ChunkJob, retry: Retry, queue: str) -> None:
    """Queue the phones still to send, ahead of fresh work (a retry should run close to its due time).
    Waits past ``max_countdown_s`` are kept in Redis and released by beat; the chunk's lease is moved
    past the due time either way."""
    if retry.failover:
        fail_over(store, settings, job, retry, queue)
        return
    spec = job.chunk.only(retry.phones)
    args = (job.message_id, job.kind, spec.to_task(), retry.attempt, job.campaign)
    due_ms = now_ms() + int(retry.delay_s * 1000)
    store.open_chunk(
        job.message_id,
        job.chunk.number,
        chunk_job(job.kind, queue, job.chunk, retry.attempt, job.campaign),
        lease_end_ms(settings, due_ms),
        queued=False,
    )
    if retry.delay_s <= settings.max_countdown_s:
        dispatch_chunk.apply_async(args, queue=queue, countdown=retry.delay_s, priority=RETRY_PRIORITY)
    else:
        store.defer({"args": args, "queue": queue, "id": uuid.uuid4().hex}, due_ms)


def fail_over(store: Store, settings: Settings, job: ChunkJob, retry: Retry, queue: str) -> None:
    """Plan ``retry.phones`` again for the next vendors of the route (not this one, nor those benched or,
    for a failover kind, with their breaker open), and queue the new chunks at once. Phones no other
    vendor can take are sent here again after the retry's delay with ``retry.stay`` (this vendor is down,
    not refusing us), else failed with the reasons. Their per-phone limits are not charged again."""
    phones = retry.phones
    rejected: list[tuple[str, str]] = []
    skip = {**store.unavailable(PROVIDERS, job.kind), job.chunk.provider: {"code": retry.reason}}
    try:
        request = validate_request(
            {"to": list(phones), "kind": job.kind, **(job.chunk.logical or {})}, settings
        )
        plan = build_plan(request, settings, skip)
    except InvalidRequest as exc:
        plan, rejected = Plan(kind=job.kind), [(p, str(exc)) for p in phones]
    numbers = store.failover_numbers(job.message_id, len(plan.chunks)) if plan.chunks else range(0)
    for number, chunk in zip(numbers, plan.chunks, strict=True):
        spec = replace(chunk, number=number)  # a bid of its own
        failover_job = chunk_job(job.kind, queue, spec, retry.attempt, job.campaign)
        store.open_chunk(
            job.message_id, spec.number, failover_job, lease_end_ms(settings, now_ms()), queued=False
        )
        args = chunk_args(job.message_id, failover_job)
        dispatch_chunk.apply_async(args, queue=queue, priority=RETRY_PRIORITY)
    rejected += plan.rejected
    if retry.stay and plan.rejected:
        # No other vendor can take them: wait for this one (its next probe, or the retry's backoff).
        stay = tuple(p for p, _ in plan.rejected)
        schedule_retry(store, settings, job, replace(retry, phones=stay, failover=False), queue)
        rejected = rejected[: len(rejected) - len(plan.rejected)]
    else:
        store.end_lease(job.message_id, job.chunk.number)
    if rejected:
        outcomes = [Outcome(p, State.FAILED, "NO_ROUTE", why) for p, why in rejected]
        store.record(
            job.message_id,
            job.chunk.provider,
            Recording(outcomes),
            from_states=(NO_RECORD, State.QUEUED, State.RETRY),  # never claimed, or claimed and refused
            why="failover",
        )
    log.warning(
        "failed over", recipients=len(phones), to=sorted(plan.providers), unroutable=len(rejected),
        reason=retry.reason,
    )
