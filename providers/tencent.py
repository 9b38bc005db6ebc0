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
- ``fee`` is the number of billed segments (unknown, None, when unreadable); ``sid`` names the message in
  receipts. A success without a ``sid`` can never be matched to a receipt: it is recorded accepted with
  code ``NO_SID`` and no vendor id, and the settle sweep fails it (``NO_RECEIPT``) after the settle window.
- ``ext`` is echoed back in the answer; we put our ``bid`` there.
- pullstatus is a queue (each item is returned once), at most 100 a call, and must be enabled by
  Tencent's SMS Helper; receipts otherwise arrive by callback only.
- No balance query exists in the v5 API we have documents for, so ``balance()`` stays unsupported.
- Callbacks (pushes): receipts as a JSON array of the pullstatus items, a reply as one object ``{extend,
  mobile, nationcode, sign, text, time}``; both answered ``{"result":0,"errmsg":"OK"}``. Tencent signs
  neither: the receiver needs a token in the callback URL.
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
    HttpCall,
    InboundMessage,
    Provider,
    Receipt,
    RecipientOutcome,
    SendRequest,
    SendResult,
    classify,
    receipt_state,
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
from providers.pushes import PushKind, PushReply, items, json_body, required
from providers.reading import Unreadable, identifier, text, whole


class TencentSettings(VendorSettings):
    """``SMSD_TENCENT__*``: the SDK AppID, its AppKey and the approved signature. Times in s."""

    base_url: str = "https://yun.tim.qq.com"
    sdk_app_id: str = Field("", description="the SDK AppID (credential)")
    app_key: SecretStr = Field(SecretStr(""), description="the SDK AppID's AppKey (credential)")
    sign: str = Field("", description="the approved signature (签名) messages carry, e.g. 腾讯云")
    batch_size: int = Field(1, ge=1, le=1)
    receipt_page_size: int = Field(100, ge=1, le=100)  # pullstatus ``max``

    def credential_fields(self) -> tuple[str, ...]:
        return ("sdk_app_id", "app_key")


SEND_PATH = "/v5/tlssmssvr/sendsms"
PULL_PATH = "/v5/tlssmssvr/pullstatus"
PULL_MAX = 100  # pullstatus: "max: 拉取最大条数，最多100"
SUCCESS = "0"
NO_SID = "NO_SID"  # the outcome code of a success without a sid (see ``_accepted``)
MAX_FEE = 100  # billed segments: 450 characters make at most 7; a larger count is garbage, read as unknown
MAINLAND_CODE = "86"
# pullstatus ``report_status``: SUCCESS or FAIL (the callback's documented values); anything else is unknown.
RECEIPT_STATES: Mapping[str, DeliveryState] = {
    "SUCCESS": DeliveryState.DELIVERED,
    "FAIL": DeliveryState.UNDELIVERED,
}
BEIJING = timezone(timedelta(hours=8))
PUSH_REPLY = PushReply(b'{"result":0,"errmsg":"OK"}', "application/json")

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

    # -- send (the hooks of ``Provider.send``) --------------------------------------------------------

    def _check(self, request: SendRequest) -> None:
        self._split(request.phones[0])
        self._template_id(request.template.vendor_template)

    def _build(self, request: SendRequest) -> HttpCall:
        nationcode, mobile = self._split(request.phones[0])
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
        return self._call(SEND_PATH, rand, body)

    def _parse(self, response: httpx.Response, request: SendRequest) -> SendResult:
        code, answer = self._coded_json(response, "result")
        message = text(answer.get("errmsg"))
        phone = request.phones[0]
        if code == SUCCESS:
            outcome = _accepted(phone, answer, message)
        elif code in PER_RECIPIENT:
            outcome = RecipientOutcome(phone, False, "", code, message)
        else:
            raise self._error(code, message, answer)
        return SendResult(self.name, (outcome,), raw=answer)

    # -- queries --------------------------------------------------------------------------------------

    def poll_receipts(self) -> Sequence[Receipt]:
        """Up to 100 delivery receipts not returned before (pullstatus type 0)."""
        return self._query(self._pull(0), lambda response: tuple(map(_receipt, self._items(response))))

    def poll_inbound(self) -> Sequence[InboundMessage]:
        """Up to 100 replies not returned before (pullstatus type 1)."""
        return self._query(self._pull(1), lambda response: tuple(map(_inbound, self._items(response))))

    # -- pushes (callbacks) ---------------------------------------------------------------------------

    def push_reply(self, kind: PushKind) -> PushReply:
        return PUSH_REPLY

    def parse_receipt_push(self, body: bytes, content_type: str) -> Sequence[Receipt]:
        """A JSON array of receipts (an object alone is read as one), each found by ``sid``."""
        pushed = items(self.name, json_body(self.name, body), single_ok=True)
        for item in pushed:
            required(self.name, item, "sid")
            required(self.name, item, "mobile")
        return tuple(_receipt(dict(item)) for item in pushed)

    def parse_inbound_push(self, body: bytes, content_type: str) -> Sequence[InboundMessage]:
        """One reply object (an array of them is read too)."""
        pushed = items(self.name, json_body(self.name, body), single_ok=True)
        for item in pushed:
            required(self.name, item, "mobile")
        return tuple(_inbound(dict(item)) for item in pushed)

    # -- helpers ------------------------------------------------------------------------------------

    def _split(self, phone: str) -> tuple[str, str]:
        try:
            return split_phone(phone)
        except ValueError as exc:  # refused here rather than by the vendor (1016); no number in the text
            raise RequestRejectedError(f"tencent: phone: {exc}", provider=self.name, code="1016") from None

    def _template_id(self, value: str) -> int:
        if not (value.isascii() and value.isdigit() and len(value) <= 18):  # a JSON number, no surprise
            raise RequestRejectedError(
                f"tencent: tpl_id must be a number, got {value[:40]!r}", provider=self.name, code="1014"
            )
        return int(value)

    def _pull(self, kind: int) -> HttpCall:
        now, rand = int(self._clock()), new_random()
        body = {"max": PULL_MAX, "sig": signature(self._app_key, rand, now), "time": now, "type": kind}
        return self._call(PULL_PATH, rand, body)

    def _items(self, response: httpx.Response) -> list[dict[str, Any]]:
        """The items of a pullstatus answer; ``null`` or ``[]`` means nothing new."""
        code, answer = self._coded_json(response, "result")
        if code != SUCCESS:
            raise self._error(code, text(answer.get("errmsg")), answer)
        data = answer.get("data")
        if data is None:
            return []
        if not isinstance(data, list):
            raise Unreadable("pullstatus data is not a list", answer)
        return [item for item in data if isinstance(item, dict)]

    def _call(self, path: str, rand: str, body: Mapping[str, Any]) -> HttpCall:
        """A call to ``path``: ``sdkappid`` and ``random`` in the query string, ``body`` as JSON."""
        params = {"sdkappid": self.settings.sdk_app_id, "random": rand}
        return HttpCall(self.settings.base_url + path, json=body, params=params)

    def _error(self, code: str, text: str, answer: Any) -> ProviderError:
        hint = RETRY_AFTER.get(code)
        wait_s = hint(datetime.fromtimestamp(self._clock(), BEIJING)) if hint is not None else None
        return classify(self.name, code, text, CODES, answer, retry_after_s=wait_s)


def _accepted(phone: str, answer: dict[str, Any], message: str) -> RecipientOutcome:
    """The outcome of a ``result: 0``. Without a ``sid`` no receipt can ever be matched to it: still
    accepted (result 0 is, per the document, the basis for billing: the message went out), with code
    ``NO_SID``; the settle sweep fails it with ``NO_RECEIPT`` after the vendor's settle window."""
    fee = _fee(answer.get("fee"))
    sid = identifier(answer.get("sid"))
    if sid is None:
        return RecipientOutcome(phone, True, "", NO_SID, message or "accepted without a sid", fee)
    return RecipientOutcome(phone, True, sid, SUCCESS, message, fee)


def _fee(value: Any) -> int | None:
    """Billed segments, or None (unknown) when the answer leaves ``fee`` out or garbles it (``1e400``,
    ``NaN``, ``-1``, ``1.5``, a list). Unknown rather than malformed: ``result: 0`` with a ``sid`` is the
    vendor's word that it took and bills the message, and ``fee`` only counts segments for our records;
    refusing the answer over it would throw away a good ``sid`` (and, as ambiguous, the receipt match)."""
    return whole(value, 0, MAX_FEE)


def _receipt(item: dict[str, Any]) -> Receipt:
    status = text(item.get("report_status")).strip()
    return Receipt(
        provider=TencentProvider.name,
        phone=join_phone(text(item.get("nationcode")), text(item.get("mobile"))),
        state=receipt_state(status, RECEIPT_STATES),
        code=text(item.get("errmsg")) or status,
        vendor_id=text(item.get("sid")),
        at=text(item.get("user_receive_time")),
        raw=item,
    )


def _inbound(item: dict[str, Any]) -> InboundMessage:
    return InboundMessage(
        provider=TencentProvider.name,
        phone=join_phone(text(item.get("nationcode")), text(item.get("mobile"))),
        content=text(item.get("text")),
        at=text(item.get("time")),
        ext=text(item.get("extend")),
        raw=item,
    )


VENDOR = VendorDescriptor(
    name="tencent",
    provider=TencentProvider,
    settings=TencentSettings,
    simulator="providers.simulator.tencent",
    demo_credentials={"sdk_app_id": "1400000000", "app_key": "demo-tencent-app-key", "sign": "腾讯云"},
    codes=CODES,
    code_field="result",
)
