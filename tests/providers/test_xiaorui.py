"""Xiaorui adapter: the document's own bodies through a MockTransport, then round trips with the simulator."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from config.settings import Settings, XiaoruiSettings
from providers.base import DeliveryState, RenderedTemplate, SendRequest
from providers.errors import (
    AmbiguousError,
    ConfigError,
    NotSentError,
    ProviderError,
    RateLimitedError,
    RequestRejectedError,
    TransientError,
)
from providers.market_gateway import MarketGatewayAuth, verify
from providers.simulator.core import FaultPlan
from providers.simulator.server import SimulatorServer
from providers.xiaorui import CODES, MESSAGES, XiaoruiProvider
from tests.providers.helpers import Handler, Recorder, mock_client, raising, sim_provider

# -- the document's example answers (shared/seeds/001_ea7bf1fee9755f8a.txt), verbatim -------------------

DOC_SEND_OK = """{
	"status": "0",
	"balance": -153278040,
	"list": [{
			"mid": "4C2CA88382720003",
			"mobile": "18983437010",
			"result": 0
		},
		{
			"mid": "4C2CA88382720004",
			"mobile": "18983437011",
			"result": 0
		}
	]
}"""
DOC_SEND_FAIL = """{
    "status": "3",
    "balance": 0,
    "list": null
}"""
DOC_REPORT_OK = """{
	"status": "0",
	"balance": -153278040,
	"list": [{
			"flag": 1,
			"mid": "4C36654382720005",
			"spid": "922011",
			"accessCode": "106901234",
			"mobile": "18983437010",
			"stat": "MA:0029",
			"time": "2017-04-12 01:38:21"
		},
		{
			"flag": 1,
			"mid": "4C36654382720006",
			"spid": "922011",
			"accessCode": "106901234",
			"mobile": "18983437011",
			"stat": "MA:0029",
			"time": "2017-04-12 01:38:21"
		}
	]
}"""
DOC_MO_OK = """{
    "status": "0",
    "balance": -153278040,
    "list": [
        {
            "flag": 0,
            "mid": "4C36654382720005",
            "spid": "922011",
            "accessCode": "10690",
            "mobile": "18983437010",
            "content": "上行内容1",
            "time": "2017-04-12 01:38:21"
        },
        {
            "flag": 0,
            "mid": "4C36654382720006",
            "spid": "922011",
"accessCode": "10690",
            "mobile": "18983437011",
            "content": "上行内容2",
            "time": "2017-04-12 01:38:21"
        }
    ]
}"""
DOC_MO_EMPTY = """{
	"status": "0",
	"balance": -153278040,
	"list": []
}"""
DOC_BALANCE_OK = """{
	"status": 0,
	"balance": -153278040,
	"chargeType": "POSTCHARGE"
}"""
DOC_BALANCE_FAIL = """{
    "status": 3,
    "balance": 0,
    "chargeType": "PRECHARGE"
}"""
# Every code of the document's 返回码定义 table, and the class we mean each to raise (exact classes).
DOCUMENTED: dict[str, type[ProviderError] | None] = {
    "0": None,  # 鉴权成功
    "1": RequestRejectedError,
    "2": ConfigError,
    "3": ConfigError,
    "4": ConfigError,
    "5": RequestRejectedError,
    "6": ConfigError,
    "7": ConfigError,
    "21": TransientError,
    "100": RequestRejectedError,
    "102": RequestRejectedError,
}
PHONES = ("18983437010", "18983437011")
SETTINGS = XiaoruiSettings.model_validate({
    "base_url": "https://xiaorui.test",
    "secret_id": "AKIDtest",
    "secret_key": "test-secret-key",
    "account": "acct",
    "password": "pw-not-in-logs",
    "extno": "12",
})


def request_for(*phones: str, text: str = "【小睿】您的验证码是1234") -> SendRequest:
    return SendRequest(phones=phones, template=RenderedTemplate("", text=text))


def provider_for(handler: Handler, settings: XiaoruiSettings = SETTINGS, **pages: int) -> XiaoruiProvider:
    return XiaoruiProvider(settings, mock_client(handler), **pages)


# -- send --------------------------------------------------------------------------------------------


def test_send_posts_the_documented_form_and_reads_per_phone_mids() -> None:
    recorder = Recorder(DOC_SEND_OK)
    result = provider_for(recorder).send(request_for(*PHONES))

    sent = recorder.requests[0]
    assert sent.method == "POST"
    assert sent.url == "https://xiaorui.test/release/smssend"
    assert sent.headers["content-type"] == "application/x-www-form-urlencoded"
    assert recorder.form() == {
        "account": "acct",
        "password": "pw-not-in-logs",
        "rt": "json",
        "mobile": "18983437010,18983437011",
        "content": "【小睿】您的验证码是1234",
        "extno": "12",
    }
    verify(sent.headers, "AKIDtest", "test-secret-key", max_skew_s=60)
    assert [(o.phone, o.accepted, o.vendor_id, o.code) for o in result.outcomes] == [
        ("18983437010", True, "4C2CA88382720003", "0"),
        ("18983437011", True, "4C2CA88382720004", "0"),
    ]
    assert result.provider == "xiaorui"
    assert result.raw == json.loads(DOC_SEND_OK)


@pytest.mark.parametrize("status", ["0", 0, 0.0])
def test_send_accepts_status_as_string_or_number(status: object) -> None:
    body = json.dumps({"status": status, "list": [{"mid": "M1", "mobile": PHONES[0], "result": "0"}]})
    result = provider_for(Recorder(body)).send(request_for(PHONES[0]))
    assert result.outcomes[0].accepted and result.outcomes[0].vendor_id == "M1"


def test_per_phone_refusals_are_outcomes_not_exceptions() -> None:
    body = json.dumps({
        "status": "0",
        "list": [
            {"mid": "M1", "mobile": "18983437010", "result": 0},
            {"mid": "", "mobile": "18983437011", "result": 1},
        ],
    })
    result = provider_for(Recorder(body)).send(request_for(*PHONES, "18983437012"))
    assert [(o.phone, o.accepted, o.code) for o in result.outcomes] == [
        ("18983437010", True, "0"),
        ("18983437011", False, "1"),
        ("18983437012", False, "NO_RESULT"),  # missing from the list: failed, never resent
    ]


def test_the_documents_failure_example_is_a_config_error_without_secrets() -> None:
    with pytest.raises(ConfigError) as raised:
        provider_for(Recorder(DOC_SEND_FAIL)).send(request_for(*PHONES))
    assert raised.value.code == "3"
    assert raised.value.text == "账号密码不正确"
    assert raised.value.raw == json.loads(DOC_SEND_FAIL)
    assert "pw-not-in-logs" not in str(raised.value)
    assert PHONES[0] not in str(raised.value)


def test_every_documented_code_is_classified_as_intended() -> None:
    assert set(CODES) | {"0"} == set(DOCUMENTED)
    assert set(MESSAGES) == set(DOCUMENTED)
    for code, cls in DOCUMENTED.items():
        if cls is not None:
            assert CODES[code] is cls, code


@pytest.mark.parametrize("code", sorted(CODES))
def test_each_code_raises_its_class_with_the_vendors_code(code: str) -> None:
    for status in (code, int(code)):  # the vendor sends either
        recorder = Recorder(json.dumps({"status": status, "balance": 0, "list": None}))
        with pytest.raises(ProviderError) as raised:
            provider_for(recorder).send(request_for(*PHONES))
        assert type(raised.value) is DOCUMENTED[code]
        assert raised.value.code == code
        assert not isinstance(raised.value, RateLimitedError)


def test_too_many_numbers_is_refused_before_any_call() -> None:
    recorder = Recorder(DOC_SEND_OK)
    provider = provider_for(recorder)
    with pytest.raises(RequestRejectedError) as raised:
        provider.send(request_for(*(f"1390000{i:04d}" for i in range(501))))
    assert raised.value.code == "BATCH_SIZE"
    assert recorder.requests == []


def test_a_smaller_configured_batch_size_is_enforced() -> None:
    recorder = Recorder(json.dumps({"status": "0", "list": []}))
    provider = provider_for(recorder, SETTINGS.model_copy(update={"batch_size": 200}))
    with pytest.raises(RequestRejectedError):
        provider.send(request_for(*(f"1390000{i:04d}" for i in range(201))))
    assert recorder.requests == []


@pytest.mark.parametrize(
    "request_", [request_for(), request_for(PHONES[0], text="")], ids=["no-phones", "no-text"]
)
def test_empty_requests_are_refused_before_any_call(request_: SendRequest) -> None:
    recorder = Recorder(DOC_SEND_OK)
    with pytest.raises(RequestRejectedError):
        provider_for(recorder).send(request_)
    assert recorder.requests == []


# -- malformed answers and transport failures ----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "error", "code"),
    [
        # The generic unreadable answers (not JSON, empty, not an object, no code, a null code, a 404 page)
        # are checked for every vendor in test_contract.py; these are this vendor's own.
        # Unreadable on HTTP 2xx: the vendor may have sent the messages, so ambiguous (never resent).
        ('{"status": true, "list": null}', 200, AmbiguousError, "MALFORMED"),
        ('{"status": "ok", "list": null}', 200, AmbiguousError, "MALFORMED"),
        ('{"status": "0", "list": null}', 200, AmbiguousError, "NO_LIST"),  # accepted, but who?
        ('{"status": "0", "list": []}', 200, AmbiguousError, "NO_LIST"),
        # Unreadable on any other status: the vendor did not take the call.
        ("", 502, TransientError, "HTTP502"),
        ('{"message": "HMAC signature does not match"}', 403, ConfigError, "GATEWAY_403"),
    ],
)
def test_malformed_or_foreign_answers(body: str, status: int, error: type[ProviderError], code: str) -> None:
    recorder = Recorder(body, status=status)
    with pytest.raises(error) as raised:
        provider_for(recorder).send(request_for(*PHONES))
    assert type(raised.value) is error
    assert raised.value.code == code
    assert len(recorder.requests) == 1  # never resent by the adapter


def test_an_unreadable_per_phone_result_is_a_failed_outcome() -> None:
    body = json.dumps({"status": "0", "list": [
        {"mid": "M1", "mobile": PHONES[0], "result": 0},
        {"mid": "M2", "mobile": PHONES[1], "result": None},
    ]})
    result = provider_for(Recorder(body)).send(request_for(*PHONES))
    assert [(o.phone, o.accepted, o.vendor_id, o.code) for o in result.outcomes] == [
        (PHONES[0], True, "M1", "0"),
        (PHONES[1], False, "M2", "MALFORMED"),  # accepted call: failed, never resent
    ]


@pytest.mark.parametrize(
    ("poll", "body"),
    [
        ("poll_receipts", '{"status": "0", "list": "nothing"}'),
        ("poll_inbound", '{"status": "0", "list": {"mobile": "1"}}'),
        ("balance", '{"status": 0, "balance": "lots"}'),
    ],
)
def test_malformed_query_answers_are_transient(poll: str, body: str) -> None:
    """Asking again sends no SMS, so an unreadable query answer is worth another try."""
    with pytest.raises(TransientError) as raised:
        getattr(provider_for(Recorder(body)), poll)()
    assert (type(raised.value), raised.value.code) == (TransientError, "MALFORMED")


@pytest.mark.parametrize(
    ("exc", "error"),
    [(httpx.ConnectError("refused"), NotSentError), (httpx.ReadTimeout("slow"), AmbiguousError)],
)
def test_transport_failures_map_to_the_error_tree(exc: Exception, error: type[ProviderError]) -> None:
    with pytest.raises(error):
        provider_for(raising(exc)).send(request_for(*PHONES))


# -- receipts, replies, balance ----------------------------------------------------------------------


def test_receipts_from_the_documents_example() -> None:
    recorder = Recorder(DOC_REPORT_OK)
    receipts = provider_for(recorder).poll_receipts()
    assert recorder.requests[0].url.path == "/release/smsreport"
    assert recorder.form() == {"account": "acct", "password": "pw-not-in-logs", "rt": "json", "size": "1000"}
    assert [(r.phone, r.vendor_id, r.state, r.code, r.at) for r in receipts] == [
        ("18983437010", "4C36654382720005", DeliveryState.UNDELIVERED, "MA:0029", "2017-04-12 01:38:21"),
        ("18983437011", "4C36654382720006", DeliveryState.UNDELIVERED, "MA:0029", "2017-04-12 01:38:21"),
    ]
    assert receipts[0].raw["accessCode"] == "106901234"


def test_delivered_and_unknown_receipt_states() -> None:
    items = [{"mid": "A", "mobile": "1", "stat": "DELIVRD"}, {"mid": "B", "mobile": "2", "stat": ""}]
    receipts = provider_for(Recorder(json.dumps({"status": "0", "list": items}))).poll_receipts()
    assert [r.state for r in receipts] == [DeliveryState.DELIVERED, DeliveryState.UNKNOWN]


def test_receipt_failure_example_raises() -> None:
    with pytest.raises(ConfigError):
        provider_for(Recorder(DOC_SEND_FAIL)).poll_receipts()


def test_replies_use_action_mo_and_the_documents_szie_spelling() -> None:
    recorder = Recorder(DOC_MO_OK)
    replies = provider_for(recorder, inbound_page=50).poll_inbound()
    assert recorder.requests[0].url.path == "/release/smsmo"
    form = recorder.form()
    assert (form["action"], form["szie"]) == ("mo", "50")
    assert "size" not in form
    assert [(m.phone, m.content, m.at, m.ext) for m in replies] == [
        ("18983437010", "上行内容1", "2017-04-12 01:38:21", "10690"),
        ("18983437011", "上行内容2", "2017-04-12 01:38:21", "10690"),
    ]


def test_no_replies_is_the_documents_empty_list() -> None:
    assert provider_for(Recorder(DOC_MO_EMPTY)).poll_inbound() == ()


def test_balance_from_the_documents_examples() -> None:
    recorder = Recorder(DOC_BALANCE_OK)
    (balance,) = provider_for(recorder).balance()
    assert recorder.requests[0].url.path == "/release/smsoverage"
    assert recorder.form()["action"] == "balance"
    assert (balance.item, balance.value) == ("POSTCHARGE", -153278040.0)
    with pytest.raises(ConfigError) as raised:
        provider_for(Recorder(DOC_BALANCE_FAIL)).balance()
    assert raised.value.code == "3"  # a numeric status, read like a string one


@pytest.mark.parametrize("kwargs", [{"receipt_page": 9}, {"receipt_page": 10001}, {"inbound_page": 1001}])
def test_page_sizes_outside_the_documents_ranges_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        XiaoruiProvider(SETTINGS, httpx.Client(), **kwargs)


# -- round trips with the simulator over HTTP ----------------------------------------------------------


def test_round_trip_send_then_receipts_once_only(demo_sim: SimulatorServer, demo_settings: Settings) -> None:
    provider = sim_provider(XiaoruiProvider, demo_sim, demo_settings)
    result = provider.send(request_for("13800138000", "13800138001", "12345"))
    assert [(o.phone, o.accepted) for o in result.outcomes] == [
        ("13800138000", True), ("13800138001", True), ("12345", False),
    ]
    counters = demo_sim.state.counters("xiaorui")
    assert counters.received == {"13800138000": 1, "13800138001": 1}
    receipts = provider.poll_receipts()
    mids = {o.phone: o.vendor_id for o in result.outcomes if o.accepted}
    assert {(r.phone, r.vendor_id, r.state) for r in receipts} == {
        (phone, mid, DeliveryState.DELIVERED) for phone, mid in mids.items()
    }
    assert provider.poll_receipts() == ()


def test_round_trip_500_numbers_in_one_call(demo_sim: SimulatorServer, demo_settings: Settings) -> None:
    phones = tuple(f"1390000{i:04d}" for i in range(500))
    result = sim_provider(XiaoruiProvider, demo_sim, demo_settings).send(request_for(*phones))
    assert all(o.accepted for o in result.outcomes)
    assert len({o.vendor_id for o in result.outcomes}) == 500
    assert demo_sim.state.counters("xiaorui").call_sizes == [500]


def test_simulator_answers_102_above_500_numbers(demo_sim: SimulatorServer, demo_settings: Settings) -> None:
    """Our adapter never sends 501; a client that did gets the documented 102."""
    section = demo_settings.xiaorui
    auth = MarketGatewayAuth.from_secrets(section.secret_id, section.secret_key)
    body = {
        "account": section.account.get_secret_value(),
        "password": section.password.get_secret_value(),
        "rt": "json",
        "mobile": ",".join(f"1390000{i:04d}" for i in range(501)),
        "content": "hi",
        "extno": "",
    }
    answer = httpx.post(demo_sim.url + "/release/smssend", data=body, auth=auth).json()
    assert answer == {"status": "102", "balance": 0, "list": None}
    assert demo_sim.state.counters("xiaorui").received == {}


@pytest.mark.parametrize(
    ("update", "code"),
    [({"password": SecretStr("wrong")}, "3"), ({"secret_key": SecretStr("wrong")}, "GATEWAY_403")],
)
def test_round_trip_bad_credentials(
    demo_sim: SimulatorServer, demo_settings: Settings, update: dict[str, Any], code: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        sim_provider(XiaoruiProvider, demo_sim, demo_settings, **update).send(request_for("13800138000"))
    assert raised.value.code == code
    assert demo_sim.state.counters("xiaorui").received == {}


def test_round_trip_a_skewed_clock_is_refused(demo_sim: SimulatorServer, demo_settings: Settings) -> None:
    provider = sim_provider(XiaoruiProvider, demo_sim, demo_settings)
    section = demo_settings.xiaorui
    secret_id, secret_key = section.secret_id.get_secret_value(), section.secret_key.get_secret_value()
    provider._auth = MarketGatewayAuth(secret_id, secret_key, clock=lambda: time.time() - 600)
    with pytest.raises(ConfigError, match="out of date"):
        provider.balance()


def test_round_trip_injected_transient_code(demo_sim: SimulatorServer, demo_settings: Settings) -> None:
    demo_sim.state.set_faults("xiaorui", FaultPlan(codes=("21",), code_rate=1.0))
    with pytest.raises(TransientError) as raised:
        sim_provider(XiaoruiProvider, demo_sim, demo_settings).send(request_for("13800138000"))
    assert (type(raised.value), raised.value.code) == (TransientError, "21")
    assert demo_sim.state.counters("xiaorui").received == {}


def test_round_trip_replies_and_balance(demo_sim: SimulatorServer, demo_settings: Settings) -> None:
    provider = sim_provider(XiaoruiProvider, demo_sim, demo_settings)
    demo_sim.state.add_inbound("xiaorui", {"mobile": "13800138000", "content": "TD"})
    replies = provider.poll_inbound()
    assert [(m.phone, m.content) for m in replies] == [("13800138000", "TD")]
    assert provider.poll_inbound() == ()
    (before,) = provider.balance()
    provider.send(request_for("13800138000", "13800138001"))
    (after,) = provider.balance()
    assert before.value - after.value == 2


# -- hostile answers (issue 6) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "balance",
    ["NaN", "Infinity", "-Infinity", "1e400", '"nan"', '"inf"', '"lots"', "null", "[1]", "1" + "0" * 400],
)
def test_a_balance_that_is_not_a_finite_number_is_a_transient_malformed_answer(balance: str) -> None:
    body = f'{{"status": 0, "balance": {balance}, "chargeType": "POSTCHARGE"}}'
    with pytest.raises(TransientError) as raised:
        provider_for(Recorder(body)).balance()
    assert (type(raised.value), raised.value.code) == (TransientError, "MALFORMED")


def test_a_balance_without_the_field_is_no_reading_rather_than_zero() -> None:
    with pytest.raises(TransientError):  # it read as 0.0 before: "out of credit" from a garbled answer
        provider_for(Recorder('{"status": 0, "chargeType": "POSTCHARGE"}')).balance()


def test_receipt_stats_map_through_the_table_and_keep_the_vendors_word() -> None:
    stats = ["DELIVRD", "UNDELIV", "EXPIRED", "REJECTD", "DELETED", "MA:0029", "MK:0001", "UNKNOWN", "FOO"]
    stats.append("")
    items = [{"mid": str(i), "mobile": f"1898343701{i}", "stat": stat} for i, stat in enumerate(stats)]
    receipts = provider_for(Recorder(json.dumps({"status": "0", "list": items}))).poll_receipts()
    assert [(r.state, r.code) for r in receipts] == [
        (DeliveryState.DELIVERED, "DELIVRD"), (DeliveryState.UNDELIVERED, "UNDELIV"),
        (DeliveryState.EXPIRED, "EXPIRED"), (DeliveryState.REJECTED, "REJECTD"),
        (DeliveryState.UNDELIVERED, "DELETED"), (DeliveryState.UNDELIVERED, "MA:0029"),
        (DeliveryState.UNDELIVERED, "MK:0001"), (DeliveryState.UNKNOWN, "UNKNOWN"),
        (DeliveryState.UNKNOWN, "FOO"), (DeliveryState.UNKNOWN, ""),
    ]


def test_fields_of_the_wrong_type_are_read_as_text_or_left_empty() -> None:
    items = [{"mid": ["x"], "mobile": 18983437010, "stat": {"s": 1}, "time": 1e400, "content": None}]
    (receipt,) = provider_for(Recorder(json.dumps({"status": "0", "list": items}))).poll_receipts()
    assert (receipt.phone, receipt.vendor_id, receipt.code, receipt.at, receipt.state) == (
        "18983437010", "", "", "", DeliveryState.UNKNOWN
    )


@pytest.mark.parametrize(("status", "error"), [(401, ConfigError), (403, TransientError)])
def test_a_deeply_nested_gateway_refusal_is_read_without_recursion(
    status: int, error: type[ProviderError]
) -> None:
    # RecursionError before (issue 10). 401 is always the gateway's; a 403 not in its JSON form is not.
    with pytest.raises(ProviderError) as raised:
        provider_for(Recorder("[" * 1000, status=status)).send(request_for("18983437010"))
    assert type(raised.value) is error
