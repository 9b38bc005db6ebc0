"""The phones a dry run has accepted so far, to find duplicates without Redis and without a Python set
(about 100 bytes a phone): an open-addressing table of 8-byte ints, at most half full, so a million
phones take 16 to 32 MB."""

from __future__ import annotations

from array import array

_MIX = 0x9E3779B97F4A7C15  # Fibonacci hashing: consecutive numbers spread over the table
_INTERNATIONAL = 10**16  # above every 15-digit E.164 number: +1 3800138000 is not 13800138000


def _key(phone: str) -> int:
    """A normalized phone as a positive int (mainland: its 11 digits; E.164: its digits + 10**16)."""
    return int(phone[1:]) + _INTERNATIONAL if phone.startswith("+") else int(phone)


class PhoneSet:
    """A set of normalized phones (``providers.phones.normalize``'s forms)."""

    def __init__(self, capacity: int = 1 << 14) -> None:
        self._slots = array("q", [0]) * capacity
        self._mask = capacity - 1
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, phone: str) -> bool:
        """Add ``phone``; True if it was not in the set yet."""
        key = _key(phone)
        i = self._slot(key)
        if self._slots[i] == key:
            return False
        self._slots[i] = key
        self._size += 1
        if self._size * 2 > self._mask:
            self._grow()
        return True

    def _slot(self, key: int) -> int:
        """Where ``key`` is, or the empty slot where it goes (linear probing)."""
        slots, mask = self._slots, self._mask
        i = ((key * _MIX) >> 24) & mask
        while (slot := slots[i]) != 0 and slot != key:
            i = (i + 1) & mask
        return i

    def _grow(self) -> None:
        old = self._slots
        self._slots = array("q", [0]) * (2 * len(old))
        self._mask = len(self._slots) - 1
        for key in old:
            if key:
                self._slots[self._slot(key)] = key
