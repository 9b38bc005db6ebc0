"""``/v1/campaigns``: list, view, pause, resume, cancel and the report, over ``worker.campaign.control``
(what ``smsdispatch campaign ...`` calls too). OTP-only keys may not touch campaigns (403, before an
upload is read: ``api_v1.py`` gives these routes their own route class).

Unknown campaign: 404; an action its status does not allow (resuming a cancelled one): 409 with the
reason in one line. The report is CSV, streamed while Redis is scanned (``streams.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import StreamingResponse

from worker.app import INFRA_ERRORS
from worker.campaign import control
from worker.campaign.control import CampaignStateError, CampaignView, UnknownCampaign
from worker.http.auth import AnyCaller
from worker.http.messages_v1 import ERRORS, UNREACHABLE
from worker.http.problems import Message
from worker.http.streams import stream_text
from worker.store import Store

T = TypeVar("T")
CAMPAIGN_ID = r"^[0-9a-f]{32}$"
CampaignId = Annotated[str, Path(pattern=CAMPAIGN_ID, description="32 hexadecimal digits")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Message, "description": "no such campaign"}}


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


def router(store: Store, route_class: type[APIRoute]) -> APIRouter:
    api = APIRouter(tags=["campaigns"], responses=ERRORS, route_class=route_class)

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
