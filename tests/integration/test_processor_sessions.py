"""The sessions processor on real Kafka, Redis and ClickHouse, with hand-computed sessions: gaps at and
over the timeout, a late event that merges two segments, equal timestamps ordered by sequence, a
redelivered event and a poison record that does not stall its partition."""

from __future__ import annotations

import functools
import uuid

import pytest

from stream_processors.sessionize import MINUTE_MS
from tests.conftest import Servers
from tests.integration.test_processor_support import (
    T0,
    committed,
    live_views,
    own_topic,
    produce,
    record,
    session_rows,
    settings_for,
    start_runner,
    stop_runner,
    wait_for,
)

pytestmark = pytest.mark.integration


async def test_hand_computed_sessions_through_kafka_redis_and_clickhouse(servers: Servers) -> None:
    org, project = str(uuid.uuid4()), str(uuid.uuid4())
    topic = await own_topic(servers.kafka_bootstrap)
    settings = settings_for(servers)

    r = functools.partial(record, org, project)

    first = [
        r("g1", "gap", 0, "page.view", "/"),
        r("g2", "gap", 10, "ui.click", user="u1"),
        r("g3", "gap", 40.00002, "page.view", "/b"),  # 30 min + 1.2 ms after g2: segment 2
        r("g4", "gap", 70.00002, "error"),  # exactly 30 min after g3: still segment 2
        r("l1", "late", 0, "page.view", "/a"),
        r("l3", "late", 50, "page.view", "/c"),  # 50 min: segment 2, until l2 arrives
        r("t1", "tie", 0, "page.view", "/second", seq=2),
        r("t2", "tie", 0, "page.view", "/first", seq=1),
        r("d1", "dup", 0, "page.view", "/d"),
        r("d2", "dup", 1),
    ]
    await produce(servers.kafka_bootstrap, topic, first)
    runner, task = await start_runner("sessions", settings, topic)
    try:

        async def first_rows() -> bool:
            return len(session_rows(servers.clickhouse_url, project)) == 6

        await wait_for(first_rows, what="the first sessions")
        assert session_rows(servers.clickhouse_url, project)[("late", 2)][0] == 1

        later = [
            r("l2", "late", 25, "ui.click", user="u9"),  # late: joins segments 1 and 2 of "late"
            first[8],  # d1 delivered again
        ]
        await produce(servers.kafka_bootstrap, topic, later)
        await produce(servers.kafka_bootstrap, topic, [(b"poison", b"\x00 not a record")])
        await produce(servers.kafka_bootstrap, topic, [r("g5", "gap", 71, "page.view", "/b")])

        expected = {
            ("gap", 1): (2, 10 * MINUTE_MS, "/", "/", 1, 1, 0, "u1"),
            ("gap", 2): (3, 31 * MINUTE_MS - 1, "/b", "/b", 2, 1, 1, ""),
            ("late", 1): (3, 50 * MINUTE_MS, "/a", "/c", 2, 2, 0, "u9"),
            ("tie", 1): (2, 0, "/first", "/second", 2, 2, 0, ""),
            ("dup", 1): (2, MINUTE_MS, "/d", "/d", 1, 1, 0, ""),
        }

        async def all_rows() -> bool:
            return session_rows(servers.clickhouse_url, project) == expected

        await wait_for(all_rows, what="the final sessions")
        views = await live_views(servers.redis_url, project, ["late", "gap"])
        assert views["late"]["event_count"] == "3" and views["late"]["segment"] == "1"
        assert views["late"]["started_ms"] == str(T0) and views["late"]["last_ms"] == str(T0 + 50 * MINUTE_MS)
        assert views["late"]["current_page"] == "/c" and views["late"]["user_id"] == "u9"
        assert views["gap"]["segment"] == "2" and views["gap"]["event_count"] == "3"
        assert "user_id" not in views["gap"], "segment 2 of gap has no user id"
    finally:
        await stop_runner(runner, task)
    # everything, the poison record included, was committed: a restart reads nothing again
    offsets = await committed(servers.kafka_bootstrap, runner.group_id, topic, 3)
    assert sum(o or 0 for o in offsets.values()) == len(first) + len(later) + 2


async def test_json_lines_store_the_same_session_rows_as_native_inserts(servers: Servers) -> None:
    """The sessions sink sends JSONEachRow lines (schemas.sessions); clickhouse-connect's Native insert of
    schemas.rows values is the reference: every column of every row (tombstones, journey rows, unicode,
    empty and many step times, converted and not) must read back identical."""
    import time

    from productgraph.connections import clickhouse_client
    from schemas.rows import (
        JOURNEY_SESSION_COLUMNS,
        SESSION_COLUMNS,
        JourneyRowValues,
        journey_session_row,
        journey_session_tombstone_row,
        session_row,
        session_tombstone_row,
    )
    from schemas.sessions import (
        SessionSummary,
        journey_session_json_row,
        journey_session_tombstone_json_row,
        session_json_row,
        session_tombstone_json_row,
    )
    from stream_processors.sinks import ClickHouseWriter

    org, project = str(uuid.uuid4()), str(uuid.uuid4())
    now = int(time.time() * 1000) // 1000 * 1000 - 86_400_000
    odd = 'ü日本\U0001f600 "q" \\ \t|'
    summaries = [
        SessionSummary(1, now + 1, now + 61_001, 3, 2, 2, 1, "/a", odd, odd, "mobile", odd, "iOS"),
        SessionSummary(2, now + 999, now + 999, 1, 0, 0, 0),
        SessionSummary(3, now - 86_399_999, now + 1, 2**31, 7, 1, 0, "/", "/", "u"),
    ]
    sessions = [
        (
            session_row(org, project, f"s{i}{odd}", s, 10**15 + i, (odd, "step", "dropped")),
            session_json_row(org, project, f"s{i}{odd}", s, 10**15 + i, (odd, "step", "dropped")),
        )
        for i, s in enumerate(summaries)
    ]
    gone = (org, project, "t", 4, 7, now + 5)
    sessions.append((session_tombstone_row(*gone), session_tombstone_json_row(*gone)))
    values = [
        JourneyRowValues(odd, "converted", (now, now + 1, now + 60_001), 3, 3, "last", 2, now + 1_860_001),
        JourneyRowValues("j", "pending", (now + 7,), 5, 1, "first", 1, now + 1_800_007),
        JourneyRowValues("j2", "dropped", tuple(now + 1000 * k + k for k in range(100)), 100, 100, "s", 9, now + 9),
    ]
    journeys = [
        (
            journey_session_row(org, project, f"s{i}", i + 1, 10**15, v),
            journey_session_json_row(org, project, f"s{i}", i + 1, 10**15, v),
        )
        for i, v in enumerate(values)
    ]
    hide = (org, project, "j", "t", 2, 3, now)
    journeys.append((journey_session_tombstone_row(*hide), journey_session_tombstone_json_row(*hide)))
    ch = clickhouse_client(servers.clickhouse_url)
    suffix = uuid.uuid4().hex[:8]
    made: list[str] = []
    try:
        for source, columns, pairs in (("sessions", SESSION_COLUMNS, sessions),
                                       ("journey_sessions", JOURNEY_SESSION_COLUMNS, journeys)):  # fmt: skip
            native, lines = f"{source}_native_{suffix}", f"{source}_lines_{suffix}"
            for table in (native, lines):
                ch.command(f"CREATE TABLE {table} AS {source}")
                made.append(table)
            ch.insert(native, [row for row, _ in pairs], column_names=list(columns))
            await ClickHouseWriter(ch).insert_lines(lines, [line for _, line in pairs], columns, f"t-{suffix}")
            select = ", ".join(f"toString({c})" for c in columns)

            def read(table: str, select: str = select) -> list[tuple[object, ...]]:
                return [tuple(r) for r in ch.query(f"SELECT {select} FROM {table} ORDER BY tuple(*)").result_rows]

            expected, got = read(native), read(lines)
            assert len(expected) == len(pairs)
            assert got == expected
    finally:
        for table in made:
            ch.command(f"DROP TABLE IF EXISTS {table}")
        ch.close()
