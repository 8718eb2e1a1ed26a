"""The sessions sink's journeys and real-time counters with in-memory fakes (Redis, ClickHouse, Postgres):
rows and counters of a batch, a replayed batch changes nothing, a crash between rows and state and a late
event end in the clean run's rows and counters, merged segments hide their journey rows, and the project
configuration (timeout, journeys) is cached, refreshed, and waited for when it was never loadable."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

import pytest

from schemas.matchers import parse_matcher
from schemas.records import EventRecord
from schemas.rows import JOURNEY_SESSION_COLUMNS, SESSION_COLUMNS
from schemas.sessions import active_sessions_key, active_users_key, epm_key, journey_step_key, minute_of
from stream_processors.journeys import JourneySpec, JourneyStep, resolved_status
from stream_processors.project_config import ConfigUnavailable, MemoryConfigSource, ProjectConfig, ProjectConfigCache
from stream_processors.session_store import MemorySessionsTable, MemorySessionStore, SessionWrite
from stream_processors.sessionize import MINUTE_MS, SessionPolicy
from stream_processors.sessions import SessionSink, fixed_policy
from stream_processors.sinks import Origin

ORG, PROJECT = "00000000-0000-0000-0000-00000000000a", "00000000-0000-0000-0000-00000000000b"
NOW = (int(time.time()) // 3600) * 3600 * 1000  # on the hour, so that minutes are easy to name
T0 = NOW - 60 * MINUTE_MS  # events start an hour ago: inside the counters' window, sessions closed
J = JourneySpec(
    "j-buy",
    30 * MINUTE_MS,
    (
        JourneyStep("st-cart", 1, parse_matcher({"page_path": "/cart"})),
        JourneyStep("st-pay", 2, parse_matcher({"page_path": "/pay"})),
        JourneyStep("st-done", 3, parse_matcher({"page_path": "/done"})),
    ),
)
JC = {c: i for i, c in enumerate(JOURNEY_SESSION_COLUMNS)}
SC = {c: i for i, c in enumerate(SESSION_COLUMNS)}


def rec(eid: str, session: str, minutes: float, page: str = "", user: str = "", anon: str = "") -> EventRecord:
    fields: dict[str, Any] = {"page.path": page} if page else {}
    if user:
        fields["user.id"] = user
    if anon:
        fields["user.anonymous_id"] = anon
    etype = "page.view" if page else "ui.click"
    return EventRecord(ORG, PROJECT, eid, session, etype, T0 + int(minutes * MINUTE_MS), T0, fields=fields)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def new_store() -> MemorySessionStore:
    return MemorySessionStore(clock_us=NOW * 1000)


def make_sink(
    store: MemorySessionStore, table: MemorySessionsTable, config: ProjectConfigCache | None = None
) -> SessionSink:
    cache = config or ProjectConfigCache(MemoryConfigSource({PROJECT: ProjectConfig(30, (J,))}))
    return SessionSink(store, table, table, fixed_policy(SessionPolicy()), ttl_s=lambda p: 2100, config=cache)


async def feed(s: SessionSink, records: Sequence[EventRecord], first_offset: int = 0) -> None:
    for i, r in enumerate(records):
        s.add(r, Origin(0, first_offset + i))
    await s.flush()


def journeys(table: MemorySessionsTable) -> dict[tuple[str, int], tuple[Any, ...]]:
    """(session, segment) -> (status, steps_reached, last_step_id, step minutes after T0, attempts)."""
    out = {}
    for (_, session, segment), row in table.journey_final(PROJECT).items():
        minutes = tuple(int((t.timestamp() * 1000 - T0) // MINUTE_MS) for t in row[JC["step_times"]])
        values = (row[JC["status"]], row[JC["steps_reached"]], row[JC["last_step_id"]], minutes, row[JC["attempts"]])
        out[(session, segment)] = values
    return out


def counters(store: MemorySessionStore) -> dict[str, int]:
    return {k: v for k, v in store.counters.items() if v}


def step(position: int, minute_after_t0: int) -> str:
    return journey_step_key(PROJECT, J.id, position, minute_of(T0) + minute_after_t0)


BATCH = [
    rec("a1", "conv", 0, "/cart", user="u1"),
    rec("a2", "conv", 1, "/pay", user="u1"),
    rec("a3", "conv", 2, "/done", user="u1"),
    rec("b1", "drop", 0, "/cart", anon="anon-7"),
    rec("b2", "drop", 3, "/pay"),
    rec("c1", "bounce", 10, "/cart"),
    rec("c2", "bounce", 12, "/home"),
    rec("d1", "none", 5, "/home"),
]


async def test_journey_rows_session_fields_and_counters_of_a_batch() -> None:
    store, table = new_store(), MemorySessionsTable()
    await feed(make_sink(store, table), BATCH)
    # newest segments are stored "pending"; readers resolve them with closes_at (checked below)
    assert journeys(table) == {
        ("conv", 1): ("converted", 3, "st-done", (0, 1, 2), 1),
        ("drop", 1): ("pending", 2, "st-pay", (0, 3), 1),
        ("bounce", 1): ("pending", 1, "st-cart", (10,), 1),
    }
    drop = table.journey_final(PROJECT)[(J.id, "drop", 1)]
    assert drop[JC["closes_at"]].timestamp() * 1000 == T0 + 33 * MINUTE_MS
    assert drop[JC["converted_at"]] is None and drop[JC["duration_ms"]] == 3 * MINUTE_MS
    conv = table.journey_final(PROJECT)[(J.id, "conv", 1)]
    assert conv[JC["converted_at"]].timestamp() * 1000 == T0 + 2 * MINUTE_MS
    session = table.final(PROJECT, "conv")[1]
    assert (session[SC["journey_id"]], session[SC["last_journey_step_id"]], session[SC["conversion_status"]]) == (
        J.id,
        "st-done",
        "converted",
    )
    assert table.final(PROJECT, "none")[1][SC["journey_id"]] == ""
    m = minute_of(T0)
    assert counters(store) == {
        epm_key(PROJECT, m): 2,  # a1, b1
        epm_key(PROJECT, m + 1): 1,
        epm_key(PROJECT, m + 2): 1,
        epm_key(PROJECT, m + 3): 1,
        epm_key(PROJECT, m + 5): 1,
        epm_key(PROJECT, m + 10): 1,
        epm_key(PROJECT, m + 12): 1,
        step(1, 0): 2,
        step(2, 1): 1,
        step(3, 2): 1,
        step(2, 3): 1,
        step(1, 10): 1,
    }
    assert store.expire_at[step(1, 0)] == (m * 60) + 7200
    # an hour ago: nobody is active any more (kept 10 minutes); the sets stay empty
    assert not any(store.active.get(k) for k in (active_sessions_key(PROJECT), active_users_key(PROJECT)))


async def test_active_sessions_and_users_and_a_replayed_batch_changes_no_counter() -> None:
    store, table = new_store(), MemorySessionsTable()
    recent = [
        rec("r1", "live", 58, "/cart", user="u1"),
        rec("r2", "live", 59, "/pay", user="u1"),
        rec("r3", "anon", 59.5, "/x", anon="a-9"),
        rec("r4", "nobody", 59.9, "/y"),
    ]
    await feed(make_sink(store, table), recent)
    before = (counters(store), {k: dict(v) for k, v in store.active.items()}, dict(table.journey_rows))
    assert store.active[active_sessions_key(PROJECT)] == {
        "live": T0 + 59 * MINUTE_MS,
        "anon": T0 + int(59.5 * MINUTE_MS),
        "nobody": T0 + int(59.9 * MINUTE_MS),
    }
    assert set(store.active[active_users_key(PROJECT)]) == {"u1", "anon:a-9", "session:nobody"}
    await feed(make_sink(store, table), recent[::-1], first_offset=100)  # redelivered, other order
    assert (counters(store), {k: dict(v) for k, v in store.active.items()}, dict(table.journey_rows)) == before


class _SaveFailsOnce(MemorySessionStore):
    async def save(self, writes: Sequence[SessionWrite], now_ms: int = 0) -> None:
        if not getattr(self, "failed", False):
            self.failed = True
            raise ConnectionError("killed between rows and state")
        await super().save(writes, now_ms)


async def test_a_crash_between_rows_and_state_ends_in_the_clean_runs_rows_and_counters() -> None:
    clean_store, clean_table = new_store(), MemorySessionsTable()
    await feed(make_sink(clean_store, clean_table), BATCH)

    store, table = _SaveFailsOnce(clock_us=NOW * 1000), MemorySessionsTable()
    with contextlib.suppress(ConnectionError):
        await feed(make_sink(store, table), BATCH)
    assert journeys(table) == journeys(clean_table) and not counters(store), "rows stored, no counter moved"
    await feed(make_sink(store, table), BATCH[:3])  # the successor replays in another cut
    await feed(make_sink(store, table), BATCH[3:], first_offset=3)
    assert journeys(table) == journeys(clean_table)
    assert counters(store) == counters(clean_store)


async def test_a_late_event_moves_step_entries_without_counting_twice() -> None:
    late = rec("late", "drop", 2, "/pay")  # an earlier /pay: step 2 entered at minute 2, not 3
    clean_store, clean_table = new_store(), MemorySessionsTable()
    await feed(make_sink(clean_store, clean_table), [*BATCH, late])

    store, table = new_store(), MemorySessionsTable()
    await feed(make_sink(store, table), BATCH)
    assert counters(store)[step(2, 3)] == 1
    await feed(make_sink(store, table), [late], first_offset=50)
    assert journeys(table)[("drop", 1)] == ("pending", 2, "st-pay", (0, 2), 1)
    assert step(2, 3) not in counters(store) and counters(store)[step(2, 2)] == 1
    assert counters(store) == counters(clean_store) and journeys(table) == journeys(clean_table)


async def test_a_merge_hides_the_journey_row_of_the_vanished_segment() -> None:
    store, table = new_store(), MemorySessionsTable()
    first = [rec("m1", "merge", 0, "/home"), rec("m2", "merge", 40, "/cart")]  # 40 min gap: segment 2 enters
    await feed(make_sink(store, table), first)
    assert journeys(table) == {("merge", 2): ("pending", 1, "st-cart", (40,), 1)}
    assert counters(store)[step(1, 40)] == 1
    await feed(make_sink(store, table), [rec("m3", "merge", 20, "/x")], first_offset=10)  # joins 1 and 2
    assert journeys(table) == {("merge", 1): ("pending", 1, "st-cart", (40,), 1)}
    assert counters(store)[step(1, 40)] == 1, "the entry moved segments, not minutes: still counted once"


async def test_the_projects_session_timeout_cuts_segments() -> None:
    short = ProjectConfigCache(MemoryConfigSource({PROJECT: ProjectConfig(5, (J,))}))
    store, table = new_store(), MemorySessionsTable()
    await feed(make_sink(store, table, short), [rec("t1", "short", 0, "/cart"), rec("t2", "short", 6, "/pay")])
    assert sorted(table.final(PROJECT, "short")) == [1, 2], "6 min > the project's 5 min timeout"
    # Stored pending (rows depend on the segment's events only); closes_at, 5 min after its last event, has
    # passed, so readers see it bounced; the sessions row stores the closed form directly.
    assert journeys(table) == {("short", 1): ("pending", 1, "st-cart", (0,), 1)}
    closes_at = table.journey_final(PROJECT)[(J.id, "short", 1)][JC["closes_at"]].timestamp() * 1000
    assert closes_at == T0 + 5 * MINUTE_MS
    assert resolved_status("pending", 1, int(closes_at), T0 + 6 * MINUTE_MS) == "bounced"
    assert table.final(PROJECT, "short")[1][SESSION_COLUMNS.index("conversion_status")] == "bounced"


async def test_configuration_is_waited_for_cached_and_refreshed() -> None:
    source, clock = MemoryConfigSource({PROJECT: ProjectConfig(30, ())}), Clock()
    cache = ProjectConfigCache(source, refresh_s=5, clock=clock)
    store, table = new_store(), MemorySessionsTable()
    s = make_sink(store, table, cache)
    source.fail = True
    s.add(rec("x1", "cfg", 0, "/cart"), Origin(0, 0))
    with pytest.raises(ConfigUnavailable):
        await s.flush()  # never loaded: the runner retries, nothing is written
    assert not table.rows and not store.ledgers and s.pending() == 1
    source.fail = False
    await s.flush()
    assert table.final(PROJECT, "cfg") and not journeys(table), "no journey yet"
    # the journey is added in Postgres: used once the cached configuration is older than refresh_s
    source.configs[PROJECT] = ProjectConfig(30, (J,))
    await feed(s, [rec("x2", "cfg2", 1, "/cart")], 1)
    assert not journeys(table) and source.loads == 1
    clock.t += 5
    await feed(s, [rec("x3", "cfg3", 2, "/cart")], 2)  # matched when added, with the old journeys; reloads
    await feed(s, [rec("x4", "cfg4", 3, "/cart")], 3)  # matched with the new ones
    assert set(journeys(table)) == {("cfg4", 1)} and source.loads == 2
    # Postgres down: the cached configuration stays in use
    source.fail, clock.t = True, clock.t + 60
    await feed(s, [rec("x5", "cfg5", 4, "/cart")], 4)
    assert ("cfg5", 1) in journeys(table)
