"""Phone numbers, one module for the planner and the adapters: normalization, masking, display of bad input.

Canonical forms: a mainland mobile as its 11 digits (``13800138000``), every other number in E.164
(``+85291234567``). Accepted: ``13800138000``, ``+8613800138000``, ``8613800138000``, ``008613800138000``,
international numbers as ``+85291234567`` or ``0085291234567``, with spaces, dashes, dots or parentheses
anywhere, and positive whole numbers (``13800138000``).

Only ASCII digits count. Full-width digits, ``＋`` and full-width separators (what a Chinese input method
types) become ASCII; every other Unicode digit (Arabic-Indic ``٣``, Devanagari ``३``, mathematical ``𝟏``,
superscript ``¹``, circled ``①``) is refused, not converted: a phone has exactly one spelling, so the
opt-out set, the per-phone limits and dedupe all see it. (NFKC is not used: it would turn ``𝟏¹①`` into
``1``; ``phonenumbers`` itself converts Arabic-Indic digits, so it only ever sees ASCII here.)

Mainland mobiles take a plain-regex fast path (well under 1 µs); other numbers are parsed and validated by
``phonenumbers`` (about 20 µs a number) and refused when their type cannot take an SMS (fixed lines,
toll-free, premium-rate, shared-cost, UAN, voicemail).
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

MAX_INPUT_CHARS = 64  # longer text is no phone number, however it is spelled
MAX_NUMBER = 10**15  # E.164 numbers have at most 15 digits
SHOWN_CHARS = 32  # how much of a rejected input is shown back

_FULLWIDTH = str.maketrans(
    {chr(0xFF10 + i): str(i) for i in range(10)}
    | {"＋": "+", "\u3000": " ", "－": "-", "（": "(", "）": ")", "．": "."}
)
_NOISE = re.compile(r"[\s\-().]", re.ASCII)
_MAINLAND = re.compile(r"1[3-9][0-9]{9}")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_PLAIN = re.compile(r"\+?[0-9]+")
_NO_SMS = frozenset(
    {
        PhoneNumberType.FIXED_LINE,
        PhoneNumberType.TOLL_FREE,
        PhoneNumberType.PREMIUM_RATE,
        PhoneNumberType.SHARED_COST,
        PhoneNumberType.UAN,
        PhoneNumberType.VOICEMAIL,
    }
)
# Masking runs on free text (log lines) and deliberately matches digits of any script: masking too much
# is harmless there, showing a number is not.
_MASK_MAINLAND = re.compile(r"(?<!\d)((?:\+|00)?(?:86)?1[3-9]\d)\d{4}(\d{4})(?!\d)")
_MASK_INTERNATIONAL = re.compile(r"(?<![\d*])(\+|00)(\d{7,15})(?!\d)")


_NOT_A_NUMBER = "not a mainland mobile (11 digits) or an international number in E.164 (+country...)"


class PhoneError(ValueError):
    """Not a number we can send to; the message says why (and never repeats the number)."""


def normalize(raw: object) -> str:
    """The canonical form of ``raw`` (text or a positive int), or PhoneError naming the problem."""
    if type(raw) is str and _MAINLAND.fullmatch(raw):
        return raw  # the fast path: most numbers of a bulk send
    text = as_text(raw)
    if not text.isascii():
        text = text.translate(_FULLWIDTH)
        if not text.isascii():
            raise PhoneError(
                "holds characters other than ASCII or full-width digits, '+', spaces, dashes and parentheses"
            )
    text = _NOISE.sub("", text)
    if not text:
        raise PhoneError("empty phone number")
    if _MAINLAND.fullmatch(text):
        return text
    if text.startswith("00"):
        text = "+" + text[2:]
    if not _PLAIN.fullmatch(text):
        raise PhoneError(_NOT_A_NUMBER)
    if text.startswith("+86") or (text.startswith("86") and len(text) == 13):
        if _MAINLAND.fullmatch(text.removeprefix("+")[2:]):
            return text.removeprefix("+")[2:]
        raise PhoneError("+86 number is not a mainland mobile (11 digits starting 13-19)")
    if text.startswith("+"):
        return _international(text)
    if len(text) == 11:
        raise PhoneError("11 digits but not a mainland mobile prefix (13-19)")
    raise PhoneError(_NOT_A_NUMBER)


def as_text(raw: object) -> str:
    """``raw`` as text if it can be a phone at all: text of at most 64 characters, or a positive int of at
    most 15 digits. Anything else (bool, float, bytes, negative, huge) is a PhoneError saying so."""
    if isinstance(raw, bool):
        raise PhoneError("expected a phone number as text or a positive int, got bool")
    if isinstance(raw, int):
        if raw <= 0:
            raise PhoneError("a phone number given as an int must be positive")
        if raw >= MAX_NUMBER:
            raise PhoneError("more than 15 digits (E.164 numbers have at most 15)")
        return int.__repr__(raw)  # the digits, even from a subclass that overrides __str__
    if isinstance(raw, str):
        text = str.__add__("", raw)  # an exact str, even from a subclass
        if len(text) > MAX_INPUT_CHARS:
            raise PhoneError(f"{len(text)} characters, a phone number has at most {MAX_INPUT_CHARS}")
        return text
    hint = " (decode it first)" if isinstance(raw, bytes | bytearray) else ""
    raise PhoneError(f"expected a phone number as text, got {type(raw).__name__}{hint}")


def _international(text: str) -> str:
    """An E.164 number checked by ``phonenumbers``: a known country, a valid number, one that takes SMS."""
    if not _E164.fullmatch(text):
        raise PhoneError(_NOT_A_NUMBER)
    try:
        number = phonenumbers.parse(text, None)
    except NumberParseException:
        raise PhoneError("international number with an unknown country code") from None
    if not phonenumbers.is_valid_number(number):
        raise PhoneError(f"not a valid number for country code +{number.country_code}")
    if phonenumbers.number_type(number) in _NO_SMS:
        raise PhoneError(f"+{number.country_code} number is not a mobile (a fixed line or service number)")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def is_mainland(phone: str) -> bool:
    """True for a normalized mainland mobile (11 digits, no +)."""
    return not phone.startswith("+")


def is_mainland_mobile(phone: str) -> bool:
    """True when ``phone`` is exactly a mainland mobile: 11 ASCII digits starting 13-19."""
    return _MAINLAND.fullmatch(phone) is not None


def is_e164(phone: str) -> bool:
    """True when ``phone`` has the E.164 shape: ``+``, then 7 to 15 ASCII digits, the first not 0."""
    return _E164.fullmatch(phone) is not None


def country_code_length(digits: str) -> int:
    """How many leading digits of an E.164 number (without ``+``) are its country code (1 to 3).

    Country codes are prefix-free; an unassigned one counts as 3 digits."""
    for size in (1, 2, 3):
        head = digits[:size]
        if head.isdecimal() and int(head) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return size
    return 3


def mask(text: str) -> str:
    """Mask every phone number in ``text``: mainland mobiles as ``138****8000`` (``+86139****5678``),
    international numbers with their country code and last 4 digits kept (``+852****5678``)."""
    text = _MASK_MAINLAND.sub(r"\1****\2", text)
    if "+" in text or "00" in text:
        text = _MASK_INTERNATIONAL.sub(_mask_international, text)
    return text


def _mask_international(match: re.Match[str]) -> str:
    prefix, digits = match.group(1), match.group(2)
    size = country_code_length(digits)
    if prefix == "00" and size == 3 and int(digits[:3]) not in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
        return match.group()  # "00" and digits that are no number: an amount or an id, left alone
    national = digits[size:]
    keep = min(4, len(national) // 2)
    return f"{prefix}{digits[:size]}{'*' * (len(national) - keep)}{national[len(national) - keep :]}"


def shown(raw: object) -> str:
    """How a rejected input is shown back (send_sms's answer, Redis, ``status``, logs): never whole.

    Text and ints are cut to 32 characters, unprintable characters become ``?``; if what is left holds
    7 digits or more (of any script), every digit is masked but the last 4, and the first 3 too when
    there are 10 or more: ``1380013800`` shows as ``138***3800``, ``13800138000x`` as ``138****8000x``.
    A whole number therefore never appears. Other types show as ``<float>``, ``<bytes>`` and so on.
    """
    if isinstance(raw, int) and not isinstance(raw, bool) and raw.bit_length() <= 128:
        text = int.__repr__(raw)
    elif isinstance(raw, str):
        text = str.__add__("", raw)[:SHOWN_CHARS]
    else:
        return f"<{type(raw).__name__}>"
    text = "".join(ch if ch.isprintable() else "?" for ch in text[:SHOWN_CHARS])
    places = [i for i, ch in enumerate(text) if ch.isdigit()]
    if len(places) < 7:
        return text
    head = 3 if len(places) >= 10 else 0
    hidden = set(places[head : len(places) - 4])
    return "".join("*" if i in hidden else ch for i, ch in enumerate(text))
