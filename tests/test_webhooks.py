"""Webhooks: every event batch reaches a real HTTP endpoint signed (verified there with the README's own
recipe), an endpoint that is down for a while gets every event once it is back, each once and in order,
backoff and give-up are kept in Redis, two runs at once never send a batch twice, secrets never show,
and a bad URL is refused at start."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import structlog
from click.testing import CliRunner

from config.returnpath import WebhookSettings
from tests.conftest import wait_for
from tests.readme_examples import load_example
from tests.webhook_receiver import Receiver, stream_order
from worker.events import StateEvent
from worker.store import Keys, Store
from worker.webhooks import RunReport, backoff_s, deliver, headers_for, shown_url

SECRET = "whsec-0123456789abcdef-test"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An endpoint on a port of its own, not listening yet (calls are refused until ``start()``)."""
    endpoint = Receiver(SECRET)
    yield endpoint
    endpoint.stop()


@pytest.fixture
def store(r: redis.Redis, settings: Any) -> Store:
    return Store(r, settings)


def hooks(url: str, **overrides: Any) -> WebhookSettings:
    values: dict[str, Any] = {"url": url, "secret": SECRET, "batch_size": 4, "timeout_s": 1.0,
                              "backoff_base_s": 0.05, "backoff_cap_s": 0.2, **overrides}
    return WebhookSettings(**values)


def publish(store: Store, start: int, n: int) -> list[str]:
    """``n`` state events for messages ``m-<start>`` ...; returns those message ids."""
    ids = [f"m-{i}" for i in range(start, start + n)]
    store.publish([StateEvent(mid, "submitted", "infocloud", ("13800138000",), "0", "call") for mid in ids])
    return ids


def deliver_until_drained(store: Store, section: WebhookSettings, timeout: float = 15) -> None:
    """Run delivery as beat would (every 50 ms) until nothing is in flight or unread."""

    def drained() -> bool:
        deliver(store, section)
        in_flight, unread, _ = store.webhook_backlog()
        return in_flight == 0 and unread == 0

    wait_for(drained, timeout=timeout, interval=0.05)


def test_the_readme_recipe_accepts_our_signature_and_refuses_tampering() -> None:
    verify = load_example("verify-webhook").verify
    body = b'{"v":"1","events":[]}'
    now = 1_800_000_000
    headers = headers_for(SECRET, body, now)
    assert headers["X-Smsd-Signature"].startswith("v1=")
    assert verify(SECRET, headers, body, now=now + 299)
    assert not verify(SECRET, headers, body + b" ", now=now)  # body changed
    assert not verify(SECRET + "x", headers, body, now=now)  # not our secret
    assert not verify(SECRET, headers, body, now=now + 301)  # replayed after 5 minutes
    assert not verify(SECRET, {**headers, "X-Smsd-Timestamp": str(now + 1)}, body, now=now)  # re-dated
    assert not verify(SECRET, {"X-Smsd-Timestamp": str(now)}, body, now=now)  # unsigned


def test_the_backoff_doubles_up_to_its_cap_and_urls_are_shown_without_credentials() -> None:
    section = hooks("https://hooks.example.com/x", backoff_base_s=1, backoff_cap_s=300)
    assert [backoff_s(section, n) for n in (1, 2, 3, 9, 10, 500)] == [1, 2, 4, 256, 300, 300]
    assert shown_url("https://u:p@hooks.example.com:8443/in?token=t") == "https://hooks.example.com:8443/in?…"
    assert shown_url("http://[::1]:9000/h") == "http://[::1]:9000/h"


def test_an_endpoint_down_for_a_while_gets_every_event_once_in_order(
    store: Store, receiver: Receiver
) -> None:
    section = hooks(receiver.url)
    assert deliver(store, section) == RunReport()  # the first run makes the group: events from now on
    published = publish(store, 0, 10)

    # refused: the batch stays in flight, the backoff is kept in Redis and honoured by the next run
    assert deliver(store, section).stopped == "failed"
    state = store.webhook_state()
    assert state.attempts == 1 and "ConnectError" in state.last_error and state.next_ms > 0
    assert store.webhook_backlog() == (4, 6, True)
    assert deliver(store, section).stopped == "waiting"
    published += publish(store, 10, 5)

    # back, but answering 500: the same batch is tried again, with a longer wait each time
    receiver.mode = "error"
    receiver.start()
    wait_for(lambda: deliver(store, section).stopped == "failed" and len(receiver.batches) >= 2, timeout=10)
    state = store.webhook_state()
    assert state.attempts >= 3 and state.last_error == "HTTP 500" and receiver.accepted == []
    assert all(batch == receiver.batches[0] for batch in receiver.batches)

    receiver.mode = "ok"
    deliver_until_drained(store, section)
    ids = [event["id"] for event in receiver.accepted]
    stream_ids = [entry_id for entry_id, _ in store.r.xrange(Keys.events)]
    assert ids == stream_ids and len(set(ids)) == 15  # every event, once, in order
    assert [event["message_id"] for event in receiver.accepted] == published
    assert receiver.forged == 0
    final = store.webhook_state()
    assert final.attempts == 0 and final.delivered == 15 and final.last_success_ms > 0 and final.dropped == 0


def test_two_runs_at_once_never_send_a_batch_twice(store: Store, receiver: Receiver) -> None:
    receiver.mode, receiver.delay_s = "slow", 0.2
    receiver.start()
    section = hooks(receiver.url, batch_size=5)
    deliver(store, section)
    publish(store, 0, 20)
    reports: list[RunReport] = []

    def beat() -> None:
        for _ in range(15):
            reports.append(deliver(store, section))
            time.sleep(0.02)

    threads = [threading.Thread(target=beat) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [event["id"] for event in receiver.accepted]
    assert len(ids) == 20 and len(set(ids)) == 20 and ids == sorted(ids, key=stream_order)
    assert len(receiver.batches) == 4  # each batch POSTed once
    assert any(report.stopped == "locked" for report in reports)


def test_events_past_give_up_are_dropped_with_an_error_line_and_a_dead_letter(
    store: Store, receiver: Receiver
) -> None:
    section = hooks(receiver.url, give_up_after_s=1, batch_size=2)
    deliver(store, section)
    publish(store, 0, 3)
    time.sleep(1.1)
    publish(store, 3, 2)
    with structlog.testing.capture_logs() as logs:
        report = deliver(store, section)
    assert report.stopped == "failed" and report.dropped == 3
    errors = [line for line in logs if line["log_level"] == "error"]
    assert len(errors) == 1 and errors[0]["events"] == 3 and "ConnectError" in errors[0]["error"]
    [letter] = store.webhook_dead_letters()
    stream_ids = [entry_id for entry_id, _ in store.r.xrange(Keys.events)]
    assert (letter.first_id, letter.last_id, letter.count) == (stream_ids[0], stream_ids[2], 3)
    assert store.webhook_backlog()[:2] in ((0, 2), (2, 0), (1, 1))  # the young ones are still to go
    receiver.start()
    time.sleep(section.backoff_base_s)
    deliver_until_drained(store, section)
    assert [event["message_id"] for event in receiver.accepted] == ["m-3", "m-4"]
    assert store.webhook_state().dropped == 3


def test_secrets_never_reach_a_log_line_the_state_or_the_command(
    store: Store, receiver: Receiver, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logged, state, shown = _run_with_secrets(store, receiver, capsys, monkeypatch)
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
    assert "webhook delivery failed" in logged
    for secret in (SECRET, "pw-in-url", "tok-in-url"):
        assert secret not in logged and secret not in state and secret not in shown


def _run_with_secrets(
    store: Store, receiver: Receiver, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[str, str, str]:
    """Refused, 500, delivered, then the command, all logged at DEBUG: (log, state hash, command output)."""
    from worker.logging import configure

    configure("DEBUG", json=True)
    url = receiver.url.replace("://", "://hookuser:pw-in-url@") + "?token=tok-in-url"
    section = hooks(url)
    deliver(store, section)
    publish(store, 0, 3)
    deliver(store, section)  # refused
    receiver.mode = "error"
    receiver.start()
    wait_for(lambda: deliver(store, section).stopped == "failed" and bool(receiver.batches), timeout=10)
    receiver.mode = "ok"
    deliver_until_drained(store, section)
    assert len(receiver.accepted) == 3
    monkeypatch.setenv("SMSD_WEBHOOKS__URL", url)
    monkeypatch.setenv("SMSD_WEBHOOKS__SECRET", SECRET)
    out = _cli(["webhooks"])
    assert out.exit_code == 0, out.output
    return capsys.readouterr().err, json.dumps(store.r.hgetall(Keys.webhooks)), out.output


def _cli(args: list[str]) -> Any:
    from config.settings import get_settings
    from worker.cli import main

    get_settings.cache_clear()
    try:
        return CliRunner().invoke(main, args)
    finally:
        get_settings.cache_clear()


def test_the_command_shows_where_delivery_stands(
    store: Store, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    section = hooks(receiver.url, backoff_base_s=60, backoff_cap_s=120)
    deliver(store, section)
    publish(store, 0, 6)
    deliver(store, section)
    monkeypatch.setenv("SMSD_WEBHOOKS__URL", receiver.url)
    monkeypatch.setenv("SMSD_WEBHOOKS__SECRET", SECRET)
    out = _cli(["webhooks"])
    assert out.exit_code == 0, out.output
    rows = {line[:14].strip(): line[14:] for line in out.output.splitlines() if line.strip()}
    assert rows["url"] == receiver.url
    assert rows["pending"].startswith("6 (4 in flight)")
    assert rows["last success"] == "never" and "ConnectError" in rows["last error"]
    assert "(in 6" in rows["next attempt"] or "(in 5" in rows["next attempt"]


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ({"SMSD_WEBHOOKS__URL": "ftp://hooks.example.com/x", "SMSD_WEBHOOKS__SECRET": SECRET},
         "SMSD_WEBHOOKS__URL: must start with http:// or https://"),
        ({"SMSD_WEBHOOKS__URL": "https://", "SMSD_WEBHOOKS__SECRET": SECRET},
         "SMSD_WEBHOOKS__URL: has no host"),
        ({"SMSD_WEBHOOKS__URL": "https://hooks.example.com/x"},
         "url is set: secret must be too, at least 16"),
    ],
)
def test_a_bad_webhook_setting_is_refused_at_start(
    bad: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    monkeypatch.delenv("SMSD_WEBHOOKS__SECRET", raising=False)
    for key, value in bad.items():
        monkeypatch.setenv(key, value)
    for command in (["webhooks"], ["worker"], ["beat"]):
        out = _cli(command)
        assert out.exit_code == 1 and expected in out.output, (command, out.output)


def test_off_when_no_url_is_set(store: Store, settings: Any) -> None:
    from tasks.webhooks import deliver_webhooks

    assert settings.webhooks.url == ""
    publish(store, 0, 2)
    assert deliver(store, WebhookSettings()).stopped == "off"
    assert deliver_webhooks() == {"delivered": 0, "batches": 0, "dropped": 0, "stopped": "off"}
    assert store.r.xinfo_groups(Keys.events) == []  # nothing reads the stream for webhooks
