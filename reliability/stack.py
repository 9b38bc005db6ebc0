"""The system as the long reliability checks run it: an embedded Redis, the vendor simulator, workers and
beat as subprocesses with the demo's settings, and what the checks read back (campaign counts, records by
state and code, the events stream, the simulator's per-phone counters).

Used by ``campaign_run.py`` (B-style run through the CLI), ``crashes.py`` (R1), ``redis_restart.py`` (R2),
``outage.py`` (R4) and ``soak.py`` (R7). Everything it starts is its own child: a worker is its own
process group, so a SIGKILL takes its pool children with it, as a container or a host crash would.

The simulator runs either as its own process (``smsdispatch simulator``: what ``campaign_run`` measures
OTP latency against) or in a thread of the checking process (``sim="thread"``), where its counters are
read directly: which phones each vendor took and how often, across vendors.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx

from worker.demo import demo_environment
from worker.embedded import EmbeddedRedis, Fsync

if TYPE_CHECKING:
    from providers.simulator.core import SimConfig
    from providers.simulator.server import SimulatorServer
    from worker.store import Store

ROOT = Path(__file__).resolve().parent.parent
VENDORS = ("infocloud", "xiaorui", "deepfinch", "tencent", "ihuyi")
FINAL_STATES = ("delivered", "failed", "rejected", "rate_limited", "opted_out", "cancelled")
SETTLE_S = 30  # the campaign checks' settle window: a submitted recipient without a receipt fails after it
# Infocloud's receipts per query. The vendor hands each receipt once: a page pulled by a poll that was
# killed, or whose answer the network lost, is gone, and its recipients fail NO_RECEIPT after SETTLE_S.
RECEIPT_PAGE = 600


def campaign_check_setup(rate: float, log_level: str) -> tuple[dict[str, str], SimConfig]:
    """The settings and simulator the campaign checks (R1, R2, R7) share: Infocloud's budget at ``rate``
    calls a second, a short settle window and lease grace, receipts after 1 s with 2% undelivered, and no
    query or call cap at the simulator (the budget is what paces the calls)."""
    from providers.simulator.core import SimConfig

    extra = {
        "SMSD_INFOCLOUD__REQUESTS_PER_SECOND": str(rate),
        "SMSD_INFOCLOUD__SETTLE_S": str(SETTLE_S),
        "SMSD_LEASE_GRACE_S": "20",
        "SMSD_LOG_LEVEL": log_level,
    }
    config = SimConfig(
        receipt_delay_s=1.0, undelivered_share=0.02, query_per_minute=100_000, tps_limit=100_000
    )
    return extra, config


class CheckFailed(Exception):
    """A check could not go on (a part did not start, a wait timed out): its FAIL line says why."""


def in_folder(name: str, body: Callable[[Path], int]) -> int:
    """Run ``body`` with a fresh folder for its Redis, logs and files; the folder is removed when ``body``
    returns 0 and kept (and named) otherwise, for its logs."""
    folder = Path(tempfile.mkdtemp(prefix=f"smsd-{name}-"))
    code = 1
    try:
        code = body(folder)
        return code
    finally:
        if code == 0:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"logs kept in {folder}", flush=True)


def wait_until(check: Callable[[], object], timeout: float, what: str, interval: float = 0.2) -> None:
    """Call ``check`` until it is true; :class:`CheckFailed` after ``timeout`` s (HTTP errors: not yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(interval)
    raise CheckFailed(f"timed out after {timeout:.0f} s waiting for {what}")


def write_rows(path: Path, rows: int, prefix: str = "139") -> list[str]:
    """A campaign CSV for the ``order_shipped`` template (each row its own order and tracking); the phones."""
    phones = [f"{prefix}{i:08d}" for i in range(rows)]
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["phone", "order", "tracking"])
        for i, phone in enumerate(phones):
            out.writerow([phone, f"A{i:07d}", f"SF{i:010d}"])
    return phones


@dataclass
class Process:
    """One child (``python -m worker.cli ARGS``) in its own session, logging to ``log`` (appended across
    restarts, so a killed run's last lines stay)."""

    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> Process:
        with self.log.open("a") as out:
            out.write(f"\n=== start {self.starts + 1} at {time.strftime('%H:%M:%S')} ===\n")
            out.flush()
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", *self.args],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def exit_code(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def kill(self) -> None:
        """SIGKILL the whole process group (the main process and its pool children): nobody cleans up."""
        if self.popen is not None and self.alive:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        if self.popen is None or not self.alive:
            return
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def rss_kib(self) -> int:
        """Resident memory of the process and its children (KiB), 0 when not running."""
        if self.popen is None or not self.alive:
            return 0
        return group_rss_kib(self.popen.pid)

    def tail(self, chars: int = 1500) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pid_rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def group_rss_kib(pgid: int) -> int:
    """Sum of VmRSS over every process in process group ``pgid``."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp, ...
            total += pid_rss_kib(int(entry.name))
    return total


class _DropDisconnects(logging.Filter):
    """A worker killed mid-call leaves the simulator reading a body that never comes: that is the fault
    the check injects, not an error worth a traceback on the check's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        from starlette.requests import ClientDisconnect

        return not (record.exc_info and isinstance(record.exc_info[1], ClientDisconnect))


@dataclass
class Stack:
    """Redis, the simulator and the processes a check starts, in ``folder``; ``close`` stops them all.

    ``env`` is the demo's environment plus the Redis URL, every vendor's base URL (the simulator) and
    ``extra``; it also becomes this process's ``os.environ`` (settings, ``.delay()``, the store). Change a
    vendor's URL with :meth:`point` before starting the workers that should use it.
    """

    folder: Path
    durable: bool = False
    fsync: Fsync = "everysec"
    extra: Mapping[str, str] = field(default_factory=dict)
    sim_mode: Literal["process", "thread"] = "process"
    sim_config: SimConfig | None = None
    sim_options: tuple[str, ...] = ()  # more ``smsdispatch simulator`` options (process mode)
    redis: EmbeddedRedis = field(init=False)
    env: dict[str, str] = field(init=False)
    sim: SimulatorServer | None = field(init=False, default=None)
    sim_url: str = field(init=False, default="")
    procs: dict[str, Process] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.redis = EmbeddedRedis(str(self.folder / "redis"), durable=self.durable, fsync=self.fsync)
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        env = demo_environment(os.environ)
        env.update({"SMSD_REDIS_URL": self.redis.url, "SMSD_LOG_LEVEL": "WARNING", **self.extra})
        self.env = env
        self._apply_env()
        if self.sim_mode == "thread":
            from config.settings import get_settings
            from providers.simulator.server import SimulatorServer

            self.sim = SimulatorServer(get_settings(), self.sim_config).start()
            logging.getLogger("uvicorn.error").addFilter(_DropDisconnects())
            self.sim_url = self.sim.url
        else:
            port = 18800 + os.getpid() % 1000
            self.sim_url = f"http://127.0.0.1:{port}"
            self.spawn("sim", ["simulator", "--port", str(port), "--receipt-delay", "1", *self.sim_options])
            wait_until(
                lambda: httpx.get(f"{self.sim_url}/_sim/stats", timeout=1).is_success, 30, "the simulator"
            )
        for name in VENDORS:
            self.point(name, self.sim_url)

    def point(self, vendor: str, url: str) -> None:
        """Give ``vendor``'s base URL as ``url`` to the processes started from now on."""
        self.env[f"SMSD_{vendor.upper()}__BASE_URL"] = url
        self._apply_env()

    def _apply_env(self) -> None:
        from config.settings import get_settings

        os.environ.clear()
        os.environ.update(self.env)
        get_settings.cache_clear()

    # -- processes ------------------------------------------------------------------------------------

    def spawn(self, name: str, args: list[str]) -> Process:
        proc = Process(name, args, dict(self.env), self.folder / f"{name}.log").start()
        self.procs[name] = proc
        return proc

    def worker(self, name: str, queues: str, concurrency: int = 2) -> Process:
        """``smsdispatch worker`` named ``name@<host>`` taking ``queues``; not waited for (see ``ready``)."""
        return self.spawn(name, ["worker", "-Q", queues, "-c", str(concurrency), "-n", f"{name}@%h"])

    def beat(self) -> Process:
        return self.spawn("beat", ["beat", "-s", str(self.folder / "beat-schedule")])

    def api(self, name: str = "api") -> str:
        """``smsdispatch api`` (the push receivers, ``/v1``, ``/healthz``) on a free port; its base URL
        once it answers ``/healthz``."""
        port = free_port()
        self.spawn(name, ["api", "--port", str(port)])
        url = f"http://127.0.0.1:{port}"

        def answered() -> bool:
            if not self.procs[name].alive:
                raise CheckFailed(f"{name} exited {self.procs[name].exit_code}: {self.procs[name].tail()}")
            return httpx.get(f"{url}/healthz", timeout=1).status_code < 500

        wait_until(answered, 60, f"{name} to answer /healthz")
        return url

    def ready(self, *names: str, timeout: float = 90.0) -> None:
        """Wait until each named worker answers a ping (the broker and its pool are up)."""
        from worker.app import app

        def answered() -> bool:
            for name in names:
                if not self.procs[name].alive:
                    raise CheckFailed(
                        f"worker {name} exited {self.procs[name].exit_code}: {self.procs[name].tail()}"
                    )
            replies = app.control.ping(timeout=1.0)
            seen = {key.split("@")[0] for reply in replies for key in reply}
            return set(names) <= seen

        wait_until(answered, timeout, f"workers {', '.join(names)}", interval=0.1)

    def restart(self, name: str) -> Process:
        """Start a stopped or killed process again with the same arguments (a supervisor's restart)."""
        proc = self.procs[name]
        proc.env = dict(self.env)
        return proc.start()

    def close(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.alive and proc.popen is not None:
                os.killpg(proc.popen.pid, signal.SIGTERM)
        for proc in self.procs.values():
            proc.stop()
        if self.sim is not None:
            self.sim.stop()
        self.redis.kill()
        self.redis.close()

    # -- reading back ---------------------------------------------------------------------------------

    def store(self) -> Store:
        from config.settings import get_settings
        from worker.store import Store, get_redis

        settings = get_settings()
        return Store(get_redis(settings), settings)

    def sim_stats(self, vendor: str) -> dict[str, Any]:
        stats: dict[str, Any] = httpx.get(f"{self.sim_url}/_sim/stats", timeout=10).json()["vendors"]
        return dict(stats.get(vendor, {}))

    def received(self, vendor: str) -> Counter[str]:
        """How often ``vendor`` accepted each phone (the in-process simulator only)."""
        assert self.sim is not None, "sim_mode='thread' keeps the per-phone counters in reach"
        state = self.sim.state
        with state.lock:
            return Counter(state.vendors[vendor].received) if vendor in state.vendors else Counter()


def submit_campaign(
    store: Store, path: Path, template: str = "order_shipped", **spec: Any
) -> tuple[str, int]:
    """Submit ``path`` through the campaign intake, as ``smsdispatch campaign submit`` does; its id and
    how many rows it accepted."""
    from worker.campaign.intake import CampaignSpec, submit

    with path.open("rb") as stream:
        result = submit(stream, path.name, CampaignSpec(template=template, **spec), store.settings, store)
    return result.id, result.accepted


def final_count(counts: Mapping[str, int]) -> int:
    return sum(int(counts.get(state, 0)) for state in FINAL_STATES)


def wait_final(
    store: Store,
    message_id: str,
    expected: int,
    timeout: float,
    stall_s: float = 240.0,
    every: Callable[[], None] | None = None,
) -> Counter[str]:
    """Wait until ``expected`` recipients of ``message_id`` are final; :class:`CheckFailed` with the counts
    once nothing moved for ``stall_s`` or after ``timeout``. ``every`` runs each round (sampling)."""
    started = last_move = time.monotonic()
    seen: Counter[str] = Counter()
    while True:
        counts = store.counts(message_id)
        if final_count(counts) >= expected:
            return counts
        if counts != seen:
            seen, last_move = counts, time.monotonic()
        now = time.monotonic()
        if now - last_move > stall_s or now - started > timeout:
            live = {k: v for k, v in counts.items() if v and k not in FINAL_STATES}
            raise CheckFailed(f"not final after {now - started:.0f} s: {live} (all: {dict(counts)})")
        if every is not None:
            every()
        time.sleep(0.5)


def states_and_codes(store: Store, message_id: str) -> Counter[tuple[str, str]]:
    """Every recipient's (state, code), read from the records (HSCAN)."""
    return Counter((rec.state.value, rec.code) for _, rec in store.campaign_records(message_id))


def records_by_phone(store: Store, message_id: str) -> dict[str, tuple[str, str]]:
    return {phone: (rec.state.value, rec.code) for phone, rec in store.campaign_records(message_id)}


def state_events(store: Store, message_id: str) -> Iterator[dict[str, str]]:
    """The ``state`` events of ``message_id`` on the events stream, oldest first."""
    from worker.store import Keys

    r: Any = store.r  # decode_responses: str values
    start = "-"
    while True:
        page = r.xrange(Keys.events, min=start, count=10_000)
        if not page:
            return
        for _, event in page:
            if event.get("type") == "state" and event.get("message_id") == message_id:
                yield event
        start = "(" + page[-1][0]


@dataclass
class Ambiguity:
    """Recipients recorded ``submitted``/``AMBIGUOUS`` and how each was settled afterwards."""

    phones: set[str] = field(default_factory=set)
    by_receipt: set[str] = field(default_factory=set)
    by_sweep: set[str] = field(default_factory=set)
    # settled by a receipt (matched by the call's bid) before any outcome of their call was recorded:
    # they were "sending" when the worker died mid-call, or when Redis went away before the write
    receipt_only: set[str] = field(default_factory=set)

    @property
    def unsettled(self) -> set[str]:
        return self.phones - self.by_receipt - self.by_sweep


def ambiguity(store: Store, message_id: str) -> Ambiguity:
    """Read the events stream: which recipients went ambiguous, and whether a receipt or the settle
    sweep (``NO_RECEIPT``) settled each later."""
    found = Ambiguity()
    called: set[str] = set()
    receipted: set[str] = set()
    for event in state_events(store, message_id):
        phones = set(filter(None, event.get("phones", "").split(",")))
        if event.get("why") == "call" or event.get("code") == "AMBIGUOUS":
            called |= phones
        if event.get("code") == "AMBIGUOUS":
            found.phones |= phones
        elif event.get("why") == "receipt":
            found.by_receipt |= phones & found.phones
            receipted |= phones
        elif event.get("code") == "NO_RECEIPT":
            found.by_sweep |= phones & found.phones
    found.receipt_only = receipted - called
    return found


def print_table(title: str, counts: Counter[tuple[str, str]]) -> None:
    print(title)
    for (state, code), n in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        print(f"  {state:<13} {code or '-':<14} {n:>9,}")


def verdict(problems: list[str], what: str) -> int:
    """Print the PASS/FAIL line; the exit code."""
    print(f"PASS: {what}" if not problems else "FAIL: " + "; ".join(problems), flush=True)
    return 0 if not problems else 1


@dataclass
class Audit:
    """Every recipient of one message against what the vendors (the simulator) took."""

    by_state_code: Counter[tuple[str, str]]
    sent: Counter[str]  # phone -> times any vendor accepted it
    problems: list[str]
    ambiguous: Ambiguity
    received_no_receipt: int  # the vendor took it, yet we failed it NO_RECEIPT (a receipt lost)

    def show(self, title: str) -> None:
        print_table(title, self.by_state_code)
        amb = self.ambiguous
        print(
            f"ambiguous: {len(amb.phones):,} (settled by receipts {len(amb.by_receipt):,}, by the settle"
            f" sweep {len(amb.by_sweep):,}, unsettled {len(amb.unsettled):,}); vendor took it but failed"
            f" NO_RECEIPT: {self.received_no_receipt:,}"
        )
        print(
            f"settled by a receipt before their call's outcome was recorded (worker or Redis gone mid-call):"
            f" {len(amb.receipt_only):,}"
        )
        print(
            f"simulator: {sum(self.sent.values()):,} accepted, {len(self.sent):,} distinct phones,"
            f" at most {max(self.sent.values(), default=0)} per phone"
        )


def audit(
    stack: Stack,
    store: Store,
    message_id: str,
    phones: list[str],
    vendors: tuple[str, ...] = VENDORS,
    lost_receipts_allowed: int = 0,
) -> Audit:
    """Nothing lost (every phone final; failed ones with a code; delivered ones taken by a vendor), none
    sent twice (per phone, summed over ``vendors``), every ambiguous one settled: receipts for those a
    vendor took, the settle sweep for the others. A receipt lost after the vendor took the phone fails it
    ``NO_RECEIPT``: a problem beyond ``lost_receipts_allowed`` (a page the vendor handed to a poll that
    was killed before storing it, or that Redis lost with its last second: the vendor hands each once)."""
    records = records_by_phone(store, message_id)
    sent: Counter[str] = Counter()
    for vendor in vendors:
        sent.update(stack.received(vendor))
    wanted = set(phones)
    sent = Counter({p: n for p, n in sent.items() if p in wanted})
    problems = []
    unfinished = [p for p in phones if records.get(p, ("none", ""))[0] not in FINAL_STATES]
    if unfinished:
        problems.append(
            f"{len(unfinished):,} recipients not final (e.g. {unfinished[0]}: {records.get(unfinished[0])})"
        )
    twice = [p for p, n in sent.items() if n > 1]
    if twice:
        problems.append(f"{len(twice):,} phones sent more than once (e.g. {twice[0]} x{sent[twice[0]]})")
    no_reason = [p for p in phones if records.get(p, ("", ""))[0] == "failed" and not records[p][1]]
    if no_reason:
        problems.append(f"{len(no_reason):,} failed without a code")
    phantom = [p for p in phones if records.get(p, ("", ""))[0] == "delivered" and p not in sent]
    if phantom:
        problems.append(f"{len(phantom):,} delivered that no vendor took (e.g. {phantom[0]})")
    lost_receipts = sum(1 for p in sent if records.get(p, ("", ""))[1] == "NO_RECEIPT")
    if lost_receipts > lost_receipts_allowed:
        problems.append(f"{lost_receipts:,} taken by the vendor but failed NO_RECEIPT (their receipts lost)")
    amb = ambiguity(store, message_id)
    if amb.unsettled:
        problems.append(f"{len(amb.unsettled):,} ambiguous recipients never settled")
    wrongly_swept = amb.by_sweep & set(sent)
    if len(wrongly_swept) > lost_receipts_allowed:
        problems.append(f"{len(wrongly_swept):,} ambiguous ones the vendor took were swept, not reconciled")
    by_state_code = Counter(records.get(p, ("none", "")) for p in phones)
    return Audit(by_state_code, sent, problems, amb, lost_receipts)


def diagnose(store: Store, message_id: str, path: Path) -> None:
    """Write what Redis holds about recipients of ``message_id`` that are not final: their records, the
    open chunks (leases, jobs), the queues, unacked tasks, deferred waits, the campaign's meta and counts,
    and the events naming one of them; for the FAIL line's reader."""
    from worker.app import PRIORITY_SEP, PRIORITY_STEPS
    from worker.store import Keys

    r: Any = store.r  # decode_responses: str values
    stuck = {
        p: (rec.state.value, rec.code, rec.updated_ms)
        for p, rec in store.campaign_records(message_id)
        if rec.state.value not in FINAL_STATES
    }
    sample = next(iter(stuck), "")
    lines = [f"not final: {len(stuck)}; first 20: {list(stuck.items())[:20]}"]
    leases = r.zrange(Keys.leases, 0, -1, withscores=True)
    lines.append(f"now {time.time() * 1000:.0f}; leases: {leases[:50]}")
    for member, _ in leases[:50]:
        mid, _, number = str(member).rpartition("|")
        job = r.hget(Keys.plan(mid), number)
        lines.append(f"  job {number}: {str(job)[:300]} ... has {sample}: {sample in str(job)}")
        if job:
            chunk_phones = json.loads(str(job))["chunk"]["phones"]
            states = Counter(rec.state.value for rec in store.records(mid, chunk_phones).values())
            lines.append(f"  job {number}: its {len(chunk_phones)} phones by state {dict(states)}")
    for queue in ("sms.bulk", "sms.notify", "sms.poll", "sms.otp"):
        names = [queue] + [f"{queue}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS if step]
        lines.append(f"queue {queue}: {[r.llen(name) for name in names]}")
    lines.append(
        f"unacked: {r.hlen('unacked')}, index {r.zrange('unacked_index', 0, -1, withscores=True)[:20]}"
    )
    for tag, body in list(r.hgetall("unacked").items())[:20]:
        lines.append(f"  unacked {tag}: {str(body)[:400]}")
    budget = Keys.budget("infocloud")
    lines.append(f"budget infocloud: {r.get(budget) if r.type(budget) == 'string' else r.hgetall(budget)}")
    lines.append(f"breaker infocloud: {r.hgetall(Keys.breaker('infocloud'))}")
    lines.append(f"deferred: {r.zrange(Keys.deferred, 0, -1, withscores=True)[:20]}")
    lines.append(f"campaign: {r.hgetall(Keys.campaign(message_id))}")
    lines.append(f"counts: {r.hgetall(Keys.counts(message_id))}")
    lines.append(f"held: {r.llen(Keys.campaign_held(message_id))}")
    lines.append(f"events naming {sample}:")
    start = "-"
    while sample:
        page = r.xrange(Keys.events, min=start, count=10_000)
        if not page:
            break
        for entry_id, event in page:
            if sample in event.get("phones", "") or event.get("type") == "sweep":
                lines.append(f"  {entry_id} { ({k: v for k, v in event.items() if k != 'phones'}) }")
        start = "(" + page[-1][0]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"diagnostics in {path}", flush=True)
