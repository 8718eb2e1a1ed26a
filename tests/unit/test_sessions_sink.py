"""The sessions sink with in-memory fakes of Redis and ClickHouse: crashes between its steps, retries,
redelivery, merges and expired live state all end in the rows of a clean run."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from schemas.records import EventRecord
from schemas.rows import SESSION_COLUMNS
from stream_processors.session_store import MemorySessionsTable, MemorySessionStore, SessionKey, SessionWrite
from stream_processors.sessionize import MINUTE_MS, SessionPolicy
from stream_processors.sessions import SessionSink, fixed_policy
from stream_processors.sinks import Origin

ORG, PROJECT = "00000000-0000-0000-0000-00000000000a", "00000000-0000-0000-0000-00000000000b"
T0 = 1_764_064_800_000
COL = {c: i for i, c in enumerate(SESSION_COLUMNS)}


def rec(
    eid: str, session: str, minutes: float, etype: str = "page.view", page: str = "/", user: str = ""
) -> EventRecord:
    fields: dict[str, Any] = {"page.path": page} if page else {}
    if user:
        fields["user.id"] = user
    return EventRecord(ORG, PROJECT, eid, session, etype, T0 + int(minutes * MINUTE_MS), T0, fields=fields)


def sink(store: MemorySessionStore, table: MemorySessionsTable) -> SessionSink:
    return SessionSink(store, table, table, fixed_policy(SessionPolicy()), ttl_s=lambda p: 2100)


async def feed(s: SessionSink, records: Sequence[EventRecord], first_offset: int = 0) -> None:
    for i, r in enumerate(records):
        s.add(r, Origin(0, first_offset + i))
    await s.flush()


def rows(table: MemorySessionsTable, session: str) -> dict[int, tuple[Any, ...]]:
    """segment -> (event_count, duration_ms, entry, exit, page_views, user_id) as SELECT ... FINAL shows."""
    out = {}
    for seg, r in table.final(PROJECT, session).items():
        out[seg] = tuple(
            r[COL[c]] for c in ("event_count", "duration_ms", "entry_page", "exit_page", "page_views", "user_id")
        )
    return out


BATCH = [
    rec("a1", "s1", 0, page="/home", user="u1"),
    rec("a2", "s1", 5, "ui.click", page=""),
    rec("a3", "s1", 10, page="/cart"),
    rec("a4", "s1", 50, page="/again"),  # 40 min gap: segment 2
    rec("b1", "s2", 0, page="/x"),
]
CLEAN = {
    "s1": {1: (3, 10 * MINUTE_MS, "/home", "/cart", 2, "u1"), 2: (1, 0, "/again", "/again", 1, "")},
    "s2": {1: (1, 0, "/x", "/x", 1, "")},
}


async def test_rows_and_live_view_of_a_batch() -> None:
    store, table = MemorySessionStore(), MemorySessionsTable()
    await feed(sink(store, table), BATCH)
    assert {s: rows(table, s) for s in ("s1", "s2")} == CLEAN
    view = store.views[SessionKey(ORG, PROJECT, "s1")]
    assert view["event_count"] == 1 and view["segment"] == 2 and view["current_page"] == "/again"
    assert view["last_ms"] == T0 + 50 * MINUTE_MS and view["closes_at_ms"] == T0 + 80 * MINUTE_MS
    assert "user_id" not in view


async def test_redelivery_changes_nothing() -> None:
    store, table = MemorySessionStore(), MemorySessionsTable()
    await feed(sink(store, table), BATCH)
    inserts = table.inserts
    await feed(sink(store, table), BATCH[::-1], first_offset=100)
    assert table.inserts == inserts, "duplicates write no rows"
    assert {s: rows(table, s) for s in ("s1", "s2")} == CLEAN


class _SaveFailsOnce(MemorySessionStore):
    async def save(self, writes: Sequence[SessionWrite], now_ms: int = 0) -> None:
        if not getattr(self, "failed", False):
            self.failed = True
            raise ConnectionError("killed between rows and state")
        await super().save(writes, now_ms)


async def test_a_crash_between_rows_and_state_replays_to_the_same_rows() -> None:
    store, table = _SaveFailsOnce(), MemorySessionsTable()
    first = sink(store, table)
    for i, r in enumerate(BATCH):
        first.add(r, Origin(0, i))
    try:
        await first.flush()
        raise AssertionError("save should have failed")
    except ConnectionError:
        pass
    assert rows(table, "s1") == CLEAN["s1"] and not store.ledgers, "rows stored, state not"
    versions = {k: v for k, (v, _, _) in table.rows.items()}
    # the process dies; its successor gets the uncommitted records again, in a different cut
    await feed(sink(store, table), BATCH[:2], first_offset=0)
    await feed(sink(store, table), BATCH[2:], first_offset=2)
    assert {s: rows(table, s) for s in ("s1", "s2")} == CLEAN
    assert all(table.rows[k][0] > v for k, v in versions.items()), "the replay wrote newer versions"
    assert store.ledgers[SessionKey(ORG, PROJECT, "s1")].segments == 2


async def test_a_crash_before_state_then_more_events_of_the_session_still_count() -> None:
    store, table = _SaveFailsOnce(), MemorySessionsTable()
    with contextlib.suppress(ConnectionError):
        await feed(sink(store, table), BATCH[:3])  # rows of s1 segment 1 stored, state not
    # the replay brings the same records and the next ones: all of them count
    await feed(sink(store, table), BATCH[:3], first_offset=0)
    await feed(sink(store, table), [rec("a3b", "s1", 12, "ui.click", page="")], first_offset=3)
    assert rows(table, "s1")[1][:2] == (4, 12 * MINUTE_MS)


async def test_a_failed_flush_resumes_at_the_failed_step() -> None:
    store, table = MemorySessionStore(), MemorySessionsTable()
    s = sink(store, table)
    for i, r in enumerate(BATCH):
        s.add(r, Origin(0, i))
    store.fail = True
    with contextlib.suppress(ConnectionError):
        await s.flush()  # fails to load
    store.fail, table.fail_inserts = False, True
    for _ in range(3):
        with contextlib.suppress(ConnectionError):
            await s.flush()  # prepared once, fails to insert
    assert not store.ledgers and s.pending() == 5 and table.inserts == 0
    table.fail_inserts, store.fail = False, True
    with contextlib.suppress(ConnectionError):
        await s.flush()  # inserts, fails to save
    assert table.inserts == 1 and not store.ledgers
    store.fail = False
    await s.flush()
    assert table.inserts == 1 and s.pending() == 0
    assert {x: rows(table, x) for x in ("s1", "s2")} == CLEAN


async def test_a_late_event_merges_segments_and_hides_the_merged_one() -> None:
    store, table = MemorySessionStore(), MemorySessionsTable()
    await feed(sink(store, table), BATCH)
    await feed(sink(store, table), [rec("late", "s1", 30, "ui.click", page="")], first_offset=10)
    assert rows(table, "s1") == {1: (5, 50 * MINUTE_MS, "/home", "/again", 3, "u1")}
    assert store.views[SessionKey(ORG, PROJECT, "s1")]["segment"] == 1


async def test_after_the_live_state_expired_numbering_continues_from_the_warehouse() -> None:
    store, table = MemorySessionStore(), MemorySessionsTable()
    await feed(sink(store, table), BATCH)
    store.expire(SessionKey(ORG, PROJECT, "s1"))
    store.clock_us += 3600 * 1_000_000  # an hour later: the rows are older than the live state's TTL
    later = [rec("c1", "s1", 55, "ui.click", page=""), rec("c2", "s1", 120, page="/back")]
    await feed(sink(store, table), later, first_offset=10)
    # c1 is within the timeout of segment 2, whose events are gone: counted in the warehouse only.
    # c2 (70 min after the last event) starts segment 3, not a new segment 1.
    assert rows(table, "s1") == {**CLEAN["s1"], 3: (1, 0, "/back", "/back", 1, "")}
    assert store.ledgers[SessionKey(ORG, PROJECT, "s1")].segments == 3
