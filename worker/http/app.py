"""The HTTP app (FastAPI on uvicorn, ``smsdispatch api``): vendor push receivers under
``/push/<vendor>/receipts`` and ``/push/<vendor>/inbound`` (``receivers.py``) and ``GET /healthz``.

Every push costs one Redis round trip on an asyncio client and no Celery publish, so the app answers
within Infocloud's 1 s at hundreds of pushes a second (``benchmarks/push.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
import redis.asyncio
from fastapi import FastAPI
from starlette.responses import JSONResponse

from config.settings import Settings
from worker.http import api_v1, health, metrics
from worker.http.receivers import Gate, push_routes, receiver
from worker.http.spool import PushSpool, spool_folder
from worker.store.inbox import PushInbox


def redis_client(settings: Settings) -> redis.asyncio.Redis:
    """The app's asyncio Redis client; short time-outs, so a Redis outage answers 503 rather than hangs."""
    timeout = min(settings.redis_socket_timeout_s, 2.0)
    return redis.asyncio.Redis.from_url(
        settings.effective_redis_url,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
    )


def build_app(settings: Settings, client: redis.asyncio.Redis | None = None) -> FastAPI:
    """The app for ``settings``: a receiver per push a registered vendor offers, and ``/healthz``."""
    client = client or redis_client(settings)

    inbox = PushInbox(client, settings.push.keep_s)
    spool = PushSpool(spool_folder(settings.push.spool_dir), inbox)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        draining = asyncio.create_task(spool.run())
        yield
        draining.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await draining
        await client.aclose()

    app = FastAPI(title="smsdispatch", lifespan=lifespan)
    gates: dict[str, Gate] = {}
    for path, vendor, kind in push_routes(settings):
        gate = gates.setdefault(vendor, Gate.of(vendor, settings))
        endpoint = receiver(gate, kind, inbox, spool, settings.push.max_body_bytes)
        app.add_route(path, endpoint, methods=["POST"], name=f"push-{vendor}-{kind.value}")

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """200 when Redis answers a PING and the broker a connection, else 503 naming which failed."""
        return await health.answer(inbox, settings)

    app.include_router(api_v1.router(settings))
    app.include_router(metrics.router(settings))
    app.state.inbox = inbox
    app.state.spool = spool
    app.state.gates = gates
    return app
