"""Infocloud (经分助手) adapter: message/send, message/sendBatch, receipt pull, balance.

Vendor document: shared/seeds/004_f36aac20ad5cfd9d.txt. Quirks worth knowing:
- The signature covers every body field *and* the x-* headers (except x-sign), sorted by key, empty
  values left out, joined as ``k=v&k=v`` with raw (not URL-encoded) values; lowercase hex HMAC keyed
  with the AccessKey. ``templateParam`` is a JSON array *encoded as a string* inside the JSON body.
- One ``msgId`` per call (not per phone); ``failPhones`` lists the phones the vendor refused.
- Query endpoints (receipts, statistics) allow 3 calls a minute per enterprise; a receipt is returned
  once only, at most 600 per call. Balance at most once every 15 s.
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


class InfocloudSettings(VendorSettings):
    """``SMSD_INFOCLOUD__*``. Times in seconds."""

    base_url: str = "https://opassapi.infocloud.com.cn"
    api_key: SecretStr = SecretStr("")
    access_key: SecretStr = SecretStr("")
    sign_method: Literal["HmacSHA256", "HmacMD5", "HmacSHA1", "HmacSHA224", "HmacSHA384", "HmacSHA512"] = (
        "HmacSHA256"
    )
    batch_size: int = Field(1000, ge=1, le=1000)
    requests_per_second: float = Field(300.0, ge=0.01, le=1_000_000)
    query_per_minute: int = Field(3, ge=1, le=1_000_000, description="receipt/statistics queries per minute")
    # Three queries a minute: poll every 21 s so that each minute's three slots are used (a 60 s beat
    # against a 60 s window skipped whole minutes), within the margin tasks.poll keeps over the window.
    receipt_poll_interval_s: Interval = 21.0
    balance_interval_s: float = Field(15.0, ge=15.0, le=86400)
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

    def send(self, request: SendRequest) -> SendResult:
        if len(request.phones) > self.batch_size:
            raise RequestRejectedError(
                f"infocloud: {len(request.phones)} phones in one call, at most {self.batch_size}",
                provider=self.name,
                code="60008",
            )
        path, body = self._send_body(request)
        answer, response = self._call(path, body)
        data = answer.get("data") or {}
        if not isinstance(data, dict):
            raise self.malformed(response)
        msg_id = str(data.get("msgId") or data.get("msgid") or "")
        refused = _split_phones(data.get("failPhones"))
        desc = str(data.get("desc") or "")
        outcomes = tuple(
            RecipientOutcome(phone, False, msg_id, "FAIL_PHONE", desc or "refused by the vendor")
            if phone in refused
            else RecipientOutcome(phone, True, msg_id, SUCCESS)
            for phone in request.phones
        )
        return SendResult(self.name, outcomes, batch_id=msg_id, raw=answer)

    def _send_body(self, request: SendRequest) -> tuple[str, dict[str, str]]:
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
        return path, body

    def poll_receipts(self) -> Sequence[Receipt]:
        """One page (at most 600) of receipts not returned before. Counts against 3 queries a minute."""
        answer, response = self._call("/sms/arriveRes/qry", {})
        items = answer.get("data") or []
        if not isinstance(items, list):
            raise self.malformed(response)
        return tuple(
            Receipt(
                provider=self.name,
                phone=str(item.get("tel", "")),
                state=DeliveryState.DELIVERED if item.get("arrive") == DELIVERED else DeliveryState.FAILED,
                code=str(item.get("arrive", "")),
                batch_id=str(item.get("msgId", "")),
                bid=str(item.get("bid") or ""),
                at=str(item.get("arriveTime", "")),
                raw=item,
            )
            for item in items
            if isinstance(item, dict)
        )

    def balance(self) -> Sequence[Balance]:
        answer, _ = self._call("/sms/residueValue/qry", {})
        return tuple(
            Balance(self.name, str(item.get("itemName", "")), float(item.get("residueValue", 0)), raw=item)
            for item in answer.get("data") or ()
        )

    def _call(self, path: str, body: Mapping[str, str]) -> tuple[dict[str, Any], httpx.Response]:
        response = self._post(self.settings.base_url + path, json=body, auth=self._auth)
        code, answer = self._coded_json(response, "code")
        if code != SUCCESS:
            text = str(answer.get("message") or answer.get("msg") or "")
            raise classify(self.name, code, text, CODES, answer)
        return answer, response


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _split_phones(value: Any) -> frozenset[str]:
    if not value or value == "null":
        return frozenset()
    return frozenset(p.strip() for p in str(value).split(",") if p.strip())

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
