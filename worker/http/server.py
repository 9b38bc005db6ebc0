"""Run the HTTP app with uvicorn in a background thread (the demo and the end-to-end tests; production runs
``smsdispatch api``)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn

from config.settings import Settings
from worker.http.app import build_app

START_TIMEOUT_S = 10.0


class ApiServer:
    """``with ApiServer(settings) as api: api.url``. Binds ``host``, on a free port unless ``port`` is set."""

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = build_app(settings)
        # IPPROTO_TCP spelled out so that asyncio turns Nagle off on accepted connections (see the
        # simulator's server): otherwise each keep-alive answer waits for the client's delayed ACK.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="api", daemon=True)

    def _run(self) -> None:
        self._server.run(sockets=[self._socket])

    def start(self) -> ApiServer:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the HTTP app did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
