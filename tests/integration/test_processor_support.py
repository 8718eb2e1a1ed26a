"""Helpers of the processor integration tests (no tests here): own topics and consumer groups so that each
test sees only its records, producing event records, reading ``sessions FINAL`` and Redis, and the
expected sessions computed by the pure reference (:func:`stream_processors.sessionize.sessionize`)."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from productgraph.connections import clickhouse_client
from productgraph.localstack.kafka import ensure_topics
from schemas.records import EventRecord
from schemas.sessions import live_event, live_key
from stream_processors.runner import BatchRunner
from stream_processors.sessionize import MINUTE_MS, sessionize
from stream_processors.settings import ProcessorSettings
from stream_processors.worker import KINDS, default_policy
from tests.conftest import Servers

ROW = ("event_count", "duration_ms", "entry_page", "exit_page", "page_views", "unique_pages", "error_count", "user_id")


def settings_for(servers: Servers, **overrides: Any) -> ProcessorSettings:
    values: dict[str, Any] = {
        "kafka_bootstrap": servers.kafka_bootstrap,
        "clickhouse_url": servers.clickhouse_url,
        "redis_url": servers.redis_url,
        "consumer_group_prefix": f"t{secrets.token_hex(4)}",
        "batch_max_age_s": 0.2,
        "retry_max_backoff_s": 0.5,
    }
    values.update(overrides)
    return ProcessorSettings(**values)


async def own_topic(bootstrap: str, partitions: int = 3) -> str:
    name = f"test.events.{secrets.token_hex(4)}"
    await ensure_topics(bootstrap, {name: partitions})
    return name


async def start_runner(kind: str, settings: ProcessorSettings, topic: str) -> tuple[BatchRunner, asyncio.Task[None]]:
    runner = BatchRunner(kind, await asyncio.to_thread(KINDS[kind], settings), settings, topic=topic)
    return runner, asyncio.create_task(runner.run())


async def stop_runner(runner: BatchRunner, task: asyncio.Task[None]) -> None:
    runner.request_stop()
    await asyncio.wait_for(task, 60)


async def produce(bootstrap: str, topic: str, records: Iterable[EventRecord | tuple[bytes, bytes]]) -> None:
    """Publish in order (records of one session keep their order: one key, one partition)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for r in records:
            key, value = (r.key, r.encode()) if isinstance(r, EventRecord) else r
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def wait_for(check: Callable[[], Awaitable[bool]], limit_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + limit_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit_s:.0f}s waiting for {what}")
        await asyncio.sleep(0.2)


def session_rows(clickhouse_url: str, project_id: str) -> dict[tuple[str, int], tuple[Any, ...]]:
    """(session, segment) -> ROW values, as ``sessions FINAL`` shows them."""
    ch = clickhouse_client(clickhouse_url)
    try:
        result = ch.query(
            f"SELECT session_id, segment, {', '.join(ROW)} FROM sessions FINAL WHERE project_id = {{p:UUID}}",
            parameters={"p": project_id},
        )
        return {(r[0], int(r[1])): tuple(r[2:]) for r in result.result_rows}
    finally:
        ch.close()


def expected_rows(
    records: Sequence[EventRecord], settings: ProcessorSettings
) -> dict[tuple[str, int], tuple[Any, ...]]:
    """What every session of ``records`` (in produce order) must end as, from the pure reference."""
    by_session: dict[str, list[EventRecord]] = {}
    for r in records:
        by_session.setdefault(r.session_id, []).append(r)
    out: dict[tuple[str, int], tuple[Any, ...]] = {}
    for session, recs in by_session.items():
        for s in sessionize([live_event(r, i) for i, r in enumerate(recs)], default_policy(settings)):
            values = (s.event_count, s.duration_ms, s.entry_page, s.exit_page, s.page_views, s.unique_pages)
            out[(session, s.segment)] = (*values, s.error_count, s.user_id)
    return out


async def live_views(redis_url: str, project_id: str, sessions: Iterable[str]) -> dict[str, dict[str, str]]:
    r = aioredis.from_url(redis_url, decode_responses=True)
    try:
        return {s: {str(k): str(v) for k, v in (await r.hgetall(live_key(project_id, s))).items()} for s in sessions}
    finally:
        await r.aclose()


async def committed(bootstrap: str, group_id: str, topic: str, partitions: int) -> dict[int, int | None]:
    """The group's committed offset per partition, asked of the broker (aiokafka ``committed``)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        await consumer.stop()


# Event times: yesterday, on the hour.  Not a fixed date: the tables' TTL (365 days) drops older rows on insert.
T0 = (int(time.time()) // 3600 - 24) * 3600 * 1000


def record(
    org_id: str,
    project_id: str,
    event_id: str,
    session: str,
    minutes: float,
    etype: str = "ui.click",
    page: str = "",
    user: str = "",
    seq: int | None = None,
) -> EventRecord:
    fields: dict[str, Any] = {}
    if page:
        fields["page.path"] = page
    if user:
        fields["user.id"] = user
    if seq is not None:
        fields["event.sequence"] = seq
    ts = T0 + int(minutes * MINUTE_MS)
    return EventRecord(org_id, project_id, event_id, session, etype, ts, ts + 50, fields=fields)


def synthetic_stream(org_id: str, project_id: str, sessions: int, events: int, seed: int) -> list[EventRecord]:
    """``events`` records over ``sessions`` sessions, interleaved, with gaps over the timeout and some
    out-of-order (late) events: the load of the crash and rebalance tests."""
    import random

    rng = random.Random(seed)
    clocks = {f"s{i:04d}": 0.0 for i in range(sessions)}
    out: list[EventRecord] = []
    for n in range(events):
        session = rng.choice(list(clocks))
        step = rng.choice([0.5, 1, 2, 5, 45]) if rng.random() > 0.02 else 31  # 45 and 31 min: new segments
        clocks[session] += step
        minutes = clocks[session] - (rng.choice([3, 40]) if rng.random() < 0.05 else 0)  # late: inside or merging
        etype = rng.choice(["page.view", "page.view", "ui.click", "api.response", "error"])
        page = f"/p{rng.randint(1, 6)}" if etype == "page.view" else ""
        user = f"u{rng.randint(1, 50)}" if rng.random() < 0.3 else ""
        out.append(record(org_id, project_id, f"e{n}-{uuid.uuid4().hex[:8]}", session, minutes, etype, page, user))
    return out
