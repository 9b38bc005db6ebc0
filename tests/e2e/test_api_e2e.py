"""End to end over HTTP: the app on uvicorn (``ApiServer``), a real Celery worker and the simulator. A
message posted to ``/v1/messages`` by a client that knows nothing of Python is sent by the worker and
read back delivered from ``GET /v1/messages/{id}``; the same post again (same Idempotency-Key) sends
nothing new."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
import redis

from config.api import ApiKey, ApiSettings
from config.settings import Settings
from providers.simulator.server import SimulatorServer
from tests.conftest import WorkerProcess, wait_for
from worker.http.server import ApiServer

pytestmark = pytest.mark.e2e
KEY = "e2e-key-0123456789abcdef"
OTP = {"to": "13800138000", "template": "login_code", "params": {"code": "123456"}, "kind": "otp"}


@pytest.fixture
def api(settings: Settings, r: redis.Redis) -> Iterator[ApiServer]:
    keyed = settings.model_copy(update={"api": ApiSettings(keys=(ApiKey(name="e2e", key=KEY),))})
    with ApiServer(keyed) as server:
        yield server


def test_a_message_posted_over_http_is_delivered(
    api: ApiServer, start_worker: Callable[..., WorkerProcess], sim: SimulatorServer
) -> None:
    from tasks.poll import poll_receipts

    start_worker("api", queues="sms.otp,sms.notify")
    headers = {"Authorization": f"Bearer {KEY}", "Idempotency-Key": "e2e-1"}
    with httpx.Client(base_url=api.url, headers=headers, timeout=10) as client:
        assert client.get("/healthz").json() == {"redis": "ok", "broker": "ok"}
        posted = client.post("/v1/messages", json=OTP)
        assert posted.status_code == 202, posted.text
        location = posted.headers["location"]

        def delivered() -> bool:
            poll_receipts("infocloud")
            return bool(client.get(location).json()["counts"]["delivered"] == 1)

        wait_for(delivered, timeout=30, interval=0.2)
        status = client.get(location, params={"unmask": "true"}).json()
        (recipient,) = status["recipients"]
        assert recipient["phone"] == "13800138000" and recipient["provider"] == "infocloud"
        assert status["planned"] is True and status["kind"] == "otp"

        again = client.post("/v1/messages", json=OTP)
        assert again.status_code == 200 and again.json()["duplicate"] is True
        assert again.json()["message_id"] == posted.json()["message_id"]
        assert again.json()["result"]["accepted"] == 1
    assert sim.state.counters("infocloud").received == {"13800138000": 1}
