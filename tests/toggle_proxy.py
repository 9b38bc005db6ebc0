"""A TCP front for a vendor (the simulator) that the test turns down and up: ``refuse`` (nothing listens:
connection refused), ``fail`` (every request answered 503 and counted, with when), ``up`` (bytes forwarded
to the simulator). Switching closes every open connection, so a client's pooled keep-alive connection
cannot outlive an outage."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

FAIL_ANSWER = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class ToggleProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mode = "refuse"
        self.failed_at: list[float] = []  # monotonic times of requests answered 503
        self.lock = threading.Lock()
        self.conns: set[socket.socket] = set()
        self.listener: socket.socket | None = None

    def set(self, mode: str) -> None:
        """``refuse``, ``fail`` or ``up``."""
        with self.lock:
            self.mode = mode
            conns, self.conns = self.conns, set()
        for conn in conns:
            _close(conn)
        if mode == "refuse":
            if self.listener is not None:
                _close(self.listener)
                self.listener = None
        elif self.listener is None:
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(64)
            self.listener = listener
            threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        self.set("refuse")

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with self.lock:
                self.conns.add(conn)
                mode = self.mode
            handler = self._fail if mode == "fail" else self._forward
            threading.Thread(target=handler, args=(conn,), daemon=True).start()

    def _fail(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            with self.lock:
                self._note(data)
            conn.sendall(FAIL_ANSWER)
        _close(conn)

    def _note(self, head: bytes) -> None:
        """Count a request answered 503 (``head``: its bytes up to the blank line), under ``self.lock``."""
        self.failed_at.append(time.monotonic())

    def _forward(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target)
        except OSError:
            _close(conn)
            return
        with self.lock:
            self.conns.add(upstream)
        threading.Thread(target=_pipe, args=(upstream, conn), daemon=True).start()
        _pipe(conn, upstream)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    _close(src)
    _close(dst)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
