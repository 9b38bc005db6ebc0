"""An application's webhook endpoint for the tests: a real HTTP server in a thread that verifies every
POST with the README's own verification recipe and keeps the events it accepted.

``mode``: "ok" (verify, keep, answer 200), "error" (answer 500, keep nothing), "slow" (wait
``delay_s``, then as "ok"). ``stop()`` closes the socket, so calls are refused until ``start()``
binds the same port again.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.readme_examples import load_example


def stream_order(entry_id: str) -> tuple[int, int]:
    """A stream id's sort key (``<ms>-<seq>``)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Receiver:
    def __init__(self, secret: str, port: int | None = None) -> None:
        self.secret = secret
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks/smsd"
        self.mode = "ok"
        self.delay_s = 0.0
        self.accepted: list[dict[str, str]] = []  # events of the batches answered 200, in arrival order
        self.batches: list[list[str]] = []  # ids of every batch that arrived, whatever the answer
        self.forged = 0  # POSTs whose signature did not verify
        self.verify = load_example("verify-webhook").verify
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(receiver.handle(self.headers, body))  # case-insensitive, as frameworks'
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def handle(self, headers: Any, body: bytes) -> int:
        if not self.verify(self.secret, headers, body):
            with self._lock:
                self.forged += 1
            return 401
        events = json.loads(body)["events"]
        with self._lock:
            self.batches.append([event["id"] for event in events])
        if self.mode == "error":
            return 500
        if self.mode == "slow":
            time.sleep(self.delay_s)
        with self._lock:
            self.accepted.extend(events)
        return 200

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
