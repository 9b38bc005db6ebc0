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
pages a dead poller left; "inbound_applied": the same for inbound pages, by ``tasks.inbound``),
``message_id`` (may be empty) and ``count``.

An inbound reply (MO), pulled or pushed, is an entry of ``type`` "inbound": ``provider``, ``phone``
(normalized when it is a number we could send to, else as the vendor gave it), ``content`` (the reply's
text, at most 4,000 characters), ``sent_at`` (the vendor's own time text, as given), ``ext`` (the
extension or access code it came in on) and ``action`` ("optout", "optin" or "": what the reply's words
ask for). A reply the vendor hands over twice is published once (``worker/store/inbound.py``).

A number added to or removed from the opt-out list is an entry of ``type`` "optout": ``phone``,
``action`` ("added" or "removed"), ``provider`` (the vendor the reply came through; "" from the CLI),
``source`` ("reply" or "cli") and ``word`` (the reply's words, normalized, or "").

A vendor's balance under its ``balance_threshold``, or at zero, is an entry of ``type`` "balance":
``provider``, ``item`` (the vendor's category, e.g. 行业短信), ``value`` (in the vendor's unit),
``threshold`` and ``action`` ("low": under the threshold; "empty": no credit left, the vendor is
benched until a poll shows credit; "credit": credit again, the bench is lifted).

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


@dataclass(frozen=True, slots=True)
class InboundEvent:
    """A reply (MO) from ``phone`` through ``provider``; ``action``: "optout", "optin" or ""."""

    provider: str
    phone: str
    content: str
    sent_at: str = ""
    ext: str = ""
    action: str = ""

    def encode(self, at_ms: int) -> dict[str, str]:
        return {
            "v": VERSION,
            "type": "inbound",
            "at": str(at_ms),
            "provider": self.provider,
            "phone": self.phone,
            "content": self.content,
            "sent_at": self.sent_at,
            "ext": self.ext,
            "action": self.action,
        }


@dataclass(frozen=True, slots=True)
class OptoutEvent:
    """``phone`` was ``action`` ("added" or "removed") to the opt-out list, by a reply or the CLI."""

    phone: str
    action: str
    provider: str = ""
    source: str = "reply"
    word: str = ""

    def encode(self, at_ms: int) -> dict[str, str]:
        return {
            "v": VERSION,
            "type": "optout",
            "at": str(at_ms),
            "phone": self.phone,
            "action": self.action,
            "provider": self.provider,
            "source": self.source,
            "word": self.word,
        }


@dataclass(frozen=True, slots=True)
class BalanceEvent:
    """A vendor's balance needs attention: ``action`` "low", "empty" or "credit" (module docstring)."""

    provider: str
    item: str
    value: float
    threshold: float
    action: str = "low"

    def encode(self, at_ms: int) -> dict[str, str]:
        return {
            "v": VERSION,
            "type": "balance",
            "at": str(at_ms),
            "provider": self.provider,
            "item": self.item,
            "value": f"{self.value:g}",
            "threshold": f"{self.threshold:g}",
            "action": self.action,
        }


Event = StateEvent | SweepEvent | InboundEvent | OptoutEvent | BalanceEvent


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
