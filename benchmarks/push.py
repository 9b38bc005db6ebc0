"""Push receivers under load: receipt pushes POSTed at a fixed rate to ``smsdispatch api`` on loopback.

The app runs as one uvicorn worker process (``smsdispatch api``) on an embedded Redis; this process is the
load generator (asyncio, keep-alive connections, plain HTTP/1.1 so the client costs little). The mix
rotates Infocloud (JSON, our apiKey in the body), Ihuyi (form, ``?token=``) and Tencent (JSON array,
``?token=``) receipt pushes; about 5% are forged (a wrong apiKey or token). Each good body carries a
unique id, so the run checks that every one of them is in the push inbox and no forged one is.

Answer times are measured from each request's scheduled send time (open loop: a slow answer delays no
later request's clock). Prints p50/p99/max, stored and refused counts, and PASS when p99 < 100 ms, every
good body was stored and every forged one refused.

    uv run python benchmarks/push.py [--rate 500] [--seconds 30] [--forged 0.05] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from providers.simulator import DEMO_ENV  # noqa: E402
from worker.embedded import EmbeddedRedis  # noqa: E402
from worker.store.keys import Keys  # noqa: E402

TOKENS = {"ihuyi": "bench-ihuyi-token", "tencent": "bench-tencent-token"}
P99_TARGET_MS = 100.0


@dataclass
class Push:
    path: str
    body: bytes
    content_type: str
    forged: bool
    mark: str  # the unique id the body carries


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    stored_ok: int = 0  # good bodies answered 200
    refused: int = 0  # forged bodies answered 403
    wrong: list[str] = field(default_factory=list)  # any other outcome


def make_push(i: int, forged: bool) -> Push:
    vendor = ("infocloud", "ihuyi", "tencent")[i % 3]
    mark = f"{i:012d}"
    phone = f"139{i % 10**8:08d}"
    if vendor == "infocloud":
        key = "forged-api-key" if forged else DEMO_ENV["SMSD_INFOCLOUD__API_KEY"]
        item = {"msgId": f"57{mark}", "tel": phone, "arriveResult": "DELIVRD", "arriveTime": "2405011200",
                "bid": f"bench.{mark}"}
        body = json.dumps({"apiKey": key, "data": [item]}).encode()
        return Push("/push/infocloud/receipts", body, "application/json", forged, mark)
    token = "guess" if forged else TOKENS[vendor]
    if vendor == "ihuyi":
        form = {"code": "1", "msg": "DELIVRD", "mobilephone": phone, "smsid": f"16{mark}",
                "report_time": "2024-05-01 12:00:00"}
        return Push(f"/push/ihuyi/receipts?token={token}", urlencode(form).encode(),
                    "application/x-www-form-urlencoded", forged, mark)
    item = {"user_receive_time": "2024-05-01 12:00:00", "nationcode": "86", "mobile": phone,
            "report_status": "SUCCESS", "errmsg": "DELIVRD", "description": "ok", "sid": f"2019:{mark}"}
    return Push(f"/push/tencent/receipts?token={token}", json.dumps([item]).encode(), "application/json",
                forged, mark)


def request_bytes(push: Push, port: int) -> bytes:
    head = (f"POST {push.path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {push.content_type}\r\n"
            f"Content-Length: {len(push.body)}\r\n\r\n")
    return head.encode() + push.body


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> int:
    """Send one request on a keep-alive connection and read its answer; returns the HTTP status."""
    writer.write(data)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    await reader.readexactly(length)
    return status


async def load(port: int, pushes: list[Push], rate: float, connections: int) -> Tally:
    tally = Tally()
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    start = time.perf_counter() + 0.2

    async def one(i: int, push: Push) -> None:
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        reader, writer = await pool.get()
        try:
            status = await exchange(reader, writer, request_bytes(push, port))
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            tally.wrong.append(f"{push.path}: {type(exc).__name__}")
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            status = 0
        finally:
            pool.put_nowait((reader, writer))
        tally.latencies_ms.append((time.perf_counter() - due) * 1000)
        tally.statuses[status] = tally.statuses.get(status, 0) + 1
        if push.forged and status == 403:
            tally.refused += 1
        elif not push.forged and status == 200:
            tally.stored_ok += 1
        else:
            tally.wrong.append(f"{push.path.split('?')[0]}: forged={push.forged} answered {status}")

    await asyncio.gather(*(one(i, push) for i, push in enumerate(pushes)))
    while not pool.empty():
        pool.get_nowait()[1].close()
    return tally


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_api(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "worker.cli", "api", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(log.read_text()) from None
            time.sleep(0.1)
    raise RuntimeError(f"the API did not start: {log.read_text()}")


def stored_marks(client: redis.Redis) -> list[str]:
    """The unique id of every stored receipt push (msgId, smsid or sid, without its prefix)."""
    marks = []
    for _, data in client.xrange(Keys.push_inbox("receipts")):  # type: ignore[union-attr]
        body = data["body"]
        if data["vendor"] == "ihuyi":
            marks.append(dict(p.split("=", 1) for p in body.split("&"))["smsid"][2:])
        elif data["vendor"] == "infocloud":
            marks.append(json.loads(body)["data"][0]["msgId"][2:])
        else:
            marks.append(json.loads(body)[0]["sid"][5:])
    return marks


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500.0, help="pushes a second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--forged", type=float, default=0.05, help="share of forged pushes")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections")
    args = parser.parse_args()
    rng = random.Random(7)
    total = int(args.rate * args.seconds)
    pushes = [make_push(i, rng.random() < args.forged) for i in range(total)]
    with tempfile.TemporaryDirectory(prefix="smsd-bench-") as tmp:
        server = EmbeddedRedis(tmp)
        env = {**os.environ, **DEMO_ENV, "SMSD_REDIS_URL": server.url, "SMSD_LOG_LEVEL": "ERROR",
               **{f"SMSD_{v.upper()}__PUSH_TOKEN": t for v, t in TOKENS.items()}}
        port = free_port()
        api = start_api(env, port, Path(tmp) / "api.log")
        try:
            began = time.perf_counter()
            tally = asyncio.run(load(port, pushes, args.rate, args.connections))
            elapsed = time.perf_counter() - began
        finally:
            api.terminate()
            api.wait(10)
        client = redis.Redis.from_url(server.url, decode_responses=True)
        marks = stored_marks(client)
        server.close()
    return report(args, pushes, tally, marks, elapsed)


def report(
    args: argparse.Namespace, pushes: list[Push], tally: Tally, marks: list[str], elapsed: float
) -> int:
    good = {p.mark for p in pushes if not p.forged}
    forged = {p.mark for p in pushes if p.forged}
    stored = set(marks)
    machine = f"{platform.node()} {platform.machine()} {os.cpu_count()} cores"
    print(f"machine: {machine}, Python {platform.python_version()}; app: smsdispatch api, 1 uvicorn process")
    print(f"load: {len(pushes):,} receipt pushes at {args.rate:.0f}/s for {args.seconds:.0f} s "
          f"({len(forged):,} forged), {args.connections} keep-alive connections, sent in {elapsed:.1f} s")
    lat = tally.latencies_ms
    p50, p99, worst = percentile(lat, 0.50), percentile(lat, 0.99), max(lat)
    print(f"answer time: p50 {p50:.1f} ms  p99 {p99:.1f} ms  max {worst:.1f} ms")
    print(f"statuses: {dict(sorted(tally.statuses.items()))}")
    print(f"good bodies stored: {len(good & stored):,} of {len(good):,} (answered 200: {tally.stored_ok:,})")
    print(f"forged refused: {tally.refused:,} of {len(forged):,} (forged stored: {len(forged & stored)})")
    for line in tally.wrong[:5]:
        print(f"  unexpected: {line}")
    ok = p99 < P99_TARGET_MS and good <= stored and tally.refused == len(forged) and not (forged & stored)
    ok = ok and len(marks) == len(good) and not tally.wrong
    print(f"{'PASS' if ok else 'FAIL'}: p99 {p99:.1f} ms < {P99_TARGET_MS:.0f} ms, every good body stored "
          f"once, every forged one refused")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
