"""Balances on the beat schedule (``sms.poll``): ``poll_balance(provider)`` for every vendor that offers a
balance query (Infocloud ``residueValue/qry``, Xiaorui ``smsoverage``, Ihuyi ``GetNum``).

- Cadence: one query per window held in Redis (``try_window``), so any number of beats, workers and
  manual runs together keep it: the vendor's own rule where it has one (Infocloud: once per 15 s, the
  lower bound of its ``balance_poll_interval_s``) with the margin receipts keep, and otherwise at most
  one query per 0.9 × the section's interval.
- Each item's value is stored with the time read (``smsdispatch balance``). An item under the vendor's
  ``balance_threshold`` logs an error and publishes a ``balance`` event ("low"). A vendor with no credit
  left in any item is benched until a poll shows credit again ("empty", then "credit"); so is one whose
  query answers with a balance code. A post-paid account (Xiaorui ``chargeType`` POSTCHARGE, whose
  balance is negative by design, seed 001) is never out of credit.

Safe to run twice at once: the window admits one of them, and every write is a plain overwrite.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import annotated_types
import structlog
from celery import Task

from config.sections import VendorSettings
from config.settings import Settings, get_settings
from providers.base import Balance
from providers.errors import BalanceError, ProviderError
from tasks.poll import CADENCE_MARGIN, CADENCE_SLACK_S, RETRIED
from worker.app import app
from worker.events import BalanceEvent
from worker.registry import get_provider, offers
from worker.store import Store, get_redis
from worker.store.limits import try_window

log = structlog.get_logger(__name__)
POSTPAID = frozenset({"POSTCHARGE"})  # Xiaorui: billed afterwards, no credit to run out of
INTERVAL_SHARE = 0.9  # a beat's own tick is never refused; a second beat's, within the interval, is
NO_CREDIT = "BALANCE"


def vendor_rule_s(section: VendorSettings) -> float:
    """The vendor's own shortest balance interval (s): the lower bound its section puts on
    ``balance_poll_interval_s`` (Infocloud 15 s); 0 when it has none beyond our generic one."""
    info = type(section).model_fields["balance_poll_interval_s"]
    bounds = [m.ge for m in info.metadata if isinstance(m, annotated_types.Ge)]
    bound = max((float(b) for b in bounds if isinstance(b, int | float)), default=0.0)
    return bound if bound >= 1 else 0.0


def balance_window_s(section: VendorSettings) -> float:
    """At most one balance query per this many seconds, across every beat and worker."""
    rule = vendor_rule_s(section)
    vendor = rule * CADENCE_MARGIN + CADENCE_SLACK_S if rule else 0.0
    return max(vendor, section.balance_poll_interval_s * INTERVAL_SHARE)


# Celery's decorator is untyped (pyproject's override lists tasks.send and tasks.poll only).
@app.task(bind=True, name="tasks.vendors.poll_balance", **RETRIED)
def poll_balance(self: Task, provider: str) -> int:
    """Read ``provider``'s balances if its cadence allows. Returns the items read (0: not due, not
    offered, not configured, or the query failed)."""
    settings = get_settings()
    section = settings.vendor(provider)
    if not section.configured() or not offers(provider, "balance"):
        return 0
    store = Store(get_redis(settings), settings)
    if try_window(store.r, f"{provider}:balance", 1, balance_window_s(section)):
        return 0  # another beat or worker read it within the window
    try:
        balances = get_provider(provider, settings).balance()
    except BalanceError as exc:
        log.error("balance query says out of credit: vendor benched", provider=provider, code=exc.code)
        store.bench(provider, exc.code, str(exc), until_credit=True)
        store.note_poll(provider, "balance", f"code {exc.code}")
        return 0
    except ProviderError as exc:
        log.warning("balance query failed", provider=provider, code=exc.code, error=str(exc))
        store.note_poll(provider, "balance", f"{type(exc).__name__} {exc.code}".strip())
        return 0
    apply_balances(store, settings, provider, balances)
    return len(balances)


def apply_balances(store: Store, settings: Settings, provider: str, balances: Sequence[Balance]) -> None:
    """Store a reading; say what is low; bench a vendor with no credit, lift the bench when it has some."""
    readings = {b.item: b.value for b in balances}
    store.save_balances(provider, readings)
    store.note_poll(provider, "balance")
    threshold = settings.vendor(provider).balance_threshold
    events = [
        BalanceEvent(provider, item, value, threshold, "low")
        for item, value in readings.items()
        if threshold > 0 and value < threshold and item not in POSTPAID
    ]
    for event in events:
        log.error("balance under threshold", provider=provider, item=event.item, value=event.value,
                  threshold=threshold)
    if readings and not has_credit(readings):
        log.error("vendor out of credit: benched until a poll shows credit", provider=provider)
        store.bench(provider, NO_CREDIT, "no credit left in any item", until_credit=True)
        events.append(BalanceEvent(provider, "", sum(readings.values()), threshold, "empty"))
    elif readings and store.clear_balance_bench(provider):
        log.warning("vendor has credit again: bench lifted", provider=provider)
        events.append(BalanceEvent(provider, "", sum(readings.values()), threshold, "credit"))
    store.publish(events)


def has_credit(readings: Mapping[str, float]) -> bool:
    """True when some item has credit left (or the account is post-paid)."""
    return any(value > 0 or item in POSTPAID for item, value in readings.items())
