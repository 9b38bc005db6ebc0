"""Settings: environment over the TOML file, and every bad setting refused at start with its name, as
``SettingsError`` (never a traceback, never a value that fails at run time)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.limits import LimitRule
from config.settings import Settings, SettingsError, load_settings
from config.templates import TemplateError, placeholders
from providers.infocloud import InfocloudSettings


@pytest.fixture(autouse=True)
def no_smsd_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test sees only the SMSD_* variables it sets (not a session's test configuration)."""
    for key in [key for key in os.environ if key.startswith("SMSD_")]:
        monkeypatch.delenv(key)
    yield


def toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    path = tmp_path / "smsd.toml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("SMSD_CONFIG", str(path))
    return path


def refused(**env: str) -> str:
    """The SettingsError message for the environment ``env``."""
    mp = pytest.MonkeyPatch()
    try:
        for key, value in env.items():
            mp.setenv(key, value)
        with pytest.raises(SettingsError) as raised:
            load_settings()
    finally:
        mp.undo()
    return str(raised.value)


def test_toml_supplies_templates_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml_file(
        tmp_path,
        monkeypatch,
        '[templates.login_code]\ntext = "验证码{code}"\ninfocloud = "675871161745170000"\n'
        '[infocloud]\nsign_method = "HmacMD5"\nrequests_per_second = 100\n'
        '[limits]\notp = ["2/1m"]\n',
    )
    monkeypatch.setenv("SMSD_INFOCLOUD__REQUESTS_PER_SECOND", "250")
    settings = load_settings()
    assert settings.templates["login_code"].render(
        "login_code", "infocloud", {"code": "1"}
    ).vendor_template == ("675871161745170000")
    section = settings.vendor("infocloud", InfocloudSettings)
    assert (section.sign_method, section.requests_per_second) == ("HmacMD5", 250)
    assert settings.limits["otp"] == (LimitRule(2, 60),)
    assert settings.limits["notify"] == (LimitRule(1, 1), LimitRule(20, 86400))  # defaults kept


def test_old_imports_of_vendor_sections_and_attribute_access_keep_working() -> None:
    from config.settings import TencentSettings  # type: ignore[attr-defined]
    from providers.tencent import TencentSettings as Moved

    settings: Settings = load_settings()
    assert TencentSettings is Moved and isinstance(settings.tencent, Moved)  # type: ignore[attr-defined]
    with pytest.raises(ImportError):
        from config.settings import NoSuchSettings  # type: ignore[attr-defined]  # noqa: F401


@pytest.mark.parametrize(
    ("env", "message"),
    [
        # floats: never inf or NaN, from any spelling
        ({"SMSD_RETRY__BACKOFF_CAP_S": "inf"}, "SMSD_RETRY__BACKOFF_CAP_S: Input should be a finite number"),
        (
            {"SMSD_RETRY__BACKOFF_BASE_S": "NaN"},
            "SMSD_RETRY__BACKOFF_BASE_S: Input should be a finite number",
        ),
        (
            {"SMSD_INFOCLOUD__READ_TIMEOUT_S": "1e309"},
            "SMSD_INFOCLOUD__READ_TIMEOUT_S: Input should be a finite",
        ),
        (
            {"SMSD_TENCENT__REQUESTS_PER_SECOND": "-Infinity"},
            "SMSD_TENCENT__REQUESTS_PER_SECOND: Input should",
        ),
        (
            {"SMSD_INFOCLOUD__REQUESTS_PER_SECOND": "1e-300"},
            "SMSD_INFOCLOUD__REQUESTS_PER_SECOND: Input should",
        ),
        (
            {"SMSD_XIAORUI__CONNECT_TIMEOUT_S": "86400"},
            "SMSD_XIAORUI__CONNECT_TIMEOUT_S: Input should be less",
        ),
        # the log level
        (
            {"SMSD_LOG_LEVEL": "verbose"},
            "SMSD_LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
        ),
        ({"SMSD_LOG_LEVEL": ""}, "SMSD_LOG_LEVEL: must be one of"),
        # limits: malformed, too large for Redis, empty, or two over one counter
        (
            {"SMSD_LIMITS": '{"otp": 5}'},
            "SMSD_LIMITS__OTP: must be a list of limits such as ['1/30s', '5/1h']",
        ),
        ({"SMSD_LIMITS": '["x"]'}, "SMSD_LIMITS: Input should be a valid dictionary"),
        ({"SMSD_LIMITS": '{"otp": [5]}'}, "SMSD_LIMITS__OTP: limit 5 is not a string such as '5/1h'"),
        ({"SMSD_LIMITS": '{"otp": ["often"]}'}, "'often' is not of the form COUNT/WINDOW"),
        (
            {"SMSD_LIMITS": '{"otp": ["1/99999999999999d"]}'},
            "SMSD_LIMITS__OTP: limit '1/99999999999999d': a window",
        ),
        ({"SMSD_LIMITS__OTP": '["1/367d"]'}, "SMSD_LIMITS__OTP: limit '1/367d': a window is at most 366d"),
        (
            {"SMSD_LIMITS__NOTIFY": '["5000000/1d"]'},
            "SMSD_LIMITS__NOTIFY: limit '5000000/1d': at most 1,000,000",
        ),
        ({"SMSD_LIMITS__OTP": "[]"}, "SMSD_LIMITS__OTP: an empty list"),
        ({"SMSD_LIMITS__OTP": '["1/60s", "3/1m"]'}, "SMSD_LIMITS__OTP: two limits have the same window"),
        ({"SMSD_LIMITS": '{"sms": ["1/1s"]}'}, "SMSD_LIMITS__SMS: unknown kind 'sms'"),
        ({"SMSD_LIMITS__OTP": "１/1s"}, "SMSD_LIMITS__OTP: limit '１/1s' is not of the form"),
        # routes
        ({"SMSD_ROUTING": '{"otp": ["acme"]}'}, "SMSD_ROUTING__OTP: unknown provider 'acme'"),
        ({"SMSD_ROUTING": '{"otp": []}'}, "SMSD_ROUTING__OTP: an empty list: name at least one provider"),
        (
            {"SMSD_ROUTING__NOTIFY": '["tencent", "tencent"]'},
            "SMSD_ROUTING__NOTIFY: a provider is listed twice",
        ),
        # template texts that would fail, or render something else, at run time
        (
            {"SMSD_TEMPLATES": '{"x": {"text": "{code:d}"}}'},
            "SMSD_TEMPLATES__X__TEXT: placeholder {code:d}: format",
        ),
        (
            {"SMSD_TEMPLATES__X__TEXT": "{code!r}"},
            "SMSD_TEMPLATES__X__TEXT: placeholder {code!r}: conversions",
        ),
        ({"SMSD_TEMPLATES__X__TEXT": "码{}"}, "SMSD_TEMPLATES__X__TEXT: positional placeholder {}"),
        ({"SMSD_TEMPLATES__X__TEXT": "码{0}"}, "SMSD_TEMPLATES__X__TEXT: positional placeholder {0}"),
        (
            {"SMSD_TEMPLATES__X__TEXT": "{a.b}"},
            "SMSD_TEMPLATES__X__TEXT: placeholder {a.b} is not a plain name",
        ),
        (
            {"SMSD_TEMPLATES__X__TEXT": "{a[0]}"},
            "SMSD_TEMPLATES__X__TEXT: placeholder {a[0]} is not a plain name",
        ),
        (
            {"SMSD_TEMPLATES__X__TEXT": "码{code"},
            "SMSD_TEMPLATES__X__TEXT: expected '}' before end of string",
        ),
        (
            {"SMSD_TEMPLATES": '{"x": {"text": "码", "tencent": ""}}'},
            "SMSD_TEMPLATES__X__TENCENT__ID: String",
        ),
        (
            {"SMSD_TEMPLATES": '{"x": {"text": "码", "ihuyi": {"id": "1"}}}'},
            "SMSD_TEMPLATES__X__IHUYI: Input",
        ),
        # the Redis URL
        (
            {"SMSD_REDIS_URL": "localhost:6379"},
            "SMSD_REDIS_URL: must start with redis://, rediss:// or unix://: write redis://localhost:6379/0",
        ),
        ({"SMSD_REDIS_URL": "redis://localhost:99999/0"}, "SMSD_REDIS_URL: has a port that is not a number"),
        ({"SMSD_REDIS_URL": "redis:///0"}, "SMSD_REDIS_URL: has no host"),
        ({"SMSD_REDIS_URL": "redis://localhost/zero"}, "SMSD_REDIS_URL: database 'zero' is not a number"),
        ({"SMSD_REDIS_URL": "redis://localhost/0?socket_timeout=soon"}, "SMSD_REDIS_URL: Invalid value for"),
        ({"SMSD_REDIS_URL": "unix://"}, "SMSD_REDIS_URL: unix:// needs a socket path"),
        # retention and TTLs Redis takes (EXPIRE: positive, below 2**31 s)
        ({"SMSD_RETENTION_S": "-1"}, "SMSD_RETENTION_S: Input should be greater than 0"),
        (
            {"SMSD_RETENTION_S": "2147483648"},
            "SMSD_RETENTION_S: Input should be less than or equal to 2147483647",
        ),
        ({"SMSD_IDEMPOTENCY_TTL_S": "0"}, "SMSD_IDEMPOTENCY_TTL_S: Input should be greater than 0"),
        (
            {"SMSD_UNHEALTHY_S": "9" * 40},
            "SMSD_UNHEALTHY_S: Input should be less than or equal to 2147483647",
        ),
        (
            {"SMSD_UNMATCHED_RECEIPT_KEEP_S": "1e3"},
            "SMSD_UNMATCHED_RECEIPT_KEEP_S: Input should be a valid int",
        ),
        (
            {"SMSD_VISIBILITY_TIMEOUT_S": "99999999999"},
            "SMSD_VISIBILITY_TIMEOUT_S: Input should be less than",
        ),
        ({"SMSD_MAX_COUNTDOWN_S": "0"}, "SMSD_MAX_COUNTDOWN_S: Input should be greater than 0"),
        ({"SMSD_IHUYI__SETTLE_S": "2147483648"}, "SMSD_IHUYI__SETTLE_S: Input should be less than or equal"),
        # vendor sections
        ({"SMSD_INFOCLOUD__SIGN_METHOD": "HmacFoo"}, "SMSD_INFOCLOUD__SIGN_METHOD"),
        ({"SMSD_INFOCLOUD__BATCH_SIZE": "5000"}, "SMSD_INFOCLOUD__BATCH_SIZE"),
        (
            {"SMSD_INFOCLOUD__BASE_URL": "opassapi.infocloud.cc"},
            "SMSD_INFOCLOUD__BASE_URL: must start with http",
        ),
        (
            {"SMSD_INFOCLOUD__BASE_URL": "http://host:99999"},
            "SMSD_INFOCLOUD__BASE_URL: has a port that is not",
        ),
        (
            {"SMSD_TENCENT__BASE_URL": "http://exa mple.com"},
            "SMSD_TENCENT__BASE_URL: has no host, or one with",
        ),
        (
            {"SMSD_INFOCLOUD__BALANCE_POLL_INTERVAL_S": "5"},
            "SMSD_INFOCLOUD__BALANCE_POLL_INTERVAL_S: Input should be",
        ),
        (
            {"SMSD_XIAORUI__RECEIPT_POLL_INTERVAL_S": "0"},
            "SMSD_XIAORUI__RECEIPT_POLL_INTERVAL_S: Input should",
        ),
        ({"SMSD_INFOCLOUD__NOPE": "1"}, "SMSD_INFOCLOUD__NOPE: Extra inputs are not permitted"),
        # values the environment source cannot even decode
        ({"SMSD_INFOCLOUD": "{"}, "SMSD_INFOCLOUD (or a SMSD_INFOCLOUD__* variable): not valid JSON"),
        ({"SMSD_ROUTING": "[" * 5000}, "SMSD_ROUTING: nested deeper than 32 levels"),
        ({"SMSD_WORKER_PREFETCH": "１２"}, "SMSD_WORKER_PREFETCH: Input should be a valid integer"),
        ({"SMSD_CONFIG": "/nonexistent/smsd.toml"}, "SMSD_CONFIG: no such file"),
        ({"SMSD_CONFIG": "/"}, "SMSD_CONFIG: no such file"),
    ],
)
def test_a_bad_setting_is_refused_with_its_name(env: dict[str, str], message: str) -> None:
    assert message in refused(**env)


def test_every_bad_setting_is_named_at_once() -> None:
    message = refused(SMSD_LOG_LEVEL="loud", SMSD_RETENTION_S="0", SMSD_LIMITS='{"otp": 5}')
    assert re.findall(r"^  (\S+):", message, re.MULTILINE) == [
        "SMSD_RETENTION_S",
        "SMSD_LOG_LEVEL",
        "SMSD_LIMITS__OTP",
    ]


def test_values_are_never_printed_so_no_secret_leaks() -> None:
    message = refused(
        SMSD_REDIS_URL="redis://:hunter2@localhost:99999/0",
        SMSD_INFOCLOUD='{"access_key": ["hunter3"]}',
        SMSD_TENCENT__APP_KEY="hunter4",
        SMSD_TENCENT__BASE_URL="http://hunter5 host",
    )
    assert "SMSD_REDIS_URL" in message and "SMSD_INFOCLOUD__ACCESS_KEY" in message
    assert "hunter" not in message


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[templates.login_code]\ntext = "验证码{code:d}"\n',
            "templates.login_code.text: placeholder {code:d}",
        ),
        (
            '[templates.x]\ntext = "码{code}"\ntencent = { id = "1", params = ["cod"] }\n',
            "templates.x.tencent: params names ['cod'] which the text does not have",
        ),
        ("[limits]\notp = 5\n", "limits.otp: must be a list of limits"),
        ('[limits]\nnotify = ["1/99999999999999d"]\n', "limits.notify: limit '1/99999999999999d': a window"),
        ("[routing]\notp = []\n", "routing.otp: an empty list"),
        ("[infocloud]\nread_timeout_s = nan\n", "infocloud.read_timeout_s: Input should be a finite number"),
        ("[retry]\nbackoff_cap_s = inf\n", "retry.backoff_cap_s: Input should be a finite number"),
        ("retention_s = 4294967296\n", "retention_s: Input should be less than or equal to 2147483647"),
        ('log_level = "chatty"\n', "log_level: must be one of"),
        ('redis_url = "localhost:6379"\n', "redis_url: must start with redis://"),
        ("unknown_setting = 1\n", "unknown_setting: Extra inputs are not permitted"),
        ("[routing\n", "SMSD_CONFIG: "),
        ("a = " + "[" * 5000 + "\n", "SMSD_CONFIG: "),
    ],
)
def test_a_bad_setting_in_the_toml_file_is_named_by_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str, message: str
) -> None:
    toml_file(tmp_path, monkeypatch, toml)
    assert message in refused()


def test_a_toml_file_that_is_not_utf8_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = toml_file(tmp_path, monkeypatch, "")
    path.write_bytes('[templates.x]\ntext = "码"\n'.encode("gbk"))
    assert "SMSD_CONFIG: " in refused()


def test_the_environment_is_named_when_it_overrides_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml_file(tmp_path, monkeypatch, '[limits]\notp = ["1/30s"]\n')
    assert "SMSD_LIMITS__OTP: an empty list" in refused(SMSD_LIMITS__OTP="[]")


@pytest.mark.parametrize(
    ("env", "field", "value"),
    [
        ({"SMSD_LOG_LEVEL": "debug"}, "log_level", "DEBUG"),
        ({"SMSD_LOG_LEVEL": " Warning "}, "log_level", "WARNING"),
        ({"SMSD_RETENTION_S": "2147483647"}, "retention_s", 2**31 - 1),
        (
            {"SMSD_REDIS_URL": "rediss://:pw@redis.internal:6380/2"},
            "redis_url",
            "rediss://:pw@redis.internal:6380/2",
        ),
        ({"SMSD_REDIS_URL": "unix:///run/redis.sock?db=1"}, "redis_url", "unix:///run/redis.sock?db=1"),
    ],
)
def test_good_values_at_the_edges_are_accepted(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], field: str, value: object
) -> None:
    for key, text in env.items():
        monkeypatch.setenv(key, text)
    assert getattr(load_settings(), field) == value


def test_limits_at_the_edges_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSD_LIMITS", '{"otp": " 1000000 / 366d ", "notify": ["1/1s", "2/1m", "3/1h"]}')
    limits = load_settings().limits
    assert limits["otp"] == (LimitRule(1_000_000, 366 * 86400),)
    assert limits["notify"] == (LimitRule(1, 1), LimitRule(2, 60), LimitRule(3, 3600))


@pytest.mark.parametrize(
    "text", ["{code:d}", "{code!s}", "{}", "{0}", "{a.b}", "{a[0]}", "{", "}", "{code:{x}}"]
)
def test_placeholders_accept_only_plain_names(text: str) -> None:
    with pytest.raises(TemplateError):
        placeholders(text)


def test_placeholders_of_a_plain_text_in_order_and_literal_braces_kept() -> None:
    assert placeholders("{{x}} {name}您好，{amount}元，{name}") == ("name", "amount")
