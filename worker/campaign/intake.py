"""Campaign intake: what a campaign is asked to send (``CampaignSpec``), checked before any row is read.

A bad spec is refused with ``InvalidRequest`` naming the field, as ``send_sms`` refuses a bad request
(its validators are ``tasks.request``'s). A campaign is notify or marketing, never an OTP: an OTP cannot
wait behind a campaign's pacing, quiet hours or a start time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from config.campaign import check_span
from config.settings import PROVIDERS
from tasks.request import (
    MAX_CONTENT_CHARS,
    MAX_PROBLEMS,
    FieldProblem,
    InvalidRequest,
    _describe,
    param_values,
)
from worker.campaign.files import check_encoding

MAX_NAME_CHARS = 128


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
            problems = [_describe(error) for error in exc.errors()[:MAX_PROBLEMS]]
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
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str):
            raise FieldProblem("window", f"expected HH:MM-HH:MM, got {type(value).__name__}")
        try:
            return check_span(value)
        except ValueError as exc:
            raise FieldProblem("window", str(exc)) from None

    @field_validator("encoding", mode="before")
    @classmethod
    def _encoding(cls, value: object) -> str | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str):
            raise FieldProblem("encoding", f"expected a name like gbk, got {type(value).__name__}")
        try:
            return check_encoding(value)
        except ValueError as exc:
            raise FieldProblem("encoding", str(exc)) from None

    @model_validator(mode="after")
    def _shape(self) -> CampaignSpec:
        if (self.template is None) == (self.content is None):
            raise FieldProblem("template", "give exactly one of template or content")
        if self.content is not None and not self.content.strip():
            raise FieldProblem("content", "content is empty")
        if self.provider is not None and self.provider not in PROVIDERS:
            known = ", ".join(PROVIDERS)
            raise FieldProblem("provider", f"unknown {self.provider!r} (expected one of {known})")
        return self
