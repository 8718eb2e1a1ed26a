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

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import redis.asyncio as aioredis
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.query import QueryResult
from psycopg_pool import AsyncConnectionPool
from strawberry.fastapi import BaseContext

from productgraph.db import TokenInfo, tenant_transaction
from query_api.errors import NotFound
from query_api.guards.limits import DEFAULT_LIMITS, QueryLimits
from query_api.tenant_scope import Tenant, redis_key, scoped_query

__all__ = ["JourneyCache", "NotFound", "OrgCache", "ProjectCache", "QueryContext"]

if TYPE_CHECKING:  # query_api.admin imports this module
    from query_api.admin.types import Journey  # noqa: F401 (named in a string below)

V = TypeVar("V")


class OrgCache(Generic[V]):
    """Values resolved for an org (``ref`` -> value), shared by the requests of one process for ``ttl_s``.
    Keyed by the token's org, so an entry only ever answers that org.  The process that changes or deletes
    what an entry says forgets its org's entries at once (:meth:`forget_org`); other processes keep the old
    value for at most ``ttl_s``.  ``ttl_s`` 0 turns the cache off."""

    MAX_ENTRIES = 10_000

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[tuple[str, str], tuple[float, V]] = {}

    def get(self, org_id: str, ref: str) -> V | None:
        hit = self._entries.get((org_id, ref))
        if hit is None or hit[0] <= self._clock():
            return None
        return hit[1]

    def put(self, org_id: str, ref: str, value: V) -> None:
        if self.ttl_s <= 0:
            return
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.clear()
        self._entries[(org_id, ref)] = (self._clock() + self.ttl_s, value)

    def forget_org(self, org_id: str) -> None:
        for key in [k for k in self._entries if k[0] == org_id]:
            del self._entries[key]


class ProjectCache(OrgCache[str]):
    """Project id or slug -> project id: most requests name a project, and its lookup (a Postgres
    transaction under RLS) was a tenth of a replay's time.  A deleted project's id is kept by other
    processes for at most ``ttl_s`` (its data is purged anyway)."""


class JourneyCache(OrgCache["Journey"]):
    """Journey id -> the journey and its steps, for the journey funnel (its Postgres read was a tenth of the
    answer's time).  Every journey mutation and a project delete forget the org's entries in the process
    that made them; the other processes answer with the new definition within ``ttl_s``."""


class QueryContext(BaseContext):
    def __init__(
        self,
        token: TokenInfo,
        pool: AsyncConnectionPool,
        clickhouse: Client,
        redis: aioredis.Redis,
        limits: QueryLimits = DEFAULT_LIMITS,
        projects: ProjectCache | None = None,
        journeys: JourneyCache | None = None,
    ) -> None:
        super().__init__()
        self.projects = projects or ProjectCache(0)
        self.journeys = journeys or JourneyCache(0)
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
        org_id = self.token.org_id
        cached = self.projects.get(org_id, project_id)
        if cached is not None:
            tenant = self._tenants[project_id] = Tenant(org_id, cached)
            return tenant
        row = None
        if _storable(project_id) and len(project_id) <= 255:
            async with tenant_transaction(self.pool, self.token.org_id) as conn:
                cur = await conn.execute(
                    "SELECT id::text FROM projects WHERE id::text = %s OR slug = %s LIMIT 1", (project_id, project_id)
                )
                row = await cur.fetchone()
        if row is None:
            raise NotFound(f"project {project_id!r} not found")
        tenant = Tenant(org_id, row[0])
        self._tenants[project_id] = tenant
        self.projects.put(org_id, project_id, row[0])
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
