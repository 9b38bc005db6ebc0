"""Tencent Cloud SMS v5 simulator: v5/tlssmssvr/sendsms and v5/tlssmssvr/pullstatus.

Behaves as shared/seeds/002_88bc9a7ff6b0f320.txt and the v5 pages digested in shared/VENDORS.md
describe: checks ``sdkappid``, the sha256 ``sig`` over AppKey, random, time (and mobile for sendsms),
``time`` within 10 minutes, one number a call, the template id and the approved signature, and enforces
the per-number caps with Tencent's console defaults (1 per 30 s -> 1023, 5 per hour -> 1024, 10 per
Beijing day -> 1025). Tencent's own SDK (``qcloudsms_py``) is accepted as is. Receipts are the callback
items ``{user_receive_time, nationcode, mobile, report_status, errmsg, description, sid}``, pulled once
each, at most 100 a call, or, with a push URL (``SimConfig.push_urls``), sent as callbacks: receipts as a
JSON array, each reply queued with ``/_sim/inbound`` as one object.

Codes not in our documents, used where the documents give none: 1004 (body is not JSON).
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from config.settings import Settings
from providers.simulator.core import Answer, Refused, SimState, sent_today, serve
from providers.simulator.pusher import PushBody
from providers.tencent import (
    BEIJING,
    MAINLAND_CODE,
    PULL_MAX,
    PULL_PATH,
    SEND_PATH,
    TencentSettings,
    join_phone,
    signature,
    split_phone,
)

VENDOR = "tencent"
# What a credential that is not the one it was built with is answered:
# sig 校验失败: an unknown sdkappid or a sig the demo AppKey did not make.
BAD_CREDENTIAL = "1001"
TIME_WINDOW_S = 600  # "rejected if more than 10 minutes off"
# Per-number caps, Tencent's console defaults: (window in seconds, at most, code).
CAPS: tuple[tuple[float, int, str], ...] = ((30.0, 1, "1023"), (3600.0, 5, "1024"))
DAILY_CAP = 10  # per Beijing calendar day -> 1025
MESSAGES = {
    "1001": "sig 校验失败",
    "1004": "请求包解析失败",
    "1008": "请求下发短信超时",
    "1012": "签名格式错误或者签名未审批",
    "1014": "模版未审批或请求的内容与审核通过的模版内容不匹配",
    "1016": "手机号格式错误",
    "1021": "请求发起时间不正常",
    "1023": "单个手机号 30 秒内下发短信条数超过设定的上限",
    "1024": "单个手机号 1 小时内下发短信条数超过设定的上限",
    "1025": "单个手机号日下发短信条数超过设定的上限",
    "1031": "套餐包余量不足",
    "60008": "服务请求超时或 udp 丢包",
}


class TencentSim:
    def __init__(
        self, state: SimState, sdk_app_id: str, app_key: str, sign: str, balance: int = 10**9
    ) -> None:
        self.state = state
        self.sdk_app_id = sdk_app_id
        self.app_key = app_key
        self.sign = sign
        self.balance = balance
        self.clock: Callable[[], float] = time.time  # tests move it to cross the per-number windows

    def routes(self) -> list[Route]:
        return [
            Route(SEND_PATH, self._endpoint(self._send), methods=["POST"]),
            Route(PULL_PATH, self._endpoint(self._pull, send=False), methods=["POST"]),
        ]

    def _endpoint(
        self, handler: Callable[[dict[str, Any]], dict[str, Any]], send: bool = True
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            def process(raw: bytes) -> Answer:
                body = self._verify(request.query_params, raw, send)
                return _answer({"result": 0, **handler(body)})

            return await serve(self.state, VENDOR, request, process, _refusal, send=send)

        return endpoint

    def _verify(self, query: Any, raw: bytes, send: bool) -> dict[str, Any]:
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            raise Refused("1004") from None
        if not isinstance(body, dict):
            raise Refused("1004")
        random = str(query.get("random") or "")
        if query.get("sdkappid") != self.sdk_app_id or not random.isdigit():
            raise Refused("1001", "sdkappid or random missing or unknown")
        at = body.get("time")
        if not isinstance(at, int) or isinstance(at, bool) or abs(at - self.clock()) > TIME_WINDOW_S:
            raise Refused("1021")
        mobile = _signed_mobile(body.get("tel")) if send else None
        expected = signature(self.app_key, random, at, mobile)
        if not hmac.compare_digest(expected, str(body.get("sig") or "")):
            raise Refused("1001")
        return body

    # -- callbacks (pushes) -------------------------------------------------------------------------

    push_tries = 3

    def push_bodies(self, receipts: list[dict[str, Any]], replies: list[dict[str, Any]]) -> list[PushBody]:
        out: list[PushBody] = []
        if receipts:
            out.append(("receipts", json.dumps(receipts, ensure_ascii=False).encode(), "application/json"))
        for item in replies:
            body = json.dumps(self._reply(item), ensure_ascii=False).encode()
            out.append(("inbound", body, "application/json"))
        return out

    # -- endpoints ----------------------------------------------------------------------------------

    def _send(self, body: dict[str, Any]) -> dict[str, Any]:
        tel = body.get("tel")
        if not isinstance(tel, dict):  # a list of numbers is sendmultisms2's form, not sendsms's
            raise Refused("1016", "sendsms takes one number")
        nationcode, mobile = str(tel.get("nationcode") or ""), str(tel.get("mobile") or "")
        if not _valid_number(nationcode, mobile):
            raise Refused("1016")
        self._check_template(body)
        sign = str(body.get("sign") or "")
        if sign and sign != self.sign:
            raise Refused("1012")
        phone = join_phone(nationcode, mobile)
        self._admit(phone)
        sid = f"2019:{self.state.next_id():020d}"
        self.state.accept(VENDOR, [phone], lambda _, ok: _receipt(sid, nationcode, mobile, ok))
        return {"errmsg": "OK", "ext": str(body.get("ext") or ""), "fee": 1, "sid": sid}

    def _check_template(self, body: dict[str, Any]) -> None:
        tpl_id = body.get("tpl_id")
        if not isinstance(tpl_id, int) or isinstance(tpl_id, bool):
            raise Refused("1014", "tpl_id must be a number")
        known = self.state.config.known_templates
        if known and str(tpl_id) not in known:
            raise Refused("1014")
        params = body.get("params", [])
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            raise Refused("1014", "params must be a list of strings")

    def _admit(self, phone: str) -> None:
        """Check the balance and the per-number caps, then count the message (one lock, no leaks)."""
        now = self.clock()
        with self.state.lock:
            if self.balance < 1:
                raise Refused("1031")
            sent = self.state.phone_history(VENDOR, phone, now)
            for window_s, limit, code in CAPS:
                if sum(1 for t in sent if t > now - window_s) >= limit:
                    raise Refused(code)
            if sent_today(sent, now) >= DAILY_CAP:
                raise Refused("1025")
            sent.append(now)
            self.balance -= 1

    def _pull(self, body: dict[str, Any]) -> dict[str, Any]:
        kind, limit = body.get("type"), body.get("max")
        if kind not in (0, 1) or not isinstance(limit, int) or limit < 1:
            raise Refused("1004", "type must be 0 or 1 and max a positive number")
        limit = min(limit, PULL_MAX)
        if kind == 0:
            data = self.state.take_receipts(VENDOR, limit)
        else:
            data = [self._reply(item) for item in self.state.take_inbound(VENDOR, limit)]
        return {"errmsg": "ok", "count": len(data), "data": data}

    def _reply(self, item: dict[str, Any]) -> dict[str, Any]:
        """A queued reply in pullstatus's form; ``/_sim/inbound`` may give ``phone`` and ``content``."""
        reply = {"extend": "", "mobile": "", "nationcode": MAINLAND_CODE, "sign": self.sign,
                 "text": "", "time": int(self.clock())}
        item = dict(item)
        phone = str(item.pop("phone", ""))
        if phone.startswith("+"):
            reply["nationcode"], reply["mobile"] = _split(phone)
        elif phone:
            reply["mobile"] = phone
        if "content" in item:
            reply["text"] = item.pop("content")
        reply.update(item)
        return reply


def build(state: SimState, settings: Settings) -> TencentSim:
    section = settings.vendor("tencent", TencentSettings)
    return TencentSim(state, section.sdk_app_id, section.app_key.get_secret_value(), section.sign)


def _answer(answer: dict[str, Any]) -> Answer:
    return JSONResponse(answer), str(answer["result"])


def _refusal(refused: Refused) -> Answer:
    message = refused.message or MESSAGES.get(refused.code, "error")
    return _answer({"result": int(refused.code), "errmsg": message})


def _signed_mobile(tel: Any) -> str:
    """The ``mobile`` part of the sig: one number, or several joined by commas (sendmultisms2's form)."""
    if isinstance(tel, dict):
        return str(tel.get("mobile") or "")
    if isinstance(tel, list):
        return ",".join(str(t.get("mobile") or "") for t in tel if isinstance(t, dict))
    raise Refused("1016")


def _valid_number(nationcode: str, mobile: str) -> bool:
    if not nationcode.isdigit() or not mobile.isdigit():
        return False
    if nationcode == MAINLAND_CODE:
        return len(mobile) == 11 and mobile[0] == "1"
    return len(mobile) >= 4 and len(nationcode + mobile) <= 15


def _split(phone: str) -> tuple[str, str]:
    try:
        return split_phone(phone)
    except ValueError:
        return "", phone.lstrip("+")


def _receipt(sid: str, nationcode: str, mobile: str, delivered: bool) -> dict[str, Any]:
    return {
        "user_receive_time": datetime.now(BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
        "nationcode": nationcode,
        "mobile": mobile,
        "report_status": "SUCCESS" if delivered else "FAIL",
        "errmsg": "DELIVRD" if delivered else "UNDELIV",
        "description": "用户短信送达成功" if delivered else "用户短信未送达",
        "sid": sid,
    }
