"""``GET /metrics``: Prometheus metrics (prometheus-client, multiprocess mode)."""

from __future__ import annotations

from fastapi import APIRouter

from config.settings import Settings


def router(settings: Settings) -> APIRouter:
    return APIRouter()
