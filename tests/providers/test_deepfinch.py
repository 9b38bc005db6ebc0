"""Deepfinch adapter: the document's own bodies via a MockTransport, then round trips with the simulator."""

from __future__ import annotations

import json
from email.utils import parsedate_to_datetime

import httpx
import pytest
from pydantic import SecretStr

from config.settings import DeepfinchSettings, Settings
from providers.base import RenderedTemplate, SendRequest
from providers.deepfinch import (
    CODES,
    HTTP_STATUS,
    MAX_RETRY_AFTER_S,
    DeepfinchProvider,
    content_pairs,
    retry_after_s,
)
from providers.errors import (
    AmbiguousError,
    ConfigError,
    ProviderError,
    RateLimitedError,
    RequestRejectedError,
    TransientError,
    UnsupportedFeature,
)
from providers.market_gateway import verify
from providers.simulator.core import FaultPlan
from providers.simulator.server import SimulatorServer
from tests.providers.helpers import Handler, Recorder, mock_client, sim_provider

# -- the document's example answers (shared/seeds/000_56fc09760ff8ebc1.txt), verbatim -------------------

DOC_OK = """{
  "request_id": "TID8bf47ab6eda64476973cc5f5b6ebf57e",
  "status": "OK"
}"""
DOC_FAIL = """{
    "status": "INVALID_ARGUMENT",
    "reason": "content mismatch",
    "request_id": "TID2b540d5a7f1f44dca8b504a449b3061f"
}"""
# Every status the document names (its examples and its 返回码定义 table) and the class we mean for it.
DOCUMENTED: dict[str, type[ProviderError] | None] = {
    "OK": None,
    "INVALID_ARGUMENT": RequestRejectedError,
    "DETECTION_FAILED": RequestRejectedError,  # 400 核验测失败
    "RATE_LIMIT_EXCEEDED": RateLimitedError,  # 403 调用频率超出限额
    "INTERNAL_ERROR": TransientError,  # 500 服务器内部错误
}
DOC_HTTP = {400: "DETECTION_FAILED", 403: "RATE_LIMIT_EXCEEDED", 500: "INTERNAL_ERROR"}
PHONE = "13800138000"
SETTINGS = DeepfinchSettings.model_validate(
    {"base_url": "https://deepfinch.test", "secret_id": "AKIDtest", "secret_key": "test-secret-key"}
)
NAMES = ("code", "expire_at")
TPL_0001 = RenderedTemplate("TPL_0001", params=("1234", "5"), names=NAMES)


def request_for(*phones: str, template: RenderedTemplate = TPL_0001) -> SendRequest:
    return SendRequest(phones=phones or (PHONE,), template=template)


def provider_for(handler: Handler) -> DeepfinchProvider:
    return DeepfinchProvider(SETTINGS, mock_client(handler))


# -- send --------------------------------------------------------------------------------------------


def test_send_posts_the_documented_form_and_reads_the_request_id() -> None:
    recorder = Recorder(DOC_OK)
    result = provider_for(recorder).send(request_for())
    sent = recorder.requests[0]
    assert (sent.method, str(sent.url)) == ("POST", "https://deepfinch.test/release/data/send_sms")
    assert sent.headers["content-type"] == "application/x-www-form-urlencoded"
    assert recorder.form() == {
        "phone_number": PHONE, "template_id": "TPL_0001", "content": "code:1234,expire_at:5"
    }
    verify(sent.headers, "AKIDtest", "test-secret-key", max_skew_s=60)
    (outcome,) = result.outcomes
    assert (outcome.phone, outcome.accepted, outcome.vendor_id, outcome.code) == (
        PHONE, True, "TID8bf47ab6eda64476973cc5f5b6ebf57e", "OK",
    )
    assert result.batch_id == "TID8bf47ab6eda64476973cc5f5b6ebf57e"
    assert result.raw == json.loads(DOC_OK)


@pytest.mark.parametrize("http_status", [200, 400])
def test_the_documents_failure_example_is_a_rejected_request(http_status: int) -> None:
    with pytest.raises(RequestRejectedError) as raised:
        provider_for(Recorder(DOC_FAIL, status=http_status)).send(request_for())
    assert type(raised.value) is RequestRejectedError
    assert (raised.value.code, raised.value.text) == ("INVALID_ARGUMENT", "content mismatch")
    assert raised.value.raw == json.loads(DOC_FAIL)
    assert PHONE not in str(raised.value)


def test_every_documented_status_is_classified_as_intended() -> None:
    assert set(CODES) | {"OK"} == set(DOCUMENTED)
    assert dict(HTTP_STATUS) == DOC_HTTP
    for status, cls in DOCUMENTED.items():
        if cls is not None:
            assert CODES[status] is cls, status


@pytest.mark.parametrize(("http_status", "status"), sorted(DOC_HTTP.items()))
def test_each_documented_http_error_raises_its_class(http_status: int, status: str) -> None:
    body = json.dumps({"status": status, "reason": "r", "request_id": "TID1"})
    with pytest.raises(ProviderError) as raised:
        provider_for(Recorder(body, status=http_status)).send(request_for())
    assert type(raised.value) is DOCUMENTED[status]
    assert raised.value.code == status  # the vendor's status, even for the 500 the base class reads first


@pytest.mark.parametrize(("http_status", "status"), sorted(DOC_HTTP.items()))
def test_a_documented_http_error_without_a_body_still_classifies(http_status: int, status: str) -> None:
    with pytest.raises(ProviderError) as raised:
        provider_for(Recorder("", status=http_status)).send(request_for())
    assert type(raised.value) is DOCUMENTED[status]


def test_rate_limit_keeps_the_retry_after_hint() -> None:
    body = json.dumps({"status": "RATE_LIMIT_EXCEEDED", "request_id": "TID1"})
    with pytest.raises(RateLimitedError) as raised:
        provider_for(Recorder(body, status=403, headers={"Retry-After": "7"})).send(request_for())
    assert raised.value.retry_after_s == 7.0


@pytest.mark.parametrize(
    ("body", "http_status", "error", "code"),
    [
        ('{"message": "HMAC signature does not match"}', 403, ConfigError, "GATEWAY_403"),
        ('{"message": "HMAC signature cannot be verified"}', 401, ConfigError, "GATEWAY_401"),
        # The generic unreadable answers (not JSON, empty, not an object, no code, a null code, a 404 page)
        # are checked for every vendor in test_contract.py; these are this vendor's own.
        # Unreadable on HTTP 2xx: the vendor may have sent the message, so ambiguous (never resent).
        ('{"status": 0, "request_id": "TID1"}', 200, AmbiguousError, "MALFORMED"),
        # Unreadable on a status the document does not pair with one: the vendor did not take it.
        ("{}", 404, TransientError, "MALFORMED"),
        ('{"status": "NEW_THING"}', 200, RequestRejectedError, "NEW_THING"),  # unknown: never retried
        ("", 502, TransientError, "HTTP502"),
    ],
)
def test_gateway_malformed_and_unknown_answers(
    body: str, http_status: int, error: type[ProviderError], code: str
) -> None:
    recorder = Recorder(body, status=http_status)
    with pytest.raises(error) as raised:
        provider_for(recorder).send(request_for())
    assert (type(raised.value), raised.value.code) == (error, code)
    assert len(recorder.requests) == 1  # never resent by the adapter


@pytest.mark.parametrize(
    "request_",
    [
        request_for(PHONE, "13800138001"),
        request_for(template=RenderedTemplate("TPL_0001", ("1234",), NAMES)),
        request_for(template=RenderedTemplate("TPL_0001", ("12,34", "5"), NAMES)),
        request_for(template=RenderedTemplate("TPL_0001", ("1234", "5:00"), NAMES)),
        request_for(template=RenderedTemplate("", ("1234",), ("code",))),
    ],
    ids=["two-phones", "count-mismatch", "comma-in-value", "colon-in-value", "no-template"],
)
def test_unsendable_requests_are_refused_before_any_call(request_: SendRequest) -> None:
    recorder = Recorder(DOC_OK)
    with pytest.raises(RequestRejectedError):
        provider_for(recorder).send(request_)
    assert recorder.requests == []


def test_content_pairs() -> None:
    assert content_pairs(("code", "expire_at"), ("1234", "5")) == "code:1234,expire_at:5"
    assert content_pairs((), ()) == ""


def test_no_pull_operations() -> None:
    provider = provider_for(Recorder(DOC_OK))
    for operation in (provider.poll_receipts, provider.poll_inbound, provider.balance):
        with pytest.raises(UnsupportedFeature):
            operation()


# -- round trips with the simulator over HTTP ----------------------------------------------------------


def test_round_trip_send(demo_sim: SimulatorServer, demo_settings: Settings) -> None:
    result = sim_provider(DeepfinchProvider, demo_sim, demo_settings).send(request_for())
    (outcome,) = result.outcomes
    assert outcome.accepted and outcome.vendor_id.startswith("TID")
    assert demo_sim.state.counters("deepfinch").received == {PHONE: 1}


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (request_for(template=RenderedTemplate("TPL_0001", ("1234",), ("code",))), "content mismatch"),
        (request_for("12345"), "invalid phone_number"),
    ],
)
def test_round_trip_invalid_argument(
    demo_sim: SimulatorServer, demo_settings: Settings, request_: SendRequest, reason: str
) -> None:
    with pytest.raises(RequestRejectedError) as raised:
        sim_provider(DeepfinchProvider, demo_sim, demo_settings).send(request_)
    assert (raised.value.code, raised.value.text) == ("INVALID_ARGUMENT", reason)
    assert demo_sim.state.counters("deepfinch").received == {}


def test_round_trip_bad_secret_is_a_gateway_refusal(
    demo_sim: SimulatorServer, demo_settings: Settings
) -> None:
    with pytest.raises(ConfigError) as raised:
        provider = sim_provider(DeepfinchProvider, demo_sim, demo_settings, secret_key=SecretStr("wrong"))
        provider.send(request_for())
    assert raised.value.code == "GATEWAY_403"
    assert demo_sim.state.counters("deepfinch").received == {}


@pytest.mark.parametrize("status", sorted(CODES))
def test_round_trip_injected_statuses(
    demo_sim: SimulatorServer, demo_settings: Settings, status: str
) -> None:
    demo_sim.state.set_faults("deepfinch", FaultPlan(codes=(status,), code_rate=1.0))
    with pytest.raises(ProviderError) as raised:
        sim_provider(DeepfinchProvider, demo_sim, demo_settings).send(request_for())
    assert (type(raised.value), raised.value.code) == (DOCUMENTED[status], status)
    assert demo_sim.state.counters("deepfinch").received == {}




# -- hostile answers (issue 6) ----------------------------------------------------------------------------

RATE_LIMITED = json.dumps({"status": "RATE_LIMIT_EXCEEDED", "reason": "调用频率超出限额"})


@pytest.mark.parametrize(
    ("header", "wait_s"),
    [
        ("7", 7.0), ("2.5", 2.5), ("0", 0.0), (" 30 ", 30.0),
        ("inf", None), ("Infinity", None), ("nan", None), ("NaN", None), ("-5", None), ("1e400", None),
        ("soon", None), ("", None),
        ("86400", MAX_RETRY_AFTER_S), ("9" * 400, MAX_RETRY_AFTER_S),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER_S),
    ],
)
def test_retry_after_is_none_or_a_finite_wait_within_the_cap(header: str, wait_s: float | None) -> None:
    # "inf" raised OverflowError in the worker's schedule_retry (issue 10); NaN and negatives passed through.
    with pytest.raises(RateLimitedError) as raised:
        provider_for(Recorder(RATE_LIMITED, status=403, headers={"Retry-After": header})).send(request_for())
    assert raised.value.retry_after_s == wait_s


def test_retry_after_as_an_http_date_is_the_time_left() -> None:
    response = httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    now = parsedate_to_datetime("Wed, 21 Oct 2015 07:27:00 GMT").timestamp()
    assert retry_after_s(response, now=now) == 60.0


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ('{"status": "INTERNAL_ERROR", "reason": "服务器内部错误"}', "INTERNAL_ERROR"),
        ("[" * 1000, "HTTP500"),
        ('{"status": "INVALID_ARGUMENT"}', "HTTP500"),  # a 5xx is a server failure whatever it says
        ('{"status": ["INTERNAL_ERROR"]}', "HTTP500"),
        ("<html>500</html>", "HTTP500"),
    ],
)
def test_a_5xx_is_transient_with_the_vendors_status_if_it_names_a_transient_one(body: str, code: str) -> None:
    with pytest.raises(TransientError) as raised:
        provider_for(Recorder(body, status=500)).send(request_for())
    assert raised.value.code == code


def test_a_status_of_the_wrong_type_is_unreadable_and_a_long_one_is_cut() -> None:
    with pytest.raises(AmbiguousError):  # 2xx: the vendor may have sent it
        provider_for(Recorder('{"status": ["OK"]}')).send(request_for())
    with pytest.raises(RequestRejectedError) as raised:
        provider_for(Recorder(json.dumps({"status": "X" * 10_000}), status=400)).send(request_for())
    assert raised.value.code == "X" * 64
