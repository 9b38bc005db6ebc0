"""``/v1/campaigns``: submit (a multipart upload, or a dry run), list, view, pause, resume, cancel and the
report, over ``worker.campaign.intake`` and ``worker.campaign.control`` (what ``smsdispatch campaign ...``
calls too). OTP-only keys may not touch campaigns (403, before an upload is read: ``api_v1.py`` gives
these routes their own route class).

The upload is spooled to a temporary file as it arrives (Starlette's multipart parser: 1 MB in memory at
most), then read by the intake page by page in the thread pool (it does blocking Redis I/O). A bad field
or file: 422 naming it; admission refused (a vendor's known balance is short): 409 (``force=true``
submits anyway). Unknown campaign: 404; an action its status does not allow (resuming a cancelled one):
409 with the reason in one line. The report is CSV, streamed while Redis is scanned (``streams.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import structlog
from fastapi import APIRouter, Form, HTTPException, Path, Query, UploadFile
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, Json
from starlette.responses import JSONResponse, StreamingResponse

from config.settings import Settings
from tasks.request import InvalidRequest
from worker.app import INFRA_ERRORS
from worker.campaign import control, intake
from worker.campaign.control import CampaignStateError, CampaignView, UnknownCampaign
from worker.campaign.files import FileError
from worker.http.auth import AnyCaller
from worker.http.messages_v1 import ERRORS, UNREACHABLE
from worker.http.problems import Message, Problems, field_error, from_invalid, refused
from worker.http.streams import stream_text
from worker.store import Store

log = structlog.get_logger(__name__)
T = TypeVar("T")
CAMPAIGN_ID = r"^[0-9a-f]{32}$"
CampaignId = Annotated[str, Path(pattern=CAMPAIGN_ID, description="32 hexadecimal digits")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Message, "description": "no such campaign"}}


class CampaignForm(BaseModel):
    """A campaign to submit: the recipient file and ``CampaignSpec``'s fields, as multipart form fields."""

    model_config = ConfigDict(extra="forbid")
    file: UploadFile = Field(
        description="CSV (a phone column, one column per template parameter) or JSONL; UTF-8 or GBK/GB18030"
    )
    name: str = Field("", description="for lists and reports (default: the file's name)", examples=["bills"])
    template: str | None = Field(None, description="a configured template (or content)", examples=["bill"])
    content: str | None = Field(None, description="free text (or template)")
    params: Json[dict[str, Any]] | None = Field(
        None,
        description="parameters common to every row, a JSON object; a row's own win",
        examples=['{"name": "customer"}'],
    )
    kind: str = Field("notify", description="notify or marketing (marketing waits out quiet hours)")
    provider: str | None = Field(None, description="force one vendor")
    start: datetime | None = Field(
        None,
        description="ISO 8601; without an offset it is in campaign.timezone (default: at once)",
        examples=["2026-12-01T09:00:00+08:00"],
    )
    window: str | None = Field(None, description="its own daily send window", examples=["09:00-20:00"])
    encoding: str | None = Field(None, description="the file's encoding, e.g. gbk (default: detected)")
    dry_run: bool = Field(False, description="check every row and count parts per vendor; write nothing")
    force: bool = Field(False, description="submit even if a vendor's known balance is short")

    def spec(self) -> intake.CampaignSpec:
        """The spec (``InvalidRequest`` naming the field); fields left empty are not given."""
        given = {
            "name": self.name, "template": self.template, "content": self.content, "params": self.params,
            "kind": self.kind, "provider": self.provider, "start_at": self.start, "window": self.window,
            "encoding": self.encoding,
        }  # fmt: skip
        return intake.CampaignSpec(**{key: value for key, value in given.items() if value not in (None, "")})


class VendorShare(BaseModel):
    recipients: int
    parts: int = Field(description="billed parts (70 characters in one part, 67 beyond; signature counted)")
    balance: float | None = Field(description="its last known balance (null: never read)")
    balance_item: str
    balance_read_ms: int
    enough: bool | None


class Reject(BaseModel):
    line: int
    phone: str = Field(description="as given, masked")
    reason: str


class Intake(BaseModel):
    """What the intake counted (a dry run's whole answer)."""

    model_config = ConfigDict(extra="allow")
    rows: int
    accepted: int
    duplicates: int
    rejected: int
    parts: int
    vendors: dict[str, VendorShare]
    rejects: list[Reject] = Field(description="the first refused rows (campaign.rejects_shown)")
    ignored_columns: list[str]
    encoding: str
    format: str
    notes: list[str]


class Submitted(Intake):
    id: str
    status: str = Field(description="scheduled or running")
    start_ms: int = Field(description="when it starts, in ms since the epoch (0: at once)")


class CampaignOut(BaseModel):
    """A campaign (``control.CampaignView``). Times carry the offset of ``campaign.timezone``."""

    model_config = ConfigDict(extra="allow")
    id: str
    name: str
    kind: str
    status: str = Field(description="submitting, scheduled, running, paused, cancelling, cancelled, done")
    created: datetime
    start: datetime | None
    window: str = Field(description='its own send window, "HH:MM-HH:MM" ("": none)')
    held_reason: str = Field(description="why it waits (quiet hours, its window), while running")
    held_until: datetime | None
    rows: int
    accepted: int
    rejected: int
    duplicates: int
    counts: dict[str, int] = Field(description="recipients per state (live counters)")
    parts: int = Field(description="billed parts so far")
    planned_parts: int = Field(description="billed parts counted at submission")
    done: bool
    finished: datetime | None
    error: str


class CampaignDetail(CampaignOut):
    summary: dict[str, Any] = Field(description="totals: sent, settled, pending, per state, parts")


class CampaignList(BaseModel):
    campaigns: list[CampaignOut] = Field(description="newest first")


def router(settings: Settings, store: Store, route_class: type[APIRoute]) -> APIRouter:
    api = APIRouter(tags=["campaigns"], responses=ERRORS, route_class=route_class)

    @api.post(
        "/campaigns",
        status_code=201,
        response_model=None,
        max_body_size=settings.api.max_upload_bytes,
        form_limits={"max_files": 1, "max_fields": 16, "max_part_size": 64 * 1024},
        responses={
            201: {"model": Submitted, "description": "submitted; Location names it"},
            200: {"model": Intake, "description": "a dry run: nothing written"},
            409: {"model": Message, "description": "admission refused: a vendor's known balance is short"},
            413: {"model": Message, "description": "upload larger than api.max_upload_bytes"},
            422: {"model": Problems, "description": "a refused field or file"},
        },
    )
    def submit_campaign(
        form: Annotated[CampaignForm, Form(media_type="multipart/form-data")], caller: AnyCaller
    ) -> JSONResponse:
        """Submit a campaign (or check it, with ``dry_run``): the file is read page by page, duplicates
        removed, refused rows counted and the first of them returned with their lines and reasons."""
        stream, filename = form.file.file, form.file.filename or ""
        try:
            spec = form.spec()
            if form.dry_run:
                checked = intake.dry_run(stream, filename, spec, settings, store)
                return JSONResponse(checked.to_json())
            done = intake.submit(stream, filename, spec, settings, store, force=form.force)
        except intake.AdmissionRefused as exc:
            raise HTTPException(409, f"{exc}; force=true submits anyway") from None
        except FileError as exc:  # the file as a whole: its message is about the file, whatever it says
            raise field_error(422, ["body", "file"], str(exc), "invalid_file") from None
        except InvalidRequest as exc:
            raise refused(422, _form_problems(exc)) from None
        except INFRA_ERRORS:
            raise HTTPException(503, f"{UNREACHABLE}: nothing was submitted") from None
        log.info("campaign submitted over HTTP", campaign_id=done.id, caller=caller.name)
        location = f"/v1/campaigns/{done.id}"
        return JSONResponse(done.to_json(), status_code=201, headers={"Location": location})

    @api.get("/campaigns", response_model=CampaignList)
    def list_campaigns(_: AnyCaller, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> dict[str, Any]:
        """The newest campaigns."""
        views = _call(lambda: control.list_campaigns(store, limit))
        return {"campaigns": [view.to_json() for view in views]}

    @api.get("/campaigns/{campaign_id}", response_model=CampaignDetail, responses=NOT_FOUND)
    def get_campaign(campaign_id: CampaignId, _: AnyCaller) -> dict[str, Any]:
        """One campaign, with its live counts and summary."""
        view = _call(lambda: control.get_campaign(store, campaign_id))
        return {**view.to_json(), "summary": control.summary(view)}

    for action in (control.pause, control.resume, control.cancel):
        api.add_api_route(
            f"/campaigns/{{campaign_id}}/{action.__name__}",
            _action(store, action),
            methods=["POST"],
            name=f"{action.__name__}_campaign",
            summary=f"{action.__name__.capitalize()} a campaign",
            description=action.__doc__ or "",
            response_model=CampaignOut,
            responses={**NOT_FOUND, 409: {"model": Message, "description": "not allowed in its status"}},
        )

    @api.get(
        "/campaigns/{campaign_id}/report",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/csv": {}}, "description": "one line per recipient"}, **NOT_FOUND},
    )
    def report(campaign_id: CampaignId, _: AnyCaller) -> StreamingResponse:
        """Every recipient as CSV: phone, state, vendor, code, text, updated, parts (whole phone numbers:
        the report is what the campaign's owner reconciles with)."""
        _call(lambda: control.get_campaign(store, campaign_id))  # a 404 before the body starts
        body = stream_text(lambda out: control.write_report(store, campaign_id, out), f"report {campaign_id}")
        headers = {"Content-Disposition": f'attachment; filename="campaign-{campaign_id}.csv"'}
        return StreamingResponse(body, media_type="text/csv; charset=utf-8", headers=headers)

    return api


def _form_problems(exc: InvalidRequest) -> list[dict[str, Any]]:
    """The intake's refusals, named as the form's fields (``start_at`` is the form's ``start``)."""
    problems = from_invalid(exc)
    for problem in problems:
        if problem["loc"][1:2] == ["start_at"]:
            problem["loc"][1] = "start"
    return problems


def _action(store: Store, action: Callable[[Store, str], CampaignView]) -> Callable[..., dict[str, Any]]:
    def act(campaign_id: CampaignId, _: AnyCaller) -> dict[str, Any]:
        return _call(lambda: action(store, campaign_id)).to_json()

    return act


def _call(step: Callable[[], T]) -> T:
    """``step``'s answer, with control's refusals as HTTP errors."""
    try:
        return step()
    except UnknownCampaign as exc:
        raise HTTPException(404, str(exc)) from None
    except CampaignStateError as exc:
        raise HTTPException(409, str(exc)) from None
    except INFRA_ERRORS:
        raise HTTPException(503, UNREACHABLE) from None
