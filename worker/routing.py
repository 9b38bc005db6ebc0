"""Which vendor sends a group of recipients: the kind's list in order, skipping any that cannot.

A vendor is skipped, with the reason recorded, when it has no credentials, is marked unhealthy (auth or
balance failure), lacks the template (or takes templates only and was given free text), or does not
take the group's numbers (international). ``NoRoute`` lists every reason. Each kind's list is
``settings.routing`` (every registered vendor, in registry order, unless configured).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from config.settings import Settings
from config.templates import TemplateConfig
from providers.base import Capabilities
from providers.vendors import descriptor
from worker.registry import capabilities


class NoRoute(Exception):
    """No vendor can take this send. ``reasons`` maps each vendor tried to why it was skipped."""

    def __init__(self, reasons: Mapping[str, str]) -> None:
        self.reasons = dict(reasons)
        detail = "; ".join(f"{name}: {why}" for name, why in reasons.items()) or "no provider listed"
        super().__init__(f"no provider can send this: {detail}")


@dataclass(frozen=True, slots=True)
class RouteQuery:
    kind: str
    template_name: str | None
    template: TemplateConfig | None
    international: bool
    explicit: str | None = None


def skip_reason(
    settings: Settings, name: str, query: RouteQuery, unhealthy: Mapping[str, Mapping[str, str]]
) -> str:
    """Why ``name`` cannot take this send, or "" if it can."""
    section = settings.vendor(name)
    caps: Capabilities = capabilities(name)
    if not section.configured():
        fields = ", ".join(descriptor(name).env_name(field) for field in section.credential_fields())
        return f"not configured (set {fields})"
    if name in unhealthy:
        info = unhealthy[name]
        return f"unhealthy after code {info.get('code', '?')}: {info.get('reason', '')}"
    if query.template is None and caps.template_based:
        return "takes registered templates only, not free text"
    if query.template is not None and not query.template.supports(name):
        return f"template {query.template_name!r} has no {name} entry"
    if query.international and not caps.international:
        return "does not take international numbers"
    return ""


def choose(settings: Settings, query: RouteQuery, unhealthy: Mapping[str, Mapping[str, str]]) -> str:
    """The first vendor of the kind's list (or the one asked for) that can take this send."""
    candidates = (query.explicit,) if query.explicit else settings.routing[query.kind]
    reasons: dict[str, str] = {}
    for name in candidates:
        reason = skip_reason(settings, name, query, unhealthy)
        if not reason:
            return name
        reasons[name] = reason
    raise NoRoute(reasons)
