"""Webhooks end to end: a real worker sends through the simulator and delivers the send's state events
to an endpoint that is down at first; once it is up, every event arrives signed, once; the worker's log
says what failed and never holds the secret."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

from tests.conftest import WorkerProcess, wait_for
from tests.webhook_receiver import Receiver, stream_order
from worker.store import Keys

pytestmark = pytest.mark.e2e
SECRET = "whsec-e2e-0123456789abcdef"
ORDER = {"template": "order_shipped", "params": {"order": "A1", "tracking": "SF1"}}


def _group_exists(r: redis.Redis) -> bool:
    return bool(r.exists(Keys.events)) and any(g["name"] == "webhooks" for g in r.xinfo_groups(Keys.events))


def test_a_worker_delivers_a_sends_events_once_the_endpoint_is_up(
    start_worker: Callable[..., WorkerProcess], sim: Any, r: redis.Redis, settings: Any
) -> None:
    from tasks import send_sms
    from tasks.webhooks import deliver_webhooks

    receiver = Receiver(SECRET)  # not listening yet: calls are refused
    worker = start_worker(
        "hooks", queues="sms.notify,sms.poll", SMSD_WEBHOOKS__URL=receiver.url,
        SMSD_WEBHOOKS__SECRET=SECRET, SMSD_WEBHOOKS__BATCH_SIZE="2",
        SMSD_WEBHOOKS__BACKOFF_BASE_S="0.1", SMSD_WEBHOOKS__BACKOFF_CAP_S="0.5",
    )
    try:
        deliver_webhooks.delay()  # beat's first tick makes the group
        wait_for(lambda: _group_exists(r), timeout=15)
        phones = ["13800000001", "13800000002", "13800000003"]
        message_id = send_sms.delay(phones, **ORDER).get(timeout=30)["message_id"]

        def refused() -> bool:
            deliver_webhooks.delay()
            return "webhook delivery failed" in worker.log.read_text()

        wait_for(refused, timeout=15, interval=0.3)
        receiver.start()

        def submitted() -> int:
            deliver_webhooks.delay()
            return sum(int(e["count"]) for e in list(receiver.accepted)
                       if e.get("message_id") == message_id and e["state"] == "submitted")

        wait_for(lambda: submitted() == len(phones), timeout=30, interval=0.3)
    finally:
        receiver.stop()
    ids = [event["id"] for event in receiver.accepted]
    assert len(ids) == len(set(ids)) and receiver.forged == 0
    assert ids == sorted(ids, key=stream_order)
    log = worker.log.read_text()
    assert "Connection refused" in log and SECRET not in log
