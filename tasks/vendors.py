"""Tasks of the return path: vendors (work in progress)."""

from __future__ import annotations
