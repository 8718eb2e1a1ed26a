"""``retention(ctx, tenant, spec)``: the one entry point GraphQL and the MCP server share.

Reads the saved cohort (if any) in the tenant transaction, then runs one tenant-scoped ClickHouse query
(:meth:`QueryContext.query`) and builds the triangle with the reference's own result builder.
"""

from __future__ import annotations

from datetime import UTC, datetime

from query_api.cohorts.service import cohort_filter
from query_api.context import QueryContext
from query_api.retention.result import RetentionResult, build_result
from query_api.retention.spec import RetentionSpec
from query_api.retention.sql import retention_query
from query_api.tenant_scope import Tenant

__all__ = ["retention"]


async def retention(
    ctx: QueryContext, tenant: Tenant, spec: RetentionSpec, now: datetime | None = None
) -> RetentionResult:
    cohort = None
    if spec.cohort_id is not None:
        cohort = await cohort_filter(ctx, tenant, spec.cohort_id, now or datetime.now(UTC))
    q = retention_query(spec, cohort)
    rows = (await ctx.query(tenant, q.sql, q.params)).result_rows
    sizes = {int(c): int(k) for c, n, k in rows if n == -1}
    counts = {(int(c), int(n)): int(k) for c, n, k in rows if n >= 0}
    return build_result(spec, sizes, counts)
