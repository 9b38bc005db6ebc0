"""README "Events": the format table covers every field of every event type, and the consumer-group
example, run as written against a real Redis, hands every event to the application once, takes over what
a crashed consumer held, and copes with entries trimmed before anyone acknowledged them."""

from __future__ import annotations

import dataclasses
import re
import typing

import pytest
import redis

from tests.readme_examples import README, load_example
from worker.events import VERSION, Event, StateEvent
from worker.store import Keys, Store

SAMPLE = {"str": "x", "int": 1, "float": 1.5, "tuple[str, ...]": ("13800138000",)}


def _samples() -> list[typing.Any]:
    """One instance of every event type, every field given a value."""
    out = []
    for kind in typing.get_args(Event):
        values = {field.name: SAMPLE[str(field.type)] for field in dataclasses.fields(kind)}
        out.append(kind(**values))
    return out


def _events_section() -> str:
    text = README.read_text(encoding="utf-8")
    return text[text.index("## Events") : text.index("\n## ", text.index("## Events") + 3)]


def test_the_readme_table_documents_every_field_of_every_event_type() -> None:
    section = _events_section()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)` \| ([^|]+) \|", section, re.MULTILINE)}
    for event in _samples():
        encoded = event.encode(1)
        assert encoded["v"] == VERSION
        for field in encoded:
            assert field in rows, f"README Events: no row for {field!r} ({encoded['type']})"
            assert rows[field].strip() == "all" or encoded["type"] in rows[field], (field, encoded["type"])
        assert f"`{encoded['type']}`" in section


def _publish(store: Store, n: int, start: int = 0) -> list[str]:
    """``n`` state events; returns the message ids they carry, in order."""
    ids = [f"m-{i}" for i in range(start, start + n)]
    phones = ("13800138000",)
    store.publish([StateEvent(mid, "delivered", "infocloud", phones, "DELIVRD", "receipt") for mid in ids])
    return ids


def test_the_consumer_example_takes_over_a_crashed_consumer(r: redis.Redis, settings: typing.Any) -> None:
    example = load_example("events-consumer")
    store = Store(r, settings)
    example.setup(r)
    example.setup(r)  # a second process starting: the group exists, nothing happens
    published = _publish(store, 5)
    handled: list[str] = []

    def crashing(event_id: str, event: dict[str, str]) -> None:
        if event["message_id"] == "m-2":
            raise RuntimeError("the application crashed")
        handled.append(event["message_id"])

    with pytest.raises(RuntimeError):
        example.consume_once(r, "a", crashing, block_ms=10)
    assert handled == ["m-0", "m-1"]

    def fine(event_id: str, event: dict[str, str]) -> None:
        handled.append(event["message_id"])

    # b leaves a's events alone while a may still be working on them...
    assert example.consume_once(r, "b", fine, block_ms=10) == 0
    # ... and takes them over once they have been idle long enough
    assert example.consume_once(r, "b", fine, block_ms=10, idle_ms=0) == 3
    published += _publish(store, 2, start=5)
    assert example.consume_once(r, "b", fine, block_ms=10) == 2
    assert handled == published
    assert r.xpending(Keys.events, example.GROUP)["pending"] == 0


def test_the_consumer_example_acknowledges_entries_trimmed_while_pending(
    r: redis.Redis, settings: typing.Any
) -> None:
    example = load_example("events-consumer")
    store = Store(r, settings)
    example.setup(r)
    _publish(store, 3)
    r.xreadgroup(example.GROUP, "a", {Keys.events: ">"})  # a reads them all, then dies
    first = r.xrange(Keys.events, count=1)[0][0]
    r.xdel(Keys.events, first)  # trimmed (age or length) before anyone acknowledged it
    handled: list[str] = []
    example.consume_once(r, "a", lambda _id, event: handled.append(event["message_id"]), block_ms=10)
    assert handled == ["m-1", "m-2"]
    assert r.xpending(Keys.events, example.GROUP)["pending"] == 0
