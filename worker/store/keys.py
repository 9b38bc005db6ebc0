"""Every Redis key smsdispatch writes, built in one place (see README "Redis keys")."""

from __future__ import annotations

PREFIX = "smsd"


class Keys:
    """Key builders. Per-message keys share the ``smsd:msg:<id>`` stem and expire with ``retention_s``."""

    optout = f"{PREFIX}:optout"  # the one suppression set (phones); bounded by the numbers opted out
    optout_info = f"{PREFIX}:optout:info"  # phone -> JSON {at, provider, source, word}, beside the set
    inbound = f"{PREFIX}:inbound"  # replies (MO), trimmed by age and length
    inbound_inbox = f"{PREFIX}:inbox:inbound"  # fetched inbound pages, kept until applied
    events = f"{PREFIX}:events"
    deferred = f"{PREFIX}:deferred"  # long retry waits, released by beat (member: JSON entry, score: due ms)
    leases = f"{PREFIX}:leases"  # open chunks (member: "<message id>|<chunk>", score: lease end ms)
    settle = f"{PREFIX}:settle"  # submitted recipients' deadlines ("<message id>|<provider>", ms)
    receipt_inbox = f"{PREFIX}:inbox:receipts"  # fetched receipt pages, kept until applied
    receipt_inbox_group = "apply"
    push_dead = f"{PREFIX}:inbox:push:dead"  # pushed bodies that failed parsing, trimmed by age (push.keep_s)
    push_group = "apply"  # the appliers' consumer group on each push stream
    webhooks = f"{PREFIX}:webhooks"  # webhook delivery state: a hash of a few fields
    webhooks_lock = f"{PREFIX}:webhooks:lock"  # one delivery run at a time (expires)
    webhooks_dead = f"{PREFIX}:webhooks:dead"  # batches given up on (a capped list that expires)
    webhooks_group = "webhooks"  # the webhooks' consumer group on ``events``
    campaigns = f"{PREFIX}:campaigns"  # every campaign (member: id, score: created ms); trimmed by retention
    campaigns_active = f"{PREFIX}:campaigns:active"  # campaigns the runner looks at (not yet done)

    @staticmethod
    def message(message_id: str) -> str:
        return f"{PREFIX}:msg:{message_id}"

    @staticmethod
    def recipients(message_id: str) -> str:
        return f"{PREFIX}:msg:{message_id}:r"

    @staticmethod
    def plan(message_id: str) -> str:
        """The message's chunks (chunk number -> JSON), so that a lost task can be queued again."""
        return f"{PREFIX}:msg:{message_id}:plan"

    @staticmethod
    def counts(message_id: str) -> str:
        """The message's live counters: recipients per state, billed parts, chunks done (kept by the Lua
        scripts that change records)."""
        return f"{PREFIX}:msg:{message_id}:n"

    @staticmethod
    def campaign(campaign_id: str) -> str:
        """A campaign's meta and control (a hash); its recipients are message ``campaign_id``'s."""
        return f"{PREFIX}:camp:{campaign_id}"

    @staticmethod
    def campaign_pages(campaign_id: str) -> str:
        """The campaign's recipients not fed yet: a list of pages (JSON, up to 1000 rows each)."""
        return f"{PREFIX}:camp:{campaign_id}:pages"

    @staticmethod
    def campaign_lock(campaign_id: str) -> str:
        """The feed lock of one campaign (one tick feeds it at a time; expires)."""
        return f"{PREFIX}:camp:{campaign_id}:lock"

    @staticmethod
    def campaign_held(campaign_id: str) -> str:
        """Chunk tasks that reached a worker while the campaign was paused (a list of JSON jobs)."""
        return f"{PREFIX}:camp:{campaign_id}:held"

    @staticmethod
    def vendor_batch(provider: str, batch_id: str) -> str:
        return f"{PREFIX}:vid:{provider}:{batch_id}"

    @staticmethod
    def idempotency(key: str) -> str:
        return f"{PREFIX}:idem:{key}"

    @staticmethod
    def limit(kind: str, window_s: int, bucket: int) -> str:
        return f"{PREFIX}:lim:{kind}:{window_s}:{bucket}"

    @staticmethod
    def budget(provider: str) -> str:
        return f"{PREFIX}:budget:{provider}"

    @staticmethod
    def window(name: str) -> str:
        return f"{PREFIX}:window:{name}"

    @staticmethod
    def health(provider: str) -> str:
        return f"{PREFIX}:health:{provider}"

    @staticmethod
    def inbound_seen(digest: str) -> str:
        """A reply already recorded (expires after ``INBOUND_DEDUPE_S``)."""
        return f"{PREFIX}:inbound:seen:{digest}"

    @staticmethod
    def push_inbox(kind: str) -> str:
        """Pushed bodies of ``kind`` (receipts, inbound), stored raw until applied; trimmed by age."""
        return f"{PREFIX}:inbox:push:{kind}"

    @staticmethod
    def unmatched(provider: str) -> str:
        return f"{PREFIX}:unmatched:{provider}"

    # -- vendor health (worker/store/vendors.py): one of each per vendor, so bounded --------------------

    @staticmethod
    def breaker(provider: str) -> str:
        """The vendor's circuit breaker (a hash, see ``lua/breaker.lua``)."""
        return f"{PREFIX}:breaker:{provider}"

    @staticmethod
    def vendor_ok(provider: str) -> str:
        """``<ms>:<token>`` of the vendor's last successful call (it also closes the breaker)."""
        return f"{PREFIX}:vendor:{provider}:ok"

    @staticmethod
    def polled(provider: str) -> str:
        """The vendor's last polls: what was pulled -> ``<ms>|ok`` or ``<ms>|<error>``."""
        return f"{PREFIX}:vendor:{provider}:polled"

    @staticmethod
    def balance(provider: str) -> str:
        """The vendor's balances: item -> ``<value>|<ms read>``."""
        return f"{PREFIX}:balance:{provider}"
