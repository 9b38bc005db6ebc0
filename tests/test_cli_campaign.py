"""``smsdispatch campaign ...``: list, status, pause/resume/cancel and report over a campaign seeded as
the intake leaves it; submit (dry run, admission, rejects) from real files; ``submit --follow`` with a
real worker, the runner's tick and the simulator."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
from click.testing import CliRunner, Result

from tests.conftest import WorkerProcess
from tests.test_campaign_control import phones, seed_campaign
from tests.test_cli_send_status import logging_restored, one_line_error  # noqa: F401 - an autouse fixture
from worker.cli import main
from worker.commands.campaign import parse_start
from worker.store import Outcome, Recording, State, Store

SHANGHAI = ZoneInfo("Asia/Shanghai")


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, ["campaign", *args])


@pytest.fixture
def store(r: redis.Redis, settings: Any) -> Store:
    return Store(r, settings)


@pytest.fixture
def running(store: Store) -> str:
    """A running campaign of 5 recipients: 2 delivered, 1 failed, 2 still queued."""
    cid = seed_campaign(store, phones(5))
    outcomes = [Outcome("13800000000", State.DELIVERED, "DELIVRD", vendor_id="v1"),
                Outcome("13800000001", State.DELIVERED, "DELIVRD", vendor_id="v2", fee=2),
                Outcome("13800000002", State.FAILED, "UNDELIV", "no such user", vendor_id="v3")]
    store.record(cid, "infocloud", Recording(outcomes), from_states=(State.QUEUED,))
    return cid


def test_parse_start_takes_a_clock_time_or_an_iso_time_in_the_campaign_zone() -> None:
    now = datetime(2026, 11, 28, 10, 0, tzinfo=SHANGHAI)
    assert parse_start("09:30", SHANGHAI, now) == datetime(2026, 11, 29, 9, 30, tzinfo=SHANGHAI)
    assert parse_start("10:30", SHANGHAI, now) == datetime(2026, 11, 28, 10, 30, tzinfo=SHANGHAI)
    assert parse_start("2026-12-01T08:00", SHANGHAI, now) == datetime(2026, 12, 1, 8, 0, tzinfo=SHANGHAI)
    assert parse_start("2026-12-01T08:00+00:00", SHANGHAI, now).utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_help_of_the_group_and_each_command() -> None:
    out = CliRunner().invoke(main, ["campaign", "--help"])
    assert out.exit_code == 0 and "Exit codes" in out.output and "Examples:" in out.output
    for command in ("submit", "list", "status", "pause", "resume", "cancel", "report"):
        sub = cli(command, "--help")
        assert sub.exit_code == 0 and "Usage:" in sub.output, command


def test_status_shows_the_campaign_with_zoned_times_and_counts(running: str) -> None:
    out = cli("status", running)
    assert out.exit_code == 0, out.output
    assert f"campaign  {running}" in out.output and "running" in out.output
    assert "+08:00" in out.output  # created, in Asia/Shanghai
    assert "sent      3 of 5" in out.output
    for state, n in (("delivered", 2), ("failed", 1), ("queued", 2)):
        assert any(line.split() == [state, str(n)] for line in out.output.splitlines()), out.output


def test_status_json_is_the_view_and_its_summary(running: str) -> None:
    doc = json.loads(cli("status", running, "--json").output)
    assert doc["id"] == running and doc["status"] == "running" and doc["created"].endswith("+08:00")
    assert doc["counts"]["delivered"] == 2 and doc["summary"]["pending"] == 2


def test_list_shows_the_newest_first(store: Store, running: str) -> None:
    newer = seed_campaign(store, phones(2, "139"), status="paused")
    out = cli("list")
    assert out.exit_code == 0, out.output
    assert out.output.index(newer) < out.output.index(running)
    lines = [json.loads(line) for line in cli("list", "--json").output.splitlines()]
    assert [doc["id"] for doc in lines] == [newer, running]


def test_pause_resume_cancel_and_refusals_by_state(running: str) -> None:
    out = cli("pause", running)
    assert out.exit_code == 0 and out.output == f"campaign {running}: paused (status paused)\n"
    assert "resume" in cli("status", running).output  # paused: says how to go on
    assert cli("resume", running).exit_code == 0
    assert cli("cancel", running).exit_code == 0
    one_line_error(cli("resume", running), 4, "cannot resume")


def test_unknown_and_malformed_ids_are_not_found(r: redis.Redis, settings: Any) -> None:
    for command in ("status", "pause", "resume", "cancel", "report"):
        one_line_error(cli(command, "0" * 32), 3, "no such campaign")
    one_line_error(cli("status", "nope"), 3, "not a campaign id")


def test_report_is_csv_to_stdout_or_a_file(running: str, tmp_path: Path) -> None:
    out = cli("report", running)
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO(out.output)))
    assert len(rows) == 5 and {row["state"] for row in rows} == {"delivered", "failed", "queued"}
    target = tmp_path / "report.csv"
    out = cli("report", running, "-o", str(target))
    assert out.exit_code == 0 and f"written to {target}" in out.output
    assert len(list(csv.DictReader(target.open(encoding="utf-8")))) == 5


def test_following_a_cancelled_campaign_exits_1(store: Store) -> None:
    cid = seed_campaign(store, phones(2), status="cancelled")
    out = cli("status", cid, "--follow")
    assert out.exit_code == 1, out.output
    assert out.output.endswith(f"Error: campaign {cid} ended cancelled\n")


def test_ctrl_c_stops_following_only(running: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.commands import campaign

    def interrupted(_: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(campaign.time, "sleep", interrupted)
    out = cli("status", running, "--follow")
    assert out.exit_code == 0, out.output
    assert f"stopped following; campaign {running} keeps running" in out.output
    assert "running sent 3/5 (60.0%)" in out.output  # the one progress line shown before Ctrl-C
    assert json.loads(cli("status", running, "--json").output)["status"] == "running"


def bill_csv(path: Path, rows: int, encoding: str = "utf-8") -> Path:
    """A bill campaign's file: ``rows`` recipients with their own parameters, then a duplicate and a bad
    phone (lines rows + 2 and rows + 3)."""
    lines = ["phone,name,amount"] + [f"139{i:08d},张{i},{i % 500}" for i in range(rows)]
    lines += ["13900000000,张0,0", "12345,王五,30"]
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def test_dry_run_prints_a_table_per_vendor_and_writes_nothing(
    r: redis.Redis, settings: Any, tmp_path: Path
) -> None:
    before = r.dbsize()
    out = cli("submit", str(bill_csv(tmp_path / "bill.csv", 3, "gbk")), "-t", "bill", "--dry-run")
    assert out.exit_code == 0, out.output
    (row,) = [line for line in out.output.splitlines() if line.startswith("│ infocloud")]
    assert [cell.strip() for cell in row.split("│")[1:6]] == ["infocloud", "3", "3", "never read", "unknown"]
    assert "rows 5 (csv, gb" in out.output and "accepted 3, duplicates 1, refused 1" in out.output
    assert "line 6: " in out.output and "note: infocloud: balance unknown" in out.output
    assert r.dbsize() == before and not (tmp_path / "bill.csv.rejects.csv").exists()
    doc = json.loads(cli("submit", str(tmp_path / "bill.csv"), "-t", "bill", "--dry-run", "--json").output)
    assert doc["accepted"] == 3 and doc["vendors"]["infocloud"]["parts"] == 3 and doc["rejected"] == 1


def test_submit_prints_the_id_and_keeps_the_refused_rows(store: Store, tmp_path: Path) -> None:
    out = cli("submit", str(bill_csv(tmp_path / "bill.csv", 3)), "-t", "bill", "--name", "November bills")
    assert out.exit_code == 0, out.output
    campaign_id = out.output.splitlines()[0]
    view = json.loads(cli("status", campaign_id, "--json").output)
    assert view["name"] == "November bills" and view["accepted"] == 3 and view["status"] == "running"
    rejects = list(csv.reader((tmp_path / "bill.csv.rejects.csv").open(encoding="utf-8")))
    assert rejects[0] == ["line", "phone", "reason"] and rejects[1][0] == "6" and len(rejects) == 2


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        (["-t", "bill", "--content", "hi"], "template: give exactly one of template or content"),
        (["-t", "nope"], "template"),
        (["-t", "bill", "--window", "8-21"], "window:"),
        (["-t", "bill", "--start", "soon"], "--start: 'soon' is neither HH:MM nor an ISO 8601 time"),
        (["-t", "bill", "--encoding", "utf-16"], "encoding:"),
        (["-t", "bill", "-p", "amount"], "--param: 'amount' is not NAME=VALUE"),
        (["-t", "bill", "--provider", "acme"], "provider: unknown 'acme'"),
    ],
)
def test_a_bad_spec_is_one_line_naming_the_option_exit_2(
    options: list[str], needle: str, r: redis.Redis, settings: Any, tmp_path: Path
) -> None:
    one_line_error(cli("submit", str(bill_csv(tmp_path / "bill.csv", 2)), *options), 2, needle)
    assert not r.keys("smsd:camp*")


def test_a_file_with_no_recipient_is_refused_exit_2(r: redis.Redis, settings: Any, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("phone,name,amount\n12,a,1\n", encoding="utf-8")
    one_line_error(cli("submit", str(empty), "-t", "bill"), 2, "no recipient accepted")
    assert not r.keys("smsd:camp*")


def test_admission_refused_when_the_known_balance_is_short_exit_4(store: Store, tmp_path: Path) -> None:
    store.save_balances("infocloud", {"行业短信": 2})
    file = bill_csv(tmp_path / "bill.csv", 3)
    one_line_error(cli("submit", str(file), "-t", "bill"), 4, "admission: infocloud", "--force")
    assert not store.r.keys("smsd:camp*")
    dry = cli("submit", str(file), "-t", "bill", "--dry-run")
    assert "NO" in next(line for line in dry.output.splitlines() if line.startswith("│ infocloud"))
    out = cli("submit", str(file), "-t", "bill", "--force")
    assert out.exit_code == 0, out.output


def test_submit_follow_shows_progress_until_done_and_each_number_is_sent_once(
    start_worker: Callable[..., WorkerProcess], sim: Any, store: Store, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.e2e.test_campaigns import Ticker
    from worker.commands import campaign

    monkeypatch.setattr(campaign, "PLAIN_EVERY_S", 0.0)  # not a terminal: a line every tick, to see it move
    file = bill_csv(tmp_path / "bill.csv", 3000)
    start_worker("submit", queues="sms.bulk", concurrency=2)
    ticker = Ticker(store)
    try:
        out = cli("submit", str(file), "-t", "bill", "--follow")
    finally:
        ticker.close()
    assert out.exit_code == 0, out.output
    cid = out.output.splitlines()[0]
    progress = [line for line in out.output.splitlines() if " sent " in line and "/3,000 (" in line]
    assert len({line.split(" sent ")[1].split(" ")[0] for line in progress}) >= 2  # it moved
    assert "done sent 3,000/3,000 (100.0%)" in progress[-1] and "submitted 3,000" in progress[-1]
    assert any(line.startswith(f"campaign {cid} done in ") for line in out.output.splitlines())
    waiting = f"3,000 sent, their receipts still to come (smsdispatch campaign status {cid})"
    assert out.output.endswith(waiting + "\n")
    assert sim.state.counters("infocloud").received == {f"139{i:08d}": 1 for i in range(3000)}


def test_a_marketing_campaign_in_quiet_hours_says_it_is_held_and_until_when(store: Store) -> None:
    from tasks.campaign import run_tick

    cid = seed_campaign(store, phones(3), kind="marketing", params={"name": "张三", "amount": "10"})
    late = datetime(2026, 11, 28, 23, 0, tzinfo=SHANGHAI)
    run_tick(store, store.settings, int(late.timestamp() * 1000))  # beat's tick at 23:00 Beijing time
    out = cli("status", cid)
    assert out.exit_code == 0, out.output
    status = next(line for line in out.output.splitlines() if line.startswith("status"))
    assert "running" in status and "held (quiet hours 21:00-08:00) until 2026-11-29 08:00 CST" in status
    assert "running (quiet hours 21:00-08:00)" in cli("list").output


def test_names_are_shown_as_typed_not_as_markup(store: Store, tmp_path: Path) -> None:
    out = cli("submit", str(bill_csv(tmp_path / "bill.csv", 2)), "-t", "bill", "--name", "a[/]b [red]x")
    assert out.exit_code == 0, out.output
    assert "a[/]b [red]x" in cli("list").output
