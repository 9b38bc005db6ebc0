"""Settings of the return path: vendor pushes, inbound replies and opt-outs, vendor health, webhooks.

Each section is one field of ``Settings`` (``SMSD_OPTOUT__WORDS``, ``[webhooks]`` in the TOML file, ...).
Times are in seconds.
"""

from __future__ import annotations

from pydantic import Field, SecretStr

from config.sections import DAY_S, Interval, Section, Timeout, TtlSeconds

DEFAULT_OPTOUT_WORDS = ("退订", "TD", "T", "N", "STOP", "UNSUBSCRIBE", "取消", "退出")
DEFAULT_OPTIN_WORDS = ("START", "订阅", "恢复")


class PushSettings(Section):
    """The receivers of vendor pushes (``smsdispatch api``)."""

    max_body_bytes: int = Field(1_048_576, ge=1024, le=64 * 1_048_576, description="larger bodies get 413")
    apply_interval_s: Interval = Field(1.0, description="beat applies stored pushes this often")
    keep_s: TtlSeconds = Field(7 * DAY_S, description="how long stored and failed push bodies are kept")


class OptoutSettings(Section):
    """Replies that opt a number out of (or back into) later sends. Words match whole replies, case and
    width insensitive, whitespace and punctuation ignored."""

    words: tuple[str, ...] = DEFAULT_OPTOUT_WORDS
    optin_words: tuple[str, ...] = DEFAULT_OPTIN_WORDS
    kinds: tuple[str, ...] = Field(("notify", "marketing"), description="kinds that honour opt-outs")
    inbound_keep_s: TtlSeconds = Field(30 * DAY_S, description="how long inbound replies are kept")
    inbound_maxlen: int = Field(
        1_000_000, ge=1, le=10**9, description="approximate cap of the inbound stream"
    )


class BreakerSettings(Section):
    """A circuit breaker per vendor, shared by every worker in Redis."""

    failures: int = Field(5, ge=1, le=10_000, description="certain failures in a row that open it")
    probe_interval_s: Interval = Field(3.0, description="while open, at most one call this often")
    failover_kinds: tuple[str, ...] = Field(("otp",), description="kinds sent by the next vendor at once")


class WebhookSettings(Section):
    """Event batches POSTed to the application, signed with HMAC-SHA256 (README "Webhooks")."""

    url: str = Field("", description="empty: no webhooks")
    secret: SecretStr = SecretStr("")
    batch_size: int = Field(100, ge=1, le=10_000)
    timeout_s: Timeout = 5.0
    interval_s: Interval = Field(1.0, description="beat delivers this often")
    give_up_after_s: TtlSeconds = Field(DAY_S, description="a batch still failing after this is dropped")
