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

import json
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx
from pydantic import Field, SecretStr

from config.sections import VendorSettings
from providers.base import Capabilities, Provider, RecipientOutcome, SendRequest, SendResult, classify
from providers.descriptor import VendorDescriptor
from providers.errors import (
    ProviderError,
    RateLimitedError,
    RequestRejectedError,
    TransientError,
)
from providers.market_gateway import MarketGatewayAuth, gateway_error

# Every status the document names: the failure example and the 返回码定义 table.

class DeepfinchSettings(VendorSettings):
    """``SMSD_DEEPFINCH__*``: the market gateway's SecretId/SecretKey. Times in s."""

    base_url: str = "https://service-deepfinch.market.tencentcloudapi.example"
    secret_id: SecretStr = SecretStr("")
    secret_key: SecretStr = SecretStr("")
    batch_size: int = Field(1, ge=1, le=1)

    def credential_fields(self) -> tuple[str, ...]:
        return ("secret_id", "secret_key")


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

    def send(self, request: SendRequest) -> SendResult:
        phone = self._one_phone(request)
        template = request.template
        try:
            content = content_pairs(template.names, template.params)
        except ValueError as exc:
            raise RequestRejectedError(f"deepfinch: {exc}", provider=self.name, code=OUR_REFUSAL) from exc
        if not template.vendor_template:
            raise RequestRejectedError("deepfinch: no template_id", provider=self.name, code=OUR_REFUSAL)
        body = {"phone_number": phone, "template_id": template.vendor_template, "content": content}
        answer = self._call(body)
        request_id = str(answer.get("request_id") or "")
        outcome = RecipientOutcome(phone, True, request_id, SUCCESS)
        return SendResult(self.name, (outcome,), batch_id=request_id, raw=answer)

    def _one_phone(self, request: SendRequest) -> str:
        if len(request.phones) != 1:
            raise RequestRejectedError(
                f"deepfinch: {len(request.phones)} phones in one call, exactly 1 is allowed",
                provider=self.name,
                code=OUR_REFUSAL,
            )
        return request.phones[0]

    def _call(self, body: Mapping[str, str]) -> dict[str, Any]:
        try:
            response = self._post(self.settings.base_url + PATH, data=body, auth=self._auth)
        except TransientError as exc:
            # 5xx: the base class raised before reading the body; keep the vendor's own status if it gave one.
            vendor_error = self._from_5xx(exc)
            if vendor_error is None:
                raise
            raise vendor_error from exc
        if (refused := gateway_error(self.name, response)) is not None:
            raise refused
        answer = self._json(response) if response.content else {}
        status = answer.get("status") if isinstance(answer, dict) else None
        if status == SUCCESS:
            return answer
        if not isinstance(status, str) or not status:
            # No readable status: the HTTP status the document pairs with one, else an unreadable answer
            # (on HTTP 2xx the vendor may have sent the message: ambiguous, never resent).
            status = HTTP_STATUS.get(response.status_code, "")
            if not status:
                raise self.malformed(response)
        raise self._error(status, answer, response)

    def _error(self, status: str, answer: Any, response: httpx.Response) -> ProviderError:
        reason = str(answer.get("reason") or "") if isinstance(answer, dict) else ""
        return classify(self.name, status, reason, CODES, answer, retry_after_s=_retry_after(response))

    def _from_5xx(self, exc: TransientError) -> TransientError | None:
        """The vendor's error from a 5xx body (``INTERNAL_ERROR``), or None to keep the base class's."""
        if not exc.code.startswith("HTTP5"):
            return None  # NotSentError and friends: nothing from the vendor to read
        try:
            answer = json.loads(exc.text)
        except ValueError:
            return None
        if not isinstance(answer, dict) or not answer.get("status"):
            return None
        error = classify(self.name, str(answer["status"]), str(answer.get("reason") or ""), CODES, answer)
        # A 5xx is a server failure whatever the body says; only a transient status may replace it.
        return error if isinstance(error, TransientError) else None


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None

VENDOR = VendorDescriptor(
    name="deepfinch",
    provider=DeepfinchProvider,
    settings=DeepfinchSettings,
    simulator="providers.simulator.deepfinch",
    demo_credentials={"secret_id": "AKIDdemodeepfinch", "secret_key": "demo-deepfinch-secret-key"},
    codes=CODES,
    code_field="status",
)
