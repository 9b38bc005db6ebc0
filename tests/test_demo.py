"""``smsdispatch demo`` runs on its own Redis and settings whatever the environment holds: an exported
SMSD_REDIS_URL, vendor URL, credential or config file is never used (the demo's traffic once landed on an
operator's real Redis, where a real worker picked it up); it runs a small campaign to the end, and it says
what it stops while it shuts down."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from providers.simulator import DEMO_ENV
from worker.cli import main
from worker.demo import DEMO_CONFIG, demo_environment

ROOT = Path(__file__).resolve().parent.parent
OPERATOR_ENV = {
    "SMSD_CONFIG": "/etc/smsdispatch/production.toml",
    "SMSD_INFOCLOUD__API_KEY": "the-operators-real-key",
    "SMSD_ROUTING": '{"otp": ["infocloud"]}',
    "SMSD_VENDOR_MODULES": "",
    "PATH": "/usr/bin",
}


class Listener:
    """A TCP port that counts every connection made to it (and answers none)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def test_the_demo_environment_replaces_every_smsd_setting_with_the_demos() -> None:
    env = demo_environment({**OPERATOR_ENV, "SMSD_REDIS_URL": "redis://prod:6379/0"})
    assert "SMSD_REDIS_URL" not in env  # the demo adds its own
    assert "SMSD_ROUTING" not in env
    assert env["SMSD_CONFIG"] == str(DEMO_CONFIG)
    for key, value in DEMO_ENV.items():
        assert env[key] == value
    assert env["SMSD_VENDOR_MODULES"] == "" and env["PATH"] == "/usr/bin"  # code to load, not settings


@pytest.mark.e2e
def test_the_demo_ignores_an_exported_redis_and_vendor_and_says_what_it_stops(listener: Listener) -> None:
    bogus = f"127.0.0.1:{listener.port}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("SMSD_")}
    env.update(OPERATOR_ENV, PATH=os.environ["PATH"])
    env.update(SMSD_REDIS_URL=f"redis://{bogus}/0", SMSD_INFOCLOUD__BASE_URL=f"http://{bogus}")
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "demo", "--recipients", "50", "--timeout", "60"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert listener.connections == 0, "the demo reached the exported Redis or vendor URL"
    out = done.stdout
    assert out.startswith("redis     unix://")
    assert "notification to 50 (Infocloud)" in out
    campaign = out[out.index("\ncampaign "):]
    assert ": 302 rows, 300 accepted, 1 duplicate, 1 refused" in campaign.splitlines()[1]
    assert "  refused line 303 (" in campaign
    assert "  summary: done, 300 settled, 300 billed parts (planned 300)" in campaign
    shutdown = out[out.index("\nshutting down\n"):].splitlines()[2:]
    stopped = ["beat", "the worker", "the HTTP app", "the simulator", "Redis"]
    assert [line.split(" ...")[0].removeprefix("  stopping ").split(" (")[0] for line in shutdown] == stopped
    assert all(" ... done (" in line for line in shutdown)


def test_an_unreachable_redis_url_stops_the_demo_in_one_line_naming_the_option(listener: Listener) -> None:
    listener.close()  # nothing listens there now
    out = CliRunner().invoke(main, ["demo", "--redis-url", f"redis://:pw-secret@127.0.0.1:{listener.port}/0"])
    assert out.exit_code != 0
    assert out.output.startswith(f"Error: --redis-url=redis://:***@127.0.0.1:{listener.port}/0: cannot reach")
    assert out.output.count("\n") == 1 and "pw-secret" not in out.output


@pytest.mark.parametrize("argv", [["--recipients", "0"], ["--timeout", "-1"], ["--recipients", "x"]])
def test_bad_demo_options_are_refused_in_one_line(argv: list[str]) -> None:
    out = CliRunner().invoke(main, ["demo", *argv])
    assert out.exit_code == 2 and "Traceback" not in out.output
