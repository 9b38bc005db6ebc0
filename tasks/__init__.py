"""Celery tasks of smsdispatch. ``from tasks import send_sms`` is the application's entry point.

The task modules are imported on first use, so that ``tasks.request`` and ``tasks.plan`` (plain
functions) can be imported without building the Celery app.
"""

from __future__ import annotations

from typing import Any

__all__ = ["send_sms"]


def __getattr__(name: str) -> Any:
    if name == "send_sms":
        from tasks.send import send_sms

        return send_sms
    raise AttributeError(name)
