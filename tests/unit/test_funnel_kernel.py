"""The linear per-entity algorithms (the design of the SQL) equal the exhaustive reference (pure).

Random small datasets with many ties, short windows, short session timeouts, exclusions and per-step
windows: whatever path rule 8 picks, the linear pass must pick the same one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from query_api.funnels.events import group_entities, prepare_events
from query_api.funnels.kernel import any_order_path, ordered_path, strict_path
from query_api.funnels.reference import any_order_path as reference_any_order
from query_api.funnels.reference import best_path, totals_paths, valid_paths
from query_api.funnels.spec import FunnelSpec, parse_funnel_spec
from schemas.records import EventRecord

T0 = 1_764_064_800_000
START = datetime.fromtimestamp(T0 / 1000, tz=UTC)
NAMES = "ABCX"


@st.composite
def datasets(draw: st.DrawFn) -> tuple[list[EventRecord], FunnelSpec]:
    n = draw(st.integers(0, 14))
    records = []
    for i in range(n):
        fields: dict[str, Any] = {"event.name": draw(st.sampled_from(NAMES)), "user.id": draw(st.sampled_from("uv"))}
        seq = draw(st.none() | st.integers(0, 2))
        if seq is not None:
            fields["event.sequence"] = seq
        ts = T0 + draw(st.integers(0, 12)) * 20_000
        session = draw(st.sampled_from(["s1", "s2"]))
        etype = draw(st.sampled_from(["custom", "error"]))
        records.append(
            EventRecord("o", "p", f"e{i:02d}", session, etype, ts, ts + draw(st.integers(0, 3)), fields=fields)
        )
    n_steps = draw(st.integers(2, 4))
    steps: list[Any] = []
    for k in range(n_steps):
        m = {"event_name": draw(st.sampled_from("ABC"))}
        w = draw(st.none() | st.sampled_from([20_000, 40_000, 100_000])) if k else None
        steps.append(m if w is None else {"matcher": m, "window_ms": w})
    exclusions = [
        {"matcher": draw(st.sampled_from([{"event_type": "error"}, {"event_name": "X"}])), "after_step": a}
        for a in draw(st.lists(st.integers(1, n_steps - 1), max_size=2))
    ]
    spec = parse_funnel_spec(
        {
            "steps": steps,
            "date_from": START,
            "date_to": START + timedelta(seconds=draw(st.sampled_from([100, 300]))),
            "mode": draw(st.sampled_from(["ordered", "strict"])),
            "count_by": draw(st.sampled_from(["users", "sessions", "totals"])),
            "window_ms": draw(st.sampled_from([40_000, 120_000, 600_000])),
            "session_timeout_ms": 60_000,
            "exclusions": exclusions,
        }
    )
    return records, spec


@settings(max_examples=600, deadline=None)
@given(datasets())
def test_linear_path_equals_exhaustive(data: tuple[list[EventRecord], FunnelSpec]) -> None:
    records, spec = data
    fast = strict_path if spec.mode == "strict" else ordered_path
    for evs in group_entities(prepare_events(records, spec), spec).values():
        assert fast(evs, spec) == best_path(evs, spec)


@settings(max_examples=300, deadline=None)
@given(datasets())
def test_totals_attempts_are_valid_paths(data: tuple[list[EventRecord], FunnelSpec]) -> None:
    """Every attempt of rule 9 is itself a valid path of rule 7 (its start, windows, exclusions, strictness)."""
    records, spec = data
    for evs in group_entities(prepare_events(records, spec), spec).values():
        valid = set(valid_paths(evs, spec))
        for attempt in totals_paths(evs, spec):
            assert attempt in valid


@st.composite
def any_order_data(draw: st.DrawFn) -> tuple[list[EventRecord], FunnelSpec]:
    records = []
    for i in range(draw(st.integers(0, 16))):
        ts = T0 + draw(st.integers(0, 12)) * 20_000
        fields = {"event.name": draw(st.sampled_from("ABCDX")), "user.id": draw(st.sampled_from("uv"))}
        etype = draw(st.sampled_from(["custom", "custom", "error"]))
        records.append(EventRecord("o", "p", f"e{i:02d}", "s1", etype, ts, ts, fields=fields))
    steps = [{"event_name": n} for n in draw(st.lists(st.sampled_from("ABCD"), min_size=2, max_size=4))]
    if draw(st.booleans()):
        steps.append({"event_type": "error"})  # with repeated names: events matching several steps
    spec = parse_funnel_spec(
        {
            "steps": steps,
            "date_from": START,
            "date_to": START + timedelta(seconds=draw(st.sampled_from([100, 300]))),
            "mode": "any_order",
            "window_ms": draw(st.sampled_from([40_000, 120_000, 600_000])),
        }
    )
    return records, spec


@settings(max_examples=600, deadline=None)
@given(any_order_data())
def test_any_order_sliding_window_equals_reference(data: tuple[list[EventRecord], FunnelSpec]) -> None:
    records, spec = data
    for evs in group_entities(prepare_events(records, spec), spec).values():
        fast = any_order_path(evs, spec)
        assert fast is None or fast == reference_any_order(evs, spec)
