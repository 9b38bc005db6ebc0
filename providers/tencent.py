"""Tencent Cloud SMS v5 adapter: sendsms (one number a call), pullstatus (receipts and replies).

Vendor document: shared/seeds/002_88bc9a7ff6b0f320.txt (sendsms). The error codes come from Tencent's
v5 error page and pullstatus from its v5 API page (both digested in shared/VENDORS.md); Tencent's own
SDK (``qcloudsms_py``) builds the same requests. Quirks worth knowing:
- ``sdkappid`` and ``random`` travel in the query string, everything else in a JSON body.
- ``sig = sha256("appkey=..&random=..&time=..&mobile=..")`` in lowercase hex: a plain hash with the
  AppKey inside the hashed text, not an HMAC. pullstatus signs the same string without ``&mobile=``.
- ``time`` is unix seconds; a request more than 10 minutes off Tencent's clock is refused (1021).
- ``tel`` is ``{mobile, nationcode}``: the country code travels apart and without ``+``.
- ``tpl_id`` is a JSON number, not a string; ``sign`` is the signature text, not its id.
- ``fee`` is the number of billed segments; ``sid`` names the message in receipts.
- ``ext`` is echoed back in the answer; we put our ``bid`` there.
- pullstatus is a queue (each item is returned once), at most 100 a call, and must be enabled by
  Tencent's SMS Helper; receipts otherwise arrive by callback only.
- No balance query exists in the v5 API we have documents for, so ``balance()`` stays unsupported.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

import httpx
from pydantic import Field, SecretStr

from config.sections import VendorSettings
from providers.base import (
    Capabilities,
    DeliveryState,
    InboundMessage,
    Provider,
    Receipt,
    RecipientOutcome,
    SendRequest,
    SendResult,
    classify,
)
from providers.descriptor import VendorDescriptor
from providers.errors import (
    BalanceError,
    ConfigError,
    ProviderError,
    RateLimitedError,
    RequestRejectedError,
    TransientError,
)
from providers.phones import country_code_length, is_e164, is_mainland_mobile


class TencentSettings(VendorSettings):
    """``SMSD_TENCENT__*``: the SDK AppID, its AppKey and the approved signature. Times in s."""

    base_url: str = "https://yun.tim.qq.com"
    sdk_app_id: str = ""
    app_key: SecretStr = SecretStr("")
    sign: str = ""
    batch_size: int = Field(1, ge=1, le=1)
    receipt_page_size: int = Field(100, ge=1, le=100)  # pullstatus ``max``

    def credential_fields(self) -> tuple[str, ...]:
        return ("sdk_app_id", "app_key")


SEND_PATH = "/v5/tlssmssvr/sendsms"
PULL_PATH = "/v5/tlssmssvr/pullstatus"
PULL_MAX = 100  # pullstatus: "max: 拉取最大条数，最多100"
SUCCESS = "0"
MAINLAND_CODE = "86"
BEIJING = timezone(timedelta(hours=8))

# Every code VENDORS.md lists from Tencent's v5 error page. A code not here is permanent for the request
# (see ``classify``). Number, template and repeat-content codes concern the request, not our account.
CODES: Mapping[str, type[ProviderError]] = {
    "1001": ConfigError,  # sig check failed: wrong AppKey (or an AppKey of another sdkappid)
    "1008": TransientError,  # time-out sending the SMS at Tencent's side: retry
    "1012": ConfigError,  # SMS signature (签名) malformed or not approved: ``settings.sign`` is wrong
    "1014": RequestRejectedError,  # template not approved, or the content does not match it
    "1016": RequestRejectedError,  # phone number format
    # 1021: our clock is more than 10 minutes off Tencent's. Every call from this host fails the same
    # way until the clock is fixed, so the provider must be marked unhealthy (ConfigError), not each
    # message failed one by one.
    "1021": ConfigError,
    "1022": RateLimitedError,  # the app's daily cap: not before tomorrow (other vendors still can)
    "1023": RateLimitedError,  # one number, 30 s cap
    "1024": RateLimitedError,  # one number, 1 h cap
    "1025": RateLimitedError,  # one number, daily cap: not before tomorrow
    "1026": RequestRejectedError,  # same content to one number too often: permanent for that number
    "1029": RateLimitedError,  # marketing SMS only 08:00-22:00 Beijing time
    "1031": BalanceError,  # SMS package exhausted
    "1033": BalanceError,  # account in arrears, service stopped
    "60008": TransientError,  # service time-out or UDP loss at Tencent's side: retry
}

# Codes about the one number of the call rather than the request: returned as a refused outcome.
PER_RECIPIENT: frozenset[str] = frozenset({"1026"})


def seconds_until(now: datetime, hour: int) -> float:
    """Seconds from ``now`` to the next ``hour``:00 Beijing time (tomorrow's if that hour has passed)."""
    local = now.astimezone(BEIJING)
    target = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if target <= local:
        target += timedelta(days=1)
    return (target - local).total_seconds()


# How long each rate-limit code asks us to wait, in seconds, given the current time.
RETRY_AFTER: Mapping[str, Callable[[datetime], float]] = {
    "1022": lambda now: seconds_until(now, 0),
    "1023": lambda now: 30.0,
    "1024": lambda now: 3600.0,
    "1025": lambda now: seconds_until(now, 0),
    "1029": lambda now: seconds_until(now, 8),
}


def signature(app_key: str, random: str, at: int, mobile: str | None = None) -> str:
    """Tencent v5 ``sig``: lowercase hex sha256 of ``appkey=..&random=..&time=..[&mobile=..]``.

    ``at`` is unix seconds. ``mobile`` is the number without its country code (several joined by
    commas for multi-number calls); pullstatus leaves it out.
    """
    text = f"appkey={app_key}&random={random}&time={at}"
    if mobile is not None:
        text += f"&mobile={mobile}"
    return hashlib.sha256(text.encode()).hexdigest()


def split_phone(phone: str) -> tuple[str, str]:
    """``(nationcode, mobile)`` of a normalized phone: 11-digit mainland, or E.164 ``+<cc><number>``."""
    if is_mainland_mobile(phone):
        return MAINLAND_CODE, phone
    if not is_e164(phone):
        raise ValueError("not a mainland mobile (11 digits) nor an E.164 number (+country...)")
    digits = phone[1:]
    size = country_code_length(digits)
    nationcode, mobile = digits[:size], digits[size:]
    if len(mobile) < 4 or (nationcode == MAINLAND_CODE and not is_mainland_mobile(mobile)):
        raise ValueError(f"+{nationcode} number has no valid subscriber part")
    return nationcode, mobile


def join_phone(nationcode: str, mobile: str) -> str:
    """The normalized form of a ``tel``: mainland numbers as 11 digits, others in E.164."""
    return mobile if nationcode in ("", MAINLAND_CODE) else f"+{nationcode}{mobile}"


def new_random() -> str:
    """A 10-digit ``random`` (as in the document's example)."""
    return str(10**9 + secrets.randbelow(9 * 10**9))


class TencentProvider(Provider):
    name: ClassVar[str] = "tencent"
    capabilities: ClassVar[Capabilities] = Capabilities(
        batch_size=1,
        international=True,
        max_content_chars=450,  # the document's first line: "not more than 450 characters"
    )

    def __init__(
        self, settings: TencentSettings, client: httpx.Client, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(client)
        self.settings = settings
        self._app_key = settings.app_key.get_secret_value()
        self._clock = clock

    def send(self, request: SendRequest) -> SendResult:
        phone = self._one_phone(request)
        nationcode, mobile = self._split(phone)
        now, rand = int(self._clock()), new_random()
        body = {
            "ext": request.bid,
            "extend": "",
            "params": list(request.template.params),
            "sig": signature(self._app_key, rand, now, mobile),
            "sign": self.settings.sign,
            "tel": {"mobile": mobile, "nationcode": nationcode},
            "time": now,
            "tpl_id": self._template_id(request.template.vendor_template),
        }
        code, answer = self._call(SEND_PATH, rand, body)
        text = str(answer.get("errmsg") or "")
        if code == SUCCESS:
            sid = str(answer.get("sid") or "")
            outcome = RecipientOutcome(phone, True, sid, code, text, _fee(answer.get("fee")))
        elif code in PER_RECIPIENT:
            outcome = RecipientOutcome(phone, False, "", code, text)
        else:
            raise self._error(code, text, answer)
        return SendResult(self.name, (outcome,), raw=answer)

    def poll_receipts(self) -> Sequence[Receipt]:
        """Up to 100 delivery receipts not returned before (pullstatus type 0)."""
        return tuple(self._receipt(item) for item in self._pull(0) if isinstance(item, dict))

    def poll_inbound(self) -> Sequence[InboundMessage]:
        """Up to 100 replies not returned before (pullstatus type 1)."""
        return tuple(
            InboundMessage(
                provider=self.name,
                phone=join_phone(str(item.get("nationcode") or ""), str(item.get("mobile") or "")),
                content=str(item.get("text") or ""),
                at=str(item.get("time") or ""),
                ext=str(item.get("extend") or ""),
                raw=item,
            )
            for item in self._pull(1)
            if isinstance(item, dict)
        )

    # -- helpers ------------------------------------------------------------------------------------

    def _one_phone(self, request: SendRequest) -> str:
        if len(request.phones) != 1:
            raise RequestRejectedError(
                f"tencent: sendsms takes one number a call, got {len(request.phones)}", provider=self.name
            )
        return request.phones[0]

    def _split(self, phone: str) -> tuple[str, str]:
        try:
            return split_phone(phone)
        except ValueError as exc:  # refused here rather than by the vendor (1016); no number in the text
            raise RequestRejectedError(f"tencent: phone: {exc}", provider=self.name, code="1016") from None

    def _template_id(self, value: str) -> int:
        if not value.isdigit():
            raise RequestRejectedError(
                f"tencent: tpl_id must be a number, got {value!r}", provider=self.name, code="1014"
            )
        return int(value)

    def _pull(self, kind: int) -> list[Any]:
        now, rand = int(self._clock()), new_random()
        body = {"max": PULL_MAX, "sig": signature(self._app_key, rand, now), "time": now, "type": kind}
        code, answer = self._call(PULL_PATH, rand, body)
        if code != SUCCESS:
            raise self._error(code, str(answer.get("errmsg") or ""), answer)
        data = answer.get("data") or []
        if not isinstance(data, list):
            raise TransientError(
                "tencent: pullstatus data is not a list", provider=self.name, code="MALFORMED", raw=answer
            )
        return data

    def _receipt(self, item: Mapping[str, Any]) -> Receipt:
        status = str(item.get("report_status") or "")
        state = {"SUCCESS": DeliveryState.DELIVERED, "FAIL": DeliveryState.FAILED}.get(
            status, DeliveryState.UNKNOWN
        )
        return Receipt(
            provider=self.name,
            phone=join_phone(str(item.get("nationcode") or ""), str(item.get("mobile") or "")),
            state=state,
            code=str(item.get("errmsg") or status),
            vendor_id=str(item.get("sid") or ""),
            at=str(item.get("user_receive_time") or ""),
            raw=item,
        )

    def _call(self, path: str, rand: str, body: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """POST and read ``result``: ``(code, answer)``. An answer without a numeric ``result`` is
        ``malformed`` (on HTTP 2xx a sendsms may have been acted on: ambiguous, never resent)."""
        params = {"sdkappid": self.settings.sdk_app_id, "random": rand}
        response = self._post(self.settings.base_url + path, params=params, json=body)
        return self._coded_json(response, "result")

    def _error(self, code: str, text: str, answer: Any) -> ProviderError:
        hint = RETRY_AFTER.get(code)
        wait_s = hint(datetime.fromtimestamp(self._clock(), BEIJING)) if hint is not None else None
        return classify(self.name, code, text, CODES, answer, retry_after_s=wait_s)


def _fee(value: Any) -> int | None:
    """Billed segments; None when the answer leaves ``fee`` out or garbles it."""
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None

VENDOR = VendorDescriptor(
    name="tencent",
    provider=TencentProvider,
    settings=TencentSettings,
    simulator="providers.simulator.tencent",
    demo_credentials={"sdk_app_id": "1400000000", "app_key": "demo-tencent-app-key", "sign": "腾讯云"},
    codes=CODES,
    code_field="result",
)
