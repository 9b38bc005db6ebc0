"""Billed parts (providers/text.py ``sms_parts``): 70 characters in one part, 67 per part beyond, the
signature counted as 【signature】; and which signature each vendor's settings say is counted."""

from __future__ import annotations

import pytest

from providers.tencent import TencentSettings
from providers.text import sms_parts
from providers.xiaorui import XiaoruiSettings


@pytest.mark.parametrize(
    ("chars", "parts"),
    [(0, 0), (1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4), (300, 5)],
)
def test_70_in_one_part_then_67_per_part(chars: int, parts: int) -> None:
    assert sms_parts("字" * chars) == parts


def test_the_signature_counts_with_its_brackets() -> None:
    assert sms_parts("a" * 64, "商城") == 1  # 64 + 【商城】 = 68
    assert sms_parts("a" * 66, "商城") == 1  # 70
    assert sms_parts("a" * 67, "商城") == 2  # 71
    assert sms_parts("", "商城") == 1


def test_a_text_that_already_carries_the_signature_is_not_charged_it_twice() -> None:
    assert sms_parts("【商城】" + "a" * 66, "商城") == 1
    assert sms_parts("a" * 66 + "【商城】", "商城") == 1
    assert sms_parts("【别家】" + "a" * 66, "商城") == 2


def test_characters_are_code_points_emoji_and_astral_included() -> None:
    assert sms_parts("😀" * 70) == 1  # 70 code points (140 UTF-16 units)
    assert sms_parts("😀" * 71) == 2
    assert sms_parts("𠀀" * 134) == 2  # CJK extension B, outside the BMP
    assert sms_parts("𠀀" * 135) == 3


def test_each_vendor_names_the_signature_it_bills() -> None:
    assert TencentSettings(sign="腾讯云").billed_signature() == "腾讯云"
    assert TencentSettings().billed_signature() == ""
    assert XiaoruiSettings(signature="小睿").billed_signature() == "小睿"
