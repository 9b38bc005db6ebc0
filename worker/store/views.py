"""Read-only views for status screens and the API: recipients page by page, by state or phone, the
vendors a message actually went through, and when a recipient waiting in ``retry`` is tried next.

Nothing here writes. A message's recipients can be millions, so nothing here reads the whole hash in one
command: pages are HSCAN steps, and the one full pass (``vendor_counts``) streams them.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import cast

from worker.store.base import StoreBase
from worker.store.keys import Keys
from worker.store.records import SEP, Record

SCAN_STEP = 1000  # HSCAN COUNT: entries Redis looks at per round trip
PAGE_SCAN_BUDGET = 200_000  # entries one filtered page looks at before it answers (maybe short) with a cursor
_GLOB_SPECIAL = frozenset("*?[]\\")


@dataclass(frozen=True, slots=True)
class RecipientPage:
    """One page of a message's recipients. ``cursor`` 0 means the scan is complete; otherwise pass it
    back for the next page. A page may be shorter than asked (even empty) with a cursor still to
    follow: a state filter is applied to what each HSCAN step returns."""

    cursor: int
    recipients: list[tuple[str, Record]]


@dataclass(frozen=True, slots=True)
class NextAttempt:
    """When a recipient waiting in ``retry`` is tried next. ``exact``: the due time of a wait kept in
    Redis (``Keys.deferred``, released by beat); otherwise estimated from its chunk's lease (a Celery
    countdown is not readable: the lease is the due time plus ``lease_grace_s``)."""

    at_ms: int
    attempt: int
    exact: bool


def _glob(text: str) -> str:
    """``text`` matched literally in a Redis MATCH pattern."""
    return "".join(f"\\{ch}" if ch in _GLOB_SPECIAL else ch for ch in text)


class ViewsMixin(StoreBase):
    def recipients_page(
        self, message_id: str, cursor: int = 0, count: int = 100, states: Collection[str] | None = None
    ) -> RecipientPage:
        """About ``count`` recipients (phone, record) from ``cursor``, only those in ``states`` if given.
        HSCAN steps until ``count`` are found, the scan ends, or ``PAGE_SCAN_BUDGET`` entries were
        looked at; a step's matches are never split, so a page may hold a few more than ``count`` (a
        small hash comes back whole). Recipients may be seen twice if the hash grows while scanned
        (HSCAN's guarantee), never missed."""
        key = Keys.recipients(message_id)
        wanted = set(states) if states is not None else None
        found: list[tuple[str, Record]] = []
        looked = 0
        while True:
            cursor, batch = cast(
                "tuple[int, dict[str, str]]", self.r.hscan(key, cursor, count=max(count, SCAN_STEP // 10))
            )
            looked += len(batch)
            for phone, raw in batch.items():
                if wanted is None or raw.split(SEP, 1)[0] in wanted:
                    found.append((phone, Record.unpack(raw)))
            if cursor == 0 or len(found) >= count or looked >= PAGE_SCAN_BUDGET:
                return RecipientPage(int(cursor), found)

    def recipient(self, message_id: str, phone: str) -> Record | None:
        """One recipient's record (``phone`` normalized as planning does: ``providers.phones``)."""
        raw = cast("str | None", self.r.hget(Keys.recipients(message_id), phone))
        return Record.unpack(raw) if raw is not None else None

    def vendor_counts(self, message_id: str) -> dict[str, Counter[str]]:
        """Recipients per vendor and state: the vendors the message actually went through, failovers
        included (``""``: not routed yet, or refused before routing). One pass over the whole hash in
        HSCAN steps (a million recipients take seconds): for status screens, not the hot path."""
        tally: dict[str, Counter[str]] = {}
        for raw in self._raw_records(message_id):
            state, _, provider = raw.split(SEP, 3)[:3]
            tally.setdefault(provider, Counter())[state] += 1
        return tally

    def _raw_records(self, message_id: str) -> Iterable[str]:
        for _, raw in self.r.hscan_iter(Keys.recipients(message_id), count=SCAN_STEP):
            yield cast("str", raw)

    def next_attempts(self, message_id: str, phones: Collection[str]) -> dict[str, NextAttempt]:
        """When each of ``phones`` (recipients in ``retry``) is tried next, for those whose wait can be
        found: a wait kept in Redis (``Keys.deferred``, exact), else the lease of the open chunk that
        holds the phone (``Keys.leases`` and the chunk's job in ``Keys.plan``, estimated). Reads only the
        message's deferred entries and open chunks (a few round trips), never the whole plan."""
        wanted = set(phones)
        found: dict[str, NextAttempt] = {}
        if not wanted:
            return found
        pattern = f'*"{_glob(message_id)}"*'
        for member, score in self.r.zscan_iter(Keys.deferred, match=pattern, count=SCAN_STEP):
            args = json.loads(cast("str", member)).get("args") or []
            if len(args) < 3 or args[0] != message_id:
                continue
            attempt = int(args[3]) if len(args) > 3 else 0
            for phone in wanted.intersection(args[2].get("phones", ())):
                _keep_earliest(found, phone, NextAttempt(int(score), attempt, exact=True))
        open_chunks = self.r.zscan_iter(Keys.leases, match=f"{_glob(message_id)}|*", count=SCAN_STEP)
        leases = {cast("str", member).rpartition("|")[2]: int(score) for member, score in open_chunks}
        if not leases:
            return found
        numbers = list(leases)
        jobs = cast("list[str | None]", self.r.hmget(Keys.plan(message_id), numbers))
        grace_ms = int(self.settings.lease_grace_s * 1000)
        for number, raw in zip(numbers, jobs, strict=True):
            if raw is None:
                continue
            job = json.loads(raw)
            estimate = NextAttempt(leases[number] - grace_ms, int(job.get("attempt", 0)), exact=False)
            for phone in wanted.intersection(job.get("chunk", {}).get("phones", ())):
                if phone not in found or not found[phone].exact:
                    _keep_earliest(found, phone, estimate)
        return found


def _keep_earliest(found: dict[str, NextAttempt], phone: str, candidate: NextAttempt) -> None:
    current = found.get(phone)
    if current is None or candidate.at_ms < current.at_ms:
        found[phone] = candidate
