"""structlog for every process: JSON when stderr is not a terminal, phones masked, secrets dropped.

Celery's and the libraries' own log records go through the same processors (``ProcessorFormatter``), so
nothing reaches the output unmasked. Tasks bind ``task_id`` (and ``message_id``/``provider`` where they
know them) through contextvars.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from providers.phones import mask

SECRET_WORDS = (
    "secret", "password", "access_key", "api_key", "app_key", "sign", "sig", "authorization", "token"
)


def _is_secret(key: str) -> bool:
    low = key.lower()
    return any(word == low or low.endswith("_" + word) or low.startswith(word + "_") for word in SECRET_WORDS)


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Drop secret-named fields and mask every phone number in string values."""
    for key, value in list(event.items()):
        if _is_secret(key):
            event[key] = "[redacted]"
        elif isinstance(value, str):
            event[key] = mask(value)
        elif isinstance(value, list | tuple):
            event[key] = [mask(v) if isinstance(v, str) else v for v in value]
    return event


def configure(level: str = "INFO", json: bool | None = None) -> None:
    """Configure structlog and the standard library's root logger once for this process."""
    if json is None:
        json = not sys.stderr.isatty()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
