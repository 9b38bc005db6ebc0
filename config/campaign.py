"""Settings of bulk campaigns (``[campaign]`` in the TOML file, ``SMSD_CAMPAIGN__*``). Times in seconds."""

from __future__ import annotations

from config.sections import Section


class CampaignSettings(Section):
    """How campaigns are read, paced and held (quiet hours)."""
