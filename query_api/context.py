"""Per-request GraphQL context: the caller's org (from the access token) and tenant-scoped accessors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from clickhouse_connect.driver.client import Client
from psycopg_pool import AsyncConnectionPool
from strawberry.fastapi import BaseContext

from productgraph.db import TokenInfo, tenant_transaction
from query_api.analytics import Tenant

__all__ = ["NotFound", "QueryContext"]


class NotFound(Exception):
    """An id the caller's org does not have: said the same way whether it exists elsewhere or not."""


class QueryContext(BaseContext):
    def __init__(self, token: TokenInfo, pool: AsyncConnectionPool, clickhouse: Client, redis: aioredis.Redis) -> None:
        super().__init__()
        self.token = token
        self.pool = pool
        self.clickhouse = clickhouse
        self.redis = redis
        self._tenants: dict[str, Tenant] = {}

    async def projects(self) -> list[tuple[str, str, str]]:
        async with tenant_transaction(self.pool, self.token.org_id) as conn:
            cur = await conn.execute("SELECT id::text, name, slug FROM projects ORDER BY created_at")
            return [(r[0], r[1], r[2]) for r in await cur.fetchall()]

    async def tenant(self, project_id: str) -> Tenant:
        """The (org, project) pair for a project id or slug of the caller's org, else :class:`NotFound`."""
        if project_id in self._tenants:
            return self._tenants[project_id]
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

    async def live_session(self, tenant: Tenant, session_id: str) -> dict[str, Any] | None:
        raw = await self.redis.hgetall(f"session:{tenant.project_id}:{session_id}")
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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
