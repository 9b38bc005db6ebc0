"""End to end: an opt-out reply received through one vendor stops the next marketing send through another.

A real Celery worker (subprocess), the embedded Redis and the simulator over HTTP. The reply is queued at
the simulator's Xiaorui (``POST /_sim/inbound``) and pulled by ``tasks.inbound.poll_inbound`` on the
worker; the sends are routed to Infocloud (the test routing sends every kind there).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
import redis

from providers.simulator.server import SimulatorServer
from tests.conftest import WorkerProcess, wait_for
from worker.store import Keys, State, Store

pytestmark = pytest.mark.e2e
PHONE = "13812345678"
OTHER = "13812345679"
ORDER = {"template": "order_shipped", "params": {"order": "A1", "tracking": "SF1"}}


def test_an_opt_out_through_xiaorui_stops_marketing_through_infocloud_but_not_otps(  # type: ignore[no-untyped-def]
    start_worker: Callable[..., WorkerProcess], sim: SimulatorServer, r: redis.Redis, settings
) -> None:
    from tasks import send_sms
    from tasks.inbound import poll_inbound

    start_worker("optout", concurrency=2)
    store = Store(r, settings)
    queued = httpx.post(
        f"{sim.url}/_sim/inbound", json={"vendor": "xiaorui", "mobile": PHONE, "content": "ＴＤ！"}
    )
    assert queued.status_code == 200
    poll_inbound.apply_async(("xiaorui",))
    wait_for(lambda: bool(r.sismember(Keys.optout, PHONE)), timeout=30)
    (reply,) = store.inbound()
    assert (reply.provider, reply.phone, reply.action) == ("xiaorui", PHONE, "optout")

    marketing = send_sms.delay([PHONE, OTHER], kind="marketing", **ORDER).get(timeout=30)
    wait_for(lambda: store.counts(marketing["message_id"]).get(State.OPTED_OUT, 0) == 1, timeout=30)
    record = store.records(marketing["message_id"])[PHONE]
    assert (record.state, record.code) == (State.OPTED_OUT, "OPTOUT")

    otp = send_sms.delay(PHONE, template="login_code", params={"code": "4321"}, kind="otp").get(timeout=30)
    sent = {State.SUBMITTED, State.DELIVERED}
    wait_for(
        lambda: (
            store.records(otp["message_id"]).get(PHONE) is not None
            and store.records(otp["message_id"])[PHONE].state in sent
        ),
        timeout=30,
    )
    wait_for(lambda: sim.state.counters("infocloud").received.get(OTHER) == 1, timeout=30)
    received = sim.state.counters("infocloud").received
    assert received.get(PHONE) == 1  # the OTP only: the marketing message never reached the vendor
    assert received.get(OTHER) == 1  # the other recipient of the marketing send got it
