"""Property tests for settings: random values for random known settings, in the environment or a TOML
file, either load into settings that work or are refused with ``SettingsError``, never a traceback.

The strategies live in ``tests/strategies_settings.py`` (the reliability script draws them 10,000 times).
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from tests.strategies_settings import ACCEPTED, REFUSED, SettingsCase, check_case, env_cases, toml_cases

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(env_cases())
def test_any_environment_loads_or_is_refused_naming_the_setting(case: SettingsCase) -> None:
    assert check_case(case) in (ACCEPTED, REFUSED)


@FAST
@given(toml_cases())
def test_any_toml_file_loads_or_is_refused(case: SettingsCase) -> None:
    assert check_case(case) in (ACCEPTED, REFUSED)
