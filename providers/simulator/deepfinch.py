"""Deepfinch simulator: release/data/send_sms, one number per call, behind the market gateway.

Behaves as shared/seeds/000_56fc09760ff8ebc1.txt describes: the gateway auth is checked first (401/403
``{"message"}``), then the form: one ``phone_number``, a ``template_id`` and ``content`` as
``name:value`` pairs. The document's two default templates (TPL_0000 ``code``; TPL_0001 ``code`` and
``expire_at``) must get exactly their variables, else INVALID_ARGUMENT "content mismatch" (the
document's own failure example). Other template ids are accepted unless ``known_templates`` is set.
DETECTION_FAILED (400), RATE_LIMIT_EXCEEDED (403) and INTERNAL_ERROR (500) come from fault injection:
the document gives no rule that triggers them. Deepfinch has no receipt or reply pull.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from config.settings import Settings
from providers.deepfinch import HTTP_STATUS, PATH, DeepfinchSettings
from providers.simulator.core import Answer, Refused, SimState, market_gateway, serve

VENDOR = "deepfinch"
# What a credential that is not the one it was built with is answered:
# the market gateway's 403 (HMAC id is invalid / signature does not match).
BAD_CREDENTIAL = "GATEWAY_403"
TEMPLATES: dict[str, frozenset[str]] = {
    "TPL_0000": frozenset({"code"}),
    "TPL_0001": frozenset({"code", "expire_at"}),
}
# The document gives no HTTP status for INVALID_ARGUMENT; 400 is the gateway convention for a bad request.
HTTP_CODES: dict[str, int] = {**{v: k for k, v in HTTP_STATUS.items()}, "INVALID_ARGUMENT": 400}
REASONS = {
    "DETECTION_FAILED": "detection failed",
    "RATE_LIMIT_EXCEEDED": "rate limit exceeded",
    "INTERNAL_ERROR": "internal error",
}


class DeepfinchSim:
    def __init__(self, state: SimState, secret_id: str, secret_key: str) -> None:
        self.state = state
        self.gate = market_gateway(state, secret_id, secret_key)

    def routes(self) -> list[Route]:
        return [Route(PATH, self._endpoint, methods=["POST"])]

    async def _endpoint(self, request: Request) -> Response:
        return await serve(self.state, VENDOR, request, self._process, _refusal, gate=self.gate)

    def _process(self, raw: bytes) -> Answer:
        answer = {"request_id": _request_id(), "status": "OK", **self._send(_form(raw))}
        return JSONResponse(answer), answer["status"]

    def _send(self, form: dict[str, str]) -> dict[str, Any]:
        phone = form.get("phone_number", "").strip()
        if not (len(phone) == 11 and phone.isdigit() and phone[0] == "1"):
            raise Refused("INVALID_ARGUMENT", "invalid phone_number")
        template = form.get("template_id", "")
        if not template:
            raise Refused("INVALID_ARGUMENT", "missing template_id")
        variables = _pairs(form.get("content", ""))
        known = self.state.config.known_templates
        if template in TEMPLATES:
            if set(variables) != TEMPLATES[template]:
                raise Refused("INVALID_ARGUMENT", "content mismatch")
        elif known and template not in known:
            raise Refused("INVALID_ARGUMENT", "template not found")
        self.state.accept(VENDOR, [phone])
        return {}


def build(state: SimState, settings: Settings) -> DeepfinchSim:
    section = settings.vendor("deepfinch", DeepfinchSettings)
    return DeepfinchSim(state, section.secret_id.get_secret_value(), section.secret_key.get_secret_value())


def _refusal(refused: Refused) -> Answer:
    """The document's failure shape, with the HTTP status the document pairs with the status."""
    reason = refused.message or REASONS.get(refused.code, "invalid argument")
    answer = {"status": refused.code, "reason": reason, "request_id": _request_id()}
    return JSONResponse(answer, status_code=HTTP_CODES.get(refused.code, 400)), refused.code


def _form(raw: bytes) -> dict[str, str]:
    try:
        return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise Refused("INVALID_ARGUMENT", "body is not UTF-8") from None


def _pairs(content: str) -> dict[str, str]:
    """``code:1234,expire_at:5`` → ``{"code": "1234", "expire_at": "5"}``; a pair without ``:`` is refused."""
    pairs: dict[str, str] = {}
    for part in filter(None, content.split(",")):
        name, sep, value = part.partition(":")
        if not sep or not name:
            raise Refused("INVALID_ARGUMENT", "content mismatch")
        pairs[name] = value
    return pairs


def _request_id() -> str:
    return "TID" + uuid.uuid4().hex
