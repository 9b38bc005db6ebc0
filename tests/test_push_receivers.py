"""The push receivers (``worker/http``) against the session's real Redis: a good body is stored and answered
in the vendor's form; a forged, oversized or malformed one gets a 4xx and stores nothing; a stored body
that fails parsing ends in the dead-letter stream and is reported by ``tasks.push.apply_pushes``."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from config.settings import Settings
from providers.pushes import PushKind
from worker.http import build_app
from worker.store import Keys, Store

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

API_KEY = "demo-infocloud-api-key"
INFOCLOUD_RECEIPT = {"apiKey": API_KEY, "data": [
    {"msgId": "577951956854276096", "tel": "18551067101", "arriveResult": "DELIVRD",
     "arriveTime": "2104091735", "bid": "m1.0"}]}  # fmt: skip
IHUYI_RECEIPT = "code=1&msg=DELIVRD&mobilephone=13800138000&smsid=16000000000000001&report_time=2024-05-01"
TENCENT_RECEIPT = [{"user_receive_time": "2015-10-17 08:03:04", "nationcode": "86", "mobile": "13788888888",
                    "report_status": "SUCCESS", "errmsg": "DELIVRD", "description": "ok", "sid": "s1"}]
FORM = {"content-type": "application/x-www-form-urlencoded"}


def with_push(settings: Settings, vendor: str, **fields: Any) -> Settings:
    """``settings`` with ``vendor``'s push fields replaced (``push_token`` as text)."""
    if "push_token" in fields:
        fields["push_token"] = SecretStr(fields["push_token"])
    section = settings.vendor(vendor).model_copy(update=fields)
    return settings.model_copy(update={vendor: section})


def client(settings: Settings, address: str = "127.0.0.1") -> TestClient:
    return TestClient(build_app(settings), client=(address, 40000))


@pytest.fixture
def push_settings(settings: Settings, r: redis.Redis) -> Settings:
    """Tokens for Ihuyi and Tencent, none for Infocloud (its apiKey is its proof)."""
    settings = with_push(settings, "ihuyi", push_token="ihuyi-token")
    return with_push(settings, "tencent", push_token="tencent-token")


def stored(r: redis.Redis, kind: str = "receipts") -> list[dict[str, str]]:
    return [data for _, data in r.xrange(Keys.push_inbox(kind))]  # type: ignore[union-attr]


@pytest.fixture
def http(push_settings: Settings) -> Iterator[TestClient]:
    with client(push_settings) as test_client:
        yield test_client


def test_infocloud_push_with_our_api_key_is_stored_and_answered(http: TestClient, r: redis.Redis) -> None:
    answer = http.post("/push/infocloud/receipts", json=INFOCLOUD_RECEIPT)
    assert answer.status_code == 200 and answer.json() == {"code": 200, "message": "OK"}
    (entry,) = stored(r)
    # Stored without our apiKey (its proof, checked on arrival): no credential rests in Redis (R6).
    kept = {key: value for key, value in INFOCLOUD_RECEIPT.items() if key != "apiKey"}
    assert entry["vendor"] == "infocloud" and json.loads(entry["body"]) == kept
    assert entry["remote"] == "127.0.0.1" and entry["content_type"] == "application/json"


def test_ihuyi_push_with_its_token_is_answered_success(http: TestClient, r: redis.Redis) -> None:
    answer = http.post("/push/ihuyi/receipts?token=ihuyi-token", content=IHUYI_RECEIPT, headers=FORM)
    assert answer.status_code == 200 and answer.text == "success"
    assert answer.headers["content-type"].startswith("text/plain")
    assert stored(r)[0]["body"] == IHUYI_RECEIPT


def test_tencent_callbacks_are_answered_result_0(http: TestClient, r: redis.Redis) -> None:
    answer = http.post("/push/tencent/receipts?token=tencent-token", json=TENCENT_RECEIPT)
    assert answer.json() == {"result": 0, "errmsg": "OK"}
    reply = {"extend": "", "mobile": "13788888888", "nationcode": "86", "sign": "s", "text": "TD", "time": 1}
    assert http.post("/push/tencent/inbound?token=tencent-token", json=reply).status_code == 200
    assert len(stored(r)) == 1 and len(stored(r, "inbound")) == 1


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        ("/push/infocloud/receipts", {"json": {**INFOCLOUD_RECEIPT, "apiKey": "not-ours"}}),
        ("/push/infocloud/receipts?token=guess", {"json": {**INFOCLOUD_RECEIPT, "apiKey": ""}}),
        ("/push/ihuyi/receipts?token=ihuyi-tokem", {"content": IHUYI_RECEIPT, "headers": FORM}),
        ("/push/ihuyi/receipts", {"content": IHUYI_RECEIPT, "headers": FORM}),
        ("/push/tencent/receipts?token=ihuyi-token", {"json": TENCENT_RECEIPT}),
    ],
)
def test_forged_pushes_are_refused_and_store_nothing(
    http: TestClient, r: redis.Redis, path: str, kwargs: dict[str, Any]
) -> None:
    answer = http.post(path, **kwargs)
    assert answer.status_code == 403, answer.text
    assert stored(r) == []


def test_a_vendor_without_a_token_refuses_pushes_naming_the_setting(
    settings: Settings, r: redis.Redis
) -> None:
    with client(settings) as test_client:
        answer = test_client.post("/push/ihuyi/receipts?token=", content=IHUYI_RECEIPT, headers=FORM)
    assert answer.status_code == 403 and "SMSD_IHUYI__PUSH_TOKEN" in answer.json()["error"]
    assert stored(r) == []


def test_infocloud_accepts_a_token_instead_of_its_api_key(push_settings: Settings, r: redis.Redis) -> None:
    settings = with_push(push_settings, "infocloud", push_token="info-token")
    with client(settings) as test_client:
        body = {**INFOCLOUD_RECEIPT, "apiKey": "rotated"}
        assert test_client.post("/push/infocloud/receipts?token=info-token", json=body).status_code == 200
    assert len(stored(r)) == 1


def test_the_ip_allow_list_takes_addresses_and_networks(push_settings: Settings, r: redis.Redis) -> None:
    settings = with_push(push_settings, "ihuyi", push_allow_ips=("203.0.113.0/24", "198.51.100.7"))
    path = "/push/ihuyi/receipts?token=ihuyi-token"
    for address, status in (("203.0.113.9", 200), ("198.51.100.7", 200), ("198.51.100.8", 403)):
        with client(settings, address) as test_client:
            assert test_client.post(path, content=IHUYI_RECEIPT, headers=FORM).status_code == status
    assert [entry["remote"] for entry in stored(r)] == ["203.0.113.9", "198.51.100.7"]


def test_an_oversized_body_gets_413_whatever_content_length_says(
    push_settings: Settings, r: redis.Redis
) -> None:
    small = push_settings.push.model_copy(update={"max_body_bytes": 1024})
    settings = push_settings.model_copy(update={"push": small})
    big = json.dumps({**INFOCLOUD_RECEIPT, "pad": "x" * 2000})
    with client(settings) as test_client:
        assert test_client.post("/push/infocloud/receipts", content=big).status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
            yield big[:600].encode()
            yield big[600:].encode()

        assert test_client.post("/push/infocloud/receipts", content=chunks()).status_code == 413
    assert stored(r) == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/push/infocloud/receipts", b"<html>not json</html>"),
        ("/push/infocloud/receipts", b'["apiKey"]'),
        ("/push/ihuyi/receipts?token=ihuyi-token", b""),
        ("/push/ihuyi/receipts?token=ihuyi-token", "mobilephone=138&msg=失败".encode("gbk")),
    ],
)
def test_malformed_bodies_get_400_and_store_nothing(
    http: TestClient, r: redis.Redis, path: str, body: bytes
) -> None:
    assert http.post(path, content=body, headers=FORM).status_code == 400
    assert stored(r) == []


def test_vendors_that_push_nothing_have_no_receiver(http: TestClient) -> None:
    assert http.post("/push/deepfinch/receipts?token=x", json=[]).status_code in (404, 405)
    inbound = http.post("/push/ihuyi/inbound?token=ihuyi-token", content=b"mobilephone=1", headers=FORM)
    assert inbound.status_code == 200


def test_healthz_pings_redis(http: TestClient) -> None:
    assert http.get("/healthz").json() == {"redis": "ok", "broker": "ok"}


def test_a_stored_body_that_fails_parsing_is_dead_lettered_and_reported(
    http: TestClient,
    r: redis.Redis,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tasks.push import apply_pushes

    good = http.post("/push/ihuyi/receipts?token=ihuyi-token", content=IHUYI_RECEIPT, headers=FORM)
    bad = http.post("/push/ihuyi/receipts?token=ihuyi-token", content=b"code=1&mobilephone=13800138000",
                    headers=FORM)  # authentic, but without the smsid it is found by
    assert good.status_code == bad.status_code == 200
    counts = apply_pushes()
    assert counts["dead"] == 1 and counts["pushes"] == 1
    (dead,) = Store(r, settings).dead_pushes()
    assert dead["vendor"] == "ihuyi" and dead["body"] == "code=1&mobilephone=13800138000"
    assert "smsid" in dead["error"] and dead["kind"] == PushKind.RECEIPTS
    assert r.xlen(Keys.push_inbox("receipts")) == 0
    logged = capsys.readouterr()  # structlog's own output, or the standard library's once configured
    assert "dead-letter" in logged.out + logged.err + caplog.text
    assert apply_pushes() == {}  # nothing left, nothing applied twice


def test_an_applier_that_died_leaves_its_pushes_to_the_next(r: redis.Redis, settings: Settings) -> None:
    store = Store(r, settings)
    first = store.store_push("ihuyi", PushKind.RECEIPTS, IHUYI_RECEIPT, FORM["content-type"])
    second = store.store_push("ihuyi", PushKind.RECEIPTS, IHUYI_RECEIPT, FORM["content-type"])
    claimed = store.claim_pushes(PushKind.RECEIPTS, "dead-applier", 10)
    assert [push.entry_id for push in claimed] == [first, second]
    r.xdel(Keys.push_inbox("receipts"), first)  # trimmed while claimed (Redis 6.2 answers it as None)
    assert store.claim_pushes(PushKind.RECEIPTS, "next", 10, orphan_ms=60_000) == []  # not orphaned yet
    (again,) = store.claim_pushes(PushKind.RECEIPTS, "next", 10, orphan_ms=0)
    assert again.entry_id == second and again.body == IHUYI_RECEIPT and again.vendor == "ihuyi"


def test_a_receipt_pushed_early_settles_its_recipient_later(
    http: TestClient, r: redis.Redis, settings: Settings
) -> None:
    from tasks.push import apply_pushes
    from worker.store import Outcome, Recording, State

    answer = http.post("/push/ihuyi/receipts?token=ihuyi-token", content=IHUYI_RECEIPT, headers=FORM)
    assert answer.text == "success"
    assert apply_pushes() == {"pushes": 1}  # parked: no message has that smsid yet
    store = Store(r, settings)
    store.create_message("m-early", {"kind": "notify", "recipients": 1, "chunks": 1})
    sent = Outcome("13800138000", State.SUBMITTED, "2", vendor_id="16000000000000001")
    index = {Keys.vendor_batch("ihuyi", "16000000000000001"): "m-early"}
    store.record("m-early", "ihuyi", Recording([sent], index=index), from_states=("none",))
    assert apply_pushes() == {"receipts": 1}  # no new push: the parked receipt is tried again
    assert store.records("m-early")["13800138000"].state == State.DELIVERED
