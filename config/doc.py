"""README's settings table, made from the settings model so that it cannot go stale.

    uv run python -m config.doc            # print the table (markdown)
    uv run python -m config.doc --write    # put it in README.md, between the settings markers
    uv run python -m config.doc --check    # say which settings README lacks or shows stale; exit 1 if any

Every setting of ``Settings`` is a row: its environment variable (``SMSD_X``, ``SMSD_SECTION__FIELD``,
``SMSD_<VENDOR>__FIELD``), its TOML key, its type with its bounds, its default (as the model makes it,
with no environment and no TOML file) and its meaning (the field's ``description``). The vendors are the
built-in ones (``providers.vendors.BUILTIN``), so a plug-in in ``SMSD_VENDOR_MODULES`` leaves README as it
is. ``tests/test_settings_readme.py`` fails when README's table is not this one, naming what is missing
or stale: whoever adds a setting adds a description and runs ``--write``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from config.limits import LimitRule
from config.sections import MAX_TTL_S, VendorSettings
from config.settings import KINDS, SettingsBase, settings_model
from providers.vendors import BUILTIN, PLUGIN_ENV, load

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN = "<!-- settings:begin: made by `uv run python -m config.doc --write`; do not edit by hand -->"
END = "<!-- settings:end -->"
HEADER = "| environment | TOML | type | default | meaning |\n|---|---|---|---|---|"
NONE = "—"  # a cell with nothing to say (a setting with no environment variable of its own)
_CELL = re.compile(r"(?<!\\)\|")
ENV_ONLY = frozenset({"config"})  # read from the environment to find the TOML file: no TOML key
_UNITS = ((86400, "d"), (3600, "h"), (60, "min"))
_SIZES = ((1024**3, "GiB"), (1024**2, "MiB"))


@dataclass(frozen=True, slots=True)
class Row:
    env: str
    toml: str
    type: str
    default: str
    meaning: str

    @property
    def name(self) -> str:
        """How a reader looks the setting up: its variable, or its TOML key when it has none."""
        return self.env if self.env != NONE else self.toml

    def markdown(self) -> str:
        cells = [_code(self.env), _code(self.toml), self.type, self.default, self.meaning]
        return "| " + " | ".join(_escape(cell) for cell in cells) + " |"


@dataclass(frozen=True, slots=True)
class Table:
    title: str
    rows: tuple[Row, ...]

    def markdown(self) -> str:
        return "\n".join([self.title, "", HEADER, *(row.markdown() for row in self.rows)])


def tables() -> list[Table]:
    """Every setting of the built-in vendors' ``Settings``, grouped as README shows them."""
    vendors, _ = load(BUILTIN)
    model = settings_model(vendors)
    defaults = _defaults(model)
    top: list[Row] = []
    sections: list[Table] = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if name in model.vendor_names:
            continue
        if _is_model(annotation):
            section = getattr(defaults, name)
            title = f"**`[{name}]`** ({_code('SMSD_' + name.upper() + '__*')}): {_first_line(annotation)}"
            sections.append(Table(title, tuple(_model_rows(type(section), section, [name]))))
        elif get_origin(annotation) is dict:
            sections.append(_dict_table(name, info, getattr(defaults, name)))
        else:
            top.append(_row([name], info, getattr(defaults, name)))
    top.append(
        Row(
            PLUGIN_ENV,
            NONE,
            "list of modules, comma-separated",
            "unset",
            "extra vendor modules to register (README \"Adding a vendor\"); environment only, read at import",
        )
    )
    first = Table("**Top level** (`SMSD_<NAME>`, top-level TOML keys)", tuple(top))
    return [first, *sections, *_vendor_tables(model, defaults)]


def markdown() -> str:
    """The whole block README holds between its markers (the markers included)."""
    return "\n\n".join([BEGIN, *(table.markdown() for table in tables()), END])


def rows() -> list[Row]:
    return [row for table in tables() for row in table.rows]


def problems(readme: str) -> list[str]:
    """What README's settings table lacks or shows stale, one line each; empty when it is current."""
    block = _block(readme)
    if block is None:
        return [f"README has no settings table: put {BEGIN!r} and {END!r} where it goes, then --write"]
    shown = {row.name: row for row in _parse(block)}
    expected = rows()
    out = []
    for row in expected:
        old = shown.get(row.name)
        if old is None:
            out.append(f"{row.name}: missing from README")
        elif old.default != row.default:
            out.append(f"{row.name}: README says the default is {old.default}, the model {row.default}")
    known = {row.name for row in expected}
    out += [f"{name}: in README, but there is no such setting" for name in shown if name not in known]
    if not out and block != markdown():
        out.append("README's settings table differs from the model's (a type, meaning or order changed)")
    return out


def write(path: Path = README) -> bool:
    """Put the table in ``path`` between the markers. Returns whether the file changed."""
    text = path.read_text(encoding="utf-8")
    block = _block(text)
    if block is None:
        raise ValueError(f"{path}: no settings markers: put {BEGIN!r} and {END!r} where the table goes")
    new = text.replace(block, markdown(), 1)
    if new == text:
        return False
    path.write_text(new, encoding="utf-8")
    return True


# -- rows ---------------------------------------------------------------------------------------------


def _defaults(model: type[SettingsBase]) -> SettingsBase:
    """``model`` as made from nothing: no environment, no TOML file (its validators fill in the rest,
    e.g. every registered vendor in each kind's route)."""

    class Defaults(model):  # type: ignore[valid-type,misc]
        @classmethod
        def settings_customise_sources(
            cls, settings_cls: Any, init_settings: Any, **_: Any
        ) -> tuple[Any, ...]:
            return (init_settings,)

    return Defaults()


def _row(path: Sequence[str], info: FieldInfo, default: Any, *, env: bool = True) -> Row:
    """One setting's row. A vendor section's field that overrides a common one without a description
    of its own (``base_url: str = "https://..."``) takes the common one's."""
    common = VendorSettings.model_fields.get(path[-1])
    return Row(
        _env(path) if env else NONE,
        NONE if list(path) in ([name] for name in ENV_ONLY) else ".".join(path),
        _type(info.annotation, info.metadata),
        _default(path[-1], default),
        info.description or (common.description if common is not None and len(path) == 2 else None) or "",
    )


def _model_rows(model: type[BaseModel], values: BaseModel | None, path: list[str]) -> Iterator[Row]:
    """A row per field of ``model`` under ``path``; a list of tables (``[[api.keys]]``) gets a row, then
    one per field of its items, which only the list's JSON (environment) or its tables (TOML) can set."""
    for name, info in model.model_fields.items():
        default = getattr(values, name) if values is not None else _field_default(info)
        item = _list_item(info.annotation)
        yield _row([*path, name], info, default)
        if item is not None:
            for sub, sub_info in item.model_fields.items():
                row = _row([*path, name, sub], sub_info, _field_default(sub_info), env=False)
                yield Row(row.env, f"[[{'.'.join([*path, name])}]] {sub}", row.type, row.default, row.meaning)


def _dict_table(name: str, info: FieldInfo, value: Mapping[str, Any]) -> Table:
    """``limits`` and ``routing``: a row per kind; ``templates``: the fields of one named template."""
    _, item = get_args(info.annotation)
    if _is_model(item):
        title = f"**`[{name}.<name>]`** ({_code(_env([name, '<NAME>', '*']))}): {info.description or ''}"
        return Table(title, tuple(_model_rows(item, None, [name, "<name>"])))
    title = f"**`[{name}]`** ({_code(_env([name, '*']))}): {info.description or ''}"
    bare = FieldInfo.from_annotation(item)
    per_kind = [_row([name, kind], bare, value[kind]) for kind in KINDS]
    return Table(title, tuple(Row(r.env, r.toml, r.type, r.default, f"{kind} messages") for r, kind in
                              zip(per_kind, KINDS, strict=True)))


def _vendor_tables(model: type[SettingsBase], defaults: SettingsBase) -> list[Table]:
    """Fields every vendor has, with each vendor's own default where it differs; then each vendor's own
    fields (credentials, its API root)."""
    names = model.vendor_names
    common = [name for name, info in VendorSettings.model_fields.items() if not info.is_required()]
    rows = []
    for field in common:
        base = VendorSettings.model_fields[field]
        base_bounds = _bounds(base.metadata)
        notes = []
        for vendor in names:
            info = type(getattr(defaults, vendor)).model_fields[field]
            value = _default(field, getattr(getattr(defaults, vendor), field))
            bounds = _bounds(info.metadata)
            note = [value] if value != _default(field, base.default) else []
            note += [f"({bounds})"] if bounds != base_bounds else []
            if note:
                notes.append(" ".join([vendor, *note]))
        row = _row(["<vendor>", field], base, base.default)
        default = "; ".join([row.default, *notes])
        rows.append(Row(_env(["<VENDOR>", field]), row.toml, row.type, default, row.meaning))
    listed = ", ".join(f"`[{name}]`" for name in names)
    tables = [Table(f"**Every vendor** ({listed}; `SMSD_<VENDOR>__*`)", tuple(rows))]
    for vendor in names:
        section = getattr(defaults, vendor)
        own = [
            _row([vendor, name], info, getattr(section, name))
            for name, info in type(section).model_fields.items()
            if name not in common
        ]
        tables.append(Table(f"**`[{vendor}]`** (`SMSD_{vendor.upper()}__*`), besides the above", tuple(own)))
    return tables


# -- cells --------------------------------------------------------------------------------------------


def _env(path: Sequence[str]) -> str:
    return "SMSD_" + "__".join(path).upper()


def _code(text: str) -> str:
    return text if text == NONE else f"`{text}`"


def _escape(cell: str) -> str:
    """A table cell: ``|`` escaped, and ``<`` outside code spans too (``<vendor>`` is no HTML tag)."""
    spans = cell.replace("|", "\\|").split("`")
    return "`".join(span if i % 2 else span.replace("<", "&lt;") for i, span in enumerate(spans))


def _first_line(model: Any) -> str:
    """The first sentence of a section's docstring: what the section is about."""
    doc = " ".join((model.__doc__ or "").split())
    return doc.split(". ")[0].rstrip(".").replace("``", "`")


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _list_item(annotation: Any) -> type[BaseModel] | None:
    """The model of a ``tuple[Model, ...]`` field's items, else None."""
    if get_origin(annotation) is tuple:
        args = get_args(annotation)
        if args and _is_model(args[0]):
            return args[0]  # type: ignore[no-any-return]
    return None


def _field_default(info: FieldInfo) -> Any:
    if info.is_required():
        return PydanticUndefined
    return info.get_default(call_default_factory=True)


def _type(annotation: Any, metadata: Sequence[Any] = ()) -> str:
    """The type as a reader needs it, with its bounds: ``int 1–1000``, ``float >0–600``, ``secret``."""
    return f"{_word(annotation)} {_bounds(metadata)}".strip()


def _bounds(metadata: Sequence[Any]) -> str:
    """``1–1000``, ``>0–600``, ``≥0``, ``1–64 chars``, or ``""``; the largest TTL Redis takes is no bound
    worth showing."""
    low = high = ""
    for item in metadata:
        if isinstance(item, Ge | MinLen):
            low = _number(item.ge if isinstance(item, Ge) else item.min_length)
        elif isinstance(item, Gt):
            low = ">" + _number(item.gt)
        elif isinstance(item, Le | MaxLen):
            bound = item.le if isinstance(item, Le) else item.max_length
            high = "" if bound == MAX_TTL_S else _number(bound)
        elif isinstance(item, Lt):
            high = "<" + _number(item.lt)
    if low and high:
        bounds = f"{low}–{high}"
    elif low:
        bounds = low if low.startswith(">") else f"≥{low}"
    else:
        bounds = f"≤{high}" if high else ""
    if bounds and any(isinstance(item, MinLen | MaxLen) for item in metadata):
        bounds += " chars"
    return bounds


def _word(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _word(args[0])
    if origin in (Union, types.UnionType):
        kept = [arg for arg in args if arg is not type(None)]
        return " or ".join(_word(arg) for arg in kept)
    if origin is Literal:
        return "one of " + ", ".join(str(arg) for arg in args)
    if origin is tuple:
        return "list of " + _word(args[0])
    if origin is dict:
        return "table"
    if annotation is SecretStr:
        return "secret"
    if annotation is LimitRule:
        return "COUNT/WINDOW (5/1h)"
    if _is_model(annotation):
        return "{" + ", ".join(annotation.model_fields) + "}"
    if annotation is Path:
        return "path"
    return getattr(annotation, "__name__", str(annotation))


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _default(name: str, value: Any) -> str:
    """The default as one would write it in the environment (JSON for lists), with a reading of long
    durations and sizes: ``604800`` (7 d)."""
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int | float):
        return f"`{_number(value)}`" + _reading(name, value)
    if isinstance(value, tuple | list):
        items = [str(item) if isinstance(item, LimitRule) else _plain(item) for item in value]
        return f"`{json.dumps(items, ensure_ascii=False, separators=(',', ':'))}`"
    return f"`{json.dumps(_plain(value), ensure_ascii=False)}`"


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value if isinstance(value, str | int | float | bool) else str(value)


def _reading(name: str, value: float) -> str:
    if name.endswith("_bytes"):
        for size, unit in _SIZES:
            if value >= size and value % size == 0:
                return f" ({_number(value / size)} {unit})"
    if name.endswith("_s") and value >= 60:
        for size, unit in _UNITS:
            if value % size == 0:
                return f" ({_number(value / size)} {unit})"
    return ""


# -- README ---------------------------------------------------------------------------------------------


def _block(text: str) -> str | None:
    """README's block from its begin marker to its end marker, both included; None without them."""
    start = text.find(BEGIN)
    end = text.find(END, start + 1) if start >= 0 else -1
    return text[start : end + len(END)] if start >= 0 and end >= 0 else None


def _parse(block: str) -> Iterator[Row]:
    for line in block.splitlines():
        if not line.startswith("| ") or line.startswith(("| environment", "|---")):
            continue
        cells = [cell.strip().replace("\\|", "|") for cell in _CELL.split(line.strip())[1:-1]]
        if len(cells) == 5:
            env, toml = (cell.strip("`") for cell in cells[:2])
            yield Row(env, toml, cells[2], cells[3], cells[4])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m config.doc", description=__doc__.split("\n")[0])
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--write", action="store_true", help="put the table in README between its markers")
    what.add_argument("--check", action="store_true", help="exit 1 naming what README lacks or shows stale")
    parser.add_argument("--readme", type=Path, default=README, help="the README to write or check")
    args = parser.parse_args(argv)
    if not (args.write or args.check):
        print(markdown())
        return 0
    try:
        if args.write:
            print(f"{args.readme}: settings table {'written' if write(args.readme) else 'already current'}")
            return 0
        found = problems(args.readme.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in found:
        print(line)
    if found:
        print("run `uv run python -m config.doc --write` (after describing any new setting)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
