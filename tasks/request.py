"""What ``send_sms`` accepts: the request model, and its validation at the door (in the producer).

``validate_request`` turns any arguments into a ``SendInput`` or raises ``InvalidRequest`` naming the field
(``to.3: ...``, ``params.code: ...``); nothing else escapes it, whatever the caller passes. A valid
request is JSON-safe by construction: phones are text (ints are converted), parameter values are text
(ints and finite floats are converted), every string is bounded. ``SendTask`` hands Celery
``request.model_dump(mode="json", exclude_none=True)``, never the caller's own objects.

Shape and type problems refuse the whole request; a phone that is text but no valid number is rejected
alone, in planning (``tasks.plan``). What the chosen vendor would refuse (content length, emoji, parameter
characters: ``Capabilities``) is refused here when the request names its ``provider``, else in planning.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from config.settings import PROVIDERS, Settings
from config.templates import TemplateError
from providers.base import RenderedTemplate
from providers.phones import PhoneError, as_text
from providers.text import find_emoji
from worker.registry import capabilities

MAX_RECIPIENTS = 1_000_000
MAX_CONTENT_CHARS = 1000  # the door's cap; each vendor's own limit (at most 500) is checked per vendor
MAX_PARAM_CHARS = 500  # the door's cap on one parameter value; templates set their own, stricter, one
MAX_PARAMS = 50
MAX_NAME_CHARS = 64
MAX_PROBLEMS = 10
_SURROGATE = re.compile("[\ud800-\udfff]")


class InvalidRequest(ValueError):
    """The request as a whole is refused; nothing is sent. The message names each field and problem."""


class FieldProblem(ValueError):
    """One field's value is refused; ``field`` is its path (``to.3.phone``, ``params.code``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


def unicode_text(text: str, path: str) -> str:
    """``text`` if it can be encoded (UTF-8 for Redis and the vendors): no lone surrogates. (pydantic
    refuses them in its own ``str`` fields; this names the parameter.)"""
    if not text.isascii() and _SURROGATE.search(text):
        raise FieldProblem(path, "holds a lone surrogate (U+D800-U+DFFF), which is not text")
    return text


def _plain(text: str) -> str:
    """``text`` as an exact ``str`` (a subclass may override ``__str__``/``__len__``)."""
    return text if type(text) is str else str.__add__("", text)


def phone_input(value: object, path: str) -> str:
    """A phone as it may travel: text of at most 64 characters, or a positive int of at most 15 digits
    (as text). Whether it is a valid number is planning's business (rejected alone, not the request)."""
    if type(value) is str and len(value) <= 64:
        return value
    try:
        return as_text(value)
    except PhoneError as exc:
        raise FieldProblem(path, str(exc)) from None


def param_values(value: object, path: str) -> dict[str, str]:
    """Template parameters as text: names are text of 1 to 64 characters, values text, ints or finite
    floats (not bools) of at most 500 characters once written out."""
    if not isinstance(value, Mapping):
        raise FieldProblem(path, f"expected a mapping of names to values, got {type(value).__name__}")
    if len(value) > MAX_PARAMS:
        raise FieldProblem(path, f"{len(value)} parameters, at most {MAX_PARAMS}")
    values: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not 0 < str.__len__(key) <= MAX_NAME_CHARS:
            raise FieldProblem(path, f"parameter names are text of 1 to {MAX_NAME_CHARS} characters")
        name = _plain(key)
        values[name] = _param_value(item, f"{path}.{name}")
    return values


def _param_value(item: object, path: str) -> str:
    if isinstance(item, str):
        text = unicode_text(_plain(item), path)
    elif isinstance(item, bool) or not isinstance(item, int | float):
        raise FieldProblem(path, f"expected text or a number, got {type(item).__name__}")
    elif isinstance(item, int):
        if item.bit_length() > MAX_PARAM_CHARS * 3:  # > 450 digits: str() could fail or be huge
            raise FieldProblem(path, f"a number of more than {MAX_PARAM_CHARS} digits")
        text = int.__repr__(item)
    elif not math.isfinite(item):
        raise FieldProblem(path, "not a finite number")
    else:
        text = float.__repr__(item)
    if len(text) > MAX_PARAM_CHARS:
        raise FieldProblem(path, f"{len(text)} characters, at most {MAX_PARAM_CHARS}")
    return text


class RecipientInput(BaseModel):
    """One recipient with parameters of its own (``{"phone": ..., "params": {...}}``)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    phone: str
    params: dict[str, str] = Field(default_factory=dict)

    @field_validator("phone", mode="before")
    @classmethod
    def _phone(cls, value: object) -> str:
        return phone_input(value, "phone")

    @field_validator("params", mode="before")
    @classmethod
    def _params(cls, value: object) -> dict[str, str]:
        return param_values(value, "params")


def _recipient(item: Mapping[Any, Any] | RecipientInput, path: str) -> RecipientInput:
    if isinstance(item, RecipientInput):
        item = {"phone": item.phone, "params": item.params}
    unexpected = [key for key in item if key not in ("phone", "params")]
    if unexpected:
        raise FieldProblem(path, f"unexpected field {str(unexpected[0])[:40]!r} (expected phone, params)")
    if "phone" not in item:
        raise FieldProblem(path, "missing phone")
    phone = phone_input(item["phone"], f"{path}.phone")
    params = param_values(item.get("params", {}), f"{path}.params")
    return RecipientInput.model_construct(phone=phone, params=params)


def recipients_input(value: object) -> str | list[str | RecipientInput]:
    """``to``: one phone, or a list (tuple, set) of phones and ``{"phone", "params"}`` mappings."""
    if isinstance(value, str | int):
        return phone_input(value, "to")
    if not isinstance(value, list | tuple | set | frozenset):
        raise FieldProblem(
            "to", f"expected a phone or a list of phones or {{phone, params}}, got {type(value).__name__}"
        )
    if not value:
        raise FieldProblem("to", "no recipients")
    if len(value) > MAX_RECIPIENTS:
        raise FieldProblem("to", f"{len(value)} recipients, at most {MAX_RECIPIENTS} per call")
    if set(map(type, value)) == {str} and max(map(len, value)) <= 64:
        return list(value)  # the common case (a list of phones as text), checked in C for a million
    items: list[str | RecipientInput] = []
    for i, item in enumerate(value):
        if type(item) is str and len(item) <= 64:
            items.append(item)
        elif isinstance(item, Mapping | RecipientInput):
            items.append(_recipient(item, f"to.{i}"))
        else:
            items.append(phone_input(item, f"to.{i}"))
    return items


class SendInput(BaseModel):
    """What ``send_sms`` takes. ``to`` is one phone or a list of phones or ``{"phone", "params"}``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    to: str | list[str | RecipientInput]
    template: str | None = Field(None, min_length=1, max_length=128)
    params: dict[str, str] = Field(default_factory=dict)
    content: str | None = Field(None, max_length=MAX_CONTENT_CHARS)
    kind: Literal["otp", "notify", "marketing"] = "notify"
    provider: str | None = Field(None, max_length=64)
    idempotency_key: str | None = Field(None, min_length=1, max_length=128)

    @field_validator("to", mode="before")
    @classmethod
    def _to(cls, value: object) -> str | list[str | RecipientInput]:
        return recipients_input(value)

    @field_validator("params", mode="before")
    @classmethod
    def _params(cls, value: object) -> dict[str, str]:
        return param_values(value, "params")

    @model_validator(mode="after")
    def _shape(self) -> SendInput:
        if (self.template is None) == (self.content is None):
            raise FieldProblem("template", "give exactly one of template or content")
        if self.content is not None and not self.content.strip():
            raise FieldProblem("content", "content is empty")
        if self.provider is not None and self.provider not in PROVIDERS:
            raise FieldProblem(
                "provider", f"unknown {self.provider!r} (expected one of {', '.join(PROVIDERS)})"
            )
        return self

    def recipients(self) -> list[str | RecipientInput]:
        return self.to if isinstance(self.to, list) else [self.to]


def validate_request(data: Mapping[str, Any], settings: Settings) -> SendInput:
    """Parse and check a request against the configured templates and, when it names one, the
    provider's rules; raise InvalidRequest naming the field if it is bad."""
    if not isinstance(data, Mapping):
        raise InvalidRequest(f"request: expected keyword arguments, got {type(data).__name__}")
    try:
        request = SendInput.model_validate(dict(data))
    except ValidationError as exc:
        problems = [describe_error(error) for error in exc.errors()[:MAX_PROBLEMS]]
        raise InvalidRequest("; ".join(problems)) from None
    try:
        _check_template(request, settings)
        _check_provider(request, settings)
    except TemplateError as exc:
        raise InvalidRequest(str(exc)) from None
    return request


def describe_error(error: Any) -> str:
    """One pydantic error as ``field: problem``; our own FieldProblem already names its field."""
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, FieldProblem):
        return str(cause)
    field = ".".join(str(part)[:40] for part in error["loc"]) or "request"
    return f"{field}: {str(error['msg']).removeprefix('Value error, ')}"


def _check_template(request: SendInput, settings: Settings) -> None:
    if request.template is None:
        return
    template = settings.templates.get(request.template)
    if template is None:
        known = ", ".join(sorted(settings.templates)) or "none configured"
        raise InvalidRequest(f"template: unknown template {request.template!r} (known: {known})")
    if not has_own_params(request):
        template.check_params(request.template, request.params)


def _check_provider(request: SendInput, settings: Settings) -> None:
    """With ``provider=``, refuse now what that vendor would refuse (free text to a template vendor,
    content too long, an emoji, a parameter character it cannot carry)."""
    name = request.provider
    if name is None:
        return
    if request.content is not None:
        if capabilities(name).template_based:
            raise InvalidRequest(
                f"provider: {name} takes registered templates only, not free text (content=)"
            )
        rendered = RenderedTemplate(vendor_template="", text=request.content)
    else:
        template_name = request.template or ""
        template = settings.templates[template_name]
        if not template.supports(name):
            raise InvalidRequest(f"provider: template {template_name!r} has no {name} entry")
        if has_own_params(request):
            return  # checked recipient by recipient in planning
        rendered = template.render(template_name, name, request.params)
    problem = vendor_problem(name, rendered)
    if problem is not None:
        raise InvalidRequest(problem)


def has_own_params(request: SendInput) -> bool:
    """True when some recipient has parameters of its own."""
    recipients = request.recipients()
    if set(map(type, recipients)) == {str}:
        return False  # phones only (checked in C: this runs twice per send, for up to a million)
    return any(isinstance(r, RecipientInput) and r.params for r in recipients)


def vendor_problem(provider: str, rendered: RenderedTemplate) -> str | None:
    """Why ``provider`` would refuse this content (naming the field), or None. Rules are ``Capabilities``."""
    caps = capabilities(provider)
    text = rendered.text
    if len(text) > caps.max_content_chars:
        return f"content: {len(text)} characters, {provider} takes {caps.max_content_chars}"
    if caps.forbids_emoji and (emoji := find_emoji(text)) is not None:
        return f"content: holds an emoji (U+{ord(emoji):04X}), which {provider} refuses"
    if caps.param_forbidden_chars:
        for name, value in zip(rendered.names, rendered.params, strict=False):
            bad = next((ch for ch in caps.param_forbidden_chars if ch in value), None)
            if bad is not None:
                return f"params.{name}: holds {bad!r}, which {provider} cannot carry"
    return None
