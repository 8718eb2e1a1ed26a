"""The gateway's FastAPI app.

Lifecycle: on start it opens the Postgres pool (API keys) and starts the Kafka producer; if Kafka is not
reachable yet, a background task keeps retrying and ``/v1/events`` answers 503 until it is.  A request is
answered 202 only after Kafka acknowledged every accepted record (acks=all).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest_gateway import metrics
from ingest_gateway.body import BodyTooLarge, UnsupportedEncoding, read_body
from ingest_gateway.keys import KeyCache
from ingest_gateway.publisher import EventPublisher, PublishFailed
from ingest_gateway.settings import GatewaySettings
from productgraph.db import open_pool, resolve_api_key
from schemas.ingest import BatchError, EventError, IngestContext, parse_rfc3339_ms, validate_batch_shape, validate_event
from schemas.records import EventRecord

__all__ = ["create_app"]

log = logging.getLogger("productgraph.gateway")


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    metrics.REQUESTS.labels(status=str(status)).inc()
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _api_key(request: Request) -> str | None:
    key = request.headers.get("x-pg-api-key")
    if key:
        return key.strip()
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return None


_REQUEST_EXAMPLE = {
    "events": [
        {
            "event_id": "0192f0c2-7d1e-7b1a-9c55-2f4c1a9e0001",
            "project_id": "demo",
            "session.id": "s-42",
            "event.type": "page.view",
            "event.timestamp": "2026-11-25T10:00:00.000Z",
            "user.id": "u-7",
            "page.path": "/checkout",
        }
    ],
    "sent_at": "2026-11-25T10:00:01.000Z",
}


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    s = settings or GatewaySettings()
    pool = open_pool(s.postgres_dsn, min_size=1, max_size=4)
    keys = KeyCache(lambda k: resolve_api_key(pool, k), s.key_cache_ttl_s)
    publisher = EventPublisher(
        s.kafka_bootstrap,
        idempotence=s.kafka_idempotence,
        linger_ms=s.producer_linger_ms,
        max_batch_bytes=s.producer_max_batch_bytes,
        timeout_s=s.produce_timeout_s,
    )
    redis = aioredis.from_url(s.redis_url, socket_timeout=2, socket_connect_timeout=2)

    async def connect_producer() -> None:
        delay = 0.5
        while not publisher.started:
            try:
                await publisher.start()
                log.info("kafka producer connected to %s", s.kafka_bootstrap)
            except Exception as exc:
                log.warning("kafka not reachable (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await pool.open(wait=False)
        connector = asyncio.create_task(connect_producer())
        try:
            yield
        finally:
            connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connector
            await publisher.stop()
            await pool.close()
            await redis.aclose()

    app = FastAPI(
        title="ProductGraph ingest gateway",
        version="0.1.0",
        description="Batches of OpenTelemetry-style product events in, one answer per event out.",
        lifespan=lifespan,
    )

    @app.post(
        "/v1/events",
        status_code=202,
        summary="Ingest a batch of events",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}, "example": _REQUEST_EXAMPLE}},
            }
        },
        responses={
            202: {
                "description": "accepted (possibly partly)",
                "content": {
                    "application/json": {
                        "example": {
                            "accepted": 1,
                            "rejected": 1,
                            "duplicates": 0,
                            "errors": [{"index": 1, "error": "session.id: required"}],
                        }
                    }
                },
            },
            400: {"description": "body not usable: not JSON, no events list, more than 1000 events"},
            401: {"description": "missing or unknown API key"},
            413: {"description": "body over 10 MB after decompression"},
            415: {"description": "not JSON, or unsupported Content-Encoding"},
            503: {"description": "Kafka or the key store unavailable; nothing accepted; retry after Retry-After"},
        },
    )
    async def ingest(request: Request) -> Response:
        received_ms = int(time.time() * 1000)
        key = _api_key(request)
        if key is None:
            return _json(401, {"error": "missing API key: send X-PG-API-Key or Authorization: Bearer"})
        ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if ctype not in ("application/json", "text/plain", ""):
            return _json(415, {"error": f"content type {ctype!r} is not supported; send application/json"})
        try:
            info = await keys.get(key)
        except Exception as exc:
            log.warning("key store unavailable: %s", exc)
            return _json(503, {"error": "key store unavailable", "accepted": 0}, {"Retry-After": "5"})
        if info is None:
            return _json(401, {"error": "unknown or revoked API key"})
        try:
            body = await read_body(request.stream(), request.headers.get("content-encoding", ""), s.max_body_bytes)
        except BodyTooLarge:
            return _json(413, {"error": f"body larger than {s.max_body_bytes} bytes"})
        except UnsupportedEncoding as exc:
            return _json(415, {"error": f"content encoding {exc} is not supported; use gzip or none"})
        except ValueError as exc:
            return _json(400, {"error": str(exc)})
        try:
            payload = orjson.loads(body)
            events = validate_batch_shape(payload)
        except orjson.JSONDecodeError:
            return _json(400, {"error": "body: invalid JSON"})
        except BatchError as exc:
            return _json(400, {"error": str(exc)})

        skew_ms = 0
        sent_at = payload.get("sent_at")
        if sent_at is not None:
            sent_ms = parse_rfc3339_ms(sent_at)
            if sent_ms is None:
                return _json(400, {"error": "sent_at: invalid RFC3339 timestamp"})
            skew_ms = received_ms - sent_ms
        ctx = IngestContext(
            info.org_id, info.project_id, info.project_slug, received_ms, skew_ms, s.fill_missing_timestamp
        )
        accepted: list[EventRecord] = []
        errors: list[dict[str, Any]] = []
        for i, raw in enumerate(events):
            result = validate_event(i, raw, ctx)
            if isinstance(result, EventError):
                errors.append({"index": result.index, "error": result.error})
            else:
                accepted.append(result)
        metrics.BATCH_SIZE.observe(len(events))
        started = time.perf_counter()
        try:
            await publisher.publish(accepted)
        except PublishFailed as exc:
            log.warning("publish failed: %s", exc)
            return _json(503, {"error": "event stream unavailable, retry later", "accepted": 0}, {"Retry-After": "5"})
        metrics.PRODUCE_SECONDS.observe(time.perf_counter() - started)
        metrics.EVENTS.labels(outcome="accepted").inc(len(accepted))
        metrics.EVENTS.labels(outcome="rejected").inc(len(errors))
        return _json(202, {"accepted": len(accepted), "rejected": len(errors), "duplicates": 0, "errors": errors})

    @app.get("/health", summary="process alive")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", summary="ready when Kafka, Redis and the key store answer")
    async def ready() -> Response:
        down = []
        if not (publisher.started and await publisher.ping()):
            down.append("kafka")
        try:
            async with asyncio.timeout(2):
                await redis.ping()
        except Exception:
            down.append("redis")
        try:
            async with asyncio.timeout(2), pool.connection() as conn:
                await conn.execute("SELECT 1")
        except Exception:
            down.append("postgres")
        if down:
            return Response(orjson.dumps({"status": "unavailable", "down": down}), 503, media_type="application/json")
        return Response(orjson.dumps({"status": "ready"}), 200, media_type="application/json")

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
