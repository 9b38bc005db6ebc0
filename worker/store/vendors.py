"""Vendor health: the circuit breaker, benches, balances, and when each vendor last answered or was polled.

- **Breaker** (``lua/breaker.lua``, one hash per vendor): certain failures in a row open it; while open one
  probe call per ``breaker.probe_interval_s`` goes through; a successful call closes it. A success costs no
  round trip of its own: the run SETs :meth:`ok_marker` into ``Keys.vendor_ok`` in its pipelined record.
- **Bench** (``Keys.health``): a vendor that refused us as a whole. Auth or config: for ``unhealthy_s``.
  Balance: until a balance poll shows credit again (``until`` = "credit"), or ``smsdispatch vendors reset``.
- **Balances** (``Keys.balance``): item -> value and the time read, from ``tasks.vendors.poll_balance``.

Every key here is one per vendor (bounded) and expires, but a balance bench, which a poll clears.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from worker.store.base import StoreBase, fields
from worker.store.client import queue_script
from worker.store.keys import Keys
from worker.store.limits import ARRIVAL_MARGIN_MS, HOLD_S, budget_args, go_at, slot
from worker.store.records import now_ms

BREAKER_TTL_S = 86400  # a breaker nobody has asked about for a day starts closed again
VENDOR_KEYS_TTL_S = 30 * 86400  # last success, last polls, balances
UNTIL_CREDIT = "credit"
BREAKER_CODE = "BREAKER"
FAILOVER_BASE = 10**9  # chunk numbers from here on were made by a failover


@dataclass(frozen=True, slots=True)
class Gate:
    """The breaker's answer. ``allowed``: a call may go now (``probe``: as the one probe of this
    interval); otherwise ``wait_s`` (s) until the next probe slot. ``failures``: certain failures in a row."""

    allowed: bool
    probe: bool = False
    wait_s: float = 0.0
    failures: int = 0


@dataclass(frozen=True, slots=True)
class Tripped:
    """The breaker after a certain failure: ``open`` (then ``wait_s`` until its next probe slot, s)."""

    open: bool
    wait_s: float
    failures: int


@dataclass(frozen=True, slots=True)
class BalanceReading:
    item: str
    value: float
    at_ms: int


@dataclass(frozen=True, slots=True)
class VendorHealth:
    """What ``smsdispatch vendors`` shows of one vendor (times in ms since the epoch, 0: never)."""

    name: str
    breaker: dict[str, str] = field(default_factory=dict)  # state, failures, opened, next_probe, probes
    bench: dict[str, str] = field(default_factory=dict)  # code, reason, at, until ("credit" or a time)
    balances: tuple[BalanceReading, ...] = ()
    last_ok_ms: int = 0
    polls: dict[str, tuple[int, str]] = field(default_factory=dict)  # what -> (ms, "ok" or the error)

    @property
    def breaker_open(self) -> bool:
        return self.breaker.get("state") == "open"


def ok_marker(token: str) -> str:
    """The value a successful call SETs at ``Keys.vendor_ok``: unique per call, its time first."""
    return f"{now_ms()}:{token}"


class VendorsMixin(StoreBase):
    # -- breaker ------------------------------------------------------------------------------------

    def _breaker(self, provider: str, op: str) -> list[int]:
        conf = self.settings.breaker
        args = [op, conf.failures, int(conf.probe_interval_s * 1000), BREAKER_TTL_S]
        keys = [Keys.breaker(provider), Keys.vendor_ok(provider)]
        return [int(x) for x in self._script("breaker")(keys=keys, args=args)]

    def breaker_ask(self, provider: str) -> Gate:
        """May a call to ``provider`` go now? Claims the probe slot atomically when one is due."""
        allowed, probe, wait_ms, failures = self._breaker(provider, "ask")
        return Gate(bool(allowed), bool(probe), wait_ms / 1000, failures)

    def admit(self, provider: str, per_second: float) -> tuple[Gate, float]:
        """The breaker's answer and one take of the vendor's budget, in one round trip: the hot path of
        every chunk. The take reserves the next slot when it is at most ``HOLD_S`` ahead and, if the
        breaker lets the call go, sleeps until it: 0 s returned means "go now". Else the seconds until the
        budget's next slot (nothing taken). A slot reserved while the breaker says no is simply lost.
        Slots are spaced over ``1 s + ARRIVAL_MARGIN_MS`` (``worker.store.limits``)."""
        conf = self.settings.breaker
        args = ["ask", conf.failures, int(conf.probe_interval_s * 1000), BREAKER_TTL_S]
        keys = [Keys.breaker(provider), Keys.vendor_ok(provider)]
        budget = budget_args(per_second, ARRIVAL_MARGIN_MS, HOLD_S)
        with self.r.pipeline(transaction=False) as pipe:
            queue_script(pipe, "breaker", keys, args)
            queue_script(pipe, "gcra", [Keys.budget(provider)], budget)
            answer, taken = pipe.execute()
        allowed, probe, gate_wait_ms, failures = (int(x) for x in answer)
        gate = Gate(bool(allowed), bool(probe), gate_wait_ms / 1000, failures)
        return gate, go_at(slot(taken)) if gate.allowed else 0.0

    def breaker_failed(self, provider: str) -> Tripped:
        """Count a certain failure (the request was not taken: refused connection, 5xx, a busy code)."""
        is_open, _, wait_ms, failures = self._breaker(provider, "fail")
        return Tripped(bool(is_open), wait_ms / 1000, failures)

    def open_breakers(self, providers: Sequence[str]) -> dict[str, dict[str, str]]:
        """Vendors whose breaker is open with no probe due (routing skips them for failover kinds), in the
        form of :meth:`benches`."""
        with self.r.pipeline(transaction=False) as pipe:
            _ask_breakers(pipe, providers)
            return _open_breakers(pipe.execute(), providers)

    def unavailable(self, providers: Sequence[str], kind: str) -> dict[str, dict[str, str]]:
        """Vendors routing skips for ``kind``: the benched ones, and for the kinds that fail over
        (``breaker.failover_kinds``) those whose breaker is open. One round trip."""
        return self.before_send(providers, kind)[0]

    def before_send(
        self, providers: Sequence[str], kind: str, message_id: str = ""
    ) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
        """What a send reads before it plans, in one round trip: :meth:`unavailable`, and with
        ``message_id`` that message's meta (a redelivered task finds what it did: ``Store.message``)."""
        failover = kind in self.settings.breaker.failover_kinds
        with self.r.pipeline(transaction=False) as pipe:
            _ask_benches(pipe, providers)
            if failover:
                _ask_breakers(pipe, providers)
            if message_id:
                pipe.hgetall(Keys.message(message_id))
            found = pipe.execute()
        out = _benches(found, providers)
        if failover:
            out = {**_open_breakers(found[2 * len(providers) :], providers), **out}
        meta = cast("dict[str, str]", found[-1]) if message_id else {}
        return out, meta

    def failover_numbers(self, message_id: str, count: int) -> range:
        """``count`` chunk numbers of ``message_id`` never used before, for chunks planned again on another
        vendor: above any planned chunk's (at most ``MAX_RECIPIENTS``), and short however often a send fails
        over, so the call's bid stays within Infocloud's 64 characters."""
        with self.r.pipeline(transaction=False) as pipe:
            pipe.hincrby(Keys.message(message_id), "failovers", count)
            pipe.expire(Keys.message(message_id), self.ttl)
            last = int(pipe.execute()[0])
        return range(FAILOVER_BASE + last - count, FAILOVER_BASE + last)

    # -- benches ------------------------------------------------------------------------------------

    def bench(self, provider: str, code: str, reason: str, *, until_credit: bool = False) -> None:
        """Bench ``provider``: routing skips it. For ``unhealthy_s``, or with ``until_credit`` until a
        balance poll shows credit (``clear_balance_bench``) or an operator resets it."""
        key = Keys.health(provider)
        mapping: dict[str, str | int] = {"code": code, "reason": reason[:200], "at": now_ms()}
        if until_credit:
            mapping["until"] = UNTIL_CREDIT
        with self.r.pipeline(transaction=False) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=fields(mapping))
            if not until_credit:
                pipe.expire(key, self.settings.unhealthy_s)
            pipe.execute()

    def benches(self, providers: Sequence[str]) -> dict[str, dict[str, str]]:
        """The benched vendors: code, reason, at (ms), and ``until`` ("credit", or a time in ms)."""
        with self.r.pipeline(transaction=False) as pipe:
            _ask_benches(pipe, providers)
            return _benches(pipe.execute(), providers)

    def clear_balance_bench(self, provider: str) -> bool:
        """Lift a balance bench (a poll showed credit). An auth or config bench stays. True if lifted."""
        key = Keys.health(provider)

        lifted: list[bool] = []

        def lift(pipe: Any) -> None:
            lifted[:] = [pipe.hget(key, "until") == UNTIL_CREDIT]
            if lifted[0]:
                pipe.multi()
                pipe.delete(key)

        self.r.transaction(lift, key)
        return bool(lifted and lifted[0])

    def reset_vendor(self, provider: str) -> bool:
        """Clear ``provider``'s bench and breaker (an operator fixed what was wrong). True if either
        was set."""
        return bool(self.r.delete(Keys.health(provider), Keys.breaker(provider)))

    # -- balances and polls -------------------------------------------------------------------------

    def save_balances(self, provider: str, readings: Mapping[str, float]) -> None:
        """Keep ``provider``'s balances (item -> value) as read now; items not in this reading go."""
        key = Keys.balance(provider)
        at = now_ms()
        with self.r.pipeline(transaction=False) as pipe:
            pipe.delete(key)
            if readings:
                pipe.hset(key, mapping={item: f"{value:g}|{at}" for item, value in readings.items()})
                pipe.expire(key, VENDOR_KEYS_TTL_S)
            pipe.execute()

    def balances(self, provider: str) -> tuple[BalanceReading, ...]:
        return _readings(cast("dict[str, str]", self.r.hgetall(Keys.balance(provider))))

    def note_poll(self, provider: str, what: str, error: str = "") -> None:
        """Say that ``what`` ("balance", "receipts", ...) was pulled from ``provider`` now, and how."""
        key = Keys.polled(provider)
        with self.r.pipeline(transaction=False) as pipe:
            pipe.hset(key, what, f"{now_ms()}|{error[:200] or 'ok'}")
            pipe.expire(key, VENDOR_KEYS_TTL_S)
            pipe.execute()

    def vendor_health(self, providers: Sequence[str]) -> list[VendorHealth]:
        """Everything ``smsdispatch vendors`` shows, for each of ``providers`` (two round trips)."""
        benches = self.benches(providers)
        with self.r.pipeline(transaction=False) as pipe:
            for name in providers:
                pipe.hgetall(Keys.breaker(name))
                pipe.hgetall(Keys.balance(name))
                pipe.get(Keys.vendor_ok(name))
                pipe.hgetall(Keys.polled(name))
            found = pipe.execute()
        out = []
        for i, name in enumerate(providers):
            breaker, balances, ok, polls = found[4 * i : 4 * i + 4]
            if breaker.get("state") == "open" and breaker.get("seen", "") != (ok or ""):
                breaker = {**breaker, "state": "closed", "failures": "0"}  # a success closed it since
            out.append(
                VendorHealth(
                    name,
                    breaker,
                    benches.get(name, {}),
                    _readings(balances),
                    _ms(ok or ""),
                    {what: (_ms(v), v.partition("|")[2]) for what, v in polls.items()},
                )
            )
        return out


def _ms(value: str) -> int:
    head = value.replace("|", ":").partition(":")[0]
    return int(head) if head.isdigit() else 0


def _readings(raw: Mapping[str, str]) -> tuple[BalanceReading, ...]:
    out = []
    for item, packed in sorted(raw.items()):
        value, _, at = packed.partition("|")
        try:
            out.append(BalanceReading(item, float(value), int(at or 0)))
        except ValueError:
            continue
    return tuple(out)


def _ask_benches(pipe: Any, providers: Sequence[str]) -> None:
    for name in providers:
        pipe.hgetall(Keys.health(name))
        pipe.pttl(Keys.health(name))


def _benches(found: Sequence[Any], providers: Sequence[str]) -> dict[str, dict[str, str]]:
    """:meth:`Store.benches` from the answers of :func:`_ask_benches` (first in ``found``)."""
    now = now_ms()
    out = {}
    for i, name in enumerate(providers):
        info, ttl = cast("dict[str, str]", found[2 * i]), int(found[2 * i + 1])
        if info:
            out[name] = {**info, "until": info.get("until") or str(now + max(ttl, 0))}
    return out


def _ask_breakers(pipe: Any, providers: Sequence[str]) -> None:
    for name in providers:
        pipe.hgetall(Keys.breaker(name))
        pipe.get(Keys.vendor_ok(name))


def _open_breakers(found: Sequence[Any], providers: Sequence[str]) -> dict[str, dict[str, str]]:
    """:meth:`Store.open_breakers` from the answers of :func:`_ask_breakers` (first in ``found``)."""
    now = now_ms()
    out = {}
    for i, name in enumerate(providers):
        info, ok = cast("dict[str, str]", found[2 * i]), found[2 * i + 1] or ""
        if info.get("state") != "open" or info.get("seen", "") != ok:
            continue  # closed, or a call succeeded since it opened
        next_probe = int(info.get("next_probe") or 0)
        if now < next_probe:
            failures = info.get("failures", "?")
            reason = f"circuit open after {failures} failures, next probe in {next_probe - now} ms"
            out[name] = {"code": BREAKER_CODE, "reason": reason}
    return out
