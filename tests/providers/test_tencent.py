"""Tencent Cloud SMS v5 adapter: the document's own bodies through a MockTransport, Tencent's SDK and our
adapter against the simulator over HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from qcloudsms_py import SmsSingleSender, SmsStatusPuller
from qcloudsms_py.httpclient import HTTPRequest, HTTPResponse, HTTPSimpleClient

from config.settings import Settings, TencentSettings
from providers.base import DeliveryState, RenderedTemplate, SendRequest
from providers.errors import (
    AmbiguousError,
    BalanceError,
    ConfigError,
    NotSentError,
    ProviderError,
    RateLimitedError,
    RequestRejectedError,
    TransientError,
    UnsupportedFeature,
)
from providers.simulator.core import FaultPlan
from providers.simulator.server import SimulatorServer
from providers.tencent import (
    BEIJING,
    CODES,
    NO_SID,
    PER_RECIPIENT,
    SEND_PATH,
    TencentProvider,
    signature,
    split_phone,
)
from tests.providers.helpers import Handler, Recorder, mock_client, raising, sim_provider

# -- the document's worked example (shared/seeds/002_88bc9a7ff6b0f320.txt), verbatim ------------------

DOC_APP_KEY = "5f03a35d00ee52a21327ab048186a2c4"
DOC_RANDOM = "7226249334"
DOC_TIME = 1457336869
DOC_SIG = "ecab4881ee80ad3d76bb1da68387428ca752eb885e52621a3129dcf4d9bc4fd4"
DOC_REQUEST = """{
"ext": "",
"extend": "",
"params": [
"Verification code",
"1234",
"4"
],
"sig": "ecab4881ee80ad3d76bb1da68387428ca752eb885e52621a3129dcf4d9bc4fd4",
"sign": "Tencent Cloud",
"tel": {
"mobile": "13788888888",
"nationcode": "86"
},
"time": 1457336869,
"tpl_id": 19
}"""
DOC_RESPONSE = """{
"result": 0,
"errmsg": "OK",
"ext": "",
"fee": 1,
"sid": "xxxxxxx"
}"""
# Tencent's pullstatus page gives the same example without the mobile (VENDORS.md: "signs without mobile").
PULL_SIG = "c13e54f047ed75e821e698730c72d030dc30e5b510b3f8a0fb6fb7605283d7df"

# Every code VENDORS.md lists from Tencent's v5 error page, and the exact class we mean each to raise.
DOCUMENTED: dict[str, type[ProviderError]] = {
    "1001": ConfigError,
    "1008": TransientError,
    "1012": ConfigError,
    "1014": RequestRejectedError,
    "1016": RequestRejectedError,
    "1021": ConfigError,
    "1022": RateLimitedError,
    "1023": RateLimitedError,
    "1024": RateLimitedError,
    "1025": RateLimitedError,
    "1026": RequestRejectedError,
    "1029": RateLimitedError,
    "1031": BalanceError,
    "1033": BalanceError,
    "60008": TransientError,
}
SETTINGS = TencentSettings.model_validate({
    "base_url": "https://tencent.test",
    "sdk_app_id": "1400000001",
    "app_key": DOC_APP_KEY,
    "sign": "Tencent Cloud",
})
DOC_TEMPLATE = RenderedTemplate("19", ("Verification code", "1234", "4"))


def provider_for(handler: Handler, clock: Callable[[], float] = lambda: DOC_TIME) -> TencentProvider:
    return TencentProvider(SETTINGS, mock_client(handler), clock=clock)


def answer(code: int | str, errmsg: str = "error", **extra: Any) -> str:
    return json.dumps({"result": code, "errmsg": errmsg, **extra})


def at_beijing(text: str) -> Callable[[], float]:
    stamp = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING).timestamp()
    return lambda: stamp


# -- signature ---------------------------------------------------------------------------------------


def test_sig_matches_the_documents_worked_example() -> None:
    assert signature(DOC_APP_KEY, DOC_RANDOM, DOC_TIME, "13788888888") == DOC_SIG


def test_pullstatus_sig_leaves_the_mobile_out() -> None:
    assert signature(DOC_APP_KEY, DOC_RANDOM, DOC_TIME) == PULL_SIG


# -- send --------------------------------------------------------------------------------------------


def test_send_reproduces_the_documents_request_and_reads_its_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("providers.tencent.new_random", lambda: DOC_RANDOM)
    recorder = Recorder(DOC_RESPONSE)
    result = provider_for(recorder).send(SendRequest(("13788888888",), DOC_TEMPLATE))

    sent = recorder.requests[0]
    assert (sent.method, sent.url.path) == ("POST", "/v5/tlssmssvr/sendsms")
    assert recorder.query() == {"sdkappid": "1400000001", "random": DOC_RANDOM}
    assert recorder.json_body() == json.loads(DOC_REQUEST)  # field for field, tpl_id and time as numbers
    (outcome,) = result.outcomes
    assert (outcome.phone, outcome.accepted, outcome.vendor_id, outcome.code, outcome.text, outcome.fee) == (
        "13788888888", True, "xxxxxxx", "0", "OK", 1,
    )
    assert result.provider == "tencent"
    assert result.raw == json.loads(DOC_RESPONSE)


def test_each_send_uses_a_fresh_10_digit_random_signed_into_sig() -> None:
    recorder = Recorder(DOC_RESPONSE)
    provider = provider_for(recorder)
    provider.send(SendRequest(("13788888888",), DOC_TEMPLATE, bid="msg-1:0"))
    provider.send(SendRequest(("13788888888",), DOC_TEMPLATE))
    randoms = [recorder.query(i)["random"] for i in range(2)]
    assert randoms[0] != randoms[1] and all(len(r) == 10 and r.isdigit() for r in randoms)
    for i, rand in enumerate(randoms):
        assert recorder.json_body(i)["sig"] == signature(DOC_APP_KEY, rand, DOC_TIME, "13788888888")
    assert recorder.json_body(0)["ext"] == "msg-1:0"  # our bid, echoed back by Tencent


def test_billed_segments_come_from_fee() -> None:
    result = provider_for(Recorder(answer(0, "OK", fee=3, sid="8:abc"))).send(
        SendRequest(("13788888888",), DOC_TEMPLATE)
    )
    assert (result.outcomes[0].fee, result.outcomes[0].vendor_id) == (3, "8:abc")


@pytest.mark.parametrize(
    ("phone", "nationcode", "mobile"),
    [
        ("13800138000", "86", "13800138000"),
        ("+8613800138000", "86", "13800138000"),
        ("+85291234567", "852", "91234567"),
        ("+14155550100", "1", "4155550100"),
        ("+79161234567", "7", "9161234567"),
        ("+447911123456", "44", "7911123456"),
        ("+6591234567", "65", "91234567"),
        ("+97312345678", "973", "12345678"),
    ],
)
def test_international_numbers_travel_with_their_nationcode(phone: str, nationcode: str, mobile: str) -> None:
    assert split_phone(phone) == (nationcode, mobile)
    recorder = Recorder(DOC_RESPONSE)
    result = provider_for(recorder).send(SendRequest((phone,), DOC_TEMPLATE))
    body, rand = recorder.json_body(), recorder.query()["random"]
    assert body["tel"] == {"mobile": mobile, "nationcode": nationcode}
    assert body["sig"] == signature(DOC_APP_KEY, rand, DOC_TIME, mobile)  # signed without the country code
    assert result.outcomes[0].phone == phone


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (SendRequest(("12345",), DOC_TEMPLATE), "1016"),
        (SendRequest(("+8612345678",), DOC_TEMPLATE), "1016"),
        (SendRequest(("13800138000",), RenderedTemplate("SMS_19", ("1",))), "1014"),
        (SendRequest(("13800138000", "13800138001"), DOC_TEMPLATE), "BATCH_SIZE"),
        (SendRequest((), DOC_TEMPLATE), "BATCH_SIZE"),
    ],
)
def test_what_tencent_would_refuse_is_refused_before_any_call(request_: SendRequest, code: str) -> None:
    recorder = Recorder(DOC_RESPONSE)
    with pytest.raises(RequestRejectedError) as raised:
        provider_for(recorder).send(request_)
    assert raised.value.code == code
    assert recorder.requests == []
    assert "12345678" not in str(raised.value)  # no phone number in the message


# -- codes -------------------------------------------------------------------------------------------


def test_every_documented_code_is_classified_as_intended() -> None:
    assert set(CODES) == set(DOCUMENTED)
    assert {code: CODES[code] for code in DOCUMENTED} == DOCUMENTED
    assert {"1026"} == PER_RECIPIENT


@pytest.mark.parametrize("code", sorted(set(DOCUMENTED) - PER_RECIPIENT))
def test_each_code_raises_its_class_with_the_vendors_code_and_text(code: str) -> None:
    body = answer(int(code), "vendor says no")
    with pytest.raises(ProviderError) as raised:
        provider_for(Recorder(body)).send(SendRequest(("13788888888",), DOC_TEMPLATE))
    error = raised.value
    assert (type(error), error.code, error.text) == (DOCUMENTED[code], code, "vendor says no")
    assert error.provider == "tencent"
    assert error.raw == json.loads(body)
    assert DOC_APP_KEY not in str(error) and "13788888888" not in str(error)


def test_repeated_content_to_one_number_is_a_refused_outcome_not_an_exception() -> None:
    result = provider_for(Recorder(answer(1026, "same content too often"))).send(
        SendRequest(("13788888888",), DOC_TEMPLATE)
    )
    (outcome,) = result.outcomes
    assert (outcome.accepted, outcome.code, outcome.text, outcome.vendor_id) == (
        False, "1026", "same content too often", "",
    )


def test_an_unknown_code_is_permanent_for_the_request() -> None:
    with pytest.raises(RequestRejectedError) as raised:
        provider_for(Recorder(answer(1099))).send(SendRequest(("13788888888",), DOC_TEMPLATE))
    assert type(raised.value) is RequestRejectedError and raised.value.code == "1099"


@pytest.mark.parametrize(
    ("code", "now", "wait_s"),
    [
        ("1023", "2024-05-01 12:00:00", 30.0),
        ("1024", "2024-05-01 12:00:00", 3600.0),
        ("1025", "2024-05-01 23:00:00", 3600.0),  # daily caps: until Beijing midnight
        ("1022", "2024-05-01 00:30:00", 23.5 * 3600),
        ("1029", "2024-05-01 22:30:00", 9.5 * 3600),  # marketing quiet hours: until 08:00 Beijing
        ("1029", "2024-05-01 06:00:00", 2 * 3600.0),
    ],
)
def test_rate_limits_say_how_long_to_wait(code: str, now: str, wait_s: float) -> None:
    with pytest.raises(RateLimitedError) as raised:
        provider = provider_for(Recorder(answer(code)), clock=at_beijing(now))
        provider.send(SendRequest(("13788888888",), DOC_TEMPLATE))
    assert (raised.value.code, raised.value.retry_after_s) == (code, wait_s)


@pytest.mark.parametrize(
    ("body", "status", "error", "code"),
    [
        # The generic unreadable answers (not JSON, empty, not an object, no code, a null code, a 404 page)
        # are checked for every vendor in test_contract.py; these are this vendor's own.
        # Unreadable on HTTP 2xx: Tencent may have sent the message, so ambiguous (never resent).
        ('{"result": false, "errmsg": "OK", "sid": "1"}', 200, AmbiguousError, "MALFORMED"),
        ('{"result": "OK", "sid": "1"}', 200, AmbiguousError, "MALFORMED"),
        # Unreadable on any other status: Tencent did not take the call.
        ("bad gateway", 502, TransientError, "HTTP502"),
    ],
)
def test_malformed_answers(body: str, status: int, error: type[ProviderError], code: str) -> None:
    recorder = Recorder(body, status=status)
    with pytest.raises(ProviderError) as raised:
        provider_for(recorder).send(SendRequest(("13788888888",), DOC_TEMPLATE))
    assert (type(raised.value), raised.value.code) == (error, code)
    assert len(recorder.requests) == 1  # never resent by the adapter


def test_a_result_sent_as_a_string_is_read_like_a_number() -> None:
    request = SendRequest(("13788888888",), DOC_TEMPLATE)
    result = provider_for(Recorder(answer("0", "OK", sid="s1"))).send(request)
    assert (result.outcomes[0].accepted, result.outcomes[0].vendor_id) == (True, "s1")


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (httpx.ConnectError("refused"), NotSentError),
        (httpx.ReadTimeout("slow"), AmbiguousError),
        (httpx.RemoteProtocolError("reset"), AmbiguousError),
    ],
)
def test_transport_failures_map_to_the_error_tree(exc: Exception, error: type[ProviderError]) -> None:
    with pytest.raises(error):
        provider_for(raising(exc)).send(SendRequest(("13788888888",), DOC_TEMPLATE))


# -- pullstatus --------------------------------------------------------------------------------------


def test_receipts_are_pulled_with_a_sig_without_mobile() -> None:
    items = [
        {"user_receive_time": "2015-10-17 08:03:04", "nationcode": "86", "mobile": "13788888888",
         "report_status": "SUCCESS", "errmsg": "DELIVRD", "description": "用户短信送达成功", "sid": "s1"},
        {"user_receive_time": "2015-10-17 08:03:05", "nationcode": "852", "mobile": "91234567",
         "report_status": "FAIL", "errmsg": "MK:0001", "description": "未送达", "sid": "s2"},
    ]
    recorder = Recorder(answer(0, "ok", count=2, data=items))
    receipts = provider_for(recorder).poll_receipts()

    assert recorder.requests[0].url.path == "/v5/tlssmssvr/pullstatus"
    rand = recorder.query()["random"]
    assert recorder.json_body() == {
        "max": 100, "sig": signature(DOC_APP_KEY, rand, DOC_TIME), "time": DOC_TIME, "type": 0,
    }
    assert [(r.phone, r.state, r.code, r.vendor_id, r.at) for r in receipts] == [
        ("13788888888", DeliveryState.DELIVERED, "DELIVRD", "s1", "2015-10-17 08:03:04"),
        ("+85291234567", DeliveryState.UNDELIVERED, "MK:0001", "s2", "2015-10-17 08:03:05"),
    ]
    assert receipts[0].raw == items[0]


def test_replies_are_pulled_with_type_1() -> None:
    items = [{"extend": "", "mobile": "13788888888", "nationcode": "86", "sign": "腾讯云",
              "text": "TD", "time": 1457336869}]
    recorder = Recorder(answer(0, "ok", count=1, data=items))
    (reply,) = provider_for(recorder).poll_inbound()
    assert recorder.json_body()["type"] == 1
    assert (reply.phone, reply.content, reply.at) == ("13788888888", "TD", "1457336869")


def test_pull_failures_raise_their_class() -> None:
    with pytest.raises(ConfigError) as raised:
        provider_for(Recorder(answer(1001, "sig error"))).poll_receipts()
    assert raised.value.code == "1001"
    with pytest.raises(TransientError, match="not a list") as malformed:  # a query: asking again is safe
        provider_for(Recorder(answer(0, "ok", data={"x": 1}))).poll_receipts()
    assert (type(malformed.value), malformed.value.code) == (TransientError, "MALFORMED")


def test_there_is_no_balance_query() -> None:
    with pytest.raises(UnsupportedFeature):
        provider_for(Recorder(DOC_RESPONSE)).balance()


# -- round trips with the simulator over HTTP ----------------------------------------------------------


def otp(phone: str) -> SendRequest:
    return SendRequest((phone,), RenderedTemplate("7839", ("1234",)))


class _SdkHttpClient(HTTPSimpleClient):  # type: ignore[misc]
    """The SDK's own HTTP client with only its answer decoding replaced: qcloudsms_py 0.1.4 decodes with
    ``json.loads(body, encoding=...)``, an argument Python 3.9 removed, so every answer fails to decode."""

    def fetch(self, req: HTTPRequest) -> HTTPResponse:
        res = super().fetch(req)
        return _SdkResponse(res.request, res.code, res.body, res.headers, res.reason)


class _SdkResponse(HTTPResponse):  # type: ignore[misc]
    def json(self) -> Any:
        return json.loads(self.body)


def test_tencents_own_sdk_is_accepted_by_the_simulator(
    demo_sim: SimulatorServer, demo_settings: Settings
) -> None:
    section = demo_settings.tencent
    appid, appkey = int(section.sdk_app_id), section.app_key.get_secret_value()
    sender = SmsSingleSender(appid, appkey, httpclient=_SdkHttpClient())
    answer_ = sender.send_with_param(
        "86", "13800138000", 7839, ["1234", "5"], sign=section.sign, extend="", ext="sdk",
        url=demo_sim.url + SEND_PATH,
    )
    assert answer_["result"] == 0, answer_
    assert (answer_["errmsg"], answer_["ext"], answer_["fee"]) == ("OK", "sdk", 1)
    assert demo_sim.state.counters("tencent").received == {"13800138000": 1}

    puller = SmsStatusPuller(appid, appkey, httpclient=_SdkHttpClient())
    pulled = puller.pull_callback(10, url=demo_sim.url + "/v5/tlssmssvr/pullstatus")
    assert (pulled["result"], pulled["count"]) == (0, 1)
    assert pulled["data"][0]["sid"] == answer_["sid"] and pulled["data"][0]["report_status"] == "SUCCESS"


def test_the_sdk_with_a_wrong_appkey_gets_1001(demo_sim: SimulatorServer, demo_settings: Settings) -> None:
    appid = int(demo_settings.tencent.sdk_app_id)
    sender = SmsSingleSender(appid, "not-the-key", httpclient=_SdkHttpClient())
    answer_ = sender.send_with_param("86", "13800138000", 7839, ["1"], url=demo_sim.url + SEND_PATH)
    assert answer_["result"] == 1001
    assert demo_sim.state.counters("tencent").received == {}


def test_round_trip_send_then_receipts_once_only(demo_sim: SimulatorServer, demo_settings: Settings) -> None:
    provider = sim_provider(TencentProvider, demo_sim, demo_settings)
    phones = ("13800138000", "+85291234567")
    sids = {phone: provider.send(otp(phone)).outcomes[0].vendor_id for phone in phones}
    assert all(sids.values()) and len(set(sids.values())) == 2
    assert demo_sim.state.counters("tencent").received == {"13800138000": 1, "+85291234567": 1}
    receipts = provider.poll_receipts()
    assert {(r.phone, r.vendor_id, r.state) for r in receipts} == {
        (phone, sid, DeliveryState.DELIVERED) for phone, sid in sids.items()
    }
    assert provider.poll_receipts() == ()


def test_round_trip_replies(demo_sim: SimulatorServer, demo_settings: Settings) -> None:
    demo_sim.state.add_inbound("tencent", {"phone": "+85291234567", "content": "TD"})
    provider = sim_provider(TencentProvider, demo_sim, demo_settings)
    replies = provider.poll_inbound()
    assert [(m.phone, m.content) for m in replies] == [("+85291234567", "TD")]
    assert provider.poll_inbound() == ()


def test_round_trip_one_number_twice_within_30_s_is_1023(
    demo_sim: SimulatorServer, demo_settings: Settings
) -> None:
    provider = sim_provider(TencentProvider, demo_sim, demo_settings)
    provider.send(otp("13800138000"))
    with pytest.raises(RateLimitedError) as raised:
        provider.send(otp("13800138000"))
    assert (raised.value.code, raised.value.retry_after_s) == ("1023", 30.0)
    provider.send(otp("13800138001"))  # another number is not affected
    assert demo_sim.state.counters("tencent").received == {"13800138000": 1, "13800138001": 1}


def test_round_trip_hourly_and_daily_caps(
    demo_sim: SimulatorServer, demo_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [at_beijing("2024-05-01 09:00:00")()]
    monkeypatch.setattr(demo_sim.app.state.vendors["tencent"], "clock", lambda: now[0])
    provider = sim_provider(TencentProvider, demo_sim, demo_settings, clock=lambda: now[0])

    def send_after(step_s: float) -> None:
        now[0] += step_s
        provider.send(otp("13800138000"))

    for _ in range(5):
        send_after(31)
    with pytest.raises(RateLimitedError) as hourly:
        send_after(31)
    assert hourly.value.code == "1024"
    for _ in range(5):
        send_after(3600)
    with pytest.raises(RateLimitedError) as daily:
        send_after(3600)
    assert daily.value.code == "1025"
    assert demo_sim.state.counters("tencent").received == {"13800138000": 10}
    send_after(11 * 3600)  # the next Beijing day
    assert demo_sim.state.counters("tencent").received == {"13800138000": 11}


def test_simulator_refuses_several_numbers_in_one_sendsms(
    demo_sim: SimulatorServer, demo_settings: Settings
) -> None:
    """Our adapter never does this; a client that did (with a correct sig) gets 1016."""
    section = demo_settings.tencent
    now, rand = int(time.time()), "1234567890"
    tel = [{"mobile": "13800138000", "nationcode": "86"}, {"mobile": "13800138001", "nationcode": "86"}]
    body = {
        "tel": tel, "tpl_id": 7839, "params": [], "sign": section.sign, "time": now, "ext": "", "extend": "",
        "sig": signature(section.app_key.get_secret_value(), rand, now, "13800138000,13800138001"),
    }
    query = {"sdkappid": section.sdk_app_id, "random": rand}
    reply = httpx.post(demo_sim.url + SEND_PATH, params=query, json=body)
    assert reply.json()["result"] == 1016
    assert demo_sim.state.counters("tencent").received == {}


@pytest.mark.parametrize(
    ("update", "code"),
    [
        ({"app_key": SecretStr("wrong")}, "1001"),
        ({"sdk_app_id": "1400999999"}, "1001"),
        ({"sign": "别的签名"}, "1012"),
        ({"clock": lambda: time.time() - 700}, "1021"),  # our clock 700 s behind: over the 10-minute window
    ],
)
def test_round_trip_refusals_are_config_errors(
    demo_sim: SimulatorServer, demo_settings: Settings, update: dict[str, Any], code: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        sim_provider(TencentProvider, demo_sim, demo_settings, **update).send(otp("13800138000"))
    assert (type(raised.value), raised.value.code) == (ConfigError, code)
    assert demo_sim.state.counters("tencent").received == {}


def test_round_trip_unknown_template_and_exhausted_package(
    demo_sim: SimulatorServer, demo_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo_sim.state, "config", replace(demo_sim.state.config, known_templates=("7839",)))
    provider = sim_provider(TencentProvider, demo_sim, demo_settings)
    with pytest.raises(RequestRejectedError) as template:
        provider.send(SendRequest(("13800138000",), RenderedTemplate("1", ("1234",))))
    assert template.value.code == "1014"
    monkeypatch.setattr(demo_sim.app.state.vendors["tencent"], "balance", 0)
    with pytest.raises(BalanceError) as balance:
        provider.send(otp("13800138000"))
    assert balance.value.code == "1031"
    assert demo_sim.state.counters("tencent").received == {}


@pytest.mark.parametrize(("code", "error"), [("1008", TransientError), ("60008", TransientError)])
def test_round_trip_injected_transient_codes(
    demo_sim: SimulatorServer, demo_settings: Settings, code: str, error: type[ProviderError]
) -> None:
    demo_sim.state.set_faults("tencent", FaultPlan(codes=(code,), code_rate=1.0))
    with pytest.raises(error) as raised:
        sim_provider(TencentProvider, demo_sim, demo_settings).send(otp("13800138000"))
    assert (type(raised.value), raised.value.code) == (error, code)
    assert demo_sim.state.counters("tencent").received == {}




# -- hostile answers (issue 6) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fee", ["1e400", "NaN", "Infinity", "-1", "1.5", '"lots"', "[1]", "null", "1" + "0" * 400, "101"]
)
def test_an_unreadable_fee_is_unknown_and_the_send_still_accepted(fee: str) -> None:
    # 1e400 raised OverflowError (issue 10). result 0 with a sid is the vendor's word: the fee is only ours.
    body = f'{{"result": 0, "errmsg": "OK", "ext": "", "fee": {fee}, "sid": "8:abc"}}'
    (outcome,) = provider_for(Recorder(body)).send(SendRequest(("13788888888",), DOC_TEMPLATE)).outcomes
    assert (outcome.accepted, outcome.vendor_id, outcome.code, outcome.fee) == (True, "8:abc", "0", None)


@pytest.mark.parametrize("sid", ["", " ", "null", "[]", '{"id": 1}', "true", "1.5"])
def test_a_success_without_a_sid_is_accepted_with_code_no_sid(sid: str) -> None:
    # It can never be matched to a receipt: the settle sweep fails it with NO_RECEIPT after the window.
    body = '{"result": 0, "errmsg": "OK", "fee": 1' + (f', "sid": {sid}' if sid.strip() else "") + "}"
    result = provider_for(Recorder(body)).send(SendRequest(("13788888888",), DOC_TEMPLATE))
    (outcome,) = result.outcomes
    assert (outcome.accepted, outcome.vendor_id, outcome.code, outcome.fee) == (True, "", NO_SID, 1)
    assert result.batch_id == ""


def test_receipt_statuses_map_through_the_table() -> None:
    items = [
        {"mobile": "13788888888", "nationcode": "86", "report_status": status, "errmsg": errmsg, "sid": "s"}
        for status, errmsg in [("SUCCESS", "DELIVRD"), ("FAIL", "MK:0001"), ("PENDING", ""), (None, None)]
    ]
    receipts = provider_for(Recorder(answer(0, "ok", count=4, data=items))).poll_receipts()
    assert [(r.state, r.code) for r in receipts] == [
        (DeliveryState.DELIVERED, "DELIVRD"), (DeliveryState.UNDELIVERED, "MK:0001"),
        (DeliveryState.UNKNOWN, "PENDING"), (DeliveryState.UNKNOWN, ""),
    ]


def test_a_template_id_too_long_for_a_number_is_refused_before_any_call() -> None:
    recorder = Recorder(DOC_RESPONSE)
    with pytest.raises(RequestRejectedError) as raised:  # int() of 5000 digits raised ValueError
        provider_for(recorder).send(SendRequest(("13788888888",), RenderedTemplate("9" * 5000)))
    assert (raised.value.code, recorder.requests) == ("1014", [])
