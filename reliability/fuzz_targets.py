"""The targets of ``reliability/fuzz.py``: a strategy of hostile input and a check that says whether the
code under test refused it clearly, accepted it, or let something else out (raised to the caller).

The HTTP API is driven through Starlette's ``TestClient`` against ``worker.http.build_app`` and an
embedded Redis (``send_sms``'s publish is captured, as for the ``send_sms`` target): a 5xx, or an
exception out of the app, is unhandled; a refusal must be the API's documented shape
(``worker/http/problems.py``) naming where the problem is, in one line.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from hypothesis import strategies as st

ACCEPTED = "accepted"
REFUSED = "refused"


def _environment() -> None:
    """The test suite's templates and the demo credentials, without any service."""
    from providers.simulator import DEMO_ENV
    from tests.conftest import TEST_TOML

    path = os.path.join(tempfile.mkdtemp(prefix="smsd-fuzz-"), "smsd.toml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(TEST_TOML)
    os.environ.update({**DEMO_ENV, "SMSD_CONFIG": path, "SMSD_REDIS_URL": _embedded_redis()})
    from worker.logging import configure

    configure("CRITICAL")  # the API logs every request and the multipart parser every bad boundary


def _embedded_redis() -> str:
    """A Redis of this process's own for the API and the campaign intake (closed at exit)."""
    from worker.embedded import EmbeddedRedis

    server = EmbeddedRedis(tempfile.mkdtemp(prefix="smsd-fuzz-redis-"), durable=False)
    atexit.register(server.close)
    return server.url


def _capture_publish() -> None:
    """Replace Celery's publish with kombu's JSON encoding of what would be sent: ``.delay()`` runs its
    validation and serialization, and nothing needs a broker."""
    from celery import Task
    from kombu.serialization import dumps

    def publish(self: Task, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        dumps({"args": args, "kwargs": kwargs}, serializer="json")
        return kwargs

    Task.apply_async = publish  # type: ignore[method-assign]


def send_sms_target() -> tuple[st.SearchStrategy[Any], Any]:
    from config.settings import get_settings
    from tasks.plan import InvalidRequest, build_plan, validate_request
    from tasks.send import SendTask, send_sms
    from tests.strategies_input import send_kwargs

    settings = get_settings()

    def check(kwargs: dict[str, Any]) -> str:
        try:
            sent = SendTask.apply_async(send_sms, (), dict(kwargs))
        except InvalidRequest:
            return REFUSED
        # What the worker does with it: validate the JSON form again and plan it.
        build_plan(validate_request(sent, settings), settings, {})
        return ACCEPTED

    return send_kwargs(), check


# -- the HTTP API -------------------------------------------------------------------------------------

API_KEY = "fuzz-key-0123456789abcdef"
OTP_KEY = "fuzz-otp-key-0123456789ab"
REFUSAL_WHERE = frozenset({"body", "query", "header", "path", "form"})
# A header value httpx can send (latin-1, no line breaks), hostile otherwise.
HEADER_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=300
)


def mostly(good: Any, hostile: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` three times in four, so that the cases get past the first check to the code behind it."""
    return st.sampled_from((True, True, True, False)).flatmap(lambda keep: st.just(good) if keep else hostile)


AUTHORIZATION = mostly(
    f"Bearer {API_KEY}",
    st.sampled_from([f"Bearer {OTP_KEY}", "Bearer", "Bearer ", API_KEY, "Basic eDp5", ""])
    | HEADER_TEXT.map(lambda text: f"Bearer {text}"),
)
CONTENT_TYPES = mostly(
    "application/json",
    st.sampled_from(["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""])
    | st.just("application/json; charset=gbk")
    | HEADER_TEXT,
)
GOOD_MESSAGES = (
    {"to": "13800138000", "template": "login_code", "params": {"code": "1234"}, "kind": "otp"},
    {
        "to": ["13800138001", "+447700900123"],
        "template": "order_shipped",
        "params": {"order": "A", "tracking": "B"},
    },
    {"to": "13800138002", "content": "【商城】你好", "kind": "marketing"},
)


def _one_field_changed(
    good: tuple[dict[str, Any], ...], values: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    """A good body or form with one field set to anything (or dropped)."""
    keys = sorted({key for body in good for key in body} | {"idempotency_key", "provider", "extra"})
    return st.builds(
        lambda body, key, value: {k: v for k, v in {**body, key: value}.items() if v is not DROP},
        st.sampled_from(good),
        st.sampled_from(keys),
        values | st.just(DROP),
    )


DROP = object()


class Unclear(Exception):
    """A refusal that is not one line naming its field, or a 5xx: counted as unhandled."""


def _client() -> Any:
    """The app on a TestClient (its lifespan entered once, left at exit), with a full and an OTP-only key."""
    from config.api import ApiKey, ApiSettings
    from config.settings import get_settings
    from worker.http import build_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    keys = (ApiKey(name="fuzz", key=API_KEY), ApiKey(name="fuzz-otp", key=OTP_KEY, otp_only=True))
    settings = get_settings()
    settings = settings.model_copy(update={"api": ApiSettings(keys=keys, max_upload_bytes=64 * 1024)})
    client = TestClient(build_app(settings))
    client.__enter__()
    atexit.register(client.__exit__, None, None, None)
    return client


def _latin1(headers: dict[str, str]) -> dict[str, bytes]:
    """Header values as bytes: httpx sends a ``str`` only if it is ASCII, a server gets any latin-1."""
    return {name: value.encode("latin-1") for name, value in headers.items()}


def judge(answer: Any) -> str:
    """``accepted`` for 2xx, ``refused`` for a 4xx in the documented shape; :class:`Unclear` otherwise."""
    status = answer.status_code
    if status < 300:
        return ACCEPTED
    if status >= 500 or status < 400:
        raise Unclear(f"HTTP {status}: {answer.text[:300]}")
    try:
        detail = answer.json()["detail"]
    except (ValueError, KeyError, TypeError):
        raise Unclear(f"HTTP {status} without a detail: {answer.text[:300]}") from None
    if isinstance(detail, str):
        problems = [detail]
    elif isinstance(detail, list) and detail:
        for problem in detail:
            loc = problem.get("loc") if isinstance(problem, dict) else None
            if not (isinstance(loc, list) and loc and loc[0] in REFUSAL_WHERE):
                raise Unclear(f"HTTP {status}: a problem naming no field: {problem!r}"[:400])
        problems = [problem.get("msg") for problem in detail]
    else:
        raise Unclear(f"HTTP {status}: detail {detail!r}"[:400])
    for text in problems:
        if not isinstance(text, str) or not text.strip() or "\n" in text or "Traceback" in text:
            raise Unclear(f"HTTP {status}: not one clear line: {text!r}"[:400])
    return REFUSED


def message_bodies() -> st.SearchStrategy[bytes]:
    """JSON bodies shaped like a message (each field anything; the API tests' own strategy), good ones
    with one field changed, and bytes that are not JSON."""
    from tests.test_api_v1 import BODIES, JSON

    bodies = _one_field_changed(GOOD_MESSAGES, JSON) | st.sampled_from(GOOD_MESSAGES) | BODIES
    return st.one_of(
        bodies.map(lambda body: json.dumps(body).encode()),
        st.binary(max_size=300),
        st.sampled_from([b"", b"[" * 5000, b'{"to": 1e999}', b'{"to": NaN}', b"\xef\xbb\xbf{}", b"null"]),
    )


def api_messages_target() -> tuple[st.SearchStrategy[Any], Any]:
    client = _client()
    case = st.fixed_dictionaries(
        {"body": message_bodies(), "authorization": AUTHORIZATION, "content-type": CONTENT_TYPES},
        optional={"idempotency-key": HEADER_TEXT},
    )

    def check(given: dict[str, Any]) -> str:
        headers = {name: value for name, value in given.items() if name != "body"}
        return judge(client.post("/v1/messages", content=given["body"], headers=_latin1(headers)))

    return case, check


FORM_FIELDS = (
    "name",
    "template",
    "content",
    "params",
    "kind",
    "provider",
    "start",
    "window",
    "encoding",
    "dry_run",
    "force",
)
FORM_VALUES = {
    "template": st.sampled_from(["bill", "order_shipped", "login_code", "nope"]),
    "params": st.sampled_from(['{"amount": "1"}', "{}", "[]", "{", '{"a": {"b": 1}}', "null"]),
    "kind": st.sampled_from(["notify", "marketing", "otp", "x"]),
    "start": st.sampled_from(["2026-12-01T09:00:00+08:00", "2026-12-01T09:00", "yesterday", "9999-99-99"]),
    "window": st.sampled_from(["09:00-20:00", "25:00-26:00", "09:00", "-"]),
    "encoding": st.sampled_from(["gbk", "utf-8", "nope", "utf-16", "latin-1"]),
    "dry_run": st.sampled_from(["true", "true", "false", "1", "maybe"]),
    "force": st.sampled_from(["true", "false", "x"]),
}
FILE_NAMES = st.sampled_from(["r.csv", "r.jsonl", "r", "r.txt", ""]) | st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x2FFF, exclude_characters='"\\\x7f'), max_size=40
)


def recipient_files() -> st.SearchStrategy[bytes]:
    """Bytes made of the pieces recipient files are made of (and any bytes): headers, phones, quotes,
    JSON, encodings' byte sequences, line ends."""
    pieces = [
        b"phone", b"name,amount", b",", b";", b"\t", b"\n", b"\r\n", b"\r", b'"', b'""', b"{", b"}",
        b"[", b"]", b'"phone": ', b'{"phone": "13800138000", "amount": 1}', b"13800138000",
        b"+447700900123", b"1e999", b"\x00", b"\xff\xfe", b"\xef\xbb\xbf", b"\xe4\xb8\xad", b"\xd6\xd0",
        b"\x81\x30\x81\x30", b"null",
    ]  # fmt: skip
    return st.one_of(st.binary(max_size=500), st.lists(st.sampled_from(pieces), max_size=80).map(b"".join))


GOOD_FORMS = (
    {"template": "bill", "dry_run": "true"},
    {
        "template": "bill",
        "name": "n",
        "params": '{"amount": "1"}',
        "window": "09:00-20:00",
        "dry_run": "true",
    },
    {"content": "【商城】你好", "kind": "marketing", "encoding": "utf-8", "dry_run": "true"},
    {"template": "bill", "force": "true"},
)
GOOD_FILE = b"phone,name,amount\n13800138000,a,1\n+447700900123,b,2\nx,c,3\n"


def api_campaigns_target() -> tuple[st.SearchStrategy[Any], Any]:
    client = _client()
    anything = st.one_of(*FORM_VALUES.values()) | st.text(max_size=100)
    values = {name: FORM_VALUES.get(name, st.nothing()) | st.text(max_size=100) for name in FORM_FIELDS}
    fields = st.one_of(
        st.sampled_from(GOOD_FORMS),
        _one_field_changed(GOOD_FORMS, anything),
        st.fixed_dictionaries({}, optional=values),
    )
    upload = st.tuples(FILE_NAMES, recipient_files(), st.sampled_from(["text/csv", "application/json", ""]))
    case = st.fixed_dictionaries(
        {
            "fields": fields,
            "authorization": AUTHORIZATION,
            "file": st.one_of(mostly(("r.csv", GOOD_FILE, "text/csv"), upload), st.none()),
            "raw": st.one_of(st.none(), st.none(), st.none(), st.binary(max_size=300)),
        }
    )

    def check(given: dict[str, Any]) -> str:
        headers = _latin1({"authorization": given["authorization"]})
        if given["raw"] is not None:  # a body that only claims to be multipart
            headers["content-type"] = b"multipart/form-data; boundary=fuzz"
            return judge(client.post("/v1/campaigns", content=given["raw"], headers=headers))
        files = {"file": given["file"]} if given["file"] is not None else None
        return judge(client.post("/v1/campaigns", data=given["fields"], files=files, headers=headers))

    return case, check


# -- campaign files and the intake ----------------------------------------------------------------------


def _file_refusal(exc: Exception) -> str:
    text = str(exc)
    if not text.strip() or "\n" in text:
        raise Unclear(f"not one clear line: {text!r}"[:300])
    return REFUSED


def campaign_file_target() -> tuple[st.SearchStrategy[Any], Any]:
    from worker.campaign.files import FileError, Row, RowError, read_rows

    names = st.sampled_from(["f.csv", "f.jsonl", "f", "f.tsv", "f.json"])
    encodings = st.sampled_from([None, None, "utf-8", "gbk", "gb18030", "latin-1", "utf-16"])

    def check(given: tuple[bytes, str, str | None]) -> str:
        data, name, encoding = given
        try:
            items = list(read_rows(io.BytesIO(data), name, encoding))
        except FileError as exc:
            return _file_refusal(exc)
        for item in items:
            if not isinstance(item, Row | RowError) or item.line < 1:
                raise Unclear(f"not a row: {item!r}"[:300])
            if isinstance(item, RowError) and (not item.reason or "\n" in item.reason):
                raise Unclear(f"row error without one clear line: {item!r}"[:300])
        return ACCEPTED

    return st.tuples(recipient_files(), names, encodings), check


def intake_target() -> tuple[st.SearchStrategy[Any], Any]:
    from config.settings import get_settings
    from tasks.plan import InvalidRequest
    from tests.test_api_v1 import JSON
    from worker.campaign import intake
    from worker.store import Store, get_redis

    settings = get_settings()
    store = Store(get_redis(settings), settings)
    good = (
        {"template": "bill"},
        {"content": "【商城】账单{amount}元", "kind": "marketing", "params": {"amount": "1"}},
    )
    anything = JSON | st.one_of(*FORM_VALUES.values())
    specs = st.sampled_from(good) | _one_field_changed(good, anything)
    files = mostly(GOOD_FILE, recipient_files())

    def check(given: tuple[dict[str, Any], bytes, str]) -> str:
        fields, data, name = given
        try:
            spec = intake.CampaignSpec(**fields)
            checked = intake.dry_run(io.BytesIO(data), name, spec, settings, store)
        except InvalidRequest as exc:  # FileError and AdmissionRefused are InvalidRequests
            return _file_refusal(exc)
        json.dumps(checked.to_json())
        return ACCEPTED

    return st.tuples(specs, files, st.sampled_from(["r.csv", "r.jsonl", "r"])), check


def push_kept_target() -> tuple[st.SearchStrategy[Any], Any]:
    """What the push receiver stores of an Infocloud push: bytes, never our apiKey in a JSON object."""
    from config.settings import get_settings
    from tests.providers.push_targets import PushTarget, never_called
    from tests.providers.targets import mock_provider

    settings = get_settings()
    provider = mock_provider("infocloud", settings, never_called)
    api_key = settings.vendor("infocloud").api_key.get_secret_value()  # type: ignore[attr-defined]

    def check(body: bytes) -> str:
        kept = provider.push_kept(body, "application/json")
        if not isinstance(kept, bytes):
            raise Unclear(f"not bytes: {kept!r}"[:300])
        if kept != body and api_key.encode() in kept:
            raise Unclear("the apiKey is still in the body kept")
        return ACCEPTED if kept != body else REFUSED

    return PushTarget("infocloud", "signed").bodies(), check


TARGETS: dict[str, Callable[[], tuple[st.SearchStrategy[Any], Any]]] = {
    "API POST /v1/messages": api_messages_target,
    "API POST /v1/campaigns": api_campaigns_target,
    "campaign file read_rows": campaign_file_target,
    "campaign intake dry_run": intake_target,
    "push infocloud.push_kept": push_kept_target,
}


def all_targets() -> Iterator[tuple[str, tuple[st.SearchStrategy[Any], Any]]]:
    _environment()
    _capture_publish()
    yield "send_sms arguments", send_sms_target()
    for name, target in TARGETS.items():
        yield name, target()
    yield from _optional("tests.providers.strategies", "fuzz_targets")
    yield from _optional("tests.strategies_settings", "fuzz_targets")


def _optional(module: str, name: str) -> Iterator[tuple[str, tuple[st.SearchStrategy[Any], Any]]]:
    """Targets a strategies module offers as ``fuzz_targets()`` (adapters, settings)."""
    import importlib

    targets = getattr(importlib.import_module(module), name)
    yield from targets()
