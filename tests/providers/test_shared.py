"""What the adapters and the simulators share: reading a vendor's numeric code, and the one sequence every
vendor simulator answers a call with (``serve``), seen from a client over HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from config.settings import Settings
from providers.base import RenderedTemplate, SendRequest, vendor_code
from providers.errors import ConfigError
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
