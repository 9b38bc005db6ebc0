"""What every settings section is built from: the base of all sections, the base of a vendor's section,
and bounded types for the numbers Redis, Celery and httpx must be able to hold.

Kept apart from ``config/settings.py`` (which builds ``Settings`` from the registered vendors) so that a
vendor module can define its own section without importing the registry it is part of. Every float
refuses ``inf`` and ``NaN``; every duration has an upper bound, so a typo fails at start, not at run time.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

MAX_TTL_S = 2**31 - 1
"""The longest retention or TTL in s that Redis EXPIRE, Celery and kombu all take (about 68 years)."""
DAY_S = 86400
_HOST = re.compile(r"[A-Za-z0-9._~\-]+|[0-9A-Fa-f:.]+", re.ASCII)  # a name, IPv4, or IPv6 (httpx strips [])

TtlSeconds = Annotated[int, Field(gt=0, le=MAX_TTL_S)]
"""A retention, TTL or expiry in whole seconds that Redis accepts."""
Timeout = Annotated[float, Field(gt=0, le=600)]
"""A network time-out in s (at most 10 minutes)."""
Interval = Annotated[float, Field(ge=0.1, le=DAY_S)]
"""How often something periodic runs, in s (0.1 s to a day)."""


class Section(BaseModel):
    """The base of every section: unknown keys refused, frozen, no ``inf``/``NaN`` floats."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class VendorSettings(Section):
    """What every vendor section has. Times are in seconds. Every field has a default, so a vendor that
    is not configured still loads (and is skipped by routing until its ``credential_fields`` are set)."""

    base_url: str = Field(description="the vendor's API root (point it at the simulator to try things out)")
    connect_timeout_s: Timeout = Field(3.0, description="a call not connected by then was not sent (retried)")
    read_timeout_s: Timeout = Field(
        10.0, description="a call not answered by then may have been sent: recorded ambiguous, never resent"
    )
    requests_per_second: float = Field(
        50.0, ge=0.01, le=1_000_000, description="shared budget across all workers"
    )
    batch_size: int = Field(1, ge=1, le=10_000, description="recipients per vendor call at most")
    receipt_poll_interval_s: Interval = Field(60.0, description="beat pulls receipts this often")
    query_per_minute: int = Field(
        60, ge=1, le=1_000_000, description="receipt queries a minute, across all workers"
    )
    receipt_page_size: int = Field(100, ge=1, le=100_000, description="a full page means: ask again at once")
    settle_s: TtlSeconds = Field(
        72 * 3600, description="a submitted recipient with no receipt this long is failed NO_RECEIPT"
    )
    inbound_poll_interval_s: Interval = Field(60.0, description="beat pulls inbound replies this often")
    balance_poll_interval_s: Interval = Field(300.0, description="beat reads the balance this often")
    balance_threshold: float = Field(0.0, ge=0, description="a balance below this logs an error (0: never)")
    push_token: SecretStr = Field(
        SecretStr(""), description="secret in the push URL (`/push/<vendor>/...?token=`)"
    )
    push_allow_ips: tuple[str, ...] = Field(
        (), description="addresses or networks allowed to push (empty: any)"
    )
    signature: str = Field(
        "", max_length=20, description="the approved signature, counted in billed parts (Tencent: `sign`)"
    )

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value)

    @field_validator("push_allow_ips")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Each entry an address or a CIDR network (``203.0.113.7``, ``203.0.113.0/24``, ``2001:db8::/32``);
        refused at start otherwise, naming the setting."""
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network (e.g. 203.0.113.0/24)") from None
        return tuple(entry.strip() for entry in value)

    def configured(self) -> bool:
        """True when every credential field is set (non-empty)."""
        return all(
            getattr(self, name).get_secret_value()
            if isinstance(getattr(self, name), SecretStr)
            else bool(getattr(self, name))
            for name in self.credential_fields()
        )

    def credential_fields(self) -> tuple[str, ...]:
        return ()

    def billed_signature(self) -> str:
        """The signature the vendor puts on each message, which ``providers.text.sms_parts`` counts: a
        vendor whose API takes it as a field of its own (Tencent's ``sign``) names it there."""
        own = getattr(self, "sign", "")
        return own if isinstance(own, str) and own else self.signature


class RetrySettings(Section):
    """Backoff for transient vendor failures: full jitter over ``min(cap, base * 2**attempt)`` seconds."""

    max_attempts: int = Field(6, ge=1, le=100, description="tries of a transient failure before it is failed")
    backoff_base_s: float = Field(1.0, gt=0, le=3600, description="the wait ceiling after the first failure")
    backoff_cap_s: float = Field(60.0, gt=0, le=DAY_S, description="the longest wait ceiling between tries")
    rate_limited_wait_s: float = Field(
        30.0, gt=0, le=DAY_S, description="minimum wait after a too-frequent code"
    )


def check_http_url(value: str) -> str:
    """``value`` without its trailing ``/`` if it is an http(s) URL with a host httpx can call; else
    ValueError."""
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    try:
        url = httpx.URL(value)
        port = urlsplit(value).port
    except httpx.InvalidURL as exc:
        raise ValueError(f"not a URL httpx can call: {exc}") from None
    except ValueError:  # urlsplit: a port that is not a number in 0..65535
        raise ValueError("has a port that is not a number in 1..65535") from None
    if not _HOST.fullmatch(url.raw_host.decode("ascii", "replace")):
        raise ValueError("has no host, or one with characters a host name cannot hold")
    if port == 0:
        raise ValueError("has a port that is not a number in 1..65535")
    return value.rstrip("/")
