"""The simulator's pushes: a background thread that POSTs each vendor's due receipts and queued replies to
our receivers, in that vendor's own push format, as the vendor would (Ihuyi receipts and replies,
Infocloud receipt and MO pushes, Tencent callbacks).

A vendor pushes once ``SimConfig.push_urls`` names a base URL for it (``http://host:port``; the path
``/push/<vendor>/<kind>`` is added, and ``?token=`` from ``SimConfig.push_tokens``). Its receipts then go
out by push instead of waiting for a pull. A vendor simulator that pushes has ``push_bodies(receipts,
replies)`` returning ``(kind, body, content type)`` per POST, and ``push_tries``: a push that is not
answered 2xx is tried again (after 0.2 s, 0.4 s, ...) up to that many times, then dropped, as the vendor
drops it (Ihuyi: 3 tries); ``VendorCounters.pushed``/``push_failed`` count them, and
``receipts_dropped``/``replies_dropped`` what the dropped ones held.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import httpx

from providers.simulator.core import SimState

RECEIPTS_PER_ROUND = 600  # Infocloud's page size; one push each for the JSON vendors
REPLIES_PER_ROUND = 100
RETRY_STEP_S = 0.2

PushBody = tuple[str, bytes, str]
"""One POST: the kind (``receipts``/``inbound``), the body, its content type."""


class Pusher:
    """``Pusher(state, sims).start()``; ``stop()`` ends the thread. Every ``interval_s`` seconds it pushes
    what is due for each vendor with a push URL."""

    def __init__(
        self,
        state: SimState,
        sims: Mapping[str, Any],
        interval_s: float = 0.1,
        client: httpx.Client | None = None,
    ) -> None:
        self.state = state
        self.sims = {name: sim for name, sim in sims.items() if hasattr(sim, "push_bodies")}
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="simulator-pusher", daemon=True)
        self._client = client or httpx.Client(timeout=5.0)

    def start(self) -> Pusher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._client.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.run_once()

    def run_once(self) -> int:
        """Push what is due now; returns how many POSTs were answered 2xx."""
        done = 0
        for vendor, base in dict(self.state.config.push_urls).items():
            sim = self.sims.get(vendor)
            if sim is None or not base:
                continue
            receipts = self.state.take_receipts(vendor, RECEIPTS_PER_ROUND)
            replies = self.state.take_inbound(vendor, REPLIES_PER_ROUND)
            bodies = sim.push_bodies(receipts, replies) if receipts or replies else []
            # A vendor's format puts all its items in one body or one item in each: a body given up on
            # drops its share of them.
            held = {"receipts": len(receipts), "inbound": len(replies)}
            shares = Counter(kind for kind, _, _ in bodies)
            for kind, body, content_type in bodies:
                if self._post(vendor, self._url(vendor, base, kind), body, content_type, sim.push_tries):
                    done += 1
                else:
                    what = "receipts_dropped" if kind == "receipts" else "replies_dropped"
                    self._count(vendor, what, held[kind] // shares[kind])
        return done

    def _url(self, vendor: str, base: str, kind: str) -> str:
        token = self.state.config.push_tokens.get(vendor, "")
        return f"{base.rstrip('/')}/push/{vendor}/{kind}" + (f"?token={token}" if token else "")

    def _post(self, vendor: str, url: str, body: bytes, content_type: str, tries: int) -> int:
        for attempt in range(1, tries + 1):
            try:
                answer = self._client.post(url, content=body, headers={"content-type": content_type})
                if answer.is_success:
                    self._count(vendor, "pushed")
                    return 1
            except httpx.HTTPError:
                pass  # the receiver is down or slow: the vendor tries again
            if attempt < tries and self._stop.wait(RETRY_STEP_S * attempt):
                break
        self._count(vendor, "push_failed")
        return 0

    def _count(self, vendor: str, what: str, n: int = 1) -> None:
        counters = self.state.counters(vendor)
        with self.state.lock:
            setattr(counters, what, getattr(counters, what) + n)


def start_pusher(state: SimState, sims: Mapping[str, Any]) -> Pusher:
    """A running pusher for the vendor simulators ``sims``."""
    return Pusher(state, sims).start()


def wait_pushed(state: SimState, timeout_s: float = 10.0) -> bool:
    """True once no receipt is pending for any vendor with a push URL (tests, the demo)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with state.lock:
            pending = sum(len(state.receipts.get(vendor, ())) for vendor in state.config.push_urls)
        if not pending:
            return True
        time.sleep(0.05)
    return False
