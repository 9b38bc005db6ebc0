"""Tasks of the return path: webhooks (work in progress)."""

from __future__ import annotations
