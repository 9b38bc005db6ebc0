"""``send_sms`` (plan, and send at once when the plan is one chunk) and ``dispatch_chunk`` (one vendor call).

``send_sms.delay(...)`` checks the request in the caller before anything is queued, so a bad template or
missing parameter raises ``InvalidRequest`` there; its task id is the message id (``smsdispatch status``).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from typing import Any

import structlog
from celery import Task

from config.settings import PROVIDERS, Settings, get_settings
from tasks.dispatch import ChunkJob, Retry, event, run_chunk
from tasks.plan import ChunkSpec, InvalidRequest, Plan, SendInput, build_plan, validate_request
from worker.app import app, queue_for
from worker.registry import get_provider
from worker.store import Keys, State, Store, get_redis, now_ms, pack

log = structlog.get_logger(__name__)
MAX_REJECTIONS_RETURNED = 1000


class SendTask(Task):
    """Validates the request and picks the queue in the producer, before the message is queued."""

    def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        kwargs = dict(kwargs or {})
        if args:
            kwargs["to"] = args[0]
        settings = get_settings()
        request = validate_request(kwargs, settings)
        options.setdefault("queue", queue_for(request.kind, len(request.recipients()), settings))
        return super().apply_async((), kwargs, **options)


@app.task(base=SendTask, bind=True, name="tasks.send.send_sms", ignore_result=False, throws=(InvalidRequest,))
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
    if idempotency_key:
        earlier = store.claim_idempotency(idempotency_key, message_id)
        if earlier is not None and json.loads(earlier)["message_id"] != message_id:
            return {**json.loads(earlier), "duplicate": True}
    meta = store.message(message_id)
    if meta.get("result"):  # this task ran to the end before and is being redelivered
        result: dict[str, Any] = json.loads(meta["result"])
        return result
    return _plan_and_send(message_id, request, settings, store)


def _plan_and_send(message_id: str, request: SendInput, settings: Settings, store: Store) -> dict[str, Any]:
    plan = build_plan(request, settings, store.unhealthy(PROVIDERS))
    total = plan.accepted + len(plan.rejected)
    store.create_message(
        message_id,
        {
            "kind": request.kind,
            "template": request.template or "",
            "created_ms": now_ms(),
            "recipients": total,
            "chunks": len(plan.chunks),
            "providers": ",".join(sorted(plan.providers)),
        },
    )
    _record_rejections(store, message_id, plan)
    queue = queue_for(request.kind, plan.accepted, settings)
    if len(plan.chunks) == 1:
        _dispatch_inline(ChunkJob(message_id, request.kind, plan.chunks[0]), queue)
    else:
        for chunk in plan.chunks:
            store.init_queued(message_id, chunk.provider, chunk.phones)
            dispatch_chunk.apply_async((message_id, request.kind, chunk.to_task()), queue=queue)
    result = _result(message_id, plan, store)
    store.mark_message(message_id, result=json.dumps(result))
    if request.idempotency_key:
        store.store_idempotent_result(request.idempotency_key, result)
    log.info(
        "message planned", recipients=total, accepted=plan.accepted, chunks=len(plan.chunks), queue=queue
    )
    return result


def _record_rejections(store: Store, message_id: str, plan: Plan) -> None:
    if not plan.rejected:
        return
    at = now_ms()
    records = {given: pack(State.REJECTED, at, "", "", "INVALID", why) for given, why in plan.rejected}
    events = [event(message_id, State.REJECTED, "", list(records), "INVALID")]
    store.write(message_id, records, events)


def _result(message_id: str, plan: Plan, store: Store) -> dict[str, Any]:
    result: dict[str, Any] = {
        "message_id": message_id,
        "accepted": plan.accepted,
        "rejected": [{"to": given, "error": why} for given, why in plan.rejected[:MAX_REJECTIONS_RETURNED]],
        "rejected_count": len(plan.rejected),
        "duplicates": plan.duplicates,
        "chunks": len(plan.chunks),
        "providers": sorted(plan.providers),
    }
    if len(plan.chunks) == 1 and len(plan.chunks[0].phones) == 1:
        phone = plan.chunks[0].phones[0]
        record = store.records(message_id, [phone]).get(phone)
        if record is not None:
            result["state"] = {"state": record.state, "code": record.code, "text": record.text}
    return result


def _dispatch_inline(job: ChunkJob, queue: str) -> None:
    settings = get_settings()
    for retry in run_chunk(job, settings, get_redis(settings), get_provider(job.chunk.provider, settings)):
        schedule_retry(job, retry, queue)


@app.task(bind=True, name="tasks.send.dispatch_chunk")
def dispatch_chunk(self: Task, message_id: str, kind: str, chunk: dict[str, Any], attempt: int = 0) -> None:
    """Send one chunk (at most the vendor's batch size) in one vendor call."""
    spec = ChunkSpec.from_task(chunk)
    structlog.contextvars.bind_contextvars(message_id=message_id, provider=spec.provider)
    job = ChunkJob(message_id, kind, spec, attempt)
    settings = get_settings()
    queue = self.request.delivery_info.get("routing_key") or queue_for(kind, 1, settings)
    for retry in run_chunk(job, settings, get_redis(settings), get_provider(spec.provider, settings)):
        schedule_retry(job, retry, queue)


def schedule_retry(job: ChunkJob, retry: Retry, queue: str) -> None:
    """Queue the phones still to send. Waits past ``max_countdown_s`` are kept in Redis (see ``poll``)."""
    if retry.failover:
        fail_over(job, retry.phones, queue)
        return
    settings = get_settings()
    args = (job.message_id, job.kind, job.chunk.only(retry.phones).to_task(), retry.attempt)
    if retry.delay_s <= settings.max_countdown_s:
        dispatch_chunk.apply_async(args, queue=queue, countdown=retry.delay_s)
        return
    due_ms = now_ms() + int(retry.delay_s * 1000)
    entry = json.dumps({"args": args, "queue": queue, "id": str(uuid.uuid4())})
    get_redis(settings).zadd(Keys.deferred, {entry: due_ms})


def fail_over(job: ChunkJob, phones: tuple[str, ...], queue: str) -> None:
    """Plan ``phones`` again without the vendors now benched, and queue the new chunks. Recipients no
    vendor can take are failed with the reasons."""
    settings = get_settings()
    store = Store(get_redis(settings), settings)
    request = validate_request({"to": list(phones), "kind": job.kind, **(job.chunk.logical or {})}, settings)
    plan = build_plan(request, settings, store.unhealthy(PROVIDERS))
    for i, chunk in enumerate(plan.chunks):
        spec = replace(chunk, number=(job.chunk.number + 1) * 1000 + i)  # a bid of its own
        dispatch_chunk.apply_async((job.message_id, job.kind, spec.to_task(), 0), queue=queue)
    if plan.rejected:
        at = now_ms()
        records = {
            phone: pack(State.FAILED, at, job.chunk.provider, "", "NO_ROUTE", why)
            for phone, why in plan.rejected
        }
        store.write(
            job.message_id, records, [event(job.message_id, State.FAILED, "", list(records), "NO_ROUTE")]
        )
    log.warning(
        "failed over", recipients=len(phones), to=sorted(plan.providers), unroutable=len(plan.rejected)
    )
