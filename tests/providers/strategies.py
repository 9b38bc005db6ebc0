"""Hypothesis strategies for hostile vendor answers, and the fuzz targets they feed.

Used by the property tests (``test_hostile_answers.py``, a few hundred cases per target) and by
``reliability/fuzz.py`` (10,000 per target, through :func:`fuzz_targets`).

- :func:`hostile_values`: JSON values a parser meets where it expects something else: null, booleans,
  huge integers, ``NaN``/``Infinity``, odd strings, lists and objects, and :class:`RawJson` fragments
  ``json.dumps`` cannot write (nesting thousands deep, 5000-digit numbers, lone surrogates).
- :func:`mutations`: one of a vendor's documented answers with parts replaced, retyped, dropped or added,
  so that most cases reach deep into the parser instead of failing at the first field.
- :func:`bodies`: the bytes of an answer: mutated documented answers (most), arbitrary JSON, deep
  nesting, HTML error pages, XML, truncated JSON, text in GBK/UTF-16/Latin-1, random bytes, nothing.
- :func:`replies`: a :class:`Reply` (any HTTP status, a ``Content-Type``, a hostile ``Retry-After``).

What to feed them (each adapter operation, the vendor documents' own answers) and how to judge the
outcome are in ``tests/providers/targets.py``; :func:`fuzz_targets` hands both to the reliability script.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from hypothesis import strategies as st

# -- JSON values -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawJson:
    """JSON text written as it is where a value goes (what ``json.dumps`` cannot or will not write)."""

    text: str


def _nested(depth: int, opening: str = "[", closing: str = "]") -> str:
    return opening * depth + closing * depth


RAW_FRAGMENTS: tuple[str, ...] = (
    "NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 400, "-" + "9" * 400, "9" * 5000,
    "1" + "0" * 400 + ".5", "0.1e-400", _nested(33), _nested(200), _nested(1000), _nested(5000),
    "[" * 3000, _nested(100, '{"a":', "}").replace("}", "1}", 1), '"\\ud800"', '"a\\udfffb"', '"\\u0000"',
)  # fmt: skip
ODD_TEXTS: tuple[str, ...] = (
    "", " ", "null", "None", "NaN", "nan", "inf", "-inf", "Infinity", "1e400", "-1", "0", "2", "200", "OK",
    "true", "DELIVRD", "UNDELIV", "UNKNOWN", "MA:0029", "１２３", "12 元", "1_000", "0x10", "13900000001",
    "18983437010,18983437011", "<html>", "ä" * 3, "\u202e", "\x00",
)  # fmt: skip
FIELD_NAMES: tuple[str, ...] = (
    "code", "status", "result", "data", "list", "msgId", "msgid", "failPhones", "desc", "message", "msg",
    "errmsg", "sid", "fee", "smsid", "num", "balance", "chargeType", "mid", "mobile", "result", "stat",
    "time", "tel", "arrive", "arriveTime", "bid", "itemName", "residueValue", "report_status", "nationcode",
    "user_receive_time", "text", "extend", "request_id", "reason", "content", "accessCode",
)  # fmt: skip


@functools.cache
def _leaves() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=-(10**400), max_value=10**400),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=24),
        st.sampled_from(ODD_TEXTS),
        st.sampled_from(RAW_FRAGMENTS).map(RawJson),
    )


@functools.cache
def hostile_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON value, leaning to what breaks parsers (see :data:`RAW_FRAGMENTS`, :data:`ODD_TEXTS`)."""
    keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=8))
    return st.recursive(
        _leaves(),
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def to_json(value: Any) -> str:
    """``value`` as JSON text, :class:`RawJson` parts written as they are; ``NaN``/``Infinity`` as Python's
    ``json`` writes them."""
    raws: dict[str, str] = {}

    def placeholder(part: Any) -> str:
        if not isinstance(part, RawJson):
            raise TypeError(f"not JSON: {type(part).__name__}")
        key = f"\x00raw{len(raws)}\x00"
        raws[key] = part.text
        return key

    text = json.dumps(value, ensure_ascii=False, default=placeholder)
    for key, raw in raws.items():
        text = text.replace(json.dumps(key, ensure_ascii=False), raw, 1)
    return text


def _retyped(value: Any) -> list[Any]:
    """The same value in the other types a careless vendor might send it as."""
    out: list[Any] = [[value], {"value": value}, None]
    if isinstance(value, str):
        out += [value.strip() + " ", value * 3]
        if value.strip().lstrip("-").isdigit():
            out += [int(value), float(value)]
    elif isinstance(value, bool):
        out.append(str(value).lower())
    elif isinstance(value, int | float):
        out += [str(value), float(value), -value, RawJson("1e400")]
    return out


@st.composite
def mutations(draw: st.DrawFn, value: Any) -> Any:
    """``value`` (a documented answer) with each part, independently and rarely, replaced by a hostile
    value, retyped, dropped (object fields, list items) or joined by an extra field or item."""
    roll = draw(_PERCENT)
    if roll < 5:
        return draw(hostile_values())
    if roll < 9:
        return draw(st.sampled_from(_retyped(value)))
    if isinstance(value, dict):
        out = {key: draw(mutations(item)) for key, item in value.items() if draw(_PERCENT) >= 8}
        if draw(_PERCENT) < 10:
            out[draw(_FIELD_NAME)] = draw(hostile_values())
        return out
    if isinstance(value, list):
        items = [draw(mutations(item)) for item in value if draw(_PERCENT) >= 8]
        if value and draw(_PERCENT) < 12:
            items.append(draw(mutations(value[draw(st.integers(0, len(value) - 1))])))
        if draw(_PERCENT) < 8:
            items.append(draw(hostile_values()))
        return items
    return value


_PERCENT = st.integers(0, 99)
_FIELD_NAME = st.sampled_from(FIELD_NAMES)


# -- bodies and replies ------------------------------------------------------------------------------

HTML_PAGES: tuple[str, ...] = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center>"
    "<hr><center>nginx</center></body></html>",
    "<!DOCTYPE html><html><body>请求过于频繁，请稍后再试</body></html>",
    '<?xml version="1.0" encoding="utf-8"?><SubmitResult xmlns="http://106.ihuyi.com/"><code>2</code>'
    "<msg>提交成功</msg><smsid>14627523471891234</smsid></SubmitResult>",
    "OK",
    "success",
)
ENCODINGS: tuple[str, ...] = ("utf-8", "utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "gbk", "latin-1")


def bodies(examples: Sequence[Any]) -> st.SearchStrategy[bytes]:
    """Answer bodies: mostly mutations of ``examples`` (decoded documented answers) as JSON, in
    assorted encodings; also arbitrary JSON, truncated JSON, raw fragments, HTML/XML, random bytes."""
    documented = st.sampled_from(list(examples)).flatmap(mutations).map(to_json)
    arbitrary = hostile_values().map(to_json)
    encoded = st.tuples(documented, st.sampled_from(ENCODINGS)).map(
        lambda pair: pair[0].encode(pair[1], errors="replace")
    )
    truncated = st.tuples(documented, st.integers(0, 400)).map(
        lambda pair: pair[0][: pair[1]].encode("utf-8", errors="replace")
    )
    html = st.one_of(
        st.sampled_from(HTML_PAGES), st.text(max_size=80).map(lambda t: f"<html><body>{t}</body></html>")
    ).map(lambda page: page.encode("utf-8", errors="replace"))
    plain = documented.map(lambda text: text.encode("utf-8", errors="replace"))
    return st.one_of(
        encoded,
        *([plain] * 7),
        arbitrary.map(lambda text: text.encode("utf-8", errors="replace")),
        truncated,
        st.sampled_from(RAW_FRAGMENTS).map(str.encode),
        html,
        st.binary(max_size=200),
        st.just(b""),
    )


RETRY_AFTER: tuple[str, ...] = (
    "0", "1", "30", "2.5", "-5", "inf", "Infinity", "nan", "NaN", "1e400", "9" * 400, "", " ", "soon",
    "Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT", "Mon, 99 Foo 2020 99:99:99 GMT",
)  # fmt: skip
CONTENT_TYPES: tuple[str, ...] = (
    "application/json", "application/json; charset=utf-8", "text/html; charset=gbk", "text/plain",
    "application/json; charset=bogus", "application/xml",
)  # fmt: skip
STATUSES: tuple[int, ...] = (200,) * 12 + (201, 204, 400, 401, 403, 404, 429, 500, 502, 503)


@dataclass(frozen=True)
class Reply:
    """One answer of a fake vendor: HTTP status, headers and body."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()

    def response(self, request: httpx.Request | None = None) -> httpx.Response:
        return httpx.Response(self.status, content=self.body, headers=list(self.headers), request=request)


def _headers() -> st.SearchStrategy[tuple[tuple[str, str], ...]]:
    printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
    retry_after = st.one_of(
        st.sampled_from(RETRY_AFTER), st.integers(0, 10**30).map(str), printable
    ).map(lambda value: ("Retry-After", value))
    content_type = st.sampled_from(CONTENT_TYPES).map(lambda value: ("Content-Type", value))
    return st.tuples(
        st.lists(content_type, max_size=1), st.lists(retry_after, max_size=1)
    ).map(lambda parts: tuple(parts[0] + parts[1]))


def replies(examples: Sequence[Any]) -> st.SearchStrategy[Reply]:
    """Whole answers: a status (mostly the usual ones, any of 100..599), headers, and a body from
    :func:`bodies`."""
    common = st.sampled_from(STATUSES)
    status = st.one_of(common, common, common, common, st.integers(100, 599))
    return st.builds(Reply, status=status, body=bodies(examples), headers=_headers())


def form_bodies(examples: Sequence[dict[str, str]]) -> st.SearchStrategy[bytes]:
    """Form-encoded bodies (vendors that push forms: Ihuyi): mutated documented forms, arbitrary pairs,
    broken percent-escapes, non-UTF-8 bytes, JSON, nothing."""
    from urllib.parse import urlencode

    def encode(value: Any) -> bytes:
        if isinstance(value, dict):
            pairs = [(str(k), v if isinstance(v, str) else to_json(v)) for k, v in value.items()]
            return urlencode(pairs, encoding="utf-8", errors="replace").encode()
        return to_json(value).encode("utf-8", errors="replace")

    documented = st.sampled_from(list(examples)).flatmap(mutations).map(encode)
    pairs = st.lists(st.tuples(st.text(max_size=12), st.text(max_size=24)), max_size=6)
    arbitrary = pairs.map(lambda items: "&".join(f"{k}={v}" for k, v in items).encode("utf-8", "replace"))
    escapes = st.sampled_from((b"mobilephone=%ff%fe&smsid=1", b"a=%", b"%%%", b"=&=&", b"smsid=%E4%B8"))
    return st.one_of(*([documented] * 6), arbitrary, escapes, st.binary(max_size=200), st.just(b""))


def fuzz_targets() -> Iterator[tuple[str, tuple[st.SearchStrategy[Any], Callable[[Any], str]]]]:
    """For ``reliability/fuzz.py``: every adapter operation and every push parser as ``(name, (strategy,
    check))``; see ``tests.providers.targets.fuzz_targets`` and ``tests.providers.push_targets``."""
    from tests.providers.push_targets import fuzz_targets as push_targets
    from tests.providers.targets import fuzz_targets as targets

    yield from targets()
    yield from push_targets()
