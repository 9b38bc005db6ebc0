"""A vendor is registered once: a sixth vendor (``tests/dummy_vendor.py``) plugs in through
``SMSD_VENDOR_MODULES`` without a shared file being edited, and settings, templates, routing, the
simulator, the contract suite and a real send all know it.

The registry is read at import, so the end-to-end part runs in a fresh pytest process started with the
variable set (``tests/dummy_vendor_checks.py`` and the contract suite's dummy cases); the parts that can
be built for any set of vendors (the loader, the settings model) are checked here in-process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from config.settings import PROVIDERS, settings_model
from providers.vendors import BUILTIN, VENDORS, load, plugin_modules
from tests.dummy_vendor import VENDOR as DUMMY
from tests.dummy_vendor import DummySettings

ROOT = Path(__file__).resolve().parent.parent


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ``SMSD_*`` (a session's test settings), plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("SMSD_")}, **extra}


# -- the loader ------------------------------------------------------------------------------------------


def test_the_builtin_vendors_are_listed_once_and_registered_in_that_order() -> None:
    assert tuple(VENDORS) == PROVIDERS == tuple(module.rsplit(".", 1)[1] for module in BUILTIN)
    modules = plugin_modules({"SMSD_VENDOR_MODULES": " tests.dummy_vendor, ,x.y "})
    assert modules == ("tests.dummy_vendor", "x.y")


def test_a_plugin_module_is_loaded_after_the_builtin_ones() -> None:
    vendors, errors = load((*BUILTIN, "tests.dummy_vendor"))
    assert errors == []
    assert tuple(vendors) == (*PROVIDERS, "dummy") and vendors["dummy"] is DUMMY


@pytest.mark.parametrize(
    ("modules", "problem"),
    [
        (("tests.no_such_vendor",), "tests.no_such_vendor: cannot import it"),
        (("json",), "json: has no VENDOR = VendorDescriptor(...)"),
        (("tests.dummy_vendor", "tests.dummy_vendor"), "vendor 'dummy' is registered twice"),
    ],
)
def test_a_module_that_cannot_be_registered_is_named(modules: tuple[str, ...], problem: str) -> None:
    vendors, errors = load(modules)
    assert len(errors) == 1 and problem in errors[0]
    assert "json" not in vendors and "tests.no_such_vendor" not in vendors


def test_a_descriptor_that_contradicts_its_adapter_is_refused() -> None:
    from dataclasses import replace

    bad = replace(DUMMY, name="Dummy", demo_credentials={"tokn": "x"})
    assert bad.problems == (
        "name 'Dummy' is not a lowercase identifier",
        "DummyProvider.name is 'dummy', not 'Dummy'",
        "demo_credentials name unknown fields: tokn",
    )


# -- what derives from the descriptor, for any set of vendors --------------------------------------------


def test_a_settings_model_with_the_plugin_has_its_section_template_entry_and_route(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = settings_model({**VENDORS, "dummy": DUMMY})
    toml = tmp_path / "smsd.toml"
    toml.write_text(
        '[dummy]\nbatch_size = 4\n[templates.code]\ntext = "码{code}"\ndummy = "D1"\n', encoding="utf-8"
    )
    for key in [key for key in os.environ if key.startswith("SMSD_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("SMSD_CONFIG", str(toml))
    monkeypatch.setenv("SMSD_DUMMY__TOKEN", "t0ken")

    settings = model()

    section = settings.vendor("dummy", DummySettings)
    assert (section.token.get_secret_value(), section.batch_size) == ("t0ken", 4)
    rendered = settings.templates["code"].render("code", "dummy", {"code": "1"})
    assert (rendered.vendor_template, rendered.params) == ("D1", ("1",))
    assert settings.routing["otp"] == (*PROVIDERS, "dummy")


def test_the_builtin_settings_know_no_dummy() -> None:
    settings = settings_model(VENDORS)()
    with pytest.raises(KeyError, match="unknown vendor 'dummy'"):
        settings.vendor("dummy")
    with pytest.raises(TypeError, match="not a DummySettings"):
        settings.vendor("infocloud", DummySettings)


def test_a_vendor_named_like_a_setting_is_refused() -> None:
    from dataclasses import replace

    with pytest.raises(ValueError, match=r"vendor names \['retry'\] are taken"):
        settings_model({"retry": replace(DUMMY, name="retry")})


# -- across processes ------------------------------------------------------------------------------------


def test_a_bad_plugin_module_is_a_settings_error_naming_the_variable() -> None:
    code = "from config.settings import load_settings\nload_settings()"
    env = clean_env(SMSD_VENDOR_MODULES="tests.no_such_vendor")
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("config.settings.SettingsError: SMSD_VENDOR_MODULES: tests.no_such_vendor: cannot")


@pytest.mark.e2e
def test_the_plugged_in_vendor_runs_the_contract_suite_and_a_send_end_to_end(tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        f"--junitxml={report}",
        "-k",
        "dummy",
        "tests/dummy_vendor_checks.py",
        "tests/providers/test_contract.py",
    ]
    env = clean_env(SMSD_VENDOR_MODULES="tests.dummy_vendor")
    done = subprocess.run(cmd, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    cases = ET.parse(report).getroot().iter("testcase")
    ran = {(case.get("classname", "").rsplit(".", 1)[-1], case.get("name", "")): case for case in cases}
    passed = {key for key, case in ran.items() if not list(case)}  # no <failure>, <error> or <skipped>
    assert {name for (module, name) in passed if module == "dummy_vendor_checks"} >= {
        "test_it_gets_a_template_entry_and_a_route",
        "test_the_simulator_mounts_it",
        "test_a_send_goes_through_it_end_to_end",
    }
    contract = {name for (cls, name) in passed if cls == "TestProviderContract"}
    assert "test_a_full_batch_is_accepted_phone_by_phone[dummy]" in contract
    assert "test_a_bad_number_inside_an_accepted_batch_fails_alone[dummy]" in contract
    assert len(contract) >= 15
