"""Settings of the return path: vendor pushes, inbound replies and opt-outs, vendor health, webhooks.

Each section is one field of ``Settings`` (``SMSD_OPTOUT__WORDS``, ``[webhooks]`` in the TOML file, ...).
Times are in seconds.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator, model_validator

from config.sections import DAY_S, Interval, Section, Timeout, TtlSeconds, check_http_url

DEFAULT_OPTOUT_WORDS = ("退订", "TD", "T", "N", "STOP", "UNSUBSCRIBE", "取消", "退出")
DEFAULT_OPTIN_WORDS = ("START", "订阅", "恢复")
MIN_SECRET_CHARS = 16  # a webhook secret shorter than this is a typo or a guessable one


class PushSettings(Section):
    """The receivers of vendor pushes (``smsdispatch api``)."""

    max_body_bytes: int = Field(1_048_576, ge=1024, le=64 * 1_048_576, description="larger bodies get 413")
    apply_interval_s: Interval = Field(1.0, description="beat applies stored pushes this often")
    keep_s: TtlSeconds = Field(7 * DAY_S, description="how long stored and failed push bodies are kept")
    spool_dir: str = Field(
        "",
        max_length=4096,
        description="pushes received while Redis is down wait here (empty: <tmp>/smsdispatch-push-spool)",
    )


class OptoutSettings(Section):
    """Replies that opt a number out of (or back into) later sends. Words match whole replies, case and
    width insensitive, whitespace and punctuation ignored."""

    words: tuple[str, ...] = Field(
        DEFAULT_OPTOUT_WORDS, description="a reply of one of these opts its number out"
    )
    optin_words: tuple[str, ...] = Field(
        DEFAULT_OPTIN_WORDS, description="a reply of one of these opts it back in (a word in both: out)"
    )
    kinds: tuple[str, ...] = Field(("notify", "marketing"), description="kinds that honour opt-outs")
    inbound_keep_s: TtlSeconds = Field(30 * DAY_S, description="how long inbound replies are kept")
    inbound_maxlen: int = Field(
        1_000_000, ge=1, le=10**9, description="approximate cap of the inbound stream"
    )

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """A misspelt kind would silently send to numbers that opted out: refused at start."""
        from config.settings import KINDS  # settings imports this module; KINDS is defined by now

        unknown = [kind for kind in value if kind not in KINDS]
        if unknown:
            raise ValueError(f"unknown kind {unknown[0]!r} (expected some of {', '.join(KINDS)})")
        return value


class BreakerSettings(Section):
    """A circuit breaker per vendor, shared by every worker in Redis."""

    failures: int = Field(5, ge=1, le=10_000, description="certain failures in a row that open it")
    probe_interval_s: Interval = Field(3.0, description="while open, at most one call this often")
    failover_kinds: tuple[str, ...] = Field(("otp",), description="kinds sent by the next vendor at once")


class WebhookSettings(Section):
    """Event batches POSTed to the application, signed with HMAC-SHA256 (README "Webhooks"). A failed
    batch is retried after ``min(backoff_cap_s, backoff_base_s * 2**(attempts - 1))`` s; events still
    undelivered ``give_up_after_s`` after they were published are dropped (and kept in a dead-letter note)."""

    url: str = Field("", description="http(s) URL the batches are POSTed to; empty: no webhooks")
    secret: SecretStr = Field(SecretStr(""), description="HMAC-SHA256 key; required when url is set")
    batch_size: int = Field(100, ge=1, le=10_000, description="events per POST at most")
    timeout_s: Timeout = Field(5.0, description="connect, read and write time-out of one POST")
    interval_s: Interval = Field(1.0, description="beat delivers this often")
    backoff_base_s: float = Field(1.0, gt=0, le=DAY_S, description="wait after the first failure")
    backoff_cap_s: float = Field(300.0, gt=0, le=DAY_S, description="longest wait between attempts")
    give_up_after_s: TtlSeconds = Field(DAY_S, description="a batch still failing after this is dropped")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value) if value else value

    @model_validator(mode="after")
    def _secret_with_url(self) -> WebhookSettings:
        if self.url and len(self.secret.get_secret_value()) < MIN_SECRET_CHARS:
            raise ValueError(f"url is set: secret must be too, at least {MIN_SECRET_CHARS} characters")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.url)
