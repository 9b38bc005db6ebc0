"""Tasks of the return path: webhooks. ``deliver_webhooks`` runs on beat every ``webhooks.interval_s``
on ``sms.poll`` (never beside a send), POSTs the events stream's batches to ``webhooks.url`` and leaves
a failed batch in flight for the next run after its backoff (``worker/webhooks.py``)."""

from __future__ import annotations

from dataclasses import asdict

from config.settings import get_settings
from worker.app import app
from worker.store import Store, get_redis
from worker.webhooks import deliver

EXPIRES_S = 60  # a tick that waited this long in the queue is dropped: a later one delivers instead


@app.task(name="tasks.webhooks.deliver_webhooks", expires=EXPIRES_S)
def deliver_webhooks() -> dict[str, int | str]:
    """One delivery run (a no-op when ``webhooks.url`` is empty, another run holds the lock, or the
    backoff is not over). Returns what it did: ``delivered``, ``batches``, ``dropped``, ``stopped``."""
    settings = get_settings()
    if not settings.webhooks.enabled:
        return {"delivered": 0, "batches": 0, "dropped": 0, "stopped": "off"}
    return asdict(deliver(Store(get_redis(settings), settings), settings.webhooks))
