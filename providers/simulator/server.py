"""Run the simulator app with uvicorn in a background thread (tests, demo, benchmarks)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType

import uvicorn

from config.settings import Settings
from providers.simulator.app import build_app
from providers.simulator.core import SimConfig, SimState, SimulatedReset


class _DropSimulatedResets(logging.Filter):
    """A simulated reset is the point of the fault, not an error worth a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], SimulatedReset))


def quiet_uvicorn() -> None:
    logging.getLogger("uvicorn.error").addFilter(_DropSimulatedResets())


class SimulatorServer:
    """``with SimulatorServer(settings) as sim: sim.url, sim.state``. Binds 127.0.0.1 on a free port."""

    def __init__(
        self, settings: Settings, config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.state = SimState(config)
        self.app = build_app(settings, self.state)
        # IPPROTO_TCP spelled out: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose ``proto`` says
        # TCP, and a socket made with proto 0 passes that on to every connection it accepts. Left on, Nagle
        # holds each answer's last segment for the client's delayed ACK: about 40 ms a keep-alive call.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"
        config_ = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config_)
        self._thread = threading.Thread(target=self._run, name="simulator", daemon=True)

    def _run(self) -> None:
        self._server.run(sockets=[self._socket])

    def start(self) -> SimulatorServer:
        quiet_uvicorn()
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the simulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.app.state.pusher.stop()
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
