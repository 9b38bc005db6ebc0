"""Reading vendor answers without trusting them: JSON decoding and field readers that turn any value into
the type a parser needs, or into "unreadable" (None), and never raise.

A vendor, or whatever stands between it and us (its API gateway, a proxy, a captive portal), can answer
anything: an HTML error page, bytes in another encoding, JSON nested a thousand levels deep, ``NaN``,
``Infinity``, 400-digit numbers, a list where the document promises a string. Parsers read every field
through these helpers, so the answer's shape decides only *which* typed result or error comes back.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 32
"""Deepest nesting accepted in an answer. The vendors' documented answers are at most 3 levels deep; a
deeper body is refused at decoding, so that nothing later (``repr``, logging, pickling) recurses on it."""

UNREADABLE: tuple[type[Exception], ...] = (
    TypeError,
    ValueError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    RecursionError,
)
"""What Python raises on data of a shape the code did not expect (indexing, converting, recursing). The
send template (``Provider.send``) turns these, raised while parsing an answer, into "unreadable answer":
the parsers do not rely on it (their property tests check none reaches it), it is the backstop."""

_DECIMAL = re.compile(r"[-+]?[0-9]+(?:\.[0-9]+)?")


class Unreadable(ValueError):
    """A parser cannot read the answer: ``what`` says why, ``raw`` is the decoded answer if there was one.
    ``Provider`` turns it into the error of the tree for the call (see ``Provider.malformed``)."""

    def __init__(self, what: str, raw: Any = None) -> None:
        super().__init__(what)
        self.what = what
        self.raw = raw


def decode_json(content: bytes) -> Any:
    """The JSON value of ``content``; ``ValueError`` if it is not JSON (not UTF-8/16/32, truncated, HTML,
    empty) or is nested deeper than :data:`MAX_DEPTH`. ``NaN`` and ``Infinity`` decode as floats: the
    field readers below refuse them where a number is needed."""
    try:
        value = json.loads(content)
    except RecursionError as exc:  # "[" * 100_000: the decoder recurses once per level
        raise ValueError("JSON nested too deep to decode") from exc
    if _deeper_than(value, MAX_DEPTH):
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """True when ``value`` nests lists/objects more than ``limit`` levels (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def text(value: Any, default: str = "") -> str:
    """``value`` as text: a string as it is, a whole number in digits; anything else (null, a list, an
    object, a boolean, NaN) is ``default``. For descriptive fields, where a garbled value loses nothing.

    A lone surrogate (JSON's ``"\\ud800"`` decodes to one) becomes ``?``: every string we return can be
    encoded as UTF-8, so writing it to Redis or a log line cannot fail."""
    if isinstance(value, str):
        return value if value.isascii() else _utf8(value)
    if isinstance(value, bool):
        return default
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return str(value)  # JSON integers are at most 4300 digits (the decoder refuses longer ones)
    return default


def _utf8(value: str) -> str:
    try:
        value.encode()
    except UnicodeEncodeError:
        return value.encode(errors="replace").decode()
    return value


def identifier(value: Any) -> str | None:
    """A vendor id: a non-blank string (stripped) or a whole number, else None (missing or unreadable)."""
    if isinstance(value, bool | float):
        return None
    found = text(value).strip()
    return found or None


def number(value: Any) -> float | None:
    """A finite number from a JSON number or a decimal string (``"12.5"``, ``"-3"``); None for anything
    else: ``NaN``, ``Infinity``, ``"1e400"``, numbers too large for a float, booleans, ``"12 元"``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not _DECIMAL.fullmatch(value):
            return None
    if not isinstance(value, int | float | str):
        return None
    try:
        found = float(value)
    except OverflowError:  # an integer beyond the float range
        return None
    return found if math.isfinite(found) else None


def whole(value: Any, low: int, high: int) -> int | None:
    """A whole number within ``low..high`` (from a JSON number or digits in a string), else None."""
    found = number(value)
    if found is None or not found.is_integer() or not low <= found <= high:
        return None
    return int(found)
