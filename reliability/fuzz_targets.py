"""The targets of ``reliability/fuzz.py``: a strategy of hostile input and a check that says whether the
code under test refused it clearly, accepted it, or let something else out (raised to the caller)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

ACCEPTED = "accepted"
REFUSED = "refused"


def _environment() -> None:
    """The test suite's templates and the demo credentials, without any service."""
    from providers.simulator import DEMO_ENV
    from tests.conftest import TEST_TOML

    path = os.path.join(tempfile.mkdtemp(prefix="smsd-fuzz-"), "smsd.toml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(TEST_TOML)
    os.environ.update({**DEMO_ENV, "SMSD_CONFIG": path, "SMSD_REDIS_URL": "redis://127.0.0.1:1/0"})


def _capture_publish() -> None:
    """Replace Celery's publish with kombu's JSON encoding of what would be sent: ``.delay()`` runs its
    validation and serialization, and nothing needs a broker."""
    from celery import Task
    from kombu.serialization import dumps

    def publish(self: Task, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        dumps({"args": args, "kwargs": kwargs}, serializer="json")
        return kwargs

    Task.apply_async = publish  # type: ignore[method-assign]


def send_sms_target() -> tuple[st.SearchStrategy[Any], Any]:
    from config.settings import get_settings
    from tasks.plan import InvalidRequest, build_plan, validate_request
    from tasks.send import SendTask, send_sms
    from tests.strategies_input import send_kwargs

    settings = get_settings()

    def check(kwargs: dict[str, Any]) -> str:
        try:
            sent = SendTask.apply_async(send_sms, (), dict(kwargs))
        except InvalidRequest:
            return REFUSED
        # What the worker does with it: validate the JSON form again and plan it.
        build_plan(validate_request(sent, settings), settings, {})
        return ACCEPTED

    return send_kwargs(), check


def all_targets() -> Iterator[tuple[str, tuple[st.SearchStrategy[Any], Any]]]:
    _environment()
    _capture_publish()
    yield "send_sms arguments", send_sms_target()
    yield from _optional("tests.providers.strategies", "fuzz_targets")
    yield from _optional("tests.strategies_settings", "fuzz_targets")


def _optional(module: str, name: str) -> Iterator[tuple[str, tuple[st.SearchStrategy[Any], Any]]]:
    """Targets a strategies module offers as ``fuzz_targets()`` (adapters, settings)."""
    import importlib

    targets = getattr(importlib.import_module(module), name)
    yield from targets()
