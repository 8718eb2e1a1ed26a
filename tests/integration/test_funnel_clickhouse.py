"""The ClickHouse funnel evaluator equals the Python reference, on real chDB.

Random small datasets (a fresh tenant per example, stored with the warehouse sink) exercise every mode,
counting unit, window kind, exclusions, breakdown attributions, cohorts, identity merges, ties, segment
splits and entity pages; a fixed dataset checks hand-computed numbers and the tenant boundary.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from productgraph.connections import clickhouse_client
from query_api.analytics import Tenant
from query_api.funnels import FunnelSpec, parse_funnel_spec, run_funnel
from query_api.funnels.reference import evaluate
from query_api.funnels.result import EntityRef, StepResult
from schemas.records import EventRecord
from stream_processors.sinks import ClickHouseEventSink
from tests.conftest import Servers

pytestmark = pytest.mark.integration

# A week ago at 10:00 UTC: recent enough for the events table's one-year TTL, fixed within a day.
START = (datetime.now(UTC) - timedelta(days=7)).replace(hour=10, minute=0, second=0, microsecond=0)
T0 = int(START.timestamp() * 1000)


@pytest.fixture(scope="module")
def ch(servers: Servers) -> Client:
    return clickhouse_client(servers.clickhouse_url)


async def _store(ch: Client, records: list[EventRecord]) -> None:
    sink = ClickHouseEventSink(ch)
    for r in records:
        sink.add(r)
    await sink.flush()


def _retenant(records: list[EventRecord], t: Tenant) -> list[EventRecord]:
    return [dataclasses.replace(r, org_id=t.org_id, project_id=t.project_id) for r in records]


def _compare(ch: Client, stored: list[EventRecord], spec: FunnelSpec, t: Tenant) -> Any:
    """The answer from ClickHouse for tenant ``t``, which must equal the reference's over ``stored``."""
    got = asyncio.run(run_funnel(ch, t, spec))
    expected = evaluate(stored, spec)
    assert got == expected
    # A funnel chart's request (counts and rates only): the levels-only query where it applies, the same
    # numbers, no times and no refs.
    chart = asyncio.run(run_funnel(ch, t, spec, counts_only=True))
    assert [_chart(s) for s in chart.steps] == [_chart(s) for s in expected.steps]
    return got


def _chart(s: StepResult) -> tuple[int, int, float, float, int]:
    return (s.step, s.count, s.conversion_from_first, s.conversion_from_previous, s.drop_off)


# --- random data ----------------------------------------------------------------------------------------


@st.composite
def _records(draw: st.DrawFn) -> list[EventRecord]:
    out: list[EventRecord] = []
    for i in range(draw(st.integers(0, 16))):
        fields: dict[str, Any] = {"event.name": draw(st.sampled_from("ABCX"))}
        user, anon = draw(st.sampled_from(["u1", "u2", None])), draw(st.sampled_from(["a1", "a2", None]))
        if user:
            fields["user.id"] = user
        if anon:
            fields["user.anonymous_id"] = anon
        if (seq := draw(st.none() | st.integers(0, 2))) is not None:
            fields["event.sequence"] = seq
        if draw(st.booleans()):
            fields["page.path"] = draw(st.sampled_from(["/a", "/a/b", "/b"]))
        meta = {} if draw(st.booleans()) else {"plan": draw(st.sampled_from(["free", "pro", ""]))}
        ts = T0 + draw(st.integers(0, 15)) * 20_000 + draw(st.sampled_from([0, 0, 0, 1]))
        rec = EventRecord("o", "p", f"e{i:02d}", draw(st.sampled_from(["s1", "s2", "s3"])),
                          draw(st.sampled_from(["custom", "error", "page.view"])), ts,
                          ts + draw(st.integers(0, 2)), fields=fields, metadata=meta)  # fmt: skip
        out.append(rec)
        if draw(st.integers(0, 9)) == 0:
            out.append(rec)  # a redelivery: counted once
    return out


MATCHERS: list[dict[str, str]] = [
    {"event_name": "A"},
    {"event_name": "B"},
    {"event_name": "C"},
    {"event_type": "custom"},
    {"page_path": "/a*", "page_path_mode": "glob"},
]


@st.composite
def _specs(draw: st.DrawFn) -> FunnelSpec:
    mode = draw(st.sampled_from(["ordered", "strict", "any_order"]))
    count_by = draw(st.sampled_from(["users", "sessions"] if mode == "any_order" else ["users", "sessions", "totals"]))
    n = draw(st.integers(2, 4))
    steps: list[Any] = []
    for k in range(n):
        m = draw(st.sampled_from(MATCHERS))
        w = draw(st.none() | st.sampled_from([20_000, 60_000])) if k and mode != "any_order" else None
        steps.append(m if w is None else {"matcher": m, "window_ms": w})
    exclusions = []
    if mode != "any_order":
        exclusions = [
            {"matcher": draw(st.sampled_from([{"event_type": "error"}, {"event_name": "X"}])), "after_step": a}
            for a in draw(st.lists(st.integers(1, n - 1), max_size=2))
        ]
    breakdown = draw(st.none() | st.sampled_from([
        {"property": "metadata.plan"}, {"property": "metadata.plan", "attribution": "last_step"},
        {"property": "page.path", "attribution": "step", "step": 2}, {"property": "event_type"}]))  # fmt: skip
    cohort = draw(st.none() | st.sampled_from([["u1"], ["u1", "u2"], ["nobody"]]))
    return parse_funnel_spec(
        {
            "steps": steps,
            "date_from": START,
            "date_to": START + timedelta(seconds=draw(st.sampled_from([100, 400]))),
            "mode": mode,
            "count_by": count_by,
            "window_ms": draw(st.sampled_from([40_000, 120_000, 600_000])),
            "session_timeout_ms": 60_000,
            "exclusions": exclusions,
            "breakdown": breakdown,
            "cohort_user_ids": cohort,
            "entities_limit": draw(st.integers(0, 3)),
            "entities_offset": draw(st.integers(0, 1)),
        }
    )


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=_records(), spec=_specs())
def test_clickhouse_equals_reference(ch: Client, records: list[EventRecord], spec: FunnelSpec) -> None:
    t = Tenant(str(uuid.uuid4()), str(uuid.uuid4()))  # a fresh tenant per example
    stored = _retenant(records, t)
    # Redeliveries arrive in a later batch: a second part, so the evaluator (which reads without FINAL)
    # must drop the copies itself.  (Copies inside one insert collapse at insert time.)
    ids: set[str] = set()
    first: list[EventRecord] = []
    again: list[EventRecord] = []
    for r in stored:
        (again if r.event_id in ids else first).append(r)
        ids.add(r.event_id)
    for batch in (first, again):
        if batch:
            asyncio.run(_store(ch, batch))
    _compare(ch, stored, spec, t)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=_records(), spec=_specs())
def test_chart_counts_equal_reference(ch: Client, records: list[EventRecord], spec: FunnelSpec) -> None:
    """Every drawn spec made one that the levels-only query answers (ordered, users or sessions, no
    breakdown), redeliveries in a second part: its counts equal the reference's."""
    spec = dataclasses.replace(
        spec, mode="ordered", breakdown=None, count_by="users" if spec.count_by == "totals" else spec.count_by
    )
    t = Tenant(str(uuid.uuid4()), str(uuid.uuid4()))
    stored = _retenant(records, t)
    if stored:  # every event once, then all again (copies are identical): a second part to dedup
        for batch in (list({r.event_id: r for r in stored}.values()), stored):
            asyncio.run(_store(ch, batch))
    chart = asyncio.run(run_funnel(ch, t, spec, counts_only=True))
    assert all(s.median_ms_from_first is None for s in chart.steps)  # the levels-only path: no times
    assert [_chart(s) for s in chart.steps] == [_chart(s) for s in evaluate(stored, spec).steps]


# --- a fixed dataset with hand-computed answers -----------------------------------------------------------


def _ev(i: int, name: str, t_s: float, user: str, session: str, etype: str = "custom", **meta: str) -> EventRecord:
    ts = T0 + int(t_s * 1000)
    return EventRecord("o", "p", f"f{i:03d}", session, etype, ts, ts + 500,
                       fields={"event.name": name, "user.id": user}, metadata=dict(meta))  # fmt: skip


def test_hand_computed_answers_and_tenant_boundary(ch: Client, tenant: dict[str, str]) -> None:
    t = Tenant(tenant["org_id"], tenant["project_id"])
    events = [
        _ev(1, "A", 0, "u1", "s1", plan="free"), _ev(2, "B", 10, "u1", "s1"), _ev(3, "C", 20, "u1", "s1"),
        _ev(4, "A", 30, "u1", "s1"), _ev(5, "B", 40, "u1", "s1"),  # u1: a second attempt reaching B
        _ev(6, "A", 0, "u2", "s2", plan="pro"), _ev(7, "X", 5, "u2", "s2", "error"), _ev(8, "B", 10, "u2", "s2"),
        _ev(9, "A", 0, "u3", "s3", plan="pro"), _ev(10, "A", 0, "u3", "s3"),  # ties: f009 < f010 by event id
        _ev(11, "C", 1, "u3", "s3"), _ev(12, "B", 2, "u3", "s3"),
    ]  # fmt: skip
    stored = _retenant(events, t)
    asyncio.run(_store(ch, stored))
    base = {"steps": [{"event_name": "A"}, {"event_name": "B"}, {"event_name": "C"}],
            "date_from": START, "date_to": START + timedelta(days=1)}  # fmt: skip
    # users: u1 A→B→C (3), u2 A→B (2), u3 A→B (C came before B) (2)
    r = _compare(ch, stored, parse_funnel_spec(base), t)
    assert [s.count for s in r.steps] == [3, 3, 1]
    # u1 10 s, u2 10 s, u3 2 s → median 10 s, mean 22/3 s
    assert (r.steps[1].median_ms_from_previous, r.steps[1].mean_ms_from_previous) == (10_000, 22_000 / 3)
    # strict: u2's error sits between A and B; u3's C sits between A and B → only u1 reaches B
    strict = parse_funnel_spec({**base, "mode": "strict"})
    assert [s.count for s in _compare(ch, stored, strict, t).steps] == [3, 1, 1]
    # exclusion of errors between steps 1 and 2: u2 stops at A
    excl = parse_funnel_spec({**base, "exclusions": [{"matcher": {"event_type": "error"}, "after_step": 1}]})
    r = _compare(ch, stored, excl, t)
    assert [s.count for s in r.steps] == [3, 2, 1]
    assert r.steps[1].dropped == (EntityRef("user:u2", "s2"),)
    # totals: u1 two attempts (3 and 2), u2 one (2), u3 one (2) → [4, 4, 1]
    totals = parse_funnel_spec({**base, "count_by": "totals"})
    assert [s.count for s in _compare(ch, stored, totals, t).steps] == [4, 4, 1]
    # any order within 60 s: u1 3, u2 2 (no C), u3 3 (A, C, B)
    anyo = parse_funnel_spec({**base, "mode": "any_order", "window_ms": 60_000})
    assert [s.count for s in _compare(ch, stored, anyo, t).steps] == [3, 3, 2]
    # breakdown by plan on step 1: u1 free [1,1,1]; u2 pro [1,1,0]; u3 has two A's at the same instant,
    # f009 (plan=pro) then f010 (no plan) by event id, and rule 8 takes the latest start: (none) [1,1,0]
    bd = parse_funnel_spec({**base, "breakdown": {"property": "metadata.plan"}})
    groups = {g.value: [s.count for s in g.steps] for g in _compare(ch, stored, bd, t).breakdown}
    assert groups == {"free": [1, 1, 1], "pro": [1, 1, 0], "(none)": [1, 1, 0]}
    # another tenant sees nothing of it
    empty = asyncio.run(run_funnel(ch, Tenant(tenant["org_id"], str(uuid.uuid4())), parse_funnel_spec(base)))
    assert [s.count for s in empty.steps] == [0, 0, 0]


@pytest.mark.parametrize("n_steps", [30, 50])
def test_long_funnels_answer(ch: Client, n_steps: int) -> None:
    """u1 does every step in order (with noise and a repeated step), u2 stops after 17 steps, u3 does them
    in reverse: users [3, 2, ..., 2, 1, ...]; every mode over the same data equals the reference."""
    t = Tenant(str(uuid.uuid4()), str(uuid.uuid4()))
    events, i = [], 0
    for user, names in (
        ("u1", [f"s{k}" for k in range(n_steps)] + ["s3", "noise"]),
        ("u2", [f"s{k}" for k in range(17)]),
        ("u3", [f"s{k}" for k in reversed(range(n_steps))]),
    ):
        for j, name in enumerate(names):
            i += 1
            events.append(_ev(i, name, j * 10, user, f"sess-{user}"))
    stored = _retenant(events, t)
    asyncio.run(_store(ch, stored))
    base = {"steps": [{"event_name": f"s{k}"} for k in range(n_steps)], "date_from": START,
            "date_to": START + timedelta(days=1)}  # fmt: skip
    r = _compare(ch, stored, parse_funnel_spec(base), t)
    assert [s.count for s in r.steps] == [3] + [2] * 16 + [1] * (n_steps - 17)
    assert r.steps[-1].median_ms_from_first == (n_steps - 1) * 10_000
    for extra in ({"mode": "strict"}, {"count_by": "sessions"}, {"count_by": "totals"}, {"mode": "any_order"}):
        _compare(ch, stored, parse_funnel_spec({**base, **extra}), t)
