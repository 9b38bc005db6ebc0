"""A simulator of the registered vendors' HTTP APIs, as one ASGI app (see ``app.py``).

``DEMO_ENV`` holds the credentials the demo, the tests and the benchmarks give both the adapters and the
simulator, from each vendor's descriptor (``demo_credentials``); they are not secrets of any real account.

The simulator accepts those and nothing else (:func:`demo_settings`): it runs next to real workers (the
compose stack, a developer's machine with real settings exported), and a simulator that took whatever
credentials the environment held would be a place where a real key works and a leaked one goes unnoticed.
Any other credential is refused with the vendor's own code for a bad one (``BAD_CREDENTIAL`` of each
vendor's simulator module).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from providers.vendors import VENDORS

if TYPE_CHECKING:
    from config.settings import Settings

DEMO_ENV: dict[str, str] = {
    key: value for vendor in VENDORS.values() for key, value in vendor.demo_env.items()
}


def demo_settings(settings: Settings) -> Settings:
    """``settings`` with every vendor's demo credentials in place of whatever was configured."""
    sections = {}
    for name, vendor in VENDORS.items():
        section = settings.vendor(name)
        sections[name] = type(section).model_validate({**section.model_dump(), **vendor.demo_credentials})
    return settings.model_copy(update=sections)


def bad_credential_code(vendor: str) -> str:
    """What the simulator of ``vendor`` answers a credential that is not the demo's (its ``BAD_CREDENTIAL``;
    ``"refused"`` for a plug-in vendor whose simulator does not name it)."""
    module = importlib.import_module(VENDORS[vendor].simulator)
    return str(getattr(module, "BAD_CREDENTIAL", "refused"))


def ignored_credentials(environ: dict[str, str]) -> list[str]:
    """The credential variables set in ``environ`` to something other than the demo value: the simulator
    ignores them (sorted names, values never shown)."""
    return sorted(key for key, value in DEMO_ENV.items() if environ.get(key) not in (None, "", value))


def demo_only_lines() -> list[str]:
    """What the simulator prints at start: it takes only the demo credentials, which they are, and the code
    each vendor answers any other."""
    lines = ["demo-only: the simulator accepts the demo credentials below and refuses any other, with the"
             " vendor's own code for a bad credential"]
    for name, vendor in VENDORS.items():
        creds = " ".join(f"{key}={value}" for key, value in vendor.demo_env.items())
        lines.append(f"  {name:<10} refuses with {bad_credential_code(name):<12} accepts {creds}")
    return lines
