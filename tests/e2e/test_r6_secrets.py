"""Reliability check R6 (issue 9): no configured secret anywhere, no whole phone number in any log.

A full run at DEBUG with real processes: a Celery worker, a Celery beat (short intervals), the HTTP API
(``smsdispatch api``), the simulator pushing receipts to the API, a webhook receiver. Through the API: an
OTP, a notify to mainland and international phones, a small campaign (a CSV upload). Then:

- every log line (worker, beat and API stderr) holds no secret and no whole test phone;
- every Redis value (SCAN of every key, each type dumped) and every command Redis ran during the run
  (MONITOR: every broker payload on its way through, every script argument) holds no secret. Kombu's
  message bodies are base64: they are decoded before the search.

The secrets are every ``SecretStr`` anywhere in the settings model and every vendor's credential fields,
enumerated from the model (vendor credentials are the simulator's demo ones; push tokens, the webhook
secret and the API key are made up for the run). Recipient records hold phones by design: phones are
looked for in the logs only.

``reliability/r6_secrets.py`` runs this test and prints its figures.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from pydantic import BaseModel, SecretStr

from config.settings import Settings, get_settings
from providers.simulator.server import SimulatorServer
from providers.vendors import VENDORS
from tests.conftest import ROOT, WorkerProcess, wait_for
from tests.webhook_receiver import Receiver, free_port
from worker.embedded import EmbeddedRedis

pytestmark = pytest.mark.e2e
OTP_PHONE = "13912340001"
NOTIFY_PHONES = ["13912340002", "13912340003", "+447700900123", "+14155550123"]
CAMPAIGN_PHONES = ["13912340101", "13912340102", "13912340103"]
CAMPAIGN_CSV = "phone,name,amount\n" + "".join(f"{p},客户{i},{i}.5\n" for i, p in enumerate(CAMPAIGN_PHONES))
CAMPAIGN_CSV += "+8613912340104,海外,1\nnot-a-phone,坏行,1\n"
ALL_PHONES = [OTP_PHONE, *NOTIFY_PHONES, *CAMPAIGN_PHONES, "+8613912340104"]
ORDER = {"order": "A1", "tracking": "SF1"}
OTP = {"template": "login_code", "params": {"code": "908172"}, "kind": "otp"}


def run_env(webhook: Receiver, webhook_secret: str, api_key: str) -> dict[str, str]:
    """DEBUG logs, a push token for every vendor, webhooks signed, an API key, every beat cadence short."""
    values = {
        "SMSD_LOG_LEVEL": "DEBUG",
        "SMSD_LOG_JSON": "true",
        "SMSD_WEBHOOKS__URL": webhook.url,
        "SMSD_WEBHOOKS__SECRET": webhook_secret,
        "SMSD_WEBHOOKS__INTERVAL_S": "0.5",
        "SMSD_API__KEYS": json.dumps([{"name": "r6", "key": api_key}]),
        "SMSD_PUSH__APPLY_INTERVAL_S": "0.5",
        "SMSD_CAMPAIGN__TICK_S": "0.5",
        "SMSD_CAMPAIGN__QUIET_HOURS": "",
        "SMSD_SWEEP_INTERVAL_S": "1",
    }
    for vendor in VENDORS.values():
        values[vendor.env_name("PUSH_TOKEN")] = f"r6push{vendor.name}{secrets.token_hex(8)}"
        values[vendor.env_name("RECEIPT_POLL_INTERVAL_S")] = "0.5"
    return values


def configured_secrets(settings: Settings) -> dict[str, str]:
    """Every secret the settings hold, by where it is: each ``SecretStr`` in the model, walked whole,
    and each vendor's credential fields (some are plain strings: an account, an app id)."""
    found: dict[str, str] = {}

    def walk(value: Any, where: str) -> None:
        if isinstance(value, SecretStr):
            if value.get_secret_value():
                found[where] = value.get_secret_value()
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name), f"{where}.{name}" if where else name)
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                walk(item, f"{where}[{i}]")
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{where}[{key}]")

    walk(settings, "")
    for name in VENDORS:
        section = settings.vendor(name)
        walk(section, name)
        for field in section.credential_fields():
            value = getattr(section, field)
            text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
            if text:
                found[f"{name}.{field}"] = text
    return found


def phone_forms(phone: str) -> set[str]:
    """A whole phone as it could be written: national digits, and with the country code, with or
    without ``+``."""
    digits = phone.lstrip("+")
    if phone.startswith("+86"):
        return {digits, digits[2:]}
    return {digits} if phone.startswith("+") else {phone, "86" + phone}


class Monitor:
    """Every command Redis runs while it is open (MONITOR on the embedded server's socket), as text."""

    def __init__(self, server: EmbeddedRedis) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(server.socket)
        self.sock.sendall(b"MONITOR\r\n")
        self.sock.settimeout(0.2)
        self.chunks: list[bytes] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, name="monitor", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.stop.is_set():
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                continue
            if not data:
                return
            self.chunks.append(data)

    def close(self) -> str:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()
        # MONITOR escapes non-ASCII bytes as \xNN: undo it so UTF-8 text compares.
        raw = b"".join(self.chunks).decode("ascii", "replace")
        return raw.encode("latin-1", "replace").decode("unicode_escape", "replace")


# Any whole mainland mobile number (ours or not), not part of a longer run of digits (ids, times).
MAINLAND = re.compile(r"(?<!\d)(?:\+?86)?1[3-9]\d{9}(?!\d)")
BASE64_BODY = re.compile(r'body\\*"\s*:\s*\\*"([A-Za-z0-9+/=]{8,})')


def with_decoded_bodies(text: str) -> str:
    """``text`` and, after it, every base64 message body in it decoded (kombu encodes task bodies)."""
    decoded = []
    for match in BASE64_BODY.finditer(text):
        try:
            decoded.append(base64.b64decode(match.group(1)).decode("utf-8", "replace"))
        except (binascii.Error, ValueError):
            continue
    return "\n".join([text, *decoded])


# How to read a value of each Redis type whole (a stream: its entries and its consumer groups).
READERS: dict[str, Callable[[Any, str], Any]] = {
    "string": lambda r, key: r.get(key),
    "hash": lambda r, key: r.hgetall(key),
    "list": lambda r, key: r.lrange(key, 0, -1),
    "set": lambda r, key: sorted(r.smembers(key)),
    "zset": lambda r, key: r.zrange(key, 0, -1, withscores=True),
    "stream": lambda r, key: [*r.xrange(key), *r.xinfo_groups(key)],
}


def dump_redis(r: Any) -> tuple[int, str]:
    """Every key and every value in the database, as text. Returns (keys, text)."""
    parts = []
    for key in r.scan_iter(count=1000):
        kind = r.type(key)
        parts.append(f"{key} {kind} {READERS[kind](r, key)!r}")
    return len(parts), with_decoded_bodies("\n".join(parts))


def leaks(haystacks: dict[str, str], needles: dict[str, str]) -> list[str]:
    """``where: name`` for every needle found in a haystack, with a line of context."""
    found = []
    for where, text in haystacks.items():
        for name, needle in needles.items():
            at = text.find(needle)
            if at >= 0:
                line_start = text.rfind("\n", 0, at) + 1
                line_end = text.find("\n", at)
                line = text[line_start : line_end if line_end >= 0 else None]
                found.append(f"{where}: {name}: {line[:300]}")
    return found


class Process(WorkerProcess):
    """A subprocess (the beat, the API) whose stdout and stderr go to files; stopped as a worker is."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = log.stem, log
        self.proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log.with_suffix(".out").open("w"),
                                     stderr=log.open("w"), start_new_session=True)  # fmt: skip

    def text(self) -> str:
        return self.log.read_text(errors="replace") + self.log.with_suffix(".out").read_text(errors="replace")


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.stop()


@pytest.fixture
def run_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """The environment set through it is undone after the test, and the settings read again, so that the
    next test does not get this run's (cached) settings."""
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()


def final(status: dict[str, Any]) -> bool:
    counts = status["counts"]
    return sum(counts.values()) > 0 and all(
        counts.get(state, 0) == 0 for state in ("queued", "retry", "sending", "submitted")
    )


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def start_stack(
    start_worker: Callable[..., WorkerProcess],
    processes: list[Process],
    run: dict[str, str],
    tmp_path: Path,
    api_port: int,
) -> WorkerProcess:
    """The worker, a beat and the API (``smsdispatch api``), each logging to its own file; started
    together (each takes seconds to import)."""
    beat = [sys.executable, "-m", "celery", "-A", "worker.app", "beat", "-l", "DEBUG"]
    processes.append(Process([*beat, "-s", str(tmp_path / "beat-schedule")], run, tmp_path / "beat.log"))
    api = [sys.executable, "-c", "from worker.cli import main; main()", "api", "--port", str(api_port)]
    processes.append(Process(api, run, tmp_path / "api.log"))
    worker = start_worker("r6", **run)
    wait_for(lambda: _answers(f"http://127.0.0.1:{api_port}"), timeout=20, interval=0.2)
    return worker


def traffic(base: str, api_key: str) -> list[dict[str, Any]]:
    """An OTP, a notify (mainland and international phones) and a campaign through the API, waited for
    until every recipient is final. Returns their statuses."""
    order = {"template": "order_shipped", "params": ORDER}
    upload = {"file": ("r6.csv", CAMPAIGN_CSV.encode(), "text/csv")}
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {api_key}"}, timeout=20) as client:
        answers = [
            client.post("/v1/messages", json={**OTP, "to": OTP_PHONE}),
            client.post(
                "/v1/messages", json={**order, "to": NOTIFY_PHONES}, headers={"Idempotency-Key": "r6"}
            ),
            client.post("/v1/campaigns", files=upload, data={"template": "bill", "name": "r6"}),
        ]
        assert [a.status_code for a in answers] == [202, 202, 201], [a.text for a in answers]
        locations = [answer.headers["location"] for answer in answers]
        wait_for(lambda: all(final(client.get(url).json()) for url in locations), timeout=60, interval=0.5)
        return [client.get(url).json() for url in locations]


def test_r6_no_secret_in_logs_redis_or_broker_and_no_whole_phone_in_logs(
    start_worker: Callable[..., WorkerProcess],
    sim: SimulatorServer,
    r: redis.Redis,
    env: dict[str, str],
    embedded_redis: EmbeddedRedis,
    processes: list[Process],
    tmp_path: Path,
    run_settings: pytest.MonkeyPatch,
) -> None:
    api_key, webhook_secret = secrets.token_hex(20), "r6hook" + secrets.token_hex(12)
    webhook = Receiver(webhook_secret).start()
    api_port = free_port()
    extra = run_env(webhook, webhook_secret, api_key)
    for key, value in extra.items():
        run_settings.setenv(key, value)
    get_settings.cache_clear()
    settings = get_settings()
    hidden = configured_secrets(settings)
    assert api_key in hidden.values() and webhook_secret in hidden.values()
    monitor = Monitor(embedded_redis)
    started = time.monotonic()
    try:
        worker = start_stack(start_worker, processes, {**os.environ, **env, **extra}, tmp_path, api_port)
        up = time.monotonic()
        base = f"http://127.0.0.1:{api_port}"
        token = {"infocloud": settings.vendor("infocloud").push_token.get_secret_value()}
        sim.state.config = replace(
            sim.state.config, push_urls={"infocloud": base}, push_tokens=token, receipt_delay_s=0.3
        )
        statuses = traffic(base, api_key)
        sent = time.monotonic()
        wait_for(lambda: len(webhook.accepted) > 0, timeout=20, interval=0.2)
        assert sim.state.counters("infocloud").pushed > 0, "the simulator pushed no receipt"
    finally:
        for process in processes:
            process.stop()
        webhook.stop()
        commands = with_decoded_bodies(monitor.close())
    worker.stop()
    keys, stored = dump_redis(r)
    logs = {
        "worker": worker.log.read_text(errors="replace"),
        "beat": processes[0].text(),
        "API": processes[1].text(),
    }
    lines = {name: text.count("\n") for name, text in logs.items()}
    phones = {f"phone {p} as {form}": form for p in ALL_PHONES for form in phone_forms(p)}
    secret_leaks = leaks({**logs, "Redis values": stored, "Redis commands": commands}, hidden)
    phone_leaks = leaks(logs, phones) + [
        f"{where}: a mainland number {match.group()}"
        for where, text in logs.items()
        for match in MAINLAND.finditer(text)
    ]
    print(
        f"\nR6: {time.monotonic() - started:.1f} s (up {up - started:.1f}, traffic final {sent - up:.1f}); "
        f"secrets {len(hidden)} ({', '.join(sorted(hidden))}); "
        f"log lines {lines}; Redis keys {keys} ({len(stored)} chars); Redis commands "
        f"{commands.count(chr(10))}; webhook events {len(webhook.accepted)}; receipts pushed "
        f"{sim.state.counters('infocloud').pushed}; counts {[s['counts'] for s in statuses]}; "
        f"secret leaks {len(secret_leaks)}; phone leaks {len(phone_leaks)}"
    )
    for leak in secret_leaks + phone_leaks:
        print(f"R6 leak: {leak}")
    assert '"level": "debug"' in logs["worker"] and sum(lines.values()) > 100, "not a DEBUG run"
    # Every process logs through worker.logging's processors (phones masked, secret fields dropped): the
    # API's own lines are its JSON records, not structlog's unconfigured console output.
    assert '"event": "message queued over HTTP"' in logs["API"], "the API logs without worker.logging"
    assert not secret_leaks, f"secrets found: {secret_leaks[:5]}"
    assert not phone_leaks, f"whole phones in logs: {phone_leaks[:5]}"
