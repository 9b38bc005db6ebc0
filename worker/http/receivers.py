"""Vendor push receivers: ``POST /push/<vendor>/receipts`` and ``/push/<vendor>/inbound``, one for each
push a registered vendor's adapter can parse (``parse_receipt_push``, ``parse_inbound_push``).

A receiver checks, in this order, and answers 4xx with ``{"error"}`` while changing nothing:

1. the sender's address, when the vendor has an allow-list (``SMSD_<VENDOR>__PUSH_ALLOW_IPS``: addresses
   or CIDR networks): 403;
2. the body's size, read with a cap (``SMSD_PUSH__MAX_BODY_BYTES``; Content-Length is not trusted): 413;
3. the body is UTF-8 text and not empty (both push formats are; the vendors' documents say UTF-8): 400;
4. authenticity: ``?token=`` equal to ``SMSD_<VENDOR>__PUSH_TOKEN``, or, for a vendor whose body carries
   its own proof (Infocloud's ``apiKey``, ``Provider.push_signed``), that proof (a body it cannot be read
   from: 400). A vendor with neither configured refuses every push, naming the setting: 403.

Then it stores the raw body in the push inbox (one Redis round trip, ``worker/store/inbox.py``) and
answers at once in the vendor's form (``Provider.push_reply``); ``tasks.push.apply_pushes`` parses and
applies it later. Redis out of reach: the push is kept on local disk (``spool.py``) and stored when Redis
answers again, and the vendor is answered as usual; only if the disk refuses it too, 503, so that the
vendor pushes again. Secrets are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis
import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from config.settings import Settings
from providers.base import Provider
from providers.errors import MalformedPush
from providers.pushes import PushKind
from providers.vendors import VENDORS
from worker.http.spool import PushSpool
from worker.registry import get_provider, offers
from worker.store.inbox import PushInbox

log = structlog.get_logger(__name__)
PARSERS = {PushKind.RECEIPTS: "parse_receipt_push", PushKind.INBOUND: "parse_inbound_push"}
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Refused(Exception):
    """A push refused at the door: answered ``status`` with ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Gate:
    """One vendor's push checks (see the module docstring)."""

    vendor: str
    adapter: Provider
    token: bytes
    token_setting: str
    networks: tuple[Network, ...]
    signed: bool  # the body carries the vendor's own proof (Infocloud's apiKey)

    @classmethod
    def of(cls, vendor: str, settings: Settings) -> Gate:
        section = settings.vendor(vendor)
        return cls(
            vendor,
            get_provider(vendor, settings),
            section.push_token.get_secret_value().encode(),
            VENDORS[vendor].env_name("push_token"),
            tuple(ipaddress.ip_network(value, strict=False) for value in section.push_allow_ips),
            offers(vendor, "push_signed"),
        )

    def check_address(self, remote: str) -> None:
        if not self.networks:
            return
        try:
            address = ipaddress.ip_address(remote)
        except ValueError:
            raise Refused(403, f"{self.vendor}: sender address unknown; pushes are IP-restricted") from None
        if not any(address in network for network in self.networks):
            setting = VENDORS[self.vendor].env_name("push_allow_ips")
            raise Refused(403, f"{self.vendor}: address {remote} is not in {setting}")

    def check_authentic(self, body: bytes, content_type: str, token: str | None) -> None:
        if token is not None and self.token and hmac.compare_digest(token.encode(), self.token):
            return
        if self.signed:
            try:
                if self.adapter.push_signed(body, content_type):
                    return
            except MalformedPush as exc:
                raise Refused(400, exc.text) from None
            raise Refused(403, f"{self.vendor}: the push's own credential is not ours, and no valid token")
        if not self.token:
            raise Refused(403, f"{self.vendor}: pushes are refused until {self.token_setting} is set")
        raise Refused(403, f"{self.vendor}: missing or wrong ?token= (see {self.token_setting})")


async def read_capped(request: Request, limit: int) -> bytes:
    """The request body, or :class:`Refused` 413 as soon as it passes ``limit`` bytes (whatever
    Content-Length says)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def as_text(body: bytes) -> str:
    """The body as text; :class:`Refused` 400 when it is empty or not UTF-8."""
    if not body:
        raise Refused(400, "empty body")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "body is not UTF-8") from None


Endpoint = Callable[[Request], Awaitable[Response]]


def receiver(gate: Gate, kind: PushKind, inbox: PushInbox, spool: PushSpool, max_body_bytes: int) -> Endpoint:
    """The endpoint for ``kind`` pushes of ``gate.vendor``."""
    reply = gate.adapter.push_reply(kind)

    async def receive(request: Request) -> Response:
        remote = request.client.host if request.client else ""
        content_type = request.headers.get("content-type", "")
        try:
            gate.check_address(remote)
            body = await read_capped(request, max_body_bytes)
            text = as_text(body)
            gate.check_authentic(body, content_type, request.query_params.get("token"))
            text = as_text(gate.adapter.push_kept(body, content_type))
        except Refused as refused:
            log.warning(
                "push refused",
                provider=gate.vendor,
                kind=kind.value,
                status=refused.status,
                reason=refused.message,
                remote=remote,
            )
            return JSONResponse({"error": refused.message}, status_code=refused.status)
        try:
            await inbox.add(gate.vendor, kind, text, content_type, remote)
        except (redis.RedisError, OSError) as exc:
            try:
                spool.put(gate.vendor, kind, text, content_type, remote)
            except OSError as disk:
                log.error(
                    "push not stored: Redis out of reach and the spool refused it",
                    provider=gate.vendor,
                    error=type(exc).__name__,
                    spool_error=str(disk),
                )
                return JSONResponse({"error": "cannot store the push now, push again"}, status_code=503)
            log.warning("push spooled: Redis out of reach", provider=gate.vendor, error=type(exc).__name__)
        return Response(reply.body, media_type=reply.media_type)

    return receive


def push_routes(settings: Settings) -> list[tuple[str, str, PushKind]]:
    """``(path, vendor, kind)`` for every push a registered vendor's adapter can parse."""
    return [
        (f"/push/{vendor}/{kind.value}", vendor, kind)
        for vendor in VENDORS
        for kind, operation in PARSERS.items()
        if offers(vendor, operation)
    ]
