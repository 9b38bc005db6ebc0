"""Planning a send: validate the request, normalize and dedupe recipients, route, render, cut into chunks.

Plain functions, no Celery and no Redis: ``validate_request`` refuses a bad request as a whole (naming
the field), ``build_plan`` turns a valid one into vendor-sized chunks and per-recipient rejections.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from config.settings import PROVIDERS, Settings
from config.templates import TemplateConfig, TemplateError
from providers.base import RenderedTemplate
from tasks.phones import PhoneError, is_mainland, normalize
from worker.registry import capabilities
from worker.routing import NoRoute, RouteQuery, choose

MAX_RECIPIENTS = 1_000_000


class InvalidRequest(ValueError):
    """The request as a whole is refused; nothing is sent. The message names each field and problem."""


class RecipientInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    phone: str
    params: dict[str, Any] = Field(default_factory=dict)


class SendInput(BaseModel):
    """What ``send_sms`` takes. ``to`` is one phone or a list of phones or ``{"phone", "params"}``."""

    model_config = ConfigDict(extra="forbid")

    to: str | int | list[str | int | RecipientInput]
    template: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    content: str | None = None
    kind: Literal["otp", "notify", "marketing"] = "notify"
    provider: str | None = None
    idempotency_key: str | None = Field(None, min_length=1, max_length=128)

    @model_validator(mode="after")
    def _shape(self) -> SendInput:
        if (self.template is None) == (self.content is None):
            raise ValueError("give exactly one of template or content")
        if self.content is not None and not self.content.strip():
            raise ValueError("content is empty")
        if isinstance(self.to, list) and not self.to:
            raise ValueError("to: no recipients")
        if isinstance(self.to, list) and len(self.to) > MAX_RECIPIENTS:
            raise ValueError(f"to: {len(self.to)} recipients, at most {MAX_RECIPIENTS} per call")
        if self.provider is not None and self.provider not in PROVIDERS:
            raise ValueError(f"provider: unknown {self.provider!r} (expected one of {', '.join(PROVIDERS)})")
        return self

    def recipients(self) -> list[str | int | RecipientInput]:
        return self.to if isinstance(self.to, list) else [self.to]


def validate_request(data: Mapping[str, Any], settings: Settings) -> SendInput:
    """Parse and check a request against the configured templates; raise InvalidRequest if it is bad."""
    try:
        request = SendInput.model_validate(dict(data))
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}" for e in exc.errors()]
        raise InvalidRequest("; ".join(problems[:10])) from None
    if request.template is not None:
        template = settings.templates.get(request.template)
        if template is None:
            known = ", ".join(sorted(settings.templates)) or "none configured"
            raise InvalidRequest(f"template: unknown template {request.template!r} (known: {known})")
        if not _has_own_params(request):
            try:
                template.check_params(request.template, request.params)
            except TemplateError as exc:
                raise InvalidRequest(str(exc)) from None
    return request


def _has_own_params(request: SendInput) -> bool:
    return any(isinstance(r, RecipientInput) and r.params for r in request.recipients())


@dataclass(frozen=True, slots=True)
class ChunkSpec:
    """One vendor call's worth of recipients, ready to travel as a Celery task argument."""

    number: int
    provider: str
    phones: tuple[str, ...]
    template: RenderedTemplate
    per_recipient: tuple[RenderedTemplate, ...] | None = None
    # The request in its logical form (template name and params, or content), so that the chunk can be
    # planned again for another vendor if this one refuses the whole call. None with per-recipient params.
    logical: Mapping[str, Any] | None = None

    def to_task(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "provider": self.provider,
            "phones": list(self.phones),
            "template": _template_dict(self.template),
            "per_recipient": [list(t.params) for t in self.per_recipient] if self.per_recipient else None,
            "logical": dict(self.logical) if self.logical is not None else None,
        }

    @classmethod
    def from_task(cls, data: Mapping[str, Any]) -> ChunkSpec:
        template = RenderedTemplate(
            data["template"]["vendor_template"],
            tuple(data["template"]["params"]),
            tuple(data["template"]["names"]),
            data["template"]["text"],
        )
        per = data.get("per_recipient")
        per_recipient = (
            tuple(RenderedTemplate(template.vendor_template, tuple(p), template.names) for p in per)
            if per
            else None
        )
        phones = tuple(data["phones"])
        return cls(data["number"], data["provider"], phones, template, per_recipient, data.get("logical"))

    def only(self, phones: Sequence[str]) -> ChunkSpec:
        """The same chunk restricted to ``phones`` (for a retry of the ones still to send)."""
        keep = set(phones)
        idx = [i for i, p in enumerate(self.phones) if p in keep]
        per = tuple(self.per_recipient[i] for i in idx) if self.per_recipient else None
        phones = tuple(self.phones[i] for i in idx)
        return ChunkSpec(self.number, self.provider, phones, self.template, per, self.logical)


def _template_dict(t: RenderedTemplate) -> dict[str, Any]:
    return {
        "vendor_template": t.vendor_template,
        "params": list(t.params),
        "names": list(t.names),
        "text": t.text,
    }


@dataclass
class Plan:
    kind: str
    chunks: list[ChunkSpec] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (what was given, why)
    duplicates: int = 0
    accepted: int = 0
    providers: set[str] = field(default_factory=set)


@dataclass
class _Group:
    phones: list[str] = field(default_factory=list)
    params: list[dict[str, Any] | None] = field(default_factory=list)


def build_plan(request: SendInput, settings: Settings, unhealthy: Mapping[str, Mapping[str, str]]) -> Plan:
    """Normalize, dedupe, route per group (mainland / international), render and cut into chunks."""
    plan = Plan(kind=request.kind)
    groups = _normalize(request, plan)
    template = settings.templates.get(request.template) if request.template else None
    for international, group in groups.items():
        if not group.phones:
            continue
        query = RouteQuery(request.kind, request.template, template, international, request.provider)
        try:
            provider = choose(settings, query, unhealthy)
        except NoRoute as exc:
            plan.rejected += [(p, str(exc)) for p in group.phones]
            continue
        _cut(plan, request, template, provider, group, settings)
    return plan


def _normalize(request: SendInput, plan: Plan) -> dict[bool, _Group]:
    groups = {False: _Group(), True: _Group()}
    seen: set[str] = set()
    for item in request.recipients():
        raw, own = (item.phone, item.params) if isinstance(item, RecipientInput) else (item, None)
        try:
            phone = normalize(raw)
        except PhoneError as exc:
            plan.rejected.append((str(raw)[:32], f"to: {exc}"))
            continue
        if phone in seen:
            plan.duplicates += 1
            continue
        seen.add(phone)
        group = groups[not is_mainland(phone)]
        group.phones.append(phone)
        group.params.append(own)
    return groups


def _cut(
    plan: Plan,
    request: SendInput,
    template: TemplateConfig | None,
    provider: str,
    group: _Group,
    settings: Settings,
) -> None:
    size = min(settings.vendor(provider).batch_size, capabilities(provider).batch_size)
    render = _renderer(request, template, provider)
    rendered: list[RenderedTemplate] | None = None
    if any(group.params):
        phones, rendered = _render_each(plan, group, render, request.params)
        if not phones:
            return
        common = rendered[0]
        if not capabilities(provider).per_recipient_params:
            size = 1  # the vendor cannot vary parameters inside one call
    else:
        try:
            common = render(request.params)
        except TemplateError as exc:
            plan.rejected += [(p, str(exc)) for p in group.phones]
            return
        phones = group.phones
    max_chars = capabilities(provider).max_content_chars
    logical = None if rendered is not None else logical_form(request)
    for start in range(0, len(phones), size):
        part = tuple(phones[start : start + size])
        per = tuple(rendered[start : start + size]) if rendered is not None else None
        chunk_template = per[0] if per and size == 1 else common
        if len(chunk_template.text) > max_chars:
            why = f"content: {len(chunk_template.text)} characters, {provider} takes {max_chars}"
            plan.rejected += [(p, why) for p in part]
            continue
        per_call = per if size > 1 else None
        plan.chunks.append(ChunkSpec(len(plan.chunks), provider, part, chunk_template, per_call, logical))
        plan.accepted += len(part)
        plan.providers.add(provider)


def logical_form(request: SendInput) -> dict[str, Any]:
    """The parts of a request that say what to send, whichever vendor sends it."""
    return {
        "template": request.template,
        "params": request.params,
        "content": request.content,
        "provider": request.provider,
    }


def _renderer(
    request: SendInput, template: TemplateConfig | None, provider: str
) -> Callable[[Mapping[str, Any]], RenderedTemplate]:
    if template is None:
        content = request.content or ""
        return lambda params: RenderedTemplate(vendor_template="", text=content)
    name = request.template or ""
    return lambda params: template.render(name, provider, params)


def _render_each(
    plan: Plan,
    group: _Group,
    render: Callable[[Mapping[str, Any]], RenderedTemplate],
    common: Mapping[str, Any],
) -> tuple[list[str], list[RenderedTemplate]]:
    phones: list[str] = []
    rendered: list[RenderedTemplate] = []
    for phone, own in zip(group.phones, group.params, strict=True):
        try:
            rendered.append(render({**common, **(own or {})}))
        except TemplateError as exc:
            plan.rejected.append((phone, str(exc)))
            continue
        phones.append(phone)
    return phones, rendered
