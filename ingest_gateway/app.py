"""The gateway's FastAPI app: routes and wiring only; the request logic is :mod:`ingest_gateway.service`.

Lifecycle: on start it opens the Postgres pool (API keys) and starts the Kafka producer; if Kafka is not
reachable yet, a background task keeps retrying and ``/v1/events`` answers 503 until it is.  The heap
built so far is then frozen for the cyclic GC (``gc_freeze``).  A request is answered 202 only after
Kafka acknowledged every accepted record (acks=all).  On stop, the dedup confirmations still running
are awaited, then the producer flushes and everything closes.

Adapters can be injected (``key_lookup``, ``admission``, ``publisher``) so the whole HTTP contract runs
in-process on fakes; by default they are Postgres, Redis and Kafka from the settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import Receive, Scope, Send

from ingest_gateway.admission import AdmissionStore, RedisAdmission
from ingest_gateway.batch import KafkaRecord
from ingest_gateway.cors import preflight_headers
from ingest_gateway.fastpath import IngestFastPath
from ingest_gateway.keys import KeyCache
from ingest_gateway.openapi import COMPONENTS, REQUEST_BODY, RESPONSES
from ingest_gateway.policy import project_policy
from ingest_gateway.publisher import EventPublisher
from ingest_gateway.service import IngestService, ResolvedKey
from ingest_gateway.settings import GatewaySettings
from productgraph.db import KeyInfo, open_pool, resolve_api_key
from productgraph.runtime import settle_heap

__all__ = ["GatewayPublisher", "create_app"]

log = logging.getLogger("productgraph.gateway")


class GatewayPublisher(Protocol):
    @property
    def started(self) -> bool: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def ping(self) -> bool: ...
    async def publish(self, records: Sequence[KafkaRecord]) -> None: ...


_DOWN = {"status": "unavailable", "down": ["kafka"]}


class _GatewayApp(FastAPI):
    """FastAPI, but ``POST /v1/events`` goes straight to :class:`IngestFastPath` before FastAPI's middleware
    stack (server-error, telemetry and body-limit wrappers: a few percent of the gateway's CPU per request).
    An unexpected exception there still ends in a 500, from the server instead of Starlette."""

    fast_path: IngestFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_path
        if fast is not None and fast.handles(scope):
            await fast.handle(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def create_app(
    settings: GatewaySettings | None = None,
    *,
    key_lookup: Callable[[str], Awaitable[KeyInfo | None]] | None = None,
    admission: AdmissionStore | None = None,
    publisher: GatewayPublisher | None = None,
) -> FastAPI:
    s = settings or GatewaySettings()
    checks: dict[str, Callable[[], Awaitable[Any]]] = {}
    closers: list[Callable[[], Awaitable[Any]]] = []
    openers: list[Callable[[], Awaitable[Any]]] = []

    if key_lookup is None:
        pool = open_pool(s.postgres_dsn, min_size=1, max_size=4)
        key_lookup = lambda k: resolve_api_key(pool, k)  # noqa: E731

        async def pg_ping() -> None:
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")

        openers.append(lambda: pool.open(wait=False))
        closers.append(pool.close)
        checks["postgres"] = pg_ping
    if admission is None:
        redis = aioredis.from_url(s.redis_url, socket_timeout=2, socket_connect_timeout=2)
        redis_admission = RedisAdmission(redis, timeout_s=s.redis_timeout_s)
        admission = redis_admission
        checks["redis"] = redis.ping
        closers += [redis_admission.aclose, redis.aclose]
    kafka: GatewayPublisher = publisher or EventPublisher(
        s.kafka_bootstrap,
        idempotence=s.kafka_idempotence,
        max_batch_bytes=s.producer_max_batch_bytes,
        timeout_s=s.produce_timeout_s,
    )
    lookup = key_lookup

    async def resolve(key: str) -> ResolvedKey | None:
        info = await lookup(key)
        if info is None:
            return None
        policy = project_policy(
            info.settings, rate_per_s=s.rate_limit_per_s, burst=s.rate_limit_burst, dedup_window_s=s.dedup_window_s
        )
        return ResolvedKey(info, policy)

    service = IngestService(s, KeyCache(resolve, s.key_cache_ttl_s), admission, kafka)

    async def connect_producer() -> None:
        delay = 0.5
        while not kafka.started:
            try:
                await kafka.start()
                log.info("kafka producer connected to %s", s.kafka_bootstrap)
            except Exception as exc:
                log.warning("kafka not reachable (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for open_ in openers:
            await open_()
        connector = asyncio.create_task(connect_producer())
        if s.gc_freeze:
            settle_heap(s.gc_gen0_threshold)
        try:
            yield
        finally:
            connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connector
            await service.drain()
            await kafka.stop()
            for close in closers:
                await close()

    app = _GatewayApp(
        title="ProductGraph ingest gateway",
        version="0.1.0",
        description=(
            "Batches of OpenTelemetry-style product events in, one answer per event out. "
            "202 means Kafka acknowledged every accepted event (acks=all)."
        ),
        lifespan=lifespan,
    )

    @app.post(
        "/v1/events",
        status_code=202,
        summary="Ingest a batch of events",
        response_class=Response,
        openapi_extra={"requestBody": REQUEST_BODY},
        responses=RESPONSES,
    )
    async def ingest(request: Request) -> Response:
        reply = await service.ingest(request.headers, request.stream())
        return Response(reply.encode(), reply.status, reply.headers, media_type="application/json")

    @app.options("/v1/events", status_code=204, summary="CORS preflight", response_class=Response)
    async def preflight(request: Request) -> Response:
        return Response(status_code=204, headers=preflight_headers(request.headers.get("origin")))

    @app.get("/health", summary="process alive")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/ready",
        summary="ready when Kafka, Redis and the key store answer",
        responses={503: {"description": "a dependency is down", "content": {"application/json": {"example": _DOWN}}}},
    )
    async def ready() -> Response:
        down = [] if kafka.started and await kafka.ping() else ["kafka"]
        for name, check in checks.items():
            try:
                async with asyncio.timeout(2):
                    await check()
            except Exception:
                down.append(name)
        if down:
            return _json(503, {"status": "unavailable", "down": down})
        return _json(200, {"status": "ready"})

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(COMPONENTS)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(IngestFastPath, service=service)  # in case FastAPI is called (the same answers)
    app.fast_path = IngestFastPath(app, service)
    return app
