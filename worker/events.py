"""Events for applications: one Redis stream, ``smsd:events``, in one documented, versioned format.

Every change of recipient state is published as one entry per group of recipients of one message that
moved to the same state together (a vendor call's accepted phones, a page of receipts, ...)::

    v           "1" (this format's version)
    type        "state"
    at          ms since the epoch (UTC) when the change was recorded
    message_id  the send (send_sms's task id)
    state       the new state (worker.store.State)
    provider    the vendor, or "" before routing
    code        the vendor's code, or ours (LIMIT 1/30s, OPTOUT, AMBIGUOUS, NO_RECEIPT, INVALID, ...)
    why         what moved them: "call", "claim", "receipt", "sweep", "failover", "plan"
    count       how many recipients
    phones      their numbers, comma-separated (the application's own data; never logged)

A sweep (``tasks.poll``) that repaired something says so in an entry of ``type`` "sweep": ``action``
("requeued": a lost chunk queued again; "settled": recipients failed with NO_RECEIPT; "receipts_applied":
pages a dead poller left), ``message_id`` (may be empty) and ``count``.

The stream is bounded by age (``retention_s``) and by length (``events_maxlen``), both approximately.
Read it with ``XREAD`` or a consumer group (README "Events").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

VERSION = "1"


@dataclass(frozen=True, slots=True)
class StateEvent:
    """Recipients of one message that moved to ``state`` together."""

    message_id: str
    state: str
    provider: str
    phones: tuple[str, ...]
    code: str = ""
    why: str = ""

    def encode(self, at_ms: int) -> dict[str, str]:
        return {
            "v": VERSION,
            "type": "state",
            "at": str(at_ms),
            "message_id": self.message_id,
            "state": str(self.state),
            "provider": self.provider,
            "code": self.code,
            "why": self.why,
            "count": str(len(self.phones)),
            "phones": ",".join(self.phones),
        }

    @classmethod
    def decode(cls, fields: Mapping[str, str]) -> StateEvent:
        phones = tuple(p for p in fields.get("phones", "").split(",") if p)
        return cls(
            fields["message_id"],
            fields["state"],
            fields.get("provider", ""),
            phones,
            fields.get("code", ""),
            fields.get("why", ""),
        )


@dataclass(frozen=True, slots=True)
class SweepEvent:
    """A sweep repaired something: ``count`` recipients (or pages) of ``message_id``."""

    action: str
    message_id: str
    count: int

    def encode(self, at_ms: int) -> dict[str, str]:
        return {
            "v": VERSION,
            "type": "sweep",
            "at": str(at_ms),
            "action": self.action,
            "message_id": self.message_id,
            "count": str(self.count),
        }


Event = StateEvent | SweepEvent


def group(
    message_id: str, provider: str, changes: Iterable[tuple[str, str, str]], why: str
) -> list[StateEvent]:
    """One event per (state, code) from ``(phone, state, code)`` changes, in first-seen order."""
    groups: dict[tuple[str, str], list[str]] = {}
    for phone, state, code in changes:
        groups.setdefault((state, code), []).append(phone)
    return [
        StateEvent(message_id, state, provider, tuple(phones), code, why)
        for (state, code), phones in groups.items()
    ]
