"""Settings: environment over the TOML file, and a bad setting named at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.limits import LimitRule
from config.settings import SettingsError, load_settings


def test_toml_supplies_templates_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tmp_path / "smsd.toml"
    toml.write_text(
        '[templates.login_code]\ntext = "验证码{code}"\ninfocloud = "675871161745170000"\n'
        '[infocloud]\nsign_method = "HmacMD5"\nrequests_per_second = 100\n'
        '[limits]\notp = ["2/1m"]\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("SMSD_CONFIG", str(toml))
    monkeypatch.setenv("SMSD_INFOCLOUD__REQUESTS_PER_SECOND", "250")
    settings = load_settings()
    assert settings.templates["login_code"].infocloud.id == "675871161745170000"  # type: ignore[union-attr]
    assert settings.infocloud.sign_method == "HmacMD5"
    assert settings.infocloud.requests_per_second == 250
    assert settings.limits["otp"] == (LimitRule(2, 60),)
    assert settings.limits["notify"] == (LimitRule(1, 1), LimitRule(20, 86400))  # defaults kept


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SMSD_INFOCLOUD__SIGN_METHOD": "HmacFoo"}, "SMSD_INFOCLOUD__SIGN_METHOD"),
        ({"SMSD_INFOCLOUD__BATCH_SIZE": "5000"}, "SMSD_INFOCLOUD__BATCH_SIZE"),
        ({"SMSD_INFOCLOUD__BASE_URL": "opassapi.infocloud.cc"}, "SMSD_INFOCLOUD__BASE_URL"),
        ({"SMSD_ROUTING": '{"otp": ["acme"]}'}, "unknown provider 'acme'"),
        ({"SMSD_LIMITS": '{"otp": ["often"]}'}, "'often' is not of the form COUNT/WINDOW"),
        ({"SMSD_RETENTION_S": "-1"}, "SMSD_RETENTION_S"),
        ({"SMSD_CONFIG": "/nonexistent/smsd.toml"}, "SMSD_CONFIG: no such file"),
    ],
)
def test_a_bad_setting_fails_with_its_name(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError, match=named.replace("(", r"\(")):
        load_settings()


def test_a_template_whose_vendor_order_names_unknown_params_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tmp_path / "smsd.toml"
    toml.write_text(
        '[templates.x]\ntext = "码{code}"\ntencent = { id = "1", params = ["cod"] }\n', encoding="utf-8"
    )
    monkeypatch.setenv("SMSD_CONFIG", str(toml))
    with pytest.raises(SettingsError, match=r"SMSD_TEMPLATES__X: .*tencent.params names \['cod'\]"):
        load_settings()
