"""All five vendors through send_sms with a real worker, Redis and the simulator: batch sizes measured at
the simulator, receipts applied where the vendor offers a pull."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import WorkerProcess, wait_for
from worker.store import State, Store

pytestmark = pytest.mark.e2e
LOGIN = {"template": "login_code", "params": {"code": "2468"}}
TEXT = {"content": "【示例】您的快递已到驿站，取件码8866。"}


@pytest.mark.parametrize(
    ("provider", "request_", "n", "calls", "receipts"),
    [
        ("infocloud", LOGIN, 2300, [1000, 1000, 300], True),
        ("xiaorui", TEXT, 1200, [500, 500, 200], True),
        ("tencent", LOGIN, 4, [1, 1, 1, 1], True),
        ("deepfinch", LOGIN, 3, [1, 1, 1], False),
        ("ihuyi", TEXT, 3, [1, 1, 1], False),
    ],
)
def test_each_vendor_sends_in_its_batch_size(  # type: ignore[no-untyped-def]
    start_worker: Callable[..., WorkerProcess], sim, r, settings, provider, request_, n, calls, receipts
) -> None:
    from tasks import send_sms
    from tasks.poll import poll_receipts

    start_worker(f"vendors-{provider}")
    phones = [f"159{i:08d}" for i in range(n)]
    result = send_sms.delay(phones, provider=provider, **request_).get(timeout=30)
    assert result["accepted"] == n and result["providers"] == [provider]
    store = Store(r, settings)
    settled = State.DELIVERED if receipts else State.SUBMITTED

    def done() -> bool:
        if receipts:
            poll_receipts(provider)
        return store.counts(result["message_id"]).get(settled, 0) == n

    wait_for(done, timeout=60, interval=0.2)
    counters = sim.state.counters(provider)
    assert sorted(counters.call_sizes, reverse=True) == calls
    assert counters.received == dict.fromkeys(phones, 1)
