"""Campaign intake: a recipient file and a ``CampaignSpec`` checked (``dry_run``) or written into Redis
for the runner (``submit``), page by page, never held whole.

A bad spec is refused with ``InvalidRequest`` naming the field, as ``send_sms`` refuses a bad request
(its validators are ``tasks.request``'s). A campaign is notify or marketing, never an OTP: an OTP cannot
wait behind a campaign's pacing, quiet hours or a start time.

Each page of up to ``PAGE_ROWS`` rows goes through what the runner will do with it when it feeds it:
the phones normalized, ``validate_request`` and ``build_plan`` (routing, rendering, the vendor's rules)
with each row's own parameters (the template's; other columns are ignored, and said so), then billed
parts counted per recipient (``providers.text.sms_parts`` with the routed vendor's signature). A row
refused on the way goes to the rejects sink (CSV ``line,phone,reason``, the phone masked) and the first
``campaign.rejects_shown`` into the answer. A number met again is a duplicate, not sent twice: within a
page whatever became of its first row, across pages once an earlier row was accepted (the recipient's
record is how ``Store.campaign_append`` knows; refused rows are not recorded).

The admission check: the parts per vendor against its last known balance (``Store.balances``; the
reading of the campaign's kind where the vendor keeps several). ``submit`` is refused
(``AdmissionRefused``) as soon as a vendor's parts exceed its known balance, unless forced; an unknown
balance admits, and the answer says so. A submission that fails or is refused drops what it wrote.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO, Literal, NamedTuple, TextIO
from zoneinfo import ZoneInfo

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from config.campaign import check_span
from config.settings import PROVIDERS, Settings
from providers.phones import PhoneError, normalize, shown
from tasks.plan import ChunkSpec, build_plan
from tasks.request import (
    MAX_CONTENT_CHARS,
    MAX_PROBLEMS,
    FieldProblem,
    InvalidRequest,
    SendInput,
    describe_error,
    param_values,
    validate_request,
)
from worker.campaign.files import Row, RowError, Rows, check_encoding, read_rows
from worker.campaign.seen import PhoneSet
from worker.store import Store, now_ms
from worker.store.campaigns import PAGE_ROWS
from worker.store.vendors import BalanceReading

log = structlog.get_logger(__name__)
MAX_NAME_CHARS = 128
SUBMITTING_TTL_S = 600  # an intake's keys expire this long after its last page unless it completes
MAX_IGNORED = 20  # ignored column names kept for the answer
PROBE_PHONE = "13800000000"
# Which balance item a kind draws on, where a vendor keeps several (Infocloud: 行业短信, 会员短信, 推广短信).
KIND_ITEMS = {"notify": ("行业", "notify", "industry"), "marketing": ("推广", "会员", "marketing")}
POST_PAID = "postcharge"  # Xiaorui's chargeType of a post-paid account: its balance is no limit


class CampaignSpec(BaseModel):
    """What a campaign sends: a template (with parameters common to every row; a row's own win) or a
    content, its kind, an optional forced vendor, start time (naive: in ``campaign.timezone``) and
    daily window, and the file's encoding (None: detected)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("", max_length=MAX_NAME_CHARS, description="for lists and reports (default: file name)")
    template: str | None = Field(None, min_length=1, max_length=128)
    content: str | None = Field(None, max_length=MAX_CONTENT_CHARS)
    params: dict[str, str] = Field(default_factory=dict)
    kind: Literal["notify", "marketing"] = "notify"
    provider: str | None = Field(None, max_length=64)
    start_at: datetime | None = None
    window: str | None = None
    encoding: str | None = None

    def __init__(self, **data: Any) -> None:
        """As pydantic builds it, but a refusal is ``InvalidRequest`` naming each field, in one line."""
        try:
            super().__init__(**data)
        except ValidationError as exc:
            problems = [describe_error(error) for error in exc.errors()[:MAX_PROBLEMS]]
            raise InvalidRequest("; ".join(problems)) from None

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, value: object) -> object:
        if value == "otp":
            raise FieldProblem("kind", "a campaign is not an OTP (send_sms sends those): notify or marketing")
        return value

    @field_validator("params", mode="before")
    @classmethod
    def _params(cls, value: object) -> dict[str, str]:
        return param_values(value, "params")

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, value: object) -> str | None:
        return _optional(value, "window", check_span, "HH:MM-HH:MM")

    @field_validator("encoding", mode="before")
    @classmethod
    def _encoding(cls, value: object) -> str | None:
        return _optional(value, "encoding", check_encoding, "a name like gbk")

    @model_validator(mode="after")
    def _shape(self) -> CampaignSpec:
        """What ``send_sms`` requires of the same fields (``SendInput``'s own checks: one of template or
        content, a known provider)."""
        shape = {"template": self.template, "content": self.content, "provider": self.provider}
        try:
            SendInput.model_validate({"to": PROBE_PHONE, **shape})
        except ValidationError as exc:
            error = exc.errors()[0]
            cause = (error.get("ctx") or {}).get("error")
            if isinstance(cause, FieldProblem):
                raise cause from None
            raise FieldProblem("campaign", describe_error(error)) from None
        return self


def _optional(value: object, name: str, check: Callable[[str], str], expected: str) -> str | None:
    """An optional text setting: None when empty, else ``check``'s answer, its ValueError naming ``name``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise FieldProblem(name, f"expected {expected}, got {type(value).__name__}")
    try:
        return check(value)
    except ValueError as exc:
        raise FieldProblem(name, str(exc)) from None


class AdmissionRefused(InvalidRequest):
    """The campaign needs more billed parts than a vendor's last known balance (``force`` submits it)."""


class Accepted(NamedTuple):
    """A row that will be sent: its phone (normalized), own parameters, vendor and billed parts."""

    phone: str
    own: dict[str, str] | None
    provider: str
    parts: int


@dataclass(frozen=True, slots=True)
class Reject:
    line: int
    phone: str  # as given, masked (``providers.phones.shown``)
    reason: str


@dataclass
class VendorTotal:
    """One vendor's share of a campaign, and its last known balance (None: never read)."""

    recipients: int = 0
    parts: int = 0
    balance: float | None = None
    item: str = ""
    read_ms: int = 0

    @property
    def enough(self) -> bool | None:
        return None if self.balance is None else self.parts <= self.balance

    def to_json(self) -> dict[str, Any]:
        return {
            "recipients": self.recipients,
            "parts": self.parts,
            "balance": self.balance,
            "balance_item": self.item,
            "balance_read_ms": self.read_ms,
            "enough": self.enough,
        }


@dataclass
class Totals:
    """What an intake counted: rows read, accepted, duplicates, refused, billed parts, per vendor."""

    rows: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    parts: int = 0
    vendors: dict[str, VendorTotal] = field(default_factory=dict)
    rejects: list[Reject] = field(default_factory=list)
    ignored: set[str] = field(default_factory=set)
    encoding: str = ""
    format: str = ""

    def add(self, page: list[Accepted], duplicates: Iterable[int]) -> None:
        """Count a page of accepted rows, but those at the positions ``duplicates``."""
        dups = set(duplicates)
        self.duplicates += len(dups)
        for position, row in enumerate(page):
            if position in dups:
                continue
            vendor = self.vendors[row.provider]
            vendor.recipients += 1
            vendor.parts += row.parts
            self.accepted += 1
            self.parts += row.parts

    def notes(self) -> list[str]:
        return [
            f"{name}: balance unknown (never read): admitted without a check"
            for name, vendor in sorted(self.vendors.items())
            if vendor.balance is None
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "parts": self.parts,
            "vendors": {name: vendor.to_json() for name, vendor in sorted(self.vendors.items())},
            "rejects": [{"line": r.line, "phone": r.phone, "reason": r.reason} for r in self.rejects],
            "ignored_columns": sorted(self.ignored),
            "encoding": self.encoding,
            "format": self.format,
            "notes": self.notes(),
        }


@dataclass
class DryRun(Totals):
    """A dry run's answer: nothing was written."""


@dataclass
class Submitted(Totals):
    """A submission's answer: the campaign's id, its status (scheduled or running) and start (ms, 0:
    at once)."""

    id: str = ""
    status: str = ""
    start_ms: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "start_ms": self.start_ms, **super().to_json()}


# -- the two entry points -----------------------------------------------------------------------------


def dry_run(stream: BinaryIO, filename: str, spec: CampaignSpec, settings: Settings, store: Store) -> DryRun:
    """Check every row, render and count parts per vendor, against the known balances; write nothing."""
    start_ms(spec, settings)
    result = DryRun()
    seen = PhoneSet()
    rows = read_rows(stream, filename, spec.encoding)
    for page in _Intake(spec, settings, store, result, None).pages(rows):
        result.add(page, [i for i, row in enumerate(page) if not seen.add(row.phone)])
    result.encoding, result.format = rows.encoding, rows.format
    return result


def submit(
    stream: BinaryIO,
    filename: str,
    spec: CampaignSpec,
    settings: Settings,
    store: Store,
    rejects: TextIO | None = None,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Submitted:
    """Stream the file into a new campaign (pages of accepted rows, recipients recorded queued) and hand
    it to the runner. ``AdmissionRefused`` when a vendor's known balance is short (unless ``force``),
    ``InvalidRequest`` for a bad spec or file; either way, and on any other error, nothing is left."""
    start = start_ms(spec, settings)
    rows = read_rows(stream, filename, spec.encoding)
    result = Submitted(id=uuid.uuid4().hex, start_ms=start)
    intake = _Intake(spec, settings, store, result, rejects)
    store.create_campaign(result.id, _meta(spec, filename, start), SUBMITTING_TTL_S)
    try:
        seq = 0
        for page in intake.pages(rows):
            if page:
                seq += 1
                rows_of_page = [(row.phone, row.own) for row in page]
                dups = store.campaign_append(result.id, seq, rows_of_page, SUBMITTING_TTL_S)
                result.add(page, dups)
                _admit(result, force, settings)
            if progress is not None:
                progress(result.rows)
        if not result.accepted:
            raise InvalidRequest(f"file: no recipient accepted ({result.rows:,} rows: {_why_none(result)})")
        result.encoding, result.format = rows.encoding, rows.format
        totals: dict[str, str | int] = {"rows": result.rows, "rejected": result.rejected}
        totals["duplicates"] = result.duplicates  # the page's own repeats too, beside campaign_append's
        totals.update(parts=result.parts, encoding=result.encoding)
        result.status = store.campaign_ready(result.id, start, totals)
    except BaseException as exc:
        _drop(store, result.id, exc)
        raise
    log.info("campaign submitted", campaign_id=result.id, rows=result.rows, accepted=result.accepted,
             parts=result.parts, status=result.status)
    return result


def start_ms(spec: CampaignSpec, settings: Settings) -> int:
    """When the campaign starts, in ms (0: at once); a naive ``start_at`` is in ``campaign.timezone``.
    Refused when the campaign would expire (``retention_s``) before half of it has passed."""
    if spec.start_at is None:
        return 0
    at = spec.start_at
    if at.tzinfo is None:
        at = at.replace(tzinfo=ZoneInfo(settings.campaign.timezone))
    ms = int(at.timestamp() * 1000)
    ahead_s = (ms - now_ms()) / 1000
    if ahead_s > settings.retention_s / 2:
        raise InvalidRequest(
            f"start_at: {at.isoformat()} is {ahead_s / 86400:.1f} days ahead; a campaign is kept "
            f"retention_s ({settings.retention_s} s) after submission: start it within half of that"
        )
    return max(ms, 0)


def _meta(spec: CampaignSpec, filename: str, start: int) -> dict[str, str | int]:
    """The campaign's meta as created (README "Campaigns": every field, counts at 0)."""
    meta: dict[str, str | int] = {
        "name": spec.name or filename[:MAX_NAME_CHARS],
        "kind": spec.kind,
        "template": spec.template or "",
        "content": spec.content or "",
        "params": json.dumps(spec.params, ensure_ascii=False),
        "provider": spec.provider or "",
        "window": spec.window or "",
        "start_ms": start,
        "created_ms": now_ms(),
        "encoding": spec.encoding or "",
        "file": filename.replace("\\", "/").rsplit("/", 1)[-1][:200],
        "held_reason": "",
    }
    counts = ("rows", "accepted", "rejected", "duplicates", "pages", "fed", "chunks_fed", "parts")
    return {**meta, **dict.fromkeys(counts, 0), "held_until_ms": 0, "finished_ms": 0, "error": ""}


def _admit(result: Totals, force: bool, settings: Settings) -> None:
    """Refuse once a vendor's parts exceed its known balance (unless ``force``)."""
    if force:
        return
    zone = ZoneInfo(settings.campaign.timezone)
    for name, vendor in result.vendors.items():
        if vendor.enough is False:
            read = datetime.fromtimestamp(vendor.read_ms / 1000, zone).isoformat(timespec="minutes")
            raise AdmissionRefused(
                f"admission: {name} needs more than {vendor.parts:,} billed parts (counted to row "
                f"{result.rows:,}), its last known balance is {vendor.balance:,.0f} "
                f"({vendor.item or 'balance'}, read {read}); a dry run gives the totals"
            )


def _why_none(result: Totals) -> str:
    if result.rejects:
        return f"line {result.rejects[0].line}: {result.rejects[0].reason}"
    return "all duplicates" if result.duplicates else "no data rows"


def _drop(store: Store, campaign_id: str, exc: BaseException) -> None:
    """Drop what a failed intake wrote; if even that fails, say that its keys expire soon."""
    try:
        store.drop_campaign(campaign_id)
    except Exception as drop_error:  # noqa: BLE001 - the first error is the one raised
        exc.add_note(
            f"campaign {campaign_id} could not be dropped ({type(drop_error).__name__}); what the intake "
            f"wrote expires within {SUBMITTING_TTL_S} s"
        )
    else:
        log.info("campaign intake dropped", campaign_id=campaign_id, error=type(exc).__name__)


# -- a page at a time -----------------------------------------------------------------------------------


class _Intake:
    """Turns a file's rows into pages of accepted rows, counting and writing the refused ones."""

    def __init__(
        self, spec: CampaignSpec, settings: Settings, store: Store, totals: Totals, rejects: TextIO | None
    ) -> None:
        self.spec, self.settings, self.store, self.totals = spec, settings, store, totals
        template = settings.templates.get(spec.template) if spec.template else None
        self.names = frozenset(template.names) if template is not None else frozenset()
        self.unhealthy = store.unavailable(PROVIDERS, spec.kind)
        self.writer = csv.writer(rejects) if rejects is not None else None
        if self.writer is not None:
            self.writer.writerow(["line", "phone", "reason"])
        self.own_seen = False  # some row had parameters of its own
        self.pending: list[Reject] = []  # the page's refused rows
        unknown = sorted(spec.params.keys() - self.names) if template is not None else []
        if unknown:
            raise InvalidRequest(f"params: template {spec.template!r} has no parameter {unknown[0]!r}")
        self._request(((PROBE_PHONE, {name: "" for name in self.names} or None),))  # spec-level refusals

    def pages(self, rows: Rows) -> Iterator[list[Accepted]]:
        batch: list[Row | RowError] = []
        for item in rows:
            batch.append(item)
            if len(batch) == PAGE_ROWS:
                yield self._page(batch)
                batch = []
        if batch:
            yield self._page(batch)

    def _page(self, batch: list[Row | RowError]) -> list[Accepted]:
        """The page's accepted rows; its refused ones written in the order of their lines."""
        self.pending = []
        accepted = self._accept(batch)
        for reject in sorted(self.pending, key=lambda reject: reject.line):
            self._write(reject)
        return accepted

    def _accept(self, batch: list[Row | RowError]) -> list[Accepted]:
        self.totals.rows += len(batch)
        most = self.settings.campaign.max_rows
        if self.totals.rows > most:
            raise InvalidRequest(f"file: more than {most:,} rows (campaign.max_rows)")
        lines: dict[str, int] = {}  # phone -> its line, for the page's unique phones
        entries: list[tuple[str, dict[str, str] | None]] = []
        for item in batch:
            if isinstance(item, RowError):
                self._reject(item.line, item.phone, item.reason)
                continue
            try:
                phone = normalize(item.phone)
            except PhoneError as exc:
                self._reject(item.line, item.phone, f"phone: {exc}")
                continue
            if phone in lines:
                self.totals.duplicates += 1
                continue
            lines[phone] = item.line
            entries.append((phone, self._own(item.params)))
        if not entries:
            return []
        try:
            request = self._request(entries)
        except InvalidRequest as exc:
            if not self.own_seen:
                raise  # the same for every row: the campaign's own parameters are short
            for phone, _ in entries:  # this page's rows lack what other rows had
                self._reject(lines[phone], phone, str(exc))
            return []
        plan = build_plan(request, self.settings, self.unhealthy)
        for phone, why in plan.rejected:
            self._reject(lines.get(phone, 0), phone, why)
        parts = self._parts(plan.chunks)
        return [Accepted(phone, own, *parts[phone]) for phone, own in entries if phone in parts]

    def _own(self, params: Mapping[str, str]) -> dict[str, str] | None:
        """The row's parameters the template has; the others are noted as ignored."""
        own = {name: value for name, value in params.items() if name in self.names}
        self.own_seen = self.own_seen or bool(own)
        if len(own) < len(params) and len(self.totals.ignored) < MAX_IGNORED:
            self.totals.ignored.update(list(params.keys() - self.names)[:MAX_IGNORED])
        return own or None

    def _request(self, entries: Iterable[tuple[str, dict[str, str] | None]]) -> SendInput:
        """The page as ``send_sms`` would take it (the runner plans it the same way when it feeds it)."""
        spec = self.spec
        data = {
            "to": [{"phone": phone, "params": own} if own else phone for phone, own in entries],
            "template": spec.template,
            "content": spec.content,
            "params": spec.params,
            "kind": spec.kind,
            "provider": spec.provider,
        }
        return validate_request(data, self.settings)

    def _parts(self, chunks: Iterable[ChunkSpec]) -> dict[str, tuple[str, int]]:
        """Each planned phone's vendor and billed parts (its rendered text with the vendor's signature)."""
        out: dict[str, tuple[str, int]] = {}
        for chunk in chunks:
            vendors = self.totals.vendors
            if chunk.provider not in vendors:
                vendors[chunk.provider] = _vendor_total(self.store, chunk.provider, self.spec.kind)
            parts = chunk.parts_of(self.settings.vendor(chunk.provider).billed_signature())
            for phone in chunk.phones:
                out[phone] = (chunk.provider, parts(phone))
        return out

    def _reject(self, line: int, given: str, reason: str) -> None:
        self.pending.append(Reject(line, shown(given) if given else "", reason))

    def _write(self, reject: Reject) -> None:
        totals = self.totals
        totals.rejected += 1
        if len(totals.rejects) < self.settings.campaign.rejects_shown:
            totals.rejects.append(reject)
        if self.writer is not None:
            self.writer.writerow([reject.line, reject.phone, reject.reason])


def _vendor_total(store: Store, provider: str, kind: str) -> VendorTotal:
    """A vendor's empty total with its last known balance for ``kind``."""
    reading = balance_for(store.balances(provider), kind)
    if reading is None:
        return VendorTotal()
    return VendorTotal(balance=reading.value, item=reading.item, read_ms=reading.at_ms)


def balance_for(readings: tuple[BalanceReading, ...], kind: str) -> BalanceReading | None:
    """The reading a campaign of ``kind`` draws on: the only one, or the one named for the kind (None:
    unknown, or a post-paid account, which has no limit)."""
    found = readings[0] if len(readings) == 1 else None
    for word in KIND_ITEMS.get(kind, ()) if found is None else ():
        found = next((r for r in readings if word in r.item.lower()), None)
        if found is not None:
            break
    if found is None or found.item.lower() == POST_PAID:
        return None
    return found
