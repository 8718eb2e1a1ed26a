"""ClickHouse reads behind the GraphQL types.  Every query goes through
:func:`query_api.tenant_scope.scoped_query`: the tenant (org, project) comes from the authenticated
context as bound parameters, and SQL without the tenant condition is refused."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from clickhouse_connect.driver.client import Client

from query_api.tenant_scope import EVENTS_FINAL_SETTINGS, TENANT_FILTER, Tenant, scoped_query

__all__ = ["EventCounts", "SessionSummary", "Tenant", "count_events", "session_summary"]


@dataclass(frozen=True, slots=True)
class EventCounts:
    total: int
    by_type: list[tuple[str, int]]


@dataclass(frozen=True, slots=True)
class SessionSummary:
    session_id: str
    event_count: int
    started_at: datetime
    ended_at: datetime


async def count_events(ch: Client, t: Tenant, start: datetime, end: datetime) -> EventCounts:
    sql = (
        f"SELECT event_type, count() FROM events FINAL WHERE {TENANT_FILTER} "
        "AND timestamp >= {start:DateTime64(3, 'UTC')} AND timestamp < {end:DateTime64(3, 'UTC')} "
        "GROUP BY event_type ORDER BY event_type"
    )
    result = await scoped_query(ch, t, sql, {"start": start, "end": end}, EVENTS_FINAL_SETTINGS)
    by_type = [(str(r[0]), int(r[1])) for r in result.result_rows]
    return EventCounts(sum(c for _, c in by_type), by_type)


async def session_summary(ch: Client, t: Tenant, session_id: str) -> SessionSummary | None:
    sql = (
        f"SELECT count(), min(timestamp), max(timestamp) FROM events FINAL WHERE {TENANT_FILTER} "
        "AND session_id = {session:String}"
    )
    result = await scoped_query(ch, t, sql, {"session": session_id}, EVENTS_FINAL_SETTINGS)
    count, started, ended = result.result_rows[0]
    if not count:
        return None
    return SessionSummary(session_id, int(count), started, ended)
