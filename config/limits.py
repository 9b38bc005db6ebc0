"""Per-phone limit rules: ``"5/1h"`` means at most 5 messages to one phone per hour window.

Windows are fixed and aligned to Beijing time (UTC+8), so a ``/1d`` rule resets at local midnight, the
way the vendors count their own daily caps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RULE = re.compile(r"^\s*([0-9]+)\s*/\s*([0-9]*)\s*([smhd])\s*$", re.ASCII)
MAX_RULE_CHARS = 40
MAX_WINDOW_S = 366 * 86400  # a year (and a day): a window's counter key lives that long in Redis
MAX_COUNT = 1_000_000  # per phone and window; anything above is a typo, not a limit


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
        match = _RULE.match(text) if len(text) <= MAX_RULE_CHARS else None
        if not match:
            raise ValueError(f"limit {text!r} is not of the form COUNT/WINDOW, e.g. '5/1h' or '1/30s'")
        count, size, unit = int(match[1]), int(match[2] or 1), match[3]
        if count < 1 or size < 1:
            raise ValueError(f"limit {text!r}: count and window must be positive")
        if count > MAX_COUNT:
            raise ValueError(f"limit {text!r}: at most {MAX_COUNT:,} messages a window")
        if size * _UNITS[unit] > MAX_WINDOW_S:
            raise ValueError(f"limit {text!r}: a window is at most 366d")
        return cls(count, size * _UNITS[unit])


def parse_rules(rules: Any) -> tuple[LimitRule, ...]:
    """``"5/1h"`` or a list of such (or of ``LimitRule``) as rules; ValueError for anything else, an
    empty list, or two rules over the same window (they would share one counter)."""
    if isinstance(rules, str | LimitRule):
        rules = [rules]
    if not isinstance(rules, list | tuple):
        raise ValueError("must be a list of limits such as ['1/30s', '5/1h']")
    if not rules:
        raise ValueError("an empty list: give at least one limit, e.g. ['1/30s']")
    parsed = tuple(_rule(rule) for rule in rules)
    windows = [rule.window_s for rule in parsed]
    if len(set(windows)) != len(windows):
        raise ValueError("two limits have the same window: keep the stricter one")
    return parsed


def _rule(rule: Any) -> LimitRule:
    if isinstance(rule, LimitRule):
        return rule
    if not isinstance(rule, str):
        raise ValueError(f"limit {rule!r} is not a string such as '5/1h'")
    return LimitRule.parse(rule)


DEFAULT_LIMITS: dict[str, tuple[LimitRule, ...]] = {
    "otp": parse_rules(["1/30s", "5/1h", "10/1d"]),
    "notify": parse_rules(["1/1s", "20/1d"]),
    "marketing": parse_rules(["1/1d"]),
}
