"""Planning: request validation, normalization, dedupe, routing and chunking, as plain functions."""

from __future__ import annotations

import pytest

from config.settings import Settings
from tasks.plan import InvalidRequest, build_plan, validate_request


def plan(settings: Settings, **request: object):  # type: ignore[no-untyped-def]
    return build_plan(validate_request(request, settings), settings, unhealthy={})


def test_2500_recipients_become_three_chunks_of_at_most_1000(settings: Settings) -> None:
    phones = [f"139{i:08d}" for i in range(2500)]
    result = plan(settings, to=phones, template="order_shipped", params={"order": "A1", "tracking": "SF"})
    assert [len(c.phones) for c in result.chunks] == [1000, 1000, 500]
    assert {c.provider for c in result.chunks} == {"infocloud"}
    assert result.chunks[0].template.params == ("A1", "SF")
    assert result.accepted == 2500 and result.rejected == [] and result.duplicates == 0


def test_bad_numbers_are_rejected_one_by_one_and_duplicates_removed(settings: Settings) -> None:
    result = plan(
        settings,
        to=["13800138000", "+86 138 0013 8000", "12345", "13900000000"],
        template="login_code",
        params={"code": "1234"},
        kind="otp",
    )
    assert [c.phones for c in result.chunks] == [("13800138000", "13900000000")]
    assert result.duplicates == 1
    assert [(given, why.split(":")[0]) for given, why in result.rejected] == [("12345", "to")]


def test_parameters_follow_the_vendor_order(settings: Settings) -> None:
    result = plan(settings, to="13800138000", template="bill", params={"amount": "12.5", "name": "张三"})
    assert result.chunks[0].template.params == ("张三", "12.5")
    assert result.chunks[0].template.text == "张三您好，本期账单12.5元。"


def test_per_recipient_parameters_take_the_send_batch_form(settings: Settings) -> None:
    result = plan(
        settings,
        to=[
            {"phone": "13800000001", "params": {"code": "1111"}},
            {"phone": "13800000002", "params": {"code": "2222"}},
        ],
        template="login_code",
    )
    (chunk,) = result.chunks
    assert chunk.per_recipient is not None
    assert [t.params for t in chunk.per_recipient] == [("1111",), ("2222",)]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"to": "13800138000", "template": "nope"}, "template: unknown template 'nope'"),
        ({"to": "13800138000", "template": "login_code"}, "params: missing code"),
        (
            {"to": "13800138000", "template": "login_code", "params": {"code": "1", "x": 2}},
            "params: unexpected x",
        ),
        (
            {"to": "13800138000", "template": "login_code", "params": {"code": "1" * 40}},
            "params.code: 40 characters",
        ),
        ({"to": [], "template": "login_code", "params": {"code": "1"}}, "to: no recipients"),
        ({"to": "13800138000"}, "exactly one of template or content"),
        ({"to": "13800138000", "content": "hi", "kind": "spam"}, "kind"),
        ({"to": "13800138000", "content": "hi", "provider": "acme"}, "provider: unknown 'acme'"),
    ],
)
def test_a_bad_request_is_refused_naming_the_field(settings: Settings, request_: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidRequest, match=message.replace("(", r"\(").replace("+", r"\+")):
        validate_request(request_, settings)


def test_no_route_rejects_every_recipient_with_the_reasons(settings: Settings) -> None:
    result = build_plan(
        validate_request({"to": ["13800138000"], "content": "free text"}, settings), settings, unhealthy={}
    )
    assert result.chunks == []
    assert "infocloud: takes registered templates only" in result.rejected[0][1]


def test_an_unhealthy_vendor_is_skipped_with_its_reason(settings: Settings) -> None:
    request = validate_request(
        {"to": "13800138000", "template": "login_code", "params": {"code": "1"}}, settings
    )
    result = build_plan(request, settings, unhealthy={"infocloud": {"code": "40002", "reason": "余额不足"}})
    assert "unhealthy after code 40002" in result.rejected[0][1]


def routed(settings: Settings, routing: dict[str, tuple[str, ...]], unhealthy=None, **request: object):  # type: ignore[no-untyped-def]
    custom = settings.model_copy(update={"routing": {**settings.routing, **routing}})
    return build_plan(validate_request(request, custom), custom, unhealthy or {})


def test_routing_takes_the_kinds_vendors_in_order_and_skips_an_unhealthy_one(settings: Settings) -> None:
    otp = {"otp": ("tencent", "ihuyi", "infocloud")}
    first = routed(settings, otp, to="13800138000", template="login_code", params={"code": "1"}, kind="otp")
    assert first.providers == {"tencent"}
    benched = {"tencent": {"code": "1033", "reason": "arrears"}}
    second = routed(
        settings, otp, benched, to="13800138000", template="login_code", params={"code": "1"}, kind="otp"
    )
    assert second.providers == {"ihuyi"}
    assert second.chunks[0].template.text == "您的验证码是1，5分钟内有效。"  # a content vendor gets the text


def test_a_vendor_without_the_template_is_skipped_and_international_numbers_go_where_taken(
    settings: Settings,
) -> None:
    notify = {"notify": ("deepfinch", "xiaorui", "tencent")}
    result = routed(
        settings,
        notify,
        to=["13800138000", "+85291234567"],
        template="bill",
        params={"name": "张三", "amount": "9"},
    )
    by_phone = {c.phones[0]: c.provider for c in result.chunks}
    assert by_phone["13800138000"] == "xiaorui"  # deepfinch has no "bill" id
    # tencent has no "bill" id either, and the others take no international numbers:
    assert [given for given, _ in result.rejected] == ["+85291234567"]
    why = result.rejected[0][1]
    assert "deepfinch: template 'bill' has no deepfinch entry" in why
    assert "xiaorui: does not take international numbers" in why
    assert "tencent: template 'bill' has no tencent entry" in why


def test_a_vendor_without_credentials_is_skipped_naming_the_settings(settings: Settings) -> None:
    from config.settings import TencentSettings

    custom = settings.model_copy(
        update={"tencent": TencentSettings(), "routing": {**settings.routing, "otp": ("tencent",)}}
    )
    request = validate_request(
        {"to": "13800138000", "template": "login_code", "params": {"code": "1"}, "kind": "otp"}, custom
    )
    result = build_plan(request, custom, {})
    assert (
        "tencent: not configured (set SMSD_TENCENT__SDK_APP_ID, SMSD_TENCENT__APP_KEY)"
        in result.rejected[0][1]
    )


def test_text_longer_than_a_vendor_takes_is_refused_before_any_call(settings: Settings) -> None:
    result = routed(settings, {}, to="13800138000", content="长" * 301, provider="ihuyi")
    assert result.chunks == [] and "content: 301 characters, ihuyi takes 300" in result.rejected[0][1]
