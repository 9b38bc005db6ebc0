"""Fault injection for end-to-end tests: Redis outages at a chosen step, and a tap on the simulator.

``redis_outage(server, seconds, mode, when=...)`` breaks the embedded Redis from a background thread once
``when`` fires, for ``seconds``, then brings it back; leaving the ``with`` block waits for it to end::

    with redis_outage(embedded_redis, 5, "shutdown", when=after_commands(embedded_redis, PUSH_BULK, 6)):
        message_id = send_sms.delay(phones, **ORDER).id      # planning is cut after 5 chunks were queued

Modes: ``pause`` (SIGSTOP: clients hang, nothing is lost), ``shutdown`` (a clean stop: clients get
connection errors; the append-only file keeps the data), ``kill`` (SIGKILL, then started again).

``when`` is a :class:`Trigger`: :func:`after_commands` watches Redis with MONITOR and fires right after
the n-th command matching a pattern (a step of the pipeline: a chunk queued, a state written), which is
what makes "Redis stopped while planning" land mid-plan on any machine; :func:`when` polls a predicate.

:class:`SimTap` wraps the running simulator app: it records every vendor call (path, phones, bid,
answer code, start and end in monotonic s) and can run a hook after the vendor has acted on a call but
before its answer leaves (the vendor handed a receipt page over, the poller has not got it yet).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from providers.simulator.server import SimulatorServer
from worker.embedded import EmbeddedRedis

Mode = Literal["pause", "shutdown", "kill"]
# A task queued on sms.bulk: kombu's redis transport LPUSHes to the queue's list, or to one list per
# priority step ("sms.bulk:6") when priorities are on.
PUSH_BULK = rb'"LPUSH" "sms\.bulk[":]'


class Trigger(Protocol):
    """When an outage begins. ``arm`` runs before the ``with`` body, ``wait`` in the outage thread."""

    def arm(self) -> None: ...

    def wait(self, stop: threading.Event, timeout_s: float) -> bool:
        """Block until it is time (True), or until ``stop`` is set or ``timeout_s`` passed (False)."""
        ...

    def close(self) -> None: ...


@dataclass
class Predicate:
    """Fires when ``check()`` is true, looked at every ``interval_s``."""

    check: Callable[[], bool]
    interval_s: float = 0.01

    def arm(self) -> None:
        return None

    def wait(self, stop: threading.Event, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not stop.is_set() and time.monotonic() < deadline:
            if self.check():
                return True
            time.sleep(self.interval_s)
        return False

    def close(self) -> None:
        return None


def when(check: Callable[[], bool], interval_s: float = 0.01) -> Predicate:
    return Predicate(check, interval_s)


class CommandWatch:
    """Fires right after Redis executed the ``count``-th command matching ``pattern`` (a bytes regex
    searched in MONITOR's line, e.g. ``rb'"LPUSH" "sms\\.bulk"'``). Armed means MONITOR is running.

    A plain socket, not redis-py: MONITOR is a stream of lines, read here with a short time-out so the
    wait can notice ``stop``."""

    def __init__(self, server: EmbeddedRedis, pattern: bytes, count: int = 1) -> None:
        self.server = server
        self.pattern = re.compile(pattern)
        self.count = count
        self.seen = 0
        self._sock: socket.socket | None = None

    def arm(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.server.socket)
        sock.sendall(b"MONITOR\r\n")
        sock.settimeout(5)
        if not sock.recv(5).startswith(b"+OK"):
            raise RuntimeError("MONITOR refused")
        sock.settimeout(0.2)
        self._sock = sock

    def wait(self, stop: threading.Event, timeout_s: float) -> bool:
        assert self._sock is not None, "arm() first"
        deadline = time.monotonic() + timeout_s
        pending = b""
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                data = self._sock.recv(1 << 16)
            except TimeoutError:
                continue
            if not data:
                return False  # Redis went away
            *lines, pending = (pending + data).split(b"\r\n")
            for line in lines:
                if self.pattern.search(line):
                    self.seen += 1
                    if self.seen >= self.count:
                        return True
        return False

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def after_commands(server: EmbeddedRedis, pattern: bytes, count: int = 1) -> CommandWatch:
    return CommandWatch(server, pattern, count)


@dataclass
class Injection:
    """When an injected fault fired (monotonic s; None if its trigger never did) and what it raised."""

    fired: float | None = None
    done: float | None = None
    error: BaseException | None = None

    @property
    def happened(self) -> bool:
        return self.fired is not None and self.done is not None


@contextmanager
def inject(
    fault: Callable[[Injection], None], when: Trigger | None = None, trigger_timeout_s: float = 60.0
) -> Iterator[Injection]:
    """Run ``fault`` in a background thread once ``when`` fires (at once if None). Leaving the block
    waits for ``fault`` to return and re-raises what it raised."""
    injection = Injection()
    stop = threading.Event()
    if when is not None:
        when.arm()

    def run() -> None:
        try:
            if when is not None and not when.wait(stop, trigger_timeout_s):
                return
            injection.fired = time.monotonic()
            fault(injection)
            injection.done = time.monotonic()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread and re-raised there
            injection.error = exc
        finally:
            if when is not None:
                when.close()

    thread = threading.Thread(target=run, name="fault", daemon=True)
    thread.start()
    try:
        yield injection
    finally:
        thread.join(trigger_timeout_s + 120)
        stop.set()
        thread.join(5)
    if injection.error is not None:
        raise injection.error


@dataclass
class Outage:
    """One Redis outage: ``began``/``ended`` in monotonic s (None if its trigger never fired), and the
    redis-server pid before and after (a kill or shutdown starts a new process)."""

    mode: Mode
    seconds: float
    began: float | None = None
    ended: float | None = None
    pid_before: int | None = None
    pid_after: int | None = None

    @property
    def happened(self) -> bool:
        return self.began is not None and self.ended is not None


def break_redis(server: EmbeddedRedis, mode: Mode) -> None:
    {"pause": server.pause, "shutdown": server.shutdown, "kill": server.kill}[mode]()


def mend_redis(server: EmbeddedRedis, mode: Mode) -> None:
    server.resume() if mode == "pause" else server.start()


@contextmanager
def redis_outage(
    server: EmbeddedRedis,
    seconds: float,
    mode: Mode = "pause",
    *,
    when: Trigger | None = None,
    trigger_timeout_s: float = 60.0,
) -> Iterator[Outage]:
    """Break Redis for ``seconds`` (s) once ``when`` fires (at once if None), from a background thread.

    Leaving the block waits for the outage to end; Redis always runs again afterwards. Assert
    ``outage.happened`` in the test: a trigger that never fired must not pass as a survived fault.
    """
    outage = Outage(mode, seconds)

    def cycle(_: Injection) -> None:
        outage.pid_before = server.pid
        try:
            break_redis(server, mode)
            outage.began = time.monotonic()
            time.sleep(seconds)
        finally:
            mend_redis(server, mode)
        outage.ended = time.monotonic()
        outage.pid_after = server.pid

    try:
        with inject(cycle, when, trigger_timeout_s):
            yield outage
    finally:
        if not server.running:
            server.start()
        server.resume()


# -- the simulator tap ------------------------------------------------------------------------------


@dataclass
class Call:
    """One HTTP call the simulator answered. Times are monotonic s; ``code`` is the vendor's code."""

    path: str
    started: float
    ended: float = 0.0
    phones: tuple[str, ...] = ()
    bid: str = ""
    code: str = ""
    items: int = 0  # list items in the answer's ``data`` (receipts on a receipt query)


@dataclass
class Hold:
    """Run ``hook`` once, on the first call to ``path`` that ``match`` accepts, after the vendor acted on
    it and before its answer is sent."""

    path: str
    hook: Callable[[], None]
    match: Callable[[Call], bool] = lambda call: True
    done: threading.Event = field(default_factory=threading.Event)


class SimTap:
    """Wraps the running simulator's app (its built middleware stack) until ``close``."""

    def __init__(self, sim: SimulatorServer) -> None:
        self.app = sim.app
        if self.app.middleware_stack is None:
            self.app.middleware_stack = self.app.build_middleware_stack()
        self.inner: ASGIApp = self.app.middleware_stack
        self.calls: list[Call] = []
        self.holds: list[Hold] = []
        self.lock = threading.Lock()
        self.app.middleware_stack = self

    def close(self) -> None:
        self.app.middleware_stack = self.inner

    def hold(
        self, path: str, hook: Callable[[], None], match: Callable[[Call], bool] = lambda c: True
    ) -> Hold:
        held = Hold(path, hook, match)
        with self.lock:
            self.holds.append(held)
        return held

    def calls_to(self, path: str) -> list[Call]:
        with self.lock:
            return [call for call in self.calls if call.path == path]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        call = Call(scope["path"], time.monotonic())
        request = bytearray()
        answer = bytearray()
        start: list[Message] = []

        async def tee_receive() -> Message:
            message = await receive()
            request.extend(message.get("body", b""))
            return message

        async def tee_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.append(message)  # sent with the body: a hold runs first
                return
            answer.extend(message.get("body", b""))
            if message.get("more_body"):
                return
            _describe(call, bytes(request), bytes(answer))
            if held := self._take_hold(call):
                await asyncio.to_thread(held.hook)
                held.done.set()
            call.ended = time.monotonic()
            with self.lock:
                self.calls.append(call)
            for early in start:
                await send(early)
            await send({**message, "body": bytes(answer)})

        await self.inner(scope, tee_receive, tee_send)

    def _take_hold(self, call: Call) -> Hold | None:
        with self.lock:
            for held in self.holds:
                if held.path == call.path and not held.done.is_set() and held.match(call):
                    self.holds.remove(held)
                    return held
        return None


def _describe(call: Call, request: bytes, answer: bytes) -> None:
    """Fill in the phones, bid and answer code of an Infocloud call (other vendors: the code only)."""
    try:
        body = json.loads(request) if request else {}
        reply = json.loads(answer) if answer else {}
    except ValueError:
        return
    if isinstance(body, dict):
        listed = json.loads(body.get("phonesJson") or "[]")  # sendBatch; send has "phones": "a,b"
        phones: Sequence[Any] = listed or str(body.get("phones") or "").split(",")
        call.phones = tuple(str(p) for p in phones if p)
        call.bid = str(body.get("bid") or "")
    if isinstance(reply, dict):
        call.code = str(reply.get("code", ""))
        data = reply.get("data")
        call.items = len(data) if isinstance(data, list) else 0
