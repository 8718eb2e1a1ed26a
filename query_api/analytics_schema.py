"""GraphQL fields over the warehouse and live state: event counts and one session.  Resolvers are thin:
resolve the tenant from the token's org, call :mod:`query_api.analytics`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import strawberry
from strawberry.types import Info

from query_api import analytics
from query_api.context import QueryContext

__all__ = ["AnalyticsQuery", "EventStats", "LiveSession", "Session", "TypeCount"]

MAX_RANGE = timedelta(days=400)


@strawberry.type
class TypeCount:
    event_type: str
    count: int


@strawberry.type
class EventStats:
    total: int
    by_type: list[TypeCount]


@strawberry.type
class LiveSession:
    event_count: int
    started_at: datetime | None
    last_event_at: datetime | None
    user_id: str | None
    current_page: str | None


@strawberry.type
class Session:
    session_id: str
    event_count: int
    started_at: datetime
    ended_at: datetime
    duration_ms: int
    live: LiveSession | None


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@strawberry.type
class AnalyticsQuery:
    @strawberry.field(description="Event counts of a project in [from, to), total and by event type.")
    async def events(
        self,
        info: Info[QueryContext, None],
        project_id: strawberry.ID,
        from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
        to: datetime | None = None,
    ) -> EventStats:
        tenant = await info.context.tenant(str(project_id))
        end = _utc(to) if to else datetime.now(UTC) + timedelta(days=1)
        start = _utc(from_) if from_ else end - timedelta(days=30)
        if start >= end:
            raise ValueError("from must be before to")
        if end - start > MAX_RANGE:
            raise ValueError(f"date range longer than {MAX_RANGE.days} days")
        counts = await analytics.count_events(info.context.clickhouse, tenant, start, end)
        return EventStats(total=counts.total, by_type=[TypeCount(event_type=t, count=c) for t, c in counts.by_type])

    @strawberry.field(description="One session: counts and span from the warehouse, live state from Redis.")
    async def session(
        self, info: Info[QueryContext, None], project_id: strawberry.ID, session_id: str
    ) -> Session | None:
        tenant = await info.context.tenant(str(project_id))
        summary = await analytics.session_summary(info.context.clickhouse, tenant, session_id)
        if summary is None:
            return None
        live = await info.context.live_session(tenant, session_id)
        return Session(
            session_id=summary.session_id,
            event_count=summary.event_count,
            started_at=_utc(summary.started_at),
            ended_at=_utc(summary.ended_at),
            duration_ms=int((summary.ended_at - summary.started_at).total_seconds() * 1000),
            live=None if live is None else LiveSession(**live),
        )
