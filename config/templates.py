"""Logical templates: declared once, rendered into each vendor's form.

In the TOML file::

    [templates.login_code]
    text = "您的验证码是{code}，5分钟内有效。"
    infocloud = "675871161745170000"                            # id; params in the order of the text
    tencent = { id = "7839", params = ["code"] }               # id and its own parameter order
    deepfinch = { id = "TPL_0000", params = ["code"] }

Content-based vendors (Xiaorui, Ihuyi) take the rendered text and need no entry; ``xiaorui = false``
opts a template out of one.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from providers.base import RenderedTemplate

CONTENT_VENDORS = frozenset({"xiaorui", "ihuyi"})
MAX_PARAM_CHARS = 35  # Tencent's documented cap for one variable; the strictest of the five


class TemplateError(ValueError):
    """A template cannot be rendered: names the template, the field and the problem."""


class VendorTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    params: tuple[str, ...] | None = None


def placeholders(text: str) -> tuple[str, ...]:
    """Named placeholders of ``text`` in order of first appearance."""
    names: list[str] = []
    for _, name, _, _ in string.Formatter().parse(text):
        if name is not None:
            if not name.isidentifier():
                raise TemplateError(f"placeholder {{{name}}} is not a plain name")
            if name not in names:
                names.append(name)
    return tuple(names)


class TemplateConfig(BaseModel):
    """One logical template: a text with named placeholders, and per-vendor ids."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    infocloud: VendorTemplate | None = None
    tencent: VendorTemplate | None = None
    deepfinch: VendorTemplate | None = None
    xiaorui: bool = True
    ihuyi: bool = True
    max_param_chars: int = Field(MAX_PARAM_CHARS, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _ids_as_strings(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            data = dict(data)
            for vendor in ("infocloud", "tencent", "deepfinch"):
                if isinstance(data.get(vendor), str | int):
                    data[vendor] = {"id": str(data[vendor])}
        return data

    @model_validator(mode="after")
    def _check_orders(self) -> TemplateConfig:
        names = set(placeholders(self.text))
        for vendor in ("infocloud", "tencent", "deepfinch"):
            entry: VendorTemplate | None = getattr(self, vendor)
            if entry and entry.params is not None and set(entry.params) - names:
                extra = sorted(set(entry.params) - names)
                raise ValueError(f"{vendor}.params names {extra} which the text does not have")
        return self

    @property
    def names(self) -> tuple[str, ...]:
        return placeholders(self.text)

    def supports(self, vendor: str) -> bool:
        if vendor in CONTENT_VENDORS:
            return bool(getattr(self, vendor))
        return getattr(self, vendor, None) is not None

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
        if vendor in CONTENT_VENDORS:
            if not self.supports(vendor):
                raise TemplateError(f"template {name!r} is disabled for {vendor}")
            return RenderedTemplate(vendor_template="", text=text)
        entry: VendorTemplate | None = getattr(self, vendor, None)
        if entry is None:
            raise TemplateError(f"template {name!r} has no {vendor} template id")
        order = entry.params if entry.params is not None else self.names
        return RenderedTemplate(
            vendor_template=entry.id,
            params=tuple(values[key] for key in order),
            names=tuple(order),
            text=text,
        )
