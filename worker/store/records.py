"""A recipient's state and its record: the only code (with the Lua beside it) that knows the format.

A record is ``state, updated (ms), provider, vendor id, code, text[, fee]`` joined by the unit separator
(\\x1f): one short string per recipient in the message's hash. While a recipient is ``sending`` the
vendor-id slot holds the claim token of the run that claimed it (see ``lua/claim.lua``).

**Live counters.** Beside the records, ``Keys.counts(message_id)`` (a hash) holds, per state value, the
number of recipients in that state NOW, plus ``parts`` and ``chunks_done``, so that nobody reads a
million-recipient hash to draw a progress bar (``Store.counts``, ``Store.progress``). They stay equal to a
recount of the records only because every Lua script that writes a record keeps them, in the same call.
A new script that writes records must follow the same rule (see ``lua/transition.lua``):

- for each record written: the old state's field -1 (none when the phone had no record), the new one +1;
  a write that is refused or changes nothing (a replay, a state it may not leave) counts nothing;
- sum the moves in a Lua table, then one ``HINCRBY`` per field that moved (not one per phone);
- ``parts``: + the new record's fee (7th field) or else 1 when a recipient reaches the vendor, i.e. moves
  from none/queued/retry/sending into submitted or delivered (or a receipt settles one still sending);
- ``EXPIRE`` the counters hash with the recipients hash's TTL;
- ``chunks_done``: +1 when a planned chunk's lease ends for good, only if the ZREM removed it
  (``lua/end_lease.lua``, ``Store.end_lease``); a chunk set aside to be reopened (``done=False``) is not.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

SEP = "\x1f"
MAX_TEXT = 200


class State(enum.StrEnum):
    """A recipient's state. "Accepted" is send_sms's answer (validated and planned); from then on a
    recipient is recorded ``queued``, or dispatched at once for a one-chunk send."""

    QUEUED = "queued"
    RETRY = "retry"  # queued again after a failed attempt; its limits are already charged
    SENDING = "sending"  # claimed for a vendor call in progress
    SUBMITTED = "submitted"  # the vendor took it (or may have: code AMBIGUOUS); a receipt settles it
    DELIVERED = "delivered"
    FAILED = "failed"
    REJECTED = "rejected"
    RATE_LIMITED = "rate_limited"
    OPTED_OUT = "opted_out"
    CANCELLED = "cancelled"  # its campaign was cancelled before the recipient was claimed


NO_RECORD = "none"  # in a transition's allowed states: the recipient has no record yet (lua/transition.lua)
FINAL = frozenset(
    {State.DELIVERED, State.FAILED, State.REJECTED, State.RATE_LIMITED, State.OPTED_OUT, State.CANCELLED}
)
UNSETTLED = frozenset({State.QUEUED, State.RETRY, State.SENDING})


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Record:
    """One recipient's stored state."""

    state: State
    updated_ms: int
    provider: str = ""
    vendor_id: str = ""
    code: str = ""
    text: str = ""
    fee: int | None = None  # billed parts: the vendor's word (Tencent), else counted at planning

    def pack(self) -> str:
        """The stored form. Trailing empty fields are left out: most records carry no text, and no fee
        before the vendor took them."""
        fields = [self.state.value, str(self.updated_ms), self.provider, self.vendor_id, self.code]
        fields.append(self.text.replace(SEP, " ")[:MAX_TEXT])
        if self.fee is not None:
            fields.append(str(self.fee))
        return SEP.join(fields)

    @classmethod
    def unpack(cls, raw: str) -> Record:
        parts = raw.split(SEP)
        parts += [""] * (7 - len(parts))
        fee = int(parts[6]) if parts[6].isdigit() else None
        updated = int(parts[1]) if parts[1].isdigit() else 0
        return cls(State(parts[0]), updated, parts[2], parts[3], parts[4], parts[5], fee)


def state_of(raw: str) -> str:
    """The state of a stored record, without unpacking the rest."""
    return raw.split(SEP, 1)[0]
