"""What every vendor simulator shares: per-phone counters, fault injection, receipt and inbound queues,
and the sequence that answers one call (:func:`serve`).

A vendor module (``infocloud.py``, ...) verifies its vendor's auth and payloads and answers in its
vendor's format; it hands each call to :func:`serve` (which counts it, injects faults and counts the
answer) and calls :class:`SimState` to count what each phone received and to queue receipts. Tests read
the counters to prove nothing was sent twice or lost.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from providers.market_gateway import GatewayRefusal, verify

BEIJING = timezone(timedelta(hours=8))


@dataclass
class FaultPlan:
    """Faults injected into one vendor's send calls. Rates are probabilities per call (0..1).

    ``codes``: vendor codes answered instead of processing, at ``code_rate``. ``timeout_rate``: the
    answer is held for ``hang_s`` (longer than the client waits). ``reset_rate``: the connection is
    dropped without an answer. With ``after_accept`` a time-out or reset happens after the vendor
    accepted the request (the ambiguous case: counted as received once); otherwise before anything is
    accepted (never counted as received: after the hang the connection is dropped unanswered). Either
    way the call is counted in ``VendorCounters.dropped`` once the fault is done.
    """

    codes: tuple[str, ...] = ()
    code_rate: float = 0.0
    latency_s: float = 0.0
    timeout_rate: float = 0.0
    reset_rate: float = 0.0
    hang_s: float = 30.0
    after_accept: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultPlan:
        data = dict(data)
        if "codes" in data:
            data["codes"] = tuple(str(c) for c in data["codes"])
        return cls(**data)


class SimulatedReset(Exception):
    """Raised inside a response to make the server drop the connection (a simulated reset)."""


class ResetResponse(Response):
    """Starts an answer, then fails: the server closes the connection with the body unsent."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"64")]})
        raise SimulatedReset


@dataclass
class Decision:
    """What to do with one call: answer with ``code``, or misbehave before/after accepting it."""

    code: str | None = None
    timeout: bool = False
    reset: bool = False
    after_accept: bool = False
    hang_s: float = 0.0


@dataclass
class SimConfig:
    """Behaviour knobs. Times in seconds."""

    receipt_delay_s: float = 0.0
    undelivered_share: float = 0.0
    query_per_minute: int = 3  # Infocloud query endpoints, per account
    balance_interval_s: float = 15.0  # Infocloud residueValue/qry
    tps_limit: int = 300  # Infocloud send throughput, calls per second
    known_templates: tuple[str, ...] = ()  # empty: every template id exists
    clock_skew_s: float = 60.0
    # Vendors that push (``pusher.py``): vendor -> base URL of our receivers (``http://host:port``); its
    # receipts and replies are then POSTed to ``<base>/push/<vendor>/<kind>`` instead of waiting for a pull.
    push_urls: dict[str, str] = field(default_factory=dict)
    push_tokens: dict[str, str] = field(default_factory=dict)  # vendor -> ``?token=`` of its push URLs


@dataclass
class PendingReceipt:
    ready_at: float
    body: dict[str, Any]


@dataclass
class VendorCounters:
    received: Counter[str] = field(default_factory=Counter)  # phone -> messages the vendor accepted
    call_sizes: list[int] = field(default_factory=list)  # phones per accepted send call
    # When each accepted send call arrived (unix s) and its tag (Infocloud: our bid): what a rate cap
    # counts, as the vendor sees it (``GET /_sim/calls``).
    arrivals: list[tuple[float, str]] = field(default_factory=list)
    requests: int = 0  # every HTTP request, rejected or not
    answered_codes: Counter[str] = field(default_factory=Counter)
    dropped: int = 0  # calls whose answer a time-out or reset fault withheld, counted when the fault ends
    pushed: int = 0  # pushes our receiver answered 2xx (``pusher.py``)
    push_failed: int = 0  # pushes given up on after the vendor's tries
    # What those given-up pushes held: receipts and replies the vendor dropped (never to be pulled either).
    receipts_dropped: int = 0
    replies_dropped: int = 0


class SimState:
    """Thread-safe state of the simulator. One instance serves all vendors."""

    def __init__(self, config: SimConfig | None = None, seed: int | None = None) -> None:
        self.config = config or SimConfig()
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.vendors: dict[str, VendorCounters] = {}
        self.faults: dict[str, FaultPlan] = {}
        self.receipts: dict[str, deque[PendingReceipt]] = {}
        self.inbound: dict[str, deque[dict[str, Any]]] = {}
        self.windows: dict[str, deque[float]] = {}
        self.seq = 0
        self.last_accept_at = 0.0

    # -- counters -----------------------------------------------------------------------------------

    def counters(self, vendor: str) -> VendorCounters:
        with self.lock:
            return self.vendors.setdefault(vendor, VendorCounters())

    def note_request(self, vendor: str) -> None:
        with self.lock:
            self.vendors.setdefault(vendor, VendorCounters()).requests += 1

    def note_answer(self, vendor: str, code: str) -> None:
        with self.lock:
            self.vendors.setdefault(vendor, VendorCounters()).answered_codes[code] += 1

    def note_dropped(self, vendor: str) -> None:
        with self.lock:
            self.vendors.setdefault(vendor, VendorCounters()).dropped += 1

    def next_id(self) -> int:
        with self.lock:
            self.seq += 1
            return self.seq

    def accept(
        self,
        vendor: str,
        phones: Iterable[str],
        make_receipt: Callable[[str, bool], dict[str, Any]] | None = None,
        tag: str = "",
    ) -> None:
        """Count one accepted call (with its arrival time and ``tag``) and queue a receipt per phone
        (delivered unless the dice say not)."""
        phones = list(phones)
        now = time.time()
        with self.lock:
            counters = self.vendors.setdefault(vendor, VendorCounters())
            counters.received.update(phones)
            counters.call_sizes.append(len(phones))
            counters.arrivals.append((now, tag))
            self.last_accept_at = now
            if make_receipt is None:
                return
            queue = self.receipts.setdefault(vendor, deque())
            ready = now + self.config.receipt_delay_s
            share = self.config.undelivered_share
            for phone in phones:
                delivered = share <= 0 or self.rng.random() >= share
                queue.append(PendingReceipt(ready, make_receipt(phone, delivered)))

    def take_receipts(self, vendor: str, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` receipts that are due, each returned once only."""
        now = time.time()
        out: list[dict[str, Any]] = []
        with self.lock:
            queue = self.receipts.setdefault(vendor, deque())
            while queue and len(out) < limit and queue[0].ready_at <= now:
                out.append(queue.popleft().body)
        return out

    def add_inbound(self, vendor: str, message: dict[str, Any]) -> None:
        with self.lock:
            self.inbound.setdefault(vendor, deque()).append(message)

    def take_inbound(self, vendor: str, limit: int) -> list[dict[str, Any]]:
        with self.lock:
            queue = self.inbound.setdefault(vendor, deque())
            return [queue.popleft() for _ in range(min(limit, len(queue)))]

    def phone_history(self, vendor: str, phone: str, now: float) -> deque[float]:
        """When ``vendor`` admitted a message to ``phone`` in the day up to ``now`` (unix s), oldest first:
        what per-number caps count. Call it holding ``lock``, and append ``now`` when admitting one more."""
        sent = self.windows.setdefault(f"{vendor}:phone:{phone}", deque())
        while sent and sent[0] <= now - 86400:
            sent.popleft()
        return sent

    def allow(self, key: str, limit: int, window_s: float) -> bool:
        """Sliding-window check: at most ``limit`` events per ``window_s`` under ``key``."""
        now = time.monotonic()
        with self.lock:
            window = self.windows.setdefault(key, deque())
            while window and window[0] <= now - window_s:
                window.popleft()
            if len(window) >= limit:
                return False
            window.append(now)
            return True

    # -- faults -------------------------------------------------------------------------------------

    def set_faults(self, vendor: str, plan: FaultPlan | None) -> None:
        with self.lock:
            if plan is None:
                self.faults.pop(vendor, None)
            else:
                self.faults[vendor] = plan

    async def before(self, vendor: str) -> Decision:
        """Apply latency and roll the dice for one send call."""
        with self.lock:
            plan = self.faults.get(vendor)
            if plan is None:
                return Decision()
            roll = self.rng.random()
            pick = self.rng.choice(plan.codes) if plan.codes else None
        if plan.latency_s:
            await asyncio.sleep(plan.latency_s)
        if pick is not None and roll < plan.code_rate:
            return Decision(code=pick)
        roll -= plan.code_rate
        if roll < plan.timeout_rate:
            return Decision(timeout=True, after_accept=plan.after_accept, hang_s=plan.hang_s)
        roll -= plan.timeout_rate
        if roll < plan.reset_rate:
            return Decision(reset=True, after_accept=plan.after_accept)
        return Decision()

    async def misbehave(self, vendor: str, decision: Decision) -> Response | None:
        """Carry out a time-out or reset: None when ``decision`` has neither, else the response that drops
        the connection unanswered (for a time-out, after holding it ``hang_s``; a client still waiting then
        sees the connection close, as when a vendor's front end gives up on a call)."""
        if not (decision.timeout or decision.reset):
            return None
        if decision.timeout:
            await asyncio.sleep(decision.hang_s)
        self.note_dropped(vendor)
        return ResetResponse()

    # -- reporting ----------------------------------------------------------------------------------

    def arrivals(self, vendor: str) -> list[tuple[float, str]]:
        """Each accepted send call of ``vendor``: when it arrived (unix s) and its tag, oldest first."""
        with self.lock:
            return list(self.vendors.get(vendor, VendorCounters()).arrivals)

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "last_accept_at": self.last_accept_at,
                "config": asdict(self.config),
                "vendors": {
                    name: {
                        "requests": c.requests,
                        "calls": len(c.call_sizes),
                        "max_call_size": max(c.call_sizes, default=0),
                        "accepted": sum(c.received.values()),
                        "phones": len(c.received),
                        "max_per_phone": max(c.received.values(), default=0),
                        "codes": dict(c.answered_codes),
                        "dropped": c.dropped,
                        "pending_receipts": len(self.receipts.get(name, ())),
                        "pushed": c.pushed,
                        "push_failed": c.push_failed,
                        "receipts_dropped": c.receipts_dropped,
                        "replies_dropped": c.replies_dropped,
                    }
                    for name, c in self.vendors.items()
                },
            }

    def reset(self) -> None:
        with self.lock:
            self.vendors.clear()
            self.faults.clear()
            self.receipts.clear()
            self.inbound.clear()
            self.windows.clear()
            self.last_accept_at = 0.0


def sent_today(sent: Iterable[float], now: float) -> int:
    """How many of the times ``sent`` (unix s) fall on ``now``'s Beijing calendar day (daily caps)."""
    midnight = datetime.fromtimestamp(now, BEIJING).replace(hour=0, minute=0, second=0, microsecond=0)
    return sum(1 for t in sent if t >= midnight.timestamp())


# -- answering one call -----------------------------------------------------------------------------

Answer = tuple[Response, str]
"""A vendor's answer to one call, and the code it is counted under (``VendorCounters.answered_codes``)."""
Gate = Callable[[Request], Answer | None]


class Refused(Exception):
    """The vendor refuses the call with ``code``; ``message`` replaces the vendor's usual text for it."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.message = message


async def serve(
    state: SimState,
    vendor: str,
    request: Request,
    process: Callable[[bytes], Answer],
    refuse: Callable[[Refused], Answer],
    *,
    send: bool = True,
    gate: Gate | None = None,
) -> Response:
    """Answer one call to a vendor endpoint: the sequence every vendor simulator shares.

    The call is counted and its body read first. On a send endpoint (``send``) the vendor's fault plan
    is then applied (:meth:`SimState.before`): a time-out or reset before anything is accepted (``process``
    never runs: nothing is received, however long the hang) or, with ``FaultPlan.after_accept``, after
    ``process`` ran once (the vendor acted, the answer is lost); an injected
    code is answered through ``refuse`` instead of ``process``, as is any :class:`Refused` that
    ``process`` raises. ``gate`` is a check in front of the vendor (the market gateway): its refusal is
    answered as it is, ahead of an injected code and with no misbehaviour after it. Every answer's code
    is counted.
    """
    state.note_request(vendor)
    raw = await request.body()
    decision = await state.before(vendor) if send else Decision()
    if not decision.after_accept and (dropped := await state.misbehave(vendor, decision)):
        return dropped
    if gate is not None and (refusal := gate(request)) is not None:
        state.note_answer(vendor, refusal[1])
        return refusal[0]
    try:
        if decision.code:
            raise Refused(decision.code)
        response, code = process(raw)
    except Refused as refused:
        response, code = refuse(refused)
    state.note_answer(vendor, code)
    if decision.after_accept and (dropped := await state.misbehave(vendor, decision)):
        return dropped
    return response


def market_gateway(state: SimState, secret_id: str, secret_key: str) -> Gate:
    """The ``gate`` of a vendor behind the Tencent Cloud market gateway (Xiaorui, Deepfinch): a call whose
    gateway auth fails is answered 401/403 ``{"message"}`` and counted as ``GATEWAY_<status>``."""

    def gate(request: Request) -> Answer | None:
        try:
            verify(request.headers, secret_id, secret_key, state.config.clock_skew_s)
        except GatewayRefusal as refused:
            answer = JSONResponse(refused.body(), status_code=refused.status_code)
            return answer, f"GATEWAY_{refused.status_code}"
        return None

    return gate
