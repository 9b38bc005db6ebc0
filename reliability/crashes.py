"""Reliability check R1 (issue 9): a campaign while the bulk worker is SIGKILLed five times at random
moments, restarted each time as a supervisor would.

An embedded Redis, the simulator (in this process: its per-phone counters are read directly), a bulk
worker (``sms.bulk,sms.notify,sms.poll``, concurrency 2) and beat, with the demo's settings and:

- Infocloud answering each call in 200 ms (a remote vendor: a kill then finds calls in flight) and its
  budget at ``--rate`` calls/s (default 10: 10,000 recipients/s, so the campaign runs long enough for the
  kills to land in it);
- a settle window of 30 s (``SMSD_INFOCLOUD__SETTLE_S``; 72 h in production) so recipients recorded
  ``AMBIGUOUS`` whose call never left are failed ``NO_RECEIPT`` within the run; a lease grace of 20 s.

The worker is killed (SIGKILL to its process group: main process and pool children) at a random moment
0.5-4 s after it was back, five times, and started again at once. Then every recipient must end final:
delivered, failed with a code, or ambiguous and then settled (by a receipt when the vendor took it, by
the settle sweep when it did not); no phone taken twice by any vendor.

    uv run python -m reliability.crashes [--rows 200000] [--kills 5] [--seed N]

Prints the kills, the counts by state and code, and a PASS/FAIL line; exit status 0 on PASS.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reliability.stack import (  # noqa: E402
    RECEIPT_PAGE,
    CheckFailed,
    Stack,
    audit,
    campaign_check_setup,
    diagnose,
    in_folder,
    submit_campaign,
    verdict,
    wait_final,
    wait_until,
    write_rows,
)

CALL_LATENCY_S = 0.2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--rate", type=float, default=10.0, help="Infocloud calls per second (its budget)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--log-level", default="WARNING", help="of the workers and beat (their logs are kept on FAIL)"
    )
    parser.add_argument("--timeout", type=float, default=1200.0)
    parser.add_argument("--stall", type=float, default=240.0, help="FAIL once nothing moved this long (s)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    print(
        f"R1 crashes: {args.rows:,} recipients, {args.kills} SIGKILLs of the bulk worker, seed {seed}",
        flush=True,
    )

    from providers.simulator.core import FaultPlan

    extra, config = campaign_check_setup(args.rate, args.log_level)

    def body(folder: Path) -> int:
        stack = Stack(folder, extra=extra, sim_mode="thread", sim_config=config)
        try:
            assert stack.sim is not None
            stack.sim.state.set_faults("infocloud", FaultPlan(latency_s=CALL_LATENCY_S))
            return run(stack, args, rng)
        except CheckFailed as exc:
            return verdict([str(exc)], "")
        finally:
            stack.close()

    return in_folder("r1", body)


def run(stack: Stack, args: argparse.Namespace, rng: random.Random) -> int:
    bulk = stack.worker("bulk", "sms.bulk,sms.notify,sms.poll", concurrency=2)
    stack.beat()
    stack.ready("bulk")
    path = stack.folder / "customers.csv"
    phones = write_rows(path, args.rows)
    store = stack.store()
    started = time.monotonic()
    cid, accepted = submit_campaign(store, path, name="r1-crashes")
    print(f"campaign {cid}: {accepted:,} accepted in {time.monotonic() - started:.1f} s", flush=True)

    def sent() -> int:
        return sum(stack.received("infocloud").values())

    problems = []
    started = time.monotonic()
    for k in range(1, args.kills + 1):
        before = sent()
        # the worker is working again: its first call of this life went out
        wait_until(lambda: sent() > before or sent() >= accepted, 120, "the worker's first call", 0.05)  # noqa: B023
        time.sleep(rng.uniform(0.5, 4.0))
        at = sent()
        in_flight = stack.store().counts(cid).get("sending", 0)
        bulk.kill()
        print(
            f"kill {k} at {time.monotonic() - started:5.1f} s: vendor had {at:,},"
            f" {in_flight:,} recipients sending",
            flush=True,
        )
        if at >= accepted:
            problems.append(f"kill {k} came after the campaign was sent: lower --rate")
        stack.restart("bulk")
    try:
        counts = wait_final(store, cid, accepted, timeout=args.timeout, stall_s=args.stall)
    except CheckFailed:
        diagnose(store, cid, stack.folder / "diagnostics.txt")
        raise
    elapsed = time.monotonic() - started
    # A poll killed after the vendor handed it a page of receipts and before it stored them loses that
    # page (the vendor hands each receipt once): at most a page per kill, failed NO_RECEIPT.
    result = audit(stack, store, cid, phones, lost_receipts_allowed=args.kills * RECEIPT_PAGE)
    print(f"\nall {accepted:,} final {elapsed:.0f} s after the first kill; counters: {dict(counts)}")
    result.show("recipients by state and code:")
    if bulk.starts != args.kills + 1:
        problems.append(f"the worker started {bulk.starts} times")
    return verdict(
        problems + result.problems,
        f"R1: {accepted:,} recipients, {args.kills} worker kills: none lost, none twice,"
        f" {len(result.ambiguous.phones):,} ambiguous all settled",
    )


if __name__ == "__main__":
    sys.exit(main())
