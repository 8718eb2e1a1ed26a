"""Live metrics over a real WebSocket (``graphql-transport-ws``) from a real sessions processor: a client
subscribed to its project receives the new numbers within 1 s of the events being accepted (acked by
Kafka with acks=all, the moment the gateway answers 202), and never anything of another org's project;
a socket without a valid token is refused before any operation runs."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
import websockets
from websockets.asyncio.client import ClientConnection

from productgraph.admin import bootstrap_org
from productgraph.localstack.process import free_port
from query_api.app import create_app
from query_api.settings import QueryApiSettings
from schemas.records import EventRecord
from tests.conftest import Servers
from tests.integration.test_processor_support import own_topic, produce, settings_for, start_runner, stop_runner

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SUBSCRIPTION = """subscription($p: ID!) { liveMetrics(projectId: $p, intervalMs: 100) {
  projectId activeSessions activeUsers eventsLastHour eventsPerMinute { count } } }"""


@pytest.fixture
async def api_url(servers: Servers) -> AsyncIterator[str]:
    settings = QueryApiSettings(
        clickhouse_url=servers.clickhouse_url, postgres_dsn=servers.postgres_dsn, redis_url=servers.redis_url
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    for _ in range(400):  # up to 20 s
        if server.started:
            break
        await asyncio.sleep(0.05)
    assert server.started, "query API did not start"
    try:
        yield f"ws://127.0.0.1:{port}/graphql"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


async def _subscribe(url: str, token: str | None, project: str) -> ClientConnection:
    ws = await websockets.connect(url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")])
    init: dict[str, Any] = {"type": "connection_init"}
    if token is not None:
        init["payload"] = {"Authorization": f"Bearer {token}"}
    await ws.send(json.dumps(init))
    ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert ack["type"] == "connection_ack", ack
    sub = {"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIPTION, "variables": {"p": project}}}
    await ws.send(json.dumps(sub))
    return ws


async def _next(ws: ClientConnection, limit_s: float = 30) -> dict[str, Any]:
    msg = json.loads(await asyncio.wait_for(ws.recv(), limit_s))
    assert msg["type"] == "next", msg
    assert "errors" not in msg["payload"], msg
    return dict(msg["payload"]["data"]["liveMetrics"])


async def _until(ws: ClientConnection, events: int, limit_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + limit_s
    while True:
        m = await _next(ws, max(0.1, deadline - time.monotonic()))
        if m["eventsLastHour"] >= events:
            return m


def _events(org: str, project: str, prefix: str, sessions: int, per_session: int) -> list[EventRecord]:
    now = int(time.time() * 1000)
    return [
        EventRecord(org, project, f"{prefix}-{s}-{i}", f"{prefix}-s{s}", "page.view", now - 1000 + i, now,
                    fields={"user.id": f"{prefix}-u{s % 2}", "page.path": "/"})
        for s in range(sessions)
        for i in range(per_session)
    ]  # fmt: skip


async def test_subscription_pushes_own_project_within_a_second(
    servers: Servers, tenant: dict[str, str], api_url: str
) -> None:
    other = bootstrap_org(servers.postgres_dsn, "Live other", f"l{secrets.token_hex(4)}", "x", "x")
    topic = await own_topic(servers.kafka_bootstrap)
    runner, task = await start_runner("sessions", settings_for(servers, batch_max_age_s=0.1), topic)
    org, project = tenant["org_id"], tenant["project_id"]
    ws = await _subscribe(api_url, tenant["admin_token"], project)
    try:
        first = await _next(ws)
        assert first["projectId"] == project and first["eventsLastHour"] == 0 and first["activeSessions"] == 0
        # Warm-up: the processor has joined its group and owns the partitions once this arrives.
        await produce(servers.kafka_bootstrap, topic, _events(org, project, "warm", 1, 1))
        await _until(ws, 1, limit_s=60)

        await produce(servers.kafka_bootstrap, topic, _events(other.org_id, other.project_id, "b", 5, 4))
        await produce(servers.kafka_bootstrap, topic, _events(org, project, "a", 3, 4))
        accepted = time.monotonic()  # produce returns once Kafka acked every record (acks=all)
        got = await _until(ws, 13)
        latency = time.monotonic() - accepted
        assert got["eventsLastHour"] == 13  # 1 warm-up + 12; none of the other org's 20
        assert got["activeSessions"] == 4 and got["activeUsers"] == 3  # warm-u0, a-u0, a-u1
        assert sum(m["count"] for m in got["eventsPerMinute"]) == 13
        assert latency < 1.0, f"pushed {latency:.3f} s after the events were accepted"
    finally:
        await ws.close()
        await stop_runner(runner, task)


async def test_socket_without_valid_token_is_refused_and_foreign_project_not_found(
    servers: Servers, tenant: dict[str, str], api_url: str
) -> None:
    for token in (None, "pgt_not-a-token"):
        ws = await websockets.connect(api_url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")])
        init: dict[str, Any] = {"type": "connection_init"}
        if token:
            init["payload"] = {"Authorization": f"Bearer {token}"}
        await ws.send(json.dumps(init))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
    other = bootstrap_org(servers.postgres_dsn, "Live foreign", f"f{secrets.token_hex(4)}", "x", "x")
    ws = await _subscribe(api_url, tenant["admin_token"], other.project_id)
    try:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert msg["type"] == "error" or "errors" in msg.get("payload", {}), msg
        assert "not found" in json.dumps(msg)
    finally:
        await ws.close()
