"""What the adapters and the simulators share: reading a vendor's numeric code, and the one sequence every
vendor simulator answers a call with (``serve``), seen from a client over HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, ClassVar

import httpx
import pytest
from pydantic import SecretStr

from config.settings import Settings
from providers.base import (
    Capabilities,
    DeliveryState,
    HttpCall,
    Provider,
    Receipt,
    RecipientOutcome,
    RenderedTemplate,
    SendRequest,
    SendResult,
    vendor_code,
)
from providers.errors import AmbiguousError, ConfigError, ProviderError, RequestRejectedError, TransientError
from providers.reading import Unreadable
from providers.simulator.core import FaultPlan
from providers.simulator.server import SimulatorServer
from providers.xiaorui import XiaoruiProvider
from tests.providers.helpers import sim_provider


@pytest.mark.parametrize(
    ("value", "code"),
    [(0, "0"), ("0", "0"), (0.0, "0"), (" 1023 ", "1023"), (-1, "-1"), ("-1", "-1"), (4080.0, "4080")],
)
def test_a_numeric_code_reads_the_same_as_a_number_or_a_string(value: Any, code: str) -> None:
    assert vendor_code({"result": value}, "result") == code


@pytest.mark.parametrize("value", [None, True, False, "ok", "", "1.5", 0.5, [0], {"code": 0}])
def test_anything_but_a_whole_number_is_no_code(value: Any) -> None:
    assert vendor_code({"code": value}, "code") is None


@pytest.mark.parametrize("answer", [None, [0], "0", {"status": 0}])
def test_an_answer_without_the_field_has_no_code(answer: Any) -> None:
    assert vendor_code(answer, "code") is None


@pytest.mark.parametrize(
    "plan",
    [FaultPlan(codes=("21",), code_rate=1.0), FaultPlan(reset_rate=1.0, after_accept=True)],
    ids=["injected-code", "reset-after-accept"],
)
def test_the_market_gateway_refuses_ahead_of_any_injected_fault(
    demo_sim: SimulatorServer, demo_settings: Settings, plan: FaultPlan
) -> None:
    demo_sim.state.set_faults("xiaorui", plan)
    provider = sim_provider(XiaoruiProvider, demo_sim, demo_settings, secret_key=SecretStr("wrong"))

    with pytest.raises(ConfigError) as raised:
        provider.send(SendRequest(("13800138000",), RenderedTemplate("", text="hi")))

    assert raised.value.code == "GATEWAY_403"
    counters = demo_sim.state.counters("xiaorui")
    assert (counters.requests, counters.answered_codes, counters.received) == (1, {"GATEWAY_403": 1}, {})


# -- the send template (``Provider.send``) ------------------------------------------------------------------


class EchoProvider(Provider):
    """A vendor with the hooks only: the answer maps each phone we sent to its id."""

    name: ClassVar[str] = "echo"
    capabilities: ClassVar[Capabilities] = Capabilities(batch_size=2)

    def _build(self, request: SendRequest) -> HttpCall:
        return HttpCall("https://echo.test/send", json={"phones": list(request.phones)})

    def _parse(self, response: httpx.Response, request: SendRequest) -> SendResult:
        answer = self._json(response)
        # No shape checks on purpose: what Python raises on a surprise is the template's backstop to catch.
        outcomes = tuple(RecipientOutcome(phone, True, answer["ids"][phone]) for phone in request.phones)
        return SendResult(self.name, outcomes)

    def poll_receipts(self) -> tuple[Receipt, ...]:
        return self._query(HttpCall("https://echo.test/receipts"), _no_receipts)


def _no_receipts(response: httpx.Response) -> tuple[Receipt, ...]:
    raise Unreadable("no receipts in this answer")


def echo(answer: Callable[[httpx.Request], httpx.Response]) -> EchoProvider:
    return EchoProvider(httpx.Client(transport=httpx.MockTransport(answer)))


def test_a_vendor_implementing_the_hooks_gets_the_whole_send_sequence() -> None:
    sent: list[Any] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json={"ids": {"13800138000": "a", "13800138001": "b"}})

    result = echo(answer).send(SendRequest(("13800138000", "13800138001"), RenderedTemplate("t")))
    assert sent == [{"phones": ["13800138000", "13800138001"]}]
    assert [(o.phone, o.vendor_id) for o in result.outcomes] == [("13800138000", "a"), ("13800138001", "b")]


@pytest.mark.parametrize("count", [0, 3])
def test_the_batch_size_is_checked_once_for_every_vendor_before_any_call(count: int) -> None:
    calls: list[httpx.Request] = []
    provider = echo(lambda request: calls.append(request) or httpx.Response(200))  # type: ignore[func-returns-value]
    with pytest.raises(RequestRejectedError) as raised:
        provider.send(SendRequest(tuple(f"1380013800{i}" for i in range(count)), RenderedTemplate("t")))
    assert (raised.value.code, raised.value.provider, calls) == ("BATCH_SIZE", "echo", [])


@pytest.mark.parametrize(("status", "error"), [(200, AmbiguousError), (404, TransientError)])
@pytest.mark.parametrize("body", [{"ids": {}}, {"ids": ["a"]}, {"ids": None}, [1]], ids=repr)
def test_whatever_a_parser_trips_on_is_an_unreadable_answer(
    status: int, error: type[ProviderError], body: Any
) -> None:
    provider = echo(lambda request: httpx.Response(status, json=body))
    with pytest.raises(ProviderError) as raised:
        provider.send(SendRequest(("13800138000",), RenderedTemplate("t")))
    assert (type(raised.value), raised.value.code) == (error, "MALFORMED")


def test_an_unreadable_query_answer_is_transient_even_on_2xx() -> None:
    with pytest.raises(ProviderError) as raised:
        echo(lambda request: httpx.Response(200, json={})).poll_receipts()
    assert (type(raised.value), raised.value.code) == (TransientError, "MALFORMED")
    assert "no receipts in this answer" in str(raised.value)


def test_a_receipt_state_stored_before_the_normalized_set_still_reads() -> None:
    # Receipts parked in Redis were written with "failed"; the store reads them back by value.
    assert DeliveryState("failed") is DeliveryState.UNDELIVERED
    assert {state.value for state in DeliveryState} == {
        "delivered", "undelivered", "expired", "rejected", "unknown"
    }
