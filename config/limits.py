"""Per-phone limit rules: ``"5/1h"`` means at most 5 messages to one phone per hour window.

Windows are fixed and aligned to Beijing time (UTC+8), so a ``/1d`` rule resets at local midnight, the
way the vendors count their own daily caps.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RULE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*$")


@dataclass(frozen=True, slots=True)
class LimitRule:
    count: int
    window_s: int

    def __str__(self) -> str:
        for unit, size in sorted(_UNITS.items(), key=lambda item: -item[1]):
            if self.window_s % size == 0:
                return f"{self.count}/{self.window_s // size}{unit}"
        return f"{self.count}/{self.window_s}s"  # pragma: no cover - every window is whole seconds

    @classmethod
    def parse(cls, text: str) -> LimitRule:
        match = _RULE.match(text)
        if not match:
            raise ValueError(f"limit {text!r} is not of the form COUNT/WINDOW, e.g. '5/1h' or '1/30s'")
        count, size, unit = int(match[1]), int(match[2] or 1), match[3]
        if count < 1 or size < 1:
            raise ValueError(f"limit {text!r}: count and window must be positive")
        return cls(count, size * _UNITS[unit])


def parse_rules(rules: Iterable[Any]) -> tuple[LimitRule, ...]:
    if isinstance(rules, str):
        rules = [rules]
    return tuple(r if isinstance(r, LimitRule) else LimitRule.parse(str(r)) for r in rules)


DEFAULT_LIMITS: dict[str, tuple[LimitRule, ...]] = {
    "otp": parse_rules(["1/30s", "5/1h", "10/1d"]),
    "notify": parse_rules(["1/1s", "20/1d"]),
    "marketing": parse_rules(["1/1d"]),
}
