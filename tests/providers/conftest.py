"""Fixtures the provider tests share: settings with the demo credentials and one vendor simulator per module.

Named apart from ``tests/conftest.py``'s session ``simulator``/``sim``/``settings`` (those need Redis and
configure the Celery app; ``test_infocloud.py`` uses them): these need nothing but the simulator.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from config.settings import Settings, load_settings
from providers.simulator import DEMO_ENV
from providers.simulator.core import SimConfig
from providers.simulator.server import SimulatorServer


@pytest.fixture(scope="module")
def demo_settings() -> Settings:
    """Settings from ``DEMO_ENV`` alone: other ``SMSD_*`` variables (a session's test config) are hidden
    while they load, so the result does not depend on which tests ran before."""
    with pytest.MonkeyPatch.context() as mp:
        for key in [key for key in os.environ if key.startswith("SMSD_")]:
            mp.delenv(key)
        for key, value in DEMO_ENV.items():
            mp.setenv(key, value)
        return load_settings()


@pytest.fixture(scope="module")
def demo_sim_server(demo_settings: Settings) -> Iterator[SimulatorServer]:
    """The simulator of all five vendors on 127.0.0.1, accepting the demo credentials; one per module."""
    with SimulatorServer(demo_settings) as server:
        yield server


@pytest.fixture
def demo_sim(demo_sim_server: SimulatorServer) -> SimulatorServer:
    """The module's simulator with fresh counters, queues, faults and default behaviour."""
    demo_sim_server.state.reset()
    demo_sim_server.state.config = SimConfig()
    return demo_sim_server
