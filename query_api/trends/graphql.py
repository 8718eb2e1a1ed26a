"""The ``trends`` GraphQL field: arguments validated into a :class:`TrendsSpec`, answered by
:func:`query_api.trends.service.trends`.  Thin."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Annotated

import strawberry
from strawberry.types import Info

from query_api.context import QueryContext
from query_api.trends.result import TrendsResult
from query_api.trends.service import trends
from query_api.trends.spec import parse_trends_spec

__all__ = ["TrendsQuery"]


@strawberry.enum
class TrendInterval(Enum):
    MINUTE = "MINUTE"
    HOUR = "HOUR"
    DAY = "DAY"
    WEEK = "WEEK"


@strawberry.type
class TrendSeriesType:
    value: str
    total: int
    counts: list[int] = strawberry.field(description="Events per bucket, aligned with Trends.buckets.")


@strawberry.type
class Trends:
    interval: TrendInterval
    buckets: list[datetime]
    total: int
    series: list[TrendSeriesType]


def to_graphql(r: TrendsResult) -> Trends:
    return Trends(
        interval=TrendInterval(r.interval),
        buckets=list(r.buckets),
        total=r.total,
        series=[TrendSeriesType(value=s.value, total=s.total, counts=list(s.counts)) for s in r.series],
    )


_BREAKDOWN = "TYPE, NAME, PAGE or a property path (user.id, ui.viewport, metadata.plan, extra.device.type, ...)."


@strawberry.type
class TrendsQuery:
    @strawberry.field(
        description="Events per interval (UTC buckets, zero-filled; weeks start Monday), optionally filtered and "
        "broken down: the `limit` (1-50) largest values get a series each, the rest is '(other)'. Default range: "
        "1 h / 24 h / 30 days / 12 weeks up to now; at most 1500 buckets and 400 days."
    )
    async def trends(
        self,
        info: Info[QueryContext, None],
        project_id: strawberry.ID,
        interval: TrendInterval = TrendInterval.DAY,
        date_from: datetime | None = None,
        date_to: datetime | None = None,
        event_type: str | None = None,
        event_name: str | None = None,
        page: Annotated[str | None, strawberry.argument(description="Exact page.path.")] = None,
        breakdown: Annotated[str | None, strawberry.argument(description=_BREAKDOWN)] = None,
        cohort_id: strawberry.ID | None = None,
        limit: int = 10,
    ) -> Trends:
        tenant = await info.context.tenant(str(project_id))
        now = datetime.now(UTC)
        spec = parse_trends_spec(
            interval=interval.value,
            date_from=date_from,
            date_to=date_to,
            event_type=event_type,
            event_name=event_name,
            page=page,
            breakdown=breakdown,
            limit=limit,
            cohort_id=None if cohort_id is None else str(cohort_id),
            now=now,
        )
        return to_graphql(await trends(info.context, tenant, spec, now))
