"""A vendor goes down under a real worker: its breaker opens, OTPs reach the next vendor of the route at once,
at most one probe per interval reaches the dead vendor, and a bulk send waits and resumes when it is back,
with no recipient lost or sent twice (simulator counters). Infocloud sits behind a ``ToggleProxy``."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator

import pytest

from providers.simulator.server import SimulatorServer
from tests.conftest import WorkerProcess, wait_for
from tests.toggle_proxy import ToggleProxy
from worker.store import State, Store

pytestmark = pytest.mark.e2e
ROUTING = '{"otp": ["infocloud", "tencent"], "notify": ["infocloud"], "marketing": ["infocloud"]}'
PROBE_S = 2.0
BULK = 3000
OTPS = 8


@pytest.fixture
def proxy(sim: SimulatorServer) -> Iterator[ToggleProxy]:
    front = ToggleProxy(sim.host, sim.port)
    front.set("up")
    yield front
    front.close()


def test_a_dead_vendor_opens_the_breaker_otps_fail_over_and_bulk_resumes(  # type: ignore[no-untyped-def]
    start_worker: Callable[..., WorkerProcess], sim, r, settings, proxy: ToggleProxy
) -> None:
    from tasks import send_sms
    from tasks.poll import poll_receipts

    start_worker(
        "breaker", concurrency=3, SMSD_ROUTING=ROUTING, SMSD_INFOCLOUD__BASE_URL=proxy.url,
        SMSD_BREAKER__PROBE_INTERVAL_S=str(PROBE_S), SMSD_BREAKER__FAILURES="3",
    )
    store = Store(r, settings)
    proxy.set("refuse")  # connection refused from now on
    phones = [f"158{i:08d}" for i in range(BULK)]
    bulk = send_sms.delay(phones, template="order_shipped", params={"order": "A1", "tracking": "SF1"}).get(
        timeout=30
    )
    assert bulk["accepted"] == BULK

    latencies = []
    for i in range(OTPS):
        phone = f"1377777{i:04d}"
        started = time.monotonic()
        send_sms.delay(phone, template="login_code", params={"code": "4321"}, kind="otp")
        wait_for(lambda p=phone: sim.state.counters("tencent").received[p] == 1, timeout=10, interval=0.02)
        latencies.append(time.monotonic() - started)
        time.sleep(0.3)
    print(f"OTP failover latency: max {max(latencies):.2f} s, all {[round(x, 2) for x in latencies]}")
    assert max(latencies) < 5.0
    assert store.vendor_health(["infocloud"])[0].breaker_open

    proxy.set("fail")  # answering 503 now: every call that reaches it is counted
    window_s = 4 * PROBE_S
    time.sleep(window_s)
    probes = list(proxy.failed_at)
    print(f"probes in {window_s:.0f} s at a {PROBE_S} s interval: {len(probes)}, gaps "
          f"{[round(b - a, 2) for a, b in itertools.pairwise(probes)]}")
    assert 1 <= len(probes) <= window_s / PROBE_S + 1
    assert all(b - a >= PROBE_S * 0.9 for a, b in itertools.pairwise(probes))
    assert store.counts(bulk["message_id"]).get(State.FAILED, 0) == 0  # waiting, nobody failed

    proxy.set("up")
    back = time.monotonic()
    wait_for(lambda: sum(sim.state.counters("infocloud").received.values()) == BULK, timeout=30, interval=0.1)
    print(f"bulk resumed and sent {BULK} within {time.monotonic() - back:.1f} s of the vendor coming back")
    received = sim.state.counters("infocloud").received
    assert received == dict.fromkeys(phones, 1)  # every recipient once, none of the OTPs

    def delivered() -> bool:
        poll_receipts("infocloud")
        return store.counts(bulk["message_id"]).get(State.DELIVERED, 0) == BULK

    wait_for(delivered, timeout=30, interval=0.3)
    assert sim.state.counters("tencent").received == {f"1377777{i:04d}": 1 for i in range(OTPS)}
    assert not store.vendor_health(["infocloud"])[0].breaker_open
