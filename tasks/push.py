"""Tasks of the return path: push (work in progress)."""

from __future__ import annotations
