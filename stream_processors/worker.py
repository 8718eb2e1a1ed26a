"""``productgraph processor <kind>``: build the sinks of a kind and run its consumer loop until SIGTERM.

Each kind is its own consumer group (``<PG_CONSUMER_GROUP_PREFIX>-<kind>``): it sees every event and
scales independently.  A new kind is one entry in :data:`KINDS` (and its name in
``stream_processors.KIND_NAMES``): a function from settings to the kind's sinks, flushed in list order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import redis.asyncio as aioredis

from productgraph.connections import clickhouse_client
from productgraph.runtime import settle_heap
from stream_processors import KIND_NAMES
from stream_processors.ops import OpsServer
from stream_processors.project_config import PostgresConfigSource, ProjectConfigCache
from stream_processors.runner import BatchRunner, install_signal_handlers
from stream_processors.session_store import ClickHouseSegmentIndex, RedisSessionStore
from stream_processors.sessionize import MINUTE_MS, SessionPolicy
from stream_processors.sessions import SessionSink, fixed_policy
from stream_processors.settings import ProcessorSettings
from stream_processors.sinks import ClickHouseEventSink, ClickHouseWriter, Sink

__all__ = ["KINDS", "default_policy", "run_worker"]

log = logging.getLogger("productgraph.processor")


def default_policy(s: ProcessorSettings) -> SessionPolicy:
    return SessionPolicy(
        timeout_ms=s.session_timeout_minutes * MINUTE_MS,
        max_length_ms=int(s.session_max_hours * 60 * MINUTE_MS),
        late_horizon_ms=s.session_late_horizon_s * 1000,
    )


def _warehouse(s: ProcessorSettings) -> list[Sink]:
    return [ClickHouseEventSink(clickhouse_client(s.clickhouse_url, compress=s.clickhouse_compress))]


def _sessions(s: ProcessorSettings) -> list[Sink]:
    ch = clickhouse_client(s.clickhouse_url, compress=s.clickhouse_compress)
    redis = aioredis.from_url(s.redis_url, socket_timeout=5, socket_connect_timeout=5)

    def ttl_s(policy: SessionPolicy) -> int:
        return max(s.session_ttl_s, policy.timeout_ms // 1000 + 300)

    sink = SessionSink(
        store=RedisSessionStore(redis),
        index=ClickHouseSegmentIndex(ch),
        writer=ClickHouseWriter(ch),
        policy=fixed_policy(default_policy(s)),  # the timeout is replaced by the project's own (config)
        ttl_s=ttl_s,
        config=ProjectConfigCache(PostgresConfigSource(s.postgres_dsn), s.project_config_refresh_s),
    )
    return [sink]


KINDS: dict[str, Callable[[ProcessorSettings], list[Sink]]] = {
    "warehouse": _warehouse,  # events → ClickHouse `events`
    "sessions": _sessions,  # Redis live sessions + rt: counters, ClickHouse `sessions` + `journey_sessions`
}
assert tuple(KINDS) == KIND_NAMES


async def _build_sinks(kind: str, settings: ProcessorSettings) -> list[Sink]:
    """Connect the sinks, waiting for servers that are not up yet (a worker may start before them)."""
    delay = 0.5
    while True:
        try:
            return await asyncio.to_thread(KINDS[kind], settings)
        except Exception as exc:
            log.warning("%s: sinks not reachable (%s); retrying in %.1fs", kind, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, settings.retry_max_backoff_s)


async def _run(kind: str, settings: ProcessorSettings) -> None:
    runner = BatchRunner(kind, await _build_sinks(kind, settings), settings)
    if settings.gc_freeze:
        settle_heap(settings.gc_gen0_threshold)
    install_signal_handlers(runner)
    ops = OpsServer(runner, settings.metrics_host, settings.metrics_port) if settings.metrics_port else None
    if ops is not None:
        await ops.start()
    try:
        await runner.run()
    finally:
        if ops is not None:
            await ops.stop()


def run_worker(kind: str, settings: ProcessorSettings | None = None) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown processor kind {kind!r}; choose one of {', '.join(KINDS)}")
    asyncio.run(_run(kind, settings or ProcessorSettings()))
