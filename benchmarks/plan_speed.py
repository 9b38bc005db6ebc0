"""Planning speed: ``validate_request`` and ``build_plan`` on N mainland phones, no Redis, no worker.

Prints the best of ``--repeat`` runs of each step in ms (best-of, since the machine is shared), with the
same phones and template as ``benchmarks/bulk.py``. Also times the producer's ``.delay()`` work
(validation and the JSON-safe dump handed to Celery).

    uv run python benchmarks/plan_speed.py [--recipients 200000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from providers.simulator import DEMO_ENV  # noqa: E402


def best_ms(step: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """The fastest of ``repeat`` runs of ``step``, in ms, and its last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = step()
        best = min(best, (time.perf_counter() - started) * 1000)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    config = str(ROOT / "config/demo.toml")
    os.environ.update({**DEMO_ENV, "SMSD_CONFIG": config, "SMSD_LOG_LEVEL": "WARNING"})

    from config.settings import get_settings
    from tasks.plan import build_plan, validate_request

    settings = get_settings()
    phones = [f"1{3 + i % 7}{i:09d}" for i in range(args.recipients)]
    data = {"to": phones, "template": "order_shipped", "params": {"order": "A1", "tracking": "SF1"}}
    validate_ms, request = best_ms(lambda: validate_request(data, settings), args.repeat)
    plan_ms, plan = best_ms(lambda: build_plan(request, settings, {}), args.repeat)
    assert plan.accepted == args.recipients, (plan.accepted, plan.rejected[:3])
    dump_ms, _ = best_ms(lambda: request.model_dump(mode="json", exclude_none=True), args.repeat)
    n = args.recipients
    print(f"{n:,} mainland phones, best of {args.repeat}:")
    print(f"  validate_request {validate_ms:8.1f} ms")
    print(f"  build_plan       {plan_ms:8.1f} ms ({plan_ms * 1000 / n:.2f} us a recipient)")
    print(f"  model_dump(json) {dump_ms:8.1f} ms")


if __name__ == "__main__":
    main()
