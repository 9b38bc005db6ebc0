"""Infocloud (经分助手) adapter: message/send, message/sendBatch, receipt pull, balance.

Vendor document: shared/seeds/004_f36aac20ad5cfd9d.txt. Quirks worth knowing:
- The signature covers every body field *and* the x-* headers (except x-sign), sorted by key, empty
  values left out, joined as ``k=v&k=v`` with raw (not URL-encoded) values; lowercase hex HMAC keyed
  with the AccessKey. ``templateParam`` is a JSON array *encoded as a string* inside the JSON body.
- One ``msgId`` per call (not per phone), and its presence is the sign the batch was taken: a code 200
  without one is unreadable (ambiguous: never resent). ``failPhones`` lists the phones the vendor
  refused: a comma-separated string in the document, also read as a JSON list of strings.
- Query endpoints (receipts, statistics) allow 3 calls a minute per enterprise; a receipt is returned
  once only, at most 600 per call. Balance at most once every 15 s.
- Pushes (短信回执状态推送, 短信上行报告推送): JSON ``{"apiKey", "data": [...]}``, receipts with
  ``arriveResult`` (the pull says ``arrive``), replies (MO, push-only) ``{srcId, tel, content,
  arriveTime}``. The ``apiKey`` is the only proof a push is the vendor's. The receiver must answer within
  1 s (three slow answers in a row and the vendor stops pushing); the document names no answer body, so
  we answer HTTP 200 with the shape of its own answers, ``{"code":200,"message":"OK"}``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Generator, Mapping, Sequence
from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field, SecretStr

from config.sections import Interval, VendorSettings
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
)
from providers.descriptor import VendorDescriptor
from providers.errors import (
    BalanceError,
    ConfigError,
    MalformedPush,
    ProviderError,
    RateLimitedError,
    RequestRejectedError,
    TransientError,
)
from providers.pushes import PushKind, PushReply, items, json_body, malformed, required
from providers.reading import Unreadable, number, text


class InfocloudSettings(VendorSettings):
    """``SMSD_INFOCLOUD__*``. Times in seconds."""

    base_url: str = "https://opassapi.infocloud.com.cn"
    api_key: SecretStr = Field(SecretStr(""), description="the apiKey, sent as x-api-key (credential)")
    access_key: SecretStr = Field(SecretStr(""), description="the key requests are signed with (credential)")
    sign_method: Literal["HmacSHA256", "HmacMD5", "HmacSHA1", "HmacSHA224", "HmacSHA384", "HmacSHA512"] = (
        Field("HmacSHA256", description="the HMAC the requests are signed with (x-sign-method)")
    )
    batch_size: int = Field(1000, ge=1, le=1000)
    requests_per_second: float = Field(300.0, ge=0.01, le=1_000_000)
    query_per_minute: int = Field(3, ge=1, le=1_000_000, description="receipt/statistics queries per minute")
    # Three queries a minute: poll every 21 s so that each minute's three slots are used (a 60 s beat
    # against a 60 s window skipped whole minutes), within the margin tasks.poll keeps over the window.
    receipt_poll_interval_s: Interval = 21.0
    # residueValue/qry: at most once every 15 s (the vendor's rule; the poll also holds it in Redis).
    balance_poll_interval_s: float = Field(60.0, ge=15.0, le=86400)
    receipt_page_size: int = Field(600, ge=1, le=600)

    def credential_fields(self) -> tuple[str, ...]:
        return ("api_key", "access_key")


SIGN_METHODS: Mapping[str, Any] = {
    "HmacMD5": hashlib.md5,
    "HmacSHA1": hashlib.sha1,
    "HmacSHA224": hashlib.sha224,
    "HmacSHA256": hashlib.sha256,
    "HmacSHA384": hashlib.sha384,
    "HmacSHA512": hashlib.sha512,
}

# Every code in the document's 返回码说明 table. 60007 and 60009 have no number in the table (the
# document omits them); their places in the sequence are inferred. 60009 (短信资源被锁定) is, per the
# FAQ, occasional and to be retried.
CODES: Mapping[str, type[ProviderError]] = {
    "-1": TransientError,  # 系统繁忙
    "2000": ConfigError,  # IP白名单限制
    "2001": ConfigError,  # API授权错误
    "6000": RateLimitedError,  # 访问频繁
    "40002": BalanceError,  # 余额不足
    "40004": RequestRejectedError,  # 参数错误
    "40005": RequestRejectedError,  # 超出模板参数设置限制
    "40006": ConfigError,  # 扩展号不匹配或者被企业其他账号占用
    "60001": RequestRejectedError,  # 模板不存在
    "60002": RequestRejectedError,  # 批量发送下电话数量和参数数量不一样
    "60003": RequestRejectedError,  # 短信变量个数和模板变量个数不一样
    "60004": RequestRejectedError,  # 变量值超过模板设置的变量值最大长度
    "60005": RequestRejectedError,  # 没有可以发送的内容
    "60006": RequestRejectedError,  # 模板参数变量格式错误
    "60007": RequestRejectedError,  # 手机号参数格式错误
    "60008": RequestRejectedError,  # 手机号数量大于1000
    "60009": TransientError,  # 短信资源被锁定
}
SUCCESS = "200"
DELIVERED = "DELIVRD"
# The receipt's ``arrive``: "除DELIVRD外，其他都是未送达" (every value but DELIVRD is not delivered). Each
# receipt comes once only, so that is the vendor's final word: the values VENDORS.md lists map to their
# normalized kind, and any other status string to UNDELIVERED as the document says (even "UNKNOWN": no
# later receipt will tell more). A missing or non-string ``arrive`` is no verdict (UNKNOWN).
RECEIPT_STATES: Mapping[str, DeliveryState] = {
    DELIVERED: DeliveryState.DELIVERED,
    "UNDELIV": DeliveryState.UNDELIVERED,
    "DELETED": DeliveryState.UNDELIVERED,
    "ACCEPTD": DeliveryState.UNDELIVERED,
    "UNKNOWN": DeliveryState.UNDELIVERED,
    "EXPIRED": DeliveryState.EXPIRED,
    "REJECTD": DeliveryState.REJECTED,
}
RECEIPT_OTHER = DeliveryState.UNDELIVERED
PUSH_REPLY = PushReply(b'{"code":200,"message":"OK"}', "application/json")


def canonical_string(fields: Mapping[str, Any]) -> str:
    """The string Infocloud signs: fields sorted by key, empty values left out, ``k=v`` joined by ``&``."""
    return "&".join(
        f"{key}={value}" for key, value in sorted(fields.items()) if key and value not in (None, "")
    )


def sign(text: str, access_key: str, method: str) -> str:
    """Lowercase hex HMAC of ``text`` keyed with the AccessKey, by one of the six documented methods."""
    try:
        digest = SIGN_METHODS[method]
    except KeyError:
        raise ValueError(f"x-sign-method {method!r} is not one of {', '.join(SIGN_METHODS)}") from None
    return hmac.new(access_key.encode(), text.encode(), digest).hexdigest()


def new_nonce() -> str:
    """16 random digits: the vendor wants at least 10, unique within its replay window."""
    return str(10**15 + secrets.randbelow(9 * 10**15))


class InfocloudAuth(httpx.Auth):
    """Adds x-api-key, x-sign-method, x-nonce, x-timestamp and x-sign to a JSON request."""

    requires_request_body = True

    def __init__(self, api_key: str, access_key: str, method: str = "HmacSHA256") -> None:
        if method not in SIGN_METHODS:
            raise ValueError(f"x-sign-method {method!r} is not one of {', '.join(SIGN_METHODS)}")
        self._api_key = api_key
        self._access_key = access_key
        self._method = method

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        body = json.loads(request.content) if request.content else {}
        headers = {
            "x-api-key": self._api_key,
            "x-sign-method": self._method,
            "x-nonce": new_nonce(),
            "x-timestamp": str(int(time.time() * 1000)),
        }
        headers["x-sign"] = sign(canonical_string({**body, **headers}), self._access_key, self._method)
        request.headers.update(headers)
        yield request


class InfocloudProvider(Provider):
    name: ClassVar[str] = "infocloud"
    capabilities: ClassVar[Capabilities] = Capabilities(batch_size=1000, per_recipient_params=True)

    def __init__(self, settings: InfocloudSettings, client: httpx.Client) -> None:
        super().__init__(client)
        self.settings = settings
        self.batch_size = settings.batch_size
        self._auth = InfocloudAuth(
            settings.api_key.get_secret_value(), settings.access_key.get_secret_value(), settings.sign_method
        )

    # -- send (the hooks of ``Provider.send``) --------------------------------------------------------

    def _build(self, request: SendRequest) -> HttpCall:
        template = request.template
        if request.per_recipient is not None:
            body = {
                "phonesJson": _json(list(request.phones)),
                "templateCode": template.vendor_template,
                "templateParamJson": _json([list(t.params) for t in request.per_recipient]),
            }
            path = "/message/sendBatch"
        else:
            body = {"phones": ",".join(request.phones), "templateCode": template.vendor_template}
            if template.params:
                body["templateParam"] = _json(list(template.params))
            path = "/message/send"
        if request.bid:
            body["bid"] = request.bid[:64]
        return self._signed(path, body)

    def _parse(self, response: httpx.Response, request: SendRequest) -> SendResult:
        """Code 200 with a ``msgId``: every phone accepted under it, but those ``failPhones`` names."""
        answer = self._answer(response)
        data = answer.get("data")
        if not isinstance(data, dict):
            raise Unreadable("code 200 without a data object", answer)
        # "data.msgId ... 该值不为空，说明平台已经接收提交的短信任务": a msgId that is not empty is the
        # document's sign that the batch was taken. Without one (or with one that is not a string) we cannot
        # tell what the vendor did: unreadable, so ambiguous on HTTP 2xx (never resent; the receipts, which
        # carry our bid, or the settle sweep decide).
        msg_id = _msg_id(data)
        if msg_id is None:
            raise Unreadable("code 200 without a msgId", answer)
        refused = _fail_phones(data.get("failPhones"))
        if refused is None:
            raise Unreadable("failPhones is neither a comma-separated string nor a list of strings", answer)
        desc = text(data.get("desc")).strip()
        why = desc if desc not in ("", "null") else "refused by the vendor"
        outcomes = tuple(
            RecipientOutcome(phone, False, msg_id, "FAIL_PHONE", why)
            if phone in refused
            else RecipientOutcome(phone, True, msg_id, SUCCESS)
            for phone in request.phones
        )
        return SendResult(self.name, outcomes, batch_id=msg_id, raw=answer)

    # -- queries --------------------------------------------------------------------------------------

    def poll_receipts(self) -> Sequence[Receipt]:
        """One page (at most 600) of receipts not returned before. Counts against 3 queries a minute."""
        return self._query(self._signed("/sms/arriveRes/qry", {}), self._receipts)

    def _receipts(self, response: httpx.Response) -> tuple[Receipt, ...]:
        answer = self._answer(response)
        items = answer.get("data")
        if items is None:  # nothing new
            return ()
        if not isinstance(items, list):
            raise Unreadable("data is not a list of receipts", answer)
        return tuple(
            Receipt(
                provider=self.name,
                phone=text(item.get("tel")),
                state=receipt_state(item.get("arrive"), RECEIPT_STATES, RECEIPT_OTHER),
                code=text(item.get("arrive")),
                batch_id=text(item.get("msgId")),
                bid=text(item.get("bid")),
                at=text(item.get("arriveTime")),
                raw=item,
            )
            for item in items
            if isinstance(item, dict)
        )

    def balance(self) -> Sequence[Balance]:
        """Messages left per category (行业短信, 会员短信, 推广短信). At most once every 15 s."""
        return self._query(self._signed("/sms/residueValue/qry", {}), self._balances)

    def _balances(self, response: httpx.Response) -> tuple[Balance, ...]:
        answer = self._answer(response)
        items = answer.get("data")
        if not isinstance(items, list):
            raise Unreadable("data is not a list of balances", answer)
        balances = []
        for item in items:
            value = number(item.get("residueValue")) if isinstance(item, dict) else None
            if value is None:  # NaN, Infinity, "lots", a list: no reading at all rather than a wrong one
                raise Unreadable("a residueValue is not a finite number", answer)
            balances.append(Balance(self.name, text(item.get("itemName")), value, raw=item))
        return tuple(balances)

    # -- pushes ---------------------------------------------------------------------------------------

    def push_signed(self, body: bytes, content_type: str) -> bool:
        """True when the push's ``apiKey`` is ours (compared in constant time). A body that is not a JSON
        object holding a string ``apiKey`` is ``MalformedPush``."""
        pushed = json_body(self.name, body)
        given = pushed.get("apiKey") if isinstance(pushed, dict) else None
        if not isinstance(given, str):
            raise malformed(self.name, "no apiKey string in a JSON object")
        ours = self.settings.api_key.get_secret_value().encode()
        return bool(ours) and hmac.compare_digest(given.encode("utf-8", "replace"), ours)

    def push_kept(self, body: bytes, content_type: str) -> bytes:
        """The push without its ``apiKey`` (our credential, checked by :meth:`push_signed`); the parsers
        read only ``data``. A body that is not JSON is kept as it came: the parser will refuse it."""
        try:
            pushed = json_body(self.name, body)
        except MalformedPush:
            return body
        if not isinstance(pushed, dict) or "apiKey" not in pushed:
            return body
        del pushed["apiKey"]
        return json.dumps(pushed).encode()

    def push_reply(self, kind: PushKind) -> PushReply:
        return PUSH_REPLY

    def parse_receipt_push(self, body: bytes, content_type: str) -> Sequence[Receipt]:
        """``{"apiKey", "data": [{msgId, tel, arriveResult, arriveTime, bid}]}``: found by our ``bid``
        or by ``msgId`` and ``tel``."""
        found = []
        for item in self._push_items(body):
            status = item.get("arriveResult", item.get("arrive"))
            found.append(
                Receipt(
                    provider=self.name,
                    phone=required(self.name, item, "tel"),
                    state=receipt_state(status, RECEIPT_STATES, RECEIPT_OTHER),
                    code=text(status),
                    batch_id=text(item.get("msgId")),
                    bid=text(item.get("bid")),
                    at=text(item.get("arriveTime")),
                    raw=item,
                )
            )
        if any(not (r.batch_id or r.bid) for r in found):
            raise malformed(self.name, "a receipt with neither msgId nor bid")
        return tuple(found)

    def parse_inbound_push(self, body: bytes, content_type: str) -> Sequence[InboundMessage]:
        """``{"apiKey", "data": [{srcId, tel, content, arriveTime}]}``; ``srcId`` (our access number and
        any extension) is kept as ``ext``."""
        return tuple(
            InboundMessage(
                provider=self.name,
                phone=required(self.name, item, "tel"),
                content=text(item.get("content")),
                at=text(item.get("arriveTime")),
                ext=text(item.get("srcId")),
                raw=item,
            )
            for item in self._push_items(body)
        )

    def _push_items(self, body: bytes) -> list[Any]:
        pushed = json_body(self.name, body)
        if not isinstance(pushed, dict):
            raise malformed(self.name, "not a JSON object")
        data = pushed.get("data")
        return [] if data is None else list(items(self.name, data))

    # -- shared ---------------------------------------------------------------------------------------

    def _signed(self, path: str, body: Mapping[str, str]) -> HttpCall:
        return HttpCall(self.settings.base_url + path, json=body, auth=self._auth)

    def _answer(self, response: httpx.Response) -> dict[str, Any]:
        """The answer of a call that succeeded (code 200), or the vendor's error from ``CODES``."""
        code, answer = self._coded_json(response, "code")
        if code != SUCCESS:
            message = text(answer.get("message")) or text(answer.get("msg"))
            raise classify(self.name, code, message, CODES, answer)
        return answer


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _msg_id(data: dict[str, Any]) -> str | None:
    """The batch's ``msgId`` (sendBatch's table spells it ``msgid``, its example ``msgId``): a non-blank
    string, else None."""
    for value in (data.get("msgId"), data.get("msgid")):
        if isinstance(value, str) and value.strip():
            return text(value).strip()  # a lone surrogate ("\udfff" in the JSON) made writable
    return None


def _fail_phones(value: Any) -> frozenset[str] | None:
    """The phones ``failPhones`` names: a comma-separated string as the document shows, or a JSON list of
    strings; null, ``""`` and ``"null"`` name none. None when it is anything else: we cannot tell which
    phones were refused."""
    if value is None or value == "null":
        return frozenset()
    if isinstance(value, str):
        parts: list[Any] = value.split(",")
    elif isinstance(value, list) and all(isinstance(part, str) for part in value):
        parts = value
    else:
        return None
    return frozenset(part.strip() for part in parts if part.strip())


VENDOR = VendorDescriptor(
    name="infocloud",
    provider=InfocloudProvider,
    settings=InfocloudSettings,
    simulator="providers.simulator.infocloud",
    demo_credentials={"api_key": "demo-infocloud-api-key", "access_key": "demo-infocloud-access-key"},
    codes=CODES,
    code_field="code",
    refused_code="FAIL_PHONE",
)
