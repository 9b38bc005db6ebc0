"""The ``/v1`` API: messages and campaigns, behind bearer API keys."""

from __future__ import annotations

from fastapi import APIRouter

from config.settings import Settings


def router(settings: Settings) -> APIRouter:
    return APIRouter(prefix="/v1")
