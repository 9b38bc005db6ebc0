"""Content rules some vendors impose, as plain checks the planner and the adapters share, and how many
parts a message is billed as.

Which vendor applies which rule is a ``Capabilities`` field (``forbids_emoji``, ``param_forbidden_chars``,
``max_content_chars``); this module only says what an emoji is and how long a message is.
"""

from __future__ import annotations

import re

SINGLE_PART_CHARS = 70
PART_CHARS = 67  # a long message's parts each carry a few characters of concatenation header

# What we refuse as emoji (Ihuyi's code 4074). The vendor does not define its set, so we take Unicode's:
# characters shown as emoji by default (Emoji_Presentation: the pictograph planes U+1F000-U+1FAFF and the
# few BMP symbols such as U+2B50 star or U+2705 check mark) plus the emoji selector U+FE0F and the keycap
# U+20E3. Text symbols such as ★ ☆ ☀ ♥ (common in Chinese SMS, and in GB2312) still pass.
EMOJI = re.compile(
    "[\U0001f000-\U0001faff\ufe0f\u20e3\u231a\u231b\u23e9-\u23ec\u23f0\u23f3\u25fd\u25fe\u2614\u2615"
    "\u2648-\u2653\u267f\u2693\u26a1\u26aa\u26ab\u26bd\u26be\u26c4\u26c5\u26ce\u26d4\u26ea\u26f2"
    "\u26f3\u26f5\u26fa\u26fd\u2705\u270a\u270b\u2728\u274c\u274e\u2753-\u2755\u2757\u2795-\u2797"
    "\u27b0\u27bf\u2b1b\u2b1c\u2b50\u2b55]"
)


def find_emoji(text: str) -> str | None:
    """The first character of ``text`` shown as an emoji, or None."""
    match = EMOJI.search(text)
    return match.group() if match else None


def sms_parts(text: str, signature: str = "") -> int:
    """The parts ``text`` is billed as, with the vendor's signature counted as ``【signature】``: up to 70
    characters is one part, a longer message is cut into parts of 67 (VENDORS.md "Rules that hold for
    all of them"; Ihuyi: "长短信按多条计费"). Characters are code points, as the vendors count "字":
    an emoji outside the BMP is one character here. A text that already carries ``【signature】`` at
    either end is not charged it twice. An empty message (and no signature) is 0 parts."""
    chars = len(text)
    if signature:
        mark = f"【{signature}】"
        if not (text.startswith(mark) or text.endswith(mark)):
            chars += len(mark)
    if chars <= SINGLE_PART_CHARS:
        return 1 if chars else 0
    return -(-chars // PART_CHARS)
