"""Settings of bulk campaigns (``[campaign]`` in the TOML file, ``SMSD_CAMPAIGN__*``). Times in seconds."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from config.sections import Interval, Section

MAX_CAMPAIGN_ROWS = 10_000_000  # chunk numbers (page * 1000 + j) stay below the failover ones (10**9)
_SPAN = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


def check_span(value: str) -> str:
    """``HH:MM-HH:MM`` (24-hour clock; the end may be before the start: the span crosses midnight)."""
    text = value.strip()
    if not _SPAN.match(text):
        raise ValueError(f"{value[:40]!r} is not a span of the day like 08:00-21:00")
    if text[:5] == text[6:]:
        raise ValueError(f"{text!r} starts and ends at the same time")
    return text


class CampaignSettings(Section):
    """How campaigns are read, paced and held (quiet hours)."""

    max_rows: int = Field(
        MAX_CAMPAIGN_ROWS, ge=1, le=MAX_CAMPAIGN_ROWS, description="rows a campaign file may hold"
    )
    tick_s: Interval = Field(1.0, description="beat feeds running campaigns this often")
    lookahead_s: float = Field(
        2.0, ge=0.5, le=60, description="seconds of a vendor's rate kept queued for campaigns"
    )
    quiet_hours: str = Field(
        "21:00-08:00", description="marketing campaigns are held in this span of the day (empty: never)"
    )
    timezone: str = Field("Asia/Shanghai", description="the zone of quiet hours and campaign windows")
    rejects_shown: int = Field(1000, ge=0, le=100_000, description="refused rows kept in an answer")

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, value: str) -> str:
        return check_span(value) if value.strip() else ""

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value[:60]!r} is not a time zone (e.g. Asia/Shanghai)") from None
        return value
