"""ClickHouse row shapes: the explicit column lists of ``events``, ``sessions`` and ``journey_sessions`` and the
mappings to rows (pure).

``events`` rows exist in two equal forms: :func:`event_row` (Python values in :data:`EVENT_COLUMNS` order, for
clickhouse-connect's ``insert``) and :func:`event_json_row` (one ``JSONEachRow`` line, what the warehouse writer
sends).  The JSON line costs the processor a fraction of the CPU of clickhouse-connect's Python-side Native
encoding of ~60 columns (most of them empty): ClickHouse parses it, and the stored row is the same
(tests/integration/test_processor_warehouse.py compares both forms column by column).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.fields import FIELDS, Kind
from schemas.records import EventRecord
from schemas.sessions import SessionSummary

__all__ = [
    "EVENT_COLUMNS",
    "EVENT_JSON_SETTINGS",
    "JOURNEY_SESSION_COLUMNS",
    "SESSION_COLUMNS",
    "JourneyRowValues",
    "event_json_row",
    "event_row",
    "events_table_columns_sql",
    "journey_session_row",
    "journey_session_tombstone_row",
    "session_row",
    "session_tombstone_row",
]

_BASE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("org_id", "UUID"),
    ("project_id", "UUID"),
    ("event_id", "String"),
    ("session_id", "String"),
    ("event_type", "LowCardinality(String)"),
    ("timestamp", "DateTime64(3, 'UTC')"),
    ("client_timestamp", "Nullable(DateTime64(3, 'UTC'))"),
    ("received_at", "DateTime64(3, 'UTC')"),
    ("timestamp_filled", "Bool"),
)
_TAIL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("metadata", "Map(String, String)"),
    ("extra", "Map(String, String)"),
)

EVENT_COLUMNS: tuple[str, ...] = tuple(
    [c for c, _ in _BASE_COLUMNS] + [f.column for f in FIELDS] + [c for c, _ in _TAIL_COLUMNS]
)
_FIELD_NAMES = tuple(f.name for f in FIELDS)
_STRING_FIELDS = frozenset(f.name for f in FIELDS if f.kind is Kind.STRING)


def events_table_columns_sql() -> str:
    """Column definitions of the ``events`` table, generated from the field table (used by tests to check
    that the migration matches the contract)."""
    cols = [*_BASE_COLUMNS, *((f.column, f.clickhouse_type) for f in FIELDS), *_TAIL_COLUMNS]
    return ",\n".join(f"    {name} {ctype}" for name, ctype in cols)


def _ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _map(values: dict[str, Any]) -> dict[str, str]:
    return {k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in values.items()}


_FIELD_COLUMNS: dict[str, str] = {f.name: f.column for f in FIELDS}

EVENT_JSON_SETTINGS: dict[str, int] = {
    "input_format_skip_unknown_fields": 0,  # a key that is not a column is an error, never dropped silently
    "input_format_null_as_default": 1,  # null into String: '' (as event_row's empty strings)
    "precise_float_parsing": 1,  # parse floats exactly as the Native form sends them
}
"""Insert settings of :func:`event_json_row` lines (``FORMAT JSONEachRow``)."""


def event_json_row(rec: EventRecord) -> bytes:
    """The row of :func:`event_row` as one ``JSONEachRow`` line.  Missing optional fields are left out
    (their column default: ``''`` for strings, NULL for numbers; the table has no DEFAULT expressions), and
    times are seconds with three decimals: ``ms / 1000`` is the double nearest to that decimal and its
    shortest repr is the decimal itself, which ClickHouse reads into DateTime64(3) exactly."""
    row: dict[str, Any] = {
        "org_id": rec.org_id,
        "project_id": rec.project_id,
        "event_id": rec.event_id,
        "session_id": rec.session_id,
        "event_type": rec.event_type,
        "timestamp": rec.ts_ms / 1000,
        "received_at": rec.received_ms / 1000,
        "timestamp_filled": rec.ts_filled,
    }
    if rec.client_ts_ms is not None:
        row["client_timestamp"] = rec.client_ts_ms / 1000
    columns = _FIELD_COLUMNS
    for name, value in rec.fields.items():
        column = columns.get(name)
        if column is not None and value is not None:
            row[column] = value
    if rec.metadata:
        row["metadata"] = _map(rec.metadata)
    if rec.extra:
        row["extra"] = _map(rec.extra)
    return orjson.dumps(row)


def event_row(rec: EventRecord) -> list[Any]:
    """One ``events`` row in :data:`EVENT_COLUMNS` order."""
    f = rec.fields
    row: list[Any] = [
        rec.org_id,
        rec.project_id,
        rec.event_id,
        rec.session_id,
        rec.event_type,
        _ms(rec.ts_ms),
        None if rec.client_ts_ms is None else _ms(rec.client_ts_ms),
        _ms(rec.received_ms),
        rec.ts_filled,
    ]
    row.extend(f.get(n, "") if n in _STRING_FIELDS else f.get(n) for n in _FIELD_NAMES)
    row.append(_map(rec.metadata))
    row.append(_map(rec.extra))
    return row


# ``sessions`` (deploy/clickhouse/0002_sessions.sql): one row per (session, segment) and version.
SESSION_COLUMNS: tuple[str, ...] = (
    "org_id",
    "project_id",
    "session_id",
    "segment",
    "version",
    "is_deleted",
    "started_at",
    "ended_at",
    "duration_ms",
    "entry_page",
    "exit_page",
    "page_views",
    "unique_pages",
    "event_count",
    "error_count",
    "user_id",
    "device",
    "browser",
    "os",
    "journey_id",
    "last_journey_step_id",
    "conversion_status",
)


def session_row(
    org_id: str,
    project_id: str,
    session_id: str,
    s: SessionSummary,
    version: int,
    journey: tuple[str, str, str] = ("", "", ""),
) -> list[Any]:
    """One ``sessions`` row in :data:`SESSION_COLUMNS` order; ``journey`` = (journey_id, last_journey_step_id,
    conversion_status) of the journey the segment names (stream_processors.journeys.session_journey)."""
    return [
        org_id,
        project_id,
        session_id,
        s.segment,
        version,
        0,
        _ms(s.started_ms),
        _ms(s.ended_ms),
        s.duration_ms,
        s.entry_page,
        s.exit_page,
        s.page_views,
        s.unique_pages,
        s.event_count,
        s.error_count,
        s.user_id,
        s.device,
        s.browser,
        s.os,
        *journey,
    ]


def session_tombstone_row(
    org_id: str, project_id: str, session_id: str, segment: int, version: int, at_ms: int
) -> list[Any]:
    """Hides ``segment`` (``is_deleted = 1``): a late event merged it into an earlier one.  ``at_ms`` (the
    session's newest event) dates the row so that the table TTL never drops it before the rows it hides."""
    at = _ms(at_ms)
    return [org_id, project_id, session_id, segment, version, 1, at, at, 0, "", "", 0, 0, 0, 0, *[""] * 7]


# ``journey_sessions`` (deploy/clickhouse/0003_journeys.sql): one row per (journey, session, segment) and version,
# written with the same version as the segment's ``sessions`` row.
JOURNEY_SESSION_COLUMNS: tuple[str, ...] = (
    "org_id",
    "project_id",
    "journey_id",
    "session_id",
    "segment",
    "version",
    "is_deleted",
    "status",
    "steps_reached",
    "step_count",
    "last_step_position",
    "last_step_id",
    "entered_at",
    "step_times",
    "converted_at",
    "duration_ms",
    "attempts",
    "closes_at",
)


@dataclass(frozen=True, slots=True)
class JourneyRowValues:
    """What a ``journey_sessions`` row says (stream_processors.journeys.JourneyProgress, flattened)."""

    journey_id: str
    status: str
    step_times: tuple[int, ...]  # ms, step 1 first; never empty
    step_count: int  # steps of the journey when computed
    last_step_position: int
    last_step_id: str
    attempts: int
    closes_at_ms: int  # a ``pending`` row reads as bounced/dropped after this (the segment closed)


def journey_session_row(
    org_id: str, project_id: str, session_id: str, segment: int, version: int, v: JourneyRowValues
) -> list[Any]:
    """One ``journey_sessions`` row in :data:`JOURNEY_SESSION_COLUMNS` order."""
    times = [_ms(t) for t in v.step_times]
    return [
        org_id,
        project_id,
        v.journey_id,
        session_id,
        segment,
        version,
        0,
        v.status,
        len(times),
        v.step_count,
        v.last_step_position,
        v.last_step_id,
        times[0],
        times,
        times[-1] if v.status == "converted" else None,
        v.step_times[-1] - v.step_times[0],
        v.attempts,
        _ms(v.closes_at_ms),
    ]


def journey_session_tombstone_row(
    org_id: str, project_id: str, journey_id: str, session_id: str, segment: int, version: int, at_ms: int
) -> list[Any]:
    """Hides the row of (journey, segment): the segment was merged away or no longer enters the journey.
    ``at_ms`` (the session's newest event) dates it, like :func:`session_tombstone_row`."""
    at = _ms(at_ms)
    return [org_id, project_id, journey_id, session_id, segment, version, 1, "", 0, 0, 0, "", at, [], None, 0, 0, at]
