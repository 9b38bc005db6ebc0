"""A vendor that refuses whole calls (auth, balance) is benched and its recipients go to the next vendor."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from providers.simulator.core import FaultPlan
from tests.conftest import WorkerProcess, wait_for
from worker.store import State, Store

pytestmark = pytest.mark.e2e
ROUTING = '{"otp": ["infocloud", "tencent"], "notify": ["infocloud", "xiaorui"], "marketing": ["infocloud"]}'


def test_out_of_balance_fails_over_to_the_next_vendor(  # type: ignore[no-untyped-def]
    start_worker: Callable[..., WorkerProcess], sim, r, settings
) -> None:
    from tasks import send_sms
    from tasks.poll import poll_receipts

    start_worker("failover", SMSD_ROUTING=ROUTING)
    sim.state.set_faults("infocloud", FaultPlan(codes=("40002",), code_rate=1.0))
    phones = [f"158{i:08d}" for i in range(1200)]
    bulk = send_sms.delay(phones, template="order_shipped", params={"order": "A1", "tracking": "SF1"}).get(
        timeout=30
    )
    otp = send_sms.delay("15899990000", template="login_code", params={"code": "4321"}, kind="otp").get(
        timeout=30
    )
    store = Store(r, settings)

    def delivered() -> bool:
        poll_receipts("xiaorui")
        poll_receipts("tencent")
        return (
            store.counts(bulk["message_id"]).get(State.DELIVERED, 0) == 1200
            and store.counts(otp["message_id"]).get(State.DELIVERED, 0) == 1
        )

    wait_for(delivered, timeout=60, interval=0.2)
    assert sim.state.counters("infocloud").received == {}
    assert sorted(sim.state.counters("xiaorui").call_sizes, reverse=True) == [500, 500, 200]
    assert sim.state.counters("xiaorui").received == dict.fromkeys(phones, 1)
    # the OTP's per-phone limit (1 per 30 s) was charged once, by the refused attempt, and did not block it
    assert sim.state.counters("tencent").received == {"15899990000": 1}
    assert store.benches(["infocloud"])["infocloud"]["code"] == "40002"
