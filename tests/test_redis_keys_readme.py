"""README's "Redis keys" lists every key ``worker/store/keys.py`` builds, and no key it does not: a key
added to ``Keys`` without its row here fails, naming it. Placeholders are compared by position only
(``smsd:msg:<id>:r`` in README matches ``Keys.recipients(message_id)``)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from worker.store.keys import PREFIX, Keys

README = Path(__file__).resolve().parent.parent / "README.md"
_PLACEHOLDER = re.compile(r"<[^<>]*>")


def _shape(key: str) -> str:
    return _PLACEHOLDER.sub("<>", key)


def built_keys() -> set[str]:
    """Every key ``Keys`` builds (constants as they are, builders with ``<parameter>`` placeholders)."""
    keys: set[str] = set()
    for value in vars(Keys).values():
        if isinstance(value, str) and value.startswith(f"{PREFIX}:"):
            keys.add(value)
        elif isinstance(value, staticmethod):
            params = inspect.signature(value.__func__).parameters
            keys.add(value.__func__(*(f"<{param}>" for param in params)))
    return keys


def readme_keys() -> set[str]:
    """The keys named in code spans of README's "Redis keys" section."""
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Redis keys\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end > 0 else len(text)]
    return {span.replace("\\|", "|") for span in re.findall(r"`(smsd:[^`]+)`", section)}


def test_every_key_is_in_readme() -> None:
    documented = {_shape(key) for key in readme_keys()}
    missing = sorted(key for key in built_keys() if _shape(key) not in documented)
    assert not missing, f'add to README "Redis keys": {", ".join(missing)}'


def test_readme_names_no_key_that_is_not_built() -> None:
    built = {_shape(key) for key in built_keys()}
    unknown = sorted(key for key in readme_keys() if _shape(key) not in built)
    assert not unknown, f'README "Redis keys" names keys nothing builds: {", ".join(unknown)}'


def test_the_shapes_tell_keys_apart() -> None:
    """The comparison is not so loose that a key would match another's row."""
    shapes = [_shape(key) for key in built_keys()]
    assert len(set(shapes)) == len(shapes)
    assert _shape(Keys.recipients("<message_id>")) == "smsd:msg:<>:r"
