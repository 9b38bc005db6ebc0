"""The ``/v1`` API (``worker/http/api_v1.py``) against the session's real Redis and broker: keys (none,
missing, wrong, OTP-only), ``POST /v1/messages`` with good and bad bodies and idempotency keys,
``GET /v1/messages/{id}`` with its pages, and a property: no JSON body ever makes the API fail (500)."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import threading
import uuid
import warnings
from collections.abc import Iterator
from typing import Any, TextIO

import pytest
import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from config.api import ApiKey, ApiSettings
from config.settings import Settings
from tests.readme_examples import README
from tests.test_campaign_control import phones, seed_campaign
from worker.campaign import control
from worker.http import build_app
from worker.http.streams import stream_text
from worker.store import NO_RECORD, Keys, Outcome, Recording, State, Store, now_ms

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

FULL_KEY = "full-key-0123456789abcdef"
OTP_KEY = "otp-key-0123456789abcdef"
FULL = {"Authorization": f"Bearer {FULL_KEY}"}
OTP = {"Authorization": f"Bearer {OTP_KEY}"}
OTP_BODY = {"to": "13800138000", "template": "login_code", "params": {"code": "123456"}, "kind": "otp"}
NOTIFY_BODY = {"to": ["13800000001", "13800000002"], "template": "order_shipped",
               "params": {"order": "A1", "tracking": "SF1"}}  # fmt: skip


def with_api(settings: Settings, **fields: Any) -> Settings:
    return settings.model_copy(update={"api": ApiSettings(**fields)})


def keyed(settings: Settings, **fields: Any) -> Settings:
    keys = (ApiKey(name="shop", key=FULL_KEY), ApiKey(name="otp-app", key=OTP_KEY, otp_only=True))
    return with_api(settings, keys=keys, **fields)


@pytest.fixture
def http(settings: Settings, r: redis.Redis) -> Iterator[TestClient]:
    with TestClient(build_app(keyed(settings))) as client:
        yield client


@pytest.fixture
def store(settings: Settings, r: redis.Redis) -> Store:
    return Store(r, settings)


def queued_tasks(r: redis.Redis) -> list[dict[str, Any]]:
    """The send_sms tasks waiting on the broker's queues (kombu keeps a list per queue and priority)."""
    tasks = []
    for key in r.scan_iter("sms.*"):
        if r.type(key) == "list":
            tasks += [json.loads(raw) for raw in r.lrange(key, 0, -1)]  # type: ignore[union-attr]
    return [task for task in tasks if task["headers"]["task"] == "tasks.send.send_sms"]


def task_kwargs(task: dict[str, Any]) -> dict[str, Any]:
    """A queued task's keyword arguments (kombu keeps the body base64-encoded JSON: args, kwargs, embed)."""
    kwargs: dict[str, Any] = json.loads(base64.b64decode(task["body"]))[1]
    return kwargs


def locs(answer: Any) -> list[list[Any]]:
    return [problem["loc"] for problem in answer.json()["detail"]]


# -- keys ------------------------------------------------------------------------------------------


def test_without_keys_the_api_refuses_everything_and_says_what_to_configure(
    settings: Settings, r: redis.Redis
) -> None:
    with TestClient(build_app(with_api(settings))) as client:
        for answer in (client.post("/v1/messages", json=OTP_BODY, headers=FULL),
                       client.get("/v1/messages/abc", headers=FULL)):  # fmt: skip
            assert answer.status_code == 503 and "api.keys" in answer.json()["detail"]
    assert queued_tasks(r) == []


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer ", "Basic " + FULL_KEY, FULL_KEY])
def test_a_missing_key_is_401_with_a_bearer_challenge(http: TestClient, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    answer = http.post("/v1/messages", json=OTP_BODY, headers=headers)
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
    assert FULL_KEY not in answer.text


def test_an_unknown_key_is_401_and_is_not_echoed(http: TestClient, r: redis.Redis) -> None:
    wrong = {"Authorization": "Bearer not-a-key-0123456789"}
    answer = http.post("/v1/messages", json=OTP_BODY, headers=wrong)
    assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Bearer")
    assert "not-a-key" not in answer.text and queued_tasks(r) == []


def test_the_key_is_checked_before_the_body(http: TestClient) -> None:
    answer = http.post("/v1/messages", content=b"{not json", headers={"content-type": "application/json"})
    assert answer.status_code == 401


def test_an_otp_only_key_sends_otps_and_nothing_else(http: TestClient, r: redis.Redis) -> None:
    assert http.post("/v1/messages", json=OTP_BODY, headers=OTP).status_code == 202
    answer = http.post("/v1/messages", json=NOTIFY_BODY, headers=OTP)
    assert answer.status_code == 403 and "otp-app" in answer.json()["detail"]
    assert len(queued_tasks(r)) == 1


def test_an_otp_only_key_reads_otp_messages_only(http: TestClient) -> None:
    otp = http.post("/v1/messages", json=OTP_BODY, headers=OTP).json()["message_id"]
    notify = http.post("/v1/messages", json=NOTIFY_BODY, headers=FULL).json()["message_id"]
    assert http.get(f"/v1/messages/{otp}", headers=OTP).status_code == 200
    assert http.get(f"/v1/messages/{notify}", headers=OTP).status_code == 403
    assert http.get(f"/v1/messages/{notify}", headers=FULL).status_code == 200


def test_keys_come_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    from config.settings import SettingsError, load_settings

    monkeypatch.setenv("SMSD_API__KEYS", json.dumps([{"name": "shop", "key": FULL_KEY, "otp_only": True}]))
    (key,) = load_settings().api.keys
    assert key.name == "shop" and key.otp_only and key.key.get_secret_value() == FULL_KEY
    monkeypatch.setenv("SMSD_API__KEYS", json.dumps([{"name": "shop", "key": "short-secret"}]))
    with pytest.raises(SettingsError, match="16 to 256") as refused:
        load_settings()
    assert "short-secret" not in str(refused.value)
    twice = [{"name": "shop", "key": FULL_KEY}, {"name": "shop", "key": OTP_KEY}]
    monkeypatch.setenv("SMSD_API__KEYS", json.dumps(twice))
    with pytest.raises(SettingsError, match="two keys have the same name"):
        load_settings()


# -- POST /v1/messages -------------------------------------------------------------------------------


def test_a_message_is_queued_with_its_id_and_location(http: TestClient, r: redis.Redis) -> None:
    answer = http.post("/v1/messages", json=NOTIFY_BODY, headers=FULL)
    assert answer.status_code == 202
    body = answer.json()
    assert body["duplicate"] is False and body["recipients"] == 2
    assert answer.headers["location"] == f"/v1/messages/{body['message_id']}"
    (task,) = queued_tasks(r)
    assert task["headers"]["id"] == body["message_id"]
    assert task["properties"]["delivery_info"]["routing_key"] == "sms.notify"
    assert task_kwargs(task) == {**NOTIFY_BODY, "kind": "notify"}  # as the producer validated it
    meta = r.hgetall(Keys.message(body["message_id"]))
    assert meta["api_key"] == "shop" and meta["kind"] == "notify"
    status = http.get(answer.headers["location"], headers=FULL).json()
    assert status["planned"] is False and status["kind"] == "notify" and status["recipients"] == []


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"template": "no_such"}, ["body", "template"]),
        ({"params": {}}, ["body", "params"]),
        ({"to": ["13800000001", "13800000002", "13800000003", [1]]}, ["body", "to", 3]),
        ({"to": [{"phone": "13800000001", "extra": 1}]}, ["body", "to", 0]),
        ({"content": "hello"}, ["body", "template"]),
        ({"kind": "spam"}, ["body", "kind"]),
        ({"provider": "nobody"}, ["body", "provider"]),
        ({"surprise": True}, ["body", "surprise"]),
        ({"params": {"order": "A1", "tracking": {"x": 1}}}, ["body", "params", "tracking"]),
        ({"idempotency_key": ""}, ["body", "idempotency_key"]),
    ],
)
def test_a_bad_field_is_a_422_naming_it_and_nothing_is_queued(
    http: TestClient, r: redis.Redis, change: dict[str, Any], loc: list[Any]
) -> None:
    answer = http.post("/v1/messages", json={**NOTIFY_BODY, **change}, headers=FULL)
    assert answer.status_code == 422, answer.text
    assert loc in locs(answer)
    assert all(set(p) == {"loc", "msg", "type"} and p["msg"] for p in answer.json()["detail"])
    assert queued_tasks(r) == []


def test_a_refused_body_never_echoes_the_phones(http: TestClient) -> None:
    answer = http.post("/v1/messages", json={**NOTIFY_BODY, "kind": 7, "template": "no_such"}, headers=FULL)
    assert answer.status_code == 422 and "13800000001" not in answer.text


def test_broken_json_and_a_missing_body_are_422(http: TestClient) -> None:
    as_json = {**FULL, "content-type": "application/json"}
    broken = http.post("/v1/messages", content=b'{"to": ', headers=as_json)
    assert broken.status_code == 422 and broken.json()["detail"][0]["type"] == "json_invalid"
    missing = http.post("/v1/messages", headers=FULL)
    assert missing.status_code == 422 and locs(missing) == [["body"]]


def test_a_body_over_the_limit_is_413(settings: Settings, r: redis.Redis) -> None:
    with TestClient(build_app(keyed(settings, max_body_bytes=2048))) as client:
        big = {**NOTIFY_BODY, "to": [f"1380000{i:04d}" for i in range(300)]}
        assert client.post("/v1/messages", json=big, headers=FULL).status_code == 413
    assert queued_tasks(r) == []


# -- idempotency -------------------------------------------------------------------------------------


def test_the_same_key_and_body_answers_the_first_message(http: TestClient, r: redis.Redis) -> None:
    first = http.post("/v1/messages", json=NOTIFY_BODY, headers={**FULL, "Idempotency-Key": "k1"})
    again = http.post("/v1/messages", json=NOTIFY_BODY, headers={**FULL, "Idempotency-Key": "k1"})
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["message_id"] == first.json()["message_id"] and again.json()["duplicate"] is True
    assert again.headers["location"] == first.headers["location"]
    in_body = http.post("/v1/messages", json={**NOTIFY_BODY, "idempotency_key": "k1"}, headers=FULL)
    assert in_body.status_code == 200 and in_body.json()["message_id"] == first.json()["message_id"]


def test_the_same_key_with_another_body_is_409_naming_the_key(http: TestClient) -> None:
    http.post("/v1/messages", json=NOTIFY_BODY, headers={**FULL, "Idempotency-Key": "k2"})
    other = {**NOTIFY_BODY, "params": {"order": "A2", "tracking": "SF1"}}
    answer = http.post("/v1/messages", json=other, headers={**FULL, "Idempotency-Key": "k2"})
    assert answer.status_code == 409 and locs(answer) == [["body", "idempotency_key"]]
    assert answer.json()["detail"][0]["type"] == "idempotency_conflict"
    assert answer.json()["detail"][0]["msg"].startswith("'k2' was used for a different request")


def test_each_api_key_has_its_own_idempotency_keys(http: TestClient, r: redis.Redis) -> None:
    """Two applications that both say order-42 each get their own message; a key too long to be scoped
    as it is still works (hashed)."""
    shop = http.post("/v1/messages", json=OTP_BODY, headers={**FULL, "Idempotency-Key": "order-42"})
    login = http.post("/v1/messages", json=OTP_BODY, headers={**OTP, "Idempotency-Key": "order-42"})
    assert shop.status_code == login.status_code == 202
    assert shop.json()["message_id"] != login.json()["message_id"]
    assert r.exists(Keys.idempotency("shop:order-42")) and r.exists(Keys.idempotency("otp-app:order-42"))
    long_key = {**FULL, "Idempotency-Key": "k" * 128}
    first = http.post("/v1/messages", json=OTP_BODY, headers=long_key)
    again = http.post("/v1/messages", json=OTP_BODY, headers=long_key)
    assert first.status_code == 202 and again.status_code == 200
    other = http.post("/v1/messages", json=NOTIFY_BODY, headers=long_key)
    assert other.status_code == 409 and "'" + "k" * 128 + "'" in other.json()["detail"][0]["msg"]


def test_header_and_body_keys_that_differ_are_422(http: TestClient, r: redis.Redis) -> None:
    body = {**NOTIFY_BODY, "idempotency_key": "a"}
    answer = http.post("/v1/messages", json=body, headers={**FULL, "Idempotency-Key": "b"})
    assert answer.status_code == 422 and locs(answer) == [["header", "idempotency-key"]]
    assert queued_tasks(r) == []


def test_a_duplicate_after_planning_carries_the_first_answer(
    http: TestClient, r: redis.Redis, sim: Any
) -> None:
    from tasks.send import send_sms

    first = http.post("/v1/messages", json=NOTIFY_BODY, headers={**FULL, "Idempotency-Key": "k3"}).json()
    (task,) = queued_tasks(r)  # run as a worker would run it, with what the API queued
    send_sms.apply(kwargs=task_kwargs(task), task_id=first["message_id"]).get()
    again = http.post("/v1/messages", json=NOTIFY_BODY, headers={**FULL, "Idempotency-Key": "k3"})
    assert again.status_code == 200 and again.json()["message_id"] == first["message_id"]
    assert again.json()["result"]["accepted"] == 2 and again.json()["result"]["chunks"] == 1
    status = http.get(again.headers["location"], headers=FULL).json()
    assert sum(status["counts"].values()) == 2 and status["planned"] is True
    assert status["parts"] == status["counts"]["submitted"]  # 2, unless a loaded machine made it retry



def test_the_readme_curl_examples_send(http: TestClient) -> None:
    """README "HTTP API": the JSON bodies of its curl examples are accepted as written."""
    section = README.read_text(encoding="utf-8").split("\n## HTTP API\n", 1)[1].split("\n## ", 1)[0]
    bodies = re.findall(r"-d '(\{.*?\})'", section)
    assert len(bodies) == 2
    as_json = {**FULL, "content-type": "application/json"}
    for body in bodies:
        answer = http.post("/v1/messages", content=body.encode(), headers=as_json)
        assert answer.status_code == 202, answer.text


# -- GET /v1/messages/{id} ---------------------------------------------------------------------------


def recorded(store: Store, message_id: str, phones: list[str], state: State = State.DELIVERED) -> None:
    """``phones`` recorded in ``state``; the message's meta says 3 recipients, planned in 2023."""
    meta = {"kind": "notify", "template": "order_shipped", "recipients": 3, "created_ms": 1_700_000_000_000}
    store.create_message(message_id, {**meta, "chunks": 1})
    outcomes = [Outcome(phone, state, "DELIVRD", "ok") for phone in phones]
    store.record(message_id, "infocloud", Recording(outcomes), from_states=(NO_RECORD,))


def test_a_message_shows_counts_and_masked_recipients(http: TestClient, store: Store) -> None:
    recorded(store, "m1", ["13800000001", "13800000002"])
    recorded(store, "m1", ["13800000003"], State.FAILED)
    answer = http.get("/v1/messages/m1", headers=FULL)
    assert answer.status_code == 200
    body = answer.json()
    assert body["counts"]["delivered"] == 2 and body["counts"]["failed"] == 1
    assert body["counts"]["queued"] == 0 and body["planned"] is True and body["total"] == 3
    assert body["created"].startswith("2023-11-14T22:13:20")
    assert sorted(r["phone"] for r in body["recipients"]) == ["138****0001", "138****0002", "138****0003"]
    assert body["next_cursor"] is None and "13800000001" not in answer.text
    whole = http.get("/v1/messages/m1?unmask=true", headers=FULL).json()
    assert "13800000001" in {r["phone"] for r in whole["recipients"]}


def test_recipients_come_page_by_page_and_by_state(http: TestClient, store: Store) -> None:
    phones = [f"1390000{i:04d}" for i in range(700)]
    recorded(store, "m2", phones[:600])
    recorded(store, "m2", phones[600:], State.FAILED)
    seen: list[str] = []
    cursor: str | None = "0"
    while cursor is not None:
        page = http.get(f"/v1/messages/m2?limit=100&unmask=true&cursor={cursor}", headers=FULL).json()
        seen += [r["phone"] for r in page["recipients"]]
        cursor = page["next_cursor"]
    assert set(seen) == set(phones)
    failed = http.get("/v1/messages/m2?state=failed&limit=1000", headers=FULL).json()
    assert {r["state"] for r in failed["recipients"]} == {"failed"} and len(failed["recipients"]) == 100


@pytest.mark.parametrize(
    ("query", "loc"),
    [
        ("state=lost", ["query", "state"]),
        ("cursor=abc", ["query", "cursor"]),
        ("cursor=99999999999999999999", ["query", "cursor"]),
        ("limit=0", ["query", "limit"]),
        ("limit=1001", ["query", "limit"]),
    ],
)
def test_bad_page_arguments_are_422(http: TestClient, store: Store, query: str, loc: list[str]) -> None:
    recorded(store, "m3", ["13800000001"])
    answer = http.get(f"/v1/messages/m3?{query}", headers=FULL)
    assert answer.status_code == 422 and locs(answer) == [loc]


def test_an_unknown_message_is_404_and_a_bad_id_422(http: TestClient) -> None:
    assert http.get("/v1/messages/nothing-here", headers=FULL).status_code == 404
    answer = http.get("/v1/messages/bad$id", headers=FULL)
    assert answer.status_code == 422 and locs(answer) == [["path", "message_id"]]




# -- campaigns: submission -----------------------------------------------------------------------------

BILL_CSV = "phone,name,amount\n13800000001,张三,12.5\n13800000002,李四,8\nnot-a-phone,王五,1\n" + (
    "13800000001,张三,12.5\n"  # a duplicate
)


def submit(http: TestClient, upload: bytes, filename: str = "bill.csv", headers: dict[str, str] = FULL,
           **fields: str) -> Any:  # fmt: skip
    return http.post("/v1/campaigns", files={"file": (filename, upload, "text/csv")},
                     data={"template": "bill", **fields}, headers=headers)  # fmt: skip


def test_a_csv_upload_becomes_a_campaign(http: TestClient, store: Store) -> None:
    answer = submit(http, BILL_CSV.encode(), name="november bills")
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["rows"], body["accepted"], body["duplicates"], body["rejected"]) == (4, 2, 1, 1)
    assert body["status"] == "running" and body["vendors"]["infocloud"]["recipients"] == 2
    assert body["rejects"][0]["line"] == 4 and body["rejects"][0]["reason"].startswith("phone")
    assert answer.headers["location"] == f"/v1/campaigns/{body['id']}"
    shown = http.get(answer.headers["location"], headers=FULL).json()
    assert shown["name"] == "november bills" and shown["accepted"] == 2 and shown["counts"]["queued"] == 2
    records = store.records(body["id"])
    assert set(records) == {"13800000001", "13800000002"}


def test_a_dry_run_counts_and_writes_nothing(http: TestClient, store: Store) -> None:
    answer = submit(http, BILL_CSV.encode(), dry_run="true")
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 2 and answer.json()["parts"] >= 2 and "id" not in answer.json()
    assert control.list_campaigns(store) == []


def test_gbk_and_jsonl_files_are_read(http: TestClient) -> None:
    gbk = submit(http, BILL_CSV.encode("gbk"), "excel.csv")
    assert gbk.status_code == 201 and gbk.json()["encoding"].lower() in ("gb18030", "gbk")
    rows = [{"phone": "13900000001", "params": {"name": "赵六", "amount": "3"}}, {"phone": "13900000002",
            "name": "钱七", "amount": "4"}]  # fmt: skip
    jsonl = "\n".join(json.dumps(row, ensure_ascii=False) for row in rows).encode()
    answer = submit(http, jsonl, "rows.jsonl", kind="marketing")
    assert answer.status_code == 201 and answer.json()["accepted"] == 2 and answer.json()["format"] == "jsonl"


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"template": "no_such"}, ["body", "template"]),
        ({"template": "", "content": ""}, ["body", "template"]),
        ({"kind": "otp"}, ["body", "kind"]),
        ({"window": "25:00-26:00"}, ["body", "window"]),
        ({"params": "{not json"}, ["body", "params"]),
        ({"params": '{"nobody": "x"}'}, ["body", "params"]),
        ({"start": "tomorrow"}, ["body", "start"]),
        ({"start": "2099-01-01T09:00:00+08:00"}, ["body", "start"]),
        ({"encoding": "klingon"}, ["body", "encoding"]),
        ({"provider": "nobody"}, ["body", "provider"]),
        ({"dry_run": "maybe"}, ["body", "dry_run"]),
        ({"surprise": "1"}, ["body", "surprise"]),
    ],
)
def test_a_bad_campaign_field_is_a_422_naming_it(
    http: TestClient, store: Store, fields: dict[str, str], loc: list[str]
) -> None:
    answer = submit(http, BILL_CSV.encode(), **fields)
    assert answer.status_code == 422, answer.text
    assert loc in locs(answer)
    assert control.list_campaigns(store) == []


@pytest.mark.parametrize(
    "content", [b"", b"PK\x03\x04 an xlsx", b"name,amount\n\xe5\xbc\xa0,1\n", b"phone,name,amount\nx,y,z\n"]
)
def test_a_bad_file_is_a_422_naming_the_file(http: TestClient, store: Store, content: bytes) -> None:
    answer = submit(http, content)
    assert answer.status_code == 422 and locs(answer)[0][:2] == ["body", "file"], answer.text
    assert control.list_campaigns(store) == []


def test_a_missing_file_is_a_422(http: TestClient) -> None:
    answer = http.post("/v1/campaigns", data={"template": "bill"}, headers=FULL)
    assert answer.status_code == 422 and ["body", "file"] in locs(answer)


def test_admission_refused_is_409_and_force_submits(http: TestClient, store: Store) -> None:
    store.save_balances("infocloud", {"行业短信": 1})
    refused = submit(http, BILL_CSV.encode())
    assert refused.status_code == 409 and "force=true" in refused.json()["detail"]
    assert control.list_campaigns(store) == []
    assert submit(http, BILL_CSV.encode(), force="true").status_code == 201


def test_an_upload_over_the_limit_is_413_and_otp_keys_are_refused(settings: Settings, r: redis.Redis) -> None:
    with TestClient(build_app(keyed(settings, max_upload_bytes=4096))) as client:
        big = b"phone,name,amount\n" + b"13800000001,a,1\n" * 1000
        assert submit(client, big).status_code == 413
        assert submit(client, BILL_CSV.encode(), headers=OTP).status_code == 403
    assert r.zcard(Keys.campaigns) == 0


# -- campaigns: control and report -------------------------------------------------------------------


def test_campaigns_are_listed_newest_first_and_shown_with_a_summary(http: TestClient, store: Store) -> None:
    older = seed_campaign(store, phones(2), created_ms=now_ms() - 5000)
    newer = seed_campaign(store, phones(3), kind="marketing")
    listed = http.get("/v1/campaigns", headers=FULL)
    assert listed.status_code == 200
    assert [c["id"] for c in listed.json()["campaigns"]] == [newer, older]
    assert [c["id"] for c in http.get("/v1/campaigns?limit=1", headers=FULL).json()["campaigns"]] == [newer]
    shown = http.get(f"/v1/campaigns/{newer}", headers=FULL).json()
    assert shown["kind"] == "marketing" and shown["counts"]["queued"] == 3 and shown["rows"] == 3
    assert shown["summary"]["pending"] == 3 and shown["created"].endswith("+08:00")


def test_pause_resume_cancel_and_their_refusals(http: TestClient, store: Store) -> None:
    cid = seed_campaign(store, phones(2))
    assert http.post(f"/v1/campaigns/{cid}/pause", headers=FULL).json()["status"] == "paused"
    assert http.post(f"/v1/campaigns/{cid}/resume", headers=FULL).json()["status"] == "running"
    assert http.post(f"/v1/campaigns/{cid}/cancel", headers=FULL).json()["status"] == "cancelling"
    refused = http.post(f"/v1/campaigns/{cid}/resume", headers=FULL)
    assert refused.status_code == 409
    assert refused.json()["detail"] == f"campaign {cid}: cannot resume, it is being cancelled"


@pytest.mark.parametrize(
    ("method", "action"),
    [("get", ""), ("post", "/pause"), ("post", "/resume"), ("post", "/cancel"), ("get", "/report")],
)
def test_unknown_and_malformed_campaign_ids(http: TestClient, method: str, action: str) -> None:
    unknown = getattr(http, method)(f"/v1/campaigns/{uuid.uuid4().hex}{action}", headers=FULL)
    assert unknown.status_code == 404 and "no such campaign" in unknown.json()["detail"]
    malformed = getattr(http, method)(f"/v1/campaigns/not-an-id{action}", headers=FULL)
    assert malformed.status_code == 422 and locs(malformed) == [["path", "campaign_id"]]


def test_an_otp_only_key_may_not_touch_campaigns(http: TestClient, store: Store) -> None:
    cid = seed_campaign(store, phones(1))
    for answer in (http.get("/v1/campaigns", headers=OTP), http.get(f"/v1/campaigns/{cid}", headers=OTP),
                   http.post(f"/v1/campaigns/{cid}/cancel", headers=OTP),
                   http.get(f"/v1/campaigns/{cid}/report", headers=OTP)):  # fmt: skip
        assert answer.status_code == 403 and "otp-app" in answer.json()["detail"]
    assert store.campaign_meta(cid)["status"] == "running"
    assert http.get("/v1/campaigns", headers={}).status_code == 401


def test_the_report_streams_one_csv_line_per_recipient(http: TestClient, store: Store) -> None:
    rows = phones(5000)  # about 300 kB: many pieces through the stream
    cid = seed_campaign(store, rows)
    delivered = [Outcome(phone, State.DELIVERED, "DELIVRD", "", "v1", 1) for phone, _ in rows[:10]]
    store.record(cid, "infocloud", Recording(delivered), from_states=(State.QUEUED,))
    with http.stream("GET", f"/v1/campaigns/{cid}/report", headers=FULL) as answer:
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
        assert f"campaign-{cid}.csv" in answer.headers["content-disposition"]
        text = "".join(answer.iter_text())
    lines = list(csv.reader(io.StringIO(text)))
    assert lines[0] == ["phone", "state", "vendor", "code", "text", "updated", "parts"]
    assert sorted(line[0] for line in lines[1:]) == sorted(phone for phone, _ in rows)
    assert sum(line[1] == "delivered" for line in lines[1:]) == 10



def test_a_stream_stops_its_writer_when_the_client_goes_and_ends_on_an_error() -> None:
    stopped = threading.Event()

    def endless(out: TextIO) -> None:
        try:
            while True:
                out.write("x" * 1000 + "\n")
        finally:
            stopped.set()

    body = stream_text(endless, "endless")
    assert 60_000 < len(next(body)) <= 64 * 1024  # pieces of about 64 kB
    body.close()
    assert stopped.wait(5)

    def failing(out: TextIO) -> None:
        out.write("phone\n")
        raise redis.ConnectionError("gone")

    assert b"".join(stream_text(failing, "failing")) == b"phone\n"



def test_openapi_documents_every_v1_operation_with_the_key_scheme(http: TestClient) -> None:
    spec = http.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    operations = [(path, op) for path, item in spec["paths"].items() if path.startswith("/v1/")
                  for op in item.values()]  # fmt: skip
    assert len(operations) == 9
    for path, op in operations:
        assert op["security"] == [{"ApiKey": []}], path
        assert {"401", "403", "503"} <= set(op["responses"]) and op.get("description"), path
    upload = spec["paths"]["/v1/campaigns"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload
    assert http.get("/docs").status_code == 200


# -- anything at all ---------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELD_VALUES = {
    "to": JSON | st.sampled_from(["13800138000", ["13800138000", "x"], [{"phone": "13800138001"}]]),
    "template": JSON | st.sampled_from(["login_code", "order_shipped", "bill"]),
    "params": JSON | st.just({"code": "1234"}),
    "content": JSON | st.just("【商城】你好"),
    "kind": JSON | st.sampled_from(["otp", "notify", "marketing"]),
    "provider": JSON | st.sampled_from(["infocloud", "tencent", "xiaorui"]),
    "idempotency_key": JSON,
}
BODIES = JSON | st.fixed_dictionaries({}, optional=FIELD_VALUES)  # type: ignore[arg-type]


@hsettings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=BODIES)
def test_no_json_body_makes_the_api_fail(http: TestClient, body: Any) -> None:
    """Python's JSON reader takes NaN and Infinity too: they are sent as such."""
    content = json.dumps(body).encode()
    answer = http.post("/v1/messages", content=content, headers={**FULL, "content-type": "application/json"})
    assert answer.status_code in (202, 200, 409, 422), answer.text


# -- /healthz ----------------------------------------------------------------------------------------

CLOSED = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def test_healthz_checks_redis_and_the_broker(http: TestClient) -> None:
    answer = http.get("/healthz")
    assert answer.status_code == 200 and answer.json() == {"redis": "ok", "broker": "ok"}


def test_healthz_names_the_broker_when_only_it_is_out_of_reach(
    http: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("worker.http.health.broker_url", lambda settings: CLOSED)
    answer = http.get("/healthz")
    assert answer.status_code == 503 and answer.json()["redis"] == "ok"
    assert answer.json()["broker"].startswith("unreachable")


def test_healthz_is_503_when_redis_is_out_of_reach(settings: Settings) -> None:
    with TestClient(build_app(settings.model_copy(update={"redis_url": CLOSED}))) as client:
        answer = client.get("/healthz")
    assert answer.status_code == 503
    assert all(state.startswith("unreachable") for state in answer.json().values())


# -- smsdispatch api ---------------------------------------------------------------------------------


TWO_KEYS = [{"name": "shop", "key": FULL_KEY}, {"name": "otp-app", "key": OTP_KEY, "otp_only": True}]


@pytest.mark.parametrize("keys", [None, TWO_KEYS])
def test_the_api_command_says_whether_v1_is_on(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], keys: list[dict[str, Any]] | None
) -> None:
    from click.testing import CliRunner

    from config.settings import get_settings
    from worker.cli import main

    if keys is not None:
        monkeypatch.setenv("SMSD_API__KEYS", json.dumps(keys))
    monkeypatch.setattr("uvicorn.run", lambda *args, **kwargs: None)
    get_settings.cache_clear()
    try:
        out = CliRunner().invoke(main, ["api", "--port", "8999"])
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert out.exit_code == 0, out.output
    if keys is None:
        assert "/v1 API: OFF" in out.output and "SMSD_API__KEYS" in out.output
    else:
        assert "http://127.0.0.1:8999/v1" in out.output and "shop, otp-app (OTP only)" in out.output
    assert FULL_KEY not in out.output
