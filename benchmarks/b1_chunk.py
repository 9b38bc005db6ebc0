"""Where a 1000-recipient chunk's time goes, in one process against one embedded Redis (issue 9, B1).

For ``--chunks`` chunks of 1000 fresh phones each: planning (``build_plan`` of 1000 phones), the planned
chunk's ``open_chunk`` (``init_queued``), the ``claim``, and the ``record`` of every phone submitted
(``transition`` and its events), each timed in the worker (CPU of this process: redis-py packing the
arguments and parsing the answer, our own code) and in Redis (its CPU per script, from ``INFO
commandstats``: EVAL/EVALSHA and the commands sent beside it; inflated when the cores are busy). Run with
redis-py's pure-Python parser and with hiredis (when installed) alternately, so that the two are compared
in the same run.

    uv run python benchmarks/b1_chunk.py [--chunks 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import redis
from redis._parsers import _HiredisParser, _RESP2Parser
from redis.utils import HIREDIS_AVAILABLE

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from providers.simulator import DEMO_ENV  # noqa: E402
from worker.embedded import EmbeddedRedis  # noqa: E402

PHONES = 1000
# Commands our code sends itself (those a script runs inside are counted by Redis under their own names
# as well, and are part of the script's time already). SCRIPT is redis-py's SCRIPT EXISTS before a
# pipeline that holds a script. Not HSETNX: init_queued runs it once per phone, so counting it would
# count open_chunk's script twice (the plan's one HSETNX a chunk, a microsecond, is left out).
OUTSIDE_LUA = {f"cmdstat_{name}" for name in ("eval", "evalsha", "xadd", "zadd", "set", "script")}


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def redis_usec(r: redis.Redis) -> dict[str, float]:
    return {name: float(stats["usec"]) for name, stats in r.info("commandstats").items()}


class Steps:
    """Worker CPU and Redis CPU (ms) per step, summed over chunks."""

    def __init__(self, admin: redis.Redis) -> None:
        self.admin = admin
        self.worker: dict[str, float] = defaultdict(float)
        self.redis: dict[str, float] = defaultdict(float)

    def time(self, step: str, fn: Any) -> Any:
        before, start = redis_usec(self.admin), cpu_s()
        result = fn()
        self.worker[step] += (cpu_s() - start) * 1000
        after = redis_usec(self.admin)
        spent = sum(after[k] - before.get(k, 0) for k in after if k in OUTSIDE_LUA)
        self.redis[step] += spent / 1000
        return result


def run(parser: Any, url: str, chunks: int, steps: Steps) -> None:
    from config.settings import get_settings
    from tasks.plan import build_plan, validate_request
    from tasks.send import chunk_job
    from worker.store import Outcome, Recording, State, Store

    settings = get_settings()
    pool = redis.ConnectionPool.from_url(url, parser_class=parser, decode_responses=True)
    store = Store(redis.Redis(connection_pool=pool), settings)
    rules = settings.limits["notify"]
    for _ in range(chunks):
        mid, base = uuid.uuid4().hex, int(uuid.uuid4().int % 10**8)
        phones = [f"13{(base + i) % 10**9:09d}" for i in range(PHONES)]
        body = {"to": phones, "template": "order_shipped", "params": {"order": "A1", "tracking": "SF1"}}
        plan = steps.time(
            "planning", lambda body=body: build_plan(validate_request(body, settings), settings, {})
        )
        job = chunk_job("notify", "sms.bulk", plan.chunks[0])
        until = int(time.time() * 1000) + 60_000
        steps.time("open_chunk", lambda m=mid, j=job, u=until: store.open_chunk(m, 0, j, u, queued=True))
        claim = steps.time(
            "claim",
            lambda m=mid, p=phones: store.claim(
                m, "notify", "infocloud", p, rules, 15_000, "tok", honour_optout=False
            ),
        )
        out = Recording([Outcome(p, State.SUBMITTED, "0", "", "bid", 1) for p in claim.send], chunk_done=True)
        steps.time("record", lambda m=mid, o=out: store.record(m, "infocloud", o, chunk=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server = EmbeddedRedis()
    os.environ.update(
        {**DEMO_ENV, "SMSD_REDIS_URL": server.url, "SMSD_CONFIG": str(ROOT / "config/demo.toml")}
    )
    admin = redis.Redis.from_url(server.url)
    parsers = {"python parser": _RESP2Parser, **({"hiredis": _HiredisParser} if HIREDIS_AVAILABLE else {})}
    results = {name: Steps(admin) for name in parsers}
    try:
        run(_RESP2Parser, server.url, 3, Steps(admin))  # warm-up: scripts loaded, imports done
        for _ in range(args.rounds):
            for name, parser_class in parsers.items():
                run(parser_class, server.url, args.chunks, results[name])
    finally:
        server.close()
    n = args.chunks * args.rounds
    print(f"per {PHONES}-recipient chunk, mean of {n} chunks per parser (ms of CPU: worker process / Redis)")
    for name, steps in results.items():
        parts = [
            f"{step} {steps.worker[step] / n:.2f} / {steps.redis[step] / n:.2f}" for step in steps.worker
        ]
        worker, server_ms = sum(steps.worker.values()) / n, sum(steps.redis.values()) / n
        print(f"  {name:>13}: " + "; ".join(parts) + f"; total {worker:.2f} / {server_ms:.2f}")


if __name__ == "__main__":
    main()
