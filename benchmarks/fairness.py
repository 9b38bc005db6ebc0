"""B5 campaign fairness: two campaigns started together share the vendor's budget evenly, and a notify
send made meanwhile reaches the vendor within a second.

Two notify campaigns of ``--rows`` recipients each (CSV files, through ``worker.campaign.intake.submit``)
to Infocloud capped at ``--rate`` calls a second (``requests_per_second``; the simulator refuses calls
over it). Both are submitted before any worker runs, so the runner's first tick (beat, every
``campaign.tick_s``) finds both. Workers as the README runs them: one for ``sms.notify,sms.bulk`` with
``SMSD_WORKER_PREFETCH=1``, one for ``sms.poll`` with beat (``--notify-worker``: notify and OTP on a
worker of their own, bulk alone). A first notify send warms the workers up (connections, imports); then,
while both campaigns are sending, ``--notifies`` single notify sends are made through
``send_sms.delay``, one a second, each timed from the call to its arrival at the simulator.

Each vendor call is counted for its campaign by its bid (``<campaign id>.<chunk>``) at the simulator
(``GET /_sim/calls``), over the time both campaigns were sending and in ``--window``-second windows of it.
Targets: each campaign's share of the calls within 10% of an even share (45% to 55%) while both run;
every notify at the vendor within 1 s.

    uv run python benchmarks/fairness.py [--rows 200000] [--rate 50] [--notifies 5]
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import platform
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.budget import start_host, stop, wait_hosts  # noqa: E402
from benchmarks.bulk import bench_environment, logs_folder, start_simulator  # noqa: E402
from worker.embedded import EmbeddedRedis  # noqa: E402

EVEN_WITHIN = 0.10  # each share within 10% of an even one
NOTIFY_WITHIN_S = 1.0
NOTIFY_PHONES = itertools.count()  # a phone per notify send (notify's per-phone limit is 1/1s)


def campaign_file(rows: int, first: int) -> io.BytesIO:
    """A CSV of ``rows`` distinct mobile numbers from ``first`` on."""
    lines = ["phone"] + [f"1{3 + i % 7}{first + i:09d}" for i in range(rows)]
    return io.BytesIO(("\n".join(lines) + "\n").encode())


def submit_campaigns(rows: int) -> list[str]:
    """Two notify campaigns of ``rows`` each, submitted through the intake; their ids."""
    from config.settings import get_settings
    from worker.campaign.intake import CampaignSpec, submit
    from worker.store import Store, get_redis

    settings = get_settings()
    store = Store(get_redis(settings), settings)
    spec = CampaignSpec(template="order_shipped", params={"order": "A1", "tracking": "SF1"}, kind="notify")
    ids = []
    for n, name in enumerate(("a.csv", "b.csv")):
        named = spec.model_copy(update={"name": name})
        done = submit(campaign_file(rows, n * rows), name, named, settings, store)
        ids.append(done.id)
    return ids


def calls(sim_url: str) -> list[tuple[float, str]]:
    got = httpx.get(sim_url + "/_sim/calls", params={"vendor": "infocloud"}).json()["calls"]
    return [(float(t), str(tag)) for t, tag in got]


def send_notifies(count: int, after: float) -> list[tuple[str, float]]:
    """``count`` notify sends, one a second, from ``after`` (unix s) on: (message id, time sent)."""
    from tasks import send_sms

    while time.time() < after:
        time.sleep(0.1)
    sent = []
    for _ in range(count):
        at = time.time()
        params = {"order": "N", "tracking": "T"}
        result = send_sms.delay(f"199{next(NOTIFY_PHONES):08d}", template="order_shipped", params=params)
        sent.append((str(result.id), at))
        time.sleep(1.0)
    return sent


def wait_started(sim_url: str, ids: list[str], timeout: float) -> float:
    """Until both campaigns have had a few calls: the time of the later one's first call."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = Counter(tag.partition(".")[0] for _, tag in calls(sim_url))
        if all(seen[campaign] >= 3 for campaign in ids):
            return time.time()
        time.sleep(0.3)
    raise RuntimeError(f"the campaigns did not both start within {timeout:.0f} s")


def wait_accepted(sim_url: str, target: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        info: dict[str, Any] = httpx.get(sim_url + "/_sim/stats").json()["vendors"].get("infocloud", {})
        if info.get("accepted", 0) >= target or time.monotonic() > deadline:
            return info
        time.sleep(0.5)


def picked_up(sent: list[tuple[str, float]]) -> str:
    """For each notify: from the call to its task's planning (the message's ``created_ms``), in ms."""
    from config.settings import get_settings
    from worker.store import Keys, get_redis

    r = get_redis(get_settings())
    waits = []
    for message_id, at in sent:
        created = r.hget(Keys.message(message_id), "created_ms")
        waits.append(f"{int(created) - at * 1000:.0f} ms" if created else "?")
    return ", ".join(waits)


def shares(arrivals: list[tuple[float, str]], ids: list[str], window_s: float) -> dict[str, Any]:
    """Each campaign's calls while both were sending (from the later first call to the earlier last one),
    in all and per window."""
    times = {c: [t for t, tag in arrivals if tag.partition(".")[0] == c] for c in ids}
    start = max(min(ts) for ts in times.values())
    end = min(max(ts) for ts in times.values())
    both = {c: [t for t in ts if start <= t <= end] for c, ts in times.items()}
    windows = []
    at = start
    while at + window_s <= end:
        counts = [sum(1 for t in both[c] if at <= t < at + window_s) for c in ids]
        windows.append(counts)
        at += window_s
    return {"start": start, "end": end, "counts": [len(both[c]) for c in ids], "windows": windows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="recipients per campaign")
    parser.add_argument("--rate", type=int, default=50, help="the vendor's cap, calls per second")
    parser.add_argument("--notifies", type=int, default=5)
    parser.add_argument("--window", type=float, default=5.0, help="seconds per counting window")
    parser.add_argument("--concurrency", type=int, default=3, help="processes of the notify,bulk worker")
    parser.add_argument(
        "--notify-worker", action="store_true", help="notify (and OTP) on a worker of their own, bulk alone"
    )
    parser.add_argument("--port", type=int, default=18830)
    args = parser.parse_args()

    logs = logs_folder()
    redis_server = EmbeddedRedis()
    sim_url = f"http://127.0.0.1:{args.port}"
    bench_environment(
        redis_server.url,
        SMSD_INFOCLOUD__BASE_URL=sim_url,
        SMSD_INFOCLOUD__REQUESTS_PER_SECOND=str(args.rate),
    )
    procs = [start_simulator(args.port, logs / "fairness-simulator.log")]
    try:
        httpx.post(sim_url + "/_sim/config", json={"tps_limit": args.rate}).raise_for_status()
        started = time.monotonic()
        ids = submit_campaigns(args.rows)
        intake_s = time.monotonic() - started
        suffix = uuid.uuid4().hex[:6]
        if args.notify_worker:
            procs.append(start_host(f"fair-notify-{suffix}", "sms.otp,sms.notify", 1, logs))
        bulk = "sms.bulk" if args.notify_worker else "sms.notify,sms.bulk"
        one = {"SMSD_WORKER_PREFETCH": "1"}  # README: a worker taking notify and bulk reserves one task
        procs.append(start_host(f"fair-bulk-{suffix}", bulk, args.concurrency, logs, env=one))
        procs.append(start_host(f"fair-poll-{suffix}", "sms.poll", 1, logs, beat=True))
        wait_hosts(procs[1:], logs)
        expected_s = 2 * args.rows / 1000 / args.rate
        send_notifies(1, 0.0)  # not counted: each worker process's first task sets up its connections
        both_started = wait_started(sim_url, ids, timeout=120)
        sent = send_notifies(args.notifies, both_started)
        info = wait_accepted(sim_url, 2 * args.rows + args.notifies + 1, timeout=expected_s * 3 + 120)
        report(args, ids, intake_s, calls(sim_url), sent, info)
    finally:
        stop(procs)
        redis_server.close()


def report(
    args: argparse.Namespace,
    ids: list[str],
    intake_s: float,
    arrivals: list[tuple[float, str]],
    sent: list[tuple[str, float]],
    info: dict[str, Any],
) -> None:
    python = platform.python_version()
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {python}")
    bulk = "sms.otp,sms.notify x 1; sms.bulk" if args.notify_worker else "sms.notify,sms.bulk"
    print(f"workers: {bulk} x {args.concurrency}; sms.poll x 1 with beat; one Redis")
    print(f"campaigns: 2 x {args.rows:,} rows (both submitted in {intake_s:.1f} s); vendor cap {args.rate}/s")
    total = 2 * args.rows + args.notifies + 1
    print(f"accepted {info.get('accepted', 0):,} of {total:,}; codes {info.get('codes', {})}")
    got = shares(arrivals, ids, args.window)
    a, b = got["counts"]
    share = a / (a + b) if a + b else 0.0
    span = got["end"] - got["start"]
    print(f"while both sent ({span:.1f} s): campaign A {a} calls, B {b} calls; A's share {share:.1%}")
    window_shares = [w[0] / sum(w) for w in got["windows"] if sum(w)]
    print(f"per {args.window:g} s window (A, B): {got['windows']}")
    if window_shares:
        worst = max(window_shares, key=lambda s: abs(s - 0.5))
        low, high = min(window_shares), max(window_shares)
        print(f"  A's share per window: {low:.1%} to {high:.1%} (furthest from even {worst:.1%})")
    arrived = {tag.partition(".")[0]: t for t, tag in reversed(arrivals)}
    latencies = [arrived[mid] - at if mid in arrived else float("inf") for mid, at in sent]
    print("notify, call to vendor: " + ", ".join(f"{lat * 1000:.0f} ms" for lat in latencies))
    print("  of which before its task planned it (queue, worker pick-up, planning): " + picked_up(sent))
    misses = []
    if abs(share - 0.5) > 0.5 * EVEN_WITHIN:
        misses.append(f"A's share {share:.1%} not within 45%-55%")
    if any(lat > NOTIFY_WITHIN_S for lat in latencies):
        misses.append(f"a notify took {max(latencies):.2f} s > {NOTIFY_WITHIN_S:g} s")
    if info.get("accepted", 0) < total:
        misses.append(f"only {info.get('accepted', 0):,} of {total:,} accepted")
    if misses:
        print("FAIL: " + "; ".join(misses))
    else:
        slowest = max(latencies, default=0.0)
        print(f"PASS: shares {share:.1%} / {1 - share:.1%} while both ran; notifies within {slowest:.2f} s")


if __name__ == "__main__":
    main()
