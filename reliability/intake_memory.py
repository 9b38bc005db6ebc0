"""A campaign file of a million rows submitted without holding it: the submitting process's peak RSS
stays under 100 MB, and the rows per second of ``submit`` are measured. One PASS/FAIL line.

    uv run python reliability/intake_memory.py [--rows 1000000] [--limit-mb 100]

The file (a phone, a name and an amount per row, a duplicate every 1,000 rows and a bad number every
5,000, UTF-8) is written to a temporary directory; ``submit`` runs in a fresh Python process against an
embedded Redis (nothing of the machine's), which prints its peak RSS (``ru_maxrss``), its RSS after
the imports, and the time. About two minutes on two cores for a million rows.
``tests/test_campaign_intake.py`` runs the same with 100,000 rows.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_TOML = """
[templates.bill]
text = "{name}您好，本期账单{amount}元。"
infocloud = { id = "675871161745170002", params = ["name", "amount"] }
"""


def write_file(path: Path, rows: int) -> None:
    """``rows`` data rows, written as they are made."""
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("phone,name,amount\n")
        for i in range(rows):
            j = i - 1 if i % 1000 == 999 else i  # the row before's number again
            phone = "12345" if i % 5000 == 4998 else f"1{3 + j % 7}{j:09d}"
            out.write(f"{phone},客户{i},{i % 997}.{i % 100:02d}\n")


def child(path: str) -> None:
    """Submit ``path`` as a campaign (in this process) and print what it cost, as JSON."""
    baseline = _rss_mb()
    from config.settings import get_settings
    from worker.campaign import intake
    from worker.store import Store, get_redis

    settings = get_settings()
    store = Store(get_redis(settings), settings)
    imported = _rss_mb()
    started = time.monotonic()
    with open(path, "rb") as stream, open(os.devnull, "w", encoding="utf-8") as rejects:
        spec = intake.CampaignSpec(template="bill", name="memory")
        result = intake.submit(stream, Path(path).name, spec, settings, store, rejects)
    seconds = time.monotonic() - started
    counted = ("rows", "accepted", "duplicates", "rejected")
    answer = {k: v for k, v in result.to_json().items() if k in counted}
    print(
        json.dumps(
            {
                **answer,
                "seconds": seconds,
                "baseline_mb": baseline,
                "imported_mb": imported,
                "peak_mb": _rss_mb(),
            }
        )
    )


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(rows: int, env: dict[str, str], tmp: Path) -> dict[str, float]:
    """Write a file of ``rows`` rows in ``tmp`` and submit it in a child process with ``env`` (which
    points at a Redis and a config with the bill template)."""
    path = tmp / "recipients.csv"
    write_file(path, rows)
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(path)],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the submitting process failed: {done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--limit-mb", type=float, default=100.0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return 0
    sys.path.insert(0, str(ROOT))
    from providers.simulator import DEMO_ENV
    from worker.embedded import EmbeddedRedis

    with tempfile.TemporaryDirectory(prefix="smsd-intake-") as name:
        tmp = Path(name)
        redis = EmbeddedRedis(str(tmp / "redis"))
        try:
            (tmp / "smsd.toml").write_text(TEMPLATE_TOML, encoding="utf-8")
            routing = json.dumps({kind: ["infocloud"] for kind in ("otp", "notify", "marketing")})
            env = {
                **DEMO_ENV,
                "SMSD_REDIS_URL": redis.url,
                "SMSD_CONFIG": str(tmp / "smsd.toml"),
                "SMSD_ROUTING": routing,
            }
            result = measure(args.rows, env, tmp)
        finally:
            redis.close()
    ok = result["peak_mb"] < args.limit_mb and result["rows"] == args.rows
    print(
        f"{'PASS' if ok else 'FAIL'} intake of {args.rows:,} rows: peak RSS {result['peak_mb']:.0f} MB "
        f"(after imports {result['imported_mb']:.0f} MB, limit {args.limit_mb:.0f}), "
        f"{args.rows / result['seconds']:,.0f} rows/s ({result['seconds']:.1f} s; accepted "
        f"{result['accepted']:,}, duplicates {result['duplicates']:,}, refused {result['rejected']:,})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
