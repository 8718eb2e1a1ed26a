"""Helpers of the processor integration tests (no tests here): own topics and consumer groups so that each
test sees only its records, producing event records, reading ``sessions FINAL`` and Redis, and the
expected sessions computed by the pure reference (:func:`stream_processors.sessionize.sessionize`), processor
processes run as users run them (:class:`ProcessorProcess`), and whole-state reads for comparing two runs
(:func:`table_rows`, :func:`redis_values`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from productgraph.connections import clickhouse_client
from productgraph.localstack.kafka import ensure_topics
from productgraph.localstack.process import free_port
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
        "postgres_dsn": servers.postgres_dsn,  # sessions: per-project timeout and journeys
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


# ---- processor processes and whole-state comparison (chaos and failover tests) ---------------------------

# Columns whose values legitimately differ between two correct runs of the same events: when a row was
# written and which version of it won.  Everything else of a row FINAL must be equal.
VOLATILE_COLUMNS = frozenset({"inserted_at", "updated_at", "version"})


def processor_env(
    *, kafka: str, clickhouse_url: str, redis_url: str, postgres_dsn: str, prefix: str, **extra: str
) -> dict[str, str]:
    """The environment of a processor process: this test's servers and consumer-group prefix, no other
    ``PG_`` variable of the caller's environment, small batches so that kills land inside and between flushes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG_")}
    env.update(
        {
            "PG_KAFKA_BOOTSTRAP": kafka,
            "PG_CLICKHOUSE_URL": clickhouse_url,
            "PG_REDIS_URL": redis_url,
            "PG_POSTGRES_DSN": postgres_dsn,
            "PG_CONSUMER_GROUP_PREFIX": prefix,
            "PG_BATCH_MAX_AGE_S": "0.3",
            "PG_BATCH_MAX_RECORDS": "2000",
            "PG_RETRY_MAX_BACKOFF_S": "1",
            "PG_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


class ProcessorProcess:
    """``python -m productgraph.cli processor <kind>``, as users run it, in its own process group, serving
    ``/metrics`` on its own port; output (JSON log lines) appended to ``log``."""

    def __init__(self, kind: str, env: dict[str, str], log: Path) -> None:
        self.kind, self.log = kind, log
        self.metrics_port = free_port()
        self.env = {**env, "PG_METRICS_PORT": str(self.metrics_port)}
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "productgraph.cli", "processor", self.kind],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(60)
        self.kills += sig == signal.SIGKILL
        return code

    def ensure_stopped(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)

    def log_lines(self) -> list[dict[str, Any]]:
        """The process's JSON log lines (other output, e.g. a traceback of a crash, is skipped)."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    out.append(entry)
        return out

    def assignments(self) -> list[list[int]]:
        """Every partition assignment this process (all its runs) logged, in order."""
        found = []
        for entry in self.log_lines():
            msg = str(entry.get("msg", ""))
            if msg.startswith(f"{self.kind}: assigned partitions "):
                found.append(json.loads(msg[msg.index("[") :]))
        return found

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """``/metrics`` as {(sample name, sorted labels): value}; empty while the process does not answer."""
        from prometheus_client.parser import text_string_to_metric_families

        try:
            async with httpx.AsyncClient(timeout=5) as http:
                text = (await http.get(f"http://127.0.0.1:{self.metrics_port}/metrics")).text
        except httpx.HTTPError:
            return {}
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    async def owned_partitions(self) -> list[int]:
        """Partitions with a consumer-lag gauge: the runner sets it for each assigned partition after a fetch
        and removes it when the partition is revoked."""
        metrics = await self.metrics()
        return sorted(int(dict(labels)["partition"]) for name, labels in metrics if name == LAG_METRIC)


LAG_METRIC = "productgraph_processor_consumer_lag"


def _comparable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((str(k), _comparable(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_comparable(v) for v in value)
    return value


def table_rows(clickhouse_url: str, table: str, project_id: str) -> list[tuple[Any, ...]]:
    """Every row FINAL of ``table`` for one project, all columns but :data:`VOLATILE_COLUMNS`, sorted.
    ``table`` is a constant of the calling test (no user input)."""
    ch = clickhouse_client(clickhouse_url)
    try:
        columns = [
            str(r[0])
            for r in ch.query(
                "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = {t:String} "
                "ORDER BY position",
                parameters={"t": table},
            ).result_rows
        ]
        assert columns, f"no table {table}"
        keep = [c for c in columns if c not in VOLATILE_COLUMNS]
        result = ch.query(
            f"SELECT {', '.join(f'`{c}`' for c in keep)} FROM {table} FINAL WHERE project_id = {{p:UUID}}",
            parameters={"p": project_id},
        )
        return sorted((tuple(_comparable(v) for v in row) for row in result.result_rows), key=repr)
    finally:
        ch.close()


async def redis_values(redis_url: str, pattern: str) -> dict[str, Any]:
    """Every key matching ``pattern`` with its value, whatever its type (TTL not included)."""
    r = aioredis.from_url(redis_url, decode_responses=True)
    try:
        out: dict[str, Any] = {}
        async for key in r.scan_iter(match=pattern, count=1000):
            raw = await r.type(key)
            kind = raw.decode() if isinstance(raw, bytes) else str(raw)
            if kind == "string":
                out[key] = await r.get(key)
            elif kind == "hash":
                out[key] = await r.hgetall(key)
            elif kind == "zset":
                out[key] = await r.zrange(key, 0, -1, withscores=True)
            elif kind == "list":
                out[key] = await r.lrange(key, 0, -1)
            elif kind == "set":
                out[key] = sorted(await r.smembers(key))
            else:
                out[key] = f"<{kind}>"
        return out
    finally:
        await r.aclose()
