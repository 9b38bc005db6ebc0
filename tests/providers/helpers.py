"""Plain helpers the provider tests share; the fixtures (settings, simulator) are in ``conftest.py``.

``Recorder`` plays a vendor behind an ``httpx.MockTransport`` (``mock_client``) and keeps what it was sent;
``sim_provider`` builds an adapter from the demo settings and points it at the vendor simulator.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qs

import httpx

from config.settings import Settings
from providers.base import Provider
from providers.simulator.server import SimulatorServer

Handler = Callable[[httpx.Request], httpx.Response]
P = TypeVar("P", bound=Provider)


class Recorder:
    """A MockTransport handler answering each of ``bodies`` in turn (the last one repeats) and keeping the
    requests. A text body goes out with ``status`` and ``headers`` (JSON by default), a Response as it is."""

    def __init__(
        self, *bodies: str | httpx.Response, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> None:
        self.bodies = bodies
        self.status = status
        self.headers = {"content-type": "application/json", **(headers or {})}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body = self.bodies[min(len(self.requests), len(self.bodies)) - 1]
        if isinstance(body, httpx.Response):
            return body
        return httpx.Response(self.status, text=body, headers=self.headers)

    def form(self, index: int = -1) -> dict[str, str]:
        """The form-encoded body of request ``index``, one value a field."""
        parsed = parse_qs(self.requests[index].content.decode(), keep_blank_values=True)
        return {key: values[0] for key, values in parsed.items()}

    def json_body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)

    def query(self, index: int = -1) -> dict[str, str]:
        """The query string of request ``index``, one value a field."""
        return {key: values[0] for key, values in parse_qs(self.requests[index].url.query.decode()).items()}


def raising(exc: Exception) -> Handler:
    """A MockTransport handler failing every request with ``exc`` (a transport failure)."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


def mock_client(handler: Handler) -> httpx.Client:
    """A client whose every request is answered by ``handler`` instead of the network."""
    return httpx.Client(transport=httpx.MockTransport(handler))


def sim_client(read_timeout_s: float = 5.0, **kwargs: Any) -> httpx.Client:
    """A real client: 5 s to connect, write and get a connection, ``read_timeout_s`` to read an answer."""
    return httpx.Client(timeout=httpx.Timeout(5.0, read=read_timeout_s), **kwargs)


def sim_provider(
    cls: type[P],
    sim: SimulatorServer,
    settings: Settings,
    read_timeout_s: float = 5.0,
    clock: Callable[[], float] | None = None,
    **update: Any,
) -> P:
    """``cls`` built from its section of ``settings`` (with ``update``), pointed at ``sim`` over a real
    client. ``clock`` goes to the adapters that take one (Tencent, Ihuyi); by default they read the time."""
    section = settings.vendor(cls.name).model_copy(update={"base_url": sim.url, **update})
    extra = {} if clock is None else {"clock": clock}
    # Every adapter takes (its settings section, client); the base class only the client.
    return cls(section, sim_client(read_timeout_s), **extra)  # type: ignore[call-arg]
