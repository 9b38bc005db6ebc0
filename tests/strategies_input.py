"""Hypothesis strategies for what callers hand ``send_sms``: phones in every spelling, hostile values,
template parameters and whole argument sets. Shared by the property tests and the 10,000-case reliability
script, so both probe the same space.

``send_kwargs()`` draws the keyword arguments of one ``send_sms.delay(...)`` call: mostly well-formed
(so that planning is reached) with hostile values mixed into any field.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

PROVIDERS = ("infocloud", "xiaorui", "deepfinch", "tencent", "ihuyi")
TEMPLATES = ("login_code", "order_shipped", "bill")  # the test and demo configurations' templates
KINDS = ("otp", "notify", "marketing")
FULLWIDTH = tuple(chr(0xFF10 + i) for i in range(10))
# The zero of other scripts' decimal digits: Arabic-Indic, Extended Arabic-Indic, Devanagari, Bengali,
# Thai, Myanmar, mathematical bold and monospace. None of them may pass as a phone's digit.
OTHER_DIGITS = ("\u0660", "\u06f0", "\u0966", "\u09e6", "\u0e50", "\u1040", "\U0001d7ce", "\U0001d7f6")
EMOJI = ("😀", "✅", "⭐", "👍🏻", "1️⃣")


class HugeInt(int):
    """An int too large for ``str()`` (Python refuses more than 4300 digits), with a ``repr`` that works,
    so that hypothesis can print an example holding one."""

    def __repr__(self) -> str:
        return f"HugeInt(<{self.bit_length()} bits>)"


class Opaque:
    """An object of no known type, with a ``__str__`` that fails (nothing may call it)."""

    def __str__(self) -> str:
        raise RuntimeError("str() called on an opaque object")


def mainland_mobiles() -> st.SearchStrategy[str]:
    """Valid mainland mobiles in canonical form (11 digits, 13-19)."""
    return st.builds(lambda p, rest: f"1{p}{rest:09d}", st.integers(3, 9), st.integers(0, 10**9 - 1))


def international_numbers() -> st.SearchStrategy[str]:
    """E.164 numbers, valid ones (mobile examples of a few regions) and random digit strings."""
    examples = st.sampled_from(
        ("+85291234567", "+14155550100", "+447911123456", "+6591234567", "+79161234567")
    )
    random = st.builds(lambda cc, n: f"+{cc}{n}", st.integers(1, 999), st.integers(0, 10**12))
    return st.one_of(examples, random)


def _respell(phone: str, draw: Any) -> str:
    """``phone`` with prefixes, separators, full-width or foreign digits mixed in."""
    style = draw(st.sampled_from(("plain", "prefix", "noise", "fullwidth", "foreign", "suffix")))
    if style == "prefix" and not phone.startswith("+"):
        return draw(st.sampled_from(("+86", "86", "0086", "+86 "))) + phone
    if style == "noise":
        sep = draw(st.sampled_from((" ", "-", ".", "(", ")", "\t", "\u3000", "－")))
        return sep.join((phone[:3], phone[3:7], phone[7:]))
    if style in ("fullwidth", "foreign"):
        zero = "\uff10" if style == "fullwidth" else draw(st.sampled_from(OTHER_DIGITS))
        spot = draw(st.integers(0, len(phone) - 1))
        ch = phone[spot]
        return phone[:spot] + (chr(ord(zero) + int(ch)) if ch.isdigit() else ch) + phone[spot + 1 :]
    if style == "suffix":
        return phone + draw(st.sampled_from(("x", "0", "#", "\x00", "😀")))
    return phone


@st.composite
def phone_text(draw: Any) -> str:
    """Text that looks like a phone: valid numbers in every spelling, near misses, foreign digits."""
    base = draw(st.one_of(mainland_mobiles(), international_numbers(), st.from_regex(r"\A\+?[0-9]{1,16}\Z")))
    return _respell(base, draw)


def hostile_values() -> st.SearchStrategy[Any]:
    """Values no field expects: None, bools, huge and negative ints, NaN and infinities, bytes, opaque
    objects, very long strings, lone surrogates, and containers nesting them."""
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.sampled_from((10**400, -(10**400), HugeInt(10**5000), HugeInt(-(10**5000)), -1, 0)),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from((math.nan, math.inf, -math.inf, 1e308)),
        st.binary(max_size=20),
        st.builds(Opaque),
        st.text(max_size=30),
        st.text(min_size=2000, max_size=5000),
        st.text(st.characters(codec=None, categories=["Cs"]), min_size=1, max_size=3),  # lone surrogates
        st.sampled_from(EMOJI),
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.tuples(inner, inner),
            st.frozensets(st.one_of(st.integers(), st.text(max_size=5)), max_size=3),
            st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=3),
        ),
        max_leaves=8,
    )


def phone_inputs() -> st.SearchStrategy[Any]:
    """One element of ``to``: mostly phone-like text or ints, sometimes anything at all."""
    return st.one_of(
        phone_text(),
        phone_text(),
        st.integers(min_value=-(10**16), max_value=10**16),
        hostile_values(),
    )


def param_values() -> st.SearchStrategy[Any]:
    """A template parameter's value: text (with the characters vendors refuse), numbers, or hostile."""
    text = st.one_of(
        st.text(max_size=12),
        st.sampled_from(("1234", "A1,B2", "a:b", "SF123", "张三", "12.5")),
        st.builds(lambda t, e: t + e, st.text(max_size=5), st.sampled_from(EMOJI)),
    )
    return st.one_of(text, text, st.integers(), st.floats(), hostile_values())


def params() -> st.SearchStrategy[Any]:
    """``params``: mostly the names the test templates use, sometimes other keys or not a mapping."""
    names = st.sampled_from(("code", "order", "tracking", "name", "amount"))
    good = st.dictionaries(names, param_values(), max_size=3)
    return st.one_of(
        good, good, good, st.dictionaries(st.text(max_size=70), param_values(), max_size=3), hostile_values()
    )


def recipients() -> st.SearchStrategy[Any]:
    """``to``: one phone, a list/tuple/set of phones, recipients with their own params, or hostile."""
    one = phone_inputs()
    with_params = st.fixed_dictionaries({"phone": phone_inputs()}, optional={"params": params()})
    return st.one_of(
        one,
        st.lists(st.one_of(one, with_params), min_size=0, max_size=6),
        st.tuples(one, one),
        st.frozensets(phone_text(), max_size=4),
        st.sets(st.one_of(phone_text(), st.integers()), max_size=4),
    )


TEMPLATE_PARAMS = {
    "login_code": ("code",),
    "order_shipped": ("order", "tracking"),
    "bill": ("name", "amount"),
}
FIELDS = ("to", "template", "params", "content", "kind", "provider", "idempotency_key", "extra")


def good_param_values() -> st.SearchStrategy[Any]:
    """Values a caller means well with: short text (some with the characters vendors refuse), numbers."""
    return st.one_of(
        st.sampled_from(("1234", "A1,B2", "a:b", "SF123", "张三", "12.5", "")),
        st.text(max_size=12),
        st.integers(-(10**6), 10**12),
        st.floats(allow_nan=False, allow_infinity=False),
        st.builds(lambda t, e: t + e, st.text(max_size=5), st.sampled_from(EMOJI)),
    )


@st.composite
def _template_request(draw: Any) -> dict[str, Any]:
    name = draw(st.sampled_from(TEMPLATES))
    names = TEMPLATE_PARAMS[name]
    return {"template": name, "params": {n: draw(good_param_values()) for n in names}}


def _content_request() -> st.SearchStrategy[dict[str, Any]]:
    content = st.one_of(
        st.text(min_size=1, max_size=60),
        st.text(min_size=440, max_size=520),
        st.builds(lambda t, e: t + e, st.text(max_size=20), st.sampled_from(EMOJI)),
    )
    return st.fixed_dictionaries({"content": content})


def _phones_to() -> st.SearchStrategy[Any]:
    one = st.one_of(mainland_mobiles(), phone_text(), phone_text(), st.integers(1, 10**15 - 1))
    with_params = st.fixed_dictionaries({"phone": phone_text()}, optional={"params": params()})
    return st.one_of(
        one,
        st.lists(one, min_size=1, max_size=8),
        st.lists(st.one_of(one, with_params), min_size=1, max_size=4),
        st.sets(phone_text(), min_size=1, max_size=4),
    )


@st.composite
def send_kwargs(draw: Any) -> dict[str, Any]:
    """Keyword arguments of one ``send_sms`` call: a well-meant request (template and its parameters, or
    free text; sometimes a kind, a provider, an idempotency key) with, in about half the cases, one or
    two fields replaced by something hostile (``recipients()``, ``params()``, ``hostile_values()``)."""
    kwargs = draw(st.one_of(_template_request(), _content_request()))
    kwargs["to"] = draw(_phones_to())
    if draw(st.booleans()):
        kwargs["kind"] = draw(st.sampled_from(KINDS))
    if draw(st.integers(0, 3)) == 0:
        kwargs["provider"] = draw(st.sampled_from(PROVIDERS))
    if draw(st.integers(0, 3)) == 0:
        kwargs["idempotency_key"] = draw(st.text(min_size=1, max_size=20))
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=2, unique=True)):
        if draw(st.booleans()):
            continue  # half the time the request stays well-formed
        hostile = {"to": recipients(), "params": params()}.get(field, hostile_values())
        kwargs[field] = draw(hostile)
    return kwargs
