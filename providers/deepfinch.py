"""Deepfinch (深智) adapter: data/send_sms, one number per call, through the Tencent Cloud market gateway.

Vendor document: shared/seeds/000_56fc09760ff8ebc1.txt. Quirks worth knowing:
- Form body ``phone_number`` (one number), ``template_id`` (``TPL_0001``) and ``content``: the template's
  variables as ``name:value`` pairs joined by commas ("模板中参数与参数值以":"分隔,多项参数以","分隔,例如:
  code:1234,expire_at:5"). There is no escaping, so a name or value holding ``,`` or ``:`` cannot be sent:
  we refuse it ourselves instead of letting the vendor misread it.
- Success is ``{"status":"OK","request_id":...}``; failures carry a ``status`` string and a ``reason``
  (``INVALID_ARGUMENT`` "content mismatch"), and three of them an HTTP status (400 DETECTION_FAILED,
  403 RATE_LIMIT_EXCEEDED, 500 INTERNAL_ERROR). The gateway in front answers 401/403 ``{"message":...}``
  for bad SecretId/SecretKey; a 403 *with* ``status`` is the vendor's rate limit.
- No receipt pull, no inbound pull, no balance query.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import httpx
from pydantic import Field, SecretStr

from config.sections import VendorSettings
from providers.base import (
    Capabilities,
    HttpCall,
    Provider,
    RecipientOutcome,
    SendRequest,
    SendResult,
    classify,
)
from providers.descriptor import VendorDescriptor
from providers.errors import (
    ProviderError,
    RateLimitedError,
    RequestRejectedError,
    TransientError,
)
from providers.market_gateway import MarketGatewayAuth, gateway_error
from providers.reading import UNREADABLE, Unreadable, decode_json, identifier, number, text


class DeepfinchSettings(VendorSettings):
    """``SMSD_DEEPFINCH__*``: the market gateway's SecretId/SecretKey. Times in s."""

    base_url: str = "https://service-deepfinch.market.tencentcloudapi.example"
    secret_id: SecretStr = Field(SecretStr(""), description="the market API gateway's SecretId (credential)")
    secret_key: SecretStr = Field(SecretStr(""), description="the gateway's SecretKey (credential)")
    batch_size: int = Field(1, ge=1, le=1)

    def credential_fields(self) -> tuple[str, ...]:
        return ("secret_id", "secret_key")


# Every status the document names: the failure example and the 返回码定义 table.
CODES: Mapping[str, type[ProviderError]] = {
    "INVALID_ARGUMENT": RequestRejectedError,  # e.g. "content mismatch": variables do not fit the template
    # 400 "核验测失败" (check failed): the vendor's check of this request failed; the same request fails
    # again, and with one number per call there is no batch to keep apart from the recipient.
    "DETECTION_FAILED": RequestRejectedError,
    "RATE_LIMIT_EXCEEDED": RateLimitedError,  # 403 调用频率超出限额
    "INTERNAL_ERROR": TransientError,  # 500 服务器内部错误
}
# The document pairs these HTTP statuses with a status string; used when such an answer has no body.
HTTP_STATUS: Mapping[int, str] = {400: "DETECTION_FAILED", 403: "RATE_LIMIT_EXCEEDED", 500: "INTERNAL_ERROR"}
SUCCESS = "OK"
OUR_REFUSAL = "INVALID_ARGUMENT"  # the code we give requests we refuse before the vendor sees them
PATH = "/release/data/send_sms"
MAX_RETRY_AFTER_S = 3600.0  # the longest ``Retry-After`` we believe, in seconds
_DELAY = re.compile(r"[0-9]+(?:\.[0-9]+)?")  # delay-seconds (RFC 9110: digits; a fraction tolerated)


def content_pairs(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    """``code:1234,expire_at:5`` from names and values in the same order; ``ValueError`` if unsendable."""
    if len(names) != len(values):
        raise ValueError(f"{len(names)} parameter names for {len(values)} values")
    for part in (*names, *values):
        if "," in part or ":" in part:
            raise ValueError("a template name or value holds ',' or ':', which the vendor cannot tell apart")
    if any(not name for name in names):
        raise ValueError("empty template parameter name")
    return ",".join(f"{name}:{value}" for name, value in zip(names, values, strict=True))


class DeepfinchProvider(Provider):
    name: ClassVar[str] = "deepfinch"
    capabilities: ClassVar[Capabilities] = Capabilities(batch_size=1, param_forbidden_chars=",:")

    def __init__(self, settings: DeepfinchSettings, client: httpx.Client) -> None:
        super().__init__(client)
        self.settings = settings
        self._auth = MarketGatewayAuth.from_secrets(settings.secret_id, settings.secret_key)

    # -- the hooks of ``Provider.send`` -----------------------------------------------------------------

    def _check(self, request: SendRequest) -> None:
        template = request.template
        try:
            content_pairs(template.names, template.params)
        except ValueError as exc:
            raise RequestRejectedError(f"deepfinch: {exc}", provider=self.name, code=OUR_REFUSAL) from exc
        if not template.vendor_template:
            raise RequestRejectedError("deepfinch: no template_id", provider=self.name, code=OUR_REFUSAL)

    def _build(self, request: SendRequest) -> HttpCall:
        template = request.template
        body = {
            "phone_number": request.phones[0],
            "template_id": template.vendor_template,
            "content": content_pairs(template.names, template.params),
        }
        return HttpCall(self.settings.base_url + PATH, data=body, auth=self._auth)

    def _transmit(self, call: HttpCall) -> httpx.Response:
        # A 5xx may carry the vendor's own status (INTERNAL_ERROR): ``_parse`` reads it.
        return self._request("POST", call.url, server_errors=False, **call.kwargs())

    def _parse(self, response: httpx.Response, request: SendRequest) -> SendResult:
        if response.status_code >= 500:
            raise self._server_failure(response)
        if (refused := gateway_error(self.name, response)) is not None:
            raise refused
        answer = self._json(response) if response.content else {}
        status = answer.get("status") if isinstance(answer, dict) else None
        if status == SUCCESS:
            request_id = identifier(answer.get("request_id")) or ""
            outcome = RecipientOutcome(request.phones[0], True, request_id, SUCCESS)
            return SendResult(self.name, (outcome,), batch_id=request_id, raw=answer)
        status = _status(status)
        if not status:
            # No readable status: the HTTP status the document pairs with one, else an unreadable answer
            # (on HTTP 2xx the vendor may have sent the message: ambiguous, never resent).
            status = HTTP_STATUS.get(response.status_code, "")
            if not status:
                raise Unreadable("no status", answer)
        raise self._error(status, answer, response)

    def _error(self, status: str, answer: Any, response: httpx.Response) -> ProviderError:
        reason = text(answer.get("reason")) if isinstance(answer, dict) else ""
        return classify(self.name, status, reason, CODES, answer, retry_after_s=retry_after_s(response))

    def _server_failure(self, response: httpx.Response) -> TransientError:
        """A 5xx is a server failure whatever its body says: the vendor's own status when the body names a
        transient one (``INTERNAL_ERROR``), else the HTTP status (``HTTP502``)."""
        try:
            answer = decode_json(response.content)
        except ValueError:
            return self.server_error(response)
        status = _status(answer.get("status") if isinstance(answer, dict) else None)
        if status:
            error = self._error(status, answer, response)
            if isinstance(error, TransientError):
                return error
        return self.server_error(response)


def _status(value: Any) -> str:
    """A failure's ``status`` as our error code: a string, stripped and cut to 64 characters (the
    document's are under 20), else ``""`` (none)."""
    return text(value).strip()[:64] if isinstance(value, str) else ""


def retry_after_s(response: httpx.Response, now: float | None = None) -> float | None:
    """The ``Retry-After`` header in seconds, within 0..``MAX_RETRY_AFTER_S``: delay-seconds or an HTTP
    date (RFC 9110). None when absent or unreadable (``inf``, ``NaN``, a negative delay, garbage): the
    caller's own backoff applies. A longer wait is cut to the cap: past it the hint is not believable, and
    the retry only asks again."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    if _DELAY.fullmatch(value.strip()):
        seconds = number(value)  # None: more digits than a float holds, which is "very long"
        return MAX_RETRY_AFTER_S if seconds is None else min(seconds, MAX_RETRY_AFTER_S)
    try:
        at = parsedate_to_datetime(value).timestamp()
    except UNREADABLE:
        return None
    return min(max(0.0, at - (time.time() if now is None else now)), MAX_RETRY_AFTER_S)


VENDOR = VendorDescriptor(
    name="deepfinch",
    provider=DeepfinchProvider,
    settings=DeepfinchSettings,
    simulator="providers.simulator.deepfinch",
    demo_credentials={"secret_id": "AKIDdemodeepfinch", "secret_key": "demo-deepfinch-secret-key"},
    codes=CODES,
    code_field="status",
)
