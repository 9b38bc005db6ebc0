"""Metrics: the families ``GET /metrics`` serves after real sends (embedded Redis, the simulator over
HTTP), the scrape during a Redis outage, and a real prefork worker whose children's counts add up."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from config.settings import Settings
from providers.base import RenderedTemplate
from providers.simulator.core import FaultPlan
from providers.simulator.server import SimulatorServer
from tasks.dispatch import ChunkJob, run_chunk
from tasks.plan import ChunkSpec
from tests.conftest import ROOT, WorkerProcess, wait_for
from worker.http.app import build_app
from worker.metrics import MULTIPROC_ENV, families
from worker.registry import get_provider
from worker.store import Keys, Store

TEMPLATE = RenderedTemplate("675871161745170001", ("A1", "SF"), ("order", "tracking"), "text")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition: (name, labels) -> value."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, metric: str, /, **labels: str) -> float | None:
    return found.get((metric, frozenset(labels.items())))


def counted(name: str, **labels: str) -> float:
    """This process's count so far (other tests in the session count too: compare before and after)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def chunk(phones: list[str], message_id: str) -> ChunkJob:
    return ChunkJob(message_id, "notify", ChunkSpec(0, "infocloud", tuple(phones), TEMPLATE))


@pytest.fixture
def store(r: redis.Redis, settings: Settings) -> Store:
    return Store(r, settings)


def test_a_send_shows_in_every_family_with_its_labels(
    sim: SimulatorServer, r: redis.Redis, settings: Settings, store: Store
) -> None:
    sent = {"vendor": "infocloud", "kind": "notify", "state": "submitted"}
    before = counted("smsd_recipients_total", **sent)
    calls_before = counted("smsd_vendor_calls_total", vendor="infocloud", outcome="accepted")
    phones = [f"139{i:08d}" for i in range(3)]
    run_chunk(chunk(phones, "m-ok"), settings, store, get_provider("infocloud", settings))
    sim.state.set_faults("infocloud", FaultPlan(codes=("-1",), code_rate=1.0))  # Infocloud "busy"
    busy = chunk(["13800000001", "13800000002"], "m-busy")
    (retry,) = run_chunk(busy, settings, store, get_provider("infocloud", settings)).retries
    # and what the scrape reads from Redis: a balance, an active campaign with live counters
    store.save_balances("infocloud", {"sms": 1234})
    r.sadd(Keys.campaigns_active, "c1")
    r.hset(Keys.campaign("c1"), mapping={"name": "spring", "status": "running", "accepted": "10"})
    r.hset(Keys.counts("c1"), mapping={"queued": "7", "submitted": "3", "parts": "3"})

    with TestClient(build_app(settings)) as client:
        answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    found = samples(answer.text)
    assert value(found, "smsd_recipients_total", **sent) == before + 3
    assert value(found, "smsd_vendor_calls_total", vendor="infocloud", outcome="accepted") == calls_before + 1
    assert value(found, "smsd_vendor_calls_total", vendor="infocloud", outcome="transient")
    assert value(found, "smsd_recipients_total", vendor="infocloud", kind="notify", state="retry")
    assert value(found, "smsd_retries_total", vendor="infocloud", reason=retry.reason)
    assert value(found, "smsd_vendor_call_seconds_count", vendor="infocloud")
    assert value(found, "smsd_vendor_call_seconds_bucket", vendor="infocloud", le="+Inf")
    assert value(found, "smsd_breaker_open", vendor="infocloud") == 0
    assert value(found, "smsd_breaker_failures", vendor="infocloud") == 1  # the busy answer
    assert value(found, "smsd_vendor_benched", vendor="tencent") == 0
    assert value(found, "smsd_vendor_balance", vendor="infocloud", item="sms") == 1234
    assert value(found, "smsd_vendor_last_success_timestamp_seconds", vendor="infocloud")
    for queue in ("sms.otp", "sms.notify", "sms.bulk", "sms.poll"):
        assert value(found, "smsd_queue_depth", queue=queue) == 0
    spring = {"campaign": "c1", "name": "spring"}
    assert value(found, "smsd_campaign_accepted", **spring) == 10
    assert value(found, "smsd_campaign_recipients", state="queued", **spring) == 7
    assert value(found, "smsd_campaign_recipients", state="delivered", **spring) == 0
    assert value(found, "smsd_campaign_parts", **spring) == 3
    assert value(found, "smsd_campaign_status", status="running", **spring) == 1
    assert value(found, "smsd_redis_up") == 1


def test_a_scrape_while_redis_is_down_answers_what_it_can(settings: Settings) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nobody listens there now
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0"})
    with TestClient(build_app(down)) as client:
        first, second = client.get("/metrics"), client.get("/metrics")
    assert first.status_code == second.status_code == 200
    found = samples(second.text)
    assert value(found, "smsd_redis_up") == 0
    assert value(found, "smsd_scrape_errors_total", section="vendors") == 2
    assert value(found, "smsd_queue_depth", queue="sms.otp") is None  # not tried: Redis is out of reach


class CliWorker(WorkerProcess):
    """``smsdispatch worker --metrics-port`` (the operator's command), not bare ``celery worker``."""

    def __init__(self, env: dict[str, str], name: str, port: int, log: Path) -> None:
        self.name = f"{name}@test"
        command = Path(sys.executable).with_name("smsdispatch")
        cmd = [str(command), "worker", "-Q", "sms.notify", "-c", "2", "--metrics-port", str(port),
               "-n", self.name, "-P", "prefork", "--without-gossip", "--without-mingle",
               "--without-heartbeat"]
        self.log = log
        self.proc = subprocess.Popen(cmd, env={**os.environ, **env}, cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=log.open("w"), start_new_session=True)


@pytest.fixture
def cli_worker(
    simulator: SimulatorServer, env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[[], int]]:
    """Start a worker with ``--metrics-port`` and its directory in ``tmp_path / "metrics"``; its port."""
    started: list[CliWorker] = []

    def start() -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        directory = {MULTIPROC_ENV: str(tmp_path / "metrics")}
        worker = CliWorker({**env, **directory}, "metrics", port, tmp_path / "worker.log")
        started.append(worker)
        worker.wait_ready()
        return port

    yield start
    for worker in started:
        worker.kill()  # nothing of it is checked after the test (a graceful stop takes 5 s)


@pytest.mark.e2e
def test_a_prefork_workers_children_add_up_on_its_metrics_port(  # type: ignore[no-untyped-def]
    cli_worker: Callable[[], int], sim, r, tmp_path: Path
) -> None:
    from tasks import send_sms

    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "counter_1.db").write_bytes(b"stale")  # a previous run's: the worker empties it
    port = cli_worker()
    assert not (tmp_path / "metrics" / "counter_1.db").exists()
    sim.state.set_faults("infocloud", FaultPlan(latency_s=0.3))  # both children busy at once
    for i in range(6):
        send_sms.delay([f"137{i:08d}"], template="order_shipped", params={"order": "A", "tracking": "B"})
    sent = {"vendor": "infocloud", "kind": "notify", "state": "submitted"}

    def scraped() -> Samples:
        return samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)

    wait_for(lambda: value(scraped(), "smsd_recipients_total", **sent) == 6, timeout=30)
    assert value(scraped(), "smsd_vendor_calls_total", vendor="infocloud", outcome="accepted") == 6
    # each child wrote its own file; the scrape above added them up
    per_child = [
        sample.value
        for path in (tmp_path / "metrics").glob("counter_*.db")
        for family in MultiProcessCollector.merge([str(path)])
        for sample in family.samples
        if sample.name == "smsd_recipients_total" and sample.labels == sent
    ]
    assert len(per_child) == 2 and all(per_child) and sum(per_child) == 6


def test_the_readme_and_the_dashboard_name_the_families_served(settings: Settings) -> None:
    families()  # made, so that the exposition names them before any send
    with TestClient(build_app(settings)) as client:
        text = client.get("/metrics").text
    names = {family.name for family in text_string_to_metric_families(text)}
    served = {name for name in names if name.startswith("smsd_")}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    tables = "\n".join(line for line in section.splitlines() if line.startswith("| `smsd_"))
    assert {name.removesuffix("_total") for name in re.findall(r"`(smsd_\w+)`", tables)} == served
    dashboard = json.loads((ROOT / "config" / "grafana" / "smsdispatch.json").read_text(encoding="utf-8"))
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    named = {name for expr in exprs for name in re.findall(r"smsd_\w+", expr)}
    used = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in named}
    assert used <= served and len(used) >= 10


def test_a_worker_refuses_a_busy_port_or_a_file_as_its_directory_in_one_line(
    env: dict[str, str], tmp_path: Path
) -> None:
    command = str(Path(sys.executable).with_name("smsdispatch"))
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cases = {
            f"--metrics-port {port}: Address already in use": (["--metrics-port", str(port)], {}),
            f"{MULTIPROC_ENV}={not_a_dir}: not a directory": ([], {MULTIPROC_ENV: str(not_a_dir)}),
        }
        for said, (args, extra) in cases.items():
            done = subprocess.run([command, "worker", "-c", "1", *args], env={**os.environ, **env, **extra},
                                  capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
            assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == f"Error: {said}"
            assert "Traceback" not in done.stderr
