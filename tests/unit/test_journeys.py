"""Journey progress (rule 6) on hand-computed segments: every status, re-entry, converted is final, the
timeout boundary, equal timestamps ordered by sequence, one event one step; step matching on records;
the packed live event with and without journey tokens."""

from __future__ import annotations

import random

import orjson

from schemas.matchers import matches, parse_matcher
from schemas.records import EventRecord
from schemas.sessions import LiveEvent, journey_token
from stream_processors.journeys import (
    JourneyProgress,
    JourneySpec,
    JourneyStep,
    journey_progress,
    match_tokens,
    resolved_status,
    session_journey,
)
from stream_processors.sessionize import MINUTE_MS

T0 = 1_764_064_800_000
M = MINUTE_MS
ANY = parse_matcher({"event_type": "page.view"})
J = JourneySpec("j1", 30 * M, (JourneyStep("s1", 1, ANY), JourneyStep("s2", 2, ANY), JourneyStep("s3", 5, ANY)))
K = JourneySpec("k2", 10 * M, (JourneyStep("k-a", 1, ANY), JourneyStep("k-b", 2, ANY)))


def ev(eid: str, minutes: float, *steps: int, journey: str = "j1", seq: int = 0) -> LiveEvent:
    """An event at T0 + minutes matching the given step positions of ``journey``."""
    tokens = tuple(sorted(journey_token(journey, p) for p in steps))
    return LiveEvent(eid, T0 + int(minutes * M), seq, T0, 0, "page.view", journeys=tokens)


def progress(events: list[LiveEvent], newest: bool = True, journey: JourneySpec = J) -> JourneyProgress | None:
    ordered = sorted(events, key=lambda e: e.order)
    found = journey_progress(ordered, [journey], newest)
    assert len(found) <= 1
    return found[0] if found else None


def summary(p: JourneyProgress | None) -> tuple[str, tuple[float, ...], int] | None:
    """(status, step times in minutes after T0, attempts)."""
    if p is None:
        return None
    return p.status, tuple((t - T0) / M for t in p.step_times), p.attempts


def test_converted_reaches_the_last_step_in_order_with_other_events_between() -> None:
    p = progress([ev("a", 0, 1), ev("x", 5), ev("b", 10, 2), ev("y", 12), ev("c", 20, 5)])
    assert summary(p) == ("converted", (0, 10, 20), 1)
    assert p is not None and p.duration_ms == 20 * M and p.step_ids == ("s1", "s2", "s3")
    assert p.entries == {(1, T0), (2, T0 + 10 * M), (5, T0 + 20 * M)}


def test_converted_is_final_later_step_one_events_start_nothing() -> None:
    p = progress([ev("a", 0, 1), ev("b", 1, 2), ev("c", 2, 5), ev("again", 50, 1), ev("more", 51, 2)])
    assert summary(p) == ("converted", (0, 1, 2), 1)


def test_newest_segment_is_pending_a_closed_one_bounced_or_dropped() -> None:
    one, two = [ev("a", 0, 1), ev("x", 20)], [ev("a", 0, 1), ev("b", 10, 2), ev("x", 20)]
    assert summary(progress(one, newest=True)) == ("pending", (0,), 1)
    assert summary(progress(one, newest=False)) == ("bounced", (0,), 1)
    assert summary(progress(two, newest=True)) == ("pending", (0, 10), 1)
    assert summary(progress(two, newest=False)) == ("dropped", (0, 10), 1)


def test_a_session_that_goes_on_past_the_timeout_without_progress_abandons() -> None:
    # x at 40: 30 min after step 2 (at 10) is 40, so 40 is still within; 40.001 is not
    within = [ev("a", 0, 1), ev("b", 10, 2), ev("x", 40)]
    past = [ev("a", 0, 1), ev("b", 10, 2), ev("x", 40.001)]
    assert summary(progress(within, newest=False)) == ("dropped", (0, 10), 1)
    assert summary(progress(past, newest=True)) == ("abandoned", (0, 10), 1)
    assert summary(progress(past, newest=False)) == ("abandoned", (0, 10), 1)
    # the next step exactly at the timeout still counts; a millisecond later it does not
    assert summary(progress([ev("a", 0, 1), ev("b", 30, 2)])) == ("pending", (0, 30), 1)
    late_step = progress([ev("a", 0, 1), ev("b", 30.001, 2)])
    assert summary(late_step) == ("abandoned", (0,), 1)


def test_a_step_one_event_after_abandoning_starts_a_new_attempt_which_is_reported() -> None:
    events = [ev("a", 0, 1), ev("b", 5, 2), ev("x", 40), ev("a2", 50, 1), ev("y", 55)]
    p = progress(events, newest=False)
    assert summary(p) == ("bounced", (50,), 2)
    assert p is not None and p.entries == {(1, T0), (2, T0 + 5 * M), (1, T0 + 50 * M)}
    # the event that shows the timeout may itself be the new step 1; and the new attempt may convert
    again = [ev("a", 0, 1), ev("a2", 45, 1), ev("b", 46, 2), ev("c", 47, 5)]
    assert summary(progress(again)) == ("converted", (45, 46, 47), 2)


def test_the_first_step_one_event_enters_later_ones_do_not_restart_the_clock() -> None:
    # step 1 at 0 and 10: the attempt started at 0, so step 2 at 35 is 35 min after it: abandoned
    assert summary(progress([ev("a", 0, 1), ev("a2", 10, 1), ev("b", 35, 2)])) == ("abandoned", (0,), 1)


def test_one_event_advances_one_step() -> None:
    both = [ev("a", 0, 1, 2), ev("b", 1, 2)]
    assert summary(progress(both)) == ("pending", (0, 1), 1)
    assert summary(progress([ev("a", 0, 1, 2)])) == ("pending", (0,), 1)


def test_equal_timestamps_are_ordered_by_sequence() -> None:
    # step 3 and step 2 at the same millisecond: the sequence decides whether the journey converts
    in_order = [ev("c", 5, 5, seq=2), ev("b", 5, 2, seq=1), ev("a", 0, 1)]
    reversed_ = [ev("c", 5, 5, seq=1), ev("b", 5, 2, seq=2), ev("a", 0, 1)]
    assert summary(progress(in_order)) == ("converted", (0, 5, 5), 1)
    assert summary(progress(reversed_)) == ("pending", (0, 5), 1)


def test_a_late_event_is_placed_by_time_and_the_segment_recomputed() -> None:
    arrived = [ev("a", 0, 1), ev("c", 20, 5)]
    assert summary(progress(arrived)) == ("pending", (0,), 1)
    assert summary(progress([*arrived, ev("late", 10, 2)])) == ("converted", (0, 10, 20), 1)


def test_journeys_are_independent_and_unentered_ones_give_no_row() -> None:
    events = [ev("a", 0, 1), ev("k", 1, 1, journey="k2"), ev("b", 2, 2)]
    found = journey_progress(events, [J, K, JourneySpec("none", M, (JourneyStep("n", 1, ANY),))], True)
    assert {p.journey_id: p.status for p in found} == {"j1": "pending", "k2": "pending"}
    # the sessions row names the most recent progress: j1 (step 2 at 2 min) over k2 (step 1 at 1 min)
    chosen = session_journey(found)
    assert chosen is not None and chosen.journey_id == "j1" and chosen.step_ids[-1] == "s2"
    assert session_journey([]) is None


def test_resolved_status_turns_pending_into_bounced_or_dropped_when_the_segment_closed() -> None:
    assert resolved_status("pending", 1, closes_at_ms=100, now_ms=100) == "pending"
    assert resolved_status("pending", 1, closes_at_ms=100, now_ms=101) == "bounced"
    assert resolved_status("pending", 2, closes_at_ms=100, now_ms=101) == "dropped"
    assert resolved_status("abandoned", 2, closes_at_ms=100, now_ms=101) == "abandoned"


def test_match_tokens_on_records() -> None:
    def rec(etype: str, **fields: object) -> EventRecord:
        return EventRecord("o", "p", "e", "s", etype, T0, T0, fields=dict(fields), metadata={"plan": "pro"})  # type: ignore[arg-type]

    spec = JourneySpec(
        "j",
        M,
        (
            JourneyStep("1", 1, parse_matcher({"page_path": "/checkout/*", "page_path_mode": "glob"})),
            JourneyStep("2", 2, parse_matcher({"event_type": "ui.click", "component": "PayButton"})),
            JourneyStep("3", 3, parse_matcher({"journey_id": "buy", "step_id": "done", "metadata": {"plan": "pro"}})),
        ),
    )
    assert match_tokens([spec], rec("page.view", **{"page.path": "/checkout/cart"})) == ("j/1",)
    assert match_tokens([spec], rec("ui.click", **{"ui.component.name": "PayButton", "page.path": "/checkout/x"})) == (
        "j/1",
        "j/2",
    )
    assert match_tokens([spec], rec("ui.click", **{"gen_ai.journey.id": "buy", "gen_ai.journey.step.id": "done"})) == (
        "j/3",
    )
    assert match_tokens([spec], rec("page.view", **{"page.path": "/home"})) == ()


def test_indexed_matching_equals_trying_every_step() -> None:
    """match_tokens tries only the steps of the event's type (and untyped ones), from an index cached per
    journey tuple: on random records it must answer what matching every step of every journey answers."""
    rng = random.Random(11)
    types, paths = ["page.view", "ui.click", "custom", "error"], ["/", "/cart", "/checkout/pay", "/checkout"]
    matchers = [
        {"event_type": "page.view", "page_path": "/checkout/*", "page_path_mode": "glob"},
        {"event_type": "page.view", "page_path": "/cart"},
        {"page_path": "/checkout", "page_path_mode": "prefix"},
        {"event_type": "ui.click", "component": "Pay"},
        {"event_name": "buy"},
        {"event_type": "custom"},
        {"metadata": {"plan": "pro"}},
    ]
    journeys = tuple(
        JourneySpec(
            f"j{n}",
            M,
            tuple(JourneyStep(f"s{i}", i + 1, parse_matcher(rng.choice(matchers))) for i in range(rng.randint(1, 4))),
        )
        for n in range(5)
    )
    for i in range(500):
        fields = {"page.path": rng.choice(paths), "ui.component.name": rng.choice(["Pay", "Nav"])}
        if rng.random() < 0.3:
            fields["event.name"] = "buy"
        metadata = {"plan": rng.choice(["pro", "free"])}
        r = EventRecord("o", "p", f"e{i}", "s", rng.choice(types), T0, T0, fields=dict(fields), metadata=metadata)
        brute = tuple(
            sorted(journey_token(j.id, s.position) for j in journeys for s in j.steps if matches(s.matcher, r))
        )
        assert match_tokens(journeys, r) == brute
        assert match_tokens(list(journeys), r) == brute  # not a tuple: no cached index
        first = journeys[:1]  # another tuple: its own index, not the cached one of ``journeys``
        assert match_tokens(first, r) == tuple(t for t in brute if t.startswith("j0/"))


def test_live_events_pack_journeys_and_old_packed_values_still_unpack() -> None:
    e = LiveEvent("e", T0, 1, T0, 7, "ui.click", journeys=("j1/1", "j1/2"))
    assert LiveEvent.unpack("e", e.pack()) == e
    assert orjson.loads(e.pack())[5:] == ["", "", "", "", "", ["j1/1", "j1/2"]]
    old = orjson.dumps([T0, 1, T0, 7, "page.view", "/a", "u1"])  # as written before journeys existed
    assert LiveEvent.unpack("o", old) == LiveEvent("o", T0, 1, T0, 7, "page.view", "/a", "u1")
    assert LiveEvent.unpack("o", old).journeys == ()


def test_journey_metrics_from_status_and_step_counts() -> None:
    from query_api.journeys.metrics import metrics_from_counts

    counts = [  # (status, steps reached, rows, sum of duration_ms)
        ("converted", 3, 2, 10 * M),
        ("dropped", 2, 3, 9 * M),
        ("bounced", 1, 4, 0),
        ("abandoned", 2, 1, M),
    ]
    m = metrics_from_counts("j1", [1, 2, 5], counts)
    assert (m.total_sessions, m.converted_sessions, m.conversion_rate) == (10, 2, 0.2)
    assert m.avg_duration_ms == 5 * M, "mean over converted rows only"
    assert [(s.position, s.reached, s.drop_off, s.conversion_from_first) for s in m.steps] == [
        (1, 10, 0, 1.0),
        (2, 6, 4, 0.6),
        (5, 2, 4, 0.2),
    ]
    assert m.by_status == {"pending": 0, "converted": 2, "bounced": 4, "dropped": 3, "abandoned": 1}
    empty = metrics_from_counts("j1", [1, 2], [])
    assert (empty.conversion_rate, empty.avg_duration_ms, [s.reached for s in empty.steps]) == (0.0, None, [0, 0])


def test_stored_status_groups_resolve_closed_pending_rows() -> None:
    """Rows of the metrics query (stored status, steps, rows, closed rows, duration, closed duration): pending
    rows whose segment closed become bounced (one step) or dropped; the others stay pending."""
    from query_api.journeys.metrics import _resolve

    rows = [
        ("pending", 1, 5, 2, 0, 0),
        ("pending", 3, 4, 4, 70, 70),
        ("pending", 2, 3, 0, 30, 0),
        ("converted", 3, 6, 6, 600, 600),  # closed converted rows stay converted
    ]
    assert _resolve(rows) == [
        ("bounced", 1, 2, 0),
        ("pending", 1, 3, 0),
        ("dropped", 3, 4, 70),
        ("pending", 2, 3, 30),
        ("converted", 3, 6, 600),
    ]
