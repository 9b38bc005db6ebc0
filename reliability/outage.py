"""Reliability check R4 (issue 9): two vendors down for ``--outage-s`` seconds (default 60) while OTPs
at a steady pace and a bulk campaign run. Infocloud (the campaign's vendor) answers every call 503;
Tencent (the OTP route's first vendor) refuses connections.

An embedded Redis, the simulator (in this process: per-phone counters across vendors), a bulk worker
(``sms.bulk,sms.notify,sms.poll``, concurrency 2), an OTP worker (``sms.otp``) and beat, with the demo's
settings and breaker defaults (5 certain failures open it, a probe every 3 s). Infocloud and Tencent are
reached through a switchable TCP front each (``tests/toggle_proxy.py``): forwarding, answering 503 (every
request counted with its time: the calls the dead vendor got), or closed (connection refused). Infocloud's
budget is ``--rate`` calls/s (default 5) so that the campaign is still running when the outage begins
(once a fifth of it was sent).

Checks: calls reaching the 503 vendor during the outage are the failures that open the breaker and then
one probe per interval (none closer than 0.9 of it); Tencent's breaker opens and probes the same way
(its count from Redis: refused connections cannot be counted at the vendor); every OTP reaches a vendor
within 5 s of ``send_sms.delay``; the campaign sends nothing while Infocloud is down, resumes when it is
back, and every recipient ends delivered (the simulator delivers all: none may fail), but for at most one
page of receipts (600) failed ``NO_RECEIPT``: a receipt pull in flight when Infocloud goes down is cut
after the vendor handed its page, which it hands only once (the settle window is set to twice the outage,
so that such a page fails within the check while receipts the outage merely held up are still taken);
nobody is taken twice by any vendor.

    uv run python -m reliability.outage [--rows 50000] [--outage-s 60] [--otp-every 0.5]

Prints the figures and a PASS/FAIL line; exit status 0 on PASS.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reliability.stack import (  # noqa: E402
    RECEIPT_PAGE,
    VENDORS,
    CheckFailed,
    Stack,
    audit,
    diagnose,
    in_folder,
    submit_campaign,
    verdict,
    wait_final,
    wait_until,
    write_rows,
)
from tests.toggle_proxy import ToggleProxy  # noqa: E402

OTP_BUDGET_S = 5.0
PROBE_S = 3.0  # the breaker's default probe interval
FAILURES = 5  # and failures in a row that open it


class PathProxy(ToggleProxy):
    """A ``ToggleProxy`` that, answering 503, also notes each request's path: a send call is what the
    breaker governs; receipt and balance queries keep their own cadence (the demo's: a receipt query
    every second), so they are counted apart."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.failed: list[tuple[float, str]] = []

    def _note(self, head: bytes) -> None:
        super()._note(head)
        path = head.split(b" ", 2)[1].decode("latin-1") if head.count(b" ") >= 2 else "?"
        self.failed.append((self.failed_at[-1], path))


SEND_PATHS = ("/message/sendBatch", "/message/send")  # Infocloud's send calls


@dataclass
class Otp:
    phone: str
    message_id: str
    sent: float  # monotonic
    reached: float | None = None
    vendor: str = ""


@dataclass
class Otps:
    """OTPs sent every ``every`` s to fresh phones until ``stop``; when each reached a vendor."""

    stack: Stack
    every: float
    sent: list[Otp] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        from tasks.send import send_sms

        for n in itertools.count():
            if self.stop.wait(self.every):
                return
            phone = f"137{n:08d}"
            started = time.monotonic()
            try:
                result = send_sms.delay(phone, template="login_code", params={"code": "123456"}, kind="otp")
            except Exception as exc:  # noqa: BLE001 - reported in the FAIL line
                self.errors.append(f"OTP {n}: {exc!r}")
                continue
            self.sent.append(Otp(phone, result.id, started))

    def watch(self) -> None:
        """Note when each OTP reached a vendor (the simulator's counters), every 20 ms."""
        while not (self.stop.is_set() and all(o.reached for o in self.sent)):
            waiting = [o for o in list(self.sent) if o.reached is None]
            if waiting:
                received = {v: self.stack.received(v) for v in VENDORS}
                now = time.monotonic()
                for otp in waiting:
                    for vendor, counter in received.items():
                        if counter[otp.phone]:
                            otp.reached, otp.vendor = now, vendor
            if self.stop.is_set() and all(time.monotonic() - o.sent > 30 for o in waiting):
                return
            time.sleep(0.02)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--outage-s", type=float, default=60.0)
    parser.add_argument("--otp-every", type=float, default=0.5, help="seconds between OTPs")
    parser.add_argument("--rate", type=float, default=5.0, help="Infocloud calls per second (its budget)")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    print(
        f"R4 outage: {args.rows:,}-recipient campaign on Infocloud (503 for {args.outage_s:.0f} s), an OTP"
        f" every {args.otp_every} s on Tencent (connections refused for {args.outage_s:.0f} s)",
        flush=True,
    )

    from providers.simulator.core import SimConfig

    extra = {
        "SMSD_INFOCLOUD__REQUESTS_PER_SECOND": str(args.rate),
        # Longer than the outage, so that receipts it held up are still taken; a lost page fails after it.
        "SMSD_INFOCLOUD__SETTLE_S": str(int(2 * args.outage_s)),
        "SMSD_LOG_LEVEL": args.log_level,
    }
    config = SimConfig(
        receipt_delay_s=1.0, undelivered_share=0.0, query_per_minute=100_000, tps_limit=100_000
    )

    def body(folder: Path) -> int:
        stack = Stack(folder, extra=extra, sim_mode="thread", sim_config=config)
        assert stack.sim is not None
        fronts = {name: PathProxy(stack.sim.host, stack.sim.port) for name in ("infocloud", "tencent")}
        try:
            for name, front in fronts.items():
                front.set("up")
                stack.point(name, front.url)
            return run(stack, fronts, args)
        except CheckFailed as exc:
            return verdict([str(exc)], "")
        finally:
            stack.close()
            for front in fronts.values():
                front.close()

    return in_folder("r4", body)


def run(stack: Stack, fronts: dict[str, PathProxy], args: argparse.Namespace) -> int:
    stack.worker("bulk", "sms.bulk,sms.notify,sms.poll", concurrency=2)
    stack.worker("otp", "sms.otp", concurrency=1)
    stack.beat()
    stack.ready("bulk", "otp")
    store = stack.store()
    path = stack.folder / "customers.csv"
    phones = write_rows(path, args.rows)
    cid, accepted = submit_campaign(store, path, name="r4-outage")
    print(f"campaign {cid}: {accepted:,} accepted", flush=True)

    otps = Otps(stack, args.otp_every)
    threads = [
        threading.Thread(target=otps.run, daemon=True),
        threading.Thread(target=otps.watch, daemon=True),
    ]
    for thread in threads:
        thread.start()

    def sent() -> int:
        return sum(stack.received("infocloud").values())

    wait_until(lambda: sent() >= accepted // 5, 300, "a fifth of the campaign sent", 0.05)
    fronts["infocloud"].set("fail")
    fronts["tencent"].set("refuse")
    began = time.monotonic()
    sent_at_start = sent()
    print(f"outage begins: the vendor had {sent_at_start:,} of the campaign", flush=True)
    time.sleep(args.outage_s)
    sent_at_end = sent()
    health = {h.name: h.breaker for h in store.vendor_health(["infocloud", "tencent"])}
    fronts["infocloud"].set("up")
    fronts["tencent"].set("up")
    ended = time.monotonic()
    wait_until(lambda: sent() > sent_at_end or sent() >= accepted, 120, "the campaign to resume", 0.02)
    resumed = time.monotonic() - ended
    time.sleep(10)  # OTPs after the outage too
    otps.stop.set()
    for thread in threads:
        thread.join(60)

    try:
        counts = wait_final(store, cid, accepted, timeout=args.timeout)
    except CheckFailed:
        diagnose(store, cid, stack.folder / "diagnostics.txt")
        raise
    # A receipt pull in flight when the outage begins is cut: the vendor handed its page, which is gone.
    result = audit(stack, store, cid, phones, lost_receipts_allowed=RECEIPT_PAGE)
    problems = list(result.problems)
    print(f"\ncampaign: all {accepted:,} final, counters {dict(counts)}")
    result.show("campaign recipients by state and code:")
    if counts.get("failed", 0) > result.received_no_receipt:
        problems.append(
            f"{counts['failed'] - result.received_no_receipt:,} campaign recipients failed other than"
            " NO_RECEIPT (the simulator delivers all)"
        )

    problems += check_breakers(fronts["infocloud"], health, began, ended, args.outage_s)
    if sent_at_end - sent_at_start:
        problems.append(
            f"{sent_at_end - sent_at_start:,} campaign recipients reached Infocloud while it answered 503"
        )
    print(
        f"campaign: {sent_at_start:,} sent before the outage, {sent_at_end - sent_at_start:,} during it,"
        f" resumed {resumed:.1f} s after the vendor came back"
    )

    problems += check_otps(stack, store, otps, began, ended)
    return verdict(
        problems,
        f"R4: {args.outage_s:.0f} s outage of two vendors: breaker probes only, OTPs failed"
        f" over within {OTP_BUDGET_S:.0f} s, the campaign waited and resumed; none lost,"
        " failed or twice",
    )


def check_breakers(
    front: PathProxy, health: dict[str, dict[str, str]], began: float, ended: float, outage_s: float
) -> list[str]:
    """Send calls that reached the 503 vendor in the outage: the failures that opened its breaker, then
    one probe per interval; Tencent's breaker (refused connections) open, with as many probes."""
    problems = []
    during = [(t - began, path) for t, path in front.failed if began <= t <= ended]
    calls = [t for t, path in during if path in SEND_PATHS]
    others = Counter(path for _, path in during if path not in SEND_PATHS)
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    probes = calls[FAILURES:]  # after the failures that opened it
    print(
        f"\nInfocloud (503) during the {outage_s:.0f} s outage: {len(calls)} send calls, at"
        f" {[round(c, 1) for c in calls]} s;"
        f" gaps after it opened {[round(g, 1) for g in gaps[FAILURES + 1 :]]};"
        f" besides, queries at their own cadence: {dict(others)}"
    )
    print(f"  breaker at the end of the outage: {health.get('infocloud')}")
    print(f"Tencent (refused) breaker at the end of the outage: {health.get('tencent')}")
    most = FAILURES + 2 + outage_s / PROBE_S + 1
    if len(calls) > most:
        problems.append(
            f"Infocloud got {len(calls)} calls in the outage (at most {most:.0f}: opening + one per probe)"
        )
    if any(g < 0.9 * PROBE_S for g in gaps[FAILURES + 1 :]):
        problems.append(
            f"probes closer than {0.9 * PROBE_S:.1f} s: {[round(g, 2) for g in gaps[FAILURES + 1 :]]}"
        )
    if not probes:
        problems.append("no probe reached Infocloud during the outage")
    tencent_probes = int(health.get("tencent", {}).get("probes", "0") or 0)
    if health.get("tencent", {}).get("state") != "open":
        problems.append(f"Tencent's breaker did not open: {health.get('tencent')}")
    elif tencent_probes > outage_s / PROBE_S + 1:
        problems.append(f"Tencent probed {tencent_probes} times in {outage_s:.0f} s")
    return problems


def check_otps(stack: Stack, store: object, otps: Otps, began: float, ended: float) -> list[str]:
    """Each OTP reached exactly one vendor, once, within the budget; recorded submitted or delivered."""
    from worker.store import Store

    assert isinstance(store, Store)
    problems = [f"OTP not queued: {e}" for e in otps.errors[:3]]
    late = [o for o in otps.sent if o.reached is None or o.reached - o.sent > OTP_BUDGET_S]
    taken = {v: stack.received(v) for v in VENDORS}
    twice = [o.phone for o in otps.sent if sum(c[o.phone] for c in taken.values()) != 1]
    states = {o.phone: store.records(o.message_id, [o.phone]).get(o.phone) for o in otps.sent}
    wrong = {
        p: (r.state.value if r else None, r.code if r else "")
        for p, r in states.items()
        if r is None or r.state.value not in ("submitted", "delivered")
    }
    groups: tuple[tuple[str, Callable[[Otp], bool]], ...] = (
        ("before", lambda o: o.sent < began),
        ("during", lambda o: began <= o.sent < ended),
        ("after", lambda o: o.sent >= ended),
    )
    for label, chosen in groups:
        group = [o for o in otps.sent if chosen(o) and o.reached]
        if not group:
            continue
        lat = sorted((o.reached - o.sent) * 1000 for o in group if o.reached)
        by = {v: sum(1 for o in group if o.vendor == v) for v in VENDORS if any(o.vendor == v for o in group)}
        print(
            f"OTPs {label} the outage: {len(group)}, by vendor {by}, to the vendor p50"
            f" {statistics.median(lat):.0f} ms, max {lat[-1]:.0f} ms"
        )
    if late:
        first = late[0]
        took = "never" if first.reached is None else f"{first.reached - first.sent:.2f} s"
        problems.append(
            f"{len(late)} of {len(otps.sent)} OTPs not at a vendor within {OTP_BUDGET_S} s"
            f" (e.g. {first.phone}: {took})"
        )
    if twice:
        problems.append(f"{len(twice)} OTPs taken other than once (e.g. {twice[0]})")
    if wrong:
        problems.append(f"{len(wrong)} OTPs not submitted/delivered: {dict(list(wrong.items())[:3])}")
    return problems


if __name__ == "__main__":
    sys.exit(main())
