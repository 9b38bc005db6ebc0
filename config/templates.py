"""Logical templates: declared once, rendered into each vendor's form.

In the TOML file::

    [templates.login_code]
    text = "您的验证码是{code}，5分钟内有效。"
    infocloud = "675871161745170000"                            # id; params in the order of the text
    tencent = { id = "7839", params = ["code"] }               # id and its own parameter order
    deepfinch = { id = "TPL_0000", params = ["code"] }

A template has an entry per registered vendor (``providers/vendors.py``): ``{id, params}`` (or just the
id) for a template-based vendor, a bool for a content-based one (Xiaorui, Ihuyi), which takes the rendered
text and needs no entry; ``xiaorui = false`` opts a template out of one. ``TemplateConfig`` is built from
the registry by :func:`template_model`. A text names its placeholders plainly (``{code}``): no format
specs, conversions, positional or attribute/index fields, so that rendering cannot fail at run time.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from providers.base import RenderedTemplate
from providers.descriptor import VendorDescriptor
from providers.vendors import VENDORS

TEMPLATE_ENTRY = "the vendor's template: its id, or {id, params}; unset: this vendor does not send it"
CONTENT_ENTRY = "false keeps the template off this vendor, which sends the rendered text"
MAX_PARAM_CHARS = 35  # Tencent's documented cap for one variable; the strictest of the five
CONTENT_VENDORS = frozenset(name for name, vendor in VENDORS.items() if not vendor.template_based)


class TemplateError(ValueError):
    """A template cannot be rendered: names the template, the field and the problem."""


class VendorTemplate(BaseModel):
    """A template-based vendor's entry: its template id and, optionally, its own parameter order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=200, description="the vendor's template id")
    params: tuple[str, ...] | None = Field(
        None, description="the vendor's order of the text's placeholders (unset: their order in text)"
    )


def placeholders(text: str) -> tuple[str, ...]:
    """Named placeholders of ``text`` in order of first appearance; TemplateError for anything that is
    not a plain ``{name}`` (``{code:d}``, ``{code!r}``, ``{}``, ``{0}``, ``{a.b}``, ``{a[0]}``, a lone
    brace)."""
    names: list[str] = []
    try:
        fields = list(string.Formatter().parse(text))
    except ValueError as exc:  # "Single '}' encountered", "expected '}' before end of string"
        raise TemplateError(f"{exc} (write {{{{ and }}}} for a literal brace)") from None
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        if not name or name.isdigit():
            raise TemplateError(f"positional placeholder {{{name}}}: name it, e.g. {{code}}")
        if not name.isidentifier():
            raise TemplateError(f"placeholder {{{name}}} is not a plain name (no attribute or index access)")
        if conversion:
            raise TemplateError(f"placeholder {{{name}!{conversion}}}: conversions are not allowed")
        if spec:
            raise TemplateError(f"placeholder {{{name}:{spec}}}: format specs are not allowed")
        if name not in names:
            names.append(name)
    return tuple(names)


class TemplateBase(BaseModel):
    """One logical template: a text with named placeholders, and an entry per vendor (the fields added
    by :func:`template_model`: ``VendorTemplate | None`` or ``bool``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(
        min_length=1, max_length=2000, description="the message with named placeholders: {code}"
    )
    max_param_chars: int = Field(MAX_PARAM_CHARS, ge=1, le=1000, description="a longer parameter is refused")

    @field_validator("text")
    @classmethod
    def _plain_placeholders(cls, value: str) -> str:
        placeholders(value)
        return value

    @model_validator(mode="before")
    @classmethod
    def _ids_as_strings(cls, data: Any) -> Any:
        """``infocloud = "6758..."`` (or a number) is short for ``{ id = "6758..." }``."""
        if isinstance(data, Mapping):
            data = dict(data)
            for vendor in cls.vendor_entries():
                value = data.get(vendor)
                if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
                    data[vendor] = {"id": str(value)}
        return data

    @field_validator("*")
    @classmethod
    def _params_in_text(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, VendorTemplate) and value.params is not None:
            text = info.data.get("text")
            extra = sorted(set(value.params) - set(placeholders(text))) if isinstance(text, str) else []
            if extra:
                raise ValueError(f"params names {extra} which the text does not have")
        return value

    @classmethod
    def vendor_entries(cls) -> tuple[str, ...]:
        """The vendors whose entry is ``{id, params}`` (template-based)."""
        return tuple(
            name for name, info in cls.model_fields.items() if info.annotation == VendorTemplate | None
        )

    @property
    def names(self) -> tuple[str, ...]:
        return placeholders(self.text)

    def supports(self, vendor: str) -> bool:
        entry = getattr(self, vendor, None) if vendor in type(self).model_fields else None
        if isinstance(entry, bool):
            return entry
        return entry is not None

    def check_params(self, name: str, params: Mapping[str, Any]) -> dict[str, str]:
        """Validate parameter names and lengths; return them as strings."""
        expected = set(self.names)
        missing = sorted(expected - params.keys())
        extra = sorted(params.keys() - expected)
        if missing:
            raise TemplateError(f"template {name!r}: params: missing {', '.join(missing)}")
        if extra:
            raise TemplateError(f"template {name!r}: params: unexpected {', '.join(extra)}")
        values = {key: str(value) for key, value in params.items()}
        for key, value in values.items():
            if len(value) > self.max_param_chars:
                raise TemplateError(
                    f"template {name!r}: params.{key}: {len(value)} characters, "
                    f"at most {self.max_param_chars}"
                )
        return values

    def render(self, name: str, vendor: str, params: Mapping[str, Any]) -> RenderedTemplate:
        """The vendor's form of this template with ``params`` (checked first)."""
        values = self.check_params(name, params)
        text = self.text.format(**values)
        entry = getattr(self, vendor, None) if vendor in type(self).model_fields else None
        if isinstance(entry, bool):
            if not entry:
                raise TemplateError(f"template {name!r} is disabled for {vendor}")
            return RenderedTemplate(vendor_template="", text=text)
        if not isinstance(entry, VendorTemplate):
            raise TemplateError(f"template {name!r} has no {vendor} template id")
        order = entry.params if entry.params is not None else self.names
        return RenderedTemplate(
            vendor_template=entry.id,
            params=tuple(values[key] for key in order),
            names=tuple(order),
            text=text,
        )


def template_model(vendors: Mapping[str, VendorDescriptor]) -> type[TemplateBase]:
    """The template model with an entry per vendor of ``vendors``: ``VendorTemplate | None`` (default
    none) for a template-based vendor, ``bool`` (default True) for a content-based one."""
    fields: dict[str, Any] = {
        name: (VendorTemplate | None, Field(None, description=TEMPLATE_ENTRY))
        if vendor.template_based
        else (bool, Field(True, description=CONTENT_ENTRY))
        for name, vendor in vendors.items()
    }
    model: type[TemplateBase] = create_model(
        "TemplateConfig", __base__=TemplateBase, __module__=__name__, **fields
    )
    return model


if TYPE_CHECKING:
    TemplateConfig = TemplateBase
else:
    TemplateConfig = template_model(VENDORS)
