"""Planning a send: validate the request, normalize and dedupe recipients, route, render, cut into chunks.

Plain functions, no Celery and no Redis: ``validate_request`` (``tasks.request``) refuses a bad request
as a whole (naming the field), ``build_plan`` turns a valid one into vendor-sized chunks and per-recipient
rejections: a bad number (shown masked, ``providers.phones.shown``), no vendor to route to, or content the
routed vendor would refuse (its ``Capabilities``: the next vendor of the kind's list is tried instead).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from config.settings import Settings
from config.templates import TemplateConfig, TemplateError
from providers.base import RenderedTemplate
from providers.phones import PhoneError, normalize, shown
from providers.text import sms_parts
from tasks.request import (
    MAX_RECIPIENTS,
    InvalidRequest,
    RecipientInput,
    SendInput,
    validate_request,
    vendor_problem,
)
from worker.registry import capabilities
from worker.routing import NoRoute, RouteQuery, choose

__all__ = [
    "MAX_RECIPIENTS",
    "ChunkSpec",
    "InvalidRequest",
    "Plan",
    "RecipientInput",
    "SendInput",
    "build_plan",
    "logical_form",
    "validate_request",
]


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
    # Billed parts per phone when each recipient has its own text (``providers.text.sms_parts``, counted
    # at planning, where the texts are); None: every phone is billed ``template.text``'s parts.
    parts: tuple[int, ...] | None = None

    def to_task(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "provider": self.provider,
            "phones": list(self.phones),
            "template": _template_dict(self.template),
            "per_recipient": [list(t.params) for t in self.per_recipient] if self.per_recipient else None,
            "logical": dict(self.logical) if self.logical is not None else None,
            "parts": list(self.parts) if self.parts is not None else None,
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
        parts = tuple(data["parts"]) if data.get("parts") else None
        return cls(
            data["number"], data["provider"], phones, template, per_recipient, data.get("logical"), parts
        )

    def only(self, phones: Sequence[str]) -> ChunkSpec:
        """The same chunk restricted to ``phones`` (for a retry of the ones still to send)."""
        keep = set(phones)
        idx = [i for i, p in enumerate(self.phones) if p in keep]
        per = tuple(self.per_recipient[i] for i in idx) if self.per_recipient else None
        phones = tuple(self.phones[i] for i in idx)
        parts = tuple(self.parts[i] for i in idx) if self.parts else None
        return ChunkSpec(self.number, self.provider, phones, self.template, per, self.logical, parts)

    def parts_of(self, signature: str) -> Callable[[str], int]:
        """Each phone's billed parts (with the vendor's ``signature``), for the records of a sent chunk."""
        if self.parts is None:
            common = sms_parts(self.template.text, signature)
            return lambda phone: common
        by_phone = dict(zip(self.phones, self.parts, strict=True))
        return lambda phone: by_phone.get(phone, 1)


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
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (what was given, masked; why)
    duplicates: int = 0
    accepted: int = 0
    providers: set[str] = field(default_factory=set)
    shown: set[str] = field(default_factory=set)  # the rejected inputs' shown forms, to keep them apart


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
            provider, common = _route(request, template, query, group, settings, unhealthy)
        except (NoRoute, TemplateError) as exc:
            plan.rejected += [(p, str(exc)) for p in group.phones]
            continue
        _cut(plan, request, _renderer(request, template, provider), provider, common, group, settings)
    return plan


def _normalize(request: SendInput, plan: Plan) -> dict[bool, _Group]:
    groups = {False: _Group(), True: _Group()}
    seen: set[str] = set()
    for index, item in enumerate(request.recipients()):
        raw, own = (item.phone, item.params) if isinstance(item, RecipientInput) else (item, None)
        try:
            phone = normalize(raw)
        except PhoneError as exc:
            plan.rejected.append((_shown_once(raw, index, plan), f"to: {exc}"))
            continue
        if phone in seen:
            plan.duplicates += 1
            continue
        seen.add(phone)
        group = groups[phone.startswith("+")]
        group.phones.append(phone)
        group.params.append(own)
    return groups


def _shown_once(raw: object, index: int, plan: Plan) -> str:
    """How a rejected input is shown (``providers.phones.shown``: never a whole number). It is also the
    recipient's key in Redis, so two inputs that look alike once masked are told apart by position."""
    given = shown(raw)
    if given in plan.shown:
        given = f"{given} (to.{index})"
    plan.shown.add(given)
    return given


def _route(
    request: SendInput,
    template: TemplateConfig | None,
    query: RouteQuery,
    group: _Group,
    settings: Settings,
    unhealthy: Mapping[str, Mapping[str, str]],
) -> tuple[str, RenderedTemplate | None]:
    """The first vendor that can take the group and whose rules (``Capabilities``) the content meets,
    with the rendered content; a vendor that would refuse it is skipped, its reason kept for NoRoute.
    With parameters per recipient the content is None: each is checked in ``_render_each``."""
    refused: dict[str, str] = {}
    while True:
        try:
            provider = choose(settings, query, {**unhealthy, **{name: {} for name in refused}})
        except NoRoute as exc:
            raise NoRoute({name: refused.get(name, why) for name, why in exc.reasons.items()}) from None
        if any(group.params):
            return provider, None
        common = _renderer(request, template, provider)(request.params)
        problem = vendor_problem(provider, common)
        if problem is None:
            return provider, common
        refused[provider] = problem


def _cut(
    plan: Plan,
    request: SendInput,
    render: Callable[[Mapping[str, Any]], RenderedTemplate],
    provider: str,
    common: RenderedTemplate | None,
    group: _Group,
    settings: Settings,
) -> None:
    size = min(settings.vendor(provider).batch_size, capabilities(provider).batch_size)
    rendered: list[RenderedTemplate] | None = None
    phones = group.phones
    if common is None:
        phones, rendered = _render_each(plan, group, render, request.params, provider)
        if not phones:
            return
        common = rendered[0]
        if not capabilities(provider).per_recipient_params:
            size = 1  # the vendor cannot vary parameters inside one call
    logical = None if rendered is not None else logical_form(request)
    billed = None
    if rendered is not None and size > 1:  # texts differ inside a call: count each one's parts now
        signature = settings.vendor(provider).billed_signature()
        billed = [sms_parts(t.text, signature) for t in rendered]
    for start in range(0, len(phones), size):
        part = tuple(phones[start : start + size])
        per = tuple(rendered[start : start + size]) if rendered is not None else None
        chunk_template = per[0] if per and size == 1 else common
        per_call = per if size > 1 else None
        parts = tuple(billed[start : start + size]) if billed is not None else None
        plan.chunks.append(
            ChunkSpec(len(plan.chunks), provider, part, chunk_template, per_call, logical, parts)
        )
    plan.accepted += len(phones)
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
    provider: str,
) -> tuple[list[str], list[RenderedTemplate]]:
    """Each recipient's own content; one that fails to render or breaks the vendor's rules is rejected."""
    phones: list[str] = []
    rendered: list[RenderedTemplate] = []
    for phone, own in zip(group.phones, group.params, strict=True):
        try:
            text = render({**common, **(own or {})})
        except TemplateError as exc:
            plan.rejected.append((phone, str(exc)))
            continue
        problem = vendor_problem(provider, text)
        if problem is not None:
            plan.rejected.append((phone, problem))
            continue
        phones.append(phone)
        rendered.append(text)
    return phones, rendered
