"""Kafka stopped under load: 503 + Retry-After and nothing accepted, then 202 again without a gateway restart.

The test runs its own Tansu broker on a free port (the session's broker is left alone), stops it while
requests keep coming, starts it again on the same port and creates the topics again (Tansu keeps data in
memory only, so what it held before the stop is gone: only events accepted after its return can be
looked for in it).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from ingest_gateway.app import create_app
from ingest_gateway.settings import GatewaySettings
from productgraph.localstack.kafka import start_kafka
from productgraph.localstack.process import ServerProcess, free_port
from productgraph.migrate import ensure_all_topics
from schemas.records import EventRecord
from schemas.topics import EVENTS
from tests.conftest import Servers

pytestmark = pytest.mark.integration


def _batch(tenant: dict[str, str], tag: str, n: int = 20) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "events": [
            {
                "event_id": f"{tag}-{i}",
                "project_id": tenant["project_slug"],
                "session.id": f"s-{i % 3}",
                "event.type": "page.view",
                "event.timestamp": now,
            }
            for i in range(n)
        ]
    }


async def _start_broker(port: int, logs: Path) -> ServerProcess:
    proc = await asyncio.to_thread(start_kafka, port, logs_dir=logs)
    await ensure_all_topics(proc.url)
    return proc


async def _ids_in_topic(bootstrap: str, project_id: str, want: set[str]) -> set[str]:
    consumer = AIOKafkaConsumer(
        EVENTS.name,
        bootstrap_servers=bootstrap,
        group_id=f"t-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: set[str] = set()
    try:
        deadline = time.monotonic() + 20
        while not want <= found and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                found |= {r.event_id for m in msgs if (r := EventRecord.decode(m.value)).project_id == project_id}
    finally:
        await consumer.stop()
    return found


async def test_kafka_down_503_then_recovers_without_restart(
    servers: Servers, tenant: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    broker = await _start_broker(port, tmp_path)
    settings = GatewaySettings(
        kafka_bootstrap=broker.url,
        postgres_dsn=servers.postgres_dsn,
        redis_url=servers.redis_url,
        produce_timeout_s=2.0,
    )
    app = create_app(settings)
    answers: list[tuple[str, int, dict[str, Any], str | None, str]] = []  # phase, status, body, Retry-After, tag
    phase = "before"
    stop, recovered = asyncio.Event(), asyncio.Event()
    headers = {"X-PG-API-Key": tenant["api_key"]}

    async def load(gw: httpx.AsyncClient, worker: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            at, tag = phase, f"w{worker}-{n}-{uuid.uuid4().hex[:6]}"
            resp = await gw.post("/v1/events", json=_batch(tenant, tag), headers=headers)
            answers.append((at, resp.status_code, resp.json(), resp.headers.get("retry-after"), tag))
            if at == "back" and resp.status_code == 202:
                recovered.set()
            await asyncio.sleep(0.05)

    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw", timeout=30) as gw,
        ):
            for _ in range(100):
                if (await gw.get("/ready")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            workers = [asyncio.create_task(load(gw, w)) for w in range(4)]
            await asyncio.sleep(1.0)

            phase = "down"
            await asyncio.to_thread(broker.stop)
            await asyncio.sleep(4.0)
            ready = await gw.get("/ready")
            assert ready.status_code == 503 and "kafka" in ready.json()["down"]

            broker = await _start_broker(port, tmp_path)
            phase = "back"
            await asyncio.wait_for(recovered.wait(), 45)  # without restarting the gateway
            await asyncio.sleep(1.0)
            stop.set()
            await asyncio.gather(*workers)
            assert (await gw.get("/ready")).status_code == 200
        # every event answered 202 after the broker came back is in it (what it held before died with it)
        accepted_back = {
            e["event_id"] for a in answers if a[0] == "back" and a[1] == 202 for e in _batch(tenant, a[4])["events"]
        }
        assert accepted_back
        assert accepted_back <= await _ids_in_topic(broker.url, tenant["project_id"], accepted_back)
    finally:
        broker.stop()

    statuses = {(a[0], a[1]) for a in answers}
    assert ("before", 202) in statuses and ("down", 503) in statuses and ("back", 202) in statuses
    assert {a[1] for a in answers} <= {202, 503}
    for _, status, body, retry_after, _ in answers:
        if status == 503:
            assert body["accepted"] == 0 and retry_after == "5"
        else:
            assert body["accepted"] + body["duplicates"] == 20
