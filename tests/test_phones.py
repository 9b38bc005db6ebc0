"""Phone normalization and masking."""

from __future__ import annotations

import pytest

from tasks.phones import PhoneError, mask, normalize


@pytest.mark.parametrize(
    ("given", "expected"),
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
    ],
)
def test_numbers_are_normalized(given: object, expected: str) -> None:
    assert normalize(given) == expected


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("", "empty"),
        ("12345", "not a mainland mobile"),
        ("12800138000", "not a mainland mobile prefix"),
        ("+8612800138000", "+86 number is not a mainland mobile"),
        ("1380013800a", "not a mainland mobile"),
        (None, "expected a phone number as text"),
        ("+0123456789", "not a mainland mobile"),
    ],
)
def test_bad_numbers_say_why(given: object, problem: str) -> None:
    with pytest.raises(PhoneError, match=problem.replace("+", r"\+")):
        normalize(given)


def test_mask_hides_the_middle_of_every_mobile() -> None:
    assert mask("to 13800138000 and +8613912345678") == "to 138****8000 and +86139****5678"
    assert mask("order 2023123112345678901") == "order 2023123112345678901"
