"""Property fuzzing of everything that comes from outside, at scale: ``send_sms``'s arguments, the HTTP
API's bodies and headers (``POST /v1/messages``, ``POST /v1/campaigns`` uploads), recipient files and the
campaign intake's dry run, every vendor adapter's answer parsing (send, receipts, inbound, balance), every
push parser and what the push receiver keeps, and the settings.

    uv run python -m reliability.fuzz [--cases 10000] [--only send_sms,settings,...] [--seed N]

For each target it prints ``cases / refused / accepted / unhandled``: *refused* is the clear error the
target promises (``InvalidRequest``, an error of ``providers/errors.py``, ``SettingsError``, a 4xx of the
API in its documented shape naming the field, in one line), *unhandled* anything else (a traceback a user
would see, a 5xx). The last line is ``PASS`` when no target has an unhandled case, else ``FAIL`` with the
first example of each. The strategies are the ones the test suite's property tests use
(``tests/strategies_input.py``, ``tests/providers/strategies.py``, ``tests/strategies_settings.py``),
drawn here many more times; the API's, the files' and the intake's are in ``reliability/fuzz_targets.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REFUSED = "refused"
ACCEPTED = "accepted"


@dataclass
class Tally:
    """What one target did with its cases."""

    cases: int = 0
    refused: int = 0
    accepted: int = 0
    unhandled: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, outcome: str | BaseException, case: Any) -> None:
        self.cases += 1
        if outcome == REFUSED:
            self.refused += 1
        elif outcome == ACCEPTED:
            self.accepted += 1
        else:
            self.unhandled += 1
            if len(self.examples) < 3:
                tb = "".join(traceback.format_exception(outcome)[-3:]).strip()
                self.examples.append(f"{_short(case)}\n      {tb}")


def _short(case: Any) -> str:
    text = repr(case)
    return text if len(text) < 300 else text[:300] + "..."


Target = tuple[st.SearchStrategy[Any], Callable[[Any], str]]


def run(
    name: str, strategy: st.SearchStrategy[Any], check: Callable[[Any], str], cases: int, seed: int
) -> Tally:
    """Draw ``cases`` examples and classify each; exceptions out of ``check`` are the unhandled ones."""
    tally = Tally()

    @settings(
        max_examples=cases,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def probe(case: Any) -> None:
        try:
            outcome: str | BaseException = check(case)
        except Exception as exc:  # noqa: BLE001 - counting what escapes is the point of this script
            outcome = exc
        tally.add(outcome, case)

    probe._hypothesis_internal_use_seed = seed  # type: ignore[attr-defined]
    probe()
    return tally


def targets() -> Iterator[tuple[str, Target]]:
    from reliability import fuzz_targets

    yield from fuzz_targets.all_targets()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=10_000, help="examples per target")
    parser.add_argument("--only", default="", help="comma-separated target names")
    parser.add_argument("--seed", type=int, default=20261127)
    args = parser.parse_args(argv)
    only = {name for name in args.only.split(",") if name}
    print(f"{'target':<28} {'cases':>7} {'refused':>8} {'accepted':>9} {'unhandled':>10} {'s':>6}")
    failed: list[tuple[str, Tally]] = []
    for name, (strategy, check) in targets():
        if only and name not in only:
            continue
        start = time.monotonic()
        tally = run(name, strategy, check, args.cases, args.seed)
        took = time.monotonic() - start
        counts = f"{tally.cases:>7} {tally.refused:>8} {tally.accepted:>9} {tally.unhandled:>10}"
        print(f"{name:<28} {counts} {took:>6.1f}", flush=True)
        if tally.unhandled:
            failed.append((name, tally))
    for name, tally in failed:
        print(f"\n{name}: first unhandled cases")
        for example in tally.examples:
            print(f"  - {example}")
    print("FAIL: unhandled cases above" if failed else "PASS: 0 unhandled in every target")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
