"""README's settings table is the settings model's (``config/doc.py``), so it cannot go stale: a setting
added without its row, a default changed without README, or a field without a description fails here,
naming the setting. The fix is always the same: describe the field, run ``uv run python -m config.doc
--write``, commit README."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from config import doc
from config.settings import settings_model
from providers.vendors import BUILTIN, load

README = Path(__file__).resolve().parent.parent / "README.md"
FIX = "describe any new setting (Field(description=...)), then run `uv run python -m config.doc --write`"


def test_readme_shows_every_setting_with_its_current_default() -> None:
    found = doc.problems(README.read_text(encoding="utf-8"))
    assert not found, "\n".join([*found, FIX])


def test_every_setting_has_a_meaning() -> None:
    undescribed = [row.name for row in doc.rows() if not row.meaning]
    assert not undescribed, f"no description: {', '.join(undescribed)}; {FIX}"


def _leaves(model: type[BaseModel], path: list[str]) -> Iterator[list[str]]:
    """Every field that is not itself a section, walked without config.doc's help."""
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _leaves(annotation, [*path, name])
        else:
            yield [*path, name]


def test_every_field_of_the_model_has_a_row() -> None:
    """Guards the generator itself: a new kind of field it does not know must not be skipped."""
    vendors, _ = load(BUILTIN)
    envs = [row.env for row in doc.rows()]
    missing = []
    for path in _leaves(settings_model(vendors), []):
        names = ["SMSD_" + "__".join(path).upper()]
        if path[0] in vendors:
            names.append("SMSD_<VENDOR>__" + path[-1].upper())
        if not any(env in names or env.startswith(names[0] + "__") for env in envs):
            missing.append(".".join(path))
    assert not missing, f"config.doc makes no row for {', '.join(missing)}"


def _edited(block: str, drop: str, stale: str) -> str:
    """``block`` without the row of ``drop`` and with the default of ``stale`` changed to ``1``."""
    lines = []
    for line in block.splitlines():
        if line.startswith(f"| `{drop}` |"):
            continue
        cells = line.split(" | ")
        if line.startswith(f"| `{stale}` |"):
            cells[3] = "`1`"
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def test_a_missing_row_and_a_stale_default_are_named() -> None:
    readme = "# smsdispatch\n\n" + _edited(doc.markdown(), "SMSD_UNHEALTHY_S", "SMSD_RETENTION_S") + "\n"
    found = doc.problems(readme)
    assert "SMSD_UNHEALTHY_S: missing from README" in found
    assert "SMSD_RETENTION_S: README says the default is `1`, the model `604800` (7 d)" in found


def test_a_row_for_no_setting_and_a_changed_meaning_are_found() -> None:
    block = doc.markdown()
    gone = block.replace(doc.END, "| `SMSD_GONE` | `gone` | int | `1` | removed long ago |\n\n" + doc.END)
    assert doc.problems(gone) == ["SMSD_GONE: in README, but there is no such setting"]
    reworded = block.replace("how long recipient state is kept", "how long state lives")
    assert len(doc.problems(reworded)) == 1


def test_write_puts_the_table_between_the_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    old = f"{doc.BEGIN}\n| `SMSD_OLD` | old |\n{doc.END}"
    readme.write_text(f"# before\n\n{old}\n\nafter\n", encoding="utf-8")
    assert doc.write(readme)
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# before\n\n") and text.endswith("\n\nafter\n")
    assert doc.problems(text) == []
    assert not doc.write(readme)


def test_the_command_names_each_problem_in_one_line(tmp_path: Path, capsys: object) -> None:
    bare = tmp_path / "README.md"
    bare.write_text("# no table here\n", encoding="utf-8")
    assert doc.main(["--check", "--readme", str(bare)]) == 1
    assert doc.main(["--write", "--readme", str(bare)]) == 2
    assert doc.main(["--check", "--readme", str(tmp_path / "missing.md")]) == 2
    out, err = capsys.readouterr()  # type: ignore[attr-defined]
    assert "README has no settings table" in out
    assert err.count("\n") == 2 and "Traceback" not in err
