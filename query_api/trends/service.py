"""``trends(ctx, tenant, spec)``: the one entry point GraphQL and the MCP server share (saved cohort read
in the tenant transaction, one tenant-scoped ClickHouse query, the reference's result builder)."""

from __future__ import annotations

from datetime import UTC, datetime

from query_api.cohorts.service import cohort_filter
from query_api.context import QueryContext
from query_api.tenant_scope import EVENTS_FINAL_SETTINGS, Tenant
from query_api.trends.result import TrendsResult, build_result
from query_api.trends.spec import TrendsSpec
from query_api.trends.sql import trends_query

__all__ = ["trends"]


async def trends(ctx: QueryContext, tenant: Tenant, spec: TrendsSpec, now: datetime | None = None) -> TrendsResult:
    cohort = None
    if spec.cohort_id is not None:
        cohort = await cohort_filter(ctx, tenant, spec.cohort_id, now or datetime.now(UTC))
    q = trends_query(spec, cohort)
    rows = (await ctx.query(tenant, q.sql, q.params, EVENTS_FINAL_SETTINGS)).result_rows  # reads only events
    return build_result(spec, {(str(g), int(b)): int(n) for g, b, n in rows})
