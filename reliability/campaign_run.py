"""A campaign as an operator runs it: a CSV with per-recipient parameters through `smsdispatch campaign
submit --follow`, against the vendor simulator, with an OTP sent mid-campaign.

Starts an embedded Redis, the simulator, a bulk worker, an OTP worker and beat (each its own process, with
the demo's settings), writes N rows (``order`` and ``tracking`` per recipient, template
``order_shipped``), runs the CLI with its live progress bar, then checks:

- the simulator received every number exactly once (Infocloud, through ``sendBatch``);
- the campaign's final counts match the simulator's: every accepted recipient is final, and as many
  reached the vendor as the simulator counted;
- OTPs sent while the campaign runs reach the simulator within 100 ms (time from ``send_sms.delay`` to
  the recorded vendor answer).

    uv run python reliability/campaign_run.py [--rows 200000]

Prints its figures and a PASS/FAIL line; exit code 0 on PASS.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reliability.stack import FINAL_STATES, CheckFailed, Stack, in_folder, write_rows  # noqa: E402

OTP_BUDGET_MS = 100.0


def otp_latencies(stop: threading.Event, out: list[float], errors: list[str]) -> None:
    """An OTP every 0.5 s to a fresh phone while the campaign runs; the time from ``.delay()`` to the
    vendor's answer as the worker recorded it."""
    from config.settings import get_settings
    from tasks.send import send_sms
    from worker.store import Store, get_redis

    store = Store(get_redis(), get_settings())
    send_sms.delay("13699999999", template="login_code", params={"code": "1"}, kind="otp")  # warms it up
    n = 0
    while not stop.wait(0.5):
        n += 1
        phone = f"137{n:08d}"
        sent_ms = time.time() * 1000
        result = send_sms.delay(phone, template="login_code", params={"code": "123456"}, kind="otp")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            record = store.records(result.id, [phone]).get(phone)
            if record is not None and record.state.value not in ("queued", "sending"):
                out.append(record.updated_ms - sent_ms)
                break
            time.sleep(0.005)
        else:
            errors.append(f"OTP {n} not answered within 10 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()

    def body(folder: Path) -> int:
        # The simulator in its own process, at the demo's receipt pace (600 Infocloud queries a minute, as
        # worker.demo.DEMO_SPEED lets the workers ask); a bulk worker (bulk, notify, poll), an OTP worker.
        stack = Stack(folder, sim_options=("--query-per-minute", "600"))
        try:
            stack.worker("bulk", "sms.bulk,sms.notify,sms.poll", args.concurrency)
            stack.worker("otp", "sms.otp", 1)
            stack.beat()
            stack.ready("bulk", "otp")
            path = folder / "customers.csv"
            write_rows(path, args.rows)
            stop = threading.Event()
            latencies: list[float] = []
            otp_errors: list[str] = []
            otps = threading.Thread(target=otp_latencies, args=(stop, latencies, otp_errors), daemon=True)
            otps.start()
            started = time.monotonic()
            submit = ["campaign", "submit", str(path), "--template", "order_shipped", "--follow"]
            cli = subprocess.run(
                [sys.executable, "-m", "worker.cli", *submit],
                cwd=ROOT,
                env=stack.env,
                timeout=args.timeout,
                check=False,
            )
            elapsed = time.monotonic() - started
            stop.set()
            otps.join(15)
            return report(args.rows, cli.returncode, elapsed, stack, latencies, otp_errors)
        except CheckFailed as exc:
            print(f"FAIL: {exc}")
            return 1
        finally:
            stack.close()

    return in_folder("campaign-run", body)


def report(
    rows: int,
    returncode: int,
    elapsed: float,
    stack: Stack,
    latencies: list[float],
    otp_errors: list[str],
) -> int:
    def view() -> dict[str, Any]:
        listed = subprocess.run(
            [sys.executable, "-m", "worker.cli", "campaign", "list", "--json", "--limit", "1"],
            cwd=ROOT,
            env=stack.env,
            capture_output=True,
            text=True,
            check=False,
        )
        lines = listed.stdout.strip().splitlines()
        return json.loads(lines[0]) if lines else {}

    waited = time.monotonic()
    deadline = waited + 120  # receipts settle what was submitted (the simulator's delay: 1 s)
    while (current := view()).get("counts", {}).get("submitted") and time.monotonic() < deadline:
        time.sleep(2)
    stats = stack.sim_stats("infocloud")
    pending = stats.get("pending_receipts")
    print(f"receipts: waited {time.monotonic() - waited:.0f} s; {pending} still pending at the simulator")
    counts: dict[str, int] = current.get("counts", {})
    final = sum(counts.get(state, 0) for state in FINAL_STATES)
    reached = counts.get("delivered", 0) + counts.get("failed", 0) + counts.get("submitted", 0)
    print(f"\ncampaign exit code {returncode}, {elapsed:.1f} s, {rows / elapsed:,.0f} rows/s end to end")
    print(f"campaign counts: {json.dumps(counts, sort_keys=True)}")
    print(
        f"simulator (infocloud): {stats.get('calls', 0):,} calls, largest {stats.get('max_call_size', 0)},"
        f" {stats.get('accepted', 0):,} accepted, {stats.get('phones', 0):,} distinct phones,"
        f" at most {stats.get('max_per_phone', 0)} per phone"
    )
    if latencies:
        ordered = sorted(latencies)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        print(
            f"OTPs during the campaign: {len(latencies)}, p50 {statistics.median(ordered):.1f} ms,"
            f" p99 {p99:.1f} ms, max {ordered[-1]:.1f} ms"
        )
    problems = []
    if returncode != 0:
        problems.append(f"the CLI exited {returncode}")
    if stats.get("phones") != rows or stats.get("accepted") != rows or stats.get("max_per_phone") != 1:
        problems.append("the simulator did not receive every number exactly once")
    if final != rows or reached != stats.get("accepted"):
        problems.append(f"final {final} / reached {reached} do not match {rows} rows and the simulator")
    if otp_errors or not latencies or max(latencies) > OTP_BUDGET_MS:
        problems.append(f"OTPs: {otp_errors[:3] or 'slowest over ' + str(OTP_BUDGET_MS) + ' ms'}")
    print("PASS" if not problems else "FAIL: " + "; ".join(problems))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
