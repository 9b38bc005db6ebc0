"""``GET /healthz``: Redis (the store) answers a PING and the broker accepts a connection, each within
``TIMEOUT_S``. Both are the same Redis URL today; the broker is checked through kombu with the workers'
own URL and transport, so it stays right if the broker moves (RabbitMQ). The answer names what failed
(``{"redis": "ok", "broker": "unreachable (OperationalError)"}``, 503) and never a URL or password.
"""

from __future__ import annotations

import asyncio

import redis
from kombu import Connection
from kombu.exceptions import KombuError
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from config.settings import Settings
from worker.app import broker_url, transport_options
from worker.store.inbox import PushInbox

TIMEOUT_S = 2.0
OK = "ok"


def broker_state(settings: Settings) -> str:
    """``ok``, or why a connection to the broker could not be opened (one try, short time-outs)."""
    short = {"socket_timeout": TIMEOUT_S, "socket_connect_timeout": TIMEOUT_S}
    options = {**transport_options(settings), **short}
    connection = Connection(broker_url(settings), connect_timeout=TIMEOUT_S, transport_options=options)
    try:
        connection.ensure_connection(max_retries=0)
    except (KombuError, OSError, redis.RedisError) as exc:
        return f"unreachable ({type(exc).__name__})"
    finally:
        connection.release()
    return OK


async def redis_state(inbox: PushInbox) -> str:
    try:
        await asyncio.wait_for(inbox.ping(), TIMEOUT_S)
    except (redis.RedisError, OSError, TimeoutError) as exc:
        return f"unreachable ({type(exc).__name__})"
    return OK


async def answer(inbox: PushInbox, settings: Settings) -> JSONResponse:
    """200 with each part ``ok``, else 503 naming the part that failed."""
    store, broker = await asyncio.gather(redis_state(inbox), run_in_threadpool(broker_state, settings))
    states = {"redis": store, "broker": broker}
    return JSONResponse(states, status_code=200 if all(s == OK for s in states.values()) else 503)
