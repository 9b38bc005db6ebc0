"""Settings of the HTTP API (``[api]`` in the TOML file, ``SMSD_API__*``): its keys."""

from __future__ import annotations

from config.sections import Section


class ApiSettings(Section):
    """Who may call ``/v1``: bearer API keys."""
