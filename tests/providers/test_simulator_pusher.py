"""The simulator's pushes (``providers/simulator/pusher.py``): each vendor's own format, to the configured
receiver with its token, and the vendor's retries (Ihuyi: 3 tries in all, then dropped)."""

from __future__ import annotations

import json
from dataclasses import replace
from urllib.parse import parse_qsl

import httpx

from config.settings import Settings
from providers.simulator.core import SimState
from providers.simulator.ihuyi import build as build_ihuyi
from providers.simulator.infocloud import build as build_infocloud
from providers.simulator.pusher import Pusher


def pusher(state: SimState, demo_settings: Settings, answers: list[int], seen: list[httpx.Request]) -> Pusher:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(answers.pop(0) if answers else 200, text="success")

    sims = {"ihuyi": build_ihuyi(state, demo_settings), "infocloud": build_infocloud(state, demo_settings)}
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return Pusher(state, sims, client=client)


def configured(state: SimState, *vendors: str) -> None:
    urls = dict.fromkeys(vendors, "http://receiver.test")
    state.config = replace(state.config, push_urls=urls, push_tokens={"ihuyi": "tok"})


def test_ihuyi_receipts_are_form_posts_with_the_token(demo_settings: Settings) -> None:
    state, seen = SimState(), []
    configured(state, "ihuyi")
    state.accept("ihuyi", ["13800138000"], lambda phone, ok: {"code": "1", "msg": "DELIVRD",
                                                               "mobilephone": phone, "smsid": "7"})
    assert pusher(state, demo_settings, [], seen).run_once() == 1
    (request,) = seen
    assert str(request.url) == "http://receiver.test/push/ihuyi/receipts?token=tok"
    assert dict(parse_qsl(request.content.decode())) == {"code": "1", "msg": "DELIVRD",
                                                         "mobilephone": "13800138000", "smsid": "7"}


def test_ihuyi_tries_three_times_then_drops_the_push(demo_settings: Settings) -> None:
    state, seen = SimState(), []
    configured(state, "ihuyi")
    state.add_inbound("ihuyi", {"phone": "13800138000", "content": "TD"})
    assert pusher(state, demo_settings, [500, 503, 500, 200], seen).run_once() == 0
    assert len(seen) == 3 and seen[0].url.path == "/push/ihuyi/inbound"
    counters = state.counters("ihuyi")
    assert (counters.pushed, counters.push_failed) == (0, 1)
    assert (counters.replies_dropped, counters.receipts_dropped) == (1, 0)


def test_infocloud_pushes_carry_its_api_key_and_arrive_result(demo_settings: Settings) -> None:
    state, seen = SimState(), []
    configured(state, "infocloud")
    state.accept("infocloud", ["13800138000"], lambda phone, ok: {"msgId": "57", "tel": phone,
                                                                   "arrive": "DELIVRD", "bid": "m.0"})
    assert pusher(state, demo_settings, [500], seen).run_once() == 1  # the second try is answered
    body = json.loads(seen[-1].content)
    assert body["apiKey"] == "demo-infocloud-api-key"
    assert body["data"] == [{"msgId": "57", "tel": "13800138000", "arriveResult": "DELIVRD", "bid": "m.0"}]


def test_a_vendor_without_a_push_url_keeps_its_receipts_for_the_pull(demo_settings: Settings) -> None:
    state, seen = SimState(), []
    configured(state, "ihuyi")
    state.accept("infocloud", ["13800138000"], lambda phone, ok: {"tel": phone})
    assert pusher(state, demo_settings, [], seen).run_once() == 0 and seen == []
    assert state.take_receipts("infocloud", 10) == [{"tel": "13800138000"}]


def test_a_dropped_infocloud_push_counts_every_receipt_it_held(demo_settings: Settings) -> None:
    state, seen = SimState(), []
    configured(state, "infocloud")
    phones = [f"1380013800{i}" for i in range(3)]
    state.accept("infocloud", phones, lambda phone, ok: {"msgId": "57", "tel": phone,
                                                         "arrive": "DELIVRD", "bid": "m.0"})
    assert pusher(state, demo_settings, [503, 503, 503], seen).run_once() == 0
    counters = state.counters("infocloud")
    assert (counters.push_failed, counters.receipts_dropped) == (1, 3)
