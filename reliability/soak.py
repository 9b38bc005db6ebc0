"""Reliability check R7 (issue 9): a soak. ``--minutes`` (default 30) of mixed traffic with one fault a
minute, in rotation: the bulk worker SIGKILLed and restarted, a vendor outage, a Redis restart.

An embedded Redis (append-only file, fsync every second, as R2), the simulator (in this process: its
per-phone counters across vendors), a bulk worker (``sms.bulk,sms.notify,sms.poll``, concurrency 2), an
OTP worker (``sms.otp``), beat and the HTTP app (``smsdispatch api``: the push receivers), with the
demo's settings, Infocloud's budget at ``--rate`` calls/s and R1's 30 s settle window and 20 s lease
grace. Traffic, all to phones used once:

- an OTP every ``--otp-every`` s (Tencent) and a three-phone notify every ``--notify-every`` s
  (Infocloud), through ``send_sms.delay`` as an application sends them;
- a campaign of ``--rows`` recipients at the start of every minute (``worker.campaign.intake.submit``);
- receipts: Infocloud's (the campaigns and notifies) pushed by the simulator to the HTTP app, as
  Infocloud pushes them once given a URL; Tencent's (the OTPs) collected by the workers' polls;
- a reply (MO) every ``--reply-every`` s from a phone that got an OTP, pushed by Infocloud (its MO is
  push-only); every fourth says ``TD``, which opts the phone out.

A push the receiver cannot store (Redis down) is answered 503 and tried again by the simulator, three
times in all, then dropped as a vendor drops it: the receipts and replies it held are counted, and a
recipient whose receipt was dropped may fail ``NO_RECEIPT``, a reply so dropped may be missing.

Four seconds into each minute comes the fault: the bulk worker SIGKILLed (with its pool) and started
again at once; Infocloud answering every send ``-1`` (transient) for ``--outage-s`` s, set through the
simulator's ``POST /_sim/faults``; or Redis stopped with SIGTERM, down ``--down-s`` s, started again
from its file. The RSS of each worker's process group, of beat and of Redis is sampled every 10 s.

At the end: every recipient of every message and campaign final (submitted ones settled by receipts
within ``--grace`` s), none taken twice by any vendor, every reply stored and every ``TD`` an opt-out
(but those the vendor dropped), the queues drained; memory flat: the mean RSS of
the last fifth of samples within 20% of the second fifth's (Redis: plus what the recipients stored
meanwhile may take, 1,000 bytes each, three times what B1 measured, since Redis keeps their state).

    uv run python -m reliability.soak [--minutes 30] [--rows 10000]

Prints the faults, the figures and a PASS/FAIL line; exit status 0 on PASS.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reliability.stack import (  # noqa: E402
    FINAL_STATES,
    RECEIPT_PAGE,
    VENDORS,
    CheckFailed,
    Stack,
    audit,
    campaign_check_setup,
    diagnose,
    in_folder,
    pid_rss_kib,
    submit_campaign,
    verdict,
    wait_final,
    wait_until,
    write_rows,
)

if TYPE_CHECKING:
    from providers.simulator.core import SimState
    from worker.store import Store

FAULTS = ("worker kill", "vendor outage", "Redis restart")
FAULT_AT_S = 4.0  # into each minute: the minute's campaign is being sent
SAMPLE_S = 10.0
FLAT = 1.20  # the last fifth's mean RSS over the second fifth's, at most
REDIS_BYTES_PER_RECIPIENT = 1000  # what Redis may grow by per recipient stored between the two
PARTS = ("bulk", "otp", "beat", "api", "redis")
PUSHER = "infocloud"  # the vendor that pushes its receipts and replies


@dataclass
class Sent:
    """One ``send_sms`` call the traffic made: its id and phones."""

    kind: str
    message_id: str
    phones: list[str]


@dataclass
class Traffic:
    """OTPs and notifies at a steady pace until ``stop``; a ``.delay`` refused (Redis down) is noted and
    that message counts as never accepted: the application sees the error."""

    otp_every: float
    notify_every: float
    reply_every: float = 10.0
    sent: list[Sent] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)
    replies: list[tuple[str, str]] = field(default_factory=list)  # (phone, text) the vendor was handed
    stop: threading.Event = field(default_factory=threading.Event)

    def reply(self, sim: SimState) -> None:
        """Replies from phones that got an OTP, pushed by ``PUSHER``; every fourth is ``TD``."""
        for n in itertools.count():
            if self.stop.wait(self.reply_every):
                return
            otps = [s for s in self.sent if s.kind == "otp"]
            if not otps:
                continue
            phone = otps[-1].phones[0]
            text = "TD" if n % 4 == 3 else f"thanks {n}"
            if any(p == phone for p, _ in self.replies):
                continue
            sim.add_inbound(PUSHER, {"phone": phone, "content": text})
            self.replies.append((phone, text))

    def run(self, kind: str) -> None:
        from tasks.send import send_sms

        every = self.otp_every if kind == "otp" else self.notify_every
        for n in itertools.count():
            if self.stop.wait(every):
                return
            try:
                if kind == "otp":
                    phones = [f"137{n:08d}"]
                    result = send_sms.delay(
                        phones[0], template="login_code", params={"code": "123456"}, kind="otp"
                    )
                else:
                    phones = [f"136{3 * n + i:08d}" for i in range(3)]
                    params = {"order": f"N{n:07d}", "tracking": f"SF{n:010d}"}
                    result = send_sms.delay(phones, template="order_shipped", params=params, kind="notify")
            except Exception:  # noqa: BLE001 - Redis down: the caller sees it, nothing was accepted
                self.refused[kind] += 1
                continue
            self.sent.append(Sent(kind, result.id, phones))

    @property
    def recipients(self) -> int:
        return sum(len(s.phones) for s in self.sent)


@dataclass
class Memory:
    """RSS samples (KiB) per part, with how many recipients were accepted when each was taken; a part
    that is down (being restarted) gives no sample."""

    samples: dict[str, list[tuple[float, int, int]]] = field(
        default_factory=lambda: {part: [] for part in PARTS}
    )
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, stack: Stack, accepted: Any) -> None:
        started = time.monotonic()
        while not self.stop.wait(SAMPLE_S):
            at = time.monotonic() - started
            for name in PARTS:
                if name == "redis":
                    pid = stack.redis.pid
                    kib = pid_rss_kib(pid) if pid is not None and stack.redis.running else 0
                else:
                    kib = stack.procs[name].rss_kib()
                if kib:
                    self.samples[name].append((at, kib, accepted()))

    def check(self) -> list[str]:
        problems = []
        print("\nRSS (MiB) per part: second fifth of samples -> last fifth, min/max over the run")
        for name, rows in self.samples.items():
            n = len(rows)
            if n < 5:
                problems.append(f"{name}: only {n} RSS samples")
                continue
            second, last = rows[n // 5 : 2 * n // 5], rows[4 * n // 5 :]
            before = statistics.mean(kib for _, kib, _ in second)
            after = statistics.mean(kib for _, kib, _ in last)
            limit = before * FLAT
            stored = ""
            if name == "redis":
                added = last[-1][2] - second[0][2]
                limit += added * REDIS_BYTES_PER_RECIPIENT / 1024
                stored = f", {added:,} recipients stored since (limit {limit / 1024:.1f} MiB)"
            kibs = [kib for _, kib, _ in rows]
            print(
                f"  {name:<6} {before / 1024:7.1f} -> {after / 1024:7.1f} ({after / before - 1:+.0%}),"
                f" min {min(kibs) / 1024:.1f}, max {max(kibs) / 1024:.1f}, {n} samples{stored}"
            )
            if after > limit:
                problems.append(
                    f"{name} RSS grew {before / 1024:.1f} -> {after / 1024:.1f} MiB"
                    f" (limit {limit / 1024:.1f})"
                )
        return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--rows", type=int, default=10_000, help="recipients of each minute's campaign")
    parser.add_argument("--rate", type=float, default=1.0, help="Infocloud calls per second (its budget)")
    parser.add_argument("--otp-every", type=float, default=1.0, help="seconds between OTPs")
    parser.add_argument("--notify-every", type=float, default=5.0, help="seconds between notifies")
    parser.add_argument("--reply-every", type=float, default=10.0, help="seconds between replies (MO)")
    parser.add_argument("--outage-s", type=float, default=20.0)
    parser.add_argument("--down-s", type=float, default=5.0, help="how long Redis stays down")
    parser.add_argument("--grace", type=float, default=300.0, help="for everything to be final, after")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    for name in ("minutes", "rows"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    for name in ("rate", "otp_every", "notify_every", "reply_every", "outage_s", "grace"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be above 0")
    if args.minutes > 50:
        parser.error("--minutes must be at most 50 (each minute's campaign has its own phone prefix)")
    if args.outage_s + FAULT_AT_S >= 60:
        parser.error("--outage-s must end within its minute (at most 55)")
    print(
        f"R7 soak: {args.minutes} min; an OTP every {args.otp_every} s, a notify every {args.notify_every}"
        f" s, a {args.rows:,}-recipient campaign a minute, a reply every {args.reply_every} s;"
        f" {PUSHER} pushes; a fault a minute: {', '.join(FAULTS)}",
        flush=True,
    )

    extra, config = campaign_check_setup(args.rate, args.log_level)

    def body(folder: Path) -> int:
        stack = Stack(folder, durable=True, extra=extra, sim_mode="thread", sim_config=config)
        try:
            return run(stack, args)
        except CheckFailed as exc:
            return verdict([str(exc)], "")
        finally:
            stack.close()

    return in_folder("r7", body)


def run(stack: Stack, args: argparse.Namespace) -> int:
    bulk = stack.worker("bulk", "sms.bulk,sms.notify,sms.poll", concurrency=2)
    stack.worker("otp", "sms.otp", concurrency=1)
    stack.beat()
    api_url = stack.api()
    assert stack.sim is not None
    sim = stack.sim.state
    sim.config = replace(sim.config, push_urls={PUSHER: api_url})
    stack.ready("bulk", "otp")
    store = stack.store()
    campaigns: list[tuple[str, list[str]]] = []
    traffic = Traffic(args.otp_every, args.notify_every, args.reply_every)
    memory = Memory()

    def accepted() -> int:
        return traffic.recipients + sum(len(phones) for _, phones in campaigns)

    threads = [threading.Thread(target=traffic.run, args=(kind,), daemon=True) for kind in ("otp", "notify")]
    threads.append(threading.Thread(target=traffic.reply, args=(sim,), daemon=True))
    threads.append(threading.Thread(target=memory.run, args=(stack, accepted), daemon=True))
    for thread in threads:
        thread.start()
    problems: list[str] = []
    faults: Counter[str] = Counter()
    started = time.monotonic()
    try:
        for minute in range(args.minutes):
            pause_until(started + 60 * minute)
            path = stack.folder / f"campaign-{minute}.csv"
            phones = write_rows(path, args.rows, prefix=f"1{50 + minute}")
            cid, count = submit_campaign(store, path, name=f"r7-soak-{minute}")
            if count != args.rows:
                problems.append(f"campaign {minute}: {count:,} of {args.rows:,} rows accepted")
            campaigns.append((cid, phones))
            pause_until(started + 60 * minute + FAULT_AT_S)
            fault = FAULTS[minute % len(FAULTS)]
            took = inject(stack, fault, args)
            faults[fault] += 1
            print(
                f"minute {minute + 1}: campaign {cid} ({count:,}); {fault} ({took:.1f} s);"
                f" {len(traffic.sent):,} sends so far, bulk worker started {bulk.starts}x",
                flush=True,
            )
        pause_until(started + 60 * args.minutes)
    finally:
        traffic.stop.set()
    print(
        f"traffic stopped after {time.monotonic() - started:.0f} s; waiting for everything final", flush=True
    )
    # Whatever Infocloud still has to push goes out before the counts of what it dropped are read.
    wait_until(lambda: not stack.sim_stats(PUSHER).get("pending_receipts"), args.grace, "pushes sent", 1.0)
    pushes = stack.sim_stats(PUSHER)
    dropped = int(pushes.get("receipts_dropped", 0))
    print(
        f"{PUSHER} pushes: {pushes.get('pushed', 0):,} answered 2xx,"
        f" {pushes.get('push_failed', 0):,} given up after three tries (Redis down),"
        f" holding {dropped:,} receipts and"
        f" {pushes.get('replies_dropped', 0):,} replies",
        flush=True,
    )
    problems += check_campaigns(stack, store, campaigns, args, faults["worker kill"], dropped)
    problems += check_sends(stack, store, traffic, args.grace)
    problems += check_replies(store, traffic, int(pushes.get("replies_dropped", 0)), args.grace)
    problems += check_drained(store)
    memory.stop.set()
    for thread in threads:
        thread.join(30)
    problems += memory.check()
    return verdict(
        problems,
        f"R7: {args.minutes} min soak, {accepted():,} recipients through {sum(faults.values())} faults"
        f" ({dict(faults)}): all final, none twice, queues drained, memory flat",
    )


def pause_until(when: float) -> None:
    time.sleep(max(0.0, when - time.monotonic()))


def inject(stack: Stack, fault: str, args: argparse.Namespace) -> float:
    """One fault, over when this returns; how long it lasted (s)."""
    began = time.monotonic()
    if fault == "worker kill":
        stack.procs["bulk"].kill()
        stack.restart("bulk")
    elif fault == "vendor outage":
        faults = f"{stack.sim_url}/_sim/faults"
        httpx.post(faults, json={"infocloud": {"codes": ["-1"], "code_rate": 1.0}}, timeout=10)
        time.sleep(args.outage_s)
        httpx.post(faults, json={"infocloud": None}, timeout=10)
    else:
        pid = stack.redis.pid
        assert pid is not None
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not stack.redis.running, 30, "redis-server to exit", 0.01)
        pause_until(began + args.down_s)
        stack.redis.start()
    return time.monotonic() - began


def check_campaigns(
    stack: Stack,
    store: Store,
    campaigns: list[tuple[str, list[str]]],
    args: argparse.Namespace,
    kills: int,
    dropped: int,
) -> list[str]:
    """R1's audit of every campaign: final, none twice, ambiguous ones settled. A poll killed holding a
    page of receipts loses it (the vendor hands each once): a page per kill may fail ``NO_RECEIPT``, as
    may each receipt in a push the vendor dropped (``dropped``)."""
    problems = []
    states: Counter[tuple[str, str]] = Counter()
    ambiguous = lost = 0
    for cid, phones in campaigns:
        try:
            wait_final(store, cid, len(phones), timeout=args.grace, stall_s=args.grace)
        except CheckFailed:
            diagnose(store, cid, stack.folder / f"diagnostics-{cid}.txt")
            raise
        result = audit(stack, store, cid, phones, lost_receipts_allowed=kills * RECEIPT_PAGE + dropped)
        problems += [f"campaign {cid}: {p}" for p in result.problems]
        states.update(result.by_state_code)
        ambiguous += len(result.ambiguous.phones)
        lost += result.received_no_receipt
    print(
        f"\ncampaigns: {len(campaigns)}, {sum(len(p) for _, p in campaigns):,} recipients, by state and"
        f" code {dict(states)}; ambiguous {ambiguous:,} (all settled unless listed below);"
        f" vendor took it but failed NO_RECEIPT {lost:,}"
    )
    if lost > kills * RECEIPT_PAGE + dropped:
        problems.append(f"{lost:,} failed NO_RECEIPT, above {kills} kills' pages and {dropped:,} dropped")
    return problems


def check_replies(store: Store, traffic: Traffic, dropped: int, grace: float) -> list[str]:
    """Every reply the vendor was handed is stored (beat applies the pushes) and every ``TD`` opted its
    phone out, but for at most ``dropped`` replies in pushes the vendor gave up on."""
    wanted = list(traffic.replies)
    missing: list[tuple[str, str]] = []

    def stored() -> bool:
        have = {(r.phone[-11:], r.content) for r in store.inbound(limit=len(wanted) + 1000)}
        missing[:] = [
            (phone, text)
            for phone, text in wanted
            if (phone, text) not in have or (text == "TD" and store.optout(phone) is None)
        ]
        return len(missing) <= dropped

    with contextlib.suppress(CheckFailed):  # what is missing is reported below
        wait_until(stored, grace, "replies stored", 1.0)
    optouts = sum(1 for _, text in wanted if text == "TD")
    print(
        f"replies: {len(wanted):,} handed to {PUSHER} ({optouts} TD); {len(wanted) - len(missing):,} stored"
        f" (TD ones opted out), {len(missing)} missing, {dropped} dropped by the vendor"
    )
    if len(missing) > dropped:
        return [f"{len(missing)} replies not stored or not opted out (e.g. {missing[0]}), {dropped} dropped"]
    return []


def check_sends(stack: Stack, store: Store, traffic: Traffic, grace: float) -> list[str]:
    """Every OTP and notify recipient final within ``grace`` (receipts settle the submitted ones); no
    phone taken by more than one vendor call."""
    pending = list(traffic.sent)

    def settled() -> bool:
        nonlocal pending
        pending = [
            s
            for s in pending
            if any(
                rec is None or rec.state.value not in FINAL_STATES
                for rec in (store.records(s.message_id, s.phones).get(p) for p in s.phones)
            )
        ]
        return not pending

    problems = []
    try:
        wait_until(settled, grace, "OTPs and notifies final", 1.0)
    except CheckFailed as exc:
        first = pending[0]
        problems.append(f"{len(pending)} sends not final ({exc}; e.g. {first.kind} {first.message_id})")
    taken: Counter[str] = Counter()
    for vendor in VENDORS:
        taken.update(stack.received(vendor))
    states: dict[str, Counter[tuple[str, str]]] = {"otp": Counter(), "notify": Counter()}
    twice = 0
    for send in traffic.sent:
        records = store.records(send.message_id, send.phones)
        for phone in send.phones:
            rec = records.get(phone)
            states[send.kind][(rec.state.value, rec.code) if rec else ("none", "")] += 1
            twice += taken[phone] > 1
    for kind, counts in states.items():
        print(
            f"{kind}: {sum(counts.values()):,} recipients, by state and code {dict(counts)}; .delay refused"
            f" while Redis was down: {traffic.refused[kind]}"
        )
    if twice:
        problems.append(f"{twice} OTP/notify phones taken more than once")
    return problems


def check_drained(store: Store) -> list[str]:
    """The queues, the unacked tasks, open chunks and deferred retries: all empty once everything is
    final (the polls beat keeps queueing come and go: empty at one moment is drained)."""
    from worker.app import PRIORITY_SEP, PRIORITY_STEPS
    from worker.store import Keys

    r: Any = store.r
    queues = [
        f"{q}{PRIORITY_SEP}{step}" if step else q
        for q in ("sms.bulk", "sms.notify", "sms.poll", "sms.otp")
        for step in PRIORITY_STEPS
    ]
    seen: dict[str, int] = {}

    def empty() -> bool:
        seen.clear()
        seen.update({q: int(r.llen(q)) for q in queues})
        seen.update(
            unacked=int(r.hlen("unacked")),
            leases=int(r.zcard(Keys.leases)),
            deferred=int(r.zcard(Keys.deferred)),
        )
        return not any(seen.values())

    try:
        wait_until(empty, 60, "queues drained", 0.2)
    except CheckFailed:
        return [f"not drained: { ({k: v for k, v in seen.items() if v}) }"]
    print("queues, unacked tasks, leases and deferred retries: all empty")
    return []


if __name__ == "__main__":
    sys.exit(main())
