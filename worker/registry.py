"""The vendor adapters by name (from the registered descriptors, ``providers/vendors.py``), and one
pooled HTTP client per worker process (made after fork). Every adapter made here has its ``send`` timed
and its outcome counted (``worker.metrics.metered``), so no adapter knows about metrics."""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType

import httpx

from config.settings import Settings, get_settings
from providers.base import Capabilities, Provider
from providers.vendors import VENDORS, descriptor
from worker.metrics import metered

PROVIDER_CLASSES: Mapping[str, type[Provider]] = MappingProxyType(
    {name: vendor.provider for name, vendor in VENDORS.items()}
)

_instances: dict[tuple[int, str], tuple[Settings, Provider]] = {}


def capabilities(name: str) -> Capabilities:
    return descriptor(name).capabilities


def offers(name: str, operation: str) -> bool:
    """True when the vendor's adapter implements ``operation`` (``poll_receipts``, ``poll_inbound``,
    ``balance``): the base class raises UnsupportedFeature for what a vendor does not offer."""
    return getattr(descriptor(name).provider, operation) is not getattr(Provider, operation)


def pulls_receipts(name: str) -> bool:
    """True when the vendor's adapter implements a receipt pull (others push, or offer none)."""
    return offers(name, "poll_receipts")


def make_client(settings: Settings, name: str) -> httpx.Client:
    """A pooled client with explicit time-outs. TLS verification stays on."""
    section = settings.vendor(name)
    timeout = httpx.Timeout(
        section.read_timeout_s, connect=section.connect_timeout_s, pool=section.connect_timeout_s
    )
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=16, keepalive_expiry=30)
    return httpx.Client(
        timeout=timeout, limits=limits, verify=True, headers={"user-agent": "smsdispatch/0.1"}
    )


def get_provider(name: str, settings: Settings | None = None) -> Provider:
    """The adapter for ``name`` in this process, its ``send`` metered; a forked child builds its own (pools
    do not survive fork). It is rebuilt when the settings object changes (the process-wide one is loaded
    once)."""
    settings = settings or get_settings()
    key = (os.getpid(), name)
    cached = _instances.get(key)
    if cached is None or cached[0] is not settings:
        provider = descriptor(name).build(settings.vendor(name), make_client(settings, name))
        provider.send = metered(name, provider.send)  # type: ignore[method-assign, assignment]
        cached = _instances[key] = (settings, provider)
    return cached[1]
