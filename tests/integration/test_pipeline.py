"""Gateway → Kafka → processors → ClickHouse / Redis on real servers, services run in-process."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from ingest_gateway.app import create_app
from ingest_gateway.settings import GatewaySettings
from productgraph.connections import clickhouse_client
from productgraph.demo import demo_events
from schemas.records import EventRecord
from schemas.topics import DEAD_LETTERS, EVENTS
from stream_processors.runner import BatchRunner
from stream_processors.settings import ProcessorSettings
from stream_processors.worker import KINDS
from tests.conftest import Servers
from tests.kafka_reading import project_messages

pytestmark = pytest.mark.integration


@pytest.fixture
async def gateway(servers: Servers) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(GatewaySettings(**_server_kwargs(servers)))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client,
    ):
        for _ in range(100):  # the producer connects in the background
            if (await client.get("/ready")).status_code == 200:
                break
            await asyncio.sleep(0.1)
        yield client


def _server_kwargs(s: Servers) -> dict[str, Any]:
    return {
        "kafka_bootstrap": s.kafka_bootstrap,
        "clickhouse_url": s.clickhouse_url,
        "postgres_dsn": s.postgres_dsn,
        "redis_url": s.redis_url,
    }


async def _start_processor(kind: str, servers: Servers) -> tuple[BatchRunner, asyncio.Task[None]]:
    settings = ProcessorSettings(**_server_kwargs(servers), batch_max_age_s=0.3)
    runner = BatchRunner(kind, await asyncio.to_thread(KINDS[kind], settings), settings)
    return runner, asyncio.create_task(runner.run())


async def _wait_for(check: Any, limit_s: float = 30.0) -> Any:
    deadline = time.monotonic() + limit_s
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.2)


async def test_gateway_answers_per_event_and_publishes_after_ack(
    gateway: httpx.AsyncClient, servers: Servers, tenant: dict[str, str]
) -> None:
    events = demo_events(tenant["project_slug"], 5)
    events.insert(2, {"event_id": "bad", "project_id": tenant["project_slug"], "event.type": "page.view"})
    resp = await gateway.post("/v1/events", json={"events": events}, headers={"X-PG-API-Key": tenant["api_key"]})
    assert resp.status_code == 202
    assert resp.json() == {
        "accepted": 5,
        "rejected": 1,
        "duplicates": 0,
        "errors": [{"index": 2, "error": "session.id: required"}],
    }

    messages = await project_messages(servers.kafka_bootstrap, tenant["project_id"], 5)
    found = [EventRecord.decode(m.value) for m in messages]
    assert all(m.key == f"{tenant['project_id']}:{r.session_id}".encode() for m, r in zip(messages, found, strict=True))
    assert sorted(r.event_id for r in found) == sorted(e["event_id"] for e in events if e["event_id"] != "bad")
    assert all(r.org_id == tenant["org_id"] for r in found)


async def test_gateway_auth_and_batch_errors(gateway: httpx.AsyncClient, tenant: dict[str, str]) -> None:
    assert (await gateway.post("/v1/events", json={"events": []})).status_code == 401
    bad_key = await gateway.post("/v1/events", json={"events": []}, headers={"X-PG-API-Key": "pgk_nope"})
    assert bad_key.status_code == 401
    h = {"Authorization": f"Bearer {tenant['api_key']}"}
    assert (await gateway.post("/v1/events", content=b"{not json", headers=h)).status_code == 400
    assert (await gateway.post("/v1/events", json={"events": [{}] * 1001}, headers=h)).status_code == 400
    empty = await gateway.post("/v1/events", json={"events": []}, headers=h)
    assert empty.status_code == 202 and empty.json() == {"accepted": 0, "rejected": 0, "duplicates": 0, "errors": []}
    xml = await gateway.post("/v1/events", content=b"<x/>", headers={**h, "Content-Type": "application/xml"})
    assert xml.status_code == 415
    assert (await gateway.get("/v1/events")).status_code == 405


async def test_processors_store_each_event_once_even_when_redelivered(
    gateway: httpx.AsyncClient, servers: Servers, tenant: dict[str, str]
) -> None:
    events = demo_events(tenant["project_slug"], 300, seed=11)
    h = {"X-PG-API-Key": tenant["api_key"]}
    for i in range(0, 300, 100):
        assert (await gateway.post("/v1/events", json={"events": events[i : i + 100]}, headers=h)).status_code == 202
    # A redelivery as after a crash before commit: the same records once more, straight to Kafka.
    producer = AIOKafkaProducer(bootstrap_servers=servers.kafka_bootstrap, acks="all")
    await producer.start()
    replayed = 0
    for m in (await project_messages(servers.kafka_bootstrap, tenant["project_id"], 100))[:100]:
        await producer.send_and_wait(EVENTS.name, m.value, key=m.key)
        replayed += 1
    await producer.send_and_wait(EVENTS.name, b"\x00 poison, not a record", key=b"poison")
    await producer.stop()
    assert replayed == 100

    runners = [await _start_processor(kind, servers) for kind in ("warehouse", "sessions")]
    ch = clickhouse_client(servers.clickhouse_url)
    r = aioredis.from_url(servers.redis_url)
    try:

        def count() -> int:
            q = "SELECT count() FROM events FINAL WHERE project_id = {p:UUID}"
            return int(ch.query(q, parameters={"p": tenant["project_id"]}).result_rows[0][0])

        async def all_rows() -> bool:
            return await asyncio.to_thread(count) >= 300

        assert await _wait_for(all_rows)
        await asyncio.sleep(1.0)  # give a double count the chance to show
        assert await asyncio.to_thread(count) == 300

        sessions: dict[str, int] = {}
        for e in events:
            sessions[e["session.id"]] = sessions.get(e["session.id"], 0) + 1

        async def redis_done() -> bool:
            got = [await r.hget(f"session:{tenant['project_id']}:{s}", "event_count") for s in sessions]
            return all(g is not None and int(g) == n for g, n in zip(got, sessions.values(), strict=True))

        assert await _wait_for(redis_done)
        ttl = await r.ttl(f"session:{tenant['project_id']}:{next(iter(sessions))}")
        assert 0 < ttl <= 35 * 60
    finally:
        for runner, task in runners:
            runner.request_stop()
            await asyncio.wait_for(task, 30)
        await r.aclose()
        ch.close()

    # the poison record went to the dead-letter topic with its origin, and did not stall the partition
    dlq = AIOKafkaConsumer(
        DEAD_LETTERS.name,
        bootstrap_servers=servers.kafka_bootstrap,
        group_id=f"t-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await dlq.start()
    try:
        headers: dict[str, bytes] = {}
        deadline = time.monotonic() + 10
        while not headers and time.monotonic() < deadline:
            for msgs in (await dlq.getmany(timeout_ms=500)).values():
                for m in msgs:
                    if m.value == b"\x00 poison, not a record":
                        headers = dict(m.headers)
    finally:
        await dlq.stop()
    assert headers["origin.topic"] == EVENTS.name.encode() and b"not JSON" in headers["error"]
