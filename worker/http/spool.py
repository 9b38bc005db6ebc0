"""Pushes the receivers could not store in Redis (a restart, an outage), kept on local disk and stored once
Redis answers again, so that a Redis blip loses no receipt or reply to a vendor that does not push again:
Infocloud's document says nothing of retries, Ihuyi tries 3 times within a second, and a receipt is handed
over only once. The R7 soak lost 10,400 of 300,000 receipts through ten 5 s Redis restarts without this.

A push whose ``XADD`` fails is appended as one JSON line to ``<folder>/<pid>.jsonl``, flushed and fsynced,
before the receiver answers the vendor in its success form. A task of the app (``run``, started in its
lifespan) drains every second: this process's own file, and the files of processes that no longer run (an
app that died with pushes on disk). Each file is drained under its ``flock``, so two apps never drain one
file; each line is stored in the inbox with its first arrival time, and a Redis error leaves the rest for the
next round. A line stored twice (the process died between the ``XADD`` and the file's rewrite) is applied
twice, which changes nothing: receipts settle conditionally and replies are deduplicated for six hours.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import redis
import structlog

from providers.pushes import PushKind
from worker.store.inbox import PushInbox
from worker.store.records import now_ms

log = structlog.get_logger(__name__)
DRAIN_EVERY_S = 1.0


def default_folder() -> Path:
    return Path(tempfile.gettempdir()) / "smsdispatch-push-spool"


def spool_folder(spool_dir: str) -> Path:
    """The folder of ``SMSD_PUSH__SPOOL_DIR`` (empty: :func:`default_folder`)."""
    return Path(spool_dir) if spool_dir else default_folder()


def spooled(folder: Path) -> int:
    """Pushes waiting on disk in ``folder``, in every app's file (``smsdispatch pushes``, tests)."""
    total = 0
    for path in folder.glob("*.jsonl"):
        with contextlib.suppress(OSError):
            total += sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return total


class PushSpool:
    """``put`` what the inbox refused; ``drain`` (or ``run``, forever) stores it once Redis answers."""

    def __init__(self, folder: Path, inbox: PushInbox) -> None:
        self.folder = folder
        self.inbox = inbox
        self.path = folder / f"{os.getpid()}.jsonl"

    def put(self, vendor: str, kind: PushKind, body: str, content_type: str, remote: str) -> None:
        """Keep one push on disk (raises ``OSError`` if the disk refuses: the vendor then gets 503)."""
        entry = {"vendor": vendor, "kind": kind.value, "body": body, "content_type": content_type,
                 "remote": remote, "at": now_ms()}  # fmt: skip
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    async def drain(self) -> int:
        """Store what this process and dead ones left on disk; returns how many pushes were stored."""
        stored = 0
        for path in sorted(self.folder.glob("*.jsonl")):
            if path == self.path or not _alive(path.stem):
                stored += await self._drain(path)
        return stored

    async def run(self) -> None:
        while True:
            await asyncio.sleep(DRAIN_EVERY_S)
            try:
                if stored := await self.drain():
                    log.info("spooled pushes stored", count=stored)
            except Exception:
                log.exception("draining the push spool failed")

    async def _drain(self, path: Path) -> int:
        try:
            f = path.open("r+", encoding="utf-8")
        except FileNotFoundError:
            return 0
        with f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # another app drains it
            lines = [line for line in f.read().splitlines() if line.strip()]
            done = stored = 0
            try:
                for line in lines:
                    stored += await self._store(line)
                    done += 1
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, OSError) as exc:
                log.warning("spooled pushes wait for Redis", left=len(lines) - done, error=type(exc).__name__)
            # Only this process appends to its own file, from this event loop: nothing is added between
            # the read above and this rewrite except while awaiting, and those lines follow what was read.
            added = [line for line in f.read().splitlines() if line.strip()]
            rest = lines[done:] + added
            if rest:
                f.seek(0)
                f.truncate()
                f.write("\n".join(rest) + "\n")
                f.flush()
                os.fsync(f.fileno())
            else:
                path.unlink()
        return stored

    async def _store(self, line: str) -> bool:
        """Store one line's push; False for a line that cannot be read or that Redis refuses as a
        command (dropped with a log line: it would refuse it every round). A connection error raises."""
        try:
            entry: dict[str, Any] = json.loads(line)
            kind = PushKind(entry["kind"])
            fields = (str(entry["vendor"]), kind, str(entry["body"]), str(entry["content_type"]))
            remote, at = str(entry.get("remote", "")), int(entry["at"])
        except (ValueError, KeyError, TypeError):
            log.error("a spooled push could not be read; dropped", line=line[:200])
            return False
        try:
            await self.inbox.add(*fields, remote, at_ms=at)
        except redis.ResponseError as exc:
            log.error("a spooled push was refused by Redis; dropped", provider=fields[0], error=str(exc))
            return False
        return True


def _alive(stem: str) -> bool:
    """Whether the process a spool file is named after still runs (a name that is no pid: not alive)."""
    if not stem.isdigit():
        return False
    try:
        os.kill(int(stem), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
