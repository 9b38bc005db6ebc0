"""The simulator accepts the demo credentials and nothing else: a credential that is not the demo's (a real
one exported next to it, the compose stack's .env) is refused with the vendor's own bad-credential code
and reaches no phone, and ``smsdispatch simulator`` says so at start."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from config.settings import Settings, load_settings
from providers.base import RenderedTemplate, SendRequest
from providers.errors import ProviderError
from providers.simulator import DEMO_ENV, bad_credential_code, demo_settings
from providers.simulator.server import SimulatorServer
from providers.vendors import VENDORS
from worker.cli import main

PHONE = "13900000001"
# What an operator's environment may hold: every credential set, none of them the demo's.
REAL_ENV = {key: f"real-{value}" if not value.isdigit() else "1400099999" for key, value in DEMO_ENV.items()}
TEXT = "您的验证码是1234，5分钟内有效。"
# Template ids of config/demo.toml; the text vendors take TEXT.
TEMPLATES = {"tencent": "7839", "deepfinch": "TPL_0000", "infocloud": "675871161745170000"}


@pytest.fixture(scope="module")
def real_settings() -> Iterator[Settings]:
    with pytest.MonkeyPatch.context() as mp:
        for key in DEMO_ENV:
            mp.setenv(key, REAL_ENV[key])
        yield load_settings()


@pytest.fixture(scope="module")
def sim(real_settings: Settings) -> Iterator[SimulatorServer]:
    """A simulator built from settings that hold real-looking credentials."""
    with SimulatorServer(real_settings) as server:
        yield server


def _send(settings: Settings, vendor: str, sim: SimulatorServer) -> None:
    section = settings.vendor(vendor)
    section = type(section).model_validate({**section.model_dump(), "base_url": sim.url})
    template = RenderedTemplate(TEMPLATES.get(vendor, ""), ("1234",), ("code",), TEXT)
    # What the simulator answered is read from its counters.
    with httpx.Client() as client, contextlib.suppress(ProviderError):
        VENDORS[vendor].build(section, client).send(SendRequest((PHONE,), template))


@pytest.mark.parametrize("vendor", list(VENDORS))
def test_a_credential_that_is_not_the_demos_is_refused_with_the_vendors_own_code(
    sim: SimulatorServer, real_settings: Settings, vendor: str
) -> None:
    sim.state.reset()
    _send(real_settings, vendor, sim)
    counters = sim.state.counters(vendor)
    assert dict(counters.answered_codes) == {bad_credential_code(vendor): 1}
    assert not counters.received


@pytest.mark.parametrize("vendor", list(VENDORS))
def test_the_demo_credentials_are_accepted_by_the_same_simulator(
    sim: SimulatorServer, real_settings: Settings, vendor: str
) -> None:
    sim.state.reset()
    _send(demo_settings(real_settings), vendor, sim)
    counters = sim.state.counters(vendor)
    assert counters.requests == 1
    assert bad_credential_code(vendor) not in counters.answered_codes


def test_every_vendor_simulator_names_its_bad_credential_code() -> None:
    assert {name: bad_credential_code(name) for name in VENDORS} == {
        "infocloud": "2001",
        "xiaorui": "GATEWAY_403",
        "deepfinch": "GATEWAY_403",
        "tencent": "1001",
        "ihuyi": "405",
    }


def test_the_command_says_demo_only_and_names_each_ignored_credential(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import uvicorn

    from config.settings import get_settings

    served: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    monkeypatch.setenv("SMSD_INFOCLOUD__API_KEY", "a-real-key")
    monkeypatch.setenv("SMSD_IHUYI__PUSH_TOKEN", "push-secret")
    get_settings.cache_clear()
    try:
        out = CliRunner().invoke(main, ["simulator", "--port", "8801", "--push", "ihuyi=http://api:8000"])
    finally:
        get_settings.cache_clear()
    assert out.exit_code == 0, out.output
    assert out.output.startswith("demo-only: the simulator accepts the demo credentials")
    assert "infocloud  refuses with 2001" in out.output
    assert "SMSD_INFOCLOUD__API_KEY=demo-infocloud-api-key" in out.output
    assert "WARNING: SMSD_INFOCLOUD__API_KEY is set and ignored" in out.output
    assert "a-real-key" not in out.output
    assert "ihuyi pushes its receipts and replies to http://api:8000/push/ihuyi/..." in out.output
    served["app"].state.pusher.stop()
    state = served["app"].state.sim
    assert state.config.push_urls == {"ihuyi": "http://api:8000"}
    assert state.config.push_tokens == {"ihuyi": "push-secret"}
    assert served["port"] == 8801


@pytest.mark.parametrize(
    ("value", "error"),
    [("nokia=http://x", "unknown vendor 'nokia'"), ("ihuyi=api:8000", "must start with http://")],
)
def test_a_bad_push_target_stops_the_command_in_one_line(value: str, error: str) -> None:
    out = CliRunner().invoke(main, ["simulator", "--push", value])
    assert out.exit_code == 2 and error in out.output and "Traceback" not in out.output
