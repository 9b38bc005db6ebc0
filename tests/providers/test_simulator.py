"""The simulator's own promises, seen over HTTP: each injected fault does what ``FaultPlan`` says, and the
embedded server (``SimulatorServer``) answers keep-alive calls without Nagle's delay."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from config.settings import Settings
from providers.base import RenderedTemplate, SendRequest
from providers.errors import AmbiguousError
from providers.infocloud import InfocloudProvider
from providers.simulator.core import FaultPlan
from providers.simulator.server import SimulatorServer
from tests.providers.helpers import sim_provider

PHONE = "13900000001"
TEMPLATE = RenderedTemplate("675871161745170000", ("123456",))
HANG_S = 0.3


@pytest.mark.parametrize("after_accept", [False, True], ids=["before-accept", "after-accept"])
def test_a_time_out_fault_is_received_once_after_accept_and_never_before(
    demo_sim: SimulatorServer, demo_settings: Settings, after_accept: bool
) -> None:
    plan = FaultPlan(timeout_rate=1.0, hang_s=HANG_S, after_accept=after_accept)
    demo_sim.state.set_faults("infocloud", plan)
    provider = sim_provider(InfocloudProvider, demo_sim, demo_settings, read_timeout_s=0.05)

    with pytest.raises(AmbiguousError):
        provider.send(SendRequest((PHONE,), TEMPLATE))

    counters = demo_sim.state.counters("infocloud")
    time.sleep(HANG_S + 0.3)  # well past the hang: whatever the vendor does with the call, it has done
    assert counters.received == ({PHONE: 1} if after_accept else {})
    assert (counters.requests, counters.dropped) == (1, 1)


def test_a_client_that_outwaits_a_before_accept_time_out_gets_no_answer(
    demo_sim: SimulatorServer, demo_settings: Settings
) -> None:
    demo_sim.state.set_faults("infocloud", FaultPlan(timeout_rate=1.0, hang_s=0.1))
    provider = sim_provider(InfocloudProvider, demo_sim, demo_settings, read_timeout_s=5.0)

    with pytest.raises(AmbiguousError):  # the connection closes unanswered: never an answer to act on
        provider.send(SendRequest((PHONE,), TEMPLATE))

    assert demo_sim.state.counters("infocloud").received == {}


def test_the_embedded_server_turns_nagle_off_on_every_connection(demo_sim: SimulatorServer) -> None:
    # With Nagle on, each keep-alive answer's last segment waits for the client's delayed ACK (~40 ms).
    with httpx.Client(base_url=demo_sim.url) as client:
        for _ in range(3):
            client.get("/_sim/stats").raise_for_status()
        connections = list(demo_sim._server.server_state.connections)
        assert connections, "no open connection to inspect"
        for connection in connections:
            sock = connection.transport.get_extra_info("socket")  # type: ignore[union-attr]
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_keep_alive_calls_to_the_embedded_server_do_not_stall(demo_sim: SimulatorServer) -> None:
    with httpx.Client(base_url=demo_sim.url) as client:
        client.get("/_sim/stats")
        started = time.perf_counter()
        for _ in range(20):
            client.get("/_sim/stats")
        per_call_ms = (time.perf_counter() - started) * 1000 / 20
    assert per_call_ms < 25, f"{per_call_ms:.1f} ms a call: Nagle's delayed-ACK stall is back (about 40 ms)"
