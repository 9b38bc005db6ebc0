"""Push parsers: the vendors' documented push bodies read right, and whatever a pushed body holds, each
parser returns well-typed receipts or replies or raises ``MalformedPush`` (property tests, strategies
from ``strategies.py``; ``reliability/fuzz.py`` draws them 10,000 times)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings

from config.settings import Settings
from providers.base import DeliveryState, Provider
from providers.errors import MalformedPush, UnsupportedFeature
from providers.pushes import PushKind
from tests.providers.push_targets import (
    PUSH_TARGETS,
    PushTarget,
    never_called,
    push_outcome,
)
from tests.providers.targets import ACCEPTED, REFUSED, mock_provider
from worker.registry import offers

EXAMPLES_PER_TARGET = 250


def adapter(vendor: str, demo_settings: Settings) -> Provider:
    return mock_provider(vendor, demo_settings, never_called)


@pytest.mark.parametrize("target", PUSH_TARGETS, ids=str)
def test_any_pushed_body_is_typed_results_or_malformed_push(
    target: PushTarget, demo_settings: Settings
) -> None:
    provider = adapter(target.vendor, demo_settings)
    seen: Counter[str] = Counter()

    @settings(max_examples=EXAMPLES_PER_TARGET, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(body=target.bodies())
    def push(body: bytes) -> None:
        seen[push_outcome(target, provider, body)] += 1  # raises Unhandled for anything else

    push()
    assert seen[ACCEPTED] > 0 and seen[REFUSED] > 0, dict(seen)


def test_infocloud_receipt_push_from_the_document(demo_settings: Settings) -> None:
    body = {"apiKey": "demo-infocloud-api-key", "data": [
        {"msgId": "577951956854276096", "tel": "18551067101", "arriveResult": "UNDELIV",
         "arriveTime": "2104091735", "bid": "m1.0"},
        {"msgId": "577951956854276096", "tel": "18551067102", "arriveResult": "DELIVRD",
         "arriveTime": "2104091735", "bid": ""}]}  # fmt: skip
    provider = adapter("infocloud", demo_settings)
    raw = json.dumps(body).encode()
    assert provider.push_signed(raw, "application/json") is True
    first, second = provider.parse_receipt_push(raw, "application/json")
    assert (first.phone, first.state, first.code, first.bid) == ("18551067101", DeliveryState.UNDELIVERED,
                                                                  "UNDELIV", "m1.0")
    assert (second.state, second.batch_id) == (DeliveryState.DELIVERED, "577951956854276096")
    forged = json.dumps({**body, "apiKey": "demo-infocloud-api-kez"}).encode()
    assert provider.push_signed(forged, "application/json") is False
    with pytest.raises(MalformedPush):
        provider.push_signed(b"apiKey=demo-infocloud-api-key", "text/plain")


def test_infocloud_inbound_push_keeps_the_access_number(demo_settings: Settings) -> None:
    body = {"apiKey": "k", "data": [{"srcId": "106901", "tel": "18551067101", "content": "TD",
                                     "arriveTime": "2104091735"}]}
    (reply,) = adapter("infocloud", demo_settings).parse_inbound_push(json.dumps(body).encode(), "")
    assert (reply.phone, reply.content, reply.ext, reply.at) == ("18551067101", "TD", "106901", "2104091735")


@pytest.mark.parametrize(
    ("form", "state", "code"),
    [
        (b"code=1&msg=DELIVRD&mobilephone=13800138000&smsid=99&report_time=x", DeliveryState.DELIVERED,
         "DELIVRD"),
        (b"code=0&msg=UNDELIV&mobilephone=13800138000&smsid=99", DeliveryState.UNDELIVERED, "UNDELIV"),
        (b"code=0&msg=EXPIRED&mobilephone=13800138000&smsid=99", DeliveryState.EXPIRED, "EXPIRED"),
        (b"code=&msg=&mobilephone=13800138000&smsid=99", DeliveryState.UNKNOWN, ""),
    ],
)
def test_ihuyi_receipt_form(form: bytes, state: DeliveryState, code: str, demo_settings: Settings) -> None:
    (receipt,) = adapter("ihuyi", demo_settings).parse_receipt_push(form, "application/x-www-form-urlencoded")
    found = (receipt.phone, receipt.vendor_id, receipt.state, receipt.code)
    assert found == ("13800138000", "99", state, code)


def test_ihuyi_receipt_without_smsid_is_malformed(demo_settings: Settings) -> None:
    with pytest.raises(MalformedPush, match="smsid"):
        adapter("ihuyi", demo_settings).parse_receipt_push(b"code=1&mobilephone=13800138000", "")


def test_tencent_callbacks(demo_settings: Settings) -> None:
    provider = adapter("tencent", demo_settings)
    item = {"user_receive_time": "2015-10-17 08:03:04", "nationcode": "852", "mobile": "91234567",
            "report_status": "FAIL", "errmsg": "MK:0001", "description": "x", "sid": "s2"}
    (receipt,) = provider.parse_receipt_push(json.dumps([item]).encode(), "application/json")
    assert (receipt.phone, receipt.vendor_id) == ("+85291234567", "s2")
    assert receipt.state is DeliveryState.UNDELIVERED
    reply = {"extend": "01", "mobile": "13788888888", "nationcode": "86", "sign": "s", "text": "TD",
             "time": 1}
    (inbound,) = provider.parse_inbound_push(json.dumps(reply).encode(), "application/json")
    assert (inbound.phone, inbound.content, inbound.ext) == ("13788888888", "TD", "01")


def test_push_replies_are_what_each_vendor_expects(demo_settings: Settings) -> None:
    assert adapter("ihuyi", demo_settings).push_reply(PushKind.RECEIPTS).body == b"success"
    assert json.loads(adapter("tencent", demo_settings).push_reply(PushKind.INBOUND).body) == {
        "result": 0, "errmsg": "OK"}
    assert json.loads(adapter("infocloud", demo_settings).push_reply(PushKind.RECEIPTS).body)["code"] == 200


def test_vendors_that_push_nothing_say_so(demo_settings: Settings) -> None:
    for vendor in ("xiaorui", "deepfinch"):
        assert not offers(vendor, "parse_receipt_push")
        with pytest.raises(UnsupportedFeature):
            adapter(vendor, demo_settings).parse_receipt_push(b"[]", "application/json")
    assert not offers("tencent", "push_signed") and offers("infocloud", "push_signed")
