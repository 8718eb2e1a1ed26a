"""Per-request GraphQL context: the caller's org (from the access token) and tenant-scoped accessors.

Resolvers never take an org from arguments: :meth:`QueryContext.tenant` turns a project id or slug into
a :class:`Tenant` only if the project belongs to the token's org (else :class:`NotFound`, worded the same
whether the project exists elsewhere or not).  With a tenant, ClickHouse is read through
:meth:`QueryContext.query` (:func:`query_api.tenant_scope.scoped_query`) and Redis keys are built by
:func:`query_api.tenant_scope.redis_key`; Postgres is read inside
:func:`productgraph.db.tenant_transaction` where RLS applies.  ``clickhouse`` and ``redis`` are the raw
clients, for those helpers.  ``limits`` are the request limits of the entry point (per-token rate,
ClickHouse time budget; :mod:`query_api.guards`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.query import QueryResult
from psycopg_pool import AsyncConnectionPool
from strawberry.fastapi import BaseContext

from productgraph.db import TokenInfo, tenant_transaction
from query_api.errors import NotFound
from query_api.guards.limits import DEFAULT_LIMITS, QueryLimits
from query_api.tenant_scope import Tenant, redis_key, scoped_query

__all__ = ["NotFound", "QueryContext"]


class QueryContext(BaseContext):
    def __init__(
        self,
        token: TokenInfo,
        pool: AsyncConnectionPool,
        clickhouse: Client,
        redis: aioredis.Redis,
        limits: QueryLimits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__()
        self.token = token
        self.pool = pool
        self.clickhouse = clickhouse
        self.redis = redis
        self.limits = limits
        self._tenants: dict[str, Tenant] = {}

    async def tenant(self, project_id: str) -> Tenant:
        """The (org, project) pair for a project id or slug of the caller's org, else :class:`NotFound`."""
        if project_id in self._tenants:
            return self._tenants[project_id]
        row = None
        if _storable(project_id) and len(project_id) <= 255:
            async with tenant_transaction(self.pool, self.token.org_id) as conn:
                cur = await conn.execute(
                    "SELECT id::text FROM projects WHERE id::text = %s OR slug = %s LIMIT 1", (project_id, project_id)
                )
                row = await cur.fetchone()
        if row is None:
            raise NotFound(f"project {project_id!r} not found")
        tenant = Tenant(self.token.org_id, row[0])
        self._tenants[project_id] = tenant
        return tenant

    async def query(
        self,
        tenant: Tenant,
        sql: str,
        params: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> QueryResult:
        """A ClickHouse read scoped to ``tenant`` within the request's time budget (see
        :func:`query_api.tenant_scope.scoped_query`)."""
        return await scoped_query(
            self.clickhouse, tenant, sql, params, settings, timeout_s=self.limits.clickhouse_timeout_s
        )

    async def live_session(self, tenant: Tenant, session_id: str) -> dict[str, Any] | None:
        raw = await self.redis.hgetall(redis_key(tenant, "session", session_id))
        if not raw:
            return None
        h = {_text(k): _text(v) for k, v in raw.items()}

        def ts(name: str) -> datetime | None:
            return datetime.fromtimestamp(int(h[name]) / 1000, tz=UTC) if name in h else None

        return {
            "event_count": int(h.get("event_count", 0)),
            "started_at": ts("started_ms"),
            "last_event_at": ts("last_ms"),
            "user_id": h.get("user_id"),
            "current_page": h.get("current_page"),
        }


def _storable(value: str) -> bool:
    """Postgres text takes neither NUL nor lone surrogates; such an id simply matches nothing."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
