"""The ``retention`` GraphQL field: arguments validated into a :class:`RetentionSpec`, answered by
:func:`query_api.retention.service.retention`.  Thin."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Annotated

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from query_api.context import QueryContext
from query_api.retention.result import RetentionResult
from query_api.retention.service import retention
from query_api.retention.spec import parse_retention_spec

__all__ = ["RetentionQuery"]


@strawberry.enum
class RetentionPeriod(Enum):
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"


@strawberry.type
class RetentionCellType:
    period: int
    count: int | None = strawberry.field(description="Persons with a return event in this period; null: not begun.")
    rate: float | None = strawberry.field(description="count / cohort size (6 decimals); 0 for an empty cohort.")


@strawberry.type
class RetentionCohortType:
    start: datetime
    size: int
    cells: list[RetentionCellType]


@strawberry.type
class Retention:
    period: RetentionPeriod
    periods: int
    cohorts: list[RetentionCohortType]


def to_graphql(r: RetentionResult) -> Retention:
    return Retention(
        period=RetentionPeriod(r.period),
        periods=r.periods,
        cohorts=[
            RetentionCohortType(
                start=c.start,
                size=c.size,
                cells=[RetentionCellType(period=x.period, count=x.count, rate=x.rate) for x in c.cells],
            )
            for c in r.cohorts
        ],
    )


_MATCHER = "A matcher (JSON, the journey/funnel matcher language); omitted or {} = any event."


@strawberry.type
class RetentionQuery:
    @strawberry.field(
        description="Retention triangle (rule 12): persons by the UTC day/week/month of their first start event, "
        "and per period n the share with a return event in cohort period + n; cells not begun are null. Default "
        "range: the last `periods` periods up to now; at most 400 days of cohorts plus periods."
    )
    async def retention(
        self,
        info: Info[QueryContext, None],
        project_id: strawberry.ID,
        period: RetentionPeriod = RetentionPeriod.DAY,
        periods: Annotated[int | None, strawberry.argument(description="Cells 0..periods (default 7/8/6).")] = None,
        start_event: Annotated[JSON | None, strawberry.argument(description=_MATCHER)] = None,
        return_event: Annotated[JSON | None, strawberry.argument(description=_MATCHER)] = None,
        date_from: datetime | None = None,
        date_to: datetime | None = None,
        cohort_id: strawberry.ID | None = None,
    ) -> Retention:
        tenant = await info.context.tenant(str(project_id))
        now = datetime.now(UTC)
        spec = parse_retention_spec(
            period=period.value,
            periods=periods,
            start_event=start_event,
            return_event=return_event,
            date_from=date_from,
            date_to=date_to,
            cohort_id=None if cohort_id is None else str(cohort_id),
            now=now,
        )
        return to_graphql(await retention(info.context, tenant, spec, now))
