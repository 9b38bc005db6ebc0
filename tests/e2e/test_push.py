"""End to end by push: a real worker sends, the simulator pushes its receipts over real HTTP to the HTTP app
(uvicorn in a thread) in each vendor's own format, and ``apply_pushes`` settles the right recipients:
Infocloud (by our bid), Ihuyi (by smsid) and Tencent (by sid). A push received twice changes nothing
twice."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import httpx
import pytest
import redis
from pydantic import SecretStr

from config.settings import Settings
from providers.simulator.server import SimulatorServer
from tests.conftest import WorkerProcess, wait_for
from worker.http.server import ApiServer
from worker.store import Keys, State, Store

pytestmark = pytest.mark.e2e
TOKENS = {"ihuyi": "ihuyi-push-token", "tencent": "tencent-push-token"}


@pytest.fixture
def api(settings: Settings, r: redis.Redis) -> Iterator[ApiServer]:
    updates = {
        vendor: settings.vendor(vendor).model_copy(update={"push_token": SecretStr(token)})
        for vendor, token in TOKENS.items()
    }
    with ApiServer(settings.model_copy(update=updates)) as server:
        yield server


@pytest.fixture
def pushing_sim(sim: SimulatorServer, api: ApiServer) -> SimulatorServer:
    urls = dict.fromkeys(("infocloud", "ihuyi", "tencent"), api.url)
    config = replace(sim.state.config, push_urls=urls, push_tokens=dict(TOKENS), receipt_delay_s=0.3)
    sim.state.config = config
    return sim


@pytest.fixture
def worker(start_worker: Callable[..., WorkerProcess]) -> WorkerProcess:
    return start_worker("push", concurrency=2)


def test_receipts_by_push_reach_the_right_recipients(  # type: ignore[no-untyped-def]
    worker, pushing_sim: SimulatorServer, r: redis.Redis, settings: Settings
) -> None:
    from tasks import send_sms
    from tasks.push import apply_pushes

    pushing_sim.state.config = replace(pushing_sim.state.config, undelivered_share=0.2)
    sends = {
        "infocloud": send_sms.delay([f"139{i:08d}" for i in range(40)], template="order_shipped",
                                    params={"order": "A1", "tracking": "SF1"}),
        "ihuyi": send_sms.delay([f"135{i:08d}" for i in range(4)], content="您的快递已到驿站。",
                                provider="ihuyi"),
        "tencent": send_sms.delay("13600000001", template="login_code", params={"code": "1234"},
                                  provider="tencent"),
    }
    ids = {vendor: result.get(timeout=30)["message_id"] for vendor, result in sends.items()}
    store = Store(r, settings)
    expected = {"infocloud": 40, "ihuyi": 4, "tencent": 1}

    def settled() -> bool:
        apply_pushes()
        return all(
            store.counts(ids[v])[State.DELIVERED] + store.counts(ids[v])[State.FAILED] == n
            for v, n in expected.items()
        )

    wait_for(settled, timeout=60, interval=0.2)
    for vendor in expected:
        counters = pushing_sim.state.counters(vendor)
        assert counters.pushed >= 1 and counters.push_failed == 0, vendor
        records = store.records(ids[vendor])
        assert set(records) == set(counters.received)  # each recipient settled, and only the ones sent
        assert {rec.provider for rec in records.values()} == {vendor}
        failed = {phone for phone, rec in records.items() if rec.state == State.FAILED}
        assert all(records[phone].code in ("UNDELIV", "FAIL") for phone in failed)
    assert pushing_sim.state.stats()["vendors"]["infocloud"]["pending_receipts"] == 0


def test_a_receipt_pushed_twice_changes_nothing_twice(  # type: ignore[no-untyped-def]
    worker, pushing_sim: SimulatorServer, api: ApiServer, r: redis.Redis, settings: Settings
) -> None:
    from tasks import send_sms
    from tasks.push import apply_pushes

    message_id = send_sms.delay("13500000099", content="取件码8866。", provider="ihuyi").get(timeout=30)[
        "message_id"
    ]
    store = Store(r, settings)
    wait_for(lambda: bool(apply_pushes()) and store.counts(message_id)[State.DELIVERED] == 1, timeout=30)
    record = store.records(message_id)["13500000099"]
    events = r.xlen(Keys.events)
    form = {"code": "0", "msg": "UNDELIV", "mobilephone": "13500000099", "smsid": record.vendor_id,
            "report_time": "2024-05-01 12:00:00"}
    for _ in range(2):  # a late, contradicting receipt, twice, and one for a message nobody sent
        answer = httpx.post(f"{api.url}/push/ihuyi/receipts?token={TOKENS['ihuyi']}", data=form)
        assert answer.text == "success"
    httpx.post(f"{api.url}/push/ihuyi/receipts?token={TOKENS['ihuyi']}", data={**form, "smsid": "404"})
    assert apply_pushes()["pushes"] == 3
    assert store.records(message_id)["13500000099"].state == State.DELIVERED
    assert r.xlen(Keys.events) == events


def test_replies_by_push_are_recorded_and_opt_out(  # type: ignore[no-untyped-def]
    pushing_sim: SimulatorServer, r: redis.Redis, settings: Settings
) -> None:
    from tasks.push import apply_pushes

    store = Store(r, settings)
    replies = {"infocloud": "13900000077", "ihuyi": "13500000077", "tencent": "13600000077"}
    for vendor, phone in replies.items():  # Infocloud's MO is push-only; Ihuyi's too
        pushing_sim.state.add_inbound(vendor, {"phone": phone, "content": "退订"})
    wait_for(lambda: bool(apply_pushes()) and len(store.inbound()) == 3, timeout=30, interval=0.2)
    assert {(reply.provider, reply.phone, reply.content) for reply in store.inbound()} == {
        (vendor, phone, "退订") for vendor, phone in replies.items()
    }
    assert all(store.optout(phone) is not None for phone in replies.values())
