"""The funnel reference evaluator on hand-computed data (pure).  Each expected number is worked out by hand
in the comment next to it, from ../shared/design/analytics-semantics.md ("Funnels", rules 1-11).

Steps are matched on ``event.name`` (A, B, C, ...) unless said otherwise; times are seconds after T0.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from query_api.funnels.events import tie_hash
from query_api.funnels.reference import evaluate
from query_api.funnels.result import EntityRef, FunnelResult
from query_api.funnels.spec import FunnelSpec, parse_funnel_spec
from schemas.records import EventRecord

T0 = 1_764_064_800_000  # 2025-11-25T10:00:00Z
DAY0 = datetime.fromtimestamp(T0 / 1000, tz=UTC)
MIN = 60
_n = 0


def ev(
    name: str,
    t: float,
    user: str | None = "u1",
    session: str = "s1",
    *,
    anon: str | None = None,
    seq: int | None = None,
    recv: int | None = None,
    eid: str | None = None,
    etype: str = "custom",
    meta: dict[str, Any] | None = None,
    **fields: Any,
) -> EventRecord:
    """An accepted event named ``name`` at T0 + ``t`` seconds."""
    global _n
    _n += 1
    f: dict[str, Any] = {"event.name": name, **{k.replace("_", "."): v for k, v in fields.items()}}
    if user is not None:
        f["user.id"] = user
    if anon is not None:
        f["user.anonymous_id"] = anon
    if seq is not None:
        f["event.sequence"] = seq
    ts = T0 + int(t * 1000)
    return EventRecord(
        org_id="o",
        project_id="p",
        event_id=eid or f"e{_n:05d}",
        session_id=session,
        event_type=etype,
        ts_ms=ts,
        received_ms=recv if recv is not None else ts + 1000,
        fields=f,
        metadata=meta or {},
    )


def spec(*names: str, **kw: Any) -> FunnelSpec:
    """Steps on event names; the range is the whole of DAY0 unless given."""
    steps = kw.pop("steps", None) or [{"event_name": n} for n in names]
    kw.setdefault("date_from", DAY0)
    kw.setdefault("date_to", DAY0 + timedelta(days=1))
    return parse_funnel_spec({"steps": steps, **kw})


def counts(r: FunnelResult) -> list[int]:
    return [s.count for s in r.steps]


def test_ordered_users_counts_rates_drop_off_and_times() -> None:
    events = [
        ev("A", 0, "u1"), ev("B", 10, "u1"), ev("C", 20, "u1"),  # u1: A→B→C, reaches 3
        ev("A", 0, "u2"), ev("C", 5, "u2"), ev("B", 10, "u2"),  # u2: C before B does not count: reaches 2
        ev("B", 0, "u3"), ev("A", 5, "u3"),  # u3: B before A: reaches 1
        ev("C", 0, "u4"),  # u4: never does A: not counted
    ]  # fmt: skip
    r = evaluate(events, spec("A", "B", "C"))
    assert counts(r) == [3, 2, 1]
    s1, s2, s3 = r.steps
    assert (s1.conversion_from_first, s1.conversion_from_previous, s1.drop_off) == (1.0, 1.0, 0)  # rule 11
    assert (s2.conversion_from_first, s2.conversion_from_previous, s2.drop_off) == (0.666667, 0.666667, 1)  # 2/3
    assert (s3.conversion_from_first, s3.conversion_from_previous, s3.drop_off) == (0.333333, 0.5, 1)  # 1/3, 1/2
    # step 2: u1 10 s, u2 10 s after A; step 3: u1 10 s after B, 20 s after A
    assert (s2.median_ms_from_previous, s2.mean_ms_from_previous) == (10_000, 10_000)
    assert (s3.median_ms_from_previous, s3.median_ms_from_first, s3.mean_ms_from_first) == (10_000, 20_000, 20_000)
    assert s1.median_ms_from_previous is None and s1.mean_ms_from_first is None
    # who: converted at step 2 = u1, u2; dropped at step 2 = u3 (link to the session of its step 1)
    assert s2.converted == (EntityRef("user:u1", "s1"), EntityRef("user:u2", "s1"))
    assert s2.dropped == (EntityRef("user:u3", "s1"),)
    assert s3.dropped == (EntityRef("user:u2", "s1"),)
    assert s1.dropped == ()


def test_median_of_even_count_and_mean() -> None:
    # four users convert A→B after 10, 20, 30 and 100 s: median (20+30)/2 = 25 s, mean 160/4 = 40 s
    events = [e for i, d in enumerate([10, 20, 30, 100]) for e in (ev("A", 0, f"u{i}"), ev("B", d, f"u{i}"))]
    s2 = evaluate(events, spec("A", "B")).steps[1]
    assert (s2.median_ms_from_previous, s2.mean_ms_from_previous) == (25_000, 40_000)
    assert (s2.median_ms_from_first, s2.mean_ms_from_first) == (25_000, 40_000)


def test_optimized_re_entry_and_latest_start() -> None:
    # window 120 s: A(0)→B(150) is too late, but the later A(100)→B(150) is a valid path (any step 1 may
    # start one): converted, 50 s
    r = evaluate([ev("A", 0), ev("A", 100), ev("B", 150)], spec("A", "B", window_ms=120_000))
    assert counts(r) == [1, 1] and r.steps[1].median_ms_from_previous == 50_000
    # both A(0) and A(10) reach B(20) first: rule 8 takes the latest start, so 10 s, not 20 s
    r = evaluate([ev("A", 0), ev("A", 10), ev("B", 20)], spec("A", "B"))
    assert r.steps[1].median_ms_from_previous == 10_000


def test_global_window_is_inclusive() -> None:
    # exactly 60 s apart with a 60 s window: converted; 60.001 s: not
    assert counts(evaluate([ev("A", 0), ev("B", 60)], spec("A", "B", window_ms=60_000))) == [1, 1]
    assert counts(evaluate([ev("A", 0), ev("B", 60.001)], spec("A", "B", window_ms=60_000))) == [1, 0]


def test_window_starts_at_the_first_step() -> None:
    # A(0) B(50) C(100), window 60 s: C is 100 s after A (B→C is only 50 s): reaches 2
    r = evaluate([ev("A", 0), ev("B", 50), ev("C", 100)], spec("A", "B", "C", window_ms=60_000))
    assert counts(r) == [1, 1, 0]


def test_per_step_window_needs_the_later_intermediate() -> None:
    # step 3 must follow step 2 within 10 s.  A(0) B(10) B(50) C(55): A→B(10)→C is 45 s, too slow, but
    # A→B(50)→C(55) is 5 s: reaches 3, through B(50) (times 50 s and 5 s; first→C 55 s)
    steps = [{"event_name": "A"}, {"event_name": "B"}, {"matcher": {"event_name": "C"}, "window_ms": 10_000}]
    r = evaluate([ev("A", 0), ev("B", 10), ev("B", 50), ev("C", 55)], spec(steps=steps))
    assert counts(r) == [1, 1, 1]
    assert [s.median_ms_from_previous for s in r.steps] == [None, 50_000, 5_000]
    assert r.steps[2].median_ms_from_first == 55_000
    # per-step window is inclusive too: exactly 10 s
    r = evaluate([ev("A", 0), ev("B", 10), ev("C", 20)], spec(steps=steps))
    assert counts(r) == [1, 1, 1]


def test_ties_ordered_by_sequence_then_receive_order() -> None:
    # A and B at the same millisecond: event.sequence decides (B seq 1 comes before A seq 2 → no A→B)
    assert counts(evaluate([ev("A", 5, seq=2), ev("B", 5, seq=1)], spec("A", "B"))) == [1, 0]
    assert counts(evaluate([ev("A", 5, seq=1), ev("B", 5, seq=2)], spec("A", "B"))) == [1, 1]
    # a missing sequence is 0: B (no sequence) before A (sequence 3)
    assert counts(evaluate([ev("A", 5, seq=3), ev("B", 5)], spec("A", "B"))) == [1, 0]
    # same timestamp and sequence: receive order (B received first → B, A → not converted)
    assert counts(evaluate([ev("A", 5, recv=T0 + 9), ev("B", 5, recv=T0 + 8)], spec("A", "B"))) == [1, 0]
    assert counts(evaluate([ev("A", 5, recv=T0 + 8), ev("B", 5, recv=T0 + 9)], spec("A", "B"))) == [1, 1]
    # everything equal: the event id's cityHash64 breaks the tie (x2's is the smaller), the same way every run
    assert tie_hash("x2") < tie_hash("x1")
    tie = [ev("B", 5, recv=T0, eid="x2"), ev("A", 5, recv=T0, eid="x1")]
    assert counts(evaluate(tie, spec("A", "B"))) == counts(evaluate(list(reversed(tie)), spec("A", "B"))) == [1, 0]


def test_exclusions_strictly_between_and_re_entry() -> None:
    excl = [{"matcher": {"event_type": "error"}, "after_step": 1}]
    err = {"etype": "error"}
    # A, error, B: the only path has the excluded event between steps 1 and 2: reaches 1
    assert counts(evaluate([ev("A", 0), ev("E", 5, **err), ev("B", 10)], spec("A", "B", exclusions=excl))) == [1, 0]
    # A, error, A, B: the path from the second A is valid: reaches 2 (the entity keeps valid paths' steps)
    events = [ev("A", 0), ev("E", 5, **err), ev("A", 6), ev("B", 10)]
    r = evaluate(events, spec("A", "B", exclusions=excl))
    assert counts(r) == [1, 1] and r.steps[1].median_ms_from_previous == 4_000
    # the exclusion sits between steps 2 and 3 only: A, B, error, C reaches 2
    excl23 = [{"matcher": {"event_type": "error"}, "after_step": 2}]
    r = evaluate([ev("A", 0), ev("B", 1), ev("E", 2, **err), ev("C", 3)], spec("A", "B", "C", exclusions=excl23))
    assert counts(r) == [1, 1, 0]
    # an exclusion matcher that also matches the steps themselves: they are not strictly between
    all_custom = [{"matcher": {"event_type": "custom"}, "after_step": 1}]
    assert counts(evaluate([ev("A", 0), ev("B", 10)], spec("A", "B", exclusions=all_custom))) == [1, 1]
    # ... but a third custom event between them is
    assert counts(evaluate([ev("A", 0), ev("Z", 5), ev("B", 10)], spec("A", "B", exclusions=all_custom))) == [1, 0]


def test_strict_mode_next_event_of_the_segment() -> None:
    events = [
        ev("A", 0, "u1", "s1"), ev("B", 5, "u1", "s1"), ev("C", 10, "u1", "s1"),  # u1: consecutive: 3
        ev("A", 0, "u2", "s2"), ev("X", 2, "u2", "s2"), ev("B", 5, "u2", "s2"),  # u2: X between A and B: 1
        # u3: another session's event between A and B does not break the chain of s3: 2
        ev("A", 0, "u3", "s3"), ev("X", 1, "u3", "s4"), ev("B", 2, "u3", "s3"),
        # u4: B is the next event of the session but 31 min later, in a new segment: 1
        ev("A", 0, "u4", "s5"), ev("B", 31 * MIN, "u4", "s5"),
    ]  # fmt: skip
    assert counts(evaluate(events, spec("A", "B", "C", mode="strict"))) == [4, 2, 1]
    # ordered mode lets other events come between: u1 3, u2 2, u3 2, u4 2
    assert counts(evaluate(events, spec("A", "B", "C"))) == [4, 4, 1]


def test_segments_split_on_gap_and_on_24_hours() -> None:
    # one session: A(0) and B(30 min) are one segment (gap = timeout is not strictly greater)
    assert counts(evaluate([ev("A", 0), ev("B", 30 * MIN)], spec("A", "B", mode="strict"))) == [1, 1]
    # a gap of 30 min + 1 ms splits: sessions count sees A in segment 1 and B in segment 2
    r = evaluate([ev("A", 0), ev("B", 30 * MIN + 0.001)], spec("A", "B", count_by="sessions"))
    assert counts(r) == [1, 0] and r.steps[1].dropped == (EntityRef("session:s1#1", "s1"),)
    # events every 20 min for 25 h: no gap, but the segment is cut after 24 h from its start; A at 23h40,
    # B at 24h20 (more than 24 h after the start at 0) are in different segments → sessions: not converted
    steady = [ev("Z", i * 20 * MIN) for i in range(76) if i not in (71, 73)]
    seq = [*steady, ev("A", 71 * 20 * MIN), ev("B", 73 * 20 * MIN)]
    wide = {"date_to": DAY0 + timedelta(days=2)}
    assert counts(evaluate(seq, spec("A", "B", count_by="sessions", **wide))) == [1, 0]
    assert counts(evaluate(seq, spec("A", "B", count_by="users", **wide))) == [1, 1]


def test_totals_users_sessions() -> None:
    events = [
        # u1, session s1: A B C (attempt 1 converts) then A B (attempt 2 reaches 2)
        ev("A", 0, "u1", "s1"), ev("B", 10, "u1", "s1"), ev("C", 20, "u1", "s1"),
        ev("A", 30, "u1", "s1"), ev("B", 40, "u1", "s1"),
            # u1, session s2, 50 min later: A (past the 10 min window of attempt 2: a third attempt, step 1 only)
        ev("A", 50 * MIN, "u1", "s2"),
        # u2: A A B: the newer A replaces the start of the attempt at step 1 (one attempt, 5 s to B)
        ev("A", 0, "u2", "s3"), ev("A", 10, "u2", "s3"), ev("B", 15, "u2", "s3"),
    ]  # fmt: skip
    # totals: u1 3 attempts (levels 3, 2, 1), u2 1 attempt (level 2) → [4, 3, 1]
    r = evaluate(events, spec("A", "B", "C", count_by="totals", window_ms=10 * MIN * 1000))
    assert counts(r) == [4, 3, 1]
    # step-2 times: 10 s, 10 s (u1), 5 s (u2) → median 10 s, mean 25/3 s
    assert r.steps[1].median_ms_from_previous == 10_000 and r.steps[1].mean_ms_from_previous == 25_000 / 3
    # users: u1 reaches 3, u2 reaches 2 → [2, 2, 1]
    assert counts(evaluate(events, spec("A", "B", "C", window_ms=10 * MIN * 1000))) == [2, 2, 1]
    # sessions: s1 reaches 3, s2 reaches 1, s3 reaches 2 → [3, 2, 1]
    assert counts(evaluate(events, spec("A", "B", "C", count_by="sessions"))) == [3, 2, 1]


def test_totals_attempts_do_not_overlap_and_end_with_the_window() -> None:
    # window 60 s: A(0) B(10) is at step 2; A(30) is ignored (no overlap); A(100) is past the window, so the
    # first attempt ends at step 2 and A(100) starts the second, which reaches step 1 only → [2, 1, 0]
    events = [ev("A", 0), ev("B", 10), ev("A", 30), ev("A", 100), ev("C", 110)]
    assert counts(evaluate(events, spec("A", "B", "C", count_by="totals", window_ms=60_000))) == [2, 1, 0]
    # without the window the first attempt stays open and converts at C(110); the A's are ignored → [1, 1, 1]
    assert counts(evaluate(events, spec("A", "B", "C", count_by="totals"))) == [1, 1, 1]
    # an exclusion between steps 2 and 3 ends the attempt at step 2; the next A starts a new one
    excl = [{"matcher": {"event_type": "error"}, "after_step": 2}]
    events = [ev("A", 0), ev("B", 1), ev("E", 2, etype="error"), ev("A", 3), ev("B", 4), ev("C", 5)]
    assert counts(evaluate(events, spec("A", "B", "C", count_by="totals", exclusions=excl))) == [2, 2, 1]


def test_totals_strict() -> None:
    # A B C A X B: first attempt converts; second attempt: A then X (not B) breaks the chain → level 1
    events = [ev(n, i) for i, n in enumerate("ABCAXB")]
    assert counts(evaluate(events, spec("A", "B", "C", count_by="totals", mode="strict"))) == [2, 1, 1]
    # A B X A B C: attempt 1 at step 2 ends at X (next event of its session, not C); A B C converts
    events = [ev(n, i) for i, n in enumerate("ABXABC")]
    assert counts(evaluate(events, spec("A", "B", "C", count_by="totals", mode="strict"))) == [2, 2, 1]


def test_identity_merges_anonymous_into_user() -> None:
    events = [
        ev("A", 0, None, "s1", anon="a1"),  # anonymous a1 does A
        ev("B", 10, "u1", "s2", anon="a1"),  # later logs in as u1 (both ids on one event) and does B
        ev("A", 0, None, "s3", anon="a2"), ev("B", 5, None, "s3", anon="a2"),  # a2 never logs in
        ev("A", 0, None, "s4"), ev("B", 5, None, "s4"),  # no ids at all: the session is the person
    ]  # fmt: skip
    r = evaluate(events, spec("A", "B"))
    assert counts(r) == [3, 3]  # user:u1 (merged), anonymous:a2, session:s4
    assert r.steps[1].converted == (
        EntityRef("anonymous:a2", "s3"), EntityRef("session:s4", "s4"), EntityRef("user:u1", "s2"),
    )  # fmt: skip
    assert r.steps[0].converted[-1] == EntityRef("user:u1", "s1")  # step 1 happened in s1


def test_any_order() -> None:
    events = [
        ev("C", 0, "u1"), ev("A", 10, "u1"), ev("B", 20, "u1"),  # u1: all three in another order: 3
        ev("B", 0, "u2"), ev("B", 5, "u2"),  # u2: one distinct step twice: 1
        ev("A", 0, "u3"), ev("C", 100, "u3"),  # u3: C is outside the 60 s window of A: 1
        ev("B", 0, "u4"), ev("A", 50, "u4"), ev("C", 100, "u4"),  # u4: B(0), A(50) in one window; C is 100 s after B: 2
    ]  # fmt: skip
    r = evaluate(events, spec("A", "B", "C", mode="any_order", window_ms=60_000))
    assert counts(r) == [4, 2, 1]
    # level 2 ("2 distinct steps"): u1 10 s after the first (C→A); u4: B(0)'s window reaches 2 at A(50), before
    # A(50)'s window does at C(100) (rule 8: reached first), so 50 s → median 30 s; level 3: u1 20 s
    assert r.steps[1].median_ms_from_previous == 30_000 and r.steps[2].median_ms_from_first == 20_000


def test_any_order_one_event_matches_one_step() -> None:
    # step 1 = any custom event, step 2 = name X: a single X event matches both matchers but counts once
    steps = [{"event_type": "custom"}, {"event_name": "X"}]
    assert counts(evaluate([ev("X", 0)], spec(steps=steps, mode="any_order"))) == [1, 0]
    # two X events: one for each step
    assert counts(evaluate([ev("X", 0), ev("X", 1)], spec(steps=steps, mode="any_order"))) == [1, 1]
    # Y then X: Y can only be step 1; X takes step 2 (a matching, not first-come assignment)
    assert counts(evaluate([ev("X", 0), ev("Y", 1)], spec(steps=steps, mode="any_order"))) == [1, 1]


def test_breakdown_attribution() -> None:
    events = [
        ev("A", 0, "u1", meta={"plan": "free"}), ev("B", 5, "u1", meta={"plan": "pro"}),
        ev("A", 0, "u2"), ev("B", 5, "u2", meta={"plan": "pro"}),
        ev("A", 0, "u3", meta={"plan": "free"}),
    ]  # fmt: skip
    groups = lambda r: {g.value: [s.count for s in g.steps] for g in r.breakdown}  # noqa: E731
    first = evaluate(events, spec("A", "B", breakdown={"property": "metadata.plan"}))
    # first step: u1 free, u2 (none) (no plan on its A), u3 free
    assert groups(first) == {"free": [2, 1], "(none)": [1, 1]}
    assert [g.value for g in first.breakdown] == ["free", "(none)"]  # largest step-1 count first
    last = evaluate(events, spec("A", "B", breakdown={"property": "metadata.plan", "attribution": "last_step"}))
    # last reached step: u1 B pro, u2 B pro, u3 A free
    assert groups(last) == {"pro": [2, 2], "free": [1, 0]}
    step2 = evaluate(events, spec("A", "B", breakdown={"property": "metadata.plan", "attribution": "step", "step": 2}))
    # step 2: u1 pro, u2 pro; u3 never reached step 2: (none)
    assert groups(step2) == {"pro": [2, 2], "(none)": [1, 0]}
    # a column property (page.path given dotted or as the column)
    events = [ev("A", 0, "u1", page_path="/a"), ev("A", 0, "u2")]
    r = evaluate(events, spec("A", "B", breakdown={"property": "page.path"}))
    assert groups(r) == {"/a": [1, 0], "(none)": [1, 0]}


def test_date_range_and_cohort_and_dedup() -> None:
    day = 24 * 3600
    events = [
        ev("A", -10, "u1"), ev("B", 0, "u1"),  # u1: A before the range: never starts
        ev("A", day - 1, "u2"), ev("B", day + 5, "u2"),  # u2: A in range, B after the end within 24 h: 2
        ev("A", day + 1, "u3"), ev("B", day + 2, "u3"),  # u3: A after the end: never starts
    ]  # fmt: skip
    assert counts(evaluate(events, spec("A", "B"))) == [1, 1]
    # cohort: only u1, u2 (u2 converts)
    events.append(ev("A", 0, "u4"))
    assert counts(evaluate(events, spec("A", "B", cohort_user_ids=["u2", "u4"]))) == [2, 1]
    # the same event delivered twice counts once: steps A, B, B need two B events, u9 has one (sent twice)
    dup = ev("B", 1, "u9", eid="dup")
    assert counts(evaluate([ev("A", 0, "u9"), dup, dup], spec("A", "B", "B"))) == [1, 1, 0]


def test_entity_pages_and_zero_counts() -> None:
    events = [ev("A", 0, f"u{i}", f"s{i}") for i in range(5)]
    r = evaluate(events, spec("A", "B", entities_limit=2, entities_offset=1))
    assert r.steps[0].converted == (EntityRef("user:u1", "s1"), EntityRef("user:u2", "s2"))
    assert r.steps[1].dropped == (EntityRef("user:u1", "s1"), EntityRef("user:u2", "s2"))
    # nothing at all: rates 0 except step 1 (rule 11), no times
    empty = evaluate([], spec("A", "B"))
    assert [(s.count, s.conversion_from_first, s.conversion_from_previous) for s in empty.steps] == [
        (0, 1.0, 1.0),
        (0, 0.0, 0.0),
    ]


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"steps": [{"event_name": "A"}]}, "steps: needs 2 to 50 steps, got 1"),
        ({"steps": [{"event_name": "A"}] * 51}, "steps: needs 2 to 50 steps, got 51"),
        ({"steps": [{"event_name": "A"}, {"nope": 1}]}, "steps[2]: nope: unknown matcher field"),
        ({"mode": "fast"}, "mode: must be ordered, strict or any_order"),
        ({"count_by": "totals", "mode": "any_order"}, "count_by: totals needs mode ordered or strict"),
        ({"window_ms": 0}, "window_ms: must be an integer in 1..7776000000"),
        ({"date_to": "2025-11-24T00:00:00Z"}, "date_to: must be after date_from"),
        ({"date_to": "2027-01-01T00:00:00Z"}, "date_to: the range may span at most 400 days"),
        ({"date_from": "2025-11-25"}, "date_from: must be an RFC 3339 timestamp with an offset"),
        ({"exclusions": [{"matcher": {"event_name": "X"}, "after_step": 2}]},
         "exclusions[1].after_step: must be a step in 1..1"),
        ({"breakdown": {"property": "performance.cls"}},
         "breakdown.property: unknown or unsupported property 'performance.cls'"),
        ({"breakdown": {"property": "page_path", "attribution": "step"}}, "breakdown.step: must be a step in 1..2"),
        ({"steps": [{"matcher": {"event_name": "A"}, "window_ms": 5}, {"event_name": "B"}]},
         "steps[1].window_ms: the first step has no window"),
        ({"bogus": 1}, "bogus: unknown field"),
    ],
)  # fmt: skip
def test_spec_errors(overrides: dict[str, Any], error: str) -> None:
    base: dict[str, Any] = {
        "steps": [{"event_name": "A"}, {"event_name": "B"}],
        "date_from": "2025-11-25T00:00:00Z",
        "date_to": "2025-11-26T00:00:00Z",
    }
    with pytest.raises(ValueError) as info:
        parse_funnel_spec({**base, **overrides})
    assert str(info.value) == error
