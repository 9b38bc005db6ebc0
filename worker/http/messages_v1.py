"""``POST /v1/messages`` (``send_sms`` over HTTP) and ``GET /v1/messages/{id}`` (its state).

A send is queued exactly as ``send_sms.delay()`` queues it (``SendTask.apply_async``: checked in the
producer, so a bad request is a 422 and nothing is queued), with the message id chosen here so the
answer can name it at once (202 and ``Location``).

Idempotency (``Idempotency-Key`` header or the body's ``idempotency_key``, each API key in a space of
its own: :func:`scoped_key`) reuses the task's own check, ``tasks.send.earlier_answer``
(``Store.claim_idempotency``), in this order: publish the task, then claim the key for its message id.
The key is claimed now or found held: by the same body (answer 200 with the first message,
``"duplicate": true``; the task just queued finds the key held too and sends nothing) or by another
body (409 naming ``idempotency_key``). Publishing first means a failed publish leaves no claim behind
that would turn the caller's retry into a "duplicate" of a message never queued; and a claim that fails
after the publish is safe to retry with the same key (the task claims the key itself).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Body, Header, HTTPException, Path, Query, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from config.settings import Settings
from providers.phones import mask
from tasks.request import InvalidRequest, SendInput
from tasks.send import earlier_answer, request_fingerprint, send_sms
from worker.app import INFRA_ERRORS
from worker.http.auth import AnyCaller
from worker.http.problems import Message, Problems, field_error, from_invalid, refused
from worker.store import Record, State, Store, now_ms

log = structlog.get_logger(__name__)
MESSAGE_ID = r"^[0-9A-Za-z-]{1,64}$"
# Publishing from a request waits out a short blip only; a longer broker outage is a 503 at once.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2, "interval_max": 0.5}
UNREACHABLE = "Redis or the broker is out of reach; try again"
MAX_KEY_CHARS = 128  # send_sms's idempotency_key
EXAMPLES: dict[str, Any] = {
    "otp": {
        "summary": "One OTP",
        "value": {"to": "13800138000", "template": "login_code", "params": {"code": "123456"}, "kind": "otp"},
    },
    "per-recipient": {
        "summary": "Parameters per recipient",
        "value": {
            "to": [{"phone": "13800000001", "params": {"code": "1111"}}, "13800000002"],
            "template": "login_code",
            "params": {"code": "0000"},
        },
    },
    "content": {
        "summary": "Free text, marketing",
        "value": {
            "to": ["13800000001", "13800000002"],
            "content": "【商城】会员日八折，回T退订",
            "kind": "marketing",
        },
    },
}
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Message, "description": "missing or unknown API key"},
    403: {"model": Message, "description": "this key may not do this (an OTP-only key)"},
    503: {"model": Message, "description": "no API keys configured, or Redis/the broker out of reach"},
}


class MessageAccepted(BaseModel):
    """A queued message (202), or the first one sent with this idempotency key (200)."""

    message_id: str = Field(description="the message id: GET /v1/messages/{message_id}")
    duplicate: bool = Field(description="true: this idempotency key was used before; nothing new is sent")
    recipients: int | None = Field(None, description="recipients given in this request (new messages)")
    result: dict[str, Any] | None = Field(
        None, description="duplicates: send_sms's answer to the first request, once it is planned"
    )


class RecipientView(BaseModel):
    phone: str = Field(description="masked (138****8000) unless unmask=true")
    state: State
    provider: str = Field(description="the vendor (empty: not routed yet)")
    vendor_id: str
    code: str = Field(description="the last vendor or internal code")
    text: str
    updated: datetime = Field(description="last change (UTC)")
    parts: int | None = Field(description="billed parts, where the vendor says")


class MessageView(BaseModel):
    message_id: str
    kind: str | None
    template: str | None
    campaign: bool
    created: datetime | None = Field(description="when it was planned (or accepted here, until then)")
    planned: bool = Field(description="false: queued, not planned yet (no recipient recorded)")
    total: int | None = Field(description="recipients planned (accepted and rejected)")
    counts: dict[str, int] = Field(description="recipients per state")
    parts: int | None = Field(description="billed parts of the recipients submitted (live counters)")
    recipients: list[RecipientView] = Field(description="this page of recipients")
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null: no more")


def router(settings: Settings, store: Store, route_class: type[APIRoute]) -> APIRouter:
    api = APIRouter(tags=["messages"], responses=ERRORS, route_class=route_class)

    @api.post(
        "/messages",
        status_code=202,
        response_model=MessageAccepted,
        response_model_exclude_none=True,
        max_body_size=settings.api.max_body_bytes,
        responses={
            200: {"model": MessageAccepted, "description": "a duplicate: the first message's id"},
            409: {"model": Problems, "description": "the idempotency key was used for another body"},
            413: {"model": Message, "description": "body larger than api.max_body_bytes"},
            422: {"model": Problems, "description": "a refused field (nothing queued)"},
        },
    )
    def post_message(
        body: Annotated[SendInput, Body(openapi_examples=EXAMPLES)],
        response: Response,
        caller: AnyCaller,
        idempotency_key: Annotated[
            str | None,
            Header(min_length=1, max_length=MAX_KEY_CHARS, description="same key, same body: same answer"),
        ] = None,
    ) -> MessageAccepted:
        """Send one message to one phone or many: ``send_sms``'s arguments as JSON."""
        if body.kind != "otp":
            caller.require_full(f"kind={body.kind}")
        request, given_key = _with_key(body, idempotency_key, caller.name)
        message_id = str(uuid.uuid4())
        _publish(request, message_id)
        if given_key is not None:
            earlier = _claim(store, request, message_id, given_key)
            if earlier is not None:
                response.status_code = 200
                response.headers["Location"] = f"/v1/messages/{earlier['message_id']}"
                result = {k: v for k, v in earlier.items() if k != "duplicate"}
                planned = result if len(result) > 1 else None
                return MessageAccepted(message_id=earlier["message_id"], duplicate=True, result=planned)
        _note(store, request, message_id, caller.name)
        log.info("message queued over HTTP", message_id=message_id, caller=caller.name, kind=request.kind)
        response.headers["Location"] = f"/v1/messages/{message_id}"
        return MessageAccepted(message_id=message_id, duplicate=False, recipients=len(request.recipients()))

    @api.get("/messages/{message_id}", response_model=MessageView, responses={404: {"model": Message}})
    def get_message(
        message_id: Annotated[str, Path(pattern=MESSAGE_ID)],
        caller: AnyCaller,
        state: Annotated[State | None, Query(description="only recipients in this state")] = None,
        cursor: Annotated[str, Query(pattern=r"^[0-9]{1,20}$", description="from next_cursor")] = "0",
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        unmask: Annotated[bool, Query(description="whole phone numbers")] = False,
    ) -> MessageView:
        """A message: its meta, recipients per state, and a page of recipients (a page may be shorter
        than ``limit``, even empty, with a ``next_cursor`` still to follow when ``state`` filters)."""
        if int(cursor) >= 2**64:
            raise field_error(422, ["query", "cursor"], "not a cursor this API gave", "cursor")
        try:
            meta, counts = store.message(message_id), store.counts(message_id)
            parts = store.progress(message_id).get("parts")
            if not meta and not counts:
                raise HTTPException(404, f"no message {message_id} (unknown, or older than the retention)")
            if caller.otp_only and meta.get("kind") != "otp":
                raise HTTPException(403, f"API key {caller.name!r} may only read OTP messages")
            page = store.recipients_page(message_id, int(cursor), limit, [state] if state else None)
        except INFRA_ERRORS:
            raise HTTPException(503, UNREACHABLE) from None
        shown = (lambda text: text) if unmask else mask
        return MessageView(
            message_id=message_id,
            kind=meta.get("kind"),
            template=meta.get("template") or None,
            campaign=meta.get("campaign") == "1",
            created=_time(meta.get("created_ms") or meta.get("received_ms")),
            planned="chunks" in meta or bool(counts),
            total=int(meta["recipients"]) if meta.get("recipients", "").isdecimal() else None,
            counts={s.value: counts[s.value] for s in State},
            parts=parts,
            recipients=[_recipient(phone, record, shown) for phone, record in page.recipients],
            next_cursor=str(page.cursor) if page.cursor else None,
        )

    return api


def _with_key(body: SendInput, header: str | None, caller: str) -> tuple[SendInput, str | None]:
    """The request with its idempotency key (the header's or the body's; both and different: 422) made
    the caller's own (:func:`scoped_key`), and the key as given."""
    if header is not None and body.idempotency_key is not None and body.idempotency_key != header:
        raise field_error(
            422, ["header", "idempotency-key"], "differs from the body's idempotency_key", "idempotency_key"
        )
    given = header if header is not None else body.idempotency_key
    if given is None:
        return body, None
    return body.model_copy(update={"idempotency_key": scoped_key(caller, given)}), given


def scoped_key(caller: str, key: str) -> str:
    """``key`` within ``caller``'s own space, so two applications that both say ``order-42`` never take
    each other's message; a hash of it where the two would pass ``send_sms``'s 128 characters."""
    scoped = f"{caller}:{key}"
    if len(scoped) <= MAX_KEY_CHARS:
        return scoped
    return f"{caller}:sha256:{hashlib.sha256(key.encode()).hexdigest()[:40]}"


def _publish(request: SendInput, message_id: str) -> None:
    """Queue ``send_sms`` with ``message_id`` as its task id (checked again in the producer)."""
    try:
        send_sms.apply_async(
            kwargs=request.model_dump(mode="json", exclude_none=True),
            task_id=message_id,
            retry_policy=PUBLISH_RETRY,
        )
    except InvalidRequest as exc:
        raise refused(422, from_invalid(exc)) from None
    except INFRA_ERRORS:
        raise HTTPException(503, f"{UNREACHABLE}: nothing was queued") from None


def _claim(store: Store, request: SendInput, message_id: str, given: str) -> dict[str, Any] | None:
    """The first message sent with this key (None: it is this one); 409 when its body was another (the
    key named as the caller gave it)."""
    key = request.idempotency_key or ""
    try:
        return earlier_answer(store, key, message_id, request_fingerprint(request))
    except InvalidRequest as exc:
        told = InvalidRequest(str(exc).replace(repr(key), repr(given)))
        raise refused(409, from_invalid(told, kind="idempotency_conflict")) from None
    except INFRA_ERRORS:
        raise HTTPException(503, f"{UNREACHABLE}: it may be queued; retry with the same key") from None


def _note(store: Store, request: SendInput, message_id: str, caller: str) -> None:
    """Make the message readable at once (GET answers ``planned: false`` until its task plans it) and
    say which key sent it. The message is queued already: a failure here is only logged."""
    meta: dict[str, str | int] = {"kind": request.kind, "received_ms": now_ms(), "api_key": caller}
    if request.template:
        meta["template"] = request.template
    try:
        store.create_message(message_id, meta)
    except INFRA_ERRORS as exc:
        log.warning("message queued, its meta not written", message_id=message_id, error=type(exc).__name__)


def _time(ms: str | None) -> datetime | None:
    return datetime.fromtimestamp(int(ms) / 1000, UTC) if ms and ms.isdecimal() else None


def _recipient(phone: str, record: Record, shown: Callable[[str], str]) -> RecipientView:
    return RecipientView(
        phone=shown(phone),
        state=record.state,
        provider=record.provider,
        vendor_id=record.vendor_id,
        code=record.code,
        text=shown(record.text),
        updated=datetime.fromtimestamp(record.updated_ms / 1000, UTC),
        parts=record.fee,
    )
