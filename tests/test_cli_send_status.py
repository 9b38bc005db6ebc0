"""``smsdispatch send``, ``status`` and ``--version``: exit codes, one-line errors, filters, --json, and a
real worker for ``send --wait``."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from importlib.metadata import version
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result

from providers.simulator.core import FaultPlan
from tests.conftest import WorkerProcess
from worker.cli import main
from worker.store import Keys, Outcome, Recording, State, Store, now_ms

P1, P2, P3 = "13800138000", "13900139000", "13700137000"
LOCAL_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+08:00")


@pytest.fixture(autouse=True)
def logging_restored() -> Iterator[None]:
    """The commands configure logging for their process (to the stderr click's test runner lends
    them): put back what was there for the tests that follow."""
    import logging

    import structlog

    root = logging.getLogger()
    handlers, level, config = root.handlers[:], root.level, structlog.get_config()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def one_line_error(out: Result, code: int, *needles: str) -> None:
    """The command failed with ``code`` and said why in one line, without a traceback."""
    assert out.exit_code == code, out.output
    assert out.output.count("\n") == 1 and out.output.startswith("Error: "), out.output
    assert "Traceback" not in out.output
    for needle in needles:
        assert needle in out.output, out.output


@pytest.fixture
def store(r: redis.Redis, settings: Any) -> Store:
    return Store(r, settings)


@pytest.fixture
def message(store: Store) -> str:
    """A message with one recipient delivered, one failed (Tencent), one waiting in retry, one refused."""
    store.create_message("m-1", {"kind": "notify", "template": "order_shipped", "recipients": 4, "chunks": 1,
                                 "providers": "infocloud", "created_ms": now_ms()})
    store.record("m-1", "infocloud", Recording([Outcome(P1, State.DELIVERED, "DELIVRD", vendor_id="5")]),
                 from_states=("none",))
    store.record("m-1", "tencent", Recording([Outcome(P2, State.FAILED, "UNDELIV", "no such user", fee=2)]),
                 from_states=("none",))
    store.record("m-1", "infocloud", Recording([Outcome(P3, State.RETRY, "TIMEOUT", "read timed out")]),
                 from_states=("none",))
    store.reject("m-1", [("12345", "not a phone number")])
    return "m-1"


def test_version_comes_from_the_package_metadata() -> None:
    out = cli("--version")
    assert out.exit_code == 0 and out.output == f"smsdispatch {version('smsdispatch')}\n"


def test_help_documents_every_exit_code_and_each_command_has_examples() -> None:
    out = cli("--help")
    assert out.exit_code == 0
    for code in range(6):
        assert re.search(rf"^\s+{code}\s+\S", out.output, re.MULTILINE), out.output
    for command in ("send", "status"):
        sub = cli(command, "--help")
        assert sub.exit_code == 0 and "Examples:" in sub.output and "exit 0" in sub.output.lower()


def test_status_shows_zoned_times_counts_and_the_vendors_used(message: str) -> None:
    out = cli("status", message)
    assert out.exit_code == 0, out.output
    assert LOCAL_TIME.search(out.output), out.output  # created, in Asia/Shanghai with its offset
    assert "infocloud (2), tencent (1)" in out.output  # what the recipients went through, not the plan
    for state in ("delivered", "failed", "retry", "rejected"):
        assert re.search(rf"^{state}\s+1$", out.output, re.MULTILINE), out.output
    assert P1 not in out.output  # no listing without --recipients, --state or --phone


def test_status_state_filter_shows_a_retry_with_its_reason_and_next_attempt(
    store: Store, message: str
) -> None:
    due = now_ms() + 90_000
    chunk = {"number": 0, "provider": "infocloud", "phones": [P3]}
    job = {"kind": "notify", "queue": "sms.notify", "attempt": 2, "chunk": chunk}
    store.open_chunk(message, 0, job, due + store.settings.lease_grace_s * 1000, queued=False)
    out = cli("status", message, "--state", "retry")
    assert out.exit_code == 0, out.output
    (row,) = [line for line in out.output.splitlines() if "137****7000" in line]
    assert "TIMEOUT" in row and "read timed out" in row
    assert "next attempt about" in row and "attempt 3" in row and "in 90 s" in row
    assert "138****8000" not in out.output  # only the state asked for
    store.defer({"args": [message, "notify", chunk, 3], "queue": "sms.notify", "id": "x"}, due + 60_000)
    row = cli("status", message, "--state", "retry").output.splitlines()[-1]
    assert "next attempt about" not in row and "attempt 4" in row and "(in 2 min" in row  # the exact wait


def test_status_phone_is_matched_after_normalization_and_shown_masked(message: str) -> None:
    out = cli("status", message, "--phone", "+86 138-0013-8000")
    assert out.exit_code == 0, out.output
    assert "138****8000" in out.output and "delivered" in out.output.splitlines()[-1]
    assert P1 not in out.output
    one_line_error(cli("status", message, "--phone", "13600136000"), 3, "no recipient 136****6000")
    one_line_error(cli("status", message, "--phone", "12"), 2, "--phone:")


def test_status_json_has_meta_counts_vendors_and_the_recipients_asked_for(store: Store, message: str) -> None:
    out = cli("status", message, "--json", "--state", "failed", "--state", "retry")
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert set(doc) == {"id", "timezone", "meta", "counts", "parts", "vendors", "recipients"}
    assert doc["timezone"] == "Asia/Shanghai" and doc["meta"]["created"].endswith("+08:00")
    assert doc["meta"]["planned"] == ["infocloud"] and doc["meta"]["campaign"] is False
    assert doc["counts"] == {"delivered": 1, "failed": 1, "retry": 1, "rejected": 1}
    assert doc["vendors"] == {"infocloud": {"delivered": 1, "retry": 1}, "tencent": {"failed": 1}}
    by_phone = {row["phone"]: row for row in doc["recipients"]}
    assert set(by_phone) == {"139****9000", "137****7000"}
    assert by_phone["139****9000"]["parts"] == 2 and by_phone["139****9000"]["vendor"] == "tencent"
    assert by_phone["137****7000"]["next_attempt"] is None  # no open chunk holds it
    assert json.loads(cli("status", message, "--json").output)["recipients"] == []


def test_status_errors_are_one_line_with_their_exit_codes(message: str) -> None:
    one_line_error(cli("status", "nope"), 3, "no message nope")
    one_line_error(cli("status", message, "--state", "lost"), 2, "--state: 'lost' is not a state")
    one_line_error(cli("status", "m\x1b[2J\n1"), 3, "no message m\\x1b[2J\\x0a1")


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(
    message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(Store, "vendor_counts", broken)
    one_line_error(cli("status", message), 1, "RuntimeError: disk on fire second line", "--debug")
    out = cli("--debug", "status", message)
    assert out.exit_code == 1 and isinstance(out.exception, RuntimeError)


def test_send_refused_by_the_producer_is_one_line_naming_the_field_and_queues_nothing(
    r: redis.Redis, settings: Any
) -> None:
    one_line_error(cli("send", P1, "-t", "nope"), 2, "template: unknown template 'nope'")
    one_line_error(cli("send", P1, "-t", "login_code"), 2, "code")  # the missing parameter is named
    one_line_error(cli("send", P1, "-t", "login_code", "-p", "code"), 2, "--param: 'code' is not NAME=VALUE")
    one_line_error(cli("send", P1, "-t", "login_code", "--content", "hi"), 2, "template")
    assert Store(r, settings).queue_length("sms.otp") + Store(r, settings).queue_length("sms.notify") == 0


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["send", "-t", "login_code"], "Missing argument 'PHONE...'. (see: "),
        (["send", P1, "--kind", "loud"], "Invalid value for '--kind'"),
        (["status"], "Missing argument 'MESSAGE_ID'"),
        (["campaign", "submit", "/nonexistent.csv", "-t", "bill"], "File '/nonexistent.csv' does not exist"),
        (["nope"], "No such command 'nope'"),
    ],
)
def test_usage_errors_are_one_line_exit_2(argv: list[str], needle: str) -> None:
    one_line_error(cli(*argv), 2, needle)


def test_send_queues_and_prints_the_message_id(r: redis.Redis, settings: Any) -> None:
    out = cli("send", f"{P1},{P2}", P3, "-t", "login_code", "-p", "code=1234", "--kind", "otp")
    assert out.exit_code == 0, out.output
    assert re.fullmatch(r"[0-9a-f-]{36}\n", out.output)
    assert Store(r, settings).queue_length("sms.otp") == 1


def test_send_wait_without_a_worker_says_which_queue_and_exits_1(r: redis.Redis, settings: Any) -> None:
    out = cli("send", P1, "-t", "login_code", "-p", "code=1", "--kind", "otp", "--wait", "0.5")
    assert out.exit_code == 1, out.output
    assert out.output.endswith("Error: not planned within 0.5 s: is a worker consuming sms.otp?\n")


def test_an_unreachable_redis_is_exit_5_in_one_line(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from config.settings import get_settings

    monkeypatch.setenv("SMSD_REDIS_URL", "redis://127.0.0.1:1/0")
    get_settings.cache_clear()
    try:
        for command in (["send", P1, "-t", "login_code", "-p", "code=1"], ["status", "m-1"]):
            one_line_error(cli(*command), 5, "SMSD_REDIS_URL=redis://127.0.0.1:1/0: cannot reach Redis")
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


@pytest.fixture
def receipts(simulator: Any) -> Iterator[None]:
    """Beat's receipt poll, in a thread of the test (the worker sends, this collects the receipts)."""
    from tasks.poll import poll_receipts

    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.2):
            poll_receipts("infocloud")

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(5)


def test_send_wait_follows_to_the_final_states(
    start_worker: Callable[..., WorkerProcess], sim: Any, r: redis.Redis, receipts: None
) -> None:
    start_worker("send-wait", queues="sms.otp,sms.notify", concurrency=1)
    out = cli("send", P1, "-t", "login_code", "-p", "code=1234", "--kind", "otp", "--wait", "20")
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert re.fullmatch(r"[0-9a-f-]{36}", lines[0]) and "138****8000" in lines[1] and "delivered" in lines[1]
    assert lines[-1] == "delivered 1"
    sim.state.set_faults("infocloud", FaultPlan(codes=("60001",), code_rate=1.0))  # refused for good
    out = cli("send", P2, "not-a-phone", "-t", "login_code", "-p", "code=1", "--wait", "20")
    assert out.exit_code == 1, out.output
    assert "failed" in out.output and "rejected" in out.output
    assert out.output.endswith("Error: 2 of 2 recipients not delivered\n")
    assert r.exists(Keys.message(lines[0]))
