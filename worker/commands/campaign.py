"""``smsdispatch campaign submit|list|status|pause|resume|cancel|report``: bulk campaigns from the command
line, over ``worker.campaign.intake`` (reading and admitting the file) and ``worker.campaign.control``
(looking and steering); nothing here touches Redis keys itself.

``submit --follow`` draws a live progress bar (rich) until the campaign is done; Ctrl-C only stops the
following, never the campaign.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO
from zoneinfo import ZoneInfo

import click

from worker.console import (
    BadInput,
    Failed,
    NotFound,
    Refused,
    one_line,
    open_store,
    parse_params,
    span,
    zone,
)

if TYPE_CHECKING:
    from rich.console import Console

    from worker.campaign.control import CampaignView
    from worker.campaign.intake import CampaignSpec, Totals
    from worker.store import Store

FOLLOW_TICK_S = 0.5
PLAIN_EVERY_S = 5.0  # not a terminal: a progress line this often
SHOWN_REJECTS = 10  # refused rows printed (all are in the rejects file)
RATE_WINDOW_S = 10.0  # the rate shown is over the last this many seconds
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_PENDING = ("queued", "retry", "sending")
_SHOWN_STATES = ("submitted", "delivered", "failed", "rejected", "rate_limited", "opted_out", "cancelled",
                 "retry")


def register(main: click.Group) -> None:
    main.add_command(campaign)


def escape(text: str) -> str:
    """``text`` shown as typed where rich reads markup (a campaign or file named ``a[/]b``); rich is
    imported late: every ``smsdispatch`` command imports this module."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


@click.group()
def campaign() -> None:
    """Bulk campaigns: a recipient file sent as a job, at the vendors' pace, that can be watched,
    paused, resumed, cancelled and reported on. A campaign's id is also a message id:
    `smsdispatch status ID --state failed` works on it.

    \b
    Examples:
      smsdispatch campaign submit customers.csv -t bill --dry-run
      smsdispatch campaign submit customers.csv -t bill --kind marketing --window 09:00-20:00 --follow
      smsdispatch campaign list
      smsdispatch campaign pause 3f2a...; smsdispatch campaign resume 3f2a...
      smsdispatch campaign report 3f2a... -o report.csv

    Exit codes: 0 ok, 1 failed (a followed campaign ended cancelled), 2 bad input (an option, the
    file), 3 no such campaign, 4 refused by its state or by admission (balance), 5 Redis unreachable.
    """


# -- submit ---------------------------------------------------------------------------------------------


@campaign.command(short_help="Check (--dry-run) or submit a recipient file; --follow shows progress.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-t", "--template", default=None, help="template name (config [templates.<name>])")
@click.option("--content", default=None, help="free text instead of a template (content-based vendors)")
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
              help="a parameter common to every row (a row's own column wins); repeatable")
@click.option("--kind", type=click.Choice(["notify", "marketing"]), default=None,
              help="marketing is held in quiet hours (campaign.quiet_hours) [default: notify]")
@click.option("--name", default=None, help="a name for lists and reports [default: the file's name]")
@click.option("--provider", default=None, help="force this vendor (default: the kind's route)")
@click.option("--start", default=None, metavar="ISO|HH:MM",
              help="start then (HH:MM: the next such time; zone: campaign.timezone unless given)")
@click.option("--window", default=None, metavar="HH:MM-HH:MM", help="send only in this span of each day")
@click.option("--encoding", default=None, help="utf-8, gbk, gb18030 [default: detected]")
@click.option("--dry-run", is_flag=True, help="check every row, count parts per vendor, send nothing")
@click.option("--force", is_flag=True, help="submit even if the parts exceed a vendor's known balance")
@click.option("--rejects", "rejects_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="where refused rows go, with line and reason [default: FILE.rejects.csv]")
@click.option("--follow", is_flag=True, help="then show a live progress bar until the campaign is done")
@click.option("--json", "as_json", is_flag=True, help="print the answer as one JSON object")
def submit(
    file: Path,
    template: str | None,
    content: str | None,
    params: tuple[str, ...],
    kind: str | None,
    name: str | None,
    provider: str | None,
    start: str | None,
    window: str | None,
    encoding: str | None,
    dry_run: bool,
    force: bool,
    rejects_path: Path | None,
    follow: bool,
    as_json: bool,
) -> None:
    """Submit FILE (CSV with a `phone` column and a column per template parameter, or JSONL
    `{"phone": ..., "params": {...}}`; UTF-8 with or without BOM, GBK/GB18030 detected) as a campaign.

    The file is streamed into Redis page by page: duplicates are dropped, refused rows go to the
    rejects file with their line number and reason, and the campaign runner feeds the vendors at their
    pace. A submission whose billed parts exceed a vendor's last known balance is refused (exit 4)
    unless --force.

    --dry-run checks every row, renders and counts the billed parts and prints, per vendor, the
    recipients, the parts and whether the known balance is enough; nothing is written.

    \b
    Examples:
      smsdispatch campaign submit customers.csv -t bill --dry-run
      smsdispatch campaign submit customers.csv -t bill -p month=11月 --follow
      smsdispatch campaign submit promo.jsonl --content "【商城】会员日八折，回T退订" --kind marketing \\
          --start 09:30 --window 09:00-20:00
    """
    from tasks.request import InvalidRequest
    from worker.campaign.intake import CampaignSpec

    store = open_store()
    tz = zone(store.settings)
    values: dict[str, Any] = {
        "name": name or file.name,
        "template": template,
        "content": content,
        "params": parse_params(params),
        "provider": provider,
        "start_at": parse_start(start, tz) if start else None,
        "window": window,
        "encoding": encoding,
    }
    if kind is not None:
        values["kind"] = kind
    try:
        spec = CampaignSpec(**values)
    except InvalidRequest as exc:
        raise BadInput(one_line(exc)) from None
    if dry_run:
        _dry_run(store, file, spec, as_json)
        return
    campaign_id = _submit(store, file, spec, rejects_path or file.with_name(file.name + ".rejects.csv"),
                          force, as_json)
    if follow:
        follow_campaign(store, campaign_id, _console())


def parse_start(raw: str, tz: ZoneInfo, now: datetime | None = None) -> datetime:
    """``--start``: ``HH:MM`` (the next such time in ``tz``) or an ISO 8601 time (in ``tz`` unless it
    has an offset), as an aware datetime; a one-line error for anything else."""
    text = raw.strip()
    now = now or datetime.now(tz)
    if match := _CLOCK.match(text):
        at = now.astimezone(tz).replace(hour=int(match[1]), minute=int(match[2]), second=0, microsecond=0)
        return at if at > now else at + timedelta(days=1)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(f"--start: {raw[:40]!r} is neither HH:MM nor an ISO 8601 time") from None
    return at if at.tzinfo else at.replace(tzinfo=tz)


@contextmanager
def _opened(file: Path) -> Iterator[BinaryIO]:
    try:
        with file.open("rb") as stream:
            yield stream
    except OSError as exc:
        raise BadInput(f"{file}: {exc.strerror or exc}") from None


def _dry_run(store: Store, file: Path, spec: CampaignSpec, as_json: bool) -> None:
    from tasks.request import InvalidRequest
    from worker.campaign.intake import dry_run

    with _opened(file) as stream:
        try:
            result = dry_run(stream, file.name, spec, store.settings, store)
        except InvalidRequest as exc:
            raise BadInput(one_line(exc)) from None
    if as_json:
        click.echo(json.dumps(result.to_json(), ensure_ascii=False))
        return
    print_totals(result, _console(), "dry run: nothing was written or sent")


def print_totals(result: Totals, console: Console, title: str) -> None:
    """An intake's answer: a table per vendor (recipients, billed parts, last known balance, enough?),
    the totals, the notes (balances never read, columns ignored) and the first refused rows."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("vendor", "recipients", "parts", "balance", "enough?"):
        table.add_column(column, justify="left" if column == "vendor" else "right")
    for name, vendor in sorted(result.vendors.items()):
        enough = {None: "unknown", True: "yes", False: "[bold red]NO[/]"}[vendor.enough]
        balance = "never read" if vendor.balance is None else f"{vendor.balance:,.0f} {vendor.item}".strip()
        table.add_row(name, f"{vendor.recipients:,}", f"{vendor.parts:,}", balance, enough)
    table.add_section()
    table.add_row("total", f"{result.accepted:,}", f"{result.parts:,}", "", "")
    console.print(table)
    console.print(f"rows {result.rows:,} ({result.format or '?'}, {result.encoding or '?'}): accepted "
                  f"{result.accepted:,}, duplicates {result.duplicates:,}, refused {result.rejected:,}",
                  markup=False)
    notes = result.notes()
    if result.ignored:
        notes.append(f"columns ignored (not parameters of the template): {', '.join(sorted(result.ignored))}")
    for note in notes:
        console.print(f"note: {note}", markup=False)
    for reject in result.rejects[:SHOWN_REJECTS]:
        console.print(f"  line {reject.line}: {reject.phone} {reject.reason}", markup=False)
    if result.rejected > SHOWN_REJECTS:
        console.print(f"  ... {result.rejected - SHOWN_REJECTS:,} more refused rows", markup=False)


def _submit(
    store: Store, file: Path, spec: CampaignSpec, rejects_path: Path, force: bool, as_json: bool
) -> str:
    """Submit the file; print the campaign id on stdout (the rest on stderr, so a script can take the
    id) and return it."""
    from tasks.request import InvalidRequest
    from worker.campaign.intake import AdmissionRefused, submit

    console = _console(stderr=True)
    try:
        rejects = rejects_path.open("w", encoding="utf-8", newline="")
    except OSError as exc:
        raise BadInput(f"--rejects: {rejects_path}: {exc.strerror or exc}") from None
    try:
        shown = escape(file.name)
        with _opened(file) as stream, rejects, console.status(f"reading {shown}") as status:
            def progress(rows: int) -> None:
                status.update(f"reading {shown}: {rows:,} rows")

            result = submit(stream, file.name, spec, store.settings, store, rejects, force, progress)
    except AdmissionRefused as exc:
        raise Refused(f"{one_line(exc)} (--force submits anyway)") from None
    except InvalidRequest as exc:
        raise BadInput(one_line(exc)) from None
    finally:
        _drop_if_empty(rejects_path)
    if as_json:
        click.echo(json.dumps(result.to_json(), ensure_ascii=False))
        return result.id
    click.echo(result.id)
    print_totals(result, console, f"campaign {result.id}: {result.status}")
    if result.rejected:
        console.print(f"refused rows, with line and reason: {rejects_path}", markup=False)
    return result.id


def _drop_if_empty(rejects_path: Path) -> None:
    """Remove a rejects file that holds only its header (nothing was refused)."""
    try:
        with rejects_path.open(encoding="utf-8") as written:
            if sum(1 for _ in written) <= 1:
                rejects_path.unlink()
    except OSError:
        pass


# -- follow ---------------------------------------------------------------------------------------------


class Rate:
    """Recipients sent per second over the last ``RATE_WINDOW_S`` seconds."""

    def __init__(self) -> None:
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, at: float, sent: int) -> float:
        self.samples.append((at, sent))
        while len(self.samples) > 2 and at - self.samples[0][0] > RATE_WINDOW_S:
            self.samples.popleft()
        first_at, first = self.samples[0]
        return (sent - first) / (at - first_at) if at > first_at else 0.0


def sent_of(view: CampaignView) -> int:
    """Recipients that left the queue (with a vendor, settled, refused or cancelled)."""
    return max(0, view.accepted - sum(view.counts.get(state, 0) for state in _PENDING))


def counts_line(view: CampaignView) -> str:
    shown = [f"{state} {view.counts[state]:,}" for state in _SHOWN_STATES if view.counts.get(state)]
    parts = f" | parts {view.parts:,}" if view.parts else ""
    return "  ".join(shown) + parts or "nothing sent yet"


def held_line(view: CampaignView, tz: ZoneInfo) -> str:
    """Why the campaign is not sending now, if it is not (paused, scheduled, held)."""
    if view.status == "paused":
        why = f" ({view.error})" if view.error else ""
        return f"paused{why}: smsdispatch campaign resume {view.id}"
    if view.status == "scheduled" and view.start is not None:
        return f"scheduled: starts {view.start.astimezone(tz):%Y-%m-%d %H:%M %Z}"
    if view.held_reason:
        until = f" until {view.held_until.astimezone(tz):%Y-%m-%d %H:%M %Z}" if view.held_until else ""
        return f"held ({view.held_reason}){until}"
    return ""


def eta(view: CampaignView, sent: int, per_s: float) -> str:
    if view.done:
        return "0 s"
    return span((view.accepted - sent) / per_s) if per_s > 0 else "?"


class LiveBar:
    """A terminal's view of a followed campaign: a rich progress bar (sent of accepted, percentage,
    rate, ETA) redrawn in place, with the counts by state and any hold below it."""

    def __init__(self, console: Console, title: str, total: int) -> None:
        from rich.console import Group
        from rich.live import Live
        from rich.progress import BarColumn, Progress, TextColumn
        from rich.text import Text

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f}  {task.percentage:>5.1f}%  "
                       "{task.fields[rate]}/s  ETA {task.fields[eta]}"),
            console=console,
            auto_refresh=False,
        )
        self.task = self.progress.add_task(escape(title), total=max(total, 1), rate="0", eta="?")
        self.below = Text()
        self.live = Live(Group(self.progress, self.below), console=console, auto_refresh=False)

    def __enter__(self) -> LiveBar:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def show(self, view: CampaignView, sent: int, per_s: float, tz: ZoneInfo) -> None:
        self.progress.update(self.task, completed=sent, total=max(view.accepted, 1), rate=f"{per_s:,.0f}",
                             eta=eta(view, sent, per_s))
        self.below.plain = "\n".join(filter(None, [counts_line(view), held_line(view, tz)]))
        self.live.refresh()


class PlainLines:
    """Not a terminal (a pipe, a log, CI): a line every ``PLAIN_EVERY_S`` seconds, and when the status
    changes or the campaign ends, instead of a bar redrawn in place."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.last_at = -PLAIN_EVERY_S
        self.last_status = ""

    def __enter__(self) -> PlainLines:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def show(self, view: CampaignView, sent: int, per_s: float, tz: ZoneInfo) -> None:
        at = time.monotonic()
        if at - self.last_at < PLAIN_EVERY_S and view.status == self.last_status and not view.done:
            return
        self.last_at, self.last_status = at, view.status
        share = 100 * sent / view.accepted if view.accepted else 100.0
        line = (f"{datetime.now(tz):%H:%M:%S} {view.status} sent {sent:,}/{view.accepted:,} ({share:.1f}%) "
                f"{per_s:,.0f}/s ETA {eta(view, sent, per_s)} | {counts_line(view)}")
        if hold := held_line(view, tz):
            line += f" | {hold}"
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)


def follow_campaign(store: Store, campaign_id: str, console: Console, tick_s: float = FOLLOW_TICK_S) -> None:
    """Show the campaign's progress until it ends: recipients sent out of those accepted, the rate, the
    ETA and the counts by state (a live bar on a terminal, a line every few seconds otherwise). Ctrl-C
    stops following only. Exit 1 if it ended cancelled."""
    from worker.campaign.control import get_campaign

    tz = zone(store.settings)
    view = _view(store, campaign_id)
    title = view.name or campaign_id[:8]
    screen = LiveBar(console, title, view.accepted) if console.is_terminal else PlainLines(console)
    rate = Rate()
    try:
        with screen:
            while True:
                sent = sent_of(view)
                screen.show(view, sent, rate.add(time.monotonic(), sent), tz)
                if view.done:
                    break
                time.sleep(tick_s)
                view = get_campaign(store, campaign_id)
    except KeyboardInterrupt:
        console.print(f"stopped following; campaign {campaign_id} keeps running "
                      f"(smsdispatch campaign status {campaign_id} --follow)", highlight=False)
        return
    took = ""
    if view.finished is not None:
        took = f" in {span((view.finished - view.created).total_seconds())}"
    console.print(f"campaign {campaign_id} {view.status}{took}", highlight=False)
    if waiting := view.counts.get("submitted", 0):
        console.print(f"{waiting:,} sent, their receipts still to come (smsdispatch campaign status "
                      f"{campaign_id})", highlight=False)
    if view.status != "done":
        raise Failed(f"campaign {campaign_id} ended {view.status}{': ' + view.error if view.error else ''}")


# -- list, status, control, report ----------------------------------------------------------------------


def _view(store: Store, campaign_id: str) -> CampaignView:
    from worker.campaign.control import UnknownCampaign, get_campaign

    try:
        return get_campaign(store, campaign_id)
    except UnknownCampaign as exc:
        raise NotFound(one_line(exc)) from None


@campaign.command(name="list")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000), help="newest N")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per campaign")
def list_(limit: int, as_json: bool) -> None:
    """The newest campaigns: id, name, kind, status, created, accepted, sent, billed parts.

    \b
    Examples:
      smsdispatch campaign list --limit 5
      smsdispatch campaign list --json | jq -r 'select(.status == "running") | .id'
    """
    from rich.table import Table

    from worker.campaign.control import list_campaigns

    store = open_store()
    views = list_campaigns(store, limit)
    if as_json:
        for view in views:
            click.echo(json.dumps(view.to_json(), ensure_ascii=False))
        return
    if not views:
        click.echo("no campaigns", err=True)
        return
    tz = zone(store.settings)
    table = Table()
    for column in ("id", "name", "kind", "status", "created", "accepted", "sent", "parts"):
        table.add_column(column, justify="right" if column in ("accepted", "sent", "parts") else "left",
                         no_wrap=column == "id")
    for view in views:
        status = view.status + (f" ({view.held_reason})" if view.held_reason and not view.done else "")
        created = f"{view.created.astimezone(tz):%m-%d %H:%M}"
        table.add_row(view.id, escape(view.name), view.kind, escape(status), created, f"{view.accepted:,}",
                      f"{sent_of(view):,}", f"{view.parts:,}")
    _console().print(table)


@campaign.command()
@click.argument("campaign_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="one JSON object: the campaign and its summary")
@click.option("--follow", is_flag=True, help="then show a live progress bar until it is done")
def status(campaign_id: str, as_json: bool, follow: bool) -> None:
    """Campaign ID: status (held, and why), times in campaign.timezone, rows accepted and refused,
    recipients by state, billed parts (planned and so far). With --follow, the live progress bar of
    `submit --follow` (exit 1 if the campaign ends cancelled).

    \b
    Examples:
      smsdispatch campaign status 3f2a...
      smsdispatch campaign status 3f2a... --follow
      smsdispatch campaign status 3f2a... --json | jq .summary.pending
    """
    from worker.campaign.control import summary

    store = open_store()
    view = _view(store, campaign_id)
    if as_json:
        click.echo(json.dumps({**view.to_json(), "summary": summary(view)}, ensure_ascii=False))
    else:
        print_view(view, zone(store.settings), _console())
    if follow:
        follow_campaign(store, campaign_id, _console())


def print_view(view: CampaignView, tz: ZoneInfo, console: Console) -> None:
    def when(at: datetime | None) -> str:
        return at.astimezone(tz).isoformat(sep=" ", timespec="seconds") if at else "-"

    lines = {
        "campaign": view.id,
        "name": view.name,
        "kind": view.kind,
        "status": view.status + (f"  [{held_line(view, tz)}]" if held_line(view, tz) else ""),
        "created": when(view.created),
        "start": when(view.start) if view.start else "at once",
        "window": view.window or "-",
        "finished": when(view.finished),
        "rows": f"{view.rows:,}: accepted {view.accepted:,}, duplicates {view.duplicates:,}, "
        f"refused {view.rejected:,}",
        "sent": f"{sent_of(view):,} of {view.accepted:,}",
        "parts": f"{view.parts:,} billed so far, {view.planned_parts:,} planned",
    }
    if view.error:
        lines["error"] = view.error
    for key, value in lines.items():
        console.print(f"{key:<10}{value}", markup=False, highlight=False)
    console.print("")
    for state, n in view.counts.items():
        if n:
            console.print(f"{state:<14}{n:>11,}", highlight=False)


def _control(action: Callable[[Store, str], CampaignView], campaign_id: str, done: str) -> None:
    from worker.campaign.control import CampaignStateError, UnknownCampaign

    store = open_store()
    try:
        view = action(store, campaign_id)
    except UnknownCampaign as exc:
        raise NotFound(one_line(exc)) from None
    except CampaignStateError as exc:
        raise Refused(one_line(exc)) from None
    click.echo(f"campaign {view.id}: {done} (status {view.status})")


@campaign.command()
@click.argument("campaign_id", metavar="ID")
def pause(campaign_id: str) -> None:
    """Stop sending campaign ID: chunks not yet claimed wait until `resume` (those already with a
    vendor finish). Exit 4 if it cannot be paused (done, cancelled)."""
    from worker.campaign.control import pause as act

    _control(act, campaign_id, "paused")


@campaign.command()
@click.argument("campaign_id", metavar="ID")
def resume(campaign_id: str) -> None:
    """Go on with paused campaign ID from where it stopped. Exit 4 if it cannot be resumed
    (cancelled, done)."""
    from worker.campaign.control import resume as act

    _control(act, campaign_id, "resumed")


@campaign.command()
@click.argument("campaign_id", metavar="ID")
def cancel(campaign_id: str) -> None:
    """Send nothing more of campaign ID: recipients not yet claimed are recorded `cancelled`; those
    already with a vendor keep their outcome. Exit 4 if it is already done."""
    from worker.campaign.control import cancel as act

    _control(act, campaign_id, "cancelling")


@campaign.command()
@click.argument("campaign_id", metavar="ID")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the CSV here [default: stdout]")
def report(campaign_id: str, output: Path | None) -> None:
    """Campaign ID's report: one CSV line per recipient (phone, state, vendor, code, text, updated with
    its zone, parts), streamed from Redis, in no particular order.

    \b
    Examples:
      smsdispatch campaign report 3f2a... -o report.csv
      smsdispatch campaign report 3f2a... | grep ',failed,'
    """
    from worker.campaign.control import UnknownCampaign, write_report

    store = open_store()
    _view(store, campaign_id)  # not found: exit 3 before a file is created
    try:
        with _output(output) as out:
            write_report(store, campaign_id, out)
    except UnknownCampaign as exc:
        raise NotFound(one_line(exc)) from None
    if output is not None:
        click.echo(f"report of campaign {campaign_id} written to {output}", err=True)


@contextmanager
def _output(path: Path | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    try:
        stream = path.open("w", encoding="utf-8", newline="")
    except OSError as exc:
        raise BadInput(f"--output: {path}: {exc.strerror or exc}") from None
    with stream:
        yield stream


def _console(stderr: bool = False) -> Console:
    """A rich console on the current stdout (or stderr), made per call so click's test runner sees it;
    wide when it is not a terminal (a pipe, a file), so rows are not cut to 80 columns."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, highlight=False, width=None if stream.isatty() else 160)
