"""``worker``, ``beat`` and ``api`` say at start what they run with: the config file, the templates, each
vendor as ready or with the settings it lacks, and a warning on stderr when no vendor can send."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from config.settings import get_settings, load_settings
from providers.simulator import DEMO_ENV
from providers.vendors import VENDORS
from worker.cli import main
from worker.preflight import startup_report

COMMANDS = [["worker", "-Q", "sms.otp"], ["beat"], ["api", "--port", "8009"]]


@pytest.fixture
def no_credentials(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Every vendor's credentials emptied (settings reloaded before and after)."""
    for key in DEMO_ENV:
        monkeypatch.setenv(key, "")
    get_settings.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Celery and uvicorn record that they were started instead of serving."""
    import uvicorn

    from worker import metrics
    from worker.app import app

    started: dict[str, Any] = {}
    monkeypatch.setattr(app, "worker_main", lambda argv: started.update(celery=argv))
    monkeypatch.setattr(app, "start", lambda argv: started.update(celery=argv))
    monkeypatch.setattr(uvicorn, "run", lambda asgi, **kw: started.update(uvicorn=kw))
    # The metrics set-up changes process-wide state (prometheus-client's mode, an HTTP server): recorded only.
    monkeypatch.setattr(metrics, "prepare_worker", lambda port: started.update(metrics_port=port))
    return started


def test_the_report_names_the_config_file_the_templates_and_every_vendor_ready(
    env: dict[str, str],
) -> None:
    lines = startup_report(load_settings())
    assert lines[0].split() == ["config", env["SMSD_CONFIG"]]
    assert lines[1].split(None, 1) == ["templates", "bill, login_code, order_shipped"]
    assert lines[2].startswith("redis      redis://") or lines[2].startswith("redis      unix://")
    for name in VENDORS:
        assert any(line.startswith(f"{name}:") and " ready (" in line for line in lines), name
    assert not any(line.startswith("WARNING") for line in lines)


def test_a_vendor_without_its_credentials_is_named_with_the_settings_it_lacks(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMSD_TENCENT__SDK_APP_ID", "")
    monkeypatch.setenv("SMSD_TENCENT__APP_KEY", "")
    lines = startup_report(load_settings())
    assert "tencent:   not configured (SMSD_TENCENT__SDK_APP_ID, SMSD_TENCENT__APP_KEY missing)" in lines
    assert not any(line.startswith("WARNING") for line in lines)  # the others can still send


def test_no_config_file_says_so(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMSD_CONFIG")
    lines = startup_report(load_settings())
    assert lines[0] == "config     none (SMSD_CONFIG unset: no templates)"
    assert lines[1].startswith("templates  none")


def test_no_vendor_able_to_send_ends_the_report_with_a_warning(no_credentials: pytest.MonkeyPatch) -> None:
    lines = startup_report(load_settings())
    assert lines[-1].startswith("WARNING: no vendor can send")
    assert sum(line.endswith("missing)") for line in lines) == len(VENDORS)


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: argv[0])
def test_each_serving_command_prints_the_report_before_it_starts(
    r: Any, served: dict[str, Any], argv: list[str]
) -> None:
    out = CliRunner().invoke(main, argv)
    assert out.exit_code == 0, out.output
    assert served, "the command did not go on to start"
    for line in startup_report(get_settings()):
        assert line in out.stdout
    assert "WARNING" not in out.stderr


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: argv[0])
def test_each_serving_command_warns_on_stderr_when_no_vendor_can_send(
    r: Any, served: dict[str, Any], no_credentials: pytest.MonkeyPatch, argv: list[str]
) -> None:
    out = CliRunner().invoke(main, argv)
    assert out.exit_code == 0, out.output
    assert out.stderr.startswith("WARNING: no vendor can send: every recipient will be refused")
    assert "WARNING" not in out.stdout
