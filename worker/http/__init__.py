"""The HTTP app of smsdispatch (``smsdispatch api``): vendor push receivers and ``/healthz``; see
``app.py``."""

from __future__ import annotations

from worker.http.app import build_app

__all__ = ["build_app"]
