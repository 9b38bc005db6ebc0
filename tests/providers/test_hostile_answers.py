"""Property tests: whatever a vendor answers, every parser of every adapter returns a well-typed result or
raises an error of ``providers/errors.py`` (keeping the error policy), and nothing else.

The answers come from ``tests/providers/strategies.py`` (fed by ``targets.py``): the vendor documents'
own answers, mutated, and plain garbage (deep nesting, NaN/Infinity, 400-digit numbers, wrong types,
HTML, non-UTF-8 bytes, any HTTP status, hostile ``Retry-After``), served through ``httpx.MockTransport``.
``reliability/fuzz.py`` draws the same strategies 10,000 times per target.
"""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from config.settings import Settings
from providers.base import SendRequest
from providers.errors import (
    AmbiguousError,
    ConfigError,
    ProviderError,
    RequestRejectedError,
    TransientError,
    UnsupportedFeature,
)
from tests.providers.targets import (
    ACCEPTED,
    REFUSED,
    TARGETS,
    TEMPLATE,
    UNSUPPORTED,
    Answer,
    Reply,
    Target,
    mock_provider,
    outcome,
)
from worker.registry import PROVIDER_CLASSES

EXAMPLES_PER_TARGET = 300


@pytest.mark.parametrize("target", TARGETS, ids=str)
def test_any_answer_is_a_typed_result_or_an_error_of_the_tree(
    target: Target, demo_settings: Settings
) -> None:
    replies: list[Reply] = []

    def serve(request: httpx.Request) -> httpx.Response:
        return replies[-1].response(request)

    provider = mock_provider(target.vendor, demo_settings, serve)
    seen: Counter[str] = Counter()

    @settings(
        max_examples=EXAMPLES_PER_TARGET,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(reply=target.replies())
    def answer(reply: Reply) -> None:
        replies.append(reply)
        seen[outcome(target, provider, reply)] += 1  # raises Unhandled for anything else

    answer()

    # The strategies must reach both sides of every parser, or the property says little.
    assert seen[ACCEPTED] > 0 and seen[REFUSED] > 0, dict(seen)


@pytest.mark.parametrize("target", UNSUPPORTED, ids=str)
def test_an_operation_the_vendor_lacks_is_unsupported_without_a_call(
    target: Target, demo_settings: Settings
) -> None:
    calls: list[httpx.Request] = []
    provider = mock_provider(target.vendor, demo_settings, _recording(calls, httpx.Response(200)))
    with pytest.raises(UnsupportedFeature):
        target.call(provider)
    assert calls == []


# -- the defects found by fuzzing, one case each, for every adapter operation --------------------------------

DEEP = b"[" * 1000  # raised RecursionError in every adapter (issue 10)


@pytest.mark.parametrize("target", TARGETS, ids=str)
@pytest.mark.parametrize(
    "body",
    [DEEP, b"[" * 40 + b"]" * 40, b'{"a":' * 900 + b"1" + b"}" * 900],
    ids=["open", "40-deep", "objects"],
)
def test_deeply_nested_json_is_an_unreadable_answer(
    target: Target, demo_settings: Settings, body: bytes
) -> None:
    calls: list[httpx.Request] = []

    with pytest.raises(ProviderError) as raised:
        answer = _recording(calls, httpx.Response(200, content=body))
        target.call(mock_provider(target.vendor, demo_settings, answer))

    # A send answered 2xx may have been acted on (ambiguous: never resent); a query sent nothing.
    expected = AmbiguousError if target.operation == "send" else TransientError
    assert (type(raised.value), raised.value.code) == (expected, "MALFORMED")
    assert len(calls) == 1


@pytest.mark.parametrize("vendor", sorted({t.vendor for t in TARGETS}))
@pytest.mark.parametrize(
    "base_url", ["http://[::1", "http://host:port", "http://ho\nst", "http://xn--", "ftp://vendor.test", "http://"]
)
def test_a_base_url_httpx_cannot_use_is_a_config_error_and_nothing_is_sent(
    vendor: str, demo_settings: Settings, base_url: str
) -> None:
    section = demo_settings.vendor(vendor).model_copy(update={"base_url": base_url})
    provider = PROVIDER_CLASSES[vendor](section, httpx.Client())  # type: ignore[call-arg]
    target = Target(vendor, "send")

    with pytest.raises(ConfigError) as raised:
        provider.send(target.request(provider))

    assert (raised.value.provider, raised.value.code) == (vendor, "BAD_SETTINGS")
    assert base_url not in str(raised.value)  # a URL may hold credentials


@pytest.mark.parametrize("vendor", sorted({t.vendor for t in TARGETS}))
def test_per_recipient_templates_not_one_per_phone_are_refused_before_any_call(
    vendor: str, demo_settings: Settings
) -> None:
    calls: list[httpx.Request] = []
    provider = mock_provider(vendor, demo_settings, _recording(calls, httpx.Response(500)))
    phones = Target(vendor, "send").request(provider).phones

    with pytest.raises(RequestRejectedError) as raised:
        provider.send(SendRequest(phones, TEMPLATE, per_recipient=(TEMPLATE,) * (len(phones) + 1)))

    assert (raised.value.code, calls) == ("PER_RECIPIENT", [])


def _recording(calls: list[httpx.Request], response: httpx.Response) -> Answer:
    """A MockTransport handler answering ``response`` to every request, kept in ``calls``."""

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return response

    return answer
