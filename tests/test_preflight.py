"""The commands that need Redis stop at once, with one line naming SMSD_REDIS_URL, when it is unreachable."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from worker.cli import main
from worker.preflight import masked_url

PASSWORD = "hunter2-secret"


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def redis_url(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Set SMSD_REDIS_URL for one test (settings reloaded); a worker or beat that starts anyway fails."""
    from config.settings import get_settings
    from worker.app import app

    def started(*_: object, **__: object) -> None:
        raise AssertionError("the command went on to start Celery")

    monkeypatch.setattr(app, "worker_main", started)
    monkeypatch.setattr(app, "start", started)
    get_settings.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.mark.parametrize("command", [["worker"], ["beat"], ["status", "m-1"]])
def test_an_unreachable_redis_stops_the_command_in_one_line_without_the_password(
    redis_url: pytest.MonkeyPatch, command: list[str]
) -> None:
    from config.settings import get_settings

    port = unused_port()
    redis_url.setenv("SMSD_REDIS_URL", f"redis://:{PASSWORD}@127.0.0.1:{port}/0")
    get_settings.cache_clear()
    started = time.monotonic()
    out = CliRunner().invoke(main, command)
    assert time.monotonic() - started < 5
    assert out.exit_code == 5, out.output
    assert out.output.startswith(
        f"Error: SMSD_REDIS_URL=redis://:***@127.0.0.1:{port}/0: cannot reach Redis: "
    )
    assert out.output.count("\n") == 1 and PASSWORD not in out.output


def test_a_url_without_a_scheme_stops_the_worker_naming_the_setting(redis_url: pytest.MonkeyPatch) -> None:
    from config.settings import get_settings

    redis_url.setenv("SMSD_REDIS_URL", "localhost:6379")
    get_settings.cache_clear()
    out = CliRunner().invoke(main, ["worker"])
    assert out.exit_code != 0 and "SMSD_REDIS_URL" in out.output
    assert "No module named" not in out.output and "Traceback" not in out.output


def test_status_goes_on_when_redis_answers(r, settings) -> None:  # type: ignore[no-untyped-def]
    out = CliRunner().invoke(main, ["status", "nope"])
    assert out.exit_code == 3 and "no message nope" in out.output  # past the check, to the store


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:p@ss@host/0", "redis://user:***@host/0"),
        ("redis://bare-token@host", "redis://***@host"),
        ("rediss://host:6380/0?password=abc&db=1", "rediss://host:6380/0?password=***&db=1"),
        ("unix:///run/redis.sock?db=2", "unix:///run/redis.sock?db=2"),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
    ],
)
def test_a_redis_url_is_shown_without_its_secrets(url: str, shown: str) -> None:
    assert masked_url(url) == shown
