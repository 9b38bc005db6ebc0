"""Tasks of the return path: inbound (work in progress)."""

from __future__ import annotations
