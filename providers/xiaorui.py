"""Xiaorui (小睿) adapter: smssend, smsreport (receipts), smsmo (replies), smsoverage (balance).

Vendor document: shared/seeds/001_ea7bf1fee9755f8a.txt. Calls go through the Tencent Cloud market API
gateway (``providers/market_gateway.py``); the vendor's own account and password travel in every
form-encoded body with ``rt=json``. Quirks worth knowing:
- Content-based: ``content`` is the rendered text (UTF-8), no template id.
- ``mobile`` is comma-separated, at most 500 ("最多500个号码"), yet code 102 says "单次提交的号码数过多
  (建议200以内)"; we never send more than ``batch_size`` (≤ 500) and refuse larger chunks ourselves.
- One ``mid`` per phone in ``list`` with a per-phone ``result`` (0 = accepted).
- ``status`` is a string in some answers (``"0"``) and a number in others (smsoverage: ``0``).
- The inbound (MO) page-size field is spelled ``szie`` (10–1000); the receipt one ``size`` (10–10000).
- The document does not say which ``stat`` means delivered; its example shows ``MA:0029`` (a gateway
  error). We read the CMPP values (``DELIVRD`` delivered, ``UNDELIV``, ``EXPIRED``, ...) and gateway error
  codes (``MA:0029``: undelivered) through ``RECEIPT_STATES``; anything else is unknown.
"""

from __future__ import annotations

import re
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
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
    AmbiguousError,
    ConfigError,
    ProviderError,
    RequestRejectedError,
    TransientError,
)
from providers.market_gateway import MarketGatewayAuth, gateway_error
from providers.reading import Unreadable, identifier, number, text


class XiaoruiSettings(VendorSettings):
    """``SMSD_XIAORUI__*``: the market gateway's SecretId/SecretKey and the vendor account. Times in s."""

    base_url: str = "https://service-xiaorui.market.tencentcloudapi.example"
    secret_id: SecretStr = Field(SecretStr(""), description="the market API gateway's SecretId (credential)")
    secret_key: SecretStr = Field(SecretStr(""), description="the gateway's SecretKey (credential)")
    account: SecretStr = Field(SecretStr(""), description="the vendor account (credential)")
    password: SecretStr = Field(SecretStr(""), description="the vendor account's password (credential)")
    batch_size: int = Field(500, ge=1, le=500)
    receipt_page_size: int = Field(1000, ge=10, le=10000)  # smsreport ``size`` (its default)
    extno: str = Field("", description="the extension (接入号) the vendor assigned, if any: digits")

    def credential_fields(self) -> tuple[str, ...]:
        return ("secret_id", "secret_key", "account", "password")


# Every code of the document's 返回码定义 table (the same table on all four endpoints).
CODES: Mapping[str, type[ProviderError]] = {
    "1": RequestRejectedError,  # 消息包格式错误: our request is malformed; resending it fails the same way
    "2": ConfigError,  # IP鉴权错误: our egress IP is not whitelisted
    "3": ConfigError,  # 账号密码不正确
    "4": ConfigError,  # 版本号错误: protocol version; no request of ours can succeed until fixed
    "5": RequestRejectedError,  # 其它错误: unexplained; not retried, as for any code we cannot interpret
    "6": ConfigError,  # 接入点错误(如账户本身开的是CMPP接入): the account is set up for another protocol
    "7": ConfigError,  # 账号状态异常(账号已停用)
    "21": TransientError,  # 连接过多: too many concurrent connections, retry with backoff
    # 100 系统内部错误, "e.g. a China Telecom number but no Telecom outlet on the account" or "模板不匹配
    # (短信内容提交失败,请联系管理员进行配置)": both examples fail the same way on resend (this content or
    # carrier is not configured); other numbers and texts still go through, so not a ConfigError.
    "100": RequestRejectedError,
    "102": RequestRejectedError,  # 单次提交的号码数过多: a bug of ours (we cap the batch), never retried
}
MESSAGES: Mapping[str, str] = {
    "0": "鉴权成功",
    "1": "消息包格式错误",
    "2": "IP鉴权错误",
    "3": "账号密码不正确",
    "4": "版本号错误",
    "5": "其它错误",
    "6": "接入点错误",
    "7": "账号状态异常",
    "21": "连接过多",
    "100": "系统内部错误",
    "102": "单次提交的号码数过多",
}
SUCCESS = "0"
DELIVERED = "DELIVRD"
# The receipt's ``stat``. The document names no value but its example's ``MA:0029``; the CMPP words are
# read as CMPP means them, and a gateway error code (two letters, a colon, four digits: ``MA:0029``) is a
# final failure, as in CMPP. Any other value (``UNKNOWN``, empty, new words) is no verdict.
RECEIPT_STATES: Mapping[str, DeliveryState] = {
    DELIVERED: DeliveryState.DELIVERED,
    "UNDELIV": DeliveryState.UNDELIVERED,
    "DELETED": DeliveryState.UNDELIVERED,
    "EXPIRED": DeliveryState.EXPIRED,
    "REJECTD": DeliveryState.REJECTED,
    "UNKNOWN": DeliveryState.UNKNOWN,
}
_GATEWAY_ERROR = re.compile(r"[A-Z]{2}:[0-9]{4}")
MAX_PHONES = 500
RECEIPT_PAGE = (10, 10000)  # smsreport ``size``: default 1000
INBOUND_PAGE = (10, 1000)  # smsmo ``szie``: default 1000


class XiaoruiProvider(Provider):
    name: ClassVar[str] = "xiaorui"
    capabilities: ClassVar[Capabilities] = Capabilities(batch_size=MAX_PHONES, template_based=False)

    def __init__(
        self,
        settings: XiaoruiSettings,
        client: httpx.Client,
        *,
        receipt_page: int = 1000,
        inbound_page: int = 1000,
    ) -> None:
        super().__init__(client)
        _check_range("receipt_page", receipt_page, RECEIPT_PAGE)
        _check_range("inbound_page", inbound_page, INBOUND_PAGE)
        self.settings = settings
        self.batch_size = min(settings.batch_size, MAX_PHONES)
        self.receipt_page = receipt_page
        self.inbound_page = inbound_page
        self._auth = MarketGatewayAuth.from_secrets(settings.secret_id, settings.secret_key)

    # -- send (the hooks of ``Provider.send``) --------------------------------------------------------

    def _check(self, request: SendRequest) -> None:
        if not request.template.text:
            raise RequestRejectedError("xiaorui: empty content", provider=self.name, code="1")

    def _build(self, request: SendRequest) -> HttpCall:
        fields = {"mobile": ",".join(request.phones), "content": request.template.text}
        return self._call("/release/smssend", {**fields, "extno": self.settings.extno})

    def _parse(self, response: httpx.Response, request: SendRequest) -> SendResult:
        answer = self._answer(response)
        items = answer.get("list")
        if not isinstance(items, list) or not items:
            # status 0 says the vendor took the call, but without per-phone results we cannot tell who.
            raise AmbiguousError(
                "xiaorui: status 0 without a per-phone list", provider=self.name, code="NO_LIST", raw=answer
            )
        return SendResult(self.name, _outcomes(request.phones, items), raw=answer)

    # -- queries --------------------------------------------------------------------------------------

    def poll_receipts(self) -> Sequence[Receipt]:
        """Receipts not returned before (each comes once only), at most ``receipt_page`` per call."""
        call = self._call("/release/smsreport", {"size": str(self.receipt_page)})
        return self._query(call, lambda response: tuple(map(_receipt, self._items(response))))

    def poll_inbound(self) -> Sequence[InboundMessage]:
        """Replies (MO) not returned before, at most ``inbound_page`` per call."""
        # The document spells the page-size field "szie" (sic); "size" is not what it reads here.
        call = self._call("/release/smsmo", {"action": "mo", "szie": str(self.inbound_page)})
        return self._query(call, lambda response: tuple(map(_inbound, self._items(response))))

    def balance(self) -> Sequence[Balance]:
        """The account balance; negative on a post-paid (``POSTCHARGE``) account, as in the document."""
        return self._query(self._call("/release/smsoverage", {"action": "balance"}), self._balance)

    def _balance(self, response: httpx.Response) -> tuple[Balance]:
        answer = self._answer(response)
        value = number(answer.get("balance"))
        if value is None:  # missing, NaN, Infinity, "lots": no reading at all rather than a wrong one
            raise Unreadable("balance is not a finite number", answer)
        return (Balance(self.name, text(answer.get("chargeType")) or "balance", value, raw=answer),)

    # -- shared ---------------------------------------------------------------------------------------

    def _call(self, path: str, fields: Mapping[str, str]) -> HttpCall:
        body = {
            "account": self.settings.account.get_secret_value(),
            "password": self.settings.password.get_secret_value(),
            "rt": "json",
            **fields,
        }
        return HttpCall(self.settings.base_url + path, data=body, auth=self._auth)

    def _answer(self, response: httpx.Response) -> dict[str, Any]:
        """The answer of a call that succeeded (status 0); the gateway's refusal, or the vendor's error."""
        if (refused := gateway_error(self.name, response)) is not None:
            raise refused
        # ``status`` comes as "0" or 0; an answer without one is as unreadable as a body that is not JSON.
        code, answer = self._coded_json(response, "status")
        if code != SUCCESS:
            raise classify(self.name, code, MESSAGES.get(code, ""), CODES, answer)
        return answer

    def _items(self, response: httpx.Response) -> list[dict[str, Any]]:
        """The answer's ``list``; ``null`` or ``[]`` means nothing new (the document's own example)."""
        answer = self._answer(response)
        items = answer.get("list")
        if items is None:
            return []
        if not isinstance(items, list):
            raise Unreadable("list is not a list", answer)
        return [item for item in items if isinstance(item, dict)]


def _outcomes(phones: Sequence[str], items: list[Any]) -> tuple[RecipientOutcome, ...]:
    """One outcome per phone we sent, matched by ``mobile`` (in order, should a phone repeat)."""
    by_phone: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
    for item in items:
        if isinstance(item, dict):
            by_phone[text(item.get("mobile"))].append(item)
    outcomes = []
    for phone in phones:
        if not by_phone[phone]:
            # Absent from an accepted call's list: recorded as failed, never resent (it may have gone out).
            outcomes.append(RecipientOutcome(phone, False, code="NO_RESULT", text="not in the vendor's list"))
            continue
        item = by_phone[phone].popleft()
        result = vendor_code(item, "result")
        mid = identifier(item.get("mid")) or ""
        if result is None:  # an accepted call, but this phone's result is unreadable: failed, never resent
            outcomes.append(RecipientOutcome(phone, False, mid, "MALFORMED", "unreadable per-phone result"))
        elif result == SUCCESS:
            outcomes.append(RecipientOutcome(phone, True, mid, result))
        else:
            outcomes.append(RecipientOutcome(phone, False, mid, result, MESSAGES.get(result, "refused")))
    return tuple(outcomes)


def _receipt(item: dict[str, Any]) -> Receipt:
    stat = text(item.get("stat")).strip()
    other = DeliveryState.UNDELIVERED if _GATEWAY_ERROR.fullmatch(stat) else DeliveryState.UNKNOWN
    return Receipt(
        provider=XiaoruiProvider.name,
        phone=text(item.get("mobile")),
        state=receipt_state(stat, RECEIPT_STATES, other),
        code=stat,
        vendor_id=text(item.get("mid")),
        at=text(item.get("time")),
        raw=item,
    )


def _inbound(item: dict[str, Any]) -> InboundMessage:
    return InboundMessage(
        provider=XiaoruiProvider.name,
        phone=text(item.get("mobile")),
        content=text(item.get("content")),
        at=text(item.get("time")),
        ext=text(item.get("accessCode")),
        raw=item,
    )


def _check_range(name: str, value: int, bounds: tuple[int, int]) -> None:
    if not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{name} must be within {bounds[0]}..{bounds[1]}, not {value}")


VENDOR = VendorDescriptor(
    name="xiaorui",
    provider=XiaoruiProvider,
    settings=XiaoruiSettings,
    simulator="providers.simulator.xiaorui",
    demo_credentials={
        "secret_id": "AKIDdemoxiaorui",
        "secret_key": "demo-xiaorui-secret-key",
        "account": "demo-xiaorui",
        "password": "demo-xiaorui-password",
    },
    codes=CODES,
    code_field="status",
    refused_code="1",
)
