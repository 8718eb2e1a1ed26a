"""The gateway's hot-path shortcuts give exactly the answers of the plain code (pure, no servers).

- per-event validation: the precomputed per-layout checks (``_SHAPES``) against the key-by-key path, on
  random events mixing valid values, wrong types, out-of-range numbers, over-long strings and unknown keys;
- the record constructor that fills slots directly against ``EventRecord(...)``;
- ``encode_events`` (per-layout checks on whole events, encoded from the event's own dict) against
  ``validate_event`` and ``EventRecord.encode``, on the same random events, a layout seen twice included;
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
from schemas.ingest import MAX_EVENT_BYTES, EventError, IngestContext, encode_events, validate_event, validate_events
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


def _one_by_one(
    evs: list[Any], ctx: IngestContext
) -> tuple[list[str], list[tuple[bytes, bytes]], list[int], list[Any]]:
    ids, records, extras, errors = [], [], [], []
    for i, raw in enumerate(evs):
        got = validate_event(i, raw, ctx)
        if isinstance(got, EventRecord):
            ids.append(got.event_id)
            records.append((got.key, got.encode()))
            extras.append(len(got.extra))
        else:
            errors.append(got)
    return ids, records, extras, errors


_CTXS = st.sampled_from(
    [
        CTX,
        IngestContext("org-1", "proj-1", "shop", NOW, -3_600_000, False, check_event_size=False),
        IngestContext("org-1", "proj-1", "shop", NOW),  # each event measured (a body over 100 KB)
    ]
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(events(), min_size=1, max_size=4), _CTXS, st.data())
def test_encode_events_equals_event_by_event(
    evs: list[dict[str, Any]], ctx: IngestContext, data: st.DataObject
) -> None:
    # the same layouts again with other values (and wrong types): exercises the cached layouts
    again = [dict(zip(e, data.draw(st.permutations(list(e.values()))), strict=True)) for e in evs]
    batch: list[Any] = [*evs, *again, "not an event"]
    expected = _one_by_one(batch, ctx)
    got = encode_events([dict(e) if isinstance(e, dict) else e for e in batch], ctx)
    assert got == expected


_FLOAT_KINDS = (Kind.FLOAT, Kind.DURATION, Kind.UNIT_FLOAT)


def test_encode_events_takes_the_layout_path_for_realistic_events(monkeypatch: pytest.MonkeyPatch) -> None:
    evs = bench_events("shop", 360)
    for i, e in enumerate(evs):
        e["event_id"] = f"id-{i}"
        if i % 7 == 0:
            e["sdk.tags"] = ["a", i]  # a non-scalar extra attribute (kept as JSON text)
            e["sdk.none"] = None  # dropped
        if i % 5 == 0:
            e["product_id"] = e.pop("project_id")  # the alias
        if i % 3 == 1:  # whole numbers in float fields, as JavaScript SDKs send them
            for key, value in e.items():
                spec = ingest.FIELDS_BY_NAME.get(key)
                if spec is not None and spec.kind in _FLOAT_KINDS:
                    e[key] = 2**60 + i if spec.kind is Kind.DURATION and i % 2 else int(value)
    kinds = {k: spec.kind for k, spec in ingest.FIELDS_BY_NAME.items()}
    whole = sum(type(v) is int and kinds.get(k) in _FLOAT_KINDS for e in evs for k, v in e.items())
    expected = _one_by_one([dict(e) for e in evs], CTX)
    assert len(expected[0]) == 360 and whole >= 40
    calls: list[int] = []
    monkeypatch.setattr(ingest, "validate_event", lambda i, *a, **k: calls.append(i))
    assert encode_events([dict(e) for e in evs], CTX) == expected
    assert calls == []  # no event needed the key-by-key path


def test_integers_in_float_fields_stored_as_floats_and_checked_as_such() -> None:
    """An integer where a float field is expected: converted in place (the key keeps its position), then
    checked as the float; a bool, a negative duration, a unit float above 1 or an integer too large for a
    double still end as event by event (errors included), and the variants cached per layout stay bounded."""
    base = {"event_id": "e", "project_id": "shop", "session.id": "s", "event.type": "performance"}
    cases: list[dict[str, Any]] = [
        {**base, "performance.lcp_ms": 1200, "page.path": "/", "performance.cls": 0, "ui.scroll.position": 1},
        {**base, "performance.lcp_ms": 1200.5, "page.path": "/", "performance.cls": -3, "ui.scroll.position": 0},
        {**base, "performance.lcp_ms": -1, "page.path": "/", "performance.cls": 0.1, "ui.scroll.position": 1.0},
        {**base, "performance.lcp_ms": 5, "page.path": "/", "performance.cls": 0.1, "ui.scroll.position": 2},
        {**base, "performance.lcp_ms": 5, "page.path": "/", "performance.cls": 10**400, "ui.scroll.position": 1},
        {**base, "performance.lcp_ms": True, "page.path": "/", "performance.cls": 1, "ui.scroll.position": 1},
        {
            **base,
            "performance.lcp_ms": 2**64 - 1,
            "page.path": "/",
            "performance.cls": -(2**63),
            "ui.scroll.position": 0,
        },
    ]
    batch = [dict(c, event_id=f"e{i}") for i, c in enumerate(cases * 2)]  # each variant again, from the cache
    expected = _one_by_one([dict(e) for e in batch], CTX)
    got = encode_events([dict(e) for e in batch], CTX)
    assert got == expected
    assert [e.error for e in got[3][:4]] == [
        "performance.lcp_ms: must not be negative",
        "ui.scroll.position: must be between 0 and 1",
        "performance.cls: must be a finite number",
        "performance.lcp_ms: must be a number",
    ]
    first = orjson.loads(got[1][0][1])["fields"]
    assert list(first.items()) == [
        ("performance.lcp_ms", 1200.0), ("page.path", "/"), ("performance.cls", 0.0), ("ui.scroll.position", 1.0)
    ]  # fmt: skip
    assert all(type(v) is float for k, v in first.items() if k != "page.path")
    layout = ingest._LAYOUTS[tuple(cases[0])]
    assert layout is not None and 1 <= len(layout.variants) <= ingest._MAX_VARIANTS


def test_int_variants_per_layout_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "_MAX_VARIANTS", 1)
    keys = ("event_id", "project_id", "session.id", "event.type", "performance.lcp_ms", "performance.fcp_ms")
    batch = [dict(zip(keys, (f"e{i}", "shop", "s", "performance", a, b), strict=True))
             for i, (a, b) in enumerate([(1.5, 2.5), (1, 2.5), (1.5, 2), (1, 2), (1, 2)])]  # fmt: skip
    ingest._LAYOUTS.pop(keys, None)
    assert encode_events([dict(e) for e in batch], CTX) == _one_by_one([dict(e) for e in batch], CTX)
    layout = ingest._LAYOUTS[keys]
    assert layout is not None and len(layout.variants) == 1


_BAD: dict[Any, list[Any]] = {
    Kind.STRING: ["x" * 3000, "", 5, None, ["a"]],
    Kind.INT: [1.5, 7.0, 2**63, -(2**63), "7", True, None],
    Kind.FLOAT: [7, "x", None, 1e308, False],
    Kind.DURATION: [-1.0, 7, 2**60, None, 0.0],
    Kind.UNIT_FLOAT: [1.5, 1, 0, -0.1, None],
    "event_id": ["", "x" * 256, 5, None],
    "project_id": ["other", "proj-1", "", None],
    "event.type": ["nope", "", None, 3],
    "event.timestamp": [
        *("bad", "", None, "2999-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "1960-01-01T00:00:00Z", 17),
        *("2026-01-02T03:04:05", "2026-01-02T03:04:05.123456789+02:00", "2026-01-02 03:04:05Z"),
    ],
    "session.id": ["", "s" * 256, None, 1],
    "metadata": [None, [1], {}, "x"],
    "sdk.version": [None, [1, {"a": 2}], "v" * 2000, 5, True, 1.5],
}


def test_encode_events_on_each_field_made_wrong() -> None:
    """Every key of realistic events (one per type) made wrong or unusual in turn, or left out, after the
    valid event (whose layout is then cached): the same records and first errors as event by event."""
    base = bench_events("shop", 18)
    batch: list[Any] = []
    for n, event in enumerate(base):
        event["event_id"] = f"id-{n}"
        batch.append(dict(event))
        for key in event:
            spec = ingest.FIELDS_BY_NAME.get(key)
            bad = list(_BAD[spec.kind] if spec else _BAD.get(key, _BAD["sdk.version"]))
            if spec is not None and spec.choices:
                bad.append("not-a-choice")
            for i, value in enumerate(bad):
                batch.append({**event, "event_id": f"id-{n}-{key}-{i}", key: value})
            without = {k: v for k, v in event.items() if k != key}
            batch += [without, {**without, "event_id": f"id-{n}-{key}-missing"}]  # a layout met twice
    batch += [{**base[0], "metadata": {"blob": "x" * MAX_EVENT_BYTES}}, {**base[1], "k": "y" * MAX_EVENT_BYTES}]
    ingest._LAYOUTS.clear()
    for ctx in (
        CTX,
        IngestContext("org-1", "proj-1", "shop", NOW, 5_000, False, check_event_size=False),
        IngestContext("org-1", "proj-1", "shop", NOW),
    ):
        expected = _one_by_one([dict(e) for e in batch], ctx)
        assert encode_events([dict(e) for e in batch], ctx) == expected
        assert len(expected[3]) > 500 and len(expected[0]) > 300  # both outcomes well represented


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
