"""The query API's FastAPI app: GraphQL at ``/graphql`` (GraphiQL in a browser), health, readiness, metrics.

Auth: ``Authorization: Bearer <access token>``; the token resolves to one org (cached for a short TTL),
and every resolver works inside that org only.  Subscriptions (WebSocket, ``graphql-transport-ws``) send
the same header, or, as browsers cannot set headers on a WebSocket, ``{"Authorization": "Bearer ..."}``
as the ``connection_init`` payload: the socket is rejected (4403) before any operation runs when neither
holds a valid token.  The request limits of :mod:`query_api.guards` (per-token
rate, ClickHouse time budget) come from :class:`QueryApiSettings` and travel on the context.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import redis.asyncio as aioredis
from clickhouse_connect.driver.client import Client
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from starlette.requests import HTTPConnection
from strawberry.exceptions import ConnectionRejectionError
from strawberry.fastapi import GraphQLRouter
from strawberry.types.unset import UNSET, UnsetType

from productgraph.connections import clickhouse_client
from productgraph.db import TokenInfo, open_pool, resolve_access_token
from query_api.context import JourneyCache, ProjectCache, QueryContext
from query_api.schema import schema
from query_api.settings import QueryApiSettings

__all__ = ["AWAITING_TOKEN", "create_app"]

AWAITING_TOKEN = TokenInfo(org_id="", token_id="", role="")
"""The token of a WebSocket that has not sent its ``connection_init`` yet: no org, no role, never used for
an operation (the protocol runs none before the connection is acknowledged)."""


_UNSET: UnsetType = UNSET  # "acknowledge without a payload"


def _bearer(value: str) -> str:
    return value[7:].strip() if value[:7].lower() == "bearer " else ""


AUTH_FAILURES = Counter("productgraph_query_auth_failures_total", "requests with a missing or bad token")


def create_app(settings: QueryApiSettings | None = None) -> FastAPI:
    s = settings or QueryApiSettings()
    pool = open_pool(s.postgres_dsn, min_size=1, max_size=10)
    redis = aioredis.from_url(s.redis_url, socket_timeout=2, socket_connect_timeout=2)
    state: dict[str, Client] = {}
    limits = s.limits()
    tokens: dict[str, tuple[float, TokenInfo | None]] = {}
    projects = ProjectCache(s.project_cache_ttl_s)
    journeys = JourneyCache(s.journey_cache_ttl_s)

    def clickhouse() -> Client:
        if "ch" not in state:
            state["ch"] = clickhouse_client(
                s.clickhouse_url, compress=s.clickhouse_compress, max_execution_time=int(s.clickhouse_timeout_s)
            )
        return state["ch"]

    async def resolve(token: str) -> TokenInfo | None:
        """The token's org and role (cached for ``token_cache_ttl_s``), or None for an unknown one."""
        now = time.monotonic()
        hit = tokens.get(token)
        if hit is None or hit[0] <= now:
            try:
                info = await resolve_access_token(pool, token)
            except Exception as exc:
                raise HTTPException(503, "token store unavailable", headers={"Retry-After": "5"}) from exc
            hit = (now + s.token_cache_ttl_s, info)
            if len(tokens) > 10_000:
                tokens.clear()
            tokens[token] = hit
        if hit[1] is None:
            AUTH_FAILURES.inc()
        return hit[1]

    async def authenticate(conn: HTTPConnection) -> TokenInfo | None:
        token = _bearer(conn.headers.get("authorization", ""))
        if conn.scope["type"] == "websocket" and not token:
            return AWAITING_TOKEN  # connection_init carries it: see _Router.on_ws_connect
        html = "text/html" in conn.headers.get("accept", "")
        if not token and conn.scope.get("method") == "GET" and html:
            return None  # the GraphiQL page itself; its queries carry the token
        if not token:
            AUTH_FAILURES.inc()
            raise HTTPException(401, "missing access token: send Authorization: Bearer <token>")
        info = await resolve(token)
        if info is None:
            raise HTTPException(401, "unknown, expired or revoked access token")
        return info

    class _Router(GraphQLRouter[QueryContext | None, None]):
        async def on_ws_connect(self, context: QueryContext | None) -> UnsetType | dict[str, object] | None:
            if context is None or context.token is not AWAITING_TOKEN:
                return _UNSET
            params = context.connection_params if isinstance(context.connection_params, dict) else {}
            raw = params.get("Authorization", params.get("authorization", ""))
            info = await resolve(_bearer(raw if isinstance(raw, str) else ""))
            if info is None:
                AUTH_FAILURES.inc()
                raise ConnectionRejectionError({"message": "missing, unknown, expired or revoked access token"})
            context.token = info
            return _UNSET

    async def context(token: TokenInfo | None = Depends(authenticate)) -> QueryContext | None:  # noqa: B008
        if token is None:
            return None
        ch = await asyncio.to_thread(clickhouse)
        return QueryContext(token, pool, ch, redis, limits, projects, journeys)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await pool.open(wait=False)
        try:
            yield
        finally:
            await pool.close()
            await redis.aclose()
            if "ch" in state:
                state["ch"].close()

    app = FastAPI(title="ProductGraph query API", version="0.1.0", lifespan=lifespan)
    app.include_router(_Router(schema, context_getter=context), prefix="/graphql")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> Response:
        down = []
        try:
            async with asyncio.timeout(2), pool.connection() as conn:
                await conn.execute("SELECT 1")
        except Exception:
            down.append("postgres")
        try:
            async with asyncio.timeout(2):
                await redis.ping()
        except Exception:
            down.append("redis")
        try:
            async with asyncio.timeout(3):
                ch_ok = await asyncio.to_thread(lambda: bool(clickhouse().ping()))
        except Exception:
            ch_ok = False
        if not ch_ok:
            state.pop("ch", None)
            down.append("clickhouse")
        status = 503 if down else 200
        body = {"status": "unavailable", "down": down} if down else {"status": "ready"}
        return Response(orjson.dumps(body), status, media_type="application/json")

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
