"""ClickHouse reads behind the GraphQL types.  Every query takes the tenant (org, project) from the
authenticated context as bound parameters; nothing from user input is pasted into SQL."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from clickhouse_connect.driver.client import Client

__all__ = ["EventCounts", "SessionSummary", "Tenant", "count_events", "session_summary"]


@dataclass(frozen=True, slots=True)
class Tenant:
    org_id: str
    project_id: str


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
        "SELECT event_type, count() FROM events FINAL "
        "WHERE org_id = {org:UUID} AND project_id = {project:UUID} "
        "AND timestamp >= {start:DateTime64(3, 'UTC')} AND timestamp < {end:DateTime64(3, 'UTC')} "
        "GROUP BY event_type ORDER BY event_type"
    )
    params = {"org": t.org_id, "project": t.project_id, "start": start, "end": end}
    result = await asyncio.to_thread(ch.query, sql, parameters=params)
    by_type = [(str(r[0]), int(r[1])) for r in result.result_rows]
    return EventCounts(sum(c for _, c in by_type), by_type)


async def session_summary(ch: Client, t: Tenant, session_id: str) -> SessionSummary | None:
    sql = (
        "SELECT count(), min(timestamp), max(timestamp) FROM events FINAL "
        "WHERE org_id = {org:UUID} AND project_id = {project:UUID} AND session_id = {session:String}"
    )
    params = {"org": t.org_id, "project": t.project_id, "session": session_id}
    result = await asyncio.to_thread(ch.query, sql, parameters=params)
    count, started, ended = result.result_rows[0]
    if not count:
        return None
    return SessionSummary(session_id, int(count), started, ended)
