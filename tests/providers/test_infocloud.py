"""Infocloud adapter: signing (the seed's own strings), the code table, bodies, and the simulator round
trip."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx
import pytest

from config.settings import InfocloudSettings
from providers.base import DeliveryState, RenderedTemplate, SendRequest
from providers.errors import (
    AmbiguousError,
    BalanceError,
    ConfigError,
    NotSentError,
    RateLimitedError,
    RequestRejectedError,
    TransientError,
)
from providers.infocloud import CODES, SIGN_METHODS, InfocloudAuth, InfocloudProvider, canonical_string, sign
from providers.simulator import DEMO_ENV
from providers.simulator.core import FaultPlan
from tests.providers.helpers import mock_client

API_KEY = DEMO_ENV["SMSD_INFOCLOUD__API_KEY"]
ACCESS_KEY = DEMO_ENV["SMSD_INFOCLOUD__ACCESS_KEY"]
TEMPLATE = RenderedTemplate("675871161745170000", ("123456",), ("code",), "您的验证码是123456")


def settings(base_url: str = "https://opassapi.infocloud.com.cn", **extra: object) -> InfocloudSettings:
    return InfocloudSettings(base_url=base_url, api_key=API_KEY, access_key=ACCESS_KEY, **extra)  # type: ignore[arg-type]


def mock_provider(handler: object, **extra: object) -> InfocloudProvider:
    return InfocloudProvider(settings(**extra), mock_client(handler))  # type: ignore[arg-type]


# -- signing ------------------------------------------------------------------------------------------


def test_canonical_string_matches_the_seeds_csharp_example() -> None:
    # The C# "简洁样例" in the seed signs exactly this string.
    fields = {
        "templateCode": "580467552590397440",
        "phones": "15900582939",
        "x-timestamp": "1618810991174",
        "x-sign-method": "HmacSHA256",
        "x-nonce": "8052433127",
        "x-api-key": "22a71bfe4f9cab1dbce7e16bd71138c2",
    }
    assert canonical_string(fields) == (
        "phones=15900582939&templateCode=580467552590397440&x-api-key=22a71bfe4f9cab1dbce7e16bd71138c2"
        "&x-nonce=8052433127&x-sign-method=HmacSHA256&x-timestamp=1618810991174"
    )


def test_canonical_string_matches_the_seeds_rule_example_and_drops_empty_values() -> None:
    # Section "签名生成": body and headers sorted together; the Python sample leaves out empty values.
    fields = {
        "x-timestamp": "1641350184346",
        "templateParam": '["参数1","参数2","参数3"]',
        "phones": "手机号1,手机号2",
        "x-api-key": "你的apiKey",
        "upExtendCode": "",
        "templateCode": "审核通过的模板编号",
        "x-sign-method": "HmacSHA256",
        "x-nonce": "H95a7XT1h6",
        "bid": None,
    }
    assert canonical_string(fields) == (
        'phones=手机号1,手机号2&templateCode=审核通过的模板编号&templateParam=["参数1","参数2","参数3"]'
        "&x-api-key=你的apiKey&x-nonce=H95a7XT1h6&x-sign-method=HmacSHA256&x-timestamp=1641350184346"
    )


@pytest.mark.parametrize(
    ("method", "digest"),
    [("HmacMD5", hashlib.md5), ("HmacSHA1", hashlib.sha1), ("HmacSHA224", hashlib.sha224),
     ("HmacSHA256", hashlib.sha256), ("HmacSHA384", hashlib.sha384), ("HmacSHA512", hashlib.sha512)],
)
def test_each_sign_method_is_the_lowercase_hex_hmac(method: str, digest: object) -> None:
    text = "phones=13800138000&templateCode=1&x-api-key=k&x-nonce=1234567890&x-sign-method=X&x-timestamp=1"
    expected = hmac.new(b"secret", text.encode(), digest).hexdigest()  # type: ignore[arg-type]
    assert sign(text, "secret", method) == expected
    assert expected == expected.lower()


def test_all_six_documented_methods_are_supported_and_others_refused() -> None:
    assert set(SIGN_METHODS) == {
        "HmacMD5", "HmacSHA1", "HmacSHA224", "HmacSHA256", "HmacSHA384", "HmacSHA512"
    }
    with pytest.raises(ValueError, match="HmacSHA999"):
        InfocloudAuth("k", "s", "HmacSHA999")


def test_auth_headers_sign_body_and_headers_together() -> None:
    seen: dict[str, httpx.Request] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["request"] = request
        return httpx.Response(200, json={"code": 200, "data": {"msgId": "574730770464800768"}})

    mock_provider(handler).send(SendRequest(("13800138000",), TEMPLATE, bid="m.0"))
    request = seen["request"]
    headers = request.headers
    body = json.loads(request.content)
    assert headers["x-api-key"] == API_KEY
    assert headers["x-sign-method"] == "HmacSHA256"
    assert headers["x-nonce"].isdigit() and len(headers["x-nonce"]) >= 10
    assert len(headers["x-timestamp"]) == 13
    fields = {**body, **{k: headers[k] for k in ("x-api-key", "x-sign-method", "x-nonce", "x-timestamp")}}
    assert headers["x-sign"] == sign(canonical_string(fields), ACCESS_KEY, "HmacSHA256")
    assert body == {"phones": "13800138000", "templateCode": TEMPLATE.vendor_template,
                    "templateParam": '["123456"]', "bid": "m.0"}


# -- codes --------------------------------------------------------------------------------------------

DOCUMENTED = {
    "-1": TransientError, "2000": ConfigError, "2001": ConfigError, "6000": RateLimitedError,
    "40002": BalanceError, "40004": RequestRejectedError, "40005": RequestRejectedError,
    "40006": ConfigError, "60001": RequestRejectedError, "60002": RequestRejectedError,
    "60003": RequestRejectedError, "60004": RequestRejectedError, "60005": RequestRejectedError,
    "60006": RequestRejectedError, "60007": RequestRejectedError, "60008": RequestRejectedError,
    "60009": TransientError,
}


def test_every_documented_code_is_in_the_table_with_its_intended_class() -> None:
    assert dict(CODES) == DOCUMENTED


@pytest.mark.parametrize(("code", "cls"), sorted(DOCUMENTED.items()))
def test_a_vendor_code_raises_its_class_with_code_and_text(code: str, cls: type[Exception]) -> None:
    provider = mock_provider(lambda request: httpx.Response(200, json={"code": int(code), "message": "msg"}))
    with pytest.raises(cls) as info:
        provider.send(SendRequest(("13800138000",), TEMPLATE))
    assert type(info.value) is cls
    assert info.value.code == code and info.value.text == "msg"  # type: ignore[attr-defined]


def test_transport_failures_map_to_not_sent_and_ambiguous() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(NotSentError):
        mock_provider(refuse).send(SendRequest(("13800138000",), TEMPLATE))
    with pytest.raises(AmbiguousError):
        mock_provider(hang).send(SendRequest(("13800138000",), TEMPLATE))
    with pytest.raises(TransientError) as info:
        mock_provider(lambda request: httpx.Response(502, text="bad gateway")).send(
            SendRequest(("13800138000",), TEMPLATE)
        )
    assert info.value.code == "HTTP502"
    with pytest.raises(AmbiguousError) as amb:
        mock_provider(lambda request: httpx.Response(200, text="<html>")).send(
            SendRequest(("13800138000",), TEMPLATE)
        )
    assert amb.value.code == "MALFORMED"


# -- bodies and answers ---------------------------------------------------------------------------------


def test_fail_phones_become_per_recipient_refusals() -> None:
    answer = {"code": 200, "data": {"msgId": "822515453833289728", "desc": "null",
                                    "failPhones": "13900000002,13900000003"}, "requestId": "47b98424"}
    result = mock_provider(lambda request: httpx.Response(200, json=answer)).send(
        SendRequest(("13900000001", "13900000002", "13900000003"), TEMPLATE)
    )
    assert [(o.phone, o.accepted) for o in result.outcomes] == [
        ("13900000001", True), ("13900000002", False), ("13900000003", False)]
    assert {o.vendor_id for o in result.outcomes} == {"822515453833289728"}
    assert result.batch_id == "822515453833289728" and result.raw == answer


def test_per_recipient_parameters_use_send_batch() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"code": 200, "data": {"msgId": "574729305331499008"}})

    per = (RenderedTemplate("t", ("明",)), RenderedTemplate("t", ("张三",)))
    mock_provider(handler).send(
        SendRequest(("13900000001", "13900000002"), RenderedTemplate("t"), per_recipient=per)
    )
    assert seen[0].url.path == "/message/sendBatch"
    body = json.loads(seen[0].content)
    assert json.loads(body["phonesJson"]) == ["13900000001", "13900000002"]
    assert json.loads(body["templateParamJson"]) == [["明"], ["张三"]]


def test_more_than_the_batch_size_is_refused_without_a_call() -> None:
    calls: list[httpx.Request] = []
    provider = mock_provider(lambda request: calls.append(request) or httpx.Response(200), batch_size=2)
    with pytest.raises(RequestRejectedError):
        provider.send(SendRequest(("13900000001", "13900000002", "13900000003"), TEMPLATE))
    assert calls == []


# -- against the simulator ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(SIGN_METHODS))
def test_simulator_accepts_every_sign_method(sim, method: str) -> None:  # type: ignore[no-untyped-def]
    provider = InfocloudProvider(settings(sim.url, sign_method=method), httpx.Client())
    result = provider.send(SendRequest(("13900000001", "123"), TEMPLATE, bid="msg.0"))
    assert [o.accepted for o in result.outcomes] == [True, False]
    assert sim.state.counters("infocloud").received == {"13900000001": 1}


def test_simulator_refuses_a_wrong_access_key(sim) -> None:  # type: ignore[no-untyped-def]
    wrong = InfocloudSettings(base_url=sim.url, api_key=API_KEY, access_key="not-the-key")  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as info:
        InfocloudProvider(wrong, httpx.Client()).send(SendRequest(("13900000001",), TEMPLATE))
    assert info.value.code == "2001"
    assert sim.state.counters("infocloud").received == {}


def test_simulator_receipts_come_back_once_with_our_bid(sim) -> None:  # type: ignore[no-untyped-def]
    provider = InfocloudProvider(settings(sim.url), httpx.Client())
    phones = tuple(f"139{i:08d}" for i in range(700))
    sent = provider.send(SendRequest(phones, TEMPLATE, bid="m-1.0"))
    first = provider.poll_receipts()
    second = provider.poll_receipts()
    assert len(first) == 600 and len(second) == 100  # at most 600 a call, each once
    assert {r.phone for r in (*first, *second)} == set(phones)
    assert {(r.bid, r.batch_id, r.state) for r in first} == {
        ("m-1.0", sent.batch_id, DeliveryState.DELIVERED)
    }
    assert provider.poll_receipts() == ()


def test_simulator_query_cadence_and_balance_interval(sim) -> None:  # type: ignore[no-untyped-def]
    sim.state.config.query_per_minute = 3
    provider = InfocloudProvider(settings(sim.url), httpx.Client())
    for _ in range(3):
        provider.poll_receipts()
    with pytest.raises(RateLimitedError) as info:
        provider.poll_receipts()
    assert info.value.code == "6000"
    assert provider.balance()[0].item == "行业短信"
    with pytest.raises(RateLimitedError):
        provider.balance()  # at most once every 15 s


def test_simulator_fault_injection_gives_the_documented_codes(sim) -> None:  # type: ignore[no-untyped-def]
    provider = InfocloudProvider(settings(sim.url), httpx.Client(timeout=1.0))
    sim.state.set_faults("infocloud", FaultPlan(codes=("60009",), code_rate=1.0))
    with pytest.raises(TransientError) as info:
        provider.send(SendRequest(("13900000001",), TEMPLATE))
    assert info.value.code == "60009"
    sim.state.set_faults("infocloud", FaultPlan(reset_rate=1.0, after_accept=True))
    with pytest.raises(AmbiguousError):
        provider.send(SendRequest(("13900000002",), TEMPLATE))
    assert sim.state.counters("infocloud").received == {"13900000002": 1}  # accepted, answer lost


@pytest.mark.parametrize("answer", [{"code": 200, "data": ["x"]}, {"code": 200, "data": "x"}, {"code": True}])
def test_an_unreadable_accepted_answer_is_ambiguous_not_a_crash(answer: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(AmbiguousError):
        mock_provider(lambda request: httpx.Response(200, json=answer)).send(
            SendRequest(("13800138000",), TEMPLATE)
        )


# -- hostile answers (issue 6) ----------------------------------------------------------------------------

DOC_PHONES = ("13900000001", "13900000002", "13900000003")


def send_with(answer: object, status: int = 200) -> object:
    """``send`` of DOC_PHONES against one answer (JSON of ``answer``), returning the result."""
    provider = mock_provider(lambda request: httpx.Response(status, json=answer))
    return provider.send(SendRequest(DOC_PHONES, TEMPLATE))


@pytest.mark.parametrize(
    "fail_phones",
    ["13900000002,13900000003", ["13900000002", "13900000003"], [" 13900000002", "13900000003 "]],
)
def test_fail_phones_as_a_comma_string_or_a_json_list_are_refused(fail_phones: object) -> None:
    # The list form was read as "['13900000002', '13900000003']" and split on ",": nobody refused.
    answer = {"code": 200, "data": {"msgId": "822515453833289728", "desc": "null", "failPhones": fail_phones}}
    result = send_with(answer)
    assert [(o.phone, o.accepted, o.code) for o in result.outcomes] == [  # type: ignore[attr-defined]
        ("13900000001", True, "200"),
        ("13900000002", False, "FAIL_PHONE"),
        ("13900000003", False, "FAIL_PHONE"),
    ]


@pytest.mark.parametrize("fail_phones", [13900000002, [13900000002], {"phone": "13900000002"}, True, [["x"]]])
def test_fail_phones_of_another_shape_leave_the_batch_ambiguous(fail_phones: object) -> None:
    answer = {"code": 200, "data": {"msgId": "822515453833289728", "failPhones": fail_phones}}
    with pytest.raises(AmbiguousError) as raised:
        send_with(answer)
    assert raised.value.code == "MALFORMED"


@pytest.mark.parametrize(
    "data",
    [{}, {"msgId": ""}, {"msgId": "  "}, {"msgId": None}, {"msgId": 574730770464800768}, {"msgId": ["5747"]},
     {"desc": "null", "failPhones": ""}],
    ids=["none", "empty", "blank", "null", "number", "list", "desc-only"],
)
def test_code_200_without_a_msg_id_is_ambiguous_and_never_resent(data: dict) -> None:  # type: ignore[type-arg]
    # The document: "msgId ... 该值不为空，说明平台已经接收提交的短信任务": no msgId, no sign it was taken.
    calls: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json={"code": 200, "data": data, "requestId": "47b98424"})

    with pytest.raises(AmbiguousError) as raised:
        mock_provider(answer).send(SendRequest(DOC_PHONES, TEMPLATE, bid="m.0"))
    assert (raised.value.code, len(calls)) == ("MALFORMED", 1)
    assert "msgId" in str(raised.value)


def test_send_batch_s_lowercase_msgid_is_read() -> None:
    # sendBatch's field table spells it ``msgid``.
    result = send_with({"code": 200, "data": {"msgid": "574729305331499008"}})
    assert result.batch_id == "574729305331499008"  # type: ignore[attr-defined]


DOC_RESIDUE = {
    "code": 200,
    "data": [{"itemName": "行业短信", "residueValue": 9784}, {"itemName": "会员短信", "residueValue": 10007},
             {"itemName": "推广短信", "residueValue": 6506}],
    "requestId": "28284840-5224-4167-a57d-3b76d11f5705",
}


def test_balance_reads_the_documents_example() -> None:
    balances = mock_provider(lambda request: httpx.Response(200, json=DOC_RESIDUE)).balance()
    assert [(b.item, b.value) for b in balances] == [
        ("行业短信", 9784.0), ("会员短信", 10007.0), ("推广短信", 6506.0)
    ]


@pytest.mark.parametrize(
    "body",
    [
        '{"code":200,"data":5}',
        '{"code":200,"data":null}',
        '{"code":200,"data":[{"itemName":"行业短信","residueValue":NaN}]}',
        '{"code":200,"data":[{"itemName":"行业短信","residueValue":Infinity}]}',
        '{"code":200,"data":[{"itemName":"行业短信","residueValue":1e400}]}',
        '{"code":200,"data":[{"itemName":"行业短信","residueValue":"nan"}]}',
        '{"code":200,"data":[{"itemName":"行业短信","residueValue":1' + "0" * 400 + "}]}",
        '{"code":200,"data":[{"itemName":"行业短信"}]}',
        '{"code":200,"data":[{"itemName":"行业短信","residueValue":{"v":1}}]}',
        '{"code":200,"data":["行业短信"]}',
    ],
    ids=["number", "null", "NaN", "Infinity", "1e400", "nan-str", "400-digits", "missing", "object", "str"],
)
def test_a_balance_that_is_not_a_finite_number_is_a_transient_malformed_answer(body: str) -> None:
    provider = mock_provider(lambda request: httpx.Response(200, text=body))
    with pytest.raises(TransientError) as raised:
        provider.balance()
    assert (type(raised.value), raised.value.code) == (TransientError, "MALFORMED")


def test_receipt_statuses_map_through_the_table_and_keep_the_vendors_word() -> None:
    # "除DELIVRD外，其他都是未送达": every status but DELIVRD is not delivered; a missing one is no verdict.
    statuses = ["DELIVRD", "UNDELIV", "EXPIRED", "REJECTD", "DELETED", "ACCEPTD", "UNKNOWN", "MI:0013"]
    statuses += ["", None]
    items = [
        {"msgId": "640614750879358976", "tel": f"1390000{i:04d}", "arrive": s, "arriveTime": "2308071315"}
        for i, s in enumerate(statuses)
    ]
    receipts = mock_provider(
        lambda request: httpx.Response(200, json={"code": 200, "message": "查询成功", "data": items})
    ).poll_receipts()
    assert [(r.state, r.code) for r in receipts] == [
        (DeliveryState.DELIVERED, "DELIVRD"), (DeliveryState.UNDELIVERED, "UNDELIV"),
        (DeliveryState.EXPIRED, "EXPIRED"), (DeliveryState.REJECTED, "REJECTD"),
        (DeliveryState.UNDELIVERED, "DELETED"), (DeliveryState.UNDELIVERED, "ACCEPTD"),
        (DeliveryState.UNDELIVERED, "UNKNOWN"), (DeliveryState.UNDELIVERED, "MI:0013"),
        (DeliveryState.UNKNOWN, ""), (DeliveryState.UNKNOWN, ""),
    ]


@pytest.mark.parametrize("body", ["[" * 1000, '{"code":200,"data":{"x":1}}', "<html>502</html>"])
def test_an_unreadable_receipt_page_is_transient_not_ambiguous(body: str) -> None:
    # Asking again sends nothing, so the poller retries it rather than treating it as a send.
    provider = mock_provider(lambda request: httpx.Response(200, text=body))
    with pytest.raises(TransientError) as raised:
        provider.poll_receipts()
    assert (type(raised.value), raised.value.code) == (TransientError, "MALFORMED")
