"""Reading recipient files (worker/campaign/files.py): CSV and JSON lines, UTF-8 with or without BOM and
GBK/GB18030 detected or named, refused lines with their numbers, and whatever the bytes: rows, row
errors or one clear FileError."""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.campaign.files import MAX_LINE_BYTES, FileError, Row, RowError, read_rows

BILL = "phone,name,amount\n13800138000,张三,12.50\n13900139000,李四,3\n"


def rows(data: bytes, name: str = "f.csv", encoding: str | None = None) -> list[Row | RowError]:
    return list(read_rows(io.BytesIO(data), name, encoding))


def test_a_gbk_file_as_excel_in_china_saves_it_is_detected() -> None:
    reader = read_rows(io.BytesIO(BILL.replace("phone", "手机号").encode("gbk")), "bill.csv")
    assert list(reader) == [
        Row(2, "13800138000", {"name": "张三", "amount": "12.50"}),
        Row(3, "13900139000", {"name": "李四", "amount": "3"}),
    ]
    assert (reader.encoding, reader.format) == ("gb18030", "csv")


def test_gbk_is_detected_at_the_first_line_that_is_not_ascii() -> None:
    data = ("phone,name\n" + "13800138000,a\n" * 5000 + "13900139000,王五\n").encode("gb18030")
    got = rows(data)
    assert len(got) == 5001 and got[-1] == Row(5002, "13900139000", {"name": "王五"})


@pytest.mark.parametrize(("bom", "newline"), [(b"", "\r\n"), (b"\xef\xbb\xbf", "\n"), (b"", "\r")])
def test_utf8_with_or_without_bom_and_any_line_ending(bom: bytes, newline: str) -> None:
    data = bom + BILL.replace("\n", newline).replace("phone", " Phone ").encode()
    assert rows(data) == [
        Row(2, "13800138000", {"name": "张三", "amount": "12.50"}),
        Row(3, "13900139000", {"name": "李四", "amount": "3"}),
    ]


def test_a_named_encoding_is_used_and_a_line_it_cannot_decode_is_a_row_error() -> None:
    data = "phone,name\n13800138000,张三\n".encode("gbk") + b"13900139000,\x81\x20\n13700137000,b\n"
    assert rows(data, encoding="gbk") == [
        Row(2, "13800138000", {"name": "张三"}),
        RowError(3, "line is not gbk text (byte 0x81 at 13); is the encoding right?"),
        Row(4, "13700137000", {"name": "b"}),
    ]


def test_jsonl_nested_or_flat_and_bad_lines_by_number() -> None:
    data = b"\n".join(
        [
            b'{"phone": "13800138000", "params": {"name": "a", "amount": 1.5}}',
            b'{"mobile": 13900139000, "name": "b"}',
            b"",
            b"[1, 2]",
            b"{not json",
            b'{"phone": "13700137000", "params": {"name": {"deep": 1}}}',
            b'{"phone": "13600136000", "params": {}, "extra": 1}',
            b'{"name": "no phone"}',
            b"[" * 100_000,
        ]
    )
    got = rows(data, "promo.jsonl")
    assert got[:2] == [
        Row(1, "13800138000", {"name": "a", "amount": "1.5"}),
        Row(2, "13900139000", {"name": "b"}),
    ]
    errors = {item.line: item.reason for item in got[2:] if isinstance(item, RowError)}
    assert sorted(errors) == [4, 5, 6, 7, 8, 9]
    assert errors[4].startswith("expected a JSON object")
    assert errors[5].startswith("not JSON")
    assert errors[6] == "params.name: expected text or a number, got dict"
    assert "unexpected field 'extra'" in errors[7]
    assert errors[8].startswith("no phone")
    assert errors[9].startswith("line longer than")


def test_the_format_is_sniffed_when_the_name_does_not_say() -> None:
    assert rows(b'{"phone": "13800138000"}\n', "upload")[0] == Row(1, "13800138000", {})
    assert rows(b"phone\tname\n13800138000\tx\n", "upload")[0] == Row(2, "13800138000", {"name": "x"})


def test_ragged_rows_nul_bytes_and_huge_lines_are_row_errors_with_their_line() -> None:
    data = (
        b"phone,name\n"
        b"13800138000,a,unquoted,comma\n"
        b"13900139000,\n"  # an empty cell: the common parameter applies
        b"13700137000,a\x00b\n" + b"1" * (MAX_LINE_BYTES + 10) + b"\n"
        b"13600136000,last line without newline"
    )
    got = rows(data)
    assert got == [
        RowError(2, "4 cells, the header has 2 columns", "13800138000"),
        Row(3, "13900139000", {}),
        RowError(4, "line holds a NUL character (is this a text file?)"),
        RowError(5, f"line longer than {MAX_LINE_BYTES:,} bytes"),
        Row(6, "13600136000", {"name": "last line without newline"}),
    ]


def test_a_value_too_long_or_a_phone_too_long_is_refused_alone() -> None:
    data = f"phone,name\n13800138000,{'x' * 501}\n{'1' * 65},a\n13900139000,b\n".encode()
    got = rows(data)
    assert [type(item).__name__ for item in got] == ["RowError", "RowError", "Row"]
    assert got[0].reason == "params.name: 501 characters, at most 500"  # type: ignore[union-attr]
    assert "phone" in got[1].reason  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("data", "name", "encoding", "problem"),
    [
        (b"", "f.csv", None, "file: empty"),
        (b"\n \n", "f.csv", None, "file: empty"),
        (b"name,amount\n1,2\n", "f.csv", None, "no phone column"),
        (b"phone,mobile\n1,2\n", "f.csv", None, "2 phone columns"),
        (b"phone,a,a\n1,2,3\n", "f.csv", None, "column 'a' appears twice"),
        (b"PK\x03\x04\x14\x00", "f.csv", None, "Excel workbook"),
        (b"\xff\xfep\x00h\x00", "f.csv", None, "UTF-16"),
        (b"phone\n1\n", "f.csv", "utf-16", "encoding: utf-16"),
        (b"phone\n1\n", "f.csv", "klingon", "encoding: unknown encoding"),
        (b"\xef\xbb\xbfphone\n1\n", "f.csv", "gbk", "UTF-8 mark"),
    ],
)
def test_a_file_that_cannot_be_read_is_one_clear_error(
    data: bytes, name: str, encoding: str | None, problem: str
) -> None:
    with pytest.raises(FileError, match=problem) as caught:
        rows(data, name, encoding)
    assert "\n" not in str(caught.value)


def test_memory_stays_flat_the_file_is_read_in_blocks() -> None:
    class Counting(io.RawIOBase):
        """50,000 rows made as they are read; remembers the largest read asked for."""

        def __init__(self) -> None:
            self.rows = (f"{13800000000 + i},n{i}\n".encode() for i in range(50_000))
            self.largest = 0
            self.pending = b"phone,name\n"

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            self.largest = max(self.largest, size)
            while len(self.pending) < size and (row := next(self.rows, None)) is not None:
                self.pending += row
            out, self.pending = self.pending[:size], self.pending[size:]
            return out

    stream = Counting()
    count = sum(1 for item in read_rows(stream, "gen.csv") if isinstance(item, Row))  # type: ignore[arg-type]
    assert count == 50_000 and 0 < stream.largest <= 64 * 1024


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.one_of(
        st.binary(max_size=400),
        st.lists(
            st.sampled_from([b"phone", b",", b"\n", b"\r\n", b'"', b"{", b"}", b"\x00", b"\xff", b"\xe4\xb8",
                             b"13800138000", b"name", b'"phone":', b"\xef\xbb\xbf", b"\t", b"[", b"1e999"]),
            max_size=60,
        ).map(b"".join),
    ),
    name=st.sampled_from(["f.csv", "f.jsonl", "f", "f.tsv"]),
    encoding=st.sampled_from([None, "utf-8", "gbk", "gb18030", "latin-1"]),
)
def test_any_bytes_give_rows_row_errors_or_one_file_error(
    data: bytes, name: str, encoding: str | None
) -> None:
    try:
        got = rows(data, name, encoding)
    except FileError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    for item in got:
        assert isinstance(item, Row | RowError)
        assert item.line >= 1
        if isinstance(item, Row):
            assert all(isinstance(v, str) for v in item.params.values())
