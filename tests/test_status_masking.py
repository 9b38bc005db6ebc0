"""``smsdispatch status --recipients`` and the logs mask every number, international ones included."""

from __future__ import annotations

from click.testing import CliRunner

from worker.cli import main
from worker.store import Store


def test_status_masks_international_numbers_keeping_the_country_code(r, settings) -> None:  # type: ignore[no-untyped-def]
    store = Store(r, settings)
    store.create_message("m-intl", {"kind": "notify", "template": "login_code", "recipients": 3, "chunks": 0})
    store.reject(
        "m-intl",
        [("+85291234567", "no route"), ("+447911123456", "no route"), ("13800138000", "no route")],
        code="NO_ROUTE",
    )
    out = CliRunner().invoke(main, ["status", "m-intl", "--recipients"])
    assert out.exit_code == 0, out.output
    assert "+852****4567" in out.output and "+44******3456" in out.output and "138****8000" in out.output
    for whole in ("85291234567", "447911123456", "13800138000"):
        assert whole not in out.output


def test_logs_mask_international_numbers_too(capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    import structlog

    from worker.logging import configure

    configure("INFO", json=True)
    structlog.get_logger("t").info("sent to +85291234567", phones=["+447911123456", "0085291234567"])
    (line,) = [json.loads(text) for text in capsys.readouterr().err.splitlines()]
    assert line["event"] == "sent to +852****4567"
    assert line["phones"] == ["+44******3456", "00852****4567"]
