"""``paths(ctx, tenant, spec)``: the one entry point GraphQL and the MCP server share (one tenant-scoped
ClickHouse query, the reference's result builder)."""

from __future__ import annotations

from query_api.context import QueryContext
from query_api.paths.result import PathsResult, build_result
from query_api.paths.spec import PathsSpec
from query_api.paths.sql import paths_query
from query_api.tenant_scope import Tenant

__all__ = ["paths"]


async def paths(ctx: QueryContext, tenant: Tenant, spec: PathsSpec) -> PathsResult:
    q = paths_query(spec, tenant)
    rows = (await ctx.query(tenant, q.sql, q.params)).result_rows
    total = int(rows[0][2]) if rows else 0  # every anchored segment, also those of paths cut by the LIMIT
    return build_result(spec, {tuple(str(x) for x in path): int(n) for path, n, _ in rows}, total)
