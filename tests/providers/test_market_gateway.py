"""Tencent Cloud market gateway auth (Xiaorui, Deepfinch): signature vectors, headers, verification."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime

import httpx
import pytest

from providers.errors import ConfigError
from providers.market_gateway import (
    GatewayRefusal,
    MarketGatewayAuth,
    authorization,
    gateway_error,
    http_date,
    signature,
    verify,
)

SECRET_ID = "AKIDi6qE41WgJ9w8h4h9zq68Vq24d1beIuN0qIwU"  # the SecretId in the seeds' curl sample
SECRET_KEY = "demo-secret-key"
DOC_DATE = "Mon, 19 Mar 2018 12:08:40 GMT"  # the Date in the seeds' curl sample
DOC_EPOCH = 1521461320.0  # DOC_DATE as a unix time
# Computed outside Python: printf 'x-date: Mon, 19 Mar 2018 12:08:40 GMT\nx-source: market' |
#   openssl dgst -sha1 -hmac 'demo-secret-key' -binary | base64
GOLDEN = "rG3zcZAufJnTEt0599/5oSKBZNc="
RFC1123 = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$")


def doc_sample_signature(secret_key: str, datetime: str) -> str:
    """The seeds' Python sample, line for line (a second, independent implementation)."""
    source = "market"
    sign_str = "x-date: %s\nx-source: %s" % (datetime, source)  # noqa: UP031 - the sample's own code
    sign = base64.b64encode(
        hmac.new(secret_key.encode("utf-8"), sign_str.encode("utf-8"), hashlib.sha1).digest()
    )
    return sign.decode("utf-8")


def signed_request(clock: float | None = None, secret_key: str = SECRET_KEY) -> httpx.Request:
    """A request as it leaves the client with our auth applied (captured by a MockTransport)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    auth = MarketGatewayAuth(SECRET_ID, secret_key, clock=(lambda: clock) if clock else time.time)
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        client.post("https://gw.test/release/smssend", data={"mobile": "18983437010"}, auth=auth)
    return seen[0]


# -- signature vectors -------------------------------------------------------------------------------


def test_signature_matches_the_openssl_golden_vector() -> None:
    assert signature(SECRET_KEY, DOC_DATE) == GOLDEN


@pytest.mark.parametrize(
    ("key", "date"),
    [(SECRET_KEY, DOC_DATE), ("xxxx", "Tue, 01 Jan 2030 00:00:00 GMT"), ("密钥-ключ", DOC_DATE)],
)
def test_signature_matches_the_documents_sample_code(key: str, date: str) -> None:
    assert signature(key, date) == doc_sample_signature(key, date)


def test_authorization_header_is_exactly_the_documents_format() -> None:
    assert authorization(SECRET_ID, SECRET_KEY, DOC_DATE) == (
        f'hmac id="{SECRET_ID}", algorithm="hmac-sha1", headers="x-date x-source", signature="{GOLDEN}"'
    )


def test_http_date_is_rfc1123_gmt() -> None:
    assert http_date(DOC_EPOCH) == DOC_DATE


# -- the httpx.Auth ----------------------------------------------------------------------------------


def test_auth_adds_the_three_headers_with_a_fixed_clock() -> None:
    request = signed_request(clock=DOC_EPOCH)
    assert request.headers["X-Source"] == "market"
    assert request.headers["X-Date"] == DOC_DATE
    assert request.headers["Authorization"] == authorization(SECRET_ID, SECRET_KEY, DOC_DATE)
    assert request.content == b"mobile=18983437010"  # the body is not touched


def test_auth_dates_the_request_now_in_gmt() -> None:
    date = signed_request().headers["X-Date"]
    assert RFC1123.match(date)
    assert abs(parsedate_to_datetime(date).timestamp() - time.time()) < 5


def test_a_signed_request_passes_verification() -> None:
    verify(signed_request().headers, SECRET_ID, SECRET_KEY, max_skew_s=60)


# -- verification (the simulators' side) ---------------------------------------------------------------


def _headers(**changes: str | None) -> dict[str, str]:
    headers = dict(signed_request().headers)
    for name, value in changes.items():
        key = name.replace("_", "-")
        if value is None:
            headers.pop(key, None)
        else:
            headers[key] = value
    return headers


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        pytest.param(lambda: _headers(authorization=None), 401, "authorization header is", id="no-auth"),
        pytest.param(lambda: dict(signed_request(secret_key="x").headers), 403, "does not match", id="key"),
        pytest.param(lambda: _headers(x_source="other"), 403, "does not match", id="source-changed"),
        pytest.param(lambda: _headers(x_source=None), 403, "a valid x-source header", id="no-source"),
        pytest.param(lambda: dict(signed_request(DOC_EPOCH).headers), 403, "out of date", id="old-date"),
        pytest.param(lambda: _headers(x_date="yesterday"), 403, "date header is invalid", id="bad-date"),
        pytest.param(lambda: _headers(authorization="Basic abc"), 403, "invalidate", id="scheme"),
        pytest.param(lambda: _headers(authorization='hmac id="x"'), 403, "signature missing", id="no-sig"),
    ],
)
def test_verify_refuses_what_the_gateway_refuses(
    headers: Callable[[], Mapping[str, str]], status: int, message: str
) -> None:
    with pytest.raises(GatewayRefusal) as refused:
        verify(headers(), SECRET_ID, SECRET_KEY, max_skew_s=60)
    assert refused.value.status_code == status
    assert message in refused.value.message


def test_verify_refuses_an_unknown_secret_id_and_another_algorithm() -> None:
    with pytest.raises(GatewayRefusal, match="id is invalid"):
        verify(signed_request().headers, "AKIDother", SECRET_KEY, max_skew_s=60)
    header = signed_request().headers["Authorization"]
    sha256 = _headers(authorization=header.replace("hmac-sha1", "hmac-sha256"))
    with pytest.raises(GatewayRefusal, match="algorithm"):
        verify(sha256, SECRET_ID, SECRET_KEY, max_skew_s=60)


def test_verify_reads_the_curl_samples_older_spelling() -> None:
    """The curl samples write ``headers = "date source"`` with spaces and an unquoted signature."""
    date = http_date()
    sign = base64.b64encode(
        hmac.new(SECRET_KEY.encode(), f"date: {date}\nsource: source".encode(), hashlib.sha1).digest()
    ).decode()
    header = f'hmac id = "{SECRET_ID}", algorithm = "hmac-sha1", headers = "date source", signature = {sign}'
    verify({"Date": date, "Source": "source", "Authorization": header}, SECRET_ID, SECRET_KEY, max_skew_s=60)


# -- the client's reading of a gateway refusal -----------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "code"),
    [
        (httpx.Response(401, json={"message": "HMAC signature cannot be verified"}), "GATEWAY_401"),
        (httpx.Response(403, json={"message": "HMAC signature does not match"}), "GATEWAY_403"),
        (httpx.Response(401, text="<html>Unauthorized</html>"), "GATEWAY_401"),
    ],
)
def test_gateway_refusals_are_config_errors(response: httpx.Response, code: str) -> None:
    error = gateway_error("xiaorui", response)
    assert isinstance(error, ConfigError)
    assert error.code == code
    assert SECRET_KEY not in str(error)


@pytest.mark.parametrize(
    "response",
    [
        # Deepfinch's own 403
        httpx.Response(403, json={"status": "RATE_LIMIT_EXCEEDED", "request_id": "TID1"}),
        httpx.Response(403, text="not json"),
        httpx.Response(200, json={"message": "fine"}),
        httpx.Response(400, json={"message": "bad"}),
    ],
)
def test_vendor_answers_are_not_gateway_refusals(response: httpx.Response) -> None:
    assert gateway_error("deepfinch", response) is None


@pytest.mark.parametrize(
    ("status", "body", "code", "text"),
    [
        (401, b"[" * 1000, "GATEWAY_401", "[" * 200),  # RecursionError before (issue 10)
        (403, b'{"message": ' * 500 + b'"x"' + b"}" * 500, None, ""),
        (401, b'{"message": ["a", {"b": 1}]}', "GATEWAY_401", ""),
        (403, b'{"message": "\\ud800 refused"}', "GATEWAY_403", "? refused"),
        (401, "签名错误".encode("gbk"), "GATEWAY_401", None),
    ],
    ids=["deep-401", "deep-403", "message-not-text", "lone-surrogate", "gbk"],
)
def test_a_hostile_refusal_body_is_read_without_raising(
    status: int, body: bytes, code: str | None, text: str | None
) -> None:
    error = gateway_error("xiaorui", httpx.Response(status, content=body))
    assert (error.code if error else None) == code
    if error is not None and text is not None:
        assert error.text == text
        error.text.encode()  # writable anywhere
