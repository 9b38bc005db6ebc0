"""What a reply (MO) asks for: an opt-out, an opt-in, or nothing. A plain function of the text and the
configured words (``settings.optout.words`` and ``optin_words``), so the rule can be tested without Redis.

A reply matches a word when its whole text, folded, equals the folded word. Folding: Unicode NFKC (full-
width ``ＴＤ`` becomes ``TD``, ``！`` becomes ``!``), case folded, then every whitespace, punctuation,
control and format character removed (``" Stop "``, ``"td!"``, ``"T.D."`` and ``"退订。"`` all match).
Symbols and emoji are kept, and nothing else is ignored: ``"TD please call me"`` is a reply, not an
opt-out. A word that folds to nothing (``"!!"``) matches nothing, so an empty reply never opts out.
"""

from __future__ import annotations

import enum
import functools
import unicodedata
from collections.abc import Iterable

MAX_FOLD_CHARS = 64  # no configured word is longer; a longer reply is folded no further than this
_DROPPED = ("P", "Z", "C")  # Unicode categories: punctuation, separators, control/format/unassigned


class Intent(enum.StrEnum):
    """What a reply asks for."""

    OPTOUT = "optout"
    OPTIN = "optin"
    NONE = ""


def fold(text: str) -> str:
    """``text`` in the form words are compared in (see the module docstring)."""
    normalized = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in normalized if not unicodedata.category(ch).startswith(_DROPPED))


@functools.lru_cache(maxsize=32)
def _folded(words: tuple[str, ...]) -> frozenset[str]:
    return frozenset(f for f in map(fold, words) if f)


def intent(content: str, optout_words: Iterable[str], optin_words: Iterable[str]) -> Intent:
    """What ``content`` asks for. A word in both lists counts as an opt-out (the safe reading)."""
    stripped = content.strip()
    if len(stripped) > 4 * MAX_FOLD_CHARS:  # far longer than any word, even with spaces between
        return Intent.NONE
    folded = fold(stripped)
    if not folded or len(folded) > MAX_FOLD_CHARS:
        return Intent.NONE
    if folded in _folded(tuple(optout_words)):
        return Intent.OPTOUT
    if folded in _folded(tuple(optin_words)):
        return Intent.OPTIN
    return Intent.NONE
