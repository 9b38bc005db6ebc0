"""Hypothesis strategies for settings: random values for random known settings, from the environment
(``SMSD_*``) or a TOML file, and the check that says what ``load_settings`` did with one case.

Shared by the property tests (``tests/test_settings_properties.py``) and the reliability script
(``reliability/fuzz.py`` through :func:`fuzz_targets`). A case is *refused* when ``load_settings`` raises
``SettingsError``, *accepted* when it returns settings that the rest of the system can use (finite floats,
TTLs Redis takes, limits, routes and templates that work, a Redis URL and vendor URLs that parse); anything
else (another exception, or accepted settings that would fail at run time) escapes :func:`check_case`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from pydantic import BaseModel

ACCEPTED = "accepted"
REFUSED = "refused"
KINDS = ("otp", "notify", "marketing")
UNITS = ("s", "m", "h", "d", "w", "")
NASTY = (
    "",
    " ",
    "0",
    "-1",
    "1",
    "-0",
    "0.0",
    "1e3",
    "1e309",
    "-1e309",
    "inf",
    "-inf",
    "Infinity",
    "nan",
    "NaN",
    "2147483647",
    "2147483648",
    "9" * 40,
    "0x10",
    "1_000",
    "１２",
    "٣",
    "true",
    "false",
    "yes",
    "null",
    "None",
    "[]",
    "{}",
    "[1]",
    '{"a": 1}',
    '["x"]',
    '{"otp": 5}',
    '{"otp": []}',
    '{"otp": ["acme"]}',
    "[" * 80,
    "{" * 80,
    '"' + "[" * 40,
    "localhost:6379",
    "redis://",
    "redis://localhost:99999/0",
    "unix://",
    "redis://h:6379/x",
    "http://",
    "https://",
    "http://exa mple.com",
    "http://h:0",
    "ftp://h",
    "{code:d}",
    "{code!r}",
    "{}",
    "{0}",
    "{a.b}",
    "{a[0]}",
    "{",
    "}",
    "1/99999999999999d",
    "1/0s",
    "0/1s",
    "5/1w",
    "debug",
    "TRACE",
    "\t\n",
    "é",
    "%s%n",
    "\\",
    "'",
    '"',
    "\u202e",
    "😀",
    "a" * 3000,
)


@dataclass(frozen=True)
class SettingsCase:
    """Environment variables and an optional TOML file's text for one ``load_settings`` call."""

    env: Mapping[str, str]
    toml: str | None = None


# -- the known settings ----------------------------------------------------------------------------------


def known_paths() -> tuple[tuple[str, ...], ...]:
    """Every setting's path (``("infocloud", "read_timeout_s")``), plus the dict fields' usual keys."""
    from config.settings import Settings

    paths: list[tuple[str, ...]] = []
    for name, info in Settings.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths += [(name, field) for field in annotation.model_fields]
        paths.append((name,))
    paths += [("limits", kind) for kind in KINDS] + [("routing", kind) for kind in KINDS]
    paths += [("templates", "login_code"), ("templates", "login_code", "text")]
    paths += [("templates", "login_code", vendor) for vendor in _vendors()]
    return tuple(paths)


def _vendors() -> tuple[str, ...]:
    from config.settings import PROVIDERS

    return PROVIDERS


def env_name(path: tuple[str, ...]) -> str:
    return "SMSD_" + "__".join(path).upper()


# -- values ----------------------------------------------------------------------------------------------

_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)


def limit_rules() -> st.SearchStrategy[str]:
    """Rule-like strings: ``5/1h`` and near misses (zero, huge, unknown units, extra spaces)."""
    number = st.one_of(st.integers(0, 100), st.integers(0, 10**16), st.just(""))
    return st.builds(
        lambda count, size, unit, space: f"{count}{space}/{size}{unit}",
        number,
        number,
        st.sampled_from(UNITS),
        st.sampled_from(("", " ")),
    )


def template_texts() -> st.SearchStrategy[str]:
    pieces = st.sampled_from(
        (
            "验证码",
            "{code}",
            "{name}",
            "{code:d}",
            "{code!r}",
            "{}",
            "{0}",
            "{a.b}",
            "{a[0]}",
            "{{",
            "}}",
            "{",
            "}",
            " ",
            "%s",
        )
    )
    return st.lists(pieces, max_size=6).map("".join)


def json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        _TEXT,
        limit_rules(),
        st.sampled_from(_vendors()),
        st.sampled_from(KINDS),
        template_texts(),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(
                st.one_of(st.sampled_from((*KINDS, "text", "id", "params", *_vendors())), _TEXT),
                inner,
                max_size=4,
            ),
        ),
        max_leaves=12,
    )


def structured_values() -> st.SearchStrategy[str]:
    """JSON for the dict settings: limits, routes and templates, well-formed or nearly so."""
    limits = st.dictionaries(
        st.sampled_from((*KINDS, "sms")),
        st.one_of(st.lists(limit_rules(), max_size=3), limit_rules(), st.integers()),
        max_size=3,
    )
    routes = st.dictionaries(
        st.sampled_from((*KINDS, "sms")),
        st.lists(st.sampled_from((*_vendors(), "acme")), max_size=3),
        max_size=3,
    )
    entry = st.one_of(
        st.booleans(),
        st.integers(),
        _TEXT,
        st.fixed_dictionaries(
            {"id": st.one_of(_TEXT, st.integers())},
            optional={"params": st.lists(st.sampled_from(("code", "x")))},
        ),
    )
    template = st.fixed_dictionaries(
        {"text": template_texts()},
        optional={**{vendor: entry for vendor in _vendors()}, "max_param_chars": st.integers(-5, 10**6)},
    )
    templates = st.dictionaries(st.sampled_from(("login_code", "x", "")), template, max_size=2)
    return st.one_of(limits, routes, templates, template, json_values()).map(json.dumps)


def env_values() -> st.SearchStrategy[str]:
    """Anything an environment variable can hold (no NUL, no lone surrogate), biased to what breaks."""
    return st.one_of(
        st.sampled_from(NASTY),
        st.integers(-(2**64), 2**64).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(str),
        _TEXT,
        limit_rules(),
        template_texts(),
        structured_values(),
    )


def env_cases() -> st.SearchStrategy[SettingsCase]:
    """One to three known settings set in the environment to random values."""
    names = st.sampled_from(known_paths()).map(env_name)
    return st.dictionaries(names, env_values(), min_size=1, max_size=3).map(SettingsCase)


def toml_literals() -> st.SearchStrategy[str]:
    """TOML values: numbers (``nan``, ``inf`` included), strings, arrays, inline tables, and garbage."""
    return st.one_of(
        st.sampled_from(
            (
                "nan",
                "inf",
                "-inf",
                "+inf",
                "0",
                "-1",
                "1e309",
                "2147483648",
                "true",
                "[]",
                "{}",
                '["1/30s"]',
                '["acme"]',
                "[]",
                '{ id = "" }',
                "{ id = 5 }",
                "5",
                '"x"',
                "[[[[1]]]]",
                "[" * 2000,
                "=",
                '"\\uD800"',
                "1979-05-27",
                "'''a'''",
            )
        ),
        st.integers(-(2**70), 2**70).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(lambda x: str(x).lower()),
        st.one_of(_TEXT, template_texts(), limit_rules()).map(json.dumps),
        st.lists(limit_rules(), max_size=3).map(json.dumps),
    )


def toml_cases() -> st.SearchStrategy[SettingsCase]:
    """A TOML file of one to four ``key = value`` lines under the tables of known settings."""
    line = st.tuples(st.sampled_from(known_paths()), toml_literals())
    return st.lists(line, min_size=1, max_size=4).map(_toml_text).map(lambda text: SettingsCase({}, text))


def _toml_text(lines: list[tuple[tuple[str, ...], str]]) -> str:
    out = []
    for path, value in lines:
        table, key = path[:-1], path[-1]
        out.append((f"[{'.'.join(table)}]\n" if table else "") + f"{key} = {value}\n")
    return "".join(out)


# -- the check -------------------------------------------------------------------------------------------


def check_case(case: SettingsCase) -> str:
    """Load settings from ``case`` alone (every other ``SMSD_*`` hidden): REFUSED on SettingsError,
    ACCEPTED when the settings hold up (:func:`check_usable`); anything else propagates."""
    from config.settings import SettingsError, load_settings

    saved = {key: value for key, value in os.environ.items() if key.upper().startswith("SMSD_")}
    with tempfile.TemporaryDirectory(prefix="smsd-settings-") as tmp:
        env = dict(case.env)
        if case.toml is not None:
            path = os.path.join(tmp, "smsd.toml")
            with open(path, "w", encoding="utf-8", errors="surrogatepass") as handle:
                handle.write(case.toml)
            env["SMSD_CONFIG"] = path
        try:
            for key in saved:
                del os.environ[key]
            os.environ.update(env)
            try:
                settings = load_settings()
            except SettingsError:
                return REFUSED
        finally:
            for key in env:
                os.environ.pop(key, None)
            os.environ.update(saved)
    check_usable(settings)
    return ACCEPTED


def check_usable(settings: Any) -> None:
    """AssertionError (or the library's own error) if accepted ``settings`` would fail at run time."""
    import httpx
    from redis.connection import parse_url

    from config.limits import MAX_COUNT, MAX_WINDOW_S
    from config.sections import MAX_TTL_S
    from config.settings import LOG_LEVELS, PROVIDERS

    for path, value in _leaves(settings):
        if isinstance(value, float):
            assert math.isfinite(value), path
        if isinstance(value, int) and not isinstance(value, bool) and path[-1].endswith("_s"):
            assert 0 < value <= MAX_TTL_S, path
    assert settings.log_level in LOG_LEVELS
    parse_url(settings.effective_redis_url)
    for name in PROVIDERS:
        httpx.Request("POST", settings.vendor(name).base_url + "/send")
    for kind in KINDS:
        rules = settings.limits[kind]
        assert rules and len({rule.window_s for rule in rules}) == len(rules), kind
        assert all(0 < rule.count <= MAX_COUNT and 0 < rule.window_s <= MAX_WINDOW_S for rule in rules)
        assert settings.routing[kind] and set(settings.routing[kind]) <= set(PROVIDERS), kind
    for name, template in settings.templates.items():
        params = dict.fromkeys(template.names, "1")
        for vendor in PROVIDERS:
            if template.supports(vendor):
                template.render(name, vendor, params)


def _leaves(model: BaseModel, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from _leaves(value, (*path, name))
        else:
            yield (*path, name), value


def fuzz_targets() -> Iterator[tuple[str, tuple[st.SearchStrategy[Any], Any]]]:
    """The reliability script's settings targets: environment and TOML file."""
    yield "settings (environment)", (env_cases(), check_case)
    yield "settings (TOML file)", (toml_cases(), check_case)
