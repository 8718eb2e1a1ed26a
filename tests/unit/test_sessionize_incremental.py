"""The sessions sink's incremental path (a session's newest segment extended from its cached tail, or a new
session summarised from its arrivals: :func:`stream_processors.sessionize.extend_tail`,
:func:`stream_processors.journeys.extend_runs`) writes exactly what the full recompute writes: the same
``sessions`` and ``journey_sessions`` rows (versions included), live views, ledgers, stored events, journey
entries and real-time counters, on random event streams (ties on timestamp and sequence, gaps over the
timeout, the length cap, sealing, duplicates, late events, journeys ending in every status), cut into
random batches.  The reference is the same sink with a store that never returns a memo."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.matchers import parse_matcher
from schemas.records import EventRecord
from schemas.rows import JOURNEY_SESSION_COLUMNS, SESSION_COLUMNS
from stream_processors import sessions as sessions_module
from stream_processors.journeys import JourneySpec, JourneyStep
from stream_processors.project_config import MemoryConfigSource, ProjectConfig, ProjectConfigCache
from stream_processors.session_store import MemorySessionsTable, MemorySessionStore, SessionKey, StoredSession
from stream_processors.sessionize import DAY_MS, MINUTE_MS, SessionPolicy
from stream_processors.sessions import SessionSink, fixed_policy
from stream_processors.sinks import Origin

ORG, PROJECT = "00000000-0000-0000-0000-00000000000a", "00000000-0000-0000-0000-00000000000b"
NOW = (int(time.time()) // 3600) * 3600 * 1000
T0 = NOW - 3 * 60 * MINUTE_MS  # three hours ago: counters' window, some segments closed, some not
TIMEOUT_MIN = 10
# Short cap and horizon so that random streams reach them; a test below uses the real 24 h cap.
POLICY = SessionPolicy(TIMEOUT_MIN * MINUTE_MS, max_length_ms=45 * MINUTE_MS, late_horizon_ms=60 * MINUTE_MS)
BUY = JourneySpec(
    "j-buy",
    4 * MINUTE_MS,  # short: attempts get abandoned
    (
        JourneyStep("st-cart", 1, parse_matcher({"page_path": "/cart"})),
        JourneyStep("st-pay", 2, parse_matcher({"page_path": "/pay"})),
        JourneyStep("st-done", 3, parse_matcher({"page_path": "/done"})),
    ),
)
OOPS = JourneySpec(
    "j-oops",
    30 * MINUTE_MS,
    (
        JourneyStep("st-error", 1, parse_matcher({"event_type": "error"})),
        JourneyStep("st-home", 2, parse_matcher({"page_path": "/"})),
    ),
)
PAGES = ("/", "/cart", "/pay", "/done", "")
EVENT_COUNT, CONVERSION = SESSION_COLUMNS.index("event_count"), SESSION_COLUMNS.index("conversion_status")
STATUS = JOURNEY_SESSION_COLUMNS.index("status")
STEPS_MS = (0, 0, 1000, MINUTE_MS, 3 * MINUTE_MS, 5 * MINUTE_MS, (TIMEOUT_MIN + 1) * MINUTE_MS)


class NoMemoStore(MemorySessionStore):
    """The reference: every update is recomputed from the stored events."""

    async def load(self, keys: Sequence[SessionKey]) -> tuple[dict[SessionKey, StoredSession], int]:
        stored, clock = await super().load(keys)
        return {k: StoredSession(s.ledger, s.events, s.journey_entries) for k, s in stored.items()}, clock


def make_sink(store: MemorySessionStore, table: MemorySessionsTable, journeys: tuple[JourneySpec, ...]) -> SessionSink:
    config = ProjectConfigCache(MemoryConfigSource({PROJECT: ProjectConfig(TIMEOUT_MIN, journeys)}))
    return SessionSink(store, table, table, fixed_policy(POLICY), ttl_s=lambda p: 2100, config=config)


def state(store: MemorySessionStore, table: MemorySessionsTable) -> dict[str, Any]:
    return {
        "rows": dict(table.rows),
        "journey_rows": dict(table.journey_rows),
        "ledgers": dict(store.ledgers),
        "events": {k: dict(v) for k, v in store.events.items()},
        "views": dict(store.views),
        "entries": dict(store.entries),
        "counters": dict(store.counters),
        "active": {k: dict(v) for k, v in store.active.items()},
    }


async def run(
    batches: Sequence[Sequence[EventRecord]], journeys: tuple[JourneySpec, ...], memo: bool
) -> dict[str, Any]:
    store = MemorySessionStore(clock_us=NOW * 1000) if memo else NoMemoStore(clock_us=NOW * 1000)
    table = MemorySessionsTable()
    sink = make_sink(store, table, journeys)
    offset = 0
    for batch in batches:
        for r in batch:
            sink.add(r, Origin(0, offset))
            offset += 1
        await sink.flush()
    return state(store, table)


def event(eid: str, session: str, ts: int, seq: int, kind: int, page: str, user: str) -> EventRecord:
    etype = ("page.view", "page.view", "ui.click", "error")[kind]
    fields: dict[str, Any] = {"event.sequence": seq}
    if etype == "page.view":
        fields["page.path"] = page
    if user:
        fields["user.id"] = user
    extra = {"device.type": "mobile"} if kind == 2 and seq == 1 else {}
    return EventRecord(ORG, PROJECT, eid, session, etype, ts, T0, fields=fields, extra=extra)


_event = st.tuples(
    st.sampled_from(STEPS_MS),  # gap to the previous event of its session (0: a tie on the timestamp)
    st.integers(0, 2),  # event.sequence (ties too)
    st.integers(0, 3),  # kind
    st.sampled_from(PAGES),
    st.sampled_from(("", "", "u1", "u2")),
    st.integers(0, 1),  # session
)


@st.composite
def streams(draw: st.DrawFn) -> list[list[EventRecord]]:
    """Events of two sessions, mostly in time order, some moved earlier or later (late events), some
    delivered twice, cut into batches."""
    specs = draw(st.lists(_event, min_size=1, max_size=40))
    clock = [T0, T0 + 7 * MINUTE_MS]
    records = []
    for i, (gap, seq, kind, page, user, session) in enumerate(specs):
        clock[session] += gap
        records.append(event(f"e{i}", f"s{session}", clock[session], seq, kind, page, user))
    moves = draw(st.lists(st.tuples(st.integers(0, len(records) - 1), st.integers(0, len(records) - 1)), max_size=3))
    for a, b in moves:
        records.insert(b, records.pop(a))
    for i in draw(st.lists(st.integers(0, len(records) - 1), max_size=3)):
        records.append(records[i])  # redelivered
    cuts = sorted(set(draw(st.lists(st.integers(1, len(records)), max_size=6))))
    return [records[a:b] for a, b in zip([0, *cuts], [*cuts, len(records)], strict=True) if records[a:b]]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=streams(), with_journeys=st.booleans())
def test_incremental_equals_full_recompute(batches: list[list[EventRecord]], with_journeys: bool) -> None:
    journeys = (BUY, OOPS) if with_journeys else ()
    assert asyncio.run(run(batches, journeys, memo=True)) == asyncio.run(run(batches, journeys, memo=False))


def count_fast(monkeypatch: Any) -> list[bool]:
    """Records, per call of the sink's extend_tail with a tail, whether it applied."""
    calls: list[bool] = []
    real = sessions_module.extend_tail

    def spy(tail: Any, *args: Any, **kwargs: Any) -> Any:
        out = real(tail, *args, **kwargs)
        if tail is not None:
            calls.append(out is not None)
        return out

    monkeypatch.setattr(sessions_module, "extend_tail", spy)
    return calls


def test_appends_take_the_incremental_path_and_late_events_do_not(monkeypatch: Any) -> None:
    calls = count_fast(monkeypatch)
    cart = [event(f"a{i}", "s", T0 + i * MINUTE_MS, 0, 0, "/cart" if i % 3 else "/", "") for i in range(9)]
    late = event("late", "s", T0 + 30 * 1000, 0, 3, "", "")
    batches = [cart[:3], cart[3:6], cart[6:], [late], [event("next", "s", T0 + 9 * MINUTE_MS, 0, 0, "/pay", "")]]
    fast = asyncio.run(run(batches, (BUY, OOPS), memo=True))
    assert calls == [True, True, False, True]  # the late event recomputes, which leaves a tail for the next
    assert fast == asyncio.run(run(batches, (BUY, OOPS), memo=False))
    rows = {seg: row for (_, _, seg), (_, _, row) in fast["rows"].items()}
    assert list(rows) == [1] and rows[1][EVENT_COUNT] == 11  # one segment of 11 events


def test_a_gap_or_the_day_cap_recomputes_and_agrees(monkeypatch: Any) -> None:
    calls = count_fast(monkeypatch)
    day = SessionPolicy(30 * MINUTE_MS)  # the real 24 h cap
    base = NOW - 26 * 60 * MINUTE_MS
    # every 20 minutes for 25 hours: the cap splits the session after 24 h; two batches per hour
    records = [event(f"d{i}", "s", base + i * 20 * MINUTE_MS, 0, i % 4, PAGES[i % 5], "") for i in range(76)]
    batches = [records[i : i + 2] for i in range(0, len(records), 2)]

    async def go(memo: bool) -> dict[str, Any]:
        store = MemorySessionStore(clock_us=NOW * 1000) if memo else NoMemoStore(clock_us=NOW * 1000)
        table = MemorySessionsTable()
        config = ProjectConfigCache(MemoryConfigSource({PROJECT: ProjectConfig(30, (BUY, OOPS))}))
        sink = SessionSink(store, table, table, fixed_policy(day), ttl_s=lambda p: 2100, config=config)
        for n, batch in enumerate(batches):
            for i, r in enumerate(batch):
                sink.add(r, Origin(0, 2 * n + i))
            await sink.flush()
        return state(store, table)

    fast = asyncio.run(go(True))
    assert fast == asyncio.run(go(False))
    assert calls.count(False) == 1 and calls.count(True) == len(batches) - 2  # only the split at 24 h recomputes
    segments = sorted(seg for (_, _, seg), (_, deleted, _) in fast["rows"].items() if not deleted)
    assert segments == [1, 2]
    assert DAY_MS // (20 * MINUTE_MS) + 1 == 73  # events 0..72 fit in segment 1 (t - start <= 24 h)


def test_journeys_extended_across_batches_end_in_every_status(monkeypatch: Any) -> None:
    calls = count_fast(monkeypatch)

    def at(session: str, minute: float, page: str, kind: int = 0) -> EventRecord:
        return event(f"{session}-{minute}", session, T0 + int(minute * MINUTE_MS), 0, kind, page, "")

    first = [at("conv", 0, "/cart"), at("aband", 0, "/cart"), at("drop", 0, "/cart"), at("bounce", 0, "/cart")]
    second = [at("conv", 1, "/pay"), at("aband", 5, "", kind=2), at("drop", 1, "/pay"), at("bounce", 1, "/")]
    third = [at("conv", 2, "/done"), at("aband", 6, "", kind=2)]
    batches = [first, second, third]
    fast = asyncio.run(run(batches, (BUY,), memo=True))
    assert fast == asyncio.run(run(batches, (BUY,), memo=False))
    assert calls == [True] * 6  # every update after the first batch extended the cached tail
    journey = {session: row[STATUS] for (_, _, session, _), (_, _, row) in fast["journey_rows"].items()}
    assert journey == {"conv": "converted", "aband": "abandoned", "drop": "pending", "bounce": "pending"}
    status = {session: row[CONVERSION] for (_, session, _), (_, _, row) in fast["rows"].items()}
    assert status == {"conv": "converted", "aband": "abandoned", "drop": "dropped", "bounce": "bounced"}
