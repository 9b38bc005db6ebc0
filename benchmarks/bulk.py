"""Bulk throughput: N recipients to the Infocloud simulator through a real worker and Redis.

Prints recipients/s from the ``send_sms`` call to the last vendor answer, the number of vendor calls,
the worker's peak RSS, Redis memory growth per recipient, and, in the same run, the rate of the naive
design (one Celery task per recipient: ``dispatch_chunk`` with a chunk of one) on a smaller N.

    uv run python benchmarks/bulk.py [--recipients 200000] [--naive 10000] [--concurrency 2]

The simulator runs in its own process, so it does not share a GIL with the measuring process.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from providers.simulator import DEMO_ENV  # noqa: E402
from worker.embedded import EmbeddedRedis  # noqa: E402

QUEUES = "sms.otp,sms.notify,sms.bulk,sms.poll"


def logs_folder() -> Path:
    """Where the benchmarks' processes log (``$TMPDIR/smsd-bench``), made if missing."""
    logs = logs_folder()
    return logs


def bench_environment(redis_url: str, **settings: str) -> None:
    """This process's environment, which the workers it starts inherit: the demo's credentials and
    templates on ``redis_url``, warnings only, and ``settings`` (``SMSD_*`` names) on top."""
    os.environ.update(
        {
            **DEMO_ENV,
            "SMSD_REDIS_URL": redis_url,
            "SMSD_CONFIG": str(ROOT / "config/demo.toml"),
            "SMSD_LOG_LEVEL": "WARNING",
            **settings,
        }
    )


def start_simulator(port: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "worker.cli", "simulator", "--port", str(port), "--receipt-delay", "3600"]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=os.environ.copy(), stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(url + "/_sim/stats", timeout=0.5)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(log.read_text())


def start_worker(concurrency: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.app",
        "worker",
        "-Q",
        QUEUES,
        "-c",
        str(concurrency),
        "-n",
        f"bench-{uuid.uuid4().hex[:6]}@%h",
        "-l",
        "WARNING",
        "--without-gossip",
        "--without-mingle",
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=log.open("w")
    )
    from worker.app import app

    deadline = time.monotonic() + 30
    while not app.control.ping(timeout=0.5):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(log.read_text()[-2000:])
    return proc


def tree_rss(proc: psutil.Process) -> int:
    procs = [proc, *proc.children(recursive=True)]
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):  # a pool child may have just been replaced
            total += p.memory_info().rss
    return total


def wait_accepted(sim_url: str, target: int, worker: psutil.Process, timeout: float) -> dict[str, Any]:
    """Wait until the simulator accepted ``target`` phones; sample the worker tree's RSS meanwhile."""
    peak = 0
    deadline = time.monotonic() + timeout
    client = httpx.Client()
    while True:
        peak = max(peak, tree_rss(worker))
        stats = client.get(sim_url + "/_sim/stats").json()
        info = stats["vendors"].get("infocloud", {})
        if info.get("accepted", 0) >= target:
            return {**info, "last_accept_at": stats["last_accept_at"], "peak_rss": peak}
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {info.get('accepted', 0)} of {target} accepted in {timeout:.0f} s")
        time.sleep(0.05)


def run_chunked(n: int, sim_url: str, worker: psutil.Process, r: Any) -> dict[str, Any]:
    from tasks import send_sms

    phones = [f"1{3 + i % 7}{i:09d}" for i in range(n)]
    mem_before = r.info("memory")["used_memory"]
    started = time.time()
    send_sms.delay(phones, template="order_shipped", params={"order": "A1", "tracking": "SF1"})
    result = wait_accepted(sim_url, n, worker, timeout=600)
    elapsed = result["last_accept_at"] - started
    mem_after = r.info("memory")["used_memory"]
    breakdown = memory_by_group(r)
    return {
        "breakdown": {group: size / n for group, size in breakdown.items()},
        "n": n,
        "seconds": elapsed,
        "rate": n / elapsed,
        "calls": result["calls"],
        "max_call": result["max_call_size"],
        "max_per_phone": result["max_per_phone"],
        "peak_rss": result["peak_rss"],
        "redis_bytes_per_recipient": (mem_after - mem_before) / n,
    }


GROUPS = (
    ("recipient state", ":msg:"),
    ("per-phone limits", ":lim:"),
    ("events stream", ":events"),
    ("vendor-id index", ":vid:"),
)


def memory_by_group(r: Any) -> dict[str, int]:
    """Bytes held by each kind of key (MEMORY USAGE, exact), right after the run."""
    sizes = dict.fromkeys([g for g, _ in GROUPS] + ["broker and other"], 0)
    for key in r.scan_iter(count=1000):
        name = key.decode()
        group = next((g for g, part in GROUPS if part in name), "broker and other")
        sizes[group] += r.memory_usage(key, samples=0) or 0
    return sizes


def run_naive(n: int, sim_url: str, worker: psutil.Process, before: dict[str, Any]) -> dict[str, Any]:
    """One Celery task per recipient: the same dispatch code, with a chunk of one phone."""
    from config.settings import get_settings
    from tasks.plan import build_plan, validate_request
    from tasks.send import dispatch_chunk

    settings = get_settings()
    phones = [f"1{3 + i % 7}{i:09d}" for i in range(10**9 // 2, 10**9 // 2 + n)]
    request = validate_request(
        {"to": phones[0], "template": "order_shipped", "params": {"order": "A1", "tracking": "SF1"}}, settings
    )
    template = build_plan(request, settings, {}).chunks[0]
    message_id = str(uuid.uuid4())
    started = time.time()
    for phone in phones:
        chunk = {**template.to_task(), "phones": [phone]}
        dispatch_chunk.apply_async((message_id, "notify", chunk), queue="sms.notify")
    result = wait_accepted(sim_url, before["accepted"] + n, worker, timeout=900)
    elapsed = result["last_accept_at"] - started
    return {"n": n, "seconds": elapsed, "rate": n / elapsed, "calls": result["calls"] - before["calls"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=200_000)
    parser.add_argument("--naive", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--port", type=int, default=18800)
    args = parser.parse_args()

    logs = logs_folder()
    redis_server = EmbeddedRedis()
    sim_url = f"http://127.0.0.1:{args.port}"
    bench_environment(redis_server.url, SMSD_INFOCLOUD__BASE_URL=sim_url)
    sim = start_simulator(args.port, logs / "simulator.log")
    httpx.post(sim_url + "/_sim/config", json={"tps_limit": 100_000})
    worker = start_worker(args.concurrency, logs / "worker.log")
    try:
        import redis

        r = redis.Redis.from_url(redis_server.url)
        chunked = run_chunked(args.recipients, sim_url, psutil.Process(worker.pid), r)
        before = httpx.get(sim_url + "/_sim/stats").json()["vendors"]["infocloud"]
        naive = run_naive(args.naive, sim_url, psutil.Process(worker.pid), before)
        report(args, chunked, naive)
    finally:
        worker.terminate()
        worker.wait(30)
        sim.terminate()
        sim.wait(10)
        redis_server.close()


def report(args: argparse.Namespace, chunked: dict[str, Any], naive: dict[str, Any]) -> None:
    cores, python = os.cpu_count(), platform.python_version()
    print(f"machine: {platform.node()} {platform.machine()} {cores} cores, Python {python}")
    print(f"worker: prefork, concurrency {args.concurrency}; simulator and Redis on the same machine")
    rate = f"{chunked['rate']:,.0f} recipients/s"
    print(f"chunked: {chunked['n']:,} recipients in {chunked['seconds']:.2f} s = {rate}")
    print(
        f"  vendor calls: {chunked['calls']:,} (largest {chunked['max_call']:,}; most to one phone "
        f"{chunked['max_per_phone']})"
    )
    print(f"  worker peak RSS (all processes): {chunked['peak_rss'] / 2**20:,.0f} MiB")
    print(f"  Redis memory growth: {chunked['redis_bytes_per_recipient']:,.0f} bytes/recipient")
    parts = ", ".join(f"{group} {size:,.0f}" for group, size in chunked["breakdown"].items())
    print(f"    by key, bytes/recipient: {parts}")
    naive_rate = f"{naive['rate']:,.0f} recipients/s"
    print(
        f"naive (one task per recipient): {naive['n']:,} in {naive['seconds']:.2f} s = {naive_rate}"
        f" ({naive['calls']:,} vendor calls)"
    )
    print(f"ratio chunked/naive: {chunked['rate'] / naive['rate']:.1f}x")


if __name__ == "__main__":
    main()
