"""The ``/v1`` API: messages and campaigns, behind bearer API keys (``worker/http/auth.py``).

Every route checks the key before reading the body, validates the body with pydantic and answers a
refused field with a 422 naming it (``worker/http/problems.py``). Endpoints that talk to Redis or the
broker are plain functions, run in FastAPI's thread pool, on a Redis client of their own with short
time-outs: an outage is a 503 within seconds, not a hung request. See README "HTTP API".
"""

from __future__ import annotations

from fastapi import APIRouter

from config.settings import Settings
from worker.http import campaigns_v1, messages_v1
from worker.http.auth import Keyring, guarded_route
from worker.store import Store
from worker.store.client import short_client

REDIS_TIMEOUT_S = 2.0
OUTAGE_S = 2.0  # how long a request waits for Redis to come back before its 503


def api_store(settings: Settings) -> Store:
    """The store of the API's thread pool: its own client, short time-outs and retries."""
    return Store(short_client(settings, REDIS_TIMEOUT_S, OUTAGE_S), settings)


def router(settings: Settings) -> APIRouter:
    keyring = Keyring(settings.api.keys)
    store = api_store(settings)
    # Each router gets its route class (include_router keeps the included routes' own).
    api = APIRouter(prefix="/v1")
    api.include_router(messages_v1.router(settings, store, guarded_route(keyring)))
    api.include_router(campaigns_v1.router(settings, store, guarded_route(keyring, full_only="campaigns")))
    return api
