"""``smsdispatch send``: one message from the command line, through ``send_sms.delay`` like any application
(validated in this process, nothing queued if refused); ``smsdispatch status``: where a message or a
campaign stands, recipient by recipient if asked."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import click

from providers.phones import PhoneError, mask, normalize
from worker.commands.inbound import printable
from worker.console import (
    BadInput,
    Failed,
    NotFound,
    iso_time,
    local_time,
    one_line,
    open_store,
    parse_params,
    require_redis,
    require_settings,
    span,
    zone,
)

if TYPE_CHECKING:
    from worker.store import Record, Store
    from worker.store.views import NextAttempt

KINDS = ("notify", "otp", "marketing")
SHOWN_AFTER_WAIT = 20  # recipients listed one by one after --wait; more are counted only
POLL_S = 0.2


def register(main: click.Group) -> None:
    main.add_command(send)
    main.add_command(status)


@click.command(short_help="Send one message through send_sms and print its id; --wait follows it.")
@click.argument("phones", nargs=-1, required=True, metavar="PHONE...")
@click.option("-t", "--template", default=None, help="template name (config [templates.<name>])")
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE", help="a template parameter")
@click.option("--content", default=None, help="free text instead of a template (content-based vendors)")
@click.option("--kind", type=click.Choice(KINDS), default="notify", show_default=True)
@click.option("--provider", default=None, help="force this vendor (default: the kind's route)")
@click.option("--idempotency-key", default=None, help="the same key within 24 h sends nothing twice")
@click.option(
    "--wait", type=click.FloatRange(0, 86_400), default=None, metavar="SECONDS",
    help="follow until every recipient is final (at most SECONDS) and print the states",
)
def send(
    phones: tuple[str, ...],
    template: str | None,
    params: tuple[str, ...],
    content: str | None,
    kind: str,
    provider: str | None,
    idempotency_key: str | None,
    wait: float | None,
) -> None:
    """Send one message to PHONE... (several, or comma-separated) and print its message id.

    The request is checked here, as `send_sms.delay()` checks it in any application: a refused request
    is one line naming the field (exit 2) and nothing is queued. A worker does the rest.

    With --wait, follow the message until every recipient has a final state (delivered, failed,
    rejected, rate_limited, opted_out) and print them: exit 0 if all were delivered, 1 if not, or if
    SECONDS ran out first.

    \b
    Examples:
      smsdispatch send 13800138000 -t login_code -p code=123456 --kind otp
      smsdispatch send 13800138000,13900139000 -t order_shipped -p order=A1 -p tracking=SF1 --wait 60
      smsdispatch send 13800138000 --content "【商城】会员日八折，回T退订" --kind marketing
    """
    from tasks.request import InvalidRequest
    from tasks.send import send_sms

    settings = require_settings()
    require_redis(settings)
    to = [part.strip() for given in phones for part in given.split(",") if part.strip()]
    arguments: dict[str, Any] = {"kind": kind, "params": parse_params(params)}
    for name, value in (("template", template), ("content", content), ("provider", provider),
                        ("idempotency_key", idempotency_key)):
        if value is not None:
            arguments[name] = value
    started = time.monotonic()
    try:
        result = send_sms.delay(to, **arguments)
    except InvalidRequest as exc:
        raise BadInput(one_line(exc)) from None
    click.echo(result.id)
    if wait is not None:
        _follow(result, started + wait, wait, kind, len(to))


def _follow(result: Any, deadline: float, wait: float, kind: str, recipients: int) -> None:
    """Wait for the plan's answer (the message id: an earlier one for a repeated idempotency key), then
    for every recipient to be final; print the states and exit as ``send --help`` says."""
    from celery.exceptions import TimeoutError as NotYet

    from worker.app import queue_for
    from worker.store import FINAL

    store = open_store()
    try:
        answer = result.get(timeout=max(0.1, deadline - time.monotonic()), interval=POLL_S, propagate=False)
    except NotYet:
        queue = queue_for(kind, recipients, store.settings)
        raise Failed(f"not planned within {wait:g} s: is a worker consuming {queue}?") from None
    if isinstance(answer, BaseException):
        raise Failed(f"planning failed: {one_line(answer)}")
    message_id = answer["message_id"]
    if answer.get("duplicate"):
        click.echo(f"same idempotency key as message {message_id}: nothing sent again; its states:")
    total = int(store.message(message_id).get("recipients") or 0)
    final = {state.value for state in FINAL}
    while True:
        counts = store.counts(message_id)
        done = sum(n for state, n in counts.items() if state in final)
        if done >= total or time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    tz = zone(store.settings)
    if total <= SHOWN_AFTER_WAIT:
        for phone, record in sorted(store.records(message_id).items()):
            click.echo(_row(phone, record, tz))
    click.echo("  ".join(f"{state} {n:,}" for state, n in counts.most_common()))
    if done < total:
        raise Failed(f"{total - done:,} of {total:,} recipients not final after {wait:g} s")
    if counts.get("delivered", 0) < total:
        raise Failed(f"{total - counts.get('delivered', 0):,} of {total:,} recipients not delivered")


# -- status ---------------------------------------------------------------------------------------------


@click.command(short_help="A message's (or campaign's) recipients by state, vendors, retries; --json.")
@click.argument("message_id")
@click.option("--recipients", "show", is_flag=True, help="list every recipient (phones masked)")
@click.option(
    "--state", "states", multiple=True, metavar="STATE",
    help="list the recipients in this state (repeatable): queued, retry, sending, submitted, delivered, ...",
)
@click.option("--phone", default=None, help="show this recipient (any spelling send_sms accepts)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object: meta, counts, vendors, recipients")
def status(message_id: str, show: bool, states: tuple[str, ...], phone: str | None, as_json: bool) -> None:
    """Where message (or campaign) MESSAGE_ID stands: its meta, recipients by state, the vendors
    actually used (recipients per vendor, failovers included) and, with --recipients, --state or
    --phone, the recipients themselves: phone (masked), state, vendor, code, last change, text; for
    one in retry, its reason and next attempt. Times are in settings.campaign.timezone (Asia/Shanghai
    by default), with their offset.

    Exit 0; 3 if there is no such message (or no such recipient with --phone); 2 for a bad --state or
    --phone.

    \b
    Examples:
      smsdispatch status 9f1c2e...                    # counts and vendors
      smsdispatch status 9f1c2e... --state retry      # who waits, why, and until when
      smsdispatch status 9f1c2e... --phone 13800138000
      smsdispatch status 9f1c2e... --json | jq .counts
    """
    from worker.store import State

    known = {s.value for s in State}
    for wanted in states:
        if wanted not in known:
            raise BadInput(f"--state: {wanted!r} is not a state ({', '.join(sorted(known))})")
    number = _phone(phone) if phone is not None else None
    store = open_store()
    overview = _overview(store, message_id)
    if number is not None and store.recipient(message_id, number) is None:
        raise NotFound(f"no recipient {mask(number)} in message {message_id}")
    listing = show or bool(states) or number is not None
    pages = _pages(store, message_id, set(states), number) if listing else iter(())
    if as_json:
        rows = [row for page in pages for row in page]
        waits = store.next_attempts(message_id, [p for p, rec in rows if rec.state == State.RETRY])
        click.echo(json.dumps(_document(overview, rows, waits), ensure_ascii=False))
        return
    _print_summary(overview)
    if listing:
        click.echo("")
    shown = 0
    for page in pages:  # printed page by page: a million recipients are never held at once
        waits = store.next_attempts(message_id, [p for p, rec in page if rec.state == State.RETRY])
        for phone_, record in page:
            click.echo(_row(phone_, record, overview.tz, waits.get(phone_)))
        shown += len(page)
    if listing and not shown:
        click.echo("no recipient matches", err=True)


@dataclass(frozen=True, slots=True)
class Overview:
    """What ``status`` shows of a message above its recipients."""

    id: str
    meta: dict[str, str]
    counts: Counter[str]
    parts: int | None
    vendors: dict[str, Counter[str]]
    tz: ZoneInfo


def _overview(store: Store, message_id: str) -> Overview:
    meta = store.message(message_id)
    counts = store.counts(message_id)
    if not meta and not counts:
        shown = printable(message_id[:80])  # as typed, but never a terminal escape
        raise NotFound(f"no message {shown} (unknown, or older than the retention)")
    parts = store.progress(message_id).get("parts")
    return Overview(message_id, meta, counts, parts, store.vendor_counts(message_id), zone(store.settings))


def _phone(raw: str) -> str:
    try:
        return normalize(raw)
    except PhoneError as exc:
        raise BadInput(f"--phone: {exc}") from None


def _pages(
    store: Store, message_id: str, states: set[str], phone: str | None
) -> Iterator[list[tuple[str, Record]]]:
    """The recipients asked for, a page at a time: one phone (HGET), else the hash in HSCAN pages, only
    those in ``states`` if any."""
    if phone is not None:
        record = store.recipient(message_id, phone)
        if record is not None and (not states or record.state in states):
            yield [(phone, record)]
        return
    cursor = 0
    while True:
        page = store.recipients_page(message_id, cursor, count=1000, states=states or None)
        yield page.recipients
        cursor = page.cursor
        if cursor == 0:
            return


def _print_summary(overview: Overview) -> None:
    meta, tz = overview.meta, overview.tz
    lines = {
        "message": overview.id,
        "kind": meta.get("kind", ""),
        "template": meta.get("template", "") or "(content)",
        "created": local_time(int(meta.get("created_ms") or 0), tz),
        "recipients": f"{int(meta.get('recipients') or 0):,}"
        + (f" in {int(meta['chunks']):,} chunks" if meta.get("chunks") else ""),
        "planned": meta.get("providers", "") or "-",
        "vendors": _vendors_line(overview.vendors),
    }
    if meta.get("campaign") == "1":
        lines["campaign"] = f"yes: smsdispatch campaign status {overview.id}"
    for key, value in lines.items():
        click.echo(f"{key:<11}{value}")
    click.echo("")
    for state_name, n in overview.counts.most_common():
        click.echo(f"{state_name:<14}{n:>9,}")
    if overview.parts:
        click.echo(f"{'billed parts':<14}{overview.parts:>9,}")


def _vendors_line(vendors: dict[str, Counter[str]]) -> str:
    """The vendors the recipients went through, most used first (not the routing's plan)."""
    used = sorted(((name, sum(c.values())) for name, c in vendors.items() if name), key=lambda x: -x[1])
    return ", ".join(f"{name} ({n:,})" for name, n in used) or "none yet"


def _row(phone: str, record: Record, tz: ZoneInfo, wait: NextAttempt | None = None) -> str:
    line = f"{mask(phone):<16}{record.state:<13}{record.provider or '-':<10}{record.code or '-':<10}"
    line += f"{local_time(record.updated_ms, tz)}  {printable(mask(record.text))}"
    if record.state == "retry":
        line += f"  next attempt {_next(wait, tz)}"
    return line.rstrip()


def _next(wait: NextAttempt | None, tz: ZoneInfo) -> str:
    if wait is None:
        return "unknown (no open chunk holds it: the lease sweep will find it)"
    approx = "" if wait.exact else "about "
    delta = wait.at_ms / 1000 - time.time()
    when = f"in {span(delta)}" if delta > 0 else "due now"
    return f"{approx}{local_time(wait.at_ms, tz)} ({when}, attempt {wait.attempt + 1})"


def _document(
    overview: Overview, rows: Sequence[tuple[str, Record]], waits: dict[str, NextAttempt]
) -> dict[str, Any]:
    """``status --json``: stable keys; times as ISO 8601 with the zone's offset and as ms."""
    meta, tz = overview.meta, overview.tz
    created_ms = int(meta.get("created_ms") or 0)
    return {
        "id": overview.id,
        "timezone": tz.key,
        "meta": {
            "kind": meta.get("kind", ""),
            "template": meta.get("template", ""),
            "recipients": int(meta.get("recipients") or 0),
            "chunks": int(meta.get("chunks") or 0),
            "planned": [p for p in meta.get("providers", "").split(",") if p],
            "campaign": meta.get("campaign") == "1",
            "created": iso_time(created_ms, tz),
            "created_ms": created_ms,
        },
        "counts": dict(overview.counts),
        "parts": overview.parts,
        "vendors": {name: dict(c) for name, c in overview.vendors.items() if name},
        "recipients": [_recipient(phone, record, waits.get(phone), tz) for phone, record in rows],
    }


def _recipient(phone: str, record: Record, wait: NextAttempt | None, tz: ZoneInfo) -> dict[str, Any]:
    data: dict[str, Any] = {
        "phone": mask(phone),
        "state": record.state.value,
        "vendor": record.provider,
        "code": record.code,
        "text": mask(record.text),
        "updated": iso_time(record.updated_ms, tz),
        "updated_ms": record.updated_ms,
        "parts": record.fee,
    }
    if record.state == "retry":
        data["next_attempt"] = None if wait is None else {
            "at": iso_time(wait.at_ms, tz),
            "at_ms": wait.at_ms,
            "attempt": wait.attempt + 1,
            "exact": wait.exact,
        }
    return data
