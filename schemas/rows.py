"""ClickHouse row shapes: the explicit column list of ``events`` and the record → row mapping (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.fields import FIELDS, Kind
from schemas.records import EventRecord

__all__ = ["EVENT_COLUMNS", "event_row", "events_table_columns_sql"]

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
