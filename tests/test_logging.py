"""Logs are structured, phones masked, secrets never written."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from worker.logging import configure


def test_phones_are_masked_and_secrets_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    configure("INFO", json=True)
    structlog.get_logger("t").info(
        "sent to 13800138000",
        phones=["+8613912345678"],
        access_key="s3cret",
        x_sign="abc",
        provider="infocloud",
    )
    logging.getLogger("celery").warning("task for 13700000000 failed")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["event"] == "sent to 138****8000"
    assert lines[0]["phones"] == ["+86139****5678"]
    assert lines[0]["access_key"] == "[redacted]" and lines[0]["x_sign"] == "[redacted]"
    assert lines[0]["provider"] == "infocloud" and lines[0]["level"] == "info"
    assert lines[1]["event"] == "task for 137****0000 failed"
    assert "s3cret" not in json.dumps(lines)


def test_secret_settings_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    from config.settings import load_settings

    monkeypatch.setenv("SMSD_INFOCLOUD__ACCESS_KEY", "very-secret-access-key")
    settings = load_settings()
    assert "very-secret-access-key" not in repr(settings) + str(settings.infocloud)
    assert settings.infocloud.access_key.get_secret_value() == "very-secret-access-key"
