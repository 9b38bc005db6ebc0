"""Ihuyi (互亿无线) adapter: Submit (one number a call, rendered text) and GetNum (balance).

Vendor document: shared/seeds/003_d1ebdae77096c094.txt; the dynamic password and GetNum come from the
vendor's v3.3 API document (digested in shared/VENDORS.md). Quirks worth knowing:
- One endpoint, ``/webservice/sms.php``, the operation in ``method=`` (Submit, GetNum); form fields.
- Answers are XML unless ``format=json`` is sent; ``code`` is 2 on success (a number in the JSON) and
  ``smsid`` is ``"0"`` on failure.
- ``password`` is the APIKEY itself, or a dynamic ``md5(account + apikey + mobile + content + time)``
  (lowercase hex, UTF-8) with ``time`` a 10-digit unix time; GetNum signs ``md5(account + apikey + time)``.
- A dynamic password expires (40501). The vendor refused that request, so regenerating the password
  with a fresh ``time`` and resending once cannot send twice.
- ``content`` is at most 300 characters (4073, longer messages are billed as several) and must hold no
  emoji (4074): both are refused here before any call.
- Per-number limits: 1 a second (4080), 5 a day (4082), 5 verification codes (4085), blacklisted past
  20 (408). Those are about the number, so they come back as refused outcomes, not exceptions.
- Receipts and replies are push-only (form POST, answered with the literal ``success``; the vendor
  tries up to 3 times): receipt ``code, msg, mobilephone, smsid, report_time``, reply ``mobilephone,
  content, smsid, reply_time``. No pull here. Ihuyi signs nothing: the receiver needs a token.
- The receipt ``code`` values are not in our documents: ``1`` is delivered, any other number not (the
  simulator does the same); ``msg`` carries the carrier's status (DELIVRD, UNDELIV, EXPIRED, ...) and is
  kept as the receipt's code, and refines a failure into expired or rejected.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import httpx
from pydantic import Field, SecretStr

from config.sections import VendorSettings
from providers.base import (
    Balance,
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
    vendor_code,
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
from providers.phones import is_mainland_mobile
from providers.pushes import PushKind, PushReply, form_body, required
from providers.reading import Unreadable, decode_json, identifier, number, text
from providers.text import EMOJI


class IhuyiSettings(VendorSettings):
    """``SMSD_IHUYI__*``: the APIID account and its APIKEY. Times in s."""

    base_url: str = "https://106.ihuyi.com"
    account: str = Field("", description="the APIID (credential)")
    api_key: SecretStr = Field(SecretStr(""), description="the APIKEY (credential)")
    dynamic_password: bool = Field(
        True, description="send an MD5 dynamic password with a time instead of the APIKEY itself"
    )
    batch_size: int = Field(1, ge=1, le=1)

    def credential_fields(self) -> tuple[str, ...]:
        return ("account", "api_key")


PATH = "/webservice/sms.php"
SUCCESS = "2"
NO_SMSID = "NO_SMSID"  # the outcome code of a success without a smsid (see ``_accepted``)
EXPIRED = "40501"
MAX_CONTENT_CHARS = 300

# Every code in the document's code/msg table except 2 (提交成功).
CODES: Mapping[str, type[ProviderError]] = {
    # 0 提交失败 names no cause, and the vendor says it did not take the message: retrying (bounded, with
    # backoff) cannot send twice; the specific causes all have codes of their own.
    "0": TransientError,
    "400": ConfigError,  # 非法ip访问: our egress IP
    "401": ConfigError,  # 帐号不能为空: settings.account
    "402": ConfigError,  # 密码不能为空: settings.api_key
    "403": RequestRejectedError,  # 手机号码不能为空
    "4030": RequestRejectedError,  # 手机号码已被列入黑名单 (per number, see PER_NUMBER)
    "404": RequestRejectedError,  # 短信内容不能为空
    "405": ConfigError,  # API ID 或 API KEY 不正确
    "4050": ConfigError,  # 账号被冻结
    # 40501 动态密码已过期: met only after the one fresh retry also expired, i.e. our clock is off the
    # vendor's: every call fails until it is fixed, so the provider is unhealthy.
    "40501": ConfigError,
    "40502": ConfigError,  # 动态密码校验失败: the APIKEY is wrong
    "4051": BalanceError,  # 剩余条数不足
    "4052": ConfigError,  # 访问 ip 与备案 ip 不符
    "406": RequestRejectedError,  # 手机格式不正确
    "407": RequestRejectedError,  # 短信内容含有敏感字符
    # 4070-4072 签名格式不正确, 4075 签名未通过审核: the signature is account setup, as Tencent's 1012.
    "4070": ConfigError,
    "4071": ConfigError,
    "4072": ConfigError,
    "40722": RequestRejectedError,  # 变量内容超过指定的长度
    "4073": RequestRejectedError,  # 短信内容超出长度限制
    "4074": RequestRejectedError,  # 短信内容包含 emoji 符号
    "4075": ConfigError,
    "408": RequestRejectedError,  # 发送超限, 已加入黑名单 (per number)
    "4080": RateLimitedError,  # 同一手机号码同一秒钟之内发送频率不能超过 1 条
    "4082": RequestRejectedError,  # 超出同一手机号一天之内【5】条短信限制 (per number)
    "4085": RequestRejectedError,  # 同一手机号验证码短信发送超出【5】条 (per number)
}

# Codes about the number of the call, not the request: a refused outcome for that phone.
PER_NUMBER: frozenset[str] = frozenset({"4030", "408", "4082", "4085"})
RETRY_AFTER_S: Mapping[str, float] = {"4080": 1.0}

# The receipt push's ``code``: 1 delivered; any other value is a failure (see the module docstring), which
# ``msg`` (the carrier's status) refines. A missing code is no verdict (UNKNOWN).
RECEIPT_STATES: Mapping[str, DeliveryState] = {"1": DeliveryState.DELIVERED, "0": DeliveryState.UNDELIVERED}
RECEIPT_OTHER = DeliveryState.UNDELIVERED
FAILURE_STATES: Mapping[str, DeliveryState] = {
    "EXPIRED": DeliveryState.EXPIRED,
    "REJECTD": DeliveryState.REJECTED,
}
PUSH_REPLY = PushReply(b"success", "text/plain")

# What we refuse as emoji (4074): Unicode's default-emoji set, shared with the planner.
_EMOJI = EMOJI


def md5_hex(text: str) -> str:
    """Lowercase hex MD5 of ``text`` in UTF-8 (the vendor's dynamic-password hash)."""
    return hashlib.md5(text.encode()).hexdigest()


def submit_password(account: str, api_key: str, mobile: str, content: str, at: str) -> str:
    """Dynamic password for Submit: ``md5(account + apikey + mobile + content + time)``."""
    return md5_hex(account + api_key + mobile + content + at)


def balance_password(account: str, api_key: str, at: str) -> str:
    """Dynamic password for GetNum: ``md5(account + apikey + time)``."""
    return md5_hex(account + api_key + at)


def find_emoji(text: str) -> str | None:
    """The first character of ``text`` the vendor refuses as emoji, or None."""
    match = _EMOJI.search(text)
    return match.group() if match else None


def content_problem(content: str) -> tuple[str, str] | None:
    """``(vendor code, reason)`` when Ihuyi would refuse ``content``; None when it is fine."""
    if not content:
        return "404", "content is empty"
    if len(content) > MAX_CONTENT_CHARS:
        return "4073", f"content is {len(content)} characters, at most {MAX_CONTENT_CHARS}"
    emoji = find_emoji(content)
    if emoji is not None:
        return "4074", f"content holds an emoji (U+{ord(emoji):04X}), which the vendor refuses"
    return None


class IhuyiProvider(Provider):
    name: ClassVar[str] = "ihuyi"
    capabilities: ClassVar[Capabilities] = Capabilities(
        batch_size=1, template_based=False, max_content_chars=MAX_CONTENT_CHARS, forbids_emoji=True
    )

    def __init__(
        self, settings: IhuyiSettings, client: httpx.Client, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(client)
        self.settings = settings
        self._api_key = settings.api_key.get_secret_value()
        self._clock = clock

    # -- send (the hooks of ``Provider.send``) --------------------------------------------------------

    def _check(self, request: SendRequest) -> None:
        """The one phone and the content, refused here if the vendor would refuse them."""
        phone, content = request.phones[0], request.template.text
        if not is_mainland_mobile(phone):
            raise RequestRejectedError(
                "ihuyi: mobile: only mainland mobiles (11 digits)", provider=self.name, code="406"
            )
        problem = content_problem(content)
        if problem is not None:
            raise RequestRejectedError(f"ihuyi: {problem[1]}", provider=self.name, code=problem[0])

    def _build(self, request: SendRequest) -> HttpCall:
        return self._call("Submit", self._submit_form(request.phones[0], request.template.text))

    def _transmit(self, call: HttpCall) -> httpx.Response:
        response = super()._transmit(call)
        if self.settings.dynamic_password and call.data is not None and _code_of(response) == EXPIRED:
            # 40501: the dynamic password expired before the vendor checked it. The vendor refused the
            # request, so the same form signed with a fresh time, sent once more, cannot send twice.
            response = super()._transmit(replace(call, data=self._signed(call.data)))
        return response

    def _parse(self, response: httpx.Response, request: SendRequest) -> SendResult:
        code, answer = self._coded_json(response, "code")
        message = text(answer.get("msg"))
        phone = request.phones[0]
        if code == SUCCESS:
            outcome = _accepted(phone, answer, message)
        elif code in PER_NUMBER:
            outcome = RecipientOutcome(phone, False, "", code, message)
        else:
            raise self._error(code, message, answer)
        return SendResult(self.name, (outcome,), raw=answer)

    # -- queries --------------------------------------------------------------------------------------

    def balance(self) -> Sequence[Balance]:
        """Messages left on the account (GetNum ``num``)."""
        form = {"account": self.settings.account, "password": self._api_key, "format": "json"}
        return self._query(self._call("GetNum", self._signed(form)), self._balance)

    def _balance(self, response: httpx.Response) -> tuple[Balance]:
        code, answer = self._coded_json(response, "code")
        if code != SUCCESS:
            raise self._error(code, text(answer.get("msg")), answer)
        num = number(answer.get("num"))
        if num is None:  # missing, NaN, Infinity, "lots": no reading at all rather than a wrong one
            raise Unreadable("GetNum answer without a finite num", answer)
        return (Balance(self.name, "sms", num, raw=answer),)

    # -- pushes ---------------------------------------------------------------------------------------

    def push_reply(self, kind: PushKind) -> PushReply:
        return PUSH_REPLY

    def parse_receipt_push(self, body: bytes, content_type: str) -> Sequence[Receipt]:
        """One receipt per form post, found by ``smsid``."""
        form = form_body(self.name, body)
        code, status = form.get("code", "").strip(), form.get("msg", "").strip()
        state = receipt_state(code, RECEIPT_STATES, RECEIPT_OTHER)
        if state is not DeliveryState.DELIVERED and state is not DeliveryState.UNKNOWN:
            state = FAILURE_STATES.get(status, state)
        receipt = Receipt(
            provider=self.name,
            phone=required(self.name, form, "mobilephone"),
            state=state,
            code=status or code,
            vendor_id=required(self.name, form, "smsid"),
            at=form.get("report_time", ""),
            raw=form,
        )
        return (receipt,)

    def parse_inbound_push(self, body: bytes, content_type: str) -> Sequence[InboundMessage]:
        """One reply per form post."""
        form = form_body(self.name, body)
        reply = InboundMessage(
            provider=self.name,
            phone=required(self.name, form, "mobilephone"),
            content=form.get("content", ""),
            at=form.get("reply_time", ""),
            raw=form,
        )
        return (reply,)

    # -- helpers ------------------------------------------------------------------------------------

    def _submit_form(self, phone: str, content: str) -> dict[str, str]:
        form = {
            "account": self.settings.account,
            "password": self._api_key,
            "mobile": phone,
            "content": content,
            "format": "json",
        }
        return self._signed(form)

    def _signed(self, form: Mapping[str, str]) -> dict[str, str]:
        """``form`` with a dynamic password for now (Submit's when it has a mobile, GetNum's otherwise), or
        as it is when the settings use the APIKEY itself."""
        signed = dict(form)
        if self.settings.dynamic_password:
            at = self._time()
            account, key = self.settings.account, self._api_key
            signed["time"] = at
            signed["password"] = (
                submit_password(account, key, form["mobile"], form["content"], at)
                if "mobile" in form
                else balance_password(account, key, at)
            )
        return signed

    def _time(self) -> str:
        return str(int(self._clock()))

    def _call(self, method: str, form: Mapping[str, str]) -> HttpCall:
        return HttpCall(self.settings.base_url + PATH, data=form, params={"method": method})

    def _error(self, code: str, text: str, answer: Any) -> ProviderError:
        return classify(self.name, code, text, CODES, answer, retry_after_s=RETRY_AFTER_S.get(code))


def _code_of(response: httpx.Response) -> str | None:
    """The answer's ``code``, or None when it has none we can read (then ``_parse`` says why)."""
    try:
        return vendor_code(decode_json(response.content), "code")
    except ValueError:
        return None


def _accepted(phone: str, answer: dict[str, Any], message: str) -> RecipientOutcome:
    """The outcome of a ``code: 2``. ``smsid`` is "0" or missing only on failure, per the document; a
    success without one can never be matched to a receipt: still accepted (the vendor took it), with code
    ``NO_SMSID``; the settle sweep fails it with ``NO_RECEIPT`` after the vendor's settle window."""
    smsid = identifier(answer.get("smsid"))
    if smsid is None or smsid == "0":
        return RecipientOutcome(phone, True, "", NO_SMSID, message or "accepted without a smsid")
    return RecipientOutcome(phone, True, smsid, SUCCESS, message)


VENDOR = VendorDescriptor(
    name="ihuyi",
    provider=IhuyiProvider,
    settings=IhuyiSettings,
    simulator="providers.simulator.ihuyi",
    demo_credentials={"account": "C00000001", "api_key": "demo-ihuyi-api-key"},
    codes=CODES,
    code_field="code",
)
