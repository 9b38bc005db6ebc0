"""Infocloud simulator: message/send, message/sendBatch, sms/arriveRes/qry, sms/residueValue/qry.

Behaves as shared/seeds/004_f36aac20ad5cfd9d.txt describes: checks the x-* headers and the HMAC over
the sorted body and headers, the 13-digit timestamp within ±60 s, repeated nonces, the 1000-phone limit,
about 300 calls a second, 3 queries a minute, balance once per 15 s, and answers with the documented
codes. Receipts come back once only, at most 600 a call. With a push URL (``SimConfig.push_urls``) it
pushes them instead, and replies queued with ``/_sim/inbound`` (MO is push-only), in the document's push
format: ``{"apiKey", "data": [{msgId, tel, arriveResult, arriveTime, bid}]}`` and ``{"apiKey", "data":
[{srcId, tel, content, arriveTime}]}``.
"""

from __future__ import annotations

import hmac
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from config.settings import Settings
from providers.infocloud import DELIVERED, SIGN_METHODS, InfocloudSettings, canonical_string, sign
from providers.simulator.core import BEIJING, Answer, Refused, SimState, serve
from providers.simulator.pusher import PushBody

VENDOR = "infocloud"
# What a credential that is not the one it was built with is answered:
# API授权失败: an unknown x-api-key or a signature the demo access key did not make.
BAD_CREDENTIAL = "2001"
MAX_PHONES = 1000
RECEIPT_PAGE = 600
MESSAGES = {
    "-1": "系统繁忙，请稍后再试",
    "2001": "API授权错误",
    "6000": "访问频繁,请稍后再试",
    "40002": "余额不足",
    "40004": "参数错误",
    "60001": "模板不存在",
    "60002": "批量发送下电话数量和参数数量不一样",
    "60005": "没有可以发送的内容",
    "60006": "模板参数变量格式错误",
    "60007": "手机号参数格式错误",
    "60008": "手机号数量大于1000",
    "60009": "短信资源被锁定",
}


class InfocloudSim:
    def __init__(self, state: SimState, api_key: str, access_key: str, balance: int = 10**9) -> None:
        self.state = state
        self.api_key = api_key
        self.access_key = access_key
        self.balance = balance
        self.nonces: dict[str, float] = {}

    def routes(self) -> list[Route]:
        return [
            Route("/message/send", self._endpoint(self._send), methods=["POST"]),
            Route("/message/sendBatch", self._endpoint(self._send_batch), methods=["POST"]),
            Route("/sms/arriveRes/qry", self._endpoint(self._receipts, send=False), methods=["POST"]),
            Route("/sms/residueValue/qry", self._endpoint(self._residue, send=False), methods=["POST"]),
        ]

    def _endpoint(
        self, handler: Callable[[dict[str, Any]], dict[str, Any] | list[dict[str, Any]]], send: bool = True
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            def process(raw: bytes) -> Answer:
                body = self._verify(request.headers, raw)
                if send and not self.state.allow("infocloud:tps", self.state.config.tps_limit, 1.0):
                    raise Refused("6000")
                return _answer({"code": 200, "message": "OK", "data": handler(body)})

            return await serve(self.state, VENDOR, request, process, _refusal, send=send)

        return endpoint

    def _verify(self, headers: Any, raw: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            raise Refused("40004", "参数错误: body is not JSON") from None
        if not isinstance(body, dict):
            raise Refused("40004", "参数错误: body is not an object")
        fields = {k: headers.get(k, "") for k in ("x-api-key", "x-sign-method", "x-nonce", "x-timestamp")}
        if not all(fields.values()) or not headers.get("x-sign"):
            raise Refused("2001", "API授权失败或授权参数不完整")
        if fields["x-api-key"] != self.api_key or fields["x-sign-method"] not in SIGN_METHODS:
            raise Refused("2001")
        timestamp = fields["x-timestamp"]
        skew = self.state.config.clock_skew_s
        if len(timestamp) != 13 or not timestamp.isdigit() or abs(int(timestamp) / 1000 - time.time()) > skew:
            raise Refused("40004", "无效的参数（时间戳）")
        nonce = fields["x-nonce"]
        if len(nonce) < 10 or not nonce.isdigit():
            raise Refused("40004", "无效的参数（nonce）")
        expected = sign(canonical_string({**body, **fields}), self.access_key, fields["x-sign-method"])
        if not hmac.compare_digest(expected, headers["x-sign"]):
            raise Refused("2001")
        self._remember_nonce(nonce, skew)
        return body

    def _remember_nonce(self, nonce: str, window_s: float) -> None:
        now = time.time()
        with self.state.lock:
            if nonce in self.nonces:
                raise Refused("2001", "重复的请求（nonce）")
            if len(self.nonces) > 100_000:
                self.nonces = {n: t for n, t in self.nonces.items() if t > now - 2 * window_s}
            self.nonces[nonce] = now

    # -- pushes -------------------------------------------------------------------------------------

    push_tries = 3  # the document says nothing of retries; like Ihuyi

    def push_bodies(self, receipts: list[dict[str, Any]], replies: list[dict[str, Any]]) -> list[PushBody]:
        """One receipt push for ``receipts`` (pulled items renamed: ``arrive`` is ``arriveResult``) and one
        MO push for ``replies`` (``/_sim/inbound`` items: ``phone``, ``content``, optional ``srcId``)."""
        out: list[PushBody] = []
        if receipts:
            data = [{**{k: v for k, v in r.items() if k != "arrive"}, "arriveResult": r["arrive"]}
                    for r in receipts]
            out.append(("receipts", _push(self.api_key, data), "application/json"))
        if replies:
            now = datetime.now(BEIJING).strftime("%y%m%d%H%M")
            data = [{"srcId": str(m.get("srcId", "10690000")), "tel": str(m.get("phone", "")),
                     "content": str(m.get("content", "")), "arriveTime": now} for m in replies]
            out.append(("inbound", _push(self.api_key, data), "application/json"))
        return out

    # -- endpoints ----------------------------------------------------------------------------------

    def _send(self, body: dict[str, Any]) -> dict[str, Any]:
        phones = [p.strip() for p in str(body.get("phones") or "").split(",") if p.strip()]
        params = body.get("templateParam")
        if params:
            _param_list(params)
        return self._accept(phones, body)

    def _send_batch(self, body: dict[str, Any]) -> dict[str, Any]:
        phones = _param_list(body.get("phonesJson") or "[]", code="40004")
        params = _param_list(body.get("templateParamJson") or "[]")
        if len(params) != len(phones) or not all(isinstance(p, list) for p in params):
            raise Refused("60002")
        return self._accept([str(p) for p in phones], body)

    def _accept(self, phones: list[str], body: dict[str, Any]) -> dict[str, Any]:
        template = str(body.get("templateCode") or "")
        if not template:
            raise Refused("40004", "参数错误: templateCode")
        known = self.state.config.known_templates
        if known and template not in known:
            raise Refused("60001")
        if not phones:
            raise Refused("60005")
        if len(phones) > MAX_PHONES:
            raise Refused("60008")
        good = [p for p in phones if len(p) == 11 and p.isdigit() and p[0] == "1"]
        good_set = set(good)
        bad = [p for p in phones if p not in good_set]
        if not good:
            raise Refused("60007")
        with self.state.lock:
            if self.balance < len(good):
                raise Refused("40002")
            self.balance -= len(good)
        msg_id = str(570000000000000000 + self.state.next_id())
        bid = str(body.get("bid") or "")
        self.state.accept(VENDOR, good, lambda phone, ok: _receipt(msg_id, phone, ok, bid), tag=bid)
        return {"msgId": msg_id, "desc": "null", "failPhones": ",".join(bad)}

    def _receipts(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        if not self.state.allow("infocloud:query", self.state.config.query_per_minute, 60.0):
            raise Refused("6000")
        return self.state.take_receipts(VENDOR, RECEIPT_PAGE)

    def _residue(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        if not self.state.allow("infocloud:balance", 1, self.state.config.balance_interval_s):
            raise Refused("6000")
        return [
            {"itemName": "行业短信", "residueValue": self.balance},
            {"itemName": "会员短信", "residueValue": 0},
            {"itemName": "推广短信", "residueValue": 0},
        ]


def build(state: SimState, settings: Settings) -> InfocloudSim:
    section = settings.vendor("infocloud", InfocloudSettings)
    return InfocloudSim(state, section.api_key.get_secret_value(), section.access_key.get_secret_value())


def _answer(answer: dict[str, Any]) -> Answer:
    answer["requestId"] = str(uuid.uuid4())
    return JSONResponse(answer), str(answer["code"])


def _refusal(refused: Refused) -> Answer:
    message = refused.message or MESSAGES.get(refused.code, "error")
    return _answer({"code": int(refused.code), "message": message})


def _param_list(value: Any, code: str = "60006") -> list[Any]:
    try:
        parsed = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        raise Refused(code) from None
    if not isinstance(parsed, list):
        raise Refused(code)
    return parsed


def _push(api_key: str, data: list[dict[str, Any]]) -> bytes:
    return json.dumps({"apiKey": api_key, "data": data}, ensure_ascii=False).encode()


def _receipt(msg_id: str, phone: str, delivered: bool, bid: str) -> dict[str, Any]:
    return {
        "msgId": msg_id,
        "tel": phone,
        "arrive": DELIVERED if delivered else "UNDELIV",
        "arriveTime": datetime.now(BEIJING).strftime("%y%m%d%H%M"),
        "bid": bid,
    }
