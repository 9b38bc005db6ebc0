"""Phone number normalization: mainland mobiles as 11 digits, everything else in E.164.

Accepted: ``13800138000``, ``+8613800138000``, ``8613800138000``, ``008613800138000``, with spaces,
dashes or parentheses anywhere; international numbers as ``+85291234567`` or ``0085291234567``.
"""

from __future__ import annotations

import re

_NOISE = re.compile(r"[\s\-().]")
_MAINLAND = re.compile(r"1[3-9]\d{9}")
_E164 = re.compile(r"\+[1-9]\d{6,14}")
_MASK = re.compile(r"(?<!\d)(\+?(?:86)?1[3-9]\d)\d{4}(\d{4})(?!\d)")


class PhoneError(ValueError):
    """Not a number we can send to; the message says why."""


def normalize(raw: object) -> str:
    """The canonical form of ``raw``, or PhoneError naming the problem."""
    if not isinstance(raw, str | int):
        raise PhoneError(f"expected a phone number as text, got {type(raw).__name__}")
    text = _NOISE.sub("", str(raw))
    if not text:
        raise PhoneError("empty phone number")
    if _MAINLAND.fullmatch(text):
        return text
    if text.startswith("00"):
        text = "+" + text[2:]
    if text.startswith("+86") or (text.startswith("86") and len(text) == 13):
        local = text[3:] if text.startswith("+") else text[2:]
        if _MAINLAND.fullmatch(local):
            return local
        raise PhoneError("+86 number is not a mainland mobile (11 digits starting 13-19)")
    if _E164.fullmatch(text):
        return text
    if text.isdigit() and len(text) == 11:
        raise PhoneError("11 digits but not a mainland mobile prefix (13-19)")
    raise PhoneError("not a mainland mobile (11 digits) or an international number in E.164 (+country...)")


def is_mainland(phone: str) -> bool:
    """True for a normalized mainland mobile (11 digits, no +)."""
    return not phone.startswith("+")


def mask(text: str) -> str:
    """Mask every mobile number in ``text`` as ``138****8000``."""
    return _MASK.sub(r"\1****\2", text)
