"""The README's runnable examples: a ```python block right after ``<!-- example: NAME -->``, executed by
the tests as written, so what an application copies is what the suite ran."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

README = Path(__file__).resolve().parent.parent / "README.md"


def example_source(name: str) -> str:
    """The code of the README's example ``name``."""
    pattern = rf"<!-- example: {re.escape(name)} -->\s*```python\n(.*?)```"
    match = re.search(pattern, README.read_text(encoding="utf-8"), re.DOTALL)
    if match is None:
        raise LookupError(f"README.md has no example {name!r}")
    return match.group(1)


def load_example(name: str) -> ModuleType:
    """The README's example ``name`` run as a module of its own."""
    module = ModuleType(f"readme_{name.replace('-', '_')}")
    exec(compile(example_source(name), f"README.md:{name}", "exec"), module.__dict__)
    return module
