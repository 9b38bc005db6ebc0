"""Reading a campaign's recipient file: rows of a phone and its own parameters, one at a time.

Two formats: CSV (a header with a ``phone`` column, also spelled ``mobile``, ``手机``, ``手机号`` or
``手机号码``, and one column per template parameter; commas, or tabs when the header has no comma) and
JSONL (one object a line: ``{"phone": ..., "params": {...}}`` or flat ``{"phone": ..., "<param>": ...}``).
The format comes from the name (``.csv``, ``.tsv``, ``.txt``; ``.jsonl``, ``.ndjson``), else from the
first line.

Encodings: UTF-8 with or without a BOM, and GBK/GB18030 as Excel in China saves CSV, or the one named.
Undetected, the file is read as ASCII until its first line that is not; that line decides (UTF-8 if it
decodes, else GB18030), so a file whose Chinese starts on line 50,000 is still read right.

Lines end in LF, CRLF or (Excel for old Macs) CR alone. The file is read in blocks of 64 KB and never
held whole (memory stays flat however long it is). Whatever the
bytes, the reader yields ``Row``s and ``RowError``s (a line that does not decode, is too long, has a NUL,
cells that do not match the header, JSON that is not an object, a value that is not text or a number),
or raises one ``FileError`` naming the problem (empty, no phone column, a spreadsheet instead of text).
"""

from __future__ import annotations

import codecs
import csv
import json
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from providers.phones import MAX_INPUT_CHARS as MAX_PHONE_CHARS
from tasks.request import MAX_PARAM_CHARS, FieldProblem, InvalidRequest, param_values, phone_input

BLOCK_BYTES = 64 * 1024
MAX_LINE_BYTES = 64 * 1024  # 50 parameters of 500 characters fit; a longer line is a RowError
PHONE_COLUMNS = ("phone", "mobile", "手机", "手机号", "手机号码")
_HEADER = "header"
_SPREADSHEETS = (
    (b"PK\x03\x04", "an Excel workbook (.xlsx) or another zip file"),
    (b"\xd0\xcf\x11\xe0", "an Excel 97-2003 workbook (.xls)"),
)
_UTF16 = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_SAVE_AS = "save it from the spreadsheet as 'CSV UTF-8' (or CSV) and submit that"


class FileError(InvalidRequest):
    """The file as a whole cannot be read (nothing of it is submitted); the message names the problem."""


@dataclass(frozen=True, slots=True)
class Row:
    """One recipient as written in the file: its line (1-based; the header is line 1 of a CSV), the
    phone as given (normalized later) and its own parameters (text)."""

    line: int
    phone: str
    params: dict[str, str]


@dataclass(frozen=True, slots=True)
class RowError:
    """A line that is not a recipient: its line number, why, and the phone as given when there was one
    (shown masked, never whole)."""

    line: int
    reason: str
    phone: str = ""


class Rows(Iterator[Row | RowError]):
    """The rows of one file, read as they are asked for. ``encoding`` is the one used (``utf-8`` while
    only ASCII has been seen) and ``format`` ``csv`` or ``jsonl`` once the first line is read."""

    def __init__(self, stream: BinaryIO, name: str, encoding: str | None = None) -> None:
        self.name = name
        self.format = ""
        self._lines = _Lines(stream, _encoding(encoding))
        self._rows: Iterator[Row | RowError] | None = None

    @property
    def encoding(self) -> str:
        return self._lines.encoding or "utf-8"

    def __next__(self) -> Row | RowError:
        if self._rows is None:
            self._rows = self._start()
        return next(self._rows)

    def _start(self) -> Iterator[Row | RowError]:
        self._lines.start()
        lower = self.name.lower()
        if lower.endswith((".jsonl", ".ndjson")):
            self.format = "jsonl"
        elif lower.endswith((".csv", ".tsv", ".txt")):
            self.format = "csv"
        else:
            self.format = "jsonl" if self._lines.first_text().lstrip().startswith("{") else "csv"
        return _jsonl(self._lines) if self.format == "jsonl" else _csv(self._lines)


def read_rows(stream: BinaryIO, name: str, encoding: str | None = None) -> Rows:
    """The rows of ``stream`` (a file named ``name``): ``Row`` or ``RowError`` each, or ``FileError``."""
    return Rows(stream, name, encoding)


def check_encoding(encoding: str) -> str:
    """The codec's name of ``encoding`` if Python knows it and a newline is the byte 10 in it (so lines
    are cut as bytes): UTF-8, GBK, GB18030, Big5, Latin-1... but not UTF-16/32. Else ValueError."""
    try:
        name = codecs.lookup(encoding.strip()).name
    except LookupError:
        raise ValueError(f"unknown encoding {encoding[:40]!r} (e.g. utf-8, gbk, gb18030)") from None
    try:
        ok = "\n,".encode(name) == b"\n," and not name.startswith(("utf-16", "utf-32"))
    except (LookupError, TypeError, ValueError, UnicodeError):
        ok = False
    if not ok:
        raise ValueError(f"{name} is not read line by line here (use utf-8, gbk or gb18030)")
    return "utf-8" if name == "utf-8-sig" else name


def _encoding(encoding: str | None) -> str | None:
    try:
        return check_encoding(encoding) if encoding else None
    except ValueError as exc:
        raise FileError(f"encoding: {exc}") from None


class _Lines:
    """The file's lines as text, numbered from 1, cut from blocks of bytes. A line that does not decode,
    is longer than ``MAX_LINE_BYTES`` or holds a NUL comes as an empty line with a reason in ``bad``."""

    def __init__(self, stream: BinaryIO, encoding: str | None) -> None:
        self.stream = stream
        self.encoding = encoding
        self.number = 0
        self.bad: dict[int, str] = {}
        self._head = b""
        self._raw: Iterator[bytes | None] | None = None
        self._peeked: deque[tuple[int, str]] = deque()

    def start(self) -> None:
        """Read the first block: refuse what is no text file, take the UTF-8 BOM off."""
        try:
            head = self.stream.read(BLOCK_BYTES) or b""
        except OSError as exc:
            raise FileError(f"file: cannot be read: {exc}") from None
        if not isinstance(head, bytes | bytearray):
            raise FileError("file: expected a binary stream (open the file with 'rb')")
        if not head.strip():
            raise FileError("file: empty (expected a header line, or JSON lines)")
        for magic, what in _SPREADSHEETS:
            if head.startswith(magic):
                raise FileError(f"file: {what}, not CSV or JSON lines: {_SAVE_AS}")
        if head.startswith(_UTF16):
            raise FileError(f"file: UTF-16 text (Excel's 'Unicode text'): {_SAVE_AS}")
        if head.startswith(codecs.BOM_UTF8):
            if self.encoding not in (None, "utf-8"):
                raise FileError(f"encoding: the file starts with a UTF-8 mark, not {self.encoding}")
            self.encoding = "utf-8"
            head = head[len(codecs.BOM_UTF8) :]
        self._head = bytes(head)
        newline = b"\r" if b"\n" not in head and b"\r" in head else b"\n"  # CR alone: old Mac Excel
        self._raw = _cut(self.stream, self._head, newline)

    def first_text(self) -> str:
        """The first line that is not blank ("" if none), kept to be read again."""
        for _, text in self._peeked:
            if text.strip():
                return text
        while (item := self._read()) is not None:
            self._peeked.append(item)
            if item[1].strip():
                return item[1]
        return ""

    def numbered(self) -> Iterator[tuple[int, str]]:
        """Each line with its number."""
        while True:
            item = self._peeked.popleft() if self._peeked else self._read()
            if item is None:
                return
            yield item

    def __iter__(self) -> Iterator[str]:
        return (text for _, text in self.numbered())

    def _read(self) -> tuple[int, str] | None:
        assert self._raw is not None, "start() first"
        raw = next(self._raw, b"")
        if raw == b"":
            return None
        self.number += 1
        if raw is None:
            self.bad[self.number] = f"longer than {MAX_LINE_BYTES:,} bytes"
            return self.number, "\n"
        text = self._decode(raw)
        if "\x00" in text:
            self.bad[self.number] = "holds a NUL character (is this a text file?)"
            return self.number, "\n"
        return self.number, text

    def _decode(self, raw: bytes) -> str:
        if self.encoding is None:
            if raw.isascii():
                return raw.decode("ascii")
            for guess in ("utf-8", "gb18030"):
                try:
                    text = raw.decode(guess)
                except UnicodeDecodeError:
                    continue
                self.encoding = guess
                return text
            self.bad[self.number] = "is neither UTF-8 nor GBK/GB18030 text (name the encoding)"
            return "\n"
        try:
            return raw.decode(self.encoding)
        except UnicodeDecodeError as exc:
            self.bad[self.number] = (
                f"is not {self.encoding} text (byte {raw[exc.start]:#04x} at {exc.start + 1}); "
                "is the encoding right?"
            )
            return "\n"


def _cut(stream: BinaryIO, head: bytes, newline: bytes) -> Iterator[bytes | None]:
    """``stream``'s lines (each with its ``newline``; the last may lack it), ``head`` first; None for a
    line longer than ``MAX_LINE_BYTES``, whose bytes are skipped, not kept."""
    rest, skipping = head, False
    while True:
        start = 0
        while (end := rest.find(newline, start)) >= 0:
            too_long = skipping or end + 1 - start > MAX_LINE_BYTES
            yield None if too_long else rest[start : end + 1]
            start, skipping = end + 1, False
        rest = rest[start:]
        if len(rest) > MAX_LINE_BYTES:
            rest, skipping = b"", True
        try:
            block = stream.read(BLOCK_BYTES)
        except OSError as exc:
            raise FileError(f"file: cannot be read: {exc}") from None
        if not block:
            if skipping or rest:
                yield None if skipping else rest
            return
        rest += block


# -- CSV ---------------------------------------------------------------------------------------------


def _csv(lines: _Lines) -> Iterator[Row | RowError]:
    top = lines.first_text()
    delimiter = "\t" if "," not in top and "\t" in top else ","
    reader = csv.reader(iter(lines), delimiter=delimiter, strict=False)
    header: list[str] | None = None
    phone_at = 0
    while True:
        before = reader.line_num
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            yield RowError(before + 1, f"not CSV: {exc}")
            continue
        first = before + 1
        bad = _bad_lines(lines, first, reader.line_num)
        if header is None:
            if bad:
                raise FileError(f"header (line {first}): {bad}")
            if not any(cell.strip() for cell in cells):
                continue
            header, phone_at = _header(cells, first)
            continue
        if bad:
            yield RowError(first, f"line {bad}")
        elif any(cell.strip() for cell in cells):
            yield _csv_row(first, cells, header, phone_at)
    if header is None:
        raise FileError("file: no header line (expected a phone column and one per parameter)")


def _bad_lines(lines: _Lines, first: int, last: int) -> str:
    """Why a line of ``first..last`` could not be read ("" if none), forgetting them."""
    reasons = [lines.bad.pop(n) for n in range(first, last + 1) if n in lines.bad]
    return reasons[0] if reasons else ""


def _header(cells: list[str], line: int) -> tuple[list[str], int]:
    """The column names (trimmed) and where the phone is; FileError when there is no phone column or
    the names are not parameter names."""
    names = [cell.strip().lstrip("\ufeff") for cell in cells]
    phones = [i for i, name in enumerate(names) if name.lower() in PHONE_COLUMNS]
    if not phones:
        found = ", ".join(repr(name[:20]) for name in names[:8]) or "nothing"
        raise FileError(
            f"header (line {line}): no phone column (name one {' or '.join(PHONE_COLUMNS)}; found {found})"
        )
    if len(phones) > 1:
        raise FileError(f"header (line {line}): {len(phones)} phone columns, expected one")
    params = [name for i, name in enumerate(names) if i != phones[0] and name]
    if len(set(params)) < len(params):
        twice = next(name for name in params if params.count(name) > 1)
        raise FileError(f"header (line {line}): column {twice[:40]!r} appears twice")
    try:
        param_values(dict.fromkeys(params, ""), _HEADER)
    except FieldProblem as exc:
        raise FileError(f"{exc} (line {line})") from None
    return names, phones[0]


def _csv_row(line: int, cells: list[str], header: list[str], phone_at: int) -> Row | RowError:
    phone = cells[phone_at].strip() if phone_at < len(cells) else ""
    extra = [cell for cell in cells[len(header) :] if cell.strip()]
    if extra:
        return RowError(line, f"{len(cells)} cells, the header has {len(header)} columns", phone)
    own: dict[str, str] = {}
    for i, value in enumerate(cells):
        if i == phone_at or not value.strip():
            continue  # an empty cell: the parameter common to every row applies, if any
        if not header[i]:
            return RowError(line, f"a value in column {i + 1}, which has no name in the header", phone)
        own[header[i]] = value.strip()
    if len(phone) <= MAX_PHONE_CHARS and all(len(value) <= MAX_PARAM_CHARS for value in own.values()):
        return Row(line, phone, own)  # names checked with the header; decoded text holds no surrogate
    return _row(line, phone, own)  # the checks of any row, for their one-line reasons


def _row(line: int, phone: object, own: Mapping[str, Any]) -> Row | RowError:
    """A row whose phone and parameters have the types and sizes ``send_sms`` takes."""
    try:
        text = phone_input(phone, "phone")
        if isinstance(own, Mapping):
            own = {name: value for name, value in own.items() if value is not None}  # null: not given
        return Row(line, text, param_values(own, "params"))
    except FieldProblem as exc:
        return RowError(line, str(exc), _given(phone))


# -- JSON lines --------------------------------------------------------------------------------------


def _jsonl(lines: _Lines) -> Iterator[Row | RowError]:
    for number, text in lines.numbered():
        bad = lines.bad.pop(number, "")
        if bad:
            yield RowError(number, f"line {bad}")
        elif text.strip():
            yield _json_row(number, text)


def _json_row(line: int, text: str) -> Row | RowError:
    try:
        item = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, a 5000-digit int, [[[[...
        return RowError(line, f"not JSON: {str(exc)[:80] or type(exc).__name__}")
    if not isinstance(item, dict):
        return RowError(line, f"expected a JSON object {{phone, params}}, got {type(item).__name__}")
    keys = [key for key in item if key.lower() in PHONE_COLUMNS]
    if len(keys) != 1:
        problem = "no phone" if not keys else f"{len(keys)} phone fields"
        return RowError(line, f"{problem} (expected one field {' or '.join(PHONE_COLUMNS)})")
    phone = item.pop(keys[0])
    if "params" not in item:
        return _row(line, phone, item)  # flat: every other field is a parameter
    own = item.pop("params")
    if item:
        unexpected = str(next(iter(item)))[:40]
        return RowError(line, f"unexpected field {unexpected!r} beside params", _given(phone))
    return _row(line, phone, {} if own is None else own)


def _given(phone: object) -> str:
    return phone if isinstance(phone, str) else ""
