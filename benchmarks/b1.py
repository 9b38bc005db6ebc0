"""B1 bulk throughput and B2 the naive baseline, in one run (issue 9).

For each vendor stand-in (``stub``: ``benchmarks/stub.py``, an answer-only Infocloud that does no work, the
worker's own ceiling; ``sim``: the full Infocloud simulator, signatures checked, receipts queued) and each
size, one ``send_sms.delay`` of that many recipients through a real worker (prefork, ``-c``) and Redis, and
with ``--campaign N`` also N recipients as a campaign from a CSV file to ``--campaign-vendor``
(``worker.campaign.intake.submit``, then the runner on beat's tick). Per run it prints recipients/s from the
call to the last call's arrival at the vendor, the steady rate (10% to 90% of the calls), the time from the
call to the first vendor call, the worker's peak RSS (all its processes), and Redis bytes per recipient by
kind of key (the growth of each key, ``MEMORY USAGE``). Then B2: ``--naive`` recipients as one Celery task
each (``benchmarks/bulk.py``'s ``run_naive``) to the simulator, and B1 over B2.

    uv run python benchmarks/b1.py [--sizes 10000,100000,1000000] [--vendors stub,sim]
                                   [--campaign 1000000] [--naive 10000] [--concurrency 2]

Targets: stub >= 100,000/s, simulator >= 70,000/s, first call <= 200 ms at any size, rates across sizes
within 15%, worker RSS <= 300 MB at 1M, Redis <= 150 B/recipient, B1/B2 >= 300x.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bulk import bench_environment, logs_folder, run_naive, start_simulator, start_worker, tree_rss  # noqa: E402
from worker.embedded import EmbeddedRedis  # noqa: E402

PARAMS = {"order": "A1", "tracking": "SF1"}
# Kinds of key, by a part of their names (the first that matches; a message's recipients ``:r``, counters
# ``:n`` and chunk jobs ``:plan`` by their ends); the rest is the broker's and others.
KINDS = (
    ("message meta", ":msg:"),
    ("limits", ":lim:"),
    ("indexes", ":vid:"),
    ("indexes", ":leases"),
    ("indexes", ":settle"),
    ("events", ":events"),
    ("campaign pages", ":camp:"),
)


class Vendor:
    """Where a stand-in's calls are read: every call's (arrival, tag) and the phones accepted."""

    def __init__(self, name: str, url: str) -> None:
        self.name, self.url = name, url
        self.client = httpx.Client(timeout=30)

    def accepted(self) -> int:
        if self.name == "stub":
            return int(self.client.get(self.url + "/_stub/stats").json()["accepted"])
        stats = self.client.get(self.url + "/_sim/stats").json()
        return int(stats["vendors"].get("infocloud", {}).get("accepted", 0))

    def arrivals(self, prefix: str) -> list[float]:
        if self.name == "stub":
            calls = self.client.get(self.url + "/_stub/calls").json()["calls"]
            return sorted(t for t, tag, _ in calls if tag.startswith(prefix))
        calls = self.client.get(self.url + "/_sim/calls", params={"vendor": "infocloud"}).json()["calls"]
        return sorted(t for t, tag in calls if tag.startswith(prefix))


def start_stub(port: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, str(ROOT / "benchmarks/stub.py"), "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/_stub/stats", timeout=0.5)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(log.read_text())


def key_sizes(r: Any) -> dict[bytes, int]:
    return {key: r.memory_usage(key, samples=0) or 0 for key in r.scan_iter(count=1000)}


def growth_by_kind(before: dict[bytes, int], after: dict[bytes, int]) -> dict[str, int]:
    """Bytes each kind of key grew by (keys gone meanwhile, such as expired one-second limits, ignored)."""
    out: dict[str, int] = defaultdict(int)
    for key, size in after.items():
        name = key.decode()
        kind = next((k for k, part in KINDS if part in name and name.startswith("smsd")), "broker and other")
        if name.endswith(":r") or name.endswith(":n") or name.endswith(":plan"):
            kind = {"r": "state", "n": "counters", "plan": "chunk jobs"}[name.rsplit(":", 1)[1]]
        out[kind] += size - before.get(key, 0)
    return dict(out)


def wait_done(vendor: Vendor, target: int, worker: psutil.Process, timeout: float) -> int:
    """Until the vendor accepted ``target`` phones in all; the worker tree's peak RSS meanwhile."""
    peak, deadline = 0, time.monotonic() + timeout
    while vendor.accepted() < target:
        peak = max(peak, tree_rss(worker))
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {vendor.accepted():,} of {target:,} accepted in {timeout:.0f} s")
        time.sleep(0.05)
    return max(peak, tree_rss(worker))


def phones(n: int, first: int) -> list[str]:
    return [f"1{3 + i % 7}{i:09d}" for i in range(first, first + n)]


def measure(
    vendor: Vendor, worker: psutil.Process, r: Any, n: int, submit: Any, label: str
) -> dict[str, Any]:
    """Run ``submit()`` (which returns the bid prefix and sets off ``n`` recipients) and measure it."""
    before_keys, before_mem = key_sizes(r), r.info("memory")["used_memory"]
    target = vendor.accepted() + n
    started = time.time()
    prefix, submitted = submit()
    peak = wait_done(vendor, target, worker, timeout=60 + n / 2000)
    times = vendor.arrivals(prefix)
    growth = growth_by_kind(before_keys, key_sizes(r))
    seconds = times[-1] - started
    lo, hi = times[len(times) // 10], times[len(times) * 9 // 10]
    steady = (len(times) * 8 // 10) * (n / len(times)) / (hi - lo) if hi > lo else float("nan")
    return {
        "label": label,
        "n": n,
        "seconds": seconds,
        "rate": n / seconds,
        "steady": steady,
        "first_ms": (times[0] - started) * 1000,
        "submit_s": submitted - started,
        "calls": len(times),
        "rss": peak,
        "redis": (r.info("memory")["used_memory"] - before_mem) / n,
        "kinds": {k: v / n for k, v in growth.items()},
    }


def send_once(n: int, first: int) -> Any:
    def submit() -> tuple[str, float]:
        from tasks import send_sms

        result = send_sms.delay(phones(n, first), template="order_shipped", params=PARAMS)
        return str(result.id), time.time()

    return submit


def campaign_once(n: int, first: int) -> Any:
    def submit() -> tuple[str, float]:
        from config.settings import get_settings
        from worker.campaign.intake import CampaignSpec, submit
        from worker.store import Store, get_redis

        settings = get_settings()
        lines = "\n".join(["phone", *phones(n, first)]) + "\n"
        spec = CampaignSpec(template="order_shipped", params=PARAMS, kind="notify", name="b1.csv")
        done = submit(
            io.BytesIO(lines.encode()), "b1.csv", spec, settings, Store(get_redis(settings), settings)
        )
        return done.id, time.time()

    return submit


def start_beat(log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "celery", "-A", "worker.app", "beat", "-l", "WARNING"]
    cmd += ["-s", str(log.with_suffix(".schedule"))]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=log.open("w")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated recipients per send")
    parser.add_argument("--vendors", default="stub,sim", help="stub, sim or both")
    parser.add_argument("--campaign", type=int, default=0, help="also this many as a campaign (0: none)")
    parser.add_argument("--campaign-vendor", default="sim", help="the stand-in the campaign goes to")
    parser.add_argument("--naive", type=int, default=10_000, help="B2 recipients (0: skip)")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--port", type=int, default=18870)
    args = parser.parse_args()

    logs = logs_folder()
    redis_server = EmbeddedRedis()
    urls = {"sim": f"http://127.0.0.1:{args.port}", "stub": f"http://127.0.0.1:{args.port + 1}"}
    bench_environment(redis_server.url)
    procs = [
        start_simulator(args.port, logs / "b1-simulator.log"),
        start_stub(args.port + 1, logs / "b1-stub.log"),
    ]
    httpx.post(urls["sim"] + "/_sim/config", json={"tps_limit": 1_000_000})
    import redis

    r = redis.Redis.from_url(redis_server.url)
    runs: list[dict[str, Any]] = []
    naive: dict[str, Any] | None = None
    try:
        for name in args.vendors.split(","):
            os.environ["SMSD_INFOCLOUD__BASE_URL"] = urls[name]
            naive = run_vendor(args, Vendor(name, urls[name]), r, logs, runs) or naive
        report(args, runs, naive)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        redis_server.close()


def run_vendor(
    args: argparse.Namespace, vendor: Vendor, r: Any, logs: Path, runs: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """Every size (and the campaign) to one vendor stand-in, through a worker of its own (its Infocloud
    base URL is the stand-in's); with the simulator, B2 too. Appends to ``runs``; returns B2's figures."""
    worker = start_worker(args.concurrency, logs / f"b1-worker-{vendor.name}.log")
    first = 10**8 * (1 + len(runs))  # phones of their own: no per-phone limit left over from another run
    try:
        tree = psutil.Process(worker.pid)
        target = vendor.accepted() + 1
        send_once(1, 10**9 - 1 - len(runs))()  # warm-up: each process's connections and imports
        wait_done(vendor, target, tree, 30)
        time.sleep(1)
        for n in [int(s) for s in args.sizes.split(",")]:
            runs.append(
                {"vendor": vendor.name, **measure(vendor, tree, r, n, send_once(n, first), "send_sms")}
            )
            first += n
            print_run(runs[-1], flush=True)
        if args.campaign and vendor.name == args.campaign_vendor:
            beat = start_beat(logs / "b1-beat.log")
            try:
                submit = campaign_once(args.campaign, first)
                runs.append(
                    {"vendor": vendor.name, **measure(vendor, tree, r, args.campaign, submit, "campaign")}
                )
                print_run(runs[-1], flush=True)
            finally:
                beat.terminate()
                beat.wait(30)
        if vendor.name == "sim" and args.naive:
            before = httpx.get(vendor.url + "/_sim/stats").json()["vendors"]["infocloud"]
            return run_naive(args.naive, vendor.url, tree, before)
        return None
    finally:
        worker.terminate()
        worker.wait(60)


def print_run(run: dict[str, Any], flush: bool = False) -> None:
    kinds = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(run["kinds"].items(), key=lambda kv: -kv[1]))
    print(
        f"{run['vendor']:>4} {run['label']:<8} {run['n']:>9,}: {run['rate']:>8,.0f}/s end to end "
        f"({run['seconds']:.2f} s; steady {run['steady']:,.0f}/s), first call {run['first_ms']:,.0f} ms "
        f"(call returned after {run['submit_s'] * 1000:,.0f} ms), {run['calls']:,} calls, "
        f"worker RSS {run['rss'] / 2**20:,.0f} MiB, Redis {run['redis']:,.0f} B/recipient",
        flush=flush,
    )
    print(f"     by kind, B/recipient: {kinds}", flush=flush)


def report(args: argparse.Namespace, runs: list[dict[str, Any]], naive: dict[str, Any] | None) -> None:
    print(
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    print(f"worker: prefork, concurrency {args.concurrency}; Redis, simulator and stub on the same machine")
    for run in runs:
        print_run(run)
    misses: list[str] = []
    for name, floor in (("stub", 100_000), ("sim", 70_000)):
        mine = [run for run in runs if run["vendor"] == name and run["label"] == "send_sms"]
        if not mine:
            continue
        rates = [run["rate"] for run in mine]
        spread = max(rates) / min(rates) - 1
        print(f"{name}: rates {', '.join(f'{x:,.0f}' for x in rates)}/s, spread {spread:.0%}")
        if max(run["n"] for run in mine) >= 1_000_000 and mine[-1]["rate"] < floor:
            misses.append(f"{name} {mine[-1]['rate']:,.0f}/s < {floor:,}/s at {mine[-1]['n']:,}")
        if spread > 0.15:
            misses.append(f"{name} rates across sizes {spread:.0%} apart > 15%")
    for run in runs:
        where = f"{run['vendor']} {run['label']} {run['n']:,}"
        if run["first_ms"] > 200:
            misses.append(f"first call {run['first_ms']:,.0f} ms > 200 ms ({where})")
        if run["n"] >= 1_000_000 and run["rss"] > 300e6:
            misses.append(f"worker RSS {run['rss'] / 1e6:,.0f} MB > 300 MB ({where})")
        if run["redis"] > 150:
            misses.append(f"Redis {run['redis']:,.0f} B/recipient > 150 ({where})")
    if naive is not None:
        best = max((run for run in runs if run["label"] == "send_sms"), key=lambda run: run["n"])
        ratio = best["rate"] / naive["rate"]
        print(
            f"B2 naive (one task per recipient, simulator): {naive['n']:,} in {naive['seconds']:.2f} s = "
            f"{naive['rate']:,.0f}/s; B1 ({best['vendor']} {best['n']:,}) / B2 = {ratio:,.0f}x"
        )
        sims = [run for run in runs if run["vendor"] == "sim" and run["label"] == "send_sms"]
        if sims:
            sim_ratio = sims[-1]["rate"] / naive["rate"]
            print(f"  simulator B1 ({sims[-1]['n']:,}) / B2 = {sim_ratio:,.0f}x")
            if sim_ratio < 300:
                misses.append(f"B1/B2 {sim_ratio:,.0f}x < 300x")
    print(("FAIL: " + "; ".join(misses)) if misses else "PASS: every B1/B2 target met")


if __name__ == "__main__":
    main()
