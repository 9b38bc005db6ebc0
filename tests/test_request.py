"""send_sms's arguments at the door: any value either becomes a JSON-safe request or an InvalidRequest
naming the field, and ``.delay()`` queues nothing when it refuses."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hsettings
from kombu.utils.json import dumps, loads

from config.settings import PROVIDERS, Settings
from providers.phones import PhoneError, normalize
from tasks.plan import build_plan
from tasks.request import InvalidRequest, SendInput, validate_request
from tests.strategies_input import HugeInt, Opaque, send_kwargs

PHONE = "13800138000"
CODE = {"to": PHONE, "template": "login_code"}


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({**CODE, "params": {"code": HugeInt(10**5000)}}, "params.code: a number of more than 500 digits"),
        ({**CODE, "params": {"code": math.nan}}, "params.code: not a finite number"),
        ({**CODE, "params": {"code": -math.inf}}, "params.code: not a finite number"),
        ({**CODE, "params": {"code": True}}, "params.code: expected text or a number, got bool"),
        ({**CODE, "params": {"code": None}}, "params.code: expected text or a number, got NoneType"),
        ({**CODE, "params": {"code": b"1234"}}, "params.code: expected text or a number, got bytes"),
        ({**CODE, "params": {"code": {"a": {"b": 1}}}}, "params.code: expected text or a number, got dict"),
        ({**CODE, "params": {"code": Opaque()}}, "params.code: expected text or a number, got Opaque"),
        ({**CODE, "params": {"code": "1" * 501}}, "params.code: 501 characters, at most 500"),
        ({**CODE, "params": {"code": "\ud800"}}, "params.code: holds a lone surrogate"),
        ({**CODE, "params": {1: "1"}}, "params: parameter names are text"),
        ({**CODE, "params": ["code", "1"]}, "params: expected a mapping"),
        ({"to": {"phone": PHONE}, "content": "hi"}, "to: expected a phone or a list"),
        ({"to": None, "content": "hi"}, "to: expected a phone or a list"),
        ({"to": [PHONE, 13800138000.0], "content": "hi"}, "to.1: expected a phone number as text, got float"),
        ({"to": [b"13800138000"], "content": "hi"}, r"to.0: expected a phone number as text, got bytes"),
        (
            {"to": [True], "content": "hi"},
            "to.0: expected a phone number as text or a positive int, got bool",
        ),
        ({"to": -13800138000, "content": "hi"}, "to: a phone number given as an int must be positive"),
        ({"to": [HugeInt(10**5000)], "content": "hi"}, "to.0: more than 15 digits"),
        ({"to": ["1" * 100], "content": "hi"}, "to.0: 100 characters, a phone number has at most 64"),
        (
            {"to": [{"phone": PHONE, "params": {"code": []}}], "content": "hi"},
            "to.0.params.code: expected text",
        ),
        ({"to": [{"phone": PHONE, "x": 1}], "content": "hi"}, "to.0: unexpected field 'x'"),
        ({"to": [{"params": {}}], "content": "hi"}, "to.0: missing phone"),
        ({"to": PHONE, "content": "x" * 1001}, "content: String should have at most 1000 characters"),
        ({"to": PHONE, "content": b"hi"}, "content: Input should be a valid string"),
        ({"to": PHONE, "template": 5}, "template: Input should be a valid string"),
        ({"to": PHONE, "content": "hi", "kind": b"otp"}, "kind: Input should be 'otp'"),
        ({"to": PHONE, "content": "hi", "provider": "x" * 1000}, "provider: String should have at most 64"),
        (
            {"to": PHONE, "content": "hi", "idempotency_key": 5},
            "idempotency_key: Input should be a valid string",
        ),
        ({"to": PHONE, "content": "hi", "x" * 1000: 1}, "x" * 40 + ": Extra inputs are not permitted"),
    ],
)
def test_a_hostile_value_is_refused_naming_its_field(
    settings: Settings, request_: dict, message: str
) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidRequest) as info:
        validate_request(request_, settings)
    assert str(info.value).startswith(message), str(info.value)
    assert len(str(info.value)) < 300


def test_values_become_text_and_any_collection_of_phones_a_list(settings: Settings) -> None:
    request = validate_request(
        {"to": (PHONE, 13900139000), "template": "login_code", "params": {"code": 1234}}, settings
    )
    assert request.model_dump(mode="json", exclude_none=True) == {
        "to": [PHONE, "13900139000"],
        "template": "login_code",
        "params": {"code": "1234"},
        "kind": "notify",
    }
    floats = validate_request({"to": {PHONE}, "content": "x", "params": {"amount": 12.5}}, settings)
    assert floats.to == [PHONE] and floats.params == {"amount": "12.5"}


def queued(r: redis.Redis) -> dict[str, list[Any]]:
    """The messages waiting in each queue (kombu keeps one list per queue and priority, ``sms.notify:6``),
    as [args, kwargs] decoded from kombu's envelope."""
    found: dict[str, list[Any]] = {}
    for key in sorted(r.scan_iter("sms.*")):
        if r.type(key) != "list":
            continue
        for raw in r.lrange(key, 0, -1):
            body = json.loads(base64.b64decode(json.loads(raw)["body"]))
            found.setdefault(key.split(":")[0], []).append(body[:2])
    return found


HOSTILE_CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((PHONE,), {"template": "login_code", "params": {"code": HugeInt(10**5000)}}),
    ((PHONE,), {"template": "login_code", "params": {"code": math.nan}}),
    ((PHONE,), {"template": "login_code", "params": {"code": {"nested": [1, 2]}}}),
    (([PHONE, b"139"],), {"content": "hi"}),
    (([PHONE, Opaque()],), {"content": "hi"}),
    (({PHONE, 1.5},), {"content": "hi"}),
    ((PHONE, "extra positional"), {"content": "hi"}),
    ((PHONE,), {"to": PHONE, "content": "hi"}),
    ((PHONE,), {"content": "hi", "provider": "infocloud"}),  # free text to a template-only vendor
    ((PHONE,), {"content": "x" * 10_000}),
    ((None,), {"content": "hi"}),
]


@pytest.mark.parametrize(("args", "kwargs"), HOSTILE_CALLS)
def test_delay_with_hostile_arguments_raises_invalid_request_and_queues_nothing(
    r: redis.Redis, settings: Settings, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    from tasks.send import send_sms

    with pytest.raises(InvalidRequest):
        send_sms.delay(*args, **kwargs)
    assert queued(r) == {}


def test_delay_hands_celery_the_validated_json_form_not_the_callers_objects(
    r: redis.Redis, settings: Settings
) -> None:
    from tasks.send import send_sms

    send_sms.delay({PHONE}, template="login_code", params={"code": 1234})  # a set: kombu cannot encode one
    assert queued(r) == {
        "sms.notify": [
            [[], {"to": [PHONE], "template": "login_code", "params": {"code": "1234"}, "kind": "notify"}]
        ]
    }


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kwargs=send_kwargs())
def test_any_arguments_become_an_encodable_request_or_an_invalid_request(
    settings: Settings, kwargs: dict[str, Any]
) -> None:
    every_vendor = dict.fromkeys(("otp", "notify", "marketing"), PROVIDERS)
    settings = settings.model_copy(update={"routing": every_vendor})
    try:
        request = validate_request(kwargs, settings)
    except InvalidRequest as exc:
        assert str(exc) and len(str(exc)) < 2000
        event("refused at the door")
        return
    payload = request.model_dump(mode="json", exclude_none=True)
    again = validate_request(loads(dumps(payload)), settings)  # what the worker validates
    assert again == request
    plan = build_plan(request, settings, {})
    event("planned, some accepted" if plan.accepted else "planned, all rejected")
    for chunk in plan.chunks:
        assert all(normalize(phone) == phone and phone.isascii() for phone in chunk.phones)
        dumps(chunk.to_task())
    for given_, why in plan.rejected:
        if why.startswith("to: "):  # a bad number: shown masked, never a whole number
            with pytest.raises(PhoneError):
                normalize(given_)
        else:  # no route, or content the vendor refuses: the recipient's key is its (valid) phone
            assert normalize(given_) == given_


def test_send_input_refuses_what_the_door_refuses_when_built_directly() -> None:
    with pytest.raises(ValueError, match=r"to\.0: expected a phone number as text, got float"):
        SendInput(to=[1.5], content="x")  # type: ignore[list-item]
