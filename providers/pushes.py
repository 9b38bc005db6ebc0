"""Reading what vendors push to us (receipts, replies), without trusting it: the body decoders and field
readers every adapter's push parser uses, and :class:`PushReply`, the literal answer a vendor expects.

Parsers are pure: bytes in, typed results out, or :class:`providers.errors.MalformedPush` for anything
they cannot read (never another exception: the property tests in ``tests/providers/test_pushes.py``
feed them hostile bodies). The receiver stores the raw body first; parsing happens later, in
``tasks.push.apply_pushes``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from providers.errors import MalformedPush
from providers.reading import decode_json, identifier, text

MAX_ITEMS = 10_000
"""The most receipts or replies one pushed body may carry (Infocloud's own pages hold 600)."""


class PushKind(enum.StrEnum):
    """What a vendor pushes: delivery receipts, or replies (MO)."""

    RECEIPTS = "receipts"
    INBOUND = "inbound"


@dataclass(frozen=True, slots=True)
class PushReply:
    """The answer a vendor expects to a push it made, byte for byte (``body``), and its media type."""

    body: bytes
    media_type: str


def malformed(provider: str, what: str) -> MalformedPush:
    """The error for a pushed body ``provider`` sent that we cannot read (``what``: why; no phone)."""
    message = f"{provider}: malformed push: {what}"
    return MalformedPush(message, provider=provider, code="MALFORMED", text=what)


def json_body(provider: str, body: bytes) -> Any:
    """The JSON value of a pushed ``body``; :class:`MalformedPush` if it is not JSON (or nests too deep)."""
    try:
        return decode_json(body)
    except (ValueError, UnicodeError) as exc:
        raise malformed(provider, f"not JSON ({type(exc).__name__})") from None


def form_body(provider: str, body: bytes) -> dict[str, str]:
    """The fields of a form-encoded ``body`` (``a=1&b=2``, UTF-8), the last value of a repeated field;
    :class:`MalformedPush` if it is not UTF-8 or holds no field."""
    try:
        decoded = body.decode("utf-8")
        pairs = parse_qsl(decoded, keep_blank_values=True, errors="strict", max_num_fields=1000)
    except (UnicodeError, ValueError) as exc:
        raise malformed(provider, f"not a UTF-8 form ({type(exc).__name__})") from None
    if not pairs:
        raise malformed(provider, "an empty form")
    return {key: text(value) for key, value in pairs}


def items(provider: str, value: Any, *, single_ok: bool = False) -> list[Mapping[str, Any]]:
    """``value`` as a list of objects: a JSON array of objects (an object alone too with ``single_ok``);
    :class:`MalformedPush` for anything else, or for more than :data:`MAX_ITEMS`."""
    if single_ok and isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise malformed(provider, "not a list of items")
    if len(value) > MAX_ITEMS:
        raise malformed(provider, f"{len(value)} items, at most {MAX_ITEMS}")
    if not all(isinstance(item, dict) for item in value):
        raise malformed(provider, "an item is not an object")
    return value


def required(provider: str, item: Mapping[str, Any], field: str) -> str:
    """An id-like field of ``item`` (non-blank string or whole number, stripped); :class:`MalformedPush`
    without one: a receipt or reply that cannot be matched or attributed is not applied."""
    found = identifier(item.get(field))
    if found is None:
        raise malformed(provider, f"{field!r} missing or unreadable")
    return found
