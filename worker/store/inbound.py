"""Inbound replies (MO) and the opt-out list: replies kept in a bounded stream, each recorded once and
published; a reply of an opt-out word adds its number to the one suppression set every later send of an
honouring kind checks (``lua/claim.lua``), an opt-in word removes it.

Keys: ``Keys.inbound`` (a stream, trimmed by age ``optout.inbound_keep_s`` and length
``optout.inbound_maxlen``), ``Keys.inbound_seen(digest)`` (a reply seen, for ``INBOUND_DEDUPE_S``),
``Keys.optout`` (the set) with ``Keys.optout_info`` beside it (phone -> when, through which vendor, how),
and ``Keys.inbound_inbox`` (fetched pages kept until applied, as for receipts). The opt-out set and its
info are bounded by the numbers opted out: they never expire, an opt-out holds until an opt-in.

Whatever a vendor sends is data: text is cut to its bound and made valid UTF-8 (a lone surrogate becomes
``?``), and a phone that is no number we could send to is stored as given but never opts anything out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import structlog

from providers.base import InboundMessage
from providers.phones import PhoneError, mask, normalize, shown
from worker.events import InboundEvent, OptoutEvent
from worker.replies import Intent, intent
from worker.store.base import StoreBase
from worker.store.keys import Keys
from worker.store.records import now_ms

log = structlog.get_logger(__name__)
INBOUND_DEDUPE_S = 6 * 3600  # a reply handed over again within this (a push retried, a page replayed)
MAX_CONTENT_CHARS = 4000  # a real reply is a few SMS parts; longer text is cut
MAX_FIELD_CHARS = 64  # provider, phone, vendor time, extension


@dataclass(frozen=True, slots=True)
class StoredReply:
    """A reply as stored: ``received_ms`` when we recorded it, ``sent_at`` the vendor's own time text."""

    entry_id: str
    provider: str
    phone: str
    content: str
    sent_at: str
    ext: str
    received_ms: int
    action: str


@dataclass(frozen=True, slots=True)
class OptoutInfo:
    """When (ms), through which vendor ("" from the CLI), how ("reply" or "cli") and with which word."""

    phone: str
    at_ms: int = 0
    provider: str = ""
    source: str = ""
    word: str = ""


def clean(value: object, limit: int = MAX_FIELD_CHARS) -> str:
    """``value`` as text of at most ``limit`` characters that encodes to UTF-8 (surrogates become ``?``)."""
    text = value if isinstance(value, str) else "" if value is None else str(value)
    return text[:limit].encode("utf-8", "replace").decode("utf-8")


def _phone(raw: str) -> str:
    """The canonical number, or "" when ``raw`` is no number we could send to."""
    try:
        return normalize(raw)
    except PhoneError:
        return ""


class InboundMixin(StoreBase):
    # -- recording replies ----------------------------------------------------------------------------

    def record_inbound(self, replies: Sequence[InboundMessage]) -> int:
        """Store, publish and act on each reply the first time it comes (one round trip). A reply comes
        again when the same vendor hands the same phone, text and vendor time within
        ``INBOUND_DEDUPE_S``. Returns how many were new."""
        if not replies:
            return 0
        now = now_ms()
        prepared = [self._prepared(reply, now) for reply in replies]
        keys = [key for key, _, _ in prepared]
        args = [arg for _, arg, _ in prepared]
        opt = self.settings.optout
        head = [
            str(now - opt.inbound_keep_s * 1000),
            str(opt.inbound_maxlen),
            str(now - self.ttl * 1000),
            str(INBOUND_DEDUPE_S),
        ]
        base = [Keys.inbound, Keys.events, Keys.optout, Keys.optout_info]
        result = self._script("inbound")(keys=base + keys, args=head + args)
        new = int(result[0])
        for (_, _, asked), flag in zip(prepared, result[1:], strict=True):
            if asked and flag == "1":
                what, phone = asked
                log.info(f"reply asks for {what.value}", provider=replies[0].provider, phone=mask(phone))
        if new:
            log.info("inbound replies recorded", new=new, given=len(replies), provider=replies[0].provider)
        return new

    def _prepared(
        self, reply: InboundMessage, now: int
    ) -> tuple[str, str, tuple[Intent, str] | None]:
        """The dedupe key of ``reply``, the JSON the script reads (see ``lua/inbound.lua``) and what it
        asks for of which phone (None: nothing)."""
        provider, given = clean(reply.provider), clean(reply.phone)
        content, sent_at, ext = clean(reply.content, MAX_CONTENT_CHARS), clean(reply.at), clean(reply.ext)
        phone = _phone(given)
        opt = self.settings.optout
        action = intent(content, opt.words, opt.optin_words) if phone else Intent.NONE
        if not phone:
            log.warning("reply from no number we could send to", provider=provider, phone=shown(given))
        shown_phone = phone or given
        digest = hashlib.sha256(
            json.dumps([provider, shown_phone, content, sent_at], ensure_ascii=False).encode()
        ).hexdigest()[:32]
        entry = {
            "provider": provider,
            "phone": shown_phone,
            "content": content,
            "sent_at": sent_at,
            "ext": ext,
            "received": str(now),
            "action": action.value,
        }
        event = InboundEvent(provider, shown_phone, content, sent_at, ext, action.value).encode(now)
        word = action.value and content.strip()[:MAX_FIELD_CHARS]
        info = OptoutInfo(phone, now, provider, "reply", word)
        added = "added" if action is Intent.OPTOUT else "removed"
        change = OptoutEvent(phone, added, provider, "reply", word).encode(now)
        data = {
            "e": _flat(entry),
            "v": _flat(event),
            "a": action.value,
            "p": phone,
            "i": _info_json(info),
            "o": _flat(change),
        }
        asked = (action, phone) if action is not Intent.NONE else None
        return Keys.inbound_seen(digest), json.dumps(data, ensure_ascii=False, separators=(",", ":")), asked

    # -- reading replies ------------------------------------------------------------------------------

    def inbound(self, since_ms: int = 0, phone: str = "", limit: int = 100) -> list[StoredReply]:
        """The newest ``limit`` replies recorded since ``since_ms`` (of ``phone`` only, if given), oldest
        first. Reads newest to oldest in pages of 1000 until it has ``limit`` or reaches ``since_ms``."""
        found: list[StoredReply] = []
        upper = "+"
        while len(found) < limit:
            rows = cast(
                "list[tuple[str, dict[str, str]]]",
                self.r.xrevrange(Keys.inbound, upper, str(since_ms), count=1000),
            )
            for entry_id, data in rows:
                if not phone or data.get("phone") == phone:
                    found.append(_stored(entry_id, data))
                    if len(found) >= limit:
                        break
            if len(rows) < 1000:
                break
            upper = "(" + rows[-1][0]
        return found[::-1]

    # -- the opt-out list -----------------------------------------------------------------------------

    def add_optout(self, phone: str, provider: str = "", source: str = "cli") -> bool:
        """Add ``phone`` (normalized) to the opt-out set. Returns False if it was there already."""
        info = OptoutInfo(phone, now_ms(), provider, source)
        event = OptoutEvent(phone, "added", provider, source)
        return self._optout("add", info, event)

    def remove_optout(self, phone: str, source: str = "cli") -> bool:
        """Take ``phone`` (normalized) off the opt-out set. Returns False if it was not there."""
        return self._optout("remove", OptoutInfo(phone), OptoutEvent(phone, "removed", "", source))

    def _optout(self, action: str, info: OptoutInfo, event: OptoutEvent) -> bool:
        now = now_ms()
        keys = [Keys.optout, Keys.optout_info, Keys.events]
        args = [action, info.phone, _info_json(info), str(now - self.ttl * 1000), *_flat(event.encode(now))]
        return bool(self._script("optout")(keys=keys, args=args))

    def optout(self, phone: str) -> OptoutInfo | None:
        """``phone``'s opt-out (when, how), or None if it is not opted out."""
        with self.r.pipeline(transaction=False) as pipe:
            pipe.sismember(Keys.optout, phone)
            pipe.hget(Keys.optout_info, phone)
            member, raw = pipe.execute()
        return _info(phone, raw) if member else None

    def optouts(self, count: int = 1000) -> list[OptoutInfo]:
        """Every opted-out number with its info (SSCAN in pages of ``count``), sorted by phone."""
        phones = sorted(cast("set[str]", set(self.r.sscan_iter(Keys.optout, count=count))))
        out: list[OptoutInfo] = []
        for start in range(0, len(phones), count):
            page = phones[start : start + count]
            raws = cast("list[str | None]", self.r.hmget(Keys.optout_info, page))
            out += [_info(phone, raw) for phone, raw in zip(page, raws, strict=True)]
        return out

    # -- fetched pages, kept until applied ------------------------------------------------------------

    def stash_inbound(self, provider: str, replies: Sequence[InboundMessage]) -> str:
        """Store a fetched page durably; returns its entry id (give it to ``inbound_applied``)."""
        page = json.dumps([_encode(reply) for reply in replies], separators=(",", ":"))
        return cast("str", self.r.xadd(Keys.inbound_inbox, {"provider": clean(provider), "page": page}))

    def inbound_applied(self, entry_id: str) -> None:
        self.r.xdel(Keys.inbound_inbox, entry_id)

    def stale_inbound_pages(
        self, older_than_ms: int, count: int = 100
    ) -> list[tuple[str, str, list[InboundMessage]]]:
        """Pages stored before ``older_than_ms`` and not applied (their poller died):
        ``(entry id, provider, replies)``."""
        rows = self.r.xrange(Keys.inbound_inbox, "-", str(older_than_ms), count=count)
        out = []
        for entry_id, data in cast("list[tuple[str, dict[str, str]]]", rows):
            replies = [InboundMessage(**item) for item in json.loads(data["page"])]
            out.append((entry_id, data["provider"], replies))
        return out


def _flat(mapping: dict[str, str]) -> list[str]:
    return [part for pair in mapping.items() for part in pair]


def _info_json(info: OptoutInfo) -> str:
    data = {"at": info.at_ms, "provider": info.provider, "source": info.source, "word": info.word}
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _info(phone: str, raw: str | None) -> OptoutInfo:
    """The info stored beside the set; an opt-out without one (written by hand) shows empty fields."""
    try:
        data: Any = json.loads(raw) if raw else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    at = data.get("at")
    return OptoutInfo(
        phone,
        at if isinstance(at, int) else 0,
        str(data.get("provider", "")),
        str(data.get("source", "")),
        str(data.get("word", "")),
    )


def _encode(reply: InboundMessage) -> dict[str, str]:
    return {
        "provider": clean(reply.provider),
        "phone": clean(reply.phone),
        "content": clean(reply.content, MAX_CONTENT_CHARS),
        "at": clean(reply.at),
        "ext": clean(reply.ext),
    }


def _stored(entry_id: str, data: dict[str, str]) -> StoredReply:
    received = data.get("received", "")
    return StoredReply(
        entry_id,
        data.get("provider", ""),
        data.get("phone", ""),
        data.get("content", ""),
        data.get("sent_at", ""),
        data.get("ext", ""),
        int(received) if received.isdigit() else 0,
        data.get("action", ""),
    )
