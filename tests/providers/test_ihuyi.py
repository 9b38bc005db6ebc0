"""Ihuyi adapter: the document's own request and code table through a MockTransport, then round trips
with the simulator over HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from config.settings import IhuyiSettings, Settings
from providers.base import RenderedTemplate, SendRequest
from providers.errors import (
    AmbiguousError,
    BalanceError,
    ConfigError,
    NotSentError,
    ProviderError,
    RateLimitedError,
    RequestRejectedError,
    TransientError,
)
from providers.ihuyi import (
    CODES,
    NO_SMSID,
    PER_NUMBER,
    IhuyiProvider,
    balance_password,
    content_problem,
    submit_password,
)
from providers.simulator.core import FaultPlan
from providers.simulator.server import SimulatorServer
from tests.providers.helpers import Handler, Recorder, mock_client, raising, sim_provider

# -- shared/seeds/003_d1ebdae77096c094.txt ------------------------------------------------------------

# The document's request example: method=Submit&account=APIID&password=APIKEY&mobile=手机号码&content=...
DOC_CONTENT = "您的验证码是:1234。请不要把验证码泄露给其他人。"  # the document's default test template
# The document's 响应示例 is empty; this answer has exactly the fields of its SubmitResult table.
DOC_OK = '{"code": 2, "msg": "提交成功", "smsid": "14627523471891234"}'
# Every code of the document's code/msg table, and the exact class we mean each to raise.
DOCUMENTED: dict[str, type[ProviderError]] = {
    "0": TransientError,
    "400": ConfigError,
    "401": ConfigError,
    "402": ConfigError,
    "403": RequestRejectedError,
    "4030": RequestRejectedError,  # per number: an outcome
    "404": RequestRejectedError,
    "405": ConfigError,
    "4050": ConfigError,
    "40501": ConfigError,  # only after the one fresh retry
    "40502": ConfigError,
    "4051": BalanceError,
    "4052": ConfigError,
    "406": RequestRejectedError,
    "407": RequestRejectedError,
    "4070": ConfigError,
    "4071": ConfigError,
    "4072": ConfigError,
    "40722": RequestRejectedError,
    "4073": RequestRejectedError,
    "4074": RequestRejectedError,
    "4075": ConfigError,
    "408": RequestRejectedError,  # per number
    "4080": RateLimitedError,
    "4082": RequestRejectedError,  # per number
    "4085": RequestRejectedError,  # per number
}
# md5 of account + apikey + mobile + content + time, computed with coreutils md5sum (UTF-8):
VECTOR_ACCOUNT, VECTOR_KEY, VECTOR_TIME = "C00000001", "demo-ihuyi-api-key", "1457336869"
VECTOR_SUBMIT = "9cf7dc38b8a792e4ff1864fba5d24e74"
VECTOR_GETNUM = "1ef0c3d3389c1e094ce47dd21dbd87d5"

PHONE = "13800138000"
PLAIN = IhuyiSettings.model_validate(
    {"base_url": "https://ihuyi.test", "account": "APIID", "api_key": "APIKEY", "dynamic_password": False}
)
DYNAMIC = PLAIN.model_copy(
    update={"account": VECTOR_ACCOUNT, "api_key": SecretStr(VECTOR_KEY), "dynamic_password": True}
)


def provider_for(
    handler: Handler, settings: IhuyiSettings = PLAIN, clock: Callable[[], float] = lambda: int(VECTOR_TIME)
) -> IhuyiProvider:
    return IhuyiProvider(settings, mock_client(handler), clock=clock)


def text(content: str = DOC_CONTENT, *phones: str) -> SendRequest:
    return SendRequest(phones or (PHONE,), RenderedTemplate("", text=content))


def answer(code: int | str, msg: str = "失败", **extra: Any) -> str:
    return json.dumps({"code": code, "msg": msg, **extra}, ensure_ascii=False)


# -- passwords -----------------------------------------------------------------------------------------


def test_dynamic_passwords_match_independently_computed_vectors() -> None:
    assert submit_password(VECTOR_ACCOUNT, VECTOR_KEY, PHONE, DOC_CONTENT, VECTOR_TIME) == VECTOR_SUBMIT
    assert balance_password(VECTOR_ACCOUNT, VECTOR_KEY, VECTOR_TIME) == VECTOR_GETNUM


# -- send --------------------------------------------------------------------------------------------


def test_send_posts_the_documents_request_with_the_apikey_as_password() -> None:
    recorder = Recorder(DOC_OK)
    result = provider_for(recorder).send(text())

    sent = recorder.requests[0]
    assert (sent.method, sent.url.path) == ("POST", "/webservice/sms.php")
    assert sent.url.params["method"] == "Submit"
    assert sent.headers["content-type"] == "application/x-www-form-urlencoded"
    assert recorder.form() == {
        "account": "APIID", "password": "APIKEY", "mobile": PHONE, "content": DOC_CONTENT, "format": "json",
    }
    (outcome,) = result.outcomes
    assert (outcome.phone, outcome.accepted, outcome.vendor_id, outcome.code, outcome.text) == (
        PHONE, True, "14627523471891234", "2", "提交成功",
    )
    assert (result.provider, result.raw) == ("ihuyi", json.loads(DOC_OK))


def test_send_with_a_dynamic_password_sends_md5_and_a_10_digit_time() -> None:
    recorder = Recorder(DOC_OK)
    provider_for(recorder, DYNAMIC).send(text())
    assert recorder.form() == {
        "account": VECTOR_ACCOUNT, "password": VECTOR_SUBMIT, "mobile": PHONE, "content": DOC_CONTENT,
        "time": VECTOR_TIME, "format": "json",
    }


def test_an_expired_dynamic_password_is_regenerated_once_and_resent() -> None:
    now = [1457336869.0]

    def clock() -> float:
        now[0] += 5
        return now[0]

    recorder = Recorder(answer(40501, "动态密码已过期"), DOC_OK)
    result = provider_for(recorder, DYNAMIC, clock=clock).send(text())
    assert len(recorder.requests) == 2
    first, second = recorder.form(0), recorder.form(1)
    assert first["time"] != second["time"]
    expected = submit_password(VECTOR_ACCOUNT, VECTOR_KEY, PHONE, DOC_CONTENT, second["time"])
    assert second["password"] == expected
    assert result.outcomes[0].accepted and result.outcomes[0].vendor_id == "14627523471891234"


def test_a_password_expired_twice_is_a_config_error_after_exactly_one_retry() -> None:
    recorder = Recorder(answer(40501, "动态密码已过期"))
    with pytest.raises(ConfigError) as raised:
        provider_for(recorder, DYNAMIC).send(text())
    assert raised.value.code == "40501" and len(recorder.requests) == 2


def test_without_dynamic_passwords_40501_is_not_retried() -> None:
    recorder = Recorder(answer(40501))
    with pytest.raises(ConfigError):
        provider_for(recorder).send(text())
    assert len(recorder.requests) == 1


@pytest.mark.parametrize(
    ("content", "code", "reason"),
    [
        ("验" * 301, "4073", "content is 301 characters, at most 300"),
        ("您的验证码是1234😀", "4074", "content holds an emoji (U+1F600)"),
        ("好的👍🏻", "4074", "content holds an emoji (U+1F44D)"),
        ("天气☀️晴", "4074", "content holds an emoji (U+FE0F)"),  # ☀ is text; U+FE0F makes it emoji
        ("好评⭐", "4074", "content holds an emoji (U+2B50)"),
        ("已完成✅", "4074", "content holds an emoji (U+2705)"),
        ("", "404", "content is empty"),
    ],
)
def test_content_the_vendor_would_refuse_is_refused_before_any_call(
    content: str, code: str, reason: str
) -> None:
    recorder = Recorder(DOC_OK)
    with pytest.raises(RequestRejectedError) as raised:
        provider_for(recorder).send(text(content))
    assert (raised.value.code, recorder.requests) == (code, [])
    assert reason in str(raised.value)


@pytest.mark.parametrize("content", ["验" * 300, "【互亿无线】您的验证码是:1234。★☆☀♥ ¥100 ①"])
def test_content_at_the_limits_is_sent(content: str) -> None:
    assert content_problem(content) is None
    recorder = Recorder(DOC_OK)
    provider_for(recorder).send(text(content))
    assert recorder.form()["content"] == content


@pytest.mark.parametrize(
    ("phones", "code"),
    [(("+85291234567",), "406"), (("1380013800",), "406"), ((PHONE, "13800138001"), "BATCH_SIZE"),
     ((), "BATCH_SIZE")],
)
def test_numbers_the_vendor_would_refuse_are_refused_before_any_call(
    phones: tuple[str, ...], code: str
) -> None:
    recorder = Recorder(DOC_OK)
    with pytest.raises(RequestRejectedError) as raised:
        provider_for(recorder).send(SendRequest(phones, RenderedTemplate("", text=DOC_CONTENT)))
    assert (raised.value.code, recorder.requests) == (code, [])


# -- codes -------------------------------------------------------------------------------------------


def test_every_documented_code_is_classified_as_intended() -> None:
    assert set(CODES) == set(DOCUMENTED)
    assert {code: CODES[code] for code in DOCUMENTED} == DOCUMENTED
    assert {"4030", "408", "4082", "4085"} == PER_NUMBER


@pytest.mark.parametrize("code", sorted(set(DOCUMENTED) - PER_NUMBER))
def test_each_code_raises_its_class_with_the_vendors_code_and_text(code: str) -> None:
    body = answer(int(code), "厂商的说明", smsid="0")
    with pytest.raises(ProviderError) as raised:
        provider_for(Recorder(body)).send(text())
    error = raised.value
    assert (type(error), error.code, error.text) == (DOCUMENTED[code], code, "厂商的说明")
    assert error.provider == "ihuyi"
    assert error.raw == json.loads(body)
    assert "APIKEY" not in str(error) and PHONE not in str(error)


def test_more_than_one_a_second_says_wait_one_second() -> None:
    with pytest.raises(RateLimitedError) as raised:
        provider_for(Recorder(answer(4080))).send(text())
    assert raised.value.retry_after_s == 1.0


@pytest.mark.parametrize("code", sorted(PER_NUMBER))
def test_per_number_refusals_are_outcomes_not_exceptions(code: str) -> None:
    result = provider_for(Recorder(answer(int(code), "号码受限", smsid="0"))).send(text())
    (outcome,) = result.outcomes
    assert (outcome.phone, outcome.accepted, outcome.code, outcome.text, outcome.vendor_id) == (
        PHONE, False, code, "号码受限", "",
    )


def test_code_as_a_string_is_read_the_same() -> None:
    result = provider_for(Recorder(answer("2", "提交成功", smsid="7"))).send(text())
    assert result.outcomes[0].accepted and result.outcomes[0].vendor_id == "7"


@pytest.mark.parametrize(
    ("body", "status", "error", "code"),
    [
        # The generic unreadable answers (not JSON, empty, not an object, no code, a null code, a 404 page)
        # are checked for every vendor in test_contract.py; these are this vendor's own.
        # Unreadable on HTTP 2xx (the XML default, say): Ihuyi may have sent it, so ambiguous (never resent).
        ("<SubmitResult><code>2</code></SubmitResult>", 200, AmbiguousError, "MALFORMED"),
        ('{"code": true, "msg": "提交成功", "smsid": "1"}', 200, AmbiguousError, "MALFORMED"),
        # Unreadable on any other status: Ihuyi did not take the call.
        ("busy", 503, TransientError, "HTTP503"),
    ],
)
def test_malformed_answers(body: str, status: int, error: type[ProviderError], code: str) -> None:
    recorder = Recorder(body, status=status)
    with pytest.raises(ProviderError) as raised:
        provider_for(recorder, DYNAMIC).send(text())
    assert (type(raised.value), raised.value.code) == (error, code)
    assert len(recorder.requests) == 1  # never resent, not even by the expired-password retry


def test_a_malformed_answer_to_the_expired_password_retry_is_ambiguous() -> None:
    recorder = Recorder(answer(40501, "动态密码已过期"), "<SubmitResult><code>2</code></SubmitResult>")
    with pytest.raises(AmbiguousError) as raised:
        provider_for(recorder, DYNAMIC).send(text())
    assert (raised.value.code, len(recorder.requests)) == ("MALFORMED", 2)


@pytest.mark.parametrize(
    ("exc", "error"),
    [(httpx.ConnectTimeout("slow"), NotSentError), (httpx.ReadTimeout("slow"), AmbiguousError)],
)
def test_transport_failures_map_to_the_error_tree(exc: Exception, error: type[ProviderError]) -> None:
    with pytest.raises(error):
        provider_for(raising(exc)).send(text())


# -- balance -----------------------------------------------------------------------------------------


def test_balance_uses_getnum_with_its_own_dynamic_password() -> None:
    body = answer(2, "查询成功", num=398)
    recorder = Recorder(body)
    (balance,) = provider_for(recorder, DYNAMIC).balance()
    assert recorder.requests[0].url.params["method"] == "GetNum"
    assert recorder.form() == {
        "account": VECTOR_ACCOUNT, "password": VECTOR_GETNUM, "time": VECTOR_TIME, "format": "json",
    }
    assert (balance.provider, balance.value, balance.raw) == ("ihuyi", 398.0, json.loads(body))


def test_balance_failures() -> None:
    with pytest.raises(ConfigError) as raised:
        provider_for(Recorder(answer(405, "API ID 或 API KEY 不正确"))).balance()
    assert raised.value.code == "405"
    # A query: asking again sends nothing, so an unreadable answer is transient.
    with pytest.raises(TransientError, match="without a finite num") as malformed:
        provider_for(Recorder(answer(2, "查询成功", num=None))).balance()
    assert (type(malformed.value), malformed.value.code) == (TransientError, "MALFORMED")


# -- round trips with the simulator over HTTP ----------------------------------------------------------


@pytest.mark.parametrize("dynamic", [True, False])
def test_round_trip_send_queues_a_receipt(
    demo_sim: SimulatorServer, demo_settings: Settings, dynamic: bool
) -> None:
    result = sim_provider(IhuyiProvider, demo_sim, demo_settings, dynamic_password=dynamic).send(text())
    (outcome,) = result.outcomes
    assert outcome.accepted and outcome.vendor_id.isdigit()
    assert demo_sim.state.counters("ihuyi").received == {PHONE: 1}
    (receipt,) = demo_sim.state.take_receipts("ihuyi", 10)
    assert (receipt["mobilephone"], receipt["smsid"], receipt["code"]) == (PHONE, outcome.vendor_id, "1")
    assert set(receipt) == {"code", "msg", "mobilephone", "smsid", "report_time"}


def test_round_trip_twice_in_one_second_is_4080(demo_sim: SimulatorServer, demo_settings: Settings) -> None:
    provider = sim_provider(IhuyiProvider, demo_sim, demo_settings)
    provider.send(text())
    with pytest.raises(RateLimitedError) as raised:
        provider.send(text())
    assert (raised.value.code, raised.value.retry_after_s) == ("4080", 1.0)
    assert provider.send(text(DOC_CONTENT, "13800138001")).outcomes[0].accepted  # another number is fine
    assert demo_sim.state.counters("ihuyi").received == {PHONE: 1, "13800138001": 1}


def test_round_trip_a_sixth_message_in_a_day_is_a_refused_outcome(
    demo_sim: SimulatorServer, demo_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1714525200.0]  # 2024-05-01 09:00 Beijing: the six sends stay inside one Beijing day
    monkeypatch.setattr(demo_sim.app.state.vendors["ihuyi"], "clock", lambda: now[0])
    provider = sim_provider(IhuyiProvider, demo_sim, demo_settings, clock=lambda: now[0])
    outcomes = []
    for _ in range(6):
        now[0] += 2
        outcomes.append(provider.send(text()).outcomes[0])
    assert [o.accepted for o in outcomes] == [True] * 5 + [False]
    assert outcomes[-1].code == "4082"
    assert demo_sim.state.counters("ihuyi").received == {PHONE: 5}


@pytest.mark.parametrize(
    ("content", "code"), [("验" * 301, 4073), ("验证码1234😀", 4074), ("验" * 300, 2)]
)
def test_simulator_refuses_long_or_emoji_content(
    demo_sim: SimulatorServer, demo_settings: Settings, content: str, code: int
) -> None:
    """Our adapter never sends these; a client that did gets the documented codes."""
    section = demo_settings.ihuyi
    form = {"account": section.account, "password": section.api_key.get_secret_value(),
            "mobile": PHONE, "content": content, "format": "json"}
    reply = httpx.post(demo_sim.url + "/webservice/sms.php", params={"method": "Submit"}, data=form).json()
    assert reply["code"] == code
    assert demo_sim.state.counters("ihuyi").received == ({PHONE: 1} if code == 2 else {})


def test_simulator_answers_xml_by_default_and_serves_get(
    demo_sim: SimulatorServer, demo_settings: Settings
) -> None:
    section = demo_settings.ihuyi
    params = {"method": "Submit", "account": section.account, "password": section.api_key.get_secret_value(),
              "mobile": PHONE, "content": DOC_CONTENT}
    reply = httpx.get(demo_sim.url + "/webservice/sms.php", params=params)
    assert reply.headers["content-type"].startswith("text/xml")
    assert "<SubmitResult" in reply.text and "<code>2</code>" in reply.text
    assert demo_sim.state.counters("ihuyi").received == {PHONE: 1}


@pytest.mark.parametrize(
    ("update", "code"),
    [
        ({"api_key": SecretStr("wrong"), "dynamic_password": False}, "405"),
        ({"api_key": SecretStr("wrong"), "dynamic_password": True}, "40502"),
        ({"account": "C99999999"}, "405"),
    ],
)
def test_round_trip_bad_credentials(
    demo_sim: SimulatorServer, demo_settings: Settings, update: dict[str, Any], code: str
) -> None:
    provider = sim_provider(IhuyiProvider, demo_sim, demo_settings, **update)
    with pytest.raises(ConfigError) as raised:
        provider.send(text())
    assert raised.value.code == code
    with pytest.raises(ConfigError):
        provider.balance()
    assert demo_sim.state.counters("ihuyi").received == {}


def test_round_trip_a_stale_clock_expires_the_password_even_after_the_retry(
    demo_sim: SimulatorServer, demo_settings: Settings
) -> None:
    provider = sim_provider(IhuyiProvider, demo_sim, demo_settings, clock=lambda: time.time() - 3600)
    with pytest.raises(ConfigError) as raised:
        provider.send(text())
    assert raised.value.code == "40501"
    assert demo_sim.state.counters("ihuyi").requests == 2  # regenerated and resent once, no more
    assert demo_sim.state.counters("ihuyi").received == {}


def test_round_trip_a_password_that_expired_in_flight_is_resent(
    demo_sim: SimulatorServer, demo_settings: Settings
) -> None:
    skew = demo_sim.state.config.clock_skew_s
    times = iter([time.time() - skew - 30, time.time()])  # the first time is stale by the time it lands
    result = sim_provider(IhuyiProvider, demo_sim, demo_settings, clock=lambda: next(times)).send(text())
    assert result.outcomes[0].accepted
    assert demo_sim.state.counters("ihuyi").answered_codes == {"40501": 1, "2": 1}
    assert demo_sim.state.counters("ihuyi").received == {PHONE: 1}


@pytest.mark.parametrize(("code", "error"), [("0", TransientError), ("4051", BalanceError)])
def test_round_trip_injected_codes(
    demo_sim: SimulatorServer, demo_settings: Settings, code: str, error: type[ProviderError]
) -> None:
    demo_sim.state.set_faults("ihuyi", FaultPlan(codes=(code,), code_rate=1.0))
    with pytest.raises(error) as raised:
        sim_provider(IhuyiProvider, demo_sim, demo_settings).send(text())
    assert (type(raised.value), raised.value.code) == (error, code)
    assert demo_sim.state.counters("ihuyi").received == {}


@pytest.mark.parametrize("dynamic", [True, False])
def test_round_trip_balance_counts_down(
    demo_sim: SimulatorServer, demo_settings: Settings, dynamic: bool
) -> None:
    provider = sim_provider(IhuyiProvider, demo_sim, demo_settings, dynamic_password=dynamic)
    (before,) = provider.balance()
    provider.send(text())
    (after,) = provider.balance()
    assert before.value - after.value == 1


def test_round_trip_out_of_credit_is_4051(
    demo_sim: SimulatorServer, demo_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo_sim.app.state.vendors["ihuyi"], "balance", 0)
    with pytest.raises(BalanceError) as raised:
        sim_provider(IhuyiProvider, demo_sim, demo_settings).send(text())
    assert raised.value.code == "4051"
    assert demo_sim.state.counters("ihuyi").received == {}


# -- hostile answers (issue 6) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "num", ["NaN", "Infinity", "1e400", '"nan"', '"inf"', "1" + "0" * 400, '"398条"', "true"]
)
def test_a_balance_that_is_not_a_finite_number_is_a_transient_malformed_answer(num: str) -> None:
    body = f'{{"code": 2, "msg": "查询成功", "num": {num}}}'
    with pytest.raises(TransientError) as raised:
        provider_for(Recorder(body)).balance()
    assert (type(raised.value), raised.value.code) == (TransientError, "MALFORMED")


@pytest.mark.parametrize("smsid", ['"0"', '""', "null", "[]", "0.5"])
def test_a_success_without_a_smsid_is_accepted_with_code_no_smsid(smsid: str) -> None:
    body = f'{{"code": 2, "msg": "提交成功", "smsid": {smsid}}}'
    request = SendRequest((PHONE,), RenderedTemplate("", text=DOC_CONTENT))
    (outcome,) = provider_for(Recorder(body)).send(request).outcomes
    assert (outcome.accepted, outcome.vendor_id, outcome.code) == (True, "", NO_SMSID)


def test_an_expired_balance_password_is_signed_again_once() -> None:
    recorder = Recorder(answer(40501, "动态密码已过期"), answer(2, "查询成功", num=398))
    (balance,) = provider_for(recorder, DYNAMIC).balance()
    assert (balance.value, len(recorder.requests)) == (398.0, 2)
