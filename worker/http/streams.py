"""A text writer (``write(out: TextIO)``, like ``control.write_report``) streamed as an HTTP body while it
writes: it runs in a thread of its own and hands its text over in pieces through a bounded queue, so a
report of millions of lines is never held whole, and the first bytes go out at once. A client that
hangs up stops the writer at its next piece.
"""

from __future__ import annotations

import contextlib
import io
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import redis
import structlog

log = structlog.get_logger(__name__)
PIECE_BYTES = 64 * 1024
QUEUED_PIECES = 16  # at most about 1 MB waits for a slow client
PUT_WAIT_S = 1.0


class Gone(Exception):
    """The client went away: the writer stops."""


class _Pipe(io.RawIOBase):
    """Where the writer's bytes go (in pieces of ``PIECE_BYTES``, cut by the buffer above): ``pieces``.
    Once ``dropping`` (the client went away and the writer stopped), what is left is thrown away."""

    def __init__(self, pieces: queue.Queue[bytes | None], gone: threading.Event) -> None:
        self._pieces = pieces
        self._gone = gone
        self.dropping = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if not self.dropping:
            self.put(bytes(data))
        return len(data)

    def put(self, item: bytes | None) -> None:
        """Hand ``item`` over (None: the end), waiting while the queue is full; ``Gone`` once the
        client went away."""
        while True:
            if self._gone.is_set():
                raise Gone
            try:
                self._pieces.put(item, timeout=PUT_WAIT_S)
                return
            except queue.Full:
                continue


def stream_text(write: Callable[[TextIO], None], what: str) -> Iterator[bytes]:
    """The bytes (UTF-8) ``write`` writes, piece by piece, as it writes them. An error in the writer ends
    the body early (the status is already sent) and is logged, naming ``what``."""
    pieces: queue.Queue[bytes | None] = queue.Queue(QUEUED_PIECES)
    gone = threading.Event()
    pipe = _Pipe(pieces, gone)
    text = io.TextIOWrapper(io.BufferedWriter(pipe, PIECE_BYTES), encoding="utf-8", newline="")

    def run() -> None:
        try:
            write(text)
        except Gone:
            pipe.dropping = True
        except (redis.RedisError, LookupError, ValueError, OSError) as exc:
            log.error("stream cut short", what=what, error=f"{type(exc).__name__}: {exc}")
        finally:
            with contextlib.suppress(Gone):
                text.flush()  # what was written, also when cut short
                pipe.put(None)  # whatever happened, a reader still there gets its end

    threading.Thread(target=run, name=f"stream {what}", daemon=True).start()
    try:
        while (piece := pieces.get()) is not None:
            yield piece
    finally:
        gone.set()
