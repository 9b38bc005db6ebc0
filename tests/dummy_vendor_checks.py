"""Checks run in a fresh pytest process started with ``SMSD_VENDOR_MODULES=tests.dummy_vendor`` by
``tests/test_vendor_plugin.py`` (not collected on its own: its name does not start with ``test_``).

With the dummy vendor registered at import, every derived piece must know it: settings, templates,
routing, the simulator, the demo credentials, and a send through a real worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from config.settings import PROVIDERS, Settings, get_settings
from providers.simulator import DEMO_ENV
from providers.simulator.server import SimulatorServer
from tests.conftest import WorkerProcess, wait_for
from tests.dummy_vendor import PATH, DummyProvider, DummySettings
from worker.registry import PROVIDER_CLASSES, capabilities, get_provider

pytestmark = pytest.mark.skipif(
    "dummy" not in PROVIDERS, reason="needs SMSD_VENDOR_MODULES=tests.dummy_vendor"
)
LOGIN_DUMMY = '{"id": "D-login", "params": ["code"]}'


@pytest.fixture
def dummy_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Routing to the dummy vendor first, and a ``login_code`` entry for it, from the environment alone."""
    extra = {
        "SMSD_ROUTING": '{"otp": ["dummy", "infocloud"]}',
        "SMSD_TEMPLATES__LOGIN_CODE__DUMMY": LOGIN_DUMMY,
    }
    for key, value in extra.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield extra
    monkeypatch.undo()
    get_settings.cache_clear()


def test_the_registry_and_the_demo_credentials_know_it() -> None:
    assert PROVIDERS[-1] == "dummy" and PROVIDER_CLASSES["dummy"] is DummyProvider
    assert capabilities("dummy").batch_size == 10
    assert DEMO_ENV["SMSD_DUMMY__TOKEN"] == "demo-dummy-token"


def test_its_settings_section_comes_from_the_environment(simulator: SimulatorServer) -> None:
    settings = get_settings()
    section = settings.vendor("dummy", DummySettings)
    assert section.token.get_secret_value() == "demo-dummy-token"  # DEMO_ENV, set by the env fixture
    assert section.base_url == simulator.url  # set by conftest's loop over the registered vendors
    assert isinstance(get_provider("dummy", settings), DummyProvider)


def test_it_gets_a_template_entry_and_a_route(dummy_env: dict[str, str]) -> None:
    settings: Settings = get_settings()
    login = settings.templates["login_code"]
    rendered = login.render("login_code", "dummy", {"code": "2468"})
    assert (rendered.vendor_template, rendered.params) == ("D-login", ("2468",))
    assert login.supports("tencent")  # the TOML file's entries are kept beside the environment's
    assert settings.routing["otp"] == ("dummy", "infocloud")
    assert settings.routing["notify"][-1] == "dummy"  # kinds left out: every vendor, in registry order


def test_the_simulator_mounts_it(simulator: SimulatorServer) -> None:
    assert PATH in {getattr(route, "path", None) for route in simulator.app.routes}


@pytest.mark.e2e
def test_a_send_goes_through_it_end_to_end(  # type: ignore[no-untyped-def]
    dummy_env: dict[str, str], start_worker: Callable[..., WorkerProcess], sim, r
) -> None:
    from tasks import send_sms
    from worker.store import State, Store

    start_worker("dummy", **dummy_env)
    result = send_sms.delay(
        ["13800138000", "13800138001"], template="login_code", params={"code": "2468"}, kind="otp"
    ).get(timeout=30)

    assert result["accepted"] == 2 and result["providers"] == ["dummy"]
    store = Store(r, get_settings())
    wait_for(lambda: store.counts(result["message_id"]).get(State.SUBMITTED, 0) == 2, timeout=30)
    assert sim.state.counters("dummy").received == {"13800138000": 1, "13800138001": 1}
    (body,) = sim.app.state.vendors["dummy"].bodies  # one call for both: its batch size is 10
    assert (body["template"], body["params"]) == ("D-login", ["2468"])
