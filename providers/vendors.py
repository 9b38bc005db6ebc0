"""The registered vendors, in order: the built-in ones listed once (``BUILTIN``), then plug-ins.

Each vendor module ends with ``VENDOR = VendorDescriptor(...)`` (``providers/descriptor.py``). Settings,
templates, the worker's registry, routing defaults, the simulator, the demo credentials and the contract
suite are all derived from ``VENDORS``.

Plug-ins: ``SMSD_VENDOR_MODULES`` is a comma-separated list of importable modules, each ending with its
``VENDOR``, e.g. ``SMSD_VENDOR_MODULES=tests.dummy_vendor``. It is read once, when this module is first
imported (before settings are built), so every process that should know the vendor (the producer, each
Celery worker and its pool children, beat, the CLI) must be started with it in its environment; Celery's
subprocesses inherit it. A module that cannot be imported or has no valid ``VENDOR`` is left out and
named in ``LOAD_ERRORS``, which ``config.settings.load_settings`` raises as a ``SettingsError``.

A vendor module must not import ``config.settings`` at import time: that module is built from this one.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from providers.descriptor import VendorDescriptor

BUILTIN: tuple[str, ...] = (
    "providers.infocloud",
    "providers.xiaorui",
    "providers.deepfinch",
    "providers.tencent",
    "providers.ihuyi",
)
PLUGIN_ENV = "SMSD_VENDOR_MODULES"


def plugin_modules(environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """The modules named in ``SMSD_VENDOR_MODULES`` (comma-separated, blanks ignored)."""
    return tuple(part.strip() for part in environ.get(PLUGIN_ENV, "").split(",") if part.strip())


def load(modules: Iterable[str]) -> tuple[dict[str, VendorDescriptor], list[str]]:
    """The descriptors of ``modules`` by name, in order, and a line per module left out (and why)."""
    vendors: dict[str, VendorDescriptor] = {}
    errors: list[str] = []
    for module_name in modules:
        descriptor, problem = _descriptor_of(module_name)
        if descriptor is not None and descriptor.name in vendors:
            problem = f"vendor {descriptor.name!r} is registered twice"
        if problem or descriptor is None:
            errors.append(f"{module_name}: {problem}")
        else:
            vendors[descriptor.name] = descriptor
    return vendors, errors


def _descriptor_of(module_name: str) -> tuple[VendorDescriptor | None, str]:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # ModuleNotFoundError included; other errors are the plug-in's own bug
        return None, f"cannot import it ({exc})"
    descriptor = getattr(module, "VENDOR", None)
    if not isinstance(descriptor, VendorDescriptor):
        return None, "has no VENDOR = VendorDescriptor(...)"
    if descriptor.problems:
        return None, "; ".join(descriptor.problems)
    return descriptor, ""


_loaded, _errors = load((*BUILTIN, *plugin_modules()))
VENDORS: Mapping[str, VendorDescriptor] = MappingProxyType(_loaded)
"""Every registered vendor by name, built-in ones first."""
LOAD_ERRORS: tuple[str, ...] = tuple(_errors)
"""A line per module of ``SMSD_VENDOR_MODULES`` (or ``BUILTIN``) that could not be registered."""


def descriptor(name: str) -> VendorDescriptor:
    """The registered vendor ``name``; KeyError naming the registered ones otherwise."""
    try:
        return VENDORS[name]
    except KeyError:
        raise KeyError(f"unknown vendor {name!r} (registered: {', '.join(VENDORS)})") from None
