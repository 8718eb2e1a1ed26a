"""The gateway in-process on real Postgres, Redis and Kafka: keys, project settings, dedup, readiness."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import psycopg
import pytest

from ingest_gateway.app import create_app
from ingest_gateway.settings import GatewaySettings
from productgraph.db import hash_secret, tenant_transaction_sync
from schemas.records import EventRecord
from tests.conftest import Servers
from tests.kafka_reading import project_messages

pytestmark = pytest.mark.integration


@asynccontextmanager
async def live_gateway(servers: Servers, wait_ready: bool = True, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    kwargs: dict[str, Any] = {
        "kafka_bootstrap": servers.kafka_bootstrap,
        "postgres_dsn": servers.postgres_dsn,
        "redis_url": servers.redis_url,
        **overrides,
    }
    app = create_app(GatewaySettings(**kwargs))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client,
    ):
        for _ in range(100):
            if not wait_ready or (await client.get("/ready")).status_code == 200:
                break
            await asyncio.sleep(0.1)
        yield client


def _set_project(servers: Servers, tenant: dict[str, str], **settings: Any) -> None:
    with (
        psycopg.connect(servers.postgres_dsn, autocommit=True) as conn,
        tenant_transaction_sync(conn, tenant["org_id"]),
    ):
        conn.execute(
            "UPDATE projects SET settings = settings || %s::jsonb WHERE id = %s",
            (json.dumps(settings), tenant["project_id"]),
        )


def _events(tenant: dict[str, str], ids: list[str]) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "events": [
            {
                "event_id": i,
                "project_id": tenant["project_slug"],
                "session.id": "s",
                "event.type": "ui.click",
                "event.timestamp": now,
            }
            for i in ids
        ]
    }


async def test_revoked_key_stops_within_ttl(servers: Servers, tenant: dict[str, str]) -> None:
    h = {"X-PG-API-Key": tenant["api_key"]}
    async with live_gateway(servers, key_cache_ttl_s=1.0) as gw:
        assert (await gw.post("/v1/events", json=_events(tenant, ["r1"]), headers=h)).status_code == 202
        with (
            psycopg.connect(servers.postgres_dsn, autocommit=True) as conn,
            tenant_transaction_sync(conn, tenant["org_id"]),
        ):
            conn.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE key_hash = %s", (hash_secret(tenant["api_key"]),)
            )
        revoked_at = time.monotonic()
        while (resp := await gw.post("/v1/events", json=_events(tenant, ["r2"]), headers=h)).status_code == 202:
            assert time.monotonic() - revoked_at < 1.5, "a revoked key must stop within the cache TTL"
            await asyncio.sleep(0.1)
        assert resp.status_code == 401 and resp.json() == {"error": "unknown or revoked API key"}


async def test_project_settings_rate_limit_and_cors(servers: Servers, tenant: dict[str, str]) -> None:
    _set_project(servers, tenant, rate_limit_per_s=100, cors_origins=["https://shop.example.com"])
    h = {"X-PG-API-Key": tenant["api_key"], "Origin": "https://shop.example.com"}
    async with live_gateway(servers) as gw:
        first = await gw.post("/v1/events", json=_events(tenant, [f"a{i}" for i in range(1000)]), headers=h)
        assert first.status_code == 202 and first.headers["access-control-allow-origin"] == "https://shop.example.com"
        limited = await gw.post("/v1/events", json=_events(tenant, [f"b{i}" for i in range(500)]), headers=h)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 4
        evil = {**h, "Origin": "https://evil.example"}
        assert (await gw.post("/v1/events", json=_events(tenant, ["c"]), headers=evil)).status_code == 401


async def test_duplicates_reported_and_produced_once(servers: Servers, tenant: dict[str, str]) -> None:
    h = {"X-PG-API-Key": tenant["api_key"]}
    ids = [f"d{i}-{uuid.uuid4().hex[:6]}" for i in range(5)]
    async with live_gateway(servers) as gw:
        first = await gw.post("/v1/events", json=_events(tenant, ids[:3]), headers=h)
        assert first.json() == {"accepted": 3, "rejected": 0, "duplicates": 0, "errors": []}
        await asyncio.sleep(0.2)  # the dedup confirmation runs after the answer
        retry = await gw.post("/v1/events", json=_events(tenant, ids), headers=h)
        assert retry.json() == {"accepted": 2, "rejected": 0, "duplicates": 3, "errors": []}
    messages = await project_messages(servers.kafka_bootstrap, tenant["project_id"], 5, settle_s=1.0)
    seen = [EventRecord.decode(m.value).event_id for m in messages]
    assert sorted(seen) == sorted(ids)


async def test_ready_reflects_each_dependency(servers: Servers, tenant: dict[str, str]) -> None:
    async with live_gateway(servers) as gw:
        assert (await gw.get("/ready")).json() == {"status": "ready"}
    dead = "127.0.0.1:1"
    async with live_gateway(
        servers, wait_ready=False, postgres_dsn=f"postgresql://x:y@{dead}/db", redis_url=f"redis://{dead}/0"
    ) as gw:
        for _ in range(50):  # the producer connects in the background
            ready = await gw.get("/ready")
            if set(ready.json()["down"]) == {"postgres", "redis"}:
                break
            await asyncio.sleep(0.1)
        assert ready.status_code == 503 and set(ready.json()["down"]) == {"postgres", "redis"}
        # the key store down: nothing accepted, retry later
        resp = await gw.post("/v1/events", json=_events(tenant, ["x"]), headers={"X-PG-API-Key": tenant["api_key"]})
        assert resp.status_code == 503 and resp.headers["retry-after"] == "5"
    async with live_gateway(servers, redis_url=f"redis://{dead}/0", wait_ready=False) as gw:
        for _ in range(50):
            if (await gw.get("/ready")).json().get("down") == ["redis"]:
                break
            await asyncio.sleep(0.1)
        # Redis down: admitted without rate limit and dedup (fail open), still published
        resp = await gw.post("/v1/events", json=_events(tenant, ["y"]), headers={"X-PG-API-Key": tenant["api_key"]})
        assert resp.status_code == 202 and resp.json()["accepted"] == 1
