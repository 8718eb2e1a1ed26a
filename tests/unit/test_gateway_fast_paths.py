"""The gateway's hot-path shortcuts give exactly the answers of the plain code (pure, no servers).

- per-event validation: the precomputed per-layout checks (``_SHAPES``) against the key-by-key path, on
  random events mixing valid values, wrong types, out-of-range numbers, over-long strings and unknown keys;
- the record constructor that fills slots directly against ``EventRecord(...)``;
- ``encode_batch`` (one pass from body to Kafka records) against validating and encoding event by event;
- ``owned=False`` leaves the caller's dict alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas.ingest as ingest
from ingest_gateway.batch import encode_batch
from productgraph.bench.ingest import bench_events
from schemas.fields import FIELDS, Kind
from schemas.ingest import EventError, IngestContext, validate_event, validate_events
from schemas.records import EventRecord

NOW = int(time.time() * 1000)
CTX = IngestContext("org-1", "proj-1", "shop", NOW, check_event_size=False)


@contextmanager
def key_by_key() -> Iterator[None]:
    """Validation without the per-layout shortcut."""
    saved = ingest._new_shape
    ingest._SHAPES.clear()
    ingest._new_shape = lambda keys: None
    try:
        yield
    finally:
        ingest._new_shape = saved
        ingest._SHAPES.clear()


_ints = st.integers(-(2**63), 2**64 - 1)  # what orjson.loads can return (it turns larger ones into floats)


def _values_for(kind: Kind, max_len: int | None, choices: frozenset[str] | None) -> st.SearchStrategy[Any]:
    wrong = st.one_of(
        st.none(),
        st.booleans(),
        st.lists(_ints, max_size=2),
        st.dictionaries(st.text(), _ints, max_size=1),
    )
    if kind is Kind.STRING:
        good: st.SearchStrategy[Any] = (
            st.sampled_from(sorted(choices)) if choices else st.text(max_size=(max_len or 300) + 2)
        )
        return st.one_of(good, good, _ints, st.text(min_size=250, max_size=2100), wrong)
    numbers = st.one_of(
        _ints,
        st.floats(allow_nan=False, allow_infinity=False),
        st.floats(-1.0, 2.0),
        st.integers(0, 10_000),
    )
    return st.one_of(numbers, numbers, st.text(max_size=3), wrong)


_field = st.sampled_from(FIELDS).flatmap(
    lambda f: st.tuples(st.just(f.name), _values_for(f.kind, f.max_len, f.choices))
)
_unknown = st.tuples(
    st.text(min_size=1, max_size=300).filter(lambda k: k not in ingest._PLAN),
    st.one_of(st.none(), st.text(max_size=2000), _ints, st.lists(_ints, max_size=3)),
)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "event_id": draw(st.sampled_from(["e-1", "", "x" * 256])),
        "project_id": "shop",
        "session.id": "s-1",
        "event.type": draw(st.sampled_from(["page.view", "ui.click", "nope"])),
        "event.timestamp": draw(st.sampled_from(["2026-01-02T03:04:05.678Z", "", "yesterday"])),
    }
    for name, value in draw(st.lists(st.one_of(_field, _field, _field, _unknown), max_size=30)):
        raw[name] = value
    if draw(st.booleans()):  # the same layout again, other values: exercises a cached shape
        raw = dict(draw(st.permutations(list(raw.items()))))
    return raw


@settings(max_examples=1500, deadline=None)
@given(events())
def test_shaped_validation_equals_key_by_key(raw: dict[str, Any]) -> None:
    with key_by_key():
        expected = validate_event(0, raw, CTX)
    got_once = validate_event(0, raw, CTX)  # builds the shape
    got = validate_event(0, dict(raw), CTX, owned=True)  # uses it, taking the dict apart
    assert got_once == expected and got == expected
    if isinstance(expected, EventRecord):
        assert isinstance(got, EventRecord)
        assert got.encode() == expected.encode()  # same fields, same order, same bytes


def test_shortcut_taken_for_realistic_events_and_results_identical() -> None:
    evs = bench_events("shop", 360)
    for i, e in enumerate(evs):
        e["event_id"] = f"id-{i}"
    with key_by_key():
        expected = validate_events([dict(e) for e in evs], CTX)
    got = validate_events([dict(e) for e in evs], CTX, owned=True)
    assert got == expected and len(got[0]) == 360 and not got[1]
    assert [r.encode() for r in got[0]] == [r.encode() for r in expected[0]]
    assert 1 <= len(ingest._SHAPES) <= 18  # a layout per event type at most, all cached


def test_shape_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "_MAX_SHAPES", 3)
    ingest._SHAPES.clear()
    try:
        for i in range(10):
            raw = {"event_id": f"e{i}", "project_id": "shop", "session.id": "s", "event.type": "custom", f"k{i}": i}
            rec = validate_event(0, raw, CTX)
            assert isinstance(rec, EventRecord) and rec.extra == {f"k{i}": i}
        assert len(ingest._SHAPES) == 3
    finally:
        ingest._SHAPES.clear()


def test_record_factory_matches_the_dataclass() -> None:
    args: tuple[Any, ...] = (
        "o",
        "p",
        "e",
        "s",
        "page.view",
        1,
        2,
        None,
        True,
        {"page.path": "/"},
        {"a": [1]},
        {"x": "y"},
    )
    made = ingest._new_record(*args)
    assert type(made) is EventRecord and made == EventRecord(*args) and made.encode() == EventRecord(*args).encode()
    with pytest.raises(AttributeError):  # still frozen
        made.event_id = "other"  # type: ignore[misc]


def test_not_owned_leaves_the_input_alone() -> None:
    raw = {"event_id": "e", "project_id": "shop", "session.id": "s", "event.type": "custom", "page.path": "/", "z": 1}
    before = dict(raw)
    assert isinstance(validate_event(0, raw, CTX), EventRecord)
    assert raw == before


def test_encode_batch_equals_event_by_event_encoding() -> None:
    evs = bench_events("shop", 150)
    for i, e in enumerate(evs):
        e["event_id"] = f"id-{i % 120}"  # 30 repeats of earlier ids within the request
    evs[7] = {**evs[7], "api.status_code": "two hundred"}
    evs[8] = "not an event"  # type: ignore[call-overload]
    body = orjson.dumps({"events": evs, "sent_at": None})
    batch = encode_batch(
        body, org_id="org-1", project_id="proj-1", project_slug="shop", received_ms=NOW, fill_missing_timestamp=True
    )
    records, errors = validate_events(orjson.loads(body)["events"], CTX)
    first: dict[str, EventRecord] = {}
    for r in records:
        first.setdefault(r.event_id, r)
    assert batch.events == 150
    assert (
        batch.errors
        == errors
        == [EventError(7, "api.status_code: must be a number"), EventError(8, "event: must be an object")]
    )
    assert batch.duplicates == len(records) - len(first) == 28  # ids 7 and 8 come back valid at 127 and 128
    assert batch.ids == list(first)
    assert batch.records == [(r.key, r.encode()) for r in first.values()]
    assert batch.unknown_fields == [len(r.extra) for r in first.values()] and set(batch.unknown_fields) == {1}
    assert all(EventRecord.decode(v) == first[i] for i, (_, v) in zip(batch.ids, batch.records, strict=True))
