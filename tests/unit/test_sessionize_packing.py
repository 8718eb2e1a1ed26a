"""The sessions processor's cheaper encodings equal the reference ones: the live hash the save script
writes (``_live_hash``) and the fake store's view, the JSONEachRow rows and schemas.rows' values (in the
in-memory table; tests/integration/test_processor_sessions.py compares them in ClickHouse), and packed
live events."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import orjson
import pytest

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
    LiveEvent,
    SessionSummary,
    journey_session_json_row,
    journey_session_tombstone_json_row,
    session_json_row,
    session_tombstone_json_row,
)
from stream_processors.session_store import (
    MemorySessionsTable,
    SessionKey,
    SessionWrite,
    _live_hash,
    ledger_fields,
    live_view_fields,
)
from stream_processors.sessionize import Ledger, SessionPolicy, advance

ORG, PROJECT = "00000000-0000-0000-0000-00000000000a", "00000000-0000-0000-0000-00000000000b"
T0 = 1_764_064_800_000
ODD = 'ü日本\U0001f600 "q" \\ \t|'
KEY = SessionKey(ORG, PROJECT, "s")


@pytest.mark.parametrize(
    ("ledger", "events", "entries"),
    [
        (Ledger(), [LiveEvent("a", T0)], frozenset()),
        (
            Ledger(3, 2, T0 - 10**9, T0 - 5, 9),
            [LiveEvent("a", T0, event_type="page.view", page=ODD, user_id=ODD)],
            {"1|j|1|0"},
        ),
        (Ledger(1, 1, T0 - 10**9, None, 9), [LiveEvent("b", T0, event_type="error", user_id="u")], frozenset()),
    ],
)
def test_the_live_hash_is_the_ledger_view_and_entries_of_the_fake_store(
    ledger: Ledger, events: list[LiveEvent], entries: frozenset[str]
) -> None:
    update = advance(ledger, {}, events, SessionPolicy(), 5)
    w = SessionWrite(KEY, update, 60, 1800, journey_entries=frozenset(entries))
    fields: dict[str, str | int] = {**ledger_fields(update.ledger)}
    assert update.live is not None
    fields.update(live_view_fields(update.live, update.last_event_type, w.timeout_ms))
    if entries:
        fields["journey_entries"] = orjson.dumps(sorted(entries)).decode()
    assert _live_hash(w) == [str(x) for pair in fields.items() for x in pair]
    without_live = replace(update, live=None)
    bare = replace(w, update=without_live, journey_entries=frozenset())
    assert _live_hash(bare) == [str(x) for kv in ledger_fields(update.ledger).items() for x in kv]


SUMMARIES = [
    SessionSummary(1, T0 + 1, T0 + 61_001, 3, 2, 2, 1, "/a", ODD, ODD, "mobile", ODD, "iOS"),
    SessionSummary(2, T0 + 999, T0 + 999, 1, 0, 0, 0),
]
VALUES = [
    JourneyRowValues(ODD, "converted", (T0, T0 + 1, T0 + 60_001), 3, 3, "last", 2, T0 + 1_860_001),
    JourneyRowValues("j", "pending", (T0 + 7,), 5, 1, "first", 1, T0 + 1_800_007),
]


def test_json_rows_name_every_column_in_order_and_read_back_as_the_reference_rows() -> None:
    native, lines = MemorySessionsTable(), MemorySessionsTable()
    rows = [session_row(ORG, PROJECT, f"s{s.segment}", s, 5, (ODD, "x", "dropped")) for s in SUMMARIES]
    rows.append(session_tombstone_row(ORG, PROJECT, "s1", 3, 5, T0 + 123))
    json_rows = [session_json_row(ORG, PROJECT, f"s{s.segment}", s, 5, (ODD, "x", "dropped")) for s in SUMMARIES]
    json_rows.append(session_tombstone_json_row(ORG, PROJECT, "s1", 3, 5, T0 + 123))
    journey = [journey_session_row(ORG, PROJECT, "s1", 1, 5, v) for v in VALUES]
    journey.append(journey_session_tombstone_row(ORG, PROJECT, "j", "s1", 2, 5, T0 + 9))
    journey_json = [journey_session_json_row(ORG, PROJECT, "s1", 1, 5, v) for v in VALUES]
    journey_json.append(journey_session_tombstone_json_row(ORG, PROJECT, "j", "s1", 2, 5, T0 + 9))
    assert all(list(orjson.loads(line)) == list(SESSION_COLUMNS) for line in json_rows)
    assert all(list(orjson.loads(line)) == list(JOURNEY_SESSION_COLUMNS) for line in journey_json)

    async def fill() -> None:
        await native.insert("sessions", rows, SESSION_COLUMNS, "t")
        await native.insert("journey_sessions", journey, JOURNEY_SESSION_COLUMNS, "j")
        await lines.insert_lines("sessions", json_rows, SESSION_COLUMNS, "t")
        await lines.insert_lines("journey_sessions", journey_json, JOURNEY_SESSION_COLUMNS, "j")

    asyncio.run(fill())
    assert lines.rows == native.rows and lines.journey_rows == native.journey_rows
    assert len(lines.rows) == 3 and len(lines.journey_rows) == 3
    with pytest.raises(ValueError, match="not the columns"):
        asyncio.run(lines.insert_lines("sessions", json_rows, SESSION_COLUMNS[::-1], "other"))


def test_packed_live_events_round_trip_and_leave_out_trailing_empty_values() -> None:
    full = LiveEvent(f"e{ODD}", T0, 3, T0 + 1, 42, "page.view", ODD, ODD, ODD, ODD, ODD, ("j/1", f"{ODD}/2"))
    assert LiveEvent.unpack(full.event_id, full.pack()) == full
    assert orjson.loads(LiveEvent("e", T0, 0, 5, 6, "ui.click", "", "u").pack()) == [T0, 0, 5, 6, "ui.click", "", "u"]
    assert orjson.loads(LiveEvent("e", T0).pack()) == [T0, 0, 0, 0, ""]
    with_journeys = LiveEvent("e", T0, journeys=("j/1",))
    assert orjson.loads(with_journeys.pack()) == [T0, 0, 0, 0, "", "", "", "", "", "", ["j/1"]]
    assert LiveEvent.unpack("e", with_journeys.pack().decode()) == with_journeys
    with pytest.raises(ValueError, match="not a packed event"):
        LiveEvent.unpack("e", b"[1, 2]")
