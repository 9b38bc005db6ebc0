"""Ihuyi (互亿无线) simulator: webservice/sms.php with ``method=Submit`` and ``method=GetNum``.

Behaves as shared/seeds/003_d1ebdae77096c094.txt and the v3.3 dynamic-password digest in
shared/VENDORS.md describe: GET or POST form, fields from the query string or the body; checks the
account and the APIKEY, or the dynamic MD5 password with a fresh 10-digit ``time``; one mainland number
a call; content of at most 300 characters and without emoji; at most 1 message a second (4080) and 5 a
Beijing day (4082) to one number; answers in XML unless ``format=json``.

Not in our documents, so chosen here: how long a dynamic password stays fresh (``SimConfig.clock_skew_s``,
past it 40501), and the receipt ``code`` (``1`` delivered, ``0`` not; ``msg`` DELIVRD or UNDELIV).
Receipts are queued as the vendor's push form ``{code, msg, mobilephone, smsid, report_time}`` and, with a
push URL (``SimConfig.push_urls``), POSTed one form each, as are replies queued with ``/_sim/inbound``
(``{mobilephone, content, smsid, reply_time}``); a push not answered 2xx is tried 3 times in all.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode
from xml.sax.saxutils import escape

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from config.settings import Settings
from providers.ihuyi import (
    MAX_CONTENT_CHARS,
    PATH,
    IhuyiSettings,
    balance_password,
    find_emoji,
    submit_password,
)
from providers.simulator.core import BEIJING, Answer, Refused, SimState, sent_today, serve
from providers.simulator.pusher import PushBody

VENDOR = "ihuyi"
# What a credential that is not the one it was built with is answered:
# an unknown account, or neither the demo APIKEY nor a dynamic password made with it.
BAD_CREDENTIAL = "405"
DAILY_CAP = 5  # 4082: 超出同一手机号一天之内【5】条短信限制
MESSAGES = {
    "0": "提交失败",
    "2": "提交成功",
    "401": "帐号不能为空",
    "402": "密码不能为空",
    "403": "手机号码不能为空",
    "404": "短信内容不能为空",
    "405": "API ID 或 API KEY 不正确",
    "40501": "动态密码已过期",
    "40502": "动态密码校验失败",
    "4051": "剩余条数不足",
    "406": "手机格式不正确",
    "4073": "短信内容超出长度限制",
    "4074": "短信内容包含 emoji 符号",
    "4080": "同一手机号码同一秒钟之内发送频率不能超过 1 条",
    "4082": "超出同一手机号一天之内【5】条短信限制",
}


class IhuyiSim:
    def __init__(self, state: SimState, account: str, api_key: str, balance: int = 10**9) -> None:
        self.state = state
        self.account = account
        self.api_key = api_key
        self.balance = balance
        self.clock: Callable[[], float] = time.time  # tests move it to cross the per-number windows

    def routes(self) -> list[Route]:
        return [Route(PATH, self._endpoint, methods=["GET", "POST"])]

    async def _endpoint(self, request: Request) -> Response:
        fields = await _fields(request)
        method, fmt = fields.get("method", ""), fields.get("format", "xml")

        def process(raw: bytes) -> Answer:
            return _render(method, self._dispatch(method, fields), fmt)

        def refuse(refused: Refused) -> Answer:
            message = refused.message or MESSAGES.get(refused.code, "error")
            data: dict[str, Any] = {"code": int(refused.code), "msg": message}
            if method == "Submit":
                data["smsid"] = "0"
            return _render(method, data, fmt)

        return await serve(self.state, VENDOR, request, process, refuse, send=method == "Submit")

    def _dispatch(self, method: str, fields: Mapping[str, str]) -> dict[str, Any]:
        if method == "Submit":
            return self._submit(fields)
        if method == "GetNum":
            return self._get_num(fields)
        raise Refused("0", f"未知的 method {method!r}")

    def _auth(self, fields: Mapping[str, str], signed: str) -> None:
        """401/402 missing, 405 wrong account or key, 40502 wrong dynamic password, 40501 stale ``time``."""
        account, password = fields.get("account", ""), fields.get("password", "")
        if not account:
            raise Refused("401")
        if not password:
            raise Refused("402")
        if account != self.account:
            raise Refused("405")
        if hmac.compare_digest(password, self.api_key):
            return
        at = fields.get("time", "")
        if not at:  # neither the APIKEY nor a dynamic password
            raise Refused("405")
        if len(at) != 10 or not at.isdigit() or not hmac.compare_digest(password, signed):
            raise Refused("40502")
        if abs(int(at) - self.clock()) > self.state.config.clock_skew_s:
            raise Refused("40501")

    # -- pushes -------------------------------------------------------------------------------------

    push_tries = 3  # "the vendor tries up to 3 times"

    def push_bodies(self, receipts: list[dict[str, Any]], replies: list[dict[str, Any]]) -> list[PushBody]:
        """A form POST per receipt and per reply (``/_sim/inbound`` items: ``phone``, ``content``)."""
        form = "application/x-www-form-urlencoded"
        out: list[PushBody] = [("receipts", urlencode(r).encode(), form) for r in receipts]
        now = datetime.now(BEIJING).strftime("%Y-%m-%d %H:%M:%S")
        for m in replies:
            reply = {"mobilephone": str(m.get("phone", "")), "content": str(m.get("content", "")),
                     "smsid": str(m.get("smsid", "")), "reply_time": now}
            out.append(("inbound", urlencode(reply).encode(), form))
        return out

    # -- methods ------------------------------------------------------------------------------------

    def _submit(self, fields: Mapping[str, str]) -> dict[str, Any]:
        for key, code in (("account", "401"), ("password", "402"), ("mobile", "403"), ("content", "404")):
            if not fields.get(key):
                raise Refused(code)
        mobile, content = fields["mobile"], fields["content"]
        at = fields.get("time", "")
        self._auth(fields, submit_password(self.account, self.api_key, mobile, content, at))
        if len(mobile) != 11 or not mobile.isdigit() or mobile[0] != "1":  # one number only
            raise Refused("406")
        if len(content) > MAX_CONTENT_CHARS:
            raise Refused("4073")
        if find_emoji(content) is not None:
            raise Refused("4074")
        self._admit(mobile)
        smsid = str(16_000_000_000_000_000 + self.state.next_id())
        self.state.accept(VENDOR, [mobile], lambda phone, ok: _receipt(smsid, phone, ok))
        return {"code": 2, "msg": MESSAGES["2"], "smsid": smsid}

    def _admit(self, mobile: str) -> None:
        """Balance, 1 a second and 5 a Beijing day to one number; then count it (one lock, no leaks)."""
        now = self.clock()
        with self.state.lock:
            if self.balance < 1:
                raise Refused("4051")
            sent = self.state.phone_history(VENDOR, mobile, now)
            if sent and now - sent[-1] < 1.0:
                raise Refused("4080")
            if sent_today(sent, now) >= DAILY_CAP:
                raise Refused("4082")
            sent.append(now)
            self.balance -= 1

    def _get_num(self, fields: Mapping[str, str]) -> dict[str, Any]:
        self._auth(fields, balance_password(self.account, self.api_key, fields.get("time", "")))
        with self.state.lock:
            left = self.balance
        return {"code": 2, "msg": "查询成功", "num": left}


def build(state: SimState, settings: Settings) -> IhuyiSim:
    section = settings.vendor("ihuyi", IhuyiSettings)
    return IhuyiSim(state, section.account, section.api_key.get_secret_value())


async def _fields(request: Request) -> dict[str, str]:
    """The query string's fields, and on a POST the form body's over them. The body is read here to find
    ``method`` before :func:`serve` reads it (Starlette keeps it, so both read the same bytes)."""
    fields = dict(request.query_params)
    if request.method == "POST":
        body = (await request.body()).decode("utf-8", "replace")
        fields.update(parse_qsl(body, keep_blank_values=True))
    return fields


def _render(method: str, data: Mapping[str, Any], fmt: str) -> Answer:
    """JSON when asked for, else the vendor's default XML (``SubmitResult`` / ``GetNumResult``); counted
    under its ``code``."""
    code = str(data["code"])
    if fmt.lower() == "json":
        return JSONResponse(dict(data)), code
    root = "GetNumResult" if method == "GetNum" else "SubmitResult"
    inner = "".join(f"<{key}>{escape(str(value))}</{key}>" for key, value in data.items())
    body = f'<?xml version="1.0" encoding="utf-8"?>\n<{root} xmlns="http://106.ihuyi.com/">{inner}</{root}>'
    return Response(body, media_type="text/xml"), code


def _receipt(smsid: str, phone: str, delivered: bool) -> dict[str, Any]:
    return {
        "code": "1" if delivered else "0",
        "msg": "DELIVRD" if delivered else "UNDELIV",
        "mobilephone": phone,
        "smsid": smsid,
        "report_time": datetime.now(BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
    }
