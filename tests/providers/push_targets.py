"""What the push parsers are fed (the vendor documents' own push bodies, mutated) and how the outcome is
judged: a well-typed tuple of receipts or replies (``accepted``), or ``MalformedPush`` (``refused``);
anything else is :class:`Unhandled`. Used by ``test_pushes.py`` and, through :func:`fuzz_targets`, by
``reliability/fuzz.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from config.settings import Settings
from providers.base import DeliveryState, InboundMessage, Provider, Receipt
from providers.errors import MalformedPush
from tests.providers.strategies import bodies, form_bodies
from tests.providers.targets import ACCEPTED, REFUSED, Unhandled, mock_provider

API_KEY = "demo-infocloud-api-key"  # the demo credentials' Infocloud apiKey (DEMO_ENV)
# Decoded push bodies from shared/seeds/ and shared/VENDORS.md, per (vendor, kind); phones set to ours.
PUSH_EXAMPLES: dict[tuple[str, str], tuple[Any, ...]] = {
    ("infocloud", "receipts"): (
        {"apiKey": API_KEY, "data": [
            {"msgId": "577951956854276096", "tel": "18551067101", "arriveResult": "UNDELIV",
             "arriveTime": "2104091735", "bid": "xxxx"},
            {"msgId": "577951956854276096", "tel": "18551067102", "arriveResult": "DELIVRD",
             "arriveTime": "2104091735", "bid": "msg-1.0"},
        ]},
    ),
    ("infocloud", "inbound"): (
        {"apiKey": API_KEY, "data": [
            {"srcId": "1069012345", "tel": "18551067101", "content": "TD", "arriveTime": "2104091735"},
        ]},
    ),
    ("tencent", "receipts"): (
        [{"user_receive_time": "2015-10-17 08:03:04", "nationcode": "86", "mobile": "13788888888",
          "report_status": "SUCCESS", "errmsg": "DELIVRD", "description": "用户短信送达成功", "sid": "s1"},
         {"user_receive_time": "2015-10-17 08:03:05", "nationcode": "852", "mobile": "91234567",
          "report_status": "FAIL", "errmsg": "MK:0001", "description": "未送达", "sid": "s2"}],
    ),
    ("tencent", "inbound"): (
        {"extend": "", "mobile": "13788888888", "nationcode": "86", "sign": "腾讯云", "text": "TD",
         "time": 1457336869},
    ),
    ("ihuyi", "receipts"): (
        {"code": "1", "msg": "DELIVRD", "mobilephone": "13800138000", "smsid": "16000000000000001",
         "report_time": "2024-05-01 12:00:00"},
        {"code": "0", "msg": "UNDELIV", "mobilephone": "13800138001", "smsid": "16000000000000002",
         "report_time": "2024-05-01 12:00:01"},
    ),
    ("ihuyi", "inbound"): (
        {"mobilephone": "13800138000", "content": "退订", "smsid": "16000000000000001",
         "reply_time": "2024-05-01 12:00:00"},
    ),
}  # fmt: skip
FORMS = frozenset({"ihuyi"})  # vendors that push forms; the others push JSON


@dataclass(frozen=True)
class PushTarget:
    """One push parser: ``parse_receipt_push`` or ``parse_inbound_push`` of one vendor's adapter, or
    Infocloud's ``push_signed`` (``kind`` "signed")."""

    vendor: str
    kind: str

    def __str__(self) -> str:
        return f"{self.vendor}.push_{self.kind}"

    def bodies(self) -> st.SearchStrategy[bytes]:
        source = "receipts" if self.kind == "signed" else self.kind
        examples = PUSH_EXAMPLES[(self.vendor, source)]
        return form_bodies(examples) if self.vendor in FORMS else bodies(examples)

    def call(self, provider: Provider, body: bytes) -> Any:
        if self.kind == "signed":
            return provider.push_signed(body, "application/json")
        parse = provider.parse_receipt_push if self.kind == "receipts" else provider.parse_inbound_push
        form = self.vendor in FORMS
        return parse(body, "application/x-www-form-urlencoded" if form else "application/json")


PUSH_TARGETS: tuple[PushTarget, ...] = (
    *(PushTarget(vendor, kind) for vendor, kind in PUSH_EXAMPLES),
    PushTarget("infocloud", "signed"),
)


def push_outcome(target: PushTarget, provider: Provider, body: bytes) -> str:
    """``accepted`` (typed result) or ``refused`` (``MalformedPush``); :class:`Unhandled` otherwise."""
    try:
        result = target.call(provider, body)
    except MalformedPush as exc:
        _utf8(target, exc.provider, exc.code, exc.text, str(exc))
        return REFUSED
    except Exception as exc:
        raise Unhandled(f"{target}: {type(exc).__name__} escaped: {exc!r}"[:500]) from exc
    check_push_result(target, result)
    return ACCEPTED


def check_push_result(target: PushTarget, result: Any) -> None:
    if target.kind == "signed":
        if type(result) is not bool:
            raise Unhandled(f"{target}: not a bool: {result!r}"[:300])
        return
    kind = Receipt if target.kind == "receipts" else InboundMessage
    if not isinstance(result, tuple) or not all(isinstance(item, kind) for item in result):
        raise Unhandled(f"{target}: not a tuple of {kind.__name__}: {result!r}"[:500])
    for item in result:
        if item.provider != target.vendor or not item.phone:
            raise Unhandled(f"{target}: provider {item.provider!r}, phone {item.phone!r}")
        if isinstance(item, Receipt):
            if not isinstance(item.state, DeliveryState) or not (item.batch_id or item.vendor_id or item.bid):
                raise Unhandled(f"{target}: unmatchable or ill-typed receipt {item!r}"[:500])
            _utf8(target, item.phone, item.code, item.batch_id, item.vendor_id, item.bid, item.at)
        else:
            _utf8(target, item.phone, item.content, item.at, item.ext)


def _utf8(target: PushTarget, *values: Any) -> None:
    for value in values:
        if not isinstance(value, str):
            raise Unhandled(f"{target}: {value!r} is not a string"[:300])
        try:
            value.encode()
        except UnicodeEncodeError:
            raise Unhandled(f"{target}: {value!r} cannot be written as UTF-8"[:300]) from None


def never_called(request: Any) -> Any:
    raise AssertionError("a push parser made an HTTP call")


def fuzz_targets() -> Iterator[tuple[str, tuple[st.SearchStrategy[bytes], Callable[[bytes], str]]]]:
    """For ``reliability/fuzz.py``: ``(name, (strategy, check))`` per push parser."""
    from config.settings import load_settings

    settings: Settings = load_settings()
    for target in PUSH_TARGETS:
        provider = mock_provider(target.vendor, settings, never_called)
        yield f"push {target}", (target.bodies(), _checker(target, provider))


def _checker(target: PushTarget, provider: Provider) -> Callable[[bytes], str]:
    def check(body: bytes) -> str:
        return push_outcome(target, provider, body)

    return check
