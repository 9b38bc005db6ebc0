"""Pushes received while Redis is out of reach (``worker/http/spool.py``): kept on local disk and answered
as usual, stored in the inbox once Redis answers, in order and with their arrival time; a Redis error
mid-drain leaves the rest for the next round; another app's file is left to it unless that app is dead."""

from __future__ import annotations

import asyncio
import json
import os
import warnings
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from click.testing import CliRunner

from config.settings import Settings, get_settings
from providers.pushes import PushKind
from worker.cli import main
from worker.http import build_app
from worker.http.spool import PushSpool, spooled
from worker.store import Keys, now_ms
from worker.store.inbox import PushInbox

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

IHUYI_RECEIPT = "code=1&msg=DELIVRD&mobilephone=13800138000&smsid=16000000000000001&report_time=2024-05-01"
FORM = {"content-type": "application/x-www-form-urlencoded"}
NO_REDIS = "redis://127.0.0.1:1/0"


def spooling(settings: Settings, folder: Path) -> Settings:
    from pydantic import SecretStr

    ihuyi = settings.vendor("ihuyi").model_copy(update={"push_token": SecretStr("tok")})
    push = settings.push.model_copy(update={"spool_dir": str(folder)})
    return settings.model_copy(update={"ihuyi": ihuyi, "push": push})


def stored(r: redis.Redis) -> list[dict[str, str]]:
    return [data for _, data in r.xrange(Keys.push_inbox("receipts"))]  # type: ignore[union-attr]


def drain(settings: Settings, folder: Path, inbox: Any = None) -> int:
    async def run() -> int:
        client = redis.asyncio.Redis.from_url(settings.effective_redis_url, decode_responses=True)
        try:
            return await PushSpool(folder, inbox or PushInbox(client, settings.push.keep_s)).drain()
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_a_push_received_while_redis_is_down_is_answered_kept_and_stored_later(
    settings: Settings, r: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = spooling(settings, tmp_path)
    down = redis.asyncio.Redis.from_url(NO_REDIS, socket_connect_timeout=0.5)
    with TestClient(build_app(settings, client=down), client=("127.0.0.1", 40000)) as http:
        answer = http.post("/push/ihuyi/receipts?token=tok", content=IHUYI_RECEIPT, headers=FORM)
        assert answer.status_code == 200 and answer.text == "success"  # the vendor's success form
        spool: PushSpool = http.app.state.spool  # type: ignore[attr-defined]
        assert spooled(spool.folder) == 1
    assert stored(r) == []
    (line,) = (tmp_path / f"{os.getpid()}.jsonl").read_text().splitlines()
    arrived = json.loads(line)["at"]

    monkeypatch.setenv("SMSD_PUSH__SPOOL_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        out = CliRunner().invoke(main, ["pushes"])
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert "spooled        1 on this host's disk" in out.output  # what an operator sees meanwhile

    assert drain(settings, tmp_path) == 1
    (entry,) = stored(r)
    assert (entry["vendor"], entry["body"], entry["at"]) == ("ihuyi", IHUYI_RECEIPT, str(arrived))
    assert list(tmp_path.iterdir()) == []


def test_the_vendor_gets_503_only_when_the_disk_refuses_the_push_too(
    settings: Settings, tmp_path: Path
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    settings = spooling(settings, blocked)
    down = redis.asyncio.Redis.from_url(NO_REDIS, socket_connect_timeout=0.5)
    with TestClient(build_app(settings, client=down), client=("127.0.0.1", 40000)) as http:
        answer = http.post("/push/ihuyi/receipts?token=tok", content=IHUYI_RECEIPT, headers=FORM)
    assert answer.status_code == 503 and "push again" in answer.json()["error"]


class FailingSecond:
    """An inbox whose second ``add`` finds Redis gone."""

    def __init__(self) -> None:
        self.added: list[str] = []

    async def add(self, vendor: str, kind: PushKind, body: str, *rest: Any, **at: Any) -> str:
        if len(self.added) == 1:
            raise redis.ConnectionError("gone")
        self.added.append(body)
        return "1-0"


def test_a_redis_error_mid_drain_leaves_the_rest_in_order(
    settings: Settings, r: redis.Redis, tmp_path: Path
) -> None:
    spool = PushSpool(tmp_path, PushInbox(redis.asyncio.Redis.from_url(NO_REDIS), 60))
    for n in range(3):
        spool.put("ihuyi", PushKind.RECEIPTS, f"body-{n}", "text/plain", "127.0.0.1")
    failing = FailingSecond()
    assert drain(settings, tmp_path, failing) == 1 and failing.added == ["body-0"]
    assert spooled(tmp_path) == 2
    assert drain(settings, tmp_path) == 2
    assert [e["body"] for e in stored(r)] == ["body-1", "body-2"]
    assert not spool.path.exists()


def test_another_live_apps_file_is_left_to_it_and_a_dead_ones_is_drained(
    settings: Settings, r: redis.Redis, tmp_path: Path
) -> None:
    line = json.dumps({"vendor": "ihuyi", "kind": "receipts", "body": "B", "content_type": "text/plain",
                       "remote": "", "at": now_ms()})  # fmt: skip
    refused = line.replace(f'"at": {json.loads(line)["at"]}', '"at": -5')  # an ID Redis refuses
    live, dead = tmp_path / f"{os.getppid()}.jsonl", tmp_path / "999999999.jsonl"
    for path in (live, dead):
        path.write_text("{not json\n" + refused + "\n" + line + "\n")
    assert drain(settings, tmp_path) == 1  # the dead app's push; its unreadable and refused lines dropped
    assert [e["body"] for e in stored(r)] == ["B"]
    assert live.exists() and not dead.exists()


@pytest.fixture(autouse=True)
def _empty_inbox(r: redis.Redis) -> None:
    r.delete(Keys.push_inbox("receipts"))
