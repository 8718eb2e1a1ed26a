"""Backpressure: the sessions processor's Redis (then its ClickHouse) goes down mid-stream.  The runner
pauses and retries, commits nothing meanwhile (the group's committed offsets, asked of the broker, do not
move), reports not ready, and resumes by itself when the server is back on the same port and data; the
final sessions are exact."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from productgraph.localstack.clickhouse import start_clickhouse
from productgraph.localstack.process import free_port
from productgraph.localstack.redis import start_redis
from productgraph.migrate import migrate_clickhouse
from stream_processors.ops import OpsServer
from tests.conftest import Servers
from tests.integration.test_processor_support import (
    committed,
    expected_rows,
    live_views,
    own_topic,
    produce,
    session_rows,
    settings_for,
    start_runner,
    stop_runner,
    synthetic_stream,
    wait_for,
)

pytestmark = pytest.mark.integration


async def test_redis_down_pauses_commits_nothing_and_resumes_exactly(servers: Servers, tmp_path: Path) -> None:
    port = free_port()
    redis = start_redis(tmp_path / "redis", port, logs_dir=tmp_path / "logs")
    org, project = str(uuid.uuid4()), str(uuid.uuid4())
    topic = await own_topic(servers.kafka_bootstrap)
    settings = settings_for(servers, redis_url=redis.url)
    stream = synthetic_stream(org, project, sessions=40, events=1200, seed=3)
    before, during = stream[:600], stream[600:]
    runner, task = await start_runner("sessions", settings, topic)
    ops = OpsServer(runner, "127.0.0.1", 0)
    await ops.start()
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{ops.port}", timeout=10)
    try:
        await produce(servers.kafka_bootstrap, topic, before)

        async def caught_up() -> bool:
            return session_rows(servers.clickhouse_url, project) == expected_rows(before, settings) and not any(
                runner.lag().values()
            )

        await wait_for(caught_up, what="the first half")
        assert (await http.get("/ready")).status_code == 200
        offsets = await committed(servers.kafka_bootstrap, runner.group_id, topic, 3)
        assert sum(o or 0 for o in offsets.values()) == len(before)

        redis.stop()  # SIGTERM: Redis writes its append-only file and exits
        await produce(servers.kafka_bootstrap, topic, during)

        async def paused() -> bool:
            return not runner.healthy

        await wait_for(paused, what="the runner to notice")
        await asyncio.sleep(3)  # a few retries with backoff
        assert await committed(servers.kafka_bootstrap, runner.group_id, topic, 3) == offsets, "nothing committed"
        assert session_rows(servers.clickhouse_url, project) == expected_rows(before, settings)
        assert _paused() == 1
        ready = await http.get("/ready")
        assert ready.status_code == 503 and ready.json()["checks"]["sessions"] is False
        assert (await http.get("/health")).status_code == 200, "a paused worker is alive"

        redis = start_redis(tmp_path / "redis", port, logs_dir=tmp_path / "logs")  # same port, same data

        async def resumed() -> bool:
            return session_rows(servers.clickhouse_url, project) == expected_rows(stream, settings)

        await wait_for(resumed, what="the runner to resume by itself")
        await wait_for(lambda: _committed_total(servers, runner.group_id, topic, len(stream)), what="commits")
        assert runner.healthy and _paused() == 0
        views = await live_views(redis.url, project, {r.session_id for r in stream})
        newest: dict[str, tuple[int, int]] = {}
        for (session, segment), row in expected_rows(stream, settings).items():
            if segment >= newest.get(session, (0, 0))[0]:
                newest[session] = (segment, row[0])
        assert {s: (int(v["segment"]), int(v["event_count"])) for s, v in views.items()} == newest
    finally:
        await http.aclose()
        await stop_runner(runner, task)
        await ops.stop()
        redis.stop()


def _paused() -> float | None:
    return REGISTRY.get_sample_value("productgraph_processor_paused", {"kind": "sessions"})


async def _committed_total(servers: Servers, group: str, topic: str, want: int) -> bool:
    offsets = await committed(servers.kafka_bootstrap, group, topic, 3)
    return sum(o or 0 for o in offsets.values()) == want


async def test_clickhouse_down_pauses_commits_nothing_and_resumes_exactly(servers: Servers, tmp_path: Path) -> None:
    """The same with the sessions processor's ClickHouse (its own chDB server) stopped mid-stream: rows
    come before state, so Redis does not move either until ClickHouse is back."""
    port = free_port()
    clickhouse = start_clickhouse(tmp_path / "clickhouse", port)
    url = f"{clickhouse.url.rstrip('/')}/bp"
    migrate_clickhouse(url)
    org, project = str(uuid.uuid4()), str(uuid.uuid4())
    topic = await own_topic(servers.kafka_bootstrap)
    settings = settings_for(servers, clickhouse_url=url)
    stream = synthetic_stream(org, project, sessions=30, events=800, seed=4)
    before, during = stream[:400], stream[400:]
    runner, task = await start_runner("sessions", settings, topic)
    try:
        await produce(servers.kafka_bootstrap, topic, before)

        async def caught_up() -> bool:
            return session_rows(url, project) == expected_rows(before, settings) and not any(runner.lag().values())

        await wait_for(caught_up, what="the first half")
        offsets = await committed(servers.kafka_bootstrap, runner.group_id, topic, 3)
        views = await live_views(servers.redis_url, project, {r.session_id for r in stream})

        clickhouse.stop()
        await produce(servers.kafka_bootstrap, topic, during)

        async def paused() -> bool:
            return not runner.healthy

        await wait_for(paused, what="the runner to notice")
        await asyncio.sleep(3)
        assert await committed(servers.kafka_bootstrap, runner.group_id, topic, 3) == offsets, "nothing committed"
        assert await live_views(servers.redis_url, project, views) == views, "no state without its rows"

        clickhouse = start_clickhouse(tmp_path / "clickhouse", port)

        async def resumed() -> bool:
            return session_rows(url, project) == expected_rows(stream, settings)

        await wait_for(resumed, what="the runner to resume by itself")
        await wait_for(lambda: _committed_total(servers, runner.group_id, topic, len(stream)), what="commits")
    finally:
        await stop_runner(runner, task)
        clickhouse.stop()
