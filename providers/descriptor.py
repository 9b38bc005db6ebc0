"""One vendor, described once: the descriptor a vendor module ends with (``VENDOR = VendorDescriptor(...)``).

Settings (a section per vendor), templates (an entry per vendor), the worker's registry, routing
defaults, the simulator, the demo credentials and the contract suite all derive from the registered
descriptors (``providers/vendors.py``). This module imports no vendor, so vendor modules can import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import httpx

from config.sections import VendorSettings
from providers.base import Capabilities, Provider
from providers.errors import ProviderError


@dataclass(frozen=True)
class VendorDescriptor:
    """Everything the rest of the system needs to know about one vendor.

    ``name``: lowercase, the adapter's ``Provider.name``; settings read ``SMSD_<NAME>__<FIELD>``.
    ``provider``: the adapter class, built as ``provider(section, client)``.
    ``settings``: its settings section (a :class:`VendorSettings` whose every field has a default).
    ``simulator``: the module of its simulator, with ``build(state, settings)`` returning an object with
    ``routes()``; imported only when a simulator is built.
    ``demo_credentials``: settings field -> value the simulator accepts (the demo and the tests use them).
    ``codes``: the vendor's documented codes -> class of the error tree.
    ``code_field``: the field of the vendor's answer holding its code.
    ``refused_code``: the outcome code of a number refused inside an accepted batch (batch vendors).
    """

    name: str
    provider: type[Provider]
    settings: type[VendorSettings]
    simulator: str
    demo_credentials: Mapping[str, str]
    codes: Mapping[str, type[ProviderError]]
    code_field: str
    refused_code: str = ""
    _problems: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "demo_credentials", MappingProxyType(dict(self.demo_credentials)))
        object.__setattr__(self, "_problems", tuple(self._check()))

    def _check(self) -> list[str]:
        problems = []
        if not (self.name.isidentifier() and self.name.isascii() and self.name == self.name.lower()):
            problems.append(f"name {self.name!r} is not a lowercase identifier")
        if self.provider.name != self.name:
            problems.append(f"{self.provider.__name__}.name is {self.provider.name!r}, not {self.name!r}")
        fields = self.settings.model_fields
        required = [name for name, info in fields.items() if info.is_required()]
        if required:
            problems.append(f"{self.settings.__name__} has fields without a default: {', '.join(required)}")
        unknown = sorted(set(self.demo_credentials) - set(fields))
        if unknown:
            problems.append(f"demo_credentials name unknown fields: {', '.join(unknown)}")
        return problems

    @property
    def problems(self) -> tuple[str, ...]:
        """What is wrong with this descriptor (empty when it can be registered)."""
        return self._problems

    @property
    def capabilities(self) -> Capabilities:
        return self.provider.capabilities

    @property
    def template_based(self) -> bool:
        """True: templates carry ``{id, params}`` for this vendor; False: it takes the rendered text and a
        template's entry is a bool (opt out with ``false``)."""
        return self.capabilities.template_based

    def env_name(self, field_name: str) -> str:
        """The environment variable of one of this vendor's settings: ``SMSD_<NAME>__<FIELD>``."""
        return f"SMSD_{self.name.upper()}__{field_name.upper()}"

    @property
    def demo_env(self) -> dict[str, str]:
        """The demo credentials as environment variables."""
        return {self.env_name(key): value for key, value in self.demo_credentials.items()}

    def build(self, section: VendorSettings, client: httpx.Client) -> Provider:
        """The adapter for ``section`` over ``client``."""
        if not isinstance(section, self.settings):
            raise TypeError(f"{self.name}: a {type(section).__name__} is not a {self.settings.__name__}")
        # Every adapter takes (its settings section, client); the base class only the client.
        adapter: Provider = self.provider(section, client)  # type: ignore[call-arg, arg-type]
        return adapter
