"""Xiaorui simulator: release/smssend, release/smsreport, release/smsmo, release/smsoverage.

Behaves as shared/seeds/001_ea7bf1fee9755f8a.txt describes, behind the market gateway: the gateway
auth is checked first (401/403 ``{"message"}``, date within ``clock_skew_s``), then the form body's
account/password (status 3), ``rt=json``, at most 500 numbers (102), a per-phone ``mid`` and ``result``.
Answers copy the document's shapes, including its quirks: ``status`` is a string (``"0"``) everywhere
but smsoverage, where it is a number; receipts and replies are returned once only; the reply page size
is read from ``szie``.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from config.settings import Settings
from providers.base import vendor_code
from providers.simulator.core import BEIJING, Answer, Refused, SimState, market_gateway, serve
from providers.xiaorui import DELIVERED, INBOUND_PAGE, MAX_PHONES, RECEIPT_PAGE, XiaoruiSettings

VENDOR = "xiaorui"
# What a credential that is not the one it was built with is answered:
# the market gateway's 403 (HMAC id is invalid / signature does not match).
BAD_CREDENTIAL = "GATEWAY_403"
SPID = "922011"  # the document's examples
ACCESS_CODE = "10690"
UNDELIVERED = "MA:0029"  # the stat in the document's receipt example
CHARGE_TYPE = "PRECHARGE"
Handler = Callable[[dict[str, str]], dict[str, Any]]


class XiaoruiSim:
    def __init__(
        self,
        state: SimState,
        *,
        secret_id: str,
        secret_key: str,
        account: str,
        password: str,
        balance: int = 10**9,
    ) -> None:
        self.state = state
        self.gate = market_gateway(state, secret_id, secret_key)
        self.account = account
        self.password = password
        self.balance = balance

    def routes(self) -> list[Route]:
        post = ["POST"]
        return [
            Route("/release/smssend", self._endpoint(self._send), methods=post),
            Route("/release/smsreport", self._endpoint(self._report, send=False), methods=post),
            Route("/release/smsmo", self._endpoint(self._mo, send=False), methods=post),
            Route("/release/smsoverage", self._endpoint(self._balance, False, numeric=True), methods=post),
        ]

    def _endpoint(
        self, handler: Handler, send: bool = True, numeric: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        def process(raw: bytes) -> Answer:
            return _answer({"status": "0", **handler(self._form(raw))})

        def refuse(refused: Refused) -> Answer:
            return _answer(_failure(refused.code, numeric))

        async def endpoint(request: Request) -> Response:
            return await serve(self.state, VENDOR, request, process, refuse, send=send, gate=self.gate)

        return endpoint

    def _form(self, raw: bytes) -> dict[str, str]:
        try:
            form = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            raise Refused("1") from None
        if form.get("account") != self.account or form.get("password") != self.password:
            raise Refused("3")
        if form.get("rt") != "json":
            raise Refused("1")  # the adapter only reads JSON; anything else is a packet we do not expect
        return form

    # -- endpoints ----------------------------------------------------------------------------------

    def _send(self, form: dict[str, str]) -> dict[str, Any]:
        phones = [p.strip() for p in form.get("mobile", "").split(",") if p.strip()]
        content, extno = form.get("content", ""), form.get("extno", "")
        if not phones or not content or (extno and not extno.isdigit()):
            raise Refused("1")
        if len(phones) > MAX_PHONES:
            raise Refused("102")
        mids: defaultdict[str, deque[str]] = defaultdict(deque)
        items = []
        for phone in phones:
            if _valid_phone(phone):
                mid = f"4C2C{self.state.next_id():012X}"
                mids[phone].append(mid)
                items.append({"mid": mid, "mobile": phone, "result": 0})
            else:  # the document shows only result 0; a refused number gets a non-zero result here
                items.append({"mid": "", "mobile": phone, "result": 1})
        good = [phone for phone in phones if _valid_phone(phone)]
        if good:
            with self.state.lock:
                self.balance -= len(good) * _parts(content)
            self.state.accept(VENDOR, good, lambda p, ok: _receipt(mids[p].popleft(), p, ok, extno))
        return {"balance": self.balance, "list": items}

    def _report(self, form: dict[str, str]) -> dict[str, Any]:
        size = _page(form.get("size"), RECEIPT_PAGE)
        return {"balance": self.balance, "list": self.state.take_receipts(VENDOR, size)}

    def _mo(self, form: dict[str, str]) -> dict[str, Any]:
        if form.get("action") != "mo":
            raise Refused("1")
        size = _page(form.get("szie"), INBOUND_PAGE)  # sic: the document's spelling
        return {"balance": self.balance, "list": [_reply(m) for m in self.state.take_inbound(VENDOR, size)]}

    def _balance(self, form: dict[str, str]) -> dict[str, Any]:
        if form.get("action") != "balance":
            raise Refused("1")
        return {"status": 0, "balance": self.balance, "chargeType": CHARGE_TYPE}


def build(state: SimState, settings: Settings) -> XiaoruiSim:
    section = settings.vendor("xiaorui", XiaoruiSettings)
    return XiaoruiSim(
        state,
        secret_id=section.secret_id.get_secret_value(),
        secret_key=section.secret_key.get_secret_value(),
        account=section.account.get_secret_value(),
        password=section.password.get_secret_value(),
    )


def _answer(answer: dict[str, Any]) -> Answer:
    """Counted under its ``status`` read as the adapter reads it (``"0"`` and ``0`` alike)."""
    return JSONResponse(answer), vendor_code(answer, "status") or ""


def _failure(code: str, numeric: bool) -> dict[str, Any]:
    """The document's failure shapes: ``list: null``, or (smsoverage) a numeric status and chargeType."""
    if numeric:
        return {"status": int(code) if code.isdigit() else code, "balance": 0, "chargeType": CHARGE_TYPE}
    return {"status": code, "balance": 0, "list": None}


def _page(value: str | None, bounds: tuple[int, int]) -> int:
    if value is None or value == "":
        return 1000  # the document's default for both size and szie
    if not value.isdigit() or not bounds[0] <= int(value) <= bounds[1]:
        raise Refused("1")
    return int(value)


def _valid_phone(phone: str) -> bool:
    return len(phone) == 11 and phone.isdigit() and phone[0] == "1"


def _parts(content: str) -> int:
    """Billed parts: 70 characters in one SMS, 67 per part beyond that."""
    return 1 if len(content) <= 70 else math.ceil(len(content) / 67)


def _now() -> str:
    return datetime.now(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def _receipt(mid: str, phone: str, delivered: bool, extno: str) -> dict[str, Any]:
    return {
        "flag": 1,
        "mid": mid,
        "spid": SPID,
        "accessCode": ACCESS_CODE + extno,
        "mobile": phone,
        "stat": DELIVERED if delivered else UNDELIVERED,
        "time": _now(),
    }


def _reply(message: dict[str, Any]) -> dict[str, Any]:
    """A queued reply (``POST /_sim/inbound``) in the document's smsmo item shape."""
    return {
        "flag": 0,
        "mid": str(message.get("mid") or f"4C36{uuid.uuid4().hex[:12].upper()}"),
        "spid": SPID,
        "accessCode": str(message.get("accessCode") or ACCESS_CODE),
        "mobile": str(message.get("mobile") or message.get("phone") or ""),
        "content": str(message.get("content", "")),
        "time": str(message.get("time") or _now()),
    }
