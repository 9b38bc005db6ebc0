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


# -- phones: one spelling, rejected inputs never shown whole -------------------------------------------


def test_a_full_width_digit_is_the_same_phone_and_other_scripts_digits_are_rejected(
    settings: Settings,
) -> None:
    result = plan(
        settings,
        to=["13800138000", "1380013800０", "138٠0138000"],
        template="login_code",
        params={"code": "1"},
    )
    assert [c.phones for c in result.chunks] == [("13800138000",)]
    assert result.duplicates == 1  # the full-width spelling is the same phone: one send, one limit
    (rejected,) = result.rejected
    assert rejected[0] == "138****8000" and "other than ASCII or full-width digits" in rejected[1]


def test_a_rejected_input_is_never_given_back_whole_and_each_keeps_its_own_key(settings: Settings) -> None:
    result = plan(
        settings,
        to=["13800138000x", "1380013800", "1389913800", "12345"],
        template="login_code",
        params={"code": "1"},
    )
    assert [given for given, _ in result.rejected] == [
        "138****8000x",
        "138***3800",
        "138***3800 (to.2)",
        "12345",
    ]


# -- what the routed vendor would refuse is refused in planning (or the next vendor takes it) ----------


def test_free_text_with_an_emoji_skips_ihuyi_for_the_next_content_vendor(settings: Settings) -> None:
    result = routed(settings, {"notify": ("ihuyi", "xiaorui")}, to="13800138000", content="您好😀")
    assert result.providers == {"xiaorui"} and result.rejected == []


def test_free_text_with_an_emoji_is_rejected_when_only_ihuyi_could_send_it(settings: Settings) -> None:
    result = routed(settings, {"notify": ("ihuyi",)}, to="13800138000", content="您好😀")
    assert result.chunks == []
    assert "ihuyi: content: holds an emoji (U+1F600), which ihuyi refuses" in result.rejected[0][1]


def test_a_deepfinch_parameter_with_a_comma_or_colon_goes_to_the_next_vendor(settings: Settings) -> None:
    route = {"otp": ("deepfinch", "infocloud")}
    clean = routed(
        settings, route, to="13800138000", template="login_code", params={"code": "12"}, kind="otp"
    )
    assert clean.providers == {"deepfinch"}
    for value in ("1,2", "a:b"):
        result = routed(
            settings, route, to="13800138000", template="login_code", params={"code": value}, kind="otp"
        )
        assert result.providers == {"infocloud"}, value


def test_per_recipient_parameters_a_vendor_cannot_carry_reject_only_that_recipient(
    settings: Settings,
) -> None:
    result = routed(
        settings,
        {"otp": ("deepfinch",)},
        to=[
            {"phone": "13800000001", "params": {"code": "1:2"}},
            {"phone": "13800000002", "params": {"code": "3"}},
        ],
        template="login_code",
        kind="otp",
    )
    assert [c.phones for c in result.chunks] == [("13800000002",)]
    assert result.rejected == [("13800000001", "params.code: holds ':', which deepfinch cannot carry")]


def long_template(settings: Settings, chars: int) -> Settings:
    from config.templates import TemplateConfig

    text = "长" * (chars - 6) + "{code}"
    template = TemplateConfig.model_validate(
        {"text": text, "tencent": "7839", "infocloud": "1", "max_param_chars": 35}
    )
    return settings.model_copy(update={"templates": {**settings.templates, "long": template}})


def test_tencent_takes_450_characters_and_the_next_vendor_takes_longer_content(settings: Settings) -> None:
    custom = long_template(settings, 451)
    route = {"otp": ("tencent", "infocloud")}
    at_limit = routed(custom, route, to="13800138000", template="long", params={"code": "12345"}, kind="otp")
    assert at_limit.providers == {"tencent"}  # 450 characters
    over = routed(custom, route, to="13800138000", template="long", params={"code": "123456"}, kind="otp")
    assert over.providers == {"infocloud"}
    alone = routed(
        custom,
        {"otp": ("tencent",)},
        to="13800138000",
        template="long",
        params={"code": "123456"},
        kind="otp",
    )
    assert "tencent: content: 451 characters, tencent takes 450" in alone.rejected[0][1]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            {"content": "免费文本", "provider": "infocloud"},
            "provider: infocloud takes registered templates only",
        ),
        ({"content": "免费文本", "provider": "tencent"}, "provider: tencent takes registered templates only"),
        ({"content": "长" * 301, "provider": "ihuyi"}, "content: 301 characters, ihuyi takes 300"),
        (
            {"content": "您好😀", "provider": "ihuyi"},
            r"content: holds an emoji \(U\+1F600\), which ihuyi refuses",
        ),
        (
            {"template": "login_code", "params": {"code": "1,2"}, "provider": "deepfinch"},
            "params.code: holds ','",
        ),
        (
            {"template": "bill", "params": {"name": "a", "amount": "1"}, "provider": "tencent"},
            "provider: template 'bill' has no tencent entry",
        ),
    ],
)
def test_a_request_naming_its_vendor_is_refused_at_the_door_for_what_that_vendor_refuses(
    settings: Settings,
    request_: dict,
    message: str,  # type: ignore[type-arg]
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        validate_request({"to": "13800138000", **request_}, settings)
