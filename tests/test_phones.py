"""Phone normalization, masking and the display of rejected input (``providers.phones``)."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers.phones import PhoneError, mask, normalize, shown
from tests.strategies_input import FULLWIDTH, OTHER_DIGITS, HugeInt, mainland_mobiles, phone_text


@pytest.mark.parametrize(
    ("given_", "expected"),
    [
        ("13800138000", "13800138000"),
        (13800138000, "13800138000"),
        ("+8613800138000", "13800138000"),
        ("8613800138000", "13800138000"),
        ("008613800138000", "13800138000"),
        ("+86 138-0013-8000", "13800138000"),
        ("(138) 0013 8000", "13800138000"),
        ("+85291234567", "+85291234567"),
        ("0085291234567", "+85291234567"),
        ("+1 415 555 0100", "+14155550100"),
        # What a Chinese input method types: full-width digits, plus sign, space, dash, parentheses.
        ("1380013800０", "13800138000"),
        ("１３８００１３８０００", "13800138000"),
        ("＋８６ １３８－００１３－８０００", "13800138000"),
        ("（１３８）００１３８０００", "13800138000"),
        ("＋８５２９１２３４５６７", "+85291234567"),
    ],
)
def test_numbers_are_normalized(given_: object, expected: str) -> None:
    assert normalize(given_) == expected


@pytest.mark.parametrize(
    ("given_", "problem"),
    [
        ("", "empty"),
        ("12345", "not a mainland mobile"),
        ("12800138000", "not a mainland mobile prefix"),
        ("+8612800138000", "+86 number is not a mainland mobile"),
        ("1380013800a", "not a mainland mobile"),
        (None, "expected a phone number as text"),
        ("+0123456789", "not a mainland mobile"),
        # Other scripts' digits are refused, not converted: one phone, one spelling.
        ("138٠0138000", "other than ASCII or full-width digits"),  # Arabic-Indic zero
        ("१३८००१३८०००", "other than ASCII or full-width digits"),  # Devanagari
        ("𝟏3800138000", "other than ASCII or full-width digits"),  # mathematical bold one (NFKC: 1)
        ("¹3800138000", "other than ASCII or full-width digits"),  # superscript one (NFKC: 1)
        ("①3800138000", "other than ASCII or full-width digits"),  # circled one (NFKC: 1)
        ("+٨٥٢٩١٢٣٤٥٦٧", "other than ASCII or full-width digits"),  # phonenumbers would take it
        (-13800138000, "must be positive"),
        (0, "must be positive"),
        (10**15, "more than 15 digits"),
        (HugeInt(10**5000), "more than 15 digits"),
        (True, "got bool"),
        (13800138000.0, "got float"),
        (b"13800138000", "got bytes"),
        (bytearray(b"13800138000"), "got bytearray"),
        ("1" * 65, "65 characters"),
        ("+97312345678", "not a valid number for country code +973"),
        ("+99912345678", "unknown country code"),
        ("+85221234567", "+852 number is not a mobile"),  # a Hong Kong fixed line
    ],
)
def test_bad_numbers_say_why(given_: object, problem: str) -> None:
    with pytest.raises(PhoneError, match=problem.replace("+", r"\+")) as info:
        normalize(given_)
    assert "3800138" not in str(info.value) and "1234567" not in str(info.value)  # never the number


def test_mainland_mobiles_take_the_fast_path_without_phonenumbers(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("phonenumbers called for a mainland mobile")

    monkeypatch.setattr(phonenumbers, "parse", refuse)
    assert normalize("13800138000") == normalize("+86 138 0013 8000") == "13800138000"
    assert normalize("１３８００１３８０００") == "13800138000"


def test_mask_hides_the_middle_of_every_number() -> None:
    assert mask("to 13800138000 and +8613912345678") == "to 138****8000 and +86139****5678"
    assert mask("order 2023123112345678901") == "order 2023123112345678901"
    assert mask("hk +85212345678, uk +447911123456") == "hk +852****5678, uk +44******3456"
    assert mask("us 0012025550100 and 0085291234567") == "us 001******0100 and 00852****4567"
    assert mask("1380013800０") == "138****800０"  # over-masking other scripts is harmless


@pytest.mark.parametrize(
    ("raw", "display"),
    [
        ("12345", "12345"),  # fewer than 7 digits: no number, shown as given
        ("1380013800", "138***3800"),
        ("13800138000x", "138****8000x"),
        ("138 0013 8000 zz", "138 **** 8000 zz"),
        ("+97312345678", "+973****5678"),
        ("1234567", "***4567"),
        ("\x1b[2J13800138000\n", "?[2J13*****8000?"),  # no terminal control reaches `status`
        (-13800138000, "-138****8000"),
        (HugeInt(10**5000), "<HugeInt>"),
        (b"13800138000", "<bytes>"),
        ("9" * 100, "999*************************9999"),  # 32 characters at most
    ],
)
def test_a_rejected_input_is_shown_masked(raw: object, display: str) -> None:
    assert shown(raw) == display


@settings(max_examples=300, deadline=None)
@given(st.one_of(phone_text(), st.text(max_size=80)))
def test_normalize_gives_one_ascii_spelling_or_says_why(raw: str) -> None:
    try:
        phone = normalize(raw)
    except PhoneError:
        return
    assert phone.isascii() and phone.lstrip("+").isdigit()
    assert normalize(phone) == phone
    assert (len(phone) == 11 and phone[0] == "1") or (phone.startswith("+") and not phone.startswith("+86"))


@settings(max_examples=200, deadline=None)
@given(mainland_mobiles(), st.data())
def test_full_width_digits_are_the_same_phone_and_other_digits_are_refused(
    phone: str, data: st.DataObject
) -> None:
    spots = data.draw(st.sets(st.integers(0, 10), min_size=1))
    wide = "".join(FULLWIDTH[int(ch)] if i in spots else ch for i, ch in enumerate(phone))
    assert normalize(wide) == phone
    script = data.draw(st.sampled_from(OTHER_DIGITS))
    foreign = "".join(chr(ord(script) + int(ch)) if i in spots else ch for i, ch in enumerate(phone))
    with pytest.raises(PhoneError):
        normalize(foreign)


@settings(max_examples=300, deadline=None)
@given(st.one_of(phone_text(), st.text(max_size=80), st.integers()))
def test_what_is_shown_of_an_input_is_never_a_number(raw: object) -> None:
    display = shown(raw)
    assert len(display) <= 32
    with pytest.raises(PhoneError):
        normalize(display)
