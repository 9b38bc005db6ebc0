"""A simulator of the registered vendors' HTTP APIs, as one ASGI app (see ``app.py``).

``DEMO_ENV`` holds the credentials the demo, the tests and the benchmarks give both the adapters and the
simulator, from each vendor's descriptor (``demo_credentials``); they are not secrets of any real account.
"""

from __future__ import annotations

from providers.vendors import VENDORS

DEMO_ENV: dict[str, str] = {
    key: value for vendor in VENDORS.values() for key, value in vendor.demo_env.items()
}
